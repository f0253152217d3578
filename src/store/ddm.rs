//! Declarative Device Management's storage: each device's last status items and declaration
//! states, the DDM flags on the device row, the declarations operators give groups, and OS
//! updates by deadline.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{NewAuditEntry, StoreResult};

/// One status item's last value (udid, item, value JSON, at).
pub(crate) const PUT_STATUS_ITEM: &str = "INSERT INTO ddm_status (udid, item, value, at) VALUES ($1, $2, $3, $4) \
     ON CONFLICT (udid, item) DO UPDATE SET value = excluded.value, at = excluded.at";
/// One declaration's last state (udid, identifier, server token, active, valid, reasons, at).
pub(crate) const PUT_DECLARATION_STATUS: &str = "INSERT INTO ddm_declaration_status (udid, identifier, server_token, active, valid, reasons, at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (udid, identifier) DO UPDATE SET \
     server_token = excluded.server_token, active = excluded.active, valid = excluded.valid, \
     reasons = excluded.reasons, at = excluded.at";
/// The device talked to the DDM endpoint (udid, at): kept the first time only.
pub(crate) const MARK_DDM_ENABLED: &str = "UPDATE devices SET ddm_enabled_at = $2 WHERE udid = $1 AND ddm_enabled_at IS NULL";

/// A declaration an operator gave a group.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct GroupDeclarationRecord {
    pub group_id: Uuid,
    pub identifier: String,
    #[sqlx(rename = "type")]
    pub declaration_type: String,
    /// The Payload, as JSON.
    pub payload: String,
    pub server_token: String,
    pub updated_by: String,
    pub updated_at: DateTime<Utc>,
}

/// An OS update by deadline for a group's devices.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct OsUpdateRecord {
    pub id: Uuid,
    pub group_id: Uuid,
    pub target_os_version: String,
    pub target_build_version: Option<String>,
    /// Local school time, `yyyy-mm-ddThh:mm:ss`.
    pub deadline: String,
    pub details_url: Option<String>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub cancelled_by: Option<String>,
    pub cancelled_at: Option<DateTime<Utc>>,
}

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
    /// Keep a report's items and declaration states (each replacing the last), bring the
    /// device's inventory up to date with it, and mark DDM on if it was not: one transaction.
    async fn put_ddm_status(
        &self,
        udid: &str,
        items: &[(String, String)],
        declarations: &[DdmDeclarationStatus],
        inventory: &super::InventoryUpdate,
        at: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// Keep the device's new DeclarationsToken and when it changed.
    async fn put_ddm_token(&self, udid: &str, token: &str, at: DateTime<Utc>) -> StoreResult<()>;
    /// The device's DDM state; None for an unknown device.
    async fn ddm_state(&self, udid: &str) -> StoreResult<Option<DdmState>>;
    async fn ddm_status(&self, udid: &str) -> StoreResult<Vec<DdmStatusItem>>;
    async fn ddm_declaration_status(&self, udid: &str) -> StoreResult<Vec<DdmDeclarationStatus>>;
    /// The DDM state of each of these devices that exists.
    async fn ddm_states(&self, udids: &[String]) -> StoreResult<Vec<(String, DdmState)>>;
    /// Keep new DeclarationsTokens for many devices at once (one transaction).
    async fn put_ddm_tokens(&self, tokens: &[(String, String)], at: DateTime<Utc>) -> StoreResult<()>;
    /// The last values of these status items for these devices, as (udid, item, value JSON).
    async fn ddm_status_of(&self, udids: &[String], items: &[&str]) -> StoreResult<Vec<(String, String, String)>>;

    /// The rows of these devices that exist.
    async fn devices_of(&self, udids: &[String]) -> StoreResult<Vec<super::DeviceRecord>>;
    /// The live groups each of these devices is in now, as (udid, group).
    async fn groups_of_devices(&self, udids: &[String]) -> StoreResult<Vec<(String, Uuid)>>;
    /// The current holder of each of these devices that has one.
    async fn holders_of(&self, udids: &[String], now: DateTime<Utc>) -> StoreResult<Vec<super::HolderRow>>;

    /// A group's declarations, by identifier.
    async fn group_declarations(&self, group_id: Uuid) -> StoreResult<Vec<GroupDeclarationRecord>>;
    /// The declarations of all these groups.
    async fn declarations_of_groups(&self, group_ids: &[Uuid]) -> StoreResult<Vec<GroupDeclarationRecord>>;
    /// Replace a group's declarations with `records`, with the operator's audit entry, in one
    /// transaction.
    async fn put_group_declarations(&self, group_id: Uuid, records: &[GroupDeclarationRecord], audit: NewAuditEntry) -> StoreResult<()>;

    async fn create_os_update(&self, u: &OsUpdateRecord, audit: NewAuditEntry) -> StoreResult<()>;
    async fn os_update(&self, id: Uuid) -> StoreResult<Option<OsUpdateRecord>>;
    /// Every OS update, newest first; cancelled ones too when `with_cancelled`.
    async fn list_os_updates(&self, with_cancelled: bool) -> StoreResult<Vec<OsUpdateRecord>>;
    /// The live OS updates of these groups.
    async fn os_updates_of_groups(&self, group_ids: &[Uuid]) -> StoreResult<Vec<OsUpdateRecord>>;
    /// Cancel a live update with the audit entry; false if it was not live (nothing audited).
    async fn cancel_os_update(&self, id: Uuid, by: &str, at: DateTime<Utc>, audit: NewAuditEntry) -> StoreResult<bool>;
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
                sqlx::query($crate::store::ddm::MARK_DDM_ENABLED).bind(udid).bind(at).execute(&self.pool).await?;
                Ok(())
            }

            async fn put_ddm_status(
                &self,
                udid: &str,
                items: &[(String, String)],
                declarations: &[$crate::store::DdmDeclarationStatus],
                inventory: &$crate::store::InventoryUpdate,
                at: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<()> {
                if let Some(db) = $crate::store::inline::InPlace::inline(self)
                    && let $crate::store::inline::Ran::Done(done) = db.put_ddm_status(udid, items, declarations, inventory, at)?
                {
                    return Ok(done);
                }
                let mut tx = self.pool.begin().await?;
                for (item, value) in items {
                    sqlx::query($crate::store::ddm::PUT_STATUS_ITEM).bind(udid).bind(item).bind(value).bind(at).execute(&mut *tx).await?;
                }
                for d in declarations {
                    sqlx::query($crate::store::ddm::PUT_DECLARATION_STATUS)
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
                $crate::store::inventory::bind_inventory!(sqlx::query($crate::store::inventory::UPDATE_INVENTORY).bind(udid), inventory)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query($crate::store::ddm::MARK_DDM_ENABLED).bind(udid).bind(at).execute(&mut *tx).await?;
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

            async fn ddm_states(&self, udids: &[String]) -> $crate::store::StoreResult<Vec<(String, $crate::store::DdmState)>> {
                let mut out = Vec::with_capacity(udids.len());
                for chunk in udids.chunks(500) {
                    let mut q = sqlx::QueryBuilder::<$db>::new(
                        "SELECT udid, ddm_requested_at, ddm_enabled_at, ddm_declarations_token, ddm_token_changed_at FROM devices WHERE udid IN (",
                    );
                    let mut list = q.separated(", ");
                    for u in chunk {
                        list.push_bind(u);
                    }
                    q.push(")");
                    #[derive(sqlx::FromRow)]
                    struct Row {
                        udid: String,
                        #[sqlx(flatten)]
                        state: $crate::store::DdmState,
                    }
                    let rows: Vec<Row> = q.build_query_as().fetch_all(&self.pool).await?;
                    out.extend(rows.into_iter().map(|r| (r.udid, r.state)));
                }
                Ok(out)
            }

            async fn put_ddm_tokens(&self, tokens: &[(String, String)], at: chrono::DateTime<chrono::Utc>) -> $crate::store::StoreResult<()> {
                let mut tx = self.pool.begin().await?;
                for (udid, token) in tokens {
                    sqlx::query("UPDATE devices SET ddm_declarations_token = $2, ddm_token_changed_at = $3 WHERE udid = $1")
                        .bind(udid)
                        .bind(token)
                        .bind(at)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn ddm_status_of(&self, udids: &[String], items: &[&str]) -> $crate::store::StoreResult<Vec<(String, String, String)>> {
                let mut out = Vec::new();
                if items.is_empty() {
                    return Ok(out);
                }
                for chunk in udids.chunks(500) {
                    let mut q = sqlx::QueryBuilder::<$db>::new("SELECT udid, item, value FROM ddm_status WHERE udid IN (");
                    let mut list = q.separated(", ");
                    for u in chunk {
                        list.push_bind(u);
                    }
                    q.push(") AND item IN (");
                    let mut list = q.separated(", ");
                    for i in items {
                        list.push_bind(*i);
                    }
                    q.push(")");
                    out.extend(q.build_query_as::<(String, String, String)>().fetch_all(&self.pool).await?);
                }
                Ok(out)
            }

            async fn devices_of(&self, udids: &[String]) -> $crate::store::StoreResult<Vec<$crate::store::DeviceRecord>> {
                let mut out = Vec::new();
                for chunk in udids.chunks(500) {
                    let mut q = sqlx::QueryBuilder::<$db>::new("SELECT * FROM devices WHERE udid IN (");
                    let mut list = q.separated(", ");
                    for u in chunk {
                        list.push_bind(u);
                    }
                    q.push(") ORDER BY udid");
                    out.extend(q.build_query_as::<$crate::store::DeviceRecord>().fetch_all(&self.pool).await?);
                }
                Ok(out)
            }

            async fn groups_of_devices(&self, udids: &[String]) -> $crate::store::StoreResult<Vec<(String, uuid::Uuid)>> {
                let mut out = Vec::new();
                for chunk in udids.chunks(500) {
                    let mut q = sqlx::QueryBuilder::<$db>::new(
                        "SELECT DISTINCT m.udid, m.group_id FROM group_memberships m JOIN device_groups g ON g.id = m.group_id \
                         WHERE m.removed_at IS NULL AND g.deleted_at IS NULL AND m.udid IN (",
                    );
                    let mut list = q.separated(", ");
                    for u in chunk {
                        list.push_bind(u);
                    }
                    q.push(")");
                    out.extend(q.build_query_as::<(String, uuid::Uuid)>().fetch_all(&self.pool).await?);
                }
                Ok(out)
            }

            async fn holders_of(&self, udids: &[String], now: chrono::DateTime<chrono::Utc>) -> $crate::store::StoreResult<Vec<$crate::store::HolderRow>> {
                let mut out = Vec::new();
                for chunk in udids.chunks(500) {
                    let mut q = sqlx::QueryBuilder::<$db>::new(
                        "SELECT a.udid, p.kind, p.year_group, p.key_stage FROM assignments a JOIN people p ON p.id = a.person_id WHERE a.started_at <= ",
                    );
                    q.push_bind(now);
                    q.push(" AND (a.ended_at IS NULL OR a.ended_at > ");
                    q.push_bind(now);
                    q.push(") AND a.udid IN (");
                    let mut list = q.separated(", ");
                    for u in chunk {
                        list.push_bind(u);
                    }
                    q.push(") ORDER BY a.udid, a.started_at");
                    out.extend(q.build_query_as::<$crate::store::HolderRow>().fetch_all(&self.pool).await?);
                }
                Ok(out)
            }

            async fn group_declarations(&self, group_id: uuid::Uuid) -> $crate::store::StoreResult<Vec<$crate::store::GroupDeclarationRecord>> {
                Ok(sqlx::query_as("SELECT * FROM group_declarations WHERE group_id = $1 ORDER BY identifier")
                    .bind(group_id)
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn declarations_of_groups(&self, group_ids: &[uuid::Uuid]) -> $crate::store::StoreResult<Vec<$crate::store::GroupDeclarationRecord>> {
                if group_ids.is_empty() {
                    return Ok(Vec::new());
                }
                let mut q = sqlx::QueryBuilder::<$db>::new("SELECT * FROM group_declarations WHERE group_id IN (");
                let mut list = q.separated(", ");
                for g in group_ids {
                    list.push_bind(*g);
                }
                q.push(") ORDER BY group_id, identifier");
                Ok(q.build_query_as().fetch_all(&self.pool).await?)
            }

            async fn put_group_declarations(
                &self,
                group_id: uuid::Uuid,
                records: &[$crate::store::GroupDeclarationRecord],
                audit: $crate::store::NewAuditEntry,
            ) -> $crate::store::StoreResult<()> {
                let mut tx = self.pool.begin().await?;
                sqlx::query("DELETE FROM group_declarations WHERE group_id = $1").bind(group_id).execute(&mut *tx).await?;
                for r in records {
                    sqlx::query(
                        "INSERT INTO group_declarations (group_id, identifier, type, payload, server_token, updated_by, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    )
                    .bind(group_id)
                    .bind(&r.identifier)
                    .bind(&r.declaration_type)
                    .bind(&r.payload)
                    .bind(&r.server_token)
                    .bind(&r.updated_by)
                    .bind(r.updated_at)
                    .execute(&mut *tx)
                    .await?;
                }
                $crate::store::audit::append_audit_in!(&mut *tx, audit)?;
                tx.commit().await?;
                Ok(())
            }

            async fn create_os_update(&self, u: &$crate::store::OsUpdateRecord, audit: $crate::store::NewAuditEntry) -> $crate::store::StoreResult<()> {
                let mut tx = self.pool.begin().await?;
                sqlx::query(
                    "INSERT INTO os_updates (id, group_id, target_os_version, target_build_version, deadline, details_url, \
                     created_by, created_at, cancelled_by, cancelled_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, NULL)",
                )
                .bind(u.id)
                .bind(u.group_id)
                .bind(&u.target_os_version)
                .bind(&u.target_build_version)
                .bind(&u.deadline)
                .bind(&u.details_url)
                .bind(&u.created_by)
                .bind(u.created_at)
                .execute(&mut *tx)
                .await?;
                $crate::store::audit::append_audit_in!(&mut *tx, audit)?;
                tx.commit().await?;
                Ok(())
            }

            async fn os_update(&self, id: uuid::Uuid) -> $crate::store::StoreResult<Option<$crate::store::OsUpdateRecord>> {
                Ok(sqlx::query_as("SELECT * FROM os_updates WHERE id = $1").bind(id).fetch_optional(&self.pool).await?)
            }

            async fn list_os_updates(&self, with_cancelled: bool) -> $crate::store::StoreResult<Vec<$crate::store::OsUpdateRecord>> {
                Ok(sqlx::query_as("SELECT * FROM os_updates WHERE $1 OR cancelled_at IS NULL ORDER BY created_at DESC, id")
                    .bind(with_cancelled)
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn os_updates_of_groups(&self, group_ids: &[uuid::Uuid]) -> $crate::store::StoreResult<Vec<$crate::store::OsUpdateRecord>> {
                if group_ids.is_empty() {
                    return Ok(Vec::new());
                }
                let mut q = sqlx::QueryBuilder::<$db>::new("SELECT * FROM os_updates WHERE cancelled_at IS NULL AND group_id IN (");
                let mut list = q.separated(", ");
                for g in group_ids {
                    list.push_bind(*g);
                }
                q.push(") ORDER BY created_at, id");
                Ok(q.build_query_as().fetch_all(&self.pool).await?)
            }

            async fn cancel_os_update(
                &self,
                id: uuid::Uuid,
                by: &str,
                at: chrono::DateTime<chrono::Utc>,
                audit: $crate::store::NewAuditEntry,
            ) -> $crate::store::StoreResult<bool> {
                let mut tx = self.pool.begin().await?;
                let r = sqlx::query("UPDATE os_updates SET cancelled_by = $2, cancelled_at = $3 WHERE id = $1 AND cancelled_at IS NULL")
                    .bind(id)
                    .bind(by)
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
                if r.rows_affected() == 0 {
                    return Ok(false);
                }
                $crate::store::audit::append_audit_in!(&mut *tx, audit)?;
                tx.commit().await?;
                Ok(true)
            }
        }
    };
}
pub(crate) use impl_ddm_store;
