//! Declarative Device Management's storage: each device's last status items and declaration
//! states, and the DDM flags on the device row.

use chrono::{DateTime, Utc};

use super::StoreResult;

/// One declaration's state on a device, as last reported.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DdmDeclarationStatus {
    pub identifier: String,
    pub server_token: Option<String>,
    pub active: Option<bool>,
    pub valid: Option<String>,
    /// JSON array of the reasons in words.
    pub reasons: String,
    pub at: DateTime<Utc>,
}

/// One status item, as last reported.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DdmStatusItem {
    pub item: String,
    /// JSON.
    pub value: String,
    pub at: DateTime<Utc>,
}

/// A device's DDM flags and token.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DdmState {
    pub ddm_requested_at: Option<DateTime<Utc>>,
    pub ddm_enabled_at: Option<DateTime<Utc>>,
    pub ddm_declarations_token: Option<String>,
    pub ddm_token_changed_at: Option<DateTime<Utc>>,
}

#[async_trait::async_trait]
pub trait DdmStore: Send + Sync {
    /// Mark that Lanyard turns DDM on for this device now: true when it had not asked before.
    async fn claim_ddm_request(&self, udid: &str, at: DateTime<Utc>) -> StoreResult<bool>;
    /// The device talked to the DDM endpoint (first time only).
    async fn mark_ddm_enabled(&self, udid: &str, at: DateTime<Utc>) -> StoreResult<()>;
    /// Keep a report's items and declaration states (each replacing the last), in one
    /// transaction.
    async fn put_ddm_status(
        &self,
        udid: &str,
        items: &[(String, String)],
        declarations: &[DdmDeclarationStatus],
        at: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// Keep the device's new DeclarationsToken and when it changed.
    async fn put_ddm_token(&self, udid: &str, token: &str, at: DateTime<Utc>) -> StoreResult<()>;
    /// The device's DDM state; None for an unknown device.
    async fn ddm_state(&self, udid: &str) -> StoreResult<Option<DdmState>>;
    async fn ddm_status(&self, udid: &str) -> StoreResult<Vec<DdmStatusItem>>;
    async fn ddm_declaration_status(&self, udid: &str) -> StoreResult<Vec<DdmDeclarationStatus>>;
}

macro_rules! impl_ddm_store {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::DdmStore for $store {
            async fn claim_ddm_request(&self, udid: &str, at: chrono::DateTime<chrono::Utc>) -> $crate::store::StoreResult<bool> {
                let r = sqlx::query("UPDATE devices SET ddm_requested_at = $2 WHERE udid = $1 AND ddm_requested_at IS NULL")
                    .bind(udid)
                    .bind(at)
                    .execute(&self.pool)
                    .await?;
                Ok(r.rows_affected() == 1)
            }

            async fn mark_ddm_enabled(&self, udid: &str, at: chrono::DateTime<chrono::Utc>) -> $crate::store::StoreResult<()> {
                sqlx::query("UPDATE devices SET ddm_enabled_at = $2 WHERE udid = $1 AND ddm_enabled_at IS NULL")
                    .bind(udid)
                    .bind(at)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn put_ddm_status(
                &self,
                udid: &str,
                items: &[(String, String)],
                declarations: &[$crate::store::DdmDeclarationStatus],
                at: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<()> {
                let mut tx = self.pool.begin().await?;
                for (item, value) in items {
                    sqlx::query(
                        "INSERT INTO ddm_status (udid, item, value, at) VALUES ($1, $2, $3, $4) \
                         ON CONFLICT (udid, item) DO UPDATE SET value = excluded.value, at = excluded.at",
                    )
                    .bind(udid)
                    .bind(item)
                    .bind(value)
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
                }
                for d in declarations {
                    sqlx::query(
                        "INSERT INTO ddm_declaration_status (udid, identifier, server_token, active, valid, reasons, at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (udid, identifier) DO UPDATE SET \
                         server_token = excluded.server_token, active = excluded.active, valid = excluded.valid, \
                         reasons = excluded.reasons, at = excluded.at",
                    )
                    .bind(udid)
                    .bind(&d.identifier)
                    .bind(&d.server_token)
                    .bind(d.active)
                    .bind(&d.valid)
                    .bind(&d.reasons)
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn put_ddm_token(&self, udid: &str, token: &str, at: chrono::DateTime<chrono::Utc>) -> $crate::store::StoreResult<()> {
                sqlx::query("UPDATE devices SET ddm_declarations_token = $2, ddm_token_changed_at = $3 WHERE udid = $1")
                    .bind(udid)
                    .bind(token)
                    .bind(at)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn ddm_state(&self, udid: &str) -> $crate::store::StoreResult<Option<$crate::store::DdmState>> {
                Ok(sqlx::query_as(
                    "SELECT ddm_requested_at, ddm_enabled_at, ddm_declarations_token, ddm_token_changed_at FROM devices WHERE udid = $1",
                )
                .bind(udid)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn ddm_status(&self, udid: &str) -> $crate::store::StoreResult<Vec<$crate::store::DdmStatusItem>> {
                Ok(sqlx::query_as("SELECT item, value, at FROM ddm_status WHERE udid = $1 ORDER BY item")
                    .bind(udid)
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn ddm_declaration_status(&self, udid: &str) -> $crate::store::StoreResult<Vec<$crate::store::DdmDeclarationStatus>> {
                Ok(sqlx::query_as(
                    "SELECT identifier, server_token, active, valid, reasons, at FROM ddm_declaration_status WHERE udid = $1 ORDER BY identifier",
                )
                .bind(udid)
                .fetch_all(&self.pool)
                .await?)
            }
        }
    };
}
pub(crate) use impl_ddm_store;
