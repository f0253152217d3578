//! `/healthz` (the process is up), `/readyz` (the database is usable) and the public CA.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::context::Ctx;

/// The process is up.
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok`
    status: &'static str,
    /// Lanyard's version.
    version: &'static str,
}

#[utoipa::path(
    get,
    path = "/healthz",
    tag = "meta",
    summary = "The process is up",
    responses((status = 200, description = "OK", body = Health)),
    security(())
)]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok", version: env!("CARGO_PKG_VERSION") })
}

#[utoipa::path(
    get,
    path = "/readyz",
    tag = "meta",
    summary = "The database is reachable and migrated (503 if not)",
    description = "`{status: ready|not_ready, database: {reachable, migrations_applied, backend, ...}, push_certificate: {status, topic, not_after, days_left, warning}}`: the push certificate's state does not make the server unready, but is reported for monitoring.",
    responses(
        (status = 200, description = "OK", body = Object),
        (status = 503, description = "Not ready: the database is unreachable or not migrated", body = Object)
    ),
    security(())
)]
pub async fn readyz(State(ctx): State<Ctx>) -> (StatusCode, Json<Value>) {
    let db = ctx.readiness().await;
    let ready = db.reachable && db.migrations_applied;
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    // The push certificate does not make the server unready, but its state is reported here so
    // that monitoring sees an expiry coming.
    let push = match ctx.push.push_cert_info().await {
        Ok(Some(info)) => {
            json!({"status": info.status, "topic": info.topic, "not_after": info.not_after, "days_left": info.days_left, "warning": info.warning})
        }
        Ok(None) => json!({"status": "missing", "warning": "no push certificate loaded: devices cannot enrol or be woken"}),
        Err(_) => Value::Null,
    };
    (status, Json(json!({"status": if ready { "ready" } else { "not_ready" }, "database": db, "push_certificate": push})))
}

#[utoipa::path(
    get,
    path = "/mdm/ca.pem",
    tag = "meta",
    summary = "The device CA certificate (PEM)",
    responses((status = 200, description = "OK", content_type = "application/x-pem-file", body = String)),
    security(())
)]
pub async fn ca_pem(State(ctx): State<Ctx>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/x-pem-file")], ctx.pki.ca_pem.clone())
}
