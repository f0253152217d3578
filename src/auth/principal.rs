//! Turning `Authorization: Bearer ...` into a [`Principal`], and who an action is recorded as.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use uuid::Uuid;

use super::{Permission, Role, jwt, tokens};
use crate::context::{Ctx, Lanyard};
use crate::error::{Error, Result};
use crate::server::PeerInfo;

/// Who did something, for the audit log.
#[derive(Debug, Clone)]
pub struct Actor {
    /// `operator:NAME`, `token:NAME`, `cli`, `system`, `device:UDID`.
    pub name: String,
    pub ip: Option<String>,
}

impl Actor {
    pub fn system() -> Actor {
        Actor { name: "system".into(), ip: None }
    }
    pub fn cli() -> Actor {
        Actor { name: "cli".into(), ip: None }
    }
}

#[derive(Debug, Clone)]
pub enum Credential {
    Operator { id: Uuid, username: String },
    ApiToken { id: Uuid, name: String },
}

/// An authenticated caller of the operator API.
#[derive(Debug, Clone)]
pub struct Principal {
    pub credential: Credential,
    pub role: Role,
    pub ip: Option<String>,
}

impl Principal {
    pub fn actor(&self) -> Actor {
        let name = match &self.credential {
            Credential::Operator { username, .. } => format!("operator:{username}"),
            Credential::ApiToken { name, .. } => format!("token:{name}"),
        };
        Actor { name, ip: self.ip.clone() }
    }

    pub fn operator_id(&self) -> Option<Uuid> {
        match &self.credential {
            Credential::Operator { id, .. } => Some(*id),
            Credential::ApiToken { .. } => None,
        }
    }

    /// 403 naming what the role may not do.
    pub fn require(&self, p: Permission) -> Result<()> {
        if self.role.allows(p) { Ok(()) } else { Err(Error::Forbidden(format!("the {} role cannot {}", self.role, p.describe()))) }
    }
}

/// The client's address: the socket peer, or the first `X-Forwarded-For` hop behind a trusted proxy.
pub fn client_ip(ctx: &Lanyard, parts: &Parts) -> Option<String> {
    if ctx.config.trust_proxy {
        if let Some(first) = parts.headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()).and_then(|v| v.split(',').next()) {
            return Some(first.trim().to_owned());
        }
    }
    if let Some(ConnectInfo(peer)) = parts.extensions.get::<ConnectInfo<PeerInfo>>() {
        return Some(peer.addr.ip().to_string());
    }
    parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(a)| a.ip().to_string())
}

impl FromRequestParts<Ctx> for Principal {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, ctx: &Ctx) -> Result<Self> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| Error::Unauthorized("missing Authorization: Bearer token; log in at POST /api/v1/auth/login".into()))?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or_else(|| Error::Unauthorized("Authorization must be `Bearer <token>`".into()))?
            .trim();
        let ip = client_ip(ctx, parts);
        authenticate_bearer(ctx, token, ip).await
    }
}

/// Check a bearer token (session JWT or API token) against the current state of the database:
/// a disabled operator or revoked token stops working at once.
pub async fn authenticate_bearer(ctx: &Lanyard, token: &str, ip: Option<String>) -> Result<Principal> {
    let now = ctx.now();
    if jwt::looks_like_jwt(token) {
        let claims = ctx.jwt.verify(token, now).map_err(|e| Error::Unauthorized(format!("{e}; log in again")))?;
        let id = Uuid::parse_str(&claims.sub).map_err(|_| Error::Unauthorized("malformed token".into()))?;
        let op = ctx.store.operator_by_id(id).await?.ok_or_else(|| Error::Unauthorized("operator no longer exists".into()))?;
        if op.disabled {
            return Err(Error::Unauthorized("this operator account is disabled".into()));
        }
        return Ok(Principal { credential: Credential::Operator { id: op.id, username: op.username }, role: op.role, ip });
    }
    if !token.starts_with(tokens::PREFIX) {
        return Err(Error::Unauthorized("unrecognised bearer token".into()));
    }
    let hash = tokens::hash(token);
    let rec = ctx
        .store
        .api_token_by_hash(&hash)
        .await?
        .filter(|t| super::constant_time_eq(t.token_hash.as_bytes(), hash.as_bytes()))
        .ok_or_else(|| Error::Unauthorized("unknown API token".into()))?;
    if rec.revoked_at.is_some() {
        return Err(Error::Unauthorized("this API token has been revoked".into()));
    }
    if rec.expires_at.is_some_and(|e| e <= now) {
        return Err(Error::Unauthorized("this API token has expired".into()));
    }
    // Last-used is informational; at most one write a minute per token.
    if rec.last_used_at.is_none_or(|t| now - t > chrono::Duration::minutes(1)) {
        ctx.store.touch_api_token(rec.id, now).await?;
    }
    Ok(Principal { credential: Credential::ApiToken { id: rec.id, name: rec.name }, role: rec.role, ip })
}
