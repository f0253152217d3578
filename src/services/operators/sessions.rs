//! Checking a bearer token (a session JWT or an API token) against the database, so that a
//! disabled operator, a revoked token or an ended session stops working at once.

use chrono::DateTime;
use uuid::Uuid;

use super::Operators;
use crate::error::{Error, Result};
use crate::services::auth::principal::{Credential, Principal, SessionRef, SessionRefused};
use crate::services::auth::{constant_time_eq, session_token, tokens};

impl Operators {
    /// Check a session JWT's claims (signature and expiry already checked) against the database:
    /// the operator exists and is enabled, the session was not logged out, and nothing has ended
    /// the operator's sessions since it was issued. One query, by primary keys.
    pub async fn session_principal(&self, claims: &session_token::Claims, ip: Option<String>) -> Result<Principal, SessionRefused> {
        let id = Uuid::parse_str(&claims.sub).map_err(|_| SessionRefused::Malformed)?;
        let found = self.store.operator_session(id, &claims.jti).await.map_err(|e| SessionRefused::Failed(e.into()))?;
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
    pub async fn authenticate_bearer(&self, token: &str, ip: Option<String>) -> Result<Principal> {
        let now = self.clock.now();
        if session_token::looks_like_jwt(token) {
            let claims = self.session_key.verify(token, now).map_err(|e| Error::Unauthorized(format!("{e}; log in again")))?;
            return Ok(self.session_principal(&claims, ip).await?);
        }
        if !token.starts_with(tokens::PREFIX) {
            return Err(Error::Unauthorized("unrecognised bearer token".into()));
        }
        let hash = tokens::hash(token);
        let rec = self
            .store
            .api_token_by_hash(&hash)
            .await?
            .filter(|t| constant_time_eq(t.token_hash.as_bytes(), hash.as_bytes()))
            .ok_or_else(|| Error::Unauthorized("unknown API token".into()))?;
        if rec.revoked_at.is_some() {
            return Err(Error::Unauthorized("this API token has been revoked".into()));
        }
        if rec.expires_at.is_some_and(|e| e <= now) {
            return Err(Error::Unauthorized("this API token has expired".into()));
        }
        // Last-used is informational; at most one write a minute per token.
        if rec.last_used_at.is_none_or(|t| now - t > chrono::Duration::minutes(1)) {
            self.store.touch_api_token(rec.id, now).await?;
        }
        Ok(Principal { credential: Credential::ApiToken { id: rec.id, name: rec.name }, role: rec.role, ip, session: None })
    }
}
