//! Operators (people who log in), their sessions, long-lived API tokens, and failed-login
//! throttling.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{NewAuditEntry, StoreResult};
use std::fmt;

/// An operator's role (what it allows: `services::auth`, `Role::allows`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything.
    Admin,
    /// Devices, profiles, commands; no safeguarding cases.
    Technician,
    /// Designated Safeguarding Lead: cases, quarantine, read devices, register and filter history.
    Dsl,
    /// As the DSL, and the second signature on releases.
    Headteacher,
    /// Read-only: inventory, register, audit log (governors and audit scripts).
    Auditor,
}

impl Role {
    pub const ALL: [Role; 5] = [Role::Admin, Role::Technician, Role::Dsl, Role::Headteacher, Role::Auditor];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Technician => "technician",
            Role::Dsl => "dsl",
            Role::Headteacher => "headteacher",
            Role::Auditor => "auditor",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<String> for Role {
    type Error = String;
    fn try_from(s: String) -> Result<Role, String> {
        Role::parse(&s).ok_or_else(|| format!("unknown role {s:?}"))
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OperatorRecord {
    pub id: Uuid,
    pub username: String,
    pub password_hash: String,
    #[sqlx(try_from = "String")]
    pub role: Role,
    pub disabled: bool,
    pub created_at: DateTime<Utc>,
    pub last_login_at: Option<DateTime<Utc>>,
    /// Carried in every session JWT; moving it on ends all of the operator's sessions.
    pub session_epoch: i64,
}

#[derive(Debug, Clone, Default)]
pub struct OperatorPatch {
    pub role: Option<Role>,
    pub disabled: Option<bool>,
    pub password_hash: Option<String>,
    /// Move the session epoch on: every session the operator has stops working.
    pub end_sessions: bool,
}

/// An operator as a session check sees them: the record, and whether this session was ended
/// by logging out. One query per request (both by primary key).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OperatorSession {
    #[sqlx(flatten)]
    pub operator: OperatorRecord,
    pub session_revoked: bool,
}

/// What counting a login attempt before its password is checked decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginAttempt {
    /// Counted; the password may be checked.
    Admitted,
    /// The key is locked out until then.
    Locked { until: DateTime<Utc> },
    /// As many attempts as allowed are already counted in this window, some of them perhaps
    /// still being checked; the count starts again at `window_ends` at the latest.
    Full { window_ends: DateTime<Utc> },
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ApiTokenRecord {
    pub id: Uuid,
    pub name: String,
    #[sqlx(try_from = "String")]
    pub role: Role,
    pub token_hash: String,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}

#[async_trait::async_trait]
pub trait OperatorStore: Send + Sync {
    /// `Conflict("operator <name>")` if the username is taken.
    async fn create_operator(&self, op: &OperatorRecord, audit: NewAuditEntry) -> StoreResult<()>;
    async fn operator_by_username(&self, username: &str) -> StoreResult<Option<OperatorRecord>>;
    async fn operator_by_id(&self, id: Uuid) -> StoreResult<Option<OperatorRecord>>;
    /// Ordered by username, after `after` (the cursor), at most `limit`.
    async fn list_operators(&self, after: Option<&str>, limit: i64) -> StoreResult<Vec<OperatorRecord>>;
    async fn count_operators(&self) -> StoreResult<i64>;
    /// Apply `patch` and append `audit` in one transaction; `None` (and nothing written) if
    /// there is no such operator.
    async fn update_operator(&self, id: Uuid, patch: &OperatorPatch, audit: NewAuditEntry) -> StoreResult<Option<OperatorRecord>>;
    async fn touch_operator_login(&self, id: Uuid, at: DateTime<Utc>) -> StoreResult<()>;
    /// Operator `id`, and whether the session `jti` was revoked.
    async fn operator_session(&self, id: Uuid, jti: &str) -> StoreResult<Option<OperatorSession>>;
    /// End the session `jti` of operator `operator_id` (a JWT valid until `expires_at`) and
    /// append `audit`, in one transaction; sessions revoked earlier and expired since are
    /// pruned. False (and nothing audited) if it was already revoked.
    async fn revoke_session(
        &self,
        jti: &str,
        operator_id: Uuid,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
        audit: NewAuditEntry,
    ) -> StoreResult<bool>;

    async fn create_api_token(&self, t: &ApiTokenRecord, audit: NewAuditEntry) -> StoreResult<()>;
    async fn api_token_by_hash(&self, token_hash: &str) -> StoreResult<Option<ApiTokenRecord>>;
    async fn api_token_by_id(&self, id: Uuid) -> StoreResult<Option<ApiTokenRecord>>;
    /// Newest first, before `before` (created_at cursor), at most `limit`.
    async fn list_api_tokens(&self, limit: i64) -> StoreResult<Vec<ApiTokenRecord>>;
    /// True if the token existed and was not already revoked.
    /// The audit entry is stored with the revocation, if the token was live.
    async fn revoke_api_token(&self, id: Uuid, at: DateTime<Utc>, audit: NewAuditEntry) -> StoreResult<bool>;
    async fn touch_api_token(&self, id: Uuid, at: DateTime<Utc>) -> StoreResult<()>;

    /// The latest `locked_until` among `keys` that is still in the future.
    async fn login_locked_until(&self, keys: &[String], now: DateTime<Utc>) -> StoreResult<Option<DateTime<Utc>>>;
    /// Count a login attempt for `key` before its password is checked, atomically with the
    /// check that the key has room for it: at most `max` attempts are admitted within `window`
    /// (a window, or a lockout, that is over starts the count again).
    async fn admit_login_attempt(&self, key: &str, now: DateTime<Utc>, window: chrono::Duration, max: i64) -> StoreResult<LoginAttempt>;
    /// An attempt admitted at `admitted_at` turned out not to be a wrong password (or was not
    /// checked at all): give its place back, unless the count has started again since.
    async fn refund_login_attempt(&self, key: &str, admitted_at: DateTime<Utc>) -> StoreResult<()>;
    /// An admitted attempt was a wrong password: once `max` are counted, lock `key` until
    /// `now + lockout`.
    async fn lock_after_failure(&self, key: &str, now: DateTime<Utc>, max: i64, lockout: chrono::Duration) -> StoreResult<()>;
    async fn clear_login_failures(&self, key: &str) -> StoreResult<()>;
}

macro_rules! impl_operator_store {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::OperatorStore for $store {
            async fn create_operator(&self, op: &$crate::store::OperatorRecord, audit: $crate::store::NewAuditEntry) -> $crate::store::StoreResult<()> {
                let mut tx = self.pool.begin().await?;
                sqlx::query(
                    "INSERT INTO operators (id, username, password_hash, role, disabled, created_at, last_login_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(op.id)
                .bind(&op.username)
                .bind(&op.password_hash)
                .bind(op.role.as_str())
                .bind(op.disabled)
                .bind(op.created_at)
                .bind(op.last_login_at)
                .execute(&mut *tx)
                .await
                .map_err($crate::store::conflict_or(&format!("operator {}", op.username)))?;
                $crate::store::audit::append_audit_in!(&mut *tx, audit)?;
                Ok(tx.commit().await?)
            }

            async fn operator_by_username(&self, username: &str) -> $crate::store::StoreResult<Option<$crate::store::OperatorRecord>> {
                Ok(sqlx::query_as("SELECT * FROM operators WHERE username = $1")
                    .bind(username)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn operator_by_id(&self, id: uuid::Uuid) -> $crate::store::StoreResult<Option<$crate::store::OperatorRecord>> {
                Ok(sqlx::query_as("SELECT * FROM operators WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn list_operators(&self, after: Option<&str>, limit: i64) -> $crate::store::StoreResult<Vec<$crate::store::OperatorRecord>> {
                Ok(sqlx::query_as("SELECT * FROM operators WHERE username > $1 ORDER BY username LIMIT $2")
                    .bind(after.unwrap_or(""))
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn count_operators(&self) -> $crate::store::StoreResult<i64> {
                let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM operators").fetch_one(&self.pool).await?;
                Ok(n)
            }

            async fn update_operator(
                &self,
                id: uuid::Uuid,
                patch: &$crate::store::OperatorPatch,
                audit: $crate::store::NewAuditEntry,
            ) -> $crate::store::StoreResult<Option<$crate::store::OperatorRecord>> {
                let mut tx = self.pool.begin().await?;
                let done = sqlx::query(
                    "UPDATE operators SET role = COALESCE($2, role), disabled = COALESCE($3, disabled), \
                     password_hash = COALESCE($4, password_hash), session_epoch = session_epoch + $5 WHERE id = $1",
                )
                .bind(id)
                .bind(patch.role.map(|r| r.as_str()))
                .bind(patch.disabled)
                .bind(patch.password_hash.as_deref())
                .bind(i64::from(patch.end_sessions))
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() == 0 {
                    tx.rollback().await?;
                    return Ok(None);
                }
                let updated: $crate::store::OperatorRecord =
                    sqlx::query_as("SELECT * FROM operators WHERE id = $1").bind(id).fetch_one(&mut *tx).await?;
                $crate::store::audit::append_audit_in!(&mut *tx, audit)?;
                tx.commit().await?;
                Ok(Some(updated))
            }

            async fn touch_operator_login(&self, id: uuid::Uuid, at: chrono::DateTime<chrono::Utc>) -> $crate::store::StoreResult<()> {
                sqlx::query("UPDATE operators SET last_login_at = $2 WHERE id = $1")
                    .bind(id)
                    .bind(at)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn operator_session(
                &self,
                id: uuid::Uuid,
                jti: &str,
            ) -> $crate::store::StoreResult<Option<$crate::store::operators::OperatorSession>> {
                Ok(sqlx::query_as(
                    "SELECT o.*, EXISTS (SELECT 1 FROM revoked_sessions r WHERE r.jti = $2) AS session_revoked \
                     FROM operators o WHERE o.id = $1",
                )
                .bind(id)
                .bind(jti)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn revoke_session(
                &self,
                jti: &str,
                operator_id: uuid::Uuid,
                expires_at: chrono::DateTime<chrono::Utc>,
                now: chrono::DateTime<chrono::Utc>,
                audit: $crate::store::NewAuditEntry,
            ) -> $crate::store::StoreResult<bool> {
                let mut tx = self.pool.begin().await?;
                let done = sqlx::query(
                    "INSERT INTO revoked_sessions (jti, operator_id, expires_at, revoked_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (jti) DO NOTHING",
                )
                .bind(jti)
                .bind(operator_id)
                .bind(expires_at)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() == 0 {
                    tx.rollback().await?;
                    return Ok(false);
                }
                // A session past its expiry is refused anyway: forget it.
                sqlx::query("DELETE FROM revoked_sessions WHERE expires_at < $1").bind(now).execute(&mut *tx).await?;
                $crate::store::audit::append_audit_in!(&mut *tx, audit)?;
                tx.commit().await?;
                Ok(true)
            }

            async fn create_api_token(&self, t: &$crate::store::ApiTokenRecord, audit: $crate::store::NewAuditEntry) -> $crate::store::StoreResult<()> {
                let mut tx = self.pool.begin().await?;
                sqlx::query(
                    "INSERT INTO api_tokens (id, name, role, token_hash, created_by, created_at, expires_at, revoked_at, last_used_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .bind(t.id)
                .bind(&t.name)
                .bind(t.role.as_str())
                .bind(&t.token_hash)
                .bind(&t.created_by)
                .bind(t.created_at)
                .bind(t.expires_at)
                .bind(t.revoked_at)
                .bind(t.last_used_at)
                .execute(&mut *tx)
                .await
                .map_err($crate::store::conflict_or("api token"))?;
                $crate::store::audit::append_audit_in!(&mut *tx, audit)?;
                Ok(tx.commit().await?)
            }

            async fn api_token_by_hash(&self, token_hash: &str) -> $crate::store::StoreResult<Option<$crate::store::ApiTokenRecord>> {
                Ok(sqlx::query_as("SELECT * FROM api_tokens WHERE token_hash = $1")
                    .bind(token_hash)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn api_token_by_id(&self, id: uuid::Uuid) -> $crate::store::StoreResult<Option<$crate::store::ApiTokenRecord>> {
                Ok(sqlx::query_as("SELECT * FROM api_tokens WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn list_api_tokens(&self, limit: i64) -> $crate::store::StoreResult<Vec<$crate::store::ApiTokenRecord>> {
                Ok(sqlx::query_as("SELECT * FROM api_tokens ORDER BY created_at DESC LIMIT $1")
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn revoke_api_token(
                &self,
                id: uuid::Uuid,
                at: chrono::DateTime<chrono::Utc>,
                audit: $crate::store::NewAuditEntry,
            ) -> $crate::store::StoreResult<bool> {
                let mut tx = self.pool.begin().await?;
                let done = sqlx::query("UPDATE api_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
                    .bind(id)
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
                if done.rows_affected() != 1 {
                    return Ok(false);
                }
                $crate::store::audit::append_audit_in!(&mut *tx, audit)?;
                tx.commit().await?;
                Ok(true)
            }

            async fn touch_api_token(&self, id: uuid::Uuid, at: chrono::DateTime<chrono::Utc>) -> $crate::store::StoreResult<()> {
                sqlx::query("UPDATE api_tokens SET last_used_at = $2 WHERE id = $1")
                    .bind(id)
                    .bind(at)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn login_locked_until(
                &self,
                keys: &[String],
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<Option<chrono::DateTime<chrono::Utc>>> {
                let mut latest = None;
                for key in keys {
                    let row: Option<(Option<chrono::DateTime<chrono::Utc>>,)> =
                        sqlx::query_as("SELECT locked_until FROM login_failures WHERE key = $1 AND locked_until > $2")
                            .bind(key)
                            .bind(now)
                            .fetch_optional(&self.pool)
                            .await?;
                    if let Some((Some(until),)) = row {
                        latest = latest.max(Some(until));
                    }
                }
                Ok(latest)
            }

            async fn admit_login_attempt(
                &self,
                key: &str,
                now: chrono::DateTime<chrono::Utc>,
                window: chrono::Duration,
                max: i64,
            ) -> $crate::store::StoreResult<$crate::store::operators::LoginAttempt> {
                use $crate::store::operators::LoginAttempt;
                // The first statement writes the key's row (starting its count again if its
                // window or lockout is over), which holds the row (PostgreSQL) or the database
                // (SQLite) until commit: the check and the count below are one step for every
                // request on every instance.
                let mut tx = self.pool.begin().await?;
                let (failures, window_started_at, locked_until): (
                    i64,
                    chrono::DateTime<chrono::Utc>,
                    Option<chrono::DateTime<chrono::Utc>>,
                ) = sqlx::query_as(
                    "INSERT INTO login_failures (key, failures, window_started_at, locked_until) VALUES ($1, 0, $2, NULL) \
                     ON CONFLICT (key) DO UPDATE SET \
                       failures = CASE WHEN login_failures.locked_until <= $2 \
                         OR (login_failures.locked_until IS NULL AND login_failures.window_started_at < $3) \
                         THEN 0 ELSE login_failures.failures END, \
                       window_started_at = CASE WHEN login_failures.locked_until <= $2 \
                         OR (login_failures.locked_until IS NULL AND login_failures.window_started_at < $3) \
                         THEN $2 ELSE login_failures.window_started_at END, \
                       locked_until = CASE WHEN login_failures.locked_until <= $2 THEN NULL ELSE login_failures.locked_until END \
                     RETURNING failures, window_started_at, locked_until",
                )
                .bind(key)
                .bind(now)
                .bind(now - window)
                .fetch_one(&mut *tx)
                .await?;
                let verdict = match locked_until {
                    Some(until) if until > now => LoginAttempt::Locked { until },
                    _ if failures >= max => LoginAttempt::Full { window_ends: window_started_at + window },
                    _ => {
                        sqlx::query("UPDATE login_failures SET failures = failures + 1 WHERE key = $1")
                            .bind(key)
                            .execute(&mut *tx)
                            .await?;
                        LoginAttempt::Admitted
                    }
                };
                tx.commit().await?;
                Ok(verdict)
            }

            async fn refund_login_attempt(
                &self,
                key: &str,
                admitted_at: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<()> {
                sqlx::query("UPDATE login_failures SET failures = failures - 1 WHERE key = $1 AND failures > 0 AND window_started_at <= $2")
                    .bind(key)
                    .bind(admitted_at)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn lock_after_failure(
                &self,
                key: &str,
                now: chrono::DateTime<chrono::Utc>,
                max: i64,
                lockout: chrono::Duration,
            ) -> $crate::store::StoreResult<()> {
                sqlx::query("UPDATE login_failures SET locked_until = $2 WHERE key = $1 AND failures >= $3 AND (locked_until IS NULL OR locked_until < $4)")
                    .bind(key)
                    .bind(now + lockout)
                    .bind(max)
                    .bind(now)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn clear_login_failures(&self, key: &str) -> $crate::store::StoreResult<()> {
                sqlx::query("DELETE FROM login_failures WHERE key = $1").bind(key).execute(&self.pool).await?;
                Ok(())
            }
        }
    };
}
pub(crate) use impl_operator_store;
