//! `/healthz` (the process is up), `/readyz` (the database is usable) and the public CA.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde_json::{Value, json};

use crate::context::Ctx;

pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")}))
}

pub async fn readyz(State(ctx): State<Ctx>) -> (StatusCode, Json<Value>) {
    let db = ctx.store.readiness().await;
    let ready = db.reachable && db.migrations_applied;
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    // The push certificate does not make the server unready, but its state is reported here so
    // that monitoring sees an expiry coming.
    let push = match ctx.push_cert_info().await {
        Ok(Some(info)) => {
            json!({"status": info.status, "topic": info.topic, "not_after": info.not_after, "days_left": info.days_left, "warning": info.warning})
        }
        Ok(None) => json!({"status": "missing", "warning": "no push certificate loaded: devices cannot enrol or be woken"}),
        Err(_) => Value::Null,
    };
    (status, Json(json!({"status": if ready { "ready" } else { "not_ready" }, "database": db, "push_certificate": push})))
}

pub async fn ca_pem(State(ctx): State<Ctx>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/x-pem-file")], ctx.pki.ca_pem.clone())
}
