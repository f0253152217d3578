//! Reading who is asking from a request: `Authorization: Bearer ...` becomes a [`Principal`]
//! (the check itself is `Operators::authenticate_bearer`), and the client's address.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;

use crate::context::{Ctx, Lanyard};
use crate::error::{Error, Result};
use crate::faces::peer::PeerInfo;
use crate::services::auth::Principal;

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
        ctx.operators.authenticate_bearer(token, ip).await
    }
}
