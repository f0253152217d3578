//! Who is asking ([`Principal`]), checked from a bearer token or a session against the database,
//! and who an action is recorded as ([`Actor`]). The faces read the token from the request
//! (`faces::principal`).

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Permission, Role};
use crate::error::{Error, Result};

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
