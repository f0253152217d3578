//! Operators and API tokens: the rules for creating and changing them, shared by API and CLI.

pub mod login;
pub mod sessions;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::services::auth::{Actor, Role, password, tokens};
use crate::store::DynStore;
use crate::store::{ApiTokenRecord, OperatorPatch, OperatorRecord, StoreError};
use std::sync::Arc;

/// Operator accounts, logins and API tokens.
#[derive(Clone)]
pub struct Operators {
    pub(crate) store: DynStore,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) config: Arc<crate::config::Config>,
    pub(crate) session_key: Arc<crate::services::auth::session_token::SessionKey>,
    pub(crate) audit: crate::services::audit::Audit,
}

pub const FIRST_ADMIN: &str = "admin";

/// An operator as the API shows it (never the hash).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Operator {
    pub id: Uuid,
    pub username: String,
    #[schema(value_type = crate::services::auth::schema::Role)]
    pub role: Role,
    pub disabled: bool,
    pub created_at: DateTime<Utc>,
    pub last_login_at: Option<DateTime<Utc>>,
}

impl From<OperatorRecord> for Operator {
    fn from(r: OperatorRecord) -> Self {
        Operator {
            id: r.id,
            username: r.username,
            role: r.role,
            disabled: r.disabled,
            created_at: r.created_at,
            last_login_at: r.last_login_at,
        }
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ApiToken {
    pub id: Uuid,
    pub name: String,
    #[schema(value_type = crate::services::auth::schema::Role)]
    pub role: Role,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}

impl From<ApiTokenRecord> for ApiToken {
    fn from(r: ApiTokenRecord) -> Self {
        ApiToken {
            id: r.id,
            name: r.name,
            role: r.role,
            created_by: r.created_by,
            created_at: r.created_at,
            expires_at: r.expires_at,
            revoked_at: r.revoked_at,
            last_used_at: r.last_used_at,
        }
    }
}

/// A token as created: the secret is shown this once.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct NewApiToken {
    pub id: Uuid,
    pub name: String,
    #[schema(value_type = crate::services::auth::schema::Role)]
    pub role: Role,
    /// shown once
    pub token: String,
    pub expires_at: Option<DateTime<Utc>>,
}

fn check_username(u: &str) -> Result<()> {
    let ok = (2..=64).contains(&u.len()) && u.chars().all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c));
    if ok { Ok(()) } else { Err(Error::unprocessable("username", "2 to 64 characters: letters, digits, . _ - @")) }
}

impl Operators {
    pub async fn create_operator(&self, actor: &Actor, username: &str, pw: &str, role: Role) -> Result<Operator> {
        check_username(username)?;
        password::check_strength(pw)?;
        let rec = OperatorRecord {
            id: Uuid::new_v4(),
            username: username.to_owned(),
            password_hash: password::hash(pw.to_owned()).await?,
            role,
            disabled: false,
            created_at: self.clock.now(),
            last_login_at: None,
            session_epoch: 0,
        };
        let audit = self.audit.audit_entry(actor, "operator.create", Some(username), json!({"id": rec.id, "role": role}));
        self.store.create_operator(&rec, audit).await.map_err(|e| match e {
            StoreError::Conflict(_) => Error::conflict("username_taken", format!("an operator called {username} already exists")),
            e => e.into(),
        })?;
        Ok(rec.into())
    }

    pub async fn update_operator(
        &self,
        actor: &Actor,
        id: Uuid,
        role: Option<Role>,
        disabled: Option<bool>,
        new_password: Option<&str>,
    ) -> Result<Operator> {
        let current = self.store.operator_by_id(id).await?.ok_or_else(|| Error::not_found("no such operator"))?;
        if let Some(pw) = new_password {
            password::check_strength(pw)?;
        }
        // Never leave the school without a working admin.
        let loses_admin =
            current.role == Role::Admin && !current.disabled && (role.is_some_and(|r| r != Role::Admin) || disabled == Some(true));
        if loses_admin && self.active_admins().await? <= 1 {
            return Err(Error::conflict("last_admin", "this is the last active admin; make another admin first"));
        }
        // A new password, disabling or re-enabling, or a new role ends every session the
        // operator has, at once (their next request is refused and they log in again).
        let end_sessions =
            new_password.is_some() || role.is_some_and(|r| r != current.role) || disabled.is_some_and(|d| d != current.disabled);
        let patch = OperatorPatch {
            role,
            disabled,
            password_hash: match new_password {
                Some(pw) => Some(password::hash(pw.to_owned()).await?),
                None => None,
            },
            end_sessions,
        };
        let entry = self.audit.audit_entry(
            actor,
            "operator.update",
            Some(&current.username),
            json!({
                "id": id,
                "role": role,
                "disabled": disabled,
                "password_changed": new_password.is_some(),
                "sessions_ended": end_sessions,
            }),
        );
        let updated = self.store.update_operator(id, &patch, entry).await?.ok_or_else(|| Error::not_found("no such operator"))?;
        Ok(updated.into())
    }

    async fn active_admins(&self) -> Result<usize> {
        let mut n = 0;
        let mut after: Option<String> = None;
        loop {
            let page = self.store.list_operators(after.as_deref(), 500).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.username.clone());
            n += page.iter().filter(|o| o.role == Role::Admin && !o.disabled).count();
        }
        Ok(n)
    }

    /// Create the first `admin` if there are no operators yet; returns the password if generated.
    pub async fn ensure_first_admin(&self) -> Result<Option<FirstAdmin>> {
        if self.store.count_operators().await? > 0 {
            return Ok(None);
        }
        let (pw, generated) = match &self.config.admin_password {
            Some(pw) => (pw.clone(), false),
            None => (password::generate(), true),
        };
        match self.create_operator(&Actor::system(), FIRST_ADMIN, &pw, Role::Admin).await {
            Ok(_) => Ok(Some(FirstAdmin { password: generated.then_some(pw) })),
            // Another instance made it first.
            Err(Error::Conflict { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn create_api_token(&self, actor: &Actor, name: &str, role: Role, expires_at: Option<DateTime<Utc>>) -> Result<NewApiToken> {
        if name.trim().is_empty() || name.len() > 100 {
            return Err(Error::unprocessable("name", "1 to 100 characters"));
        }
        if expires_at.is_some_and(|e| e <= self.clock.now()) {
            return Err(Error::unprocessable("expires_at", "must be in the future"));
        }
        let token = tokens::generate();
        let rec = ApiTokenRecord {
            id: Uuid::new_v4(),
            name: name.to_owned(),
            role,
            token_hash: tokens::hash(&token),
            created_by: actor.name.clone(),
            created_at: self.clock.now(),
            expires_at,
            revoked_at: None,
            last_used_at: None,
        };
        let audit =
            self.audit.audit_entry(actor, "api_token.create", Some(name), json!({"id": rec.id, "role": role, "expires_at": expires_at}));
        self.store.create_api_token(&rec, audit).await?;
        Ok(NewApiToken { id: rec.id, name: rec.name, role, token, expires_at })
    }

    pub async fn revoke_api_token(&self, actor: &Actor, id: Uuid) -> Result<()> {
        let rec = self.store.api_token_by_id(id).await?.ok_or_else(|| Error::not_found("no such API token"))?;
        let audit = self.audit.audit_entry(actor, "api_token.revoke", Some(&rec.name), json!({"id": id}));
        if !self.store.revoke_api_token(id, self.clock.now(), audit).await? {
            return Err(Error::conflict("already_revoked", "this API token was already revoked"));
        }
        Ok(())
    }
}

pub struct FirstAdmin {
    /// Set when Lanyard generated the password (it is printed once).
    pub password: Option<String>,
}

/// What the faces read about operators, through this service rather than from the store.
impl Operators {
    pub async fn list_operators(&self, after: Option<&str>, limit: i64) -> crate::error::Result<Vec<crate::store::OperatorRecord>> {
        Ok(self.store.list_operators(after, limit).await?)
    }

    pub async fn operator_by_username(&self, username: &str) -> crate::error::Result<Option<crate::store::OperatorRecord>> {
        Ok(self.store.operator_by_username(username).await?)
    }

    pub async fn list_api_tokens(&self, limit: i64) -> crate::error::Result<Vec<crate::store::ApiTokenRecord>> {
        Ok(self.store.list_api_tokens(limit).await?)
    }

    pub async fn clear_login_failures(&self, key: &str) -> crate::error::Result<()> {
        Ok(self.store.clear_login_failures(key).await?)
    }

    pub async fn notifications(&self, role: &str, limit: i64) -> crate::error::Result<Vec<crate::store::NotificationRecord>> {
        Ok(self.store.notifications(role, limit).await?)
    }
}
