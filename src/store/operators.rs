//! Operators (people who log in), long-lived API tokens, and failed-login throttling.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::StoreResult;
use crate::auth::Role;

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
}

#[derive(Debug, Clone, Default)]
pub struct OperatorPatch {
    pub role: Option<Role>,
    pub disabled: Option<bool>,
    pub password_hash: Option<String>,
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
    async fn create_operator(&self, op: &OperatorRecord) -> StoreResult<()>;
    async fn operator_by_username(&self, username: &str) -> StoreResult<Option<OperatorRecord>>;
    async fn operator_by_id(&self, id: Uuid) -> StoreResult<Option<OperatorRecord>>;
    /// Ordered by username, after `after` (the cursor), at most `limit`.
    async fn list_operators(&self, after: Option<&str>, limit: i64) -> StoreResult<Vec<OperatorRecord>>;
    async fn count_operators(&self) -> StoreResult<i64>;
    async fn update_operator(&self, id: Uuid, patch: &OperatorPatch) -> StoreResult<Option<OperatorRecord>>;
    async fn touch_operator_login(&self, id: Uuid, at: DateTime<Utc>) -> StoreResult<()>;

    async fn create_api_token(&self, t: &ApiTokenRecord) -> StoreResult<()>;
    async fn api_token_by_hash(&self, token_hash: &str) -> StoreResult<Option<ApiTokenRecord>>;
    async fn api_token_by_id(&self, id: Uuid) -> StoreResult<Option<ApiTokenRecord>>;
    /// Newest first, before `before` (created_at cursor), at most `limit`.
    async fn list_api_tokens(&self, limit: i64) -> StoreResult<Vec<ApiTokenRecord>>;
    /// True if the token existed and was not already revoked.
    async fn revoke_api_token(&self, id: Uuid, at: DateTime<Utc>) -> StoreResult<bool>;
    async fn touch_api_token(&self, id: Uuid, at: DateTime<Utc>) -> StoreResult<()>;

    /// The latest `locked_until` among `keys` that is still in the future.
    async fn login_locked_until(&self, keys: &[String], now: DateTime<Utc>) -> StoreResult<Option<DateTime<Utc>>>;
    /// Count a failure for `key`; after `max` failures within `window` lock it until `now + lockout`.
    async fn record_login_failure(
        &self,
        key: &str,
        now: DateTime<Utc>,
        window: chrono::Duration,
        max: i64,
        lockout: chrono::Duration,
    ) -> StoreResult<()>;
    async fn clear_login_failures(&self, key: &str) -> StoreResult<()>;
}

macro_rules! impl_operator_store {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::OperatorStore for $store {
            async fn create_operator(&self, op: &$crate::store::OperatorRecord) -> $crate::store::StoreResult<()> {
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
                .execute(&self.pool)
                .await
                .map_err($crate::store::conflict_or(&format!("operator {}", op.username)))?;
                Ok(())
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
            ) -> $crate::store::StoreResult<Option<$crate::store::OperatorRecord>> {
                sqlx::query(
                    "UPDATE operators SET role = COALESCE($2, role), disabled = COALESCE($3, disabled), \
                     password_hash = COALESCE($4, password_hash) WHERE id = $1",
                )
                .bind(id)
                .bind(patch.role.map(|r| r.as_str()))
                .bind(patch.disabled)
                .bind(patch.password_hash.as_deref())
                .execute(&self.pool)
                .await?;
                self.operator_by_id(id).await
            }

            async fn touch_operator_login(&self, id: uuid::Uuid, at: chrono::DateTime<chrono::Utc>) -> $crate::store::StoreResult<()> {
                sqlx::query("UPDATE operators SET last_login_at = $2 WHERE id = $1")
                    .bind(id)
                    .bind(at)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn create_api_token(&self, t: &$crate::store::ApiTokenRecord) -> $crate::store::StoreResult<()> {
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
                .execute(&self.pool)
                .await
                .map_err($crate::store::conflict_or("api token"))?;
                Ok(())
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

            async fn revoke_api_token(&self, id: uuid::Uuid, at: chrono::DateTime<chrono::Utc>) -> $crate::store::StoreResult<bool> {
                let done = sqlx::query("UPDATE api_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
                    .bind(id)
                    .bind(at)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() == 1)
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

            async fn record_login_failure(
                &self,
                key: &str,
                now: chrono::DateTime<chrono::Utc>,
                window: chrono::Duration,
                max: i64,
                lockout: chrono::Duration,
            ) -> $crate::store::StoreResult<()> {
                // One statement, so that concurrent failures on several instances all count.
                sqlx::query(
                    "INSERT INTO login_failures (key, failures, window_started_at, locked_until) VALUES ($1, 1, $2, NULL) \
                     ON CONFLICT (key) DO UPDATE SET \
                       failures = CASE WHEN login_failures.window_started_at < $3 THEN 1 ELSE login_failures.failures + 1 END, \
                       window_started_at = CASE WHEN login_failures.window_started_at < $3 THEN $2 ELSE login_failures.window_started_at END",
                )
                .bind(key)
                .bind(now)
                .bind(now - window)
                .execute(&self.pool)
                .await?;
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
