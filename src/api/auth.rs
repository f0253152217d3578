//! `POST /api/v1/auth/login`, `POST /api/v1/auth/logout` and `GET /api/v1/auth/whoami`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::Deserialize;
use serde_json::{Value, json};

use super::extract;
use crate::auth::Principal;
use crate::auth::principal::client_ip;
use crate::context::Ctx;
use crate::error::Result;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    username: String,
    password: String,
}

pub async fn login(State(ctx): State<Ctx>, parts: Parts, extract::Json(req): extract::Json<LoginRequest>) -> Result<Json<Value>> {
    let ip = client_ip(&ctx, &parts);
    let session = ctx.login(&req.username, &req.password, ip.as_deref()).await?;
    Ok(Json(json!({"token": session.token, "expires_at": session.expires_at, "role": session.role})))
}

pub async fn whoami(p: Principal) -> Json<Value> {
    Json(json!({"actor": p.actor().name, "role": p.role, "operator_id": p.operator_id()}))
}

/// End the bearer's own session: the token is refused from now on (204). Other sessions of the
/// same operator go on; an API token is refused with 400 (admins revoke those).
pub async fn logout(State(ctx): State<Ctx>, p: Principal) -> Result<StatusCode> {
    ctx.logout(&p, "api").await?;
    Ok(StatusCode::NO_CONTENT)
}
