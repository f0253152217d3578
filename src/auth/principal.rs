//! Turning `Authorization: Bearer ...` into a [`Principal`], and who an action is recorded as.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Permission, Role, session_token, tokens};
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

/// The session a session JWT stands for, so that it can be ended (logging out).
#[derive(Debug, Clone)]
pub struct SessionRef {
    pub jti: String,
    pub expires_at: DateTime<Utc>,
}

/// An authenticated caller of the operator API.
#[derive(Debug, Clone)]
pub struct Principal {
    pub credential: Credential,
    pub role: Role,
    pub ip: Option<String>,
    /// Set for an operator's session (a JWT); `None` for an API token.
    pub session: Option<SessionRef>,
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

/// Why a session JWT with a good signature was refused.
#[derive(Debug)]
pub enum SessionRefused {
    /// The claims do not name an operator.
    Malformed,
    /// The operator no longer exists.
    Gone,
    Disabled,
    /// Logged out, or ended by a password reset, disabling or a role change since it was issued.
    Ended,
    /// The database could not be asked.
    Failed(Error),
}

impl From<SessionRefused> for Error {
    fn from(r: SessionRefused) -> Error {
        match r {
            SessionRefused::Malformed => Error::Unauthorized("malformed token".into()),
            SessionRefused::Gone => Error::Unauthorized("operator no longer exists".into()),
            SessionRefused::Disabled => Error::Unauthorized("this operator account is disabled".into()),
            SessionRefused::Ended => Error::Unauthorized(
                "this session has ended (logged out, or the operator's password, role or account was changed since); log in again".into(),
            ),
            SessionRefused::Failed(e) => e,
        }
    }
}

/// Check a session JWT's claims (signature and expiry already checked) against the database:
/// the operator exists and is enabled, the session was not logged out, and nothing has ended
/// the operator's sessions since it was issued. One query, by primary keys.
pub async fn session_principal(ctx: &Lanyard, claims: &session_token::Claims, ip: Option<String>) -> Result<Principal, SessionRefused> {
    let id = Uuid::parse_str(&claims.sub).map_err(|_| SessionRefused::Malformed)?;
    let found = ctx.store.operator_session(id, &claims.jti).await.map_err(|e| SessionRefused::Failed(e.into()))?;
    let found = found.ok_or(SessionRefused::Gone)?;
    let op = found.operator;
    if op.disabled {
        return Err(SessionRefused::Disabled);
    }
    if found.session_revoked || claims.epoch != op.session_epoch {
        return Err(SessionRefused::Ended);
    }
    let expires_at = DateTime::from_timestamp(claims.exp, 0).ok_or(SessionRefused::Malformed)?;
    Ok(Principal {
        credential: Credential::Operator { id: op.id, username: op.username },
        role: op.role,
        ip,
        session: Some(SessionRef { jti: claims.jti.clone(), expires_at }),
    })
}

/// Check a bearer token (session JWT or API token) against the current state of the database:
/// a disabled operator, a revoked token or an ended session stops working at once.
pub async fn authenticate_bearer(ctx: &Lanyard, token: &str, ip: Option<String>) -> Result<Principal> {
    let now = ctx.now();
    if session_token::looks_like_jwt(token) {
        let claims = ctx.session_key.verify(token, now).map_err(|e| Error::Unauthorized(format!("{e}; log in again")))?;
        return Ok(session_principal(ctx, &claims, ip).await?);
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
    Ok(Principal { credential: Credential::ApiToken { id: rec.id, name: rec.name }, role: rec.role, ip, session: None })
}
