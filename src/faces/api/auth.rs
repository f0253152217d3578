//! `POST /api/v1/auth/login`, `POST /api/v1/auth/logout` and `GET /api/v1/auth/whoami`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::request::Parts;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::extract;
use super::openapi::Unprocessable;
use crate::context::Ctx;
use crate::error::Result;
use crate::faces::principal::client_ip;
use crate::services::auth::{Principal, Role};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    username: String,
    password: String,
}

/// A session: the bearer token for an hour.
#[derive(Serialize, ToSchema)]
pub struct LoginSession {
    token: String,
    expires_at: DateTime<Utc>,
    #[schema(value_type = crate::services::auth::schema::Role)]
    role: Role,
}

#[utoipa::path(
    post,
    path = "/auth/login",
    tag = "auth",
    summary = "Log in; returns a one-hour session token",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "OK", body = LoginSession),
        (status = 422, response = Unprocessable),
        (status = 429, description = "Locked out: 10 failed logins within 15 minutes for this username or from this address (counted before the password is checked). Retry-After says when to try again.",
            headers(("Retry-After" = i64, description = "seconds")), body = super::openapi::ErrorBody),
    ),
    security(())
)]
pub async fn login(State(ctx): State<Ctx>, parts: Parts, extract::Json(req): extract::Json<LoginRequest>) -> Result<Json<LoginSession>> {
    let ip = client_ip(&ctx, &parts);
    let session = ctx.operators.login(&req.username, &req.password, ip.as_deref()).await?;
    Ok(Json(LoginSession { token: session.token, expires_at: session.expires_at, role: session.role }))
}

/// Who a bearer token belongs to.
#[derive(Serialize, ToSchema)]
pub struct WhoAmI {
    /// `operator:NAME` or `token:NAME`, as the audit log names them.
    actor: String,
    #[schema(value_type = crate::services::auth::schema::Role)]
    role: Role,
    /// The operator's id; null for an API token.
    operator_id: Option<Uuid>,
}

#[utoipa::path(
    get,
    path = "/auth/whoami",
    tag = "auth",
    summary = "Who the bearer token belongs to",
    responses((status = 200, description = "OK", body = WhoAmI))
)]
pub async fn whoami(p: Principal) -> Json<WhoAmI> {
    Json(WhoAmI { actor: p.actor().name, role: p.role, operator_id: p.operator_id() })
}

/// End the bearer's own session: the token is refused from now on (204). Other sessions of the
/// same operator go on; an API token is refused with 400 (admins revoke those).
#[utoipa::path(
    post,
    path = "/auth/logout",
    tag = "auth",
    summary = "Log out: end the bearer's own session",
    description = "The session JWT in the Authorization header is refused from now on, on every instance; the operator's other sessions go on. (A password reset, disabling the operator or changing their role ends all of their sessions.) An API token has no session: 400; an admin revokes it with DELETE /api/v1/api-tokens/{id}. Audited as auth.logout.",
    responses((status = 204, description = "Logged out"))
)]
pub async fn logout(State(ctx): State<Ctx>, p: Principal) -> Result<StatusCode> {
    ctx.operators.logout(&p, "api").await?;
    Ok(StatusCode::NO_CONTENT)
}
