//! Profiles for schools: the library and its versions, device groups and their assignments, what
//! each device has, the profile commands reconcile queued, filtering changes, the timetable and
//! schedules, escrowed FileVault keys. The rules live in `crate::services::profiles`; this module stores.
//!
//! Group membership is the register's `group_memberships` history table: an open row
//! (`removed_at IS NULL`) is a current member. Smart groups write it through
//! [`super::RegisterStore::record_group_membership`] and `end_group_membership`; an operator's
//! change to a static group through [`ProfileStore::add_group_members`] and
//! [`ProfileStore::remove_group_member`], which store the operator's audit entry with it.
//!
//! Every operator write here takes its audit entry and appends it inside the write's own
//! transaction (only when the write changed something), so that a change and its record in the
//! audit log commit together or not at all.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{NewAuditEntry, StoreResult};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ProfileRecord {
    pub id: Uuid,
    pub name: String,
    /// The current version's top-level `PayloadIdentifier`.
    pub identifier: String,
    /// The version devices should have.
    pub version: i64,
    pub baseline: bool,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
    pub deleted_by: Option<String>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ProfileVersionRecord {
    pub profile_id: Uuid,
    pub version: i64,
    /// Normalised XML, unsigned.
    pub xml: Vec<u8>,
    pub sha256: String,
    pub identifier: String,
    pub payload_uuid: String,
    pub display_name: Option<String>,
    /// JSON array of payload types.
    pub payload_types: String,
    /// JSON `FilterPolicy`, for a filtering profile.
    pub filtering: Option<String>,
    /// The filtering change that made this version, if one did.
    pub change_id: Option<Uuid>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct GroupRecord {
    pub id: Uuid,
    pub name: String,
    /// `static` or `smart`.
    pub kind: String,
    /// JSON rules of a smart group.
    pub rules: Option<String>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
    pub deleted_by: Option<String>,
}

/// A profile on a device, as far as Lanyard knows.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeviceProfileRecord {
    pub udid: String,
    pub identifier: String,
    pub payload_uuid: Option<String>,
    pub display_name: Option<String>,
    /// The Lanyard profile, when Lanyard installed it.
    pub profile_id: Option<Uuid>,
    pub version: Option<i64>,
    /// Lanyard installed it: only these are ever removed.
    pub lanyard: bool,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ProfileCommandRecord {
    pub command_uuid: String,
    pub udid: String,
    /// `install` or `remove`.
    pub action: String,
    pub identifier: String,
    pub profile_id: Option<Uuid>,
    pub version: Option<i64>,
    pub queued_at: DateTime<Utc>,
    /// `acknowledged` or `error` once the device answered.
    pub outcome: Option<String>,
    pub error: Option<String>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// A profile command with the queue's status for its target.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ProfileCommandState {
    #[sqlx(flatten)]
    pub command: ProfileCommandRecord,
    pub target_status: String,
    pub target_expires_at: Option<DateTime<Utc>>,
}

impl ProfileCommandState {
    /// Still waiting for the device (queued, sent or deferred, and not expired).
    pub fn is_pending(&self, now: DateTime<Utc>) -> bool {
        super::commands::PENDING.contains(&self.target_status.as_str()) && self.target_expires_at.is_none_or(|e| e > now)
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct FilteringChangeRecord {
    pub id: Uuid,
    pub profile_id: Uuid,
    pub profile_name: String,
    /// `update`, `delete`, `assign` or `unassign`.
    pub kind: String,
    pub group_id: Option<Uuid>,
    pub group_name: Option<String>,
    /// The profile version the proposal was made against.
    pub base_version: i64,
    /// The proposed profile (an `update`).
    pub proposed_xml: Option<Vec<u8>>,
    /// JSON `FilterPolicy` before and after.
    pub before_policy: Option<String>,
    pub after_policy: Option<String>,
    /// JSON array of the diff's lines.
    pub diff: String,
    pub reason: String,
    pub risk_assessment_ref: String,
    /// `proposed`, `approved`, `rejected` or `deployed`.
    pub state: String,
    pub proposed_by: String,
    pub proposed_at: DateTime<Utc>,
    pub decided_by: Option<String>,
    pub decided_at: Option<DateTime<Utc>>,
    pub decision_justification: Option<String>,
    pub deployed_version: Option<i64>,
    pub deployed_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TimetableRecord {
    pub timezone: String,
    /// JSON array of periods.
    pub periods: String,
    /// JSON array of terms.
    pub terms: String,
    pub updated_by: String,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ScheduleRecord {
    pub id: Uuid,
    pub profile_id: Uuid,
    pub group_id: Uuid,
    pub when_kind: String,
    pub active: bool,
    pub changed_at: DateTime<Utc>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
    pub deleted_by: Option<String>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct FileVaultKeyRecord {
    pub udid: String,
    pub key_sealed: Vec<u8>,
    pub device_key: Option<String>,
    pub escrowed_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The register's current holder of a device, for smart-group rules.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct HolderRow {
    pub udid: String,
    pub kind: String,
    pub year_group: Option<String>,
    pub key_stage: Option<String>,
}

/// What an approved filtering change does, for [`ProfileStore::deploy_filtering_change`].
#[derive(Debug, Clone, Copy)]
pub enum FilteringDeploy<'a> {
    /// Store this version and make it current (as [`ProfileStore::add_profile_version`]).
    NewVersion(&'a ProfileVersionRecord),
    /// Soft-delete the profile (as [`ProfileStore::delete_profile`]).
    Delete { profile_id: Uuid, by: &'a str },
    /// Assign the profile to the group (as [`ProfileStore::assign_profile`]).
    Assign { group_id: Uuid, profile_id: Uuid, by: &'a str },
    /// Take the profile off the group (as [`ProfileStore::unassign_profile`]).
    Unassign { group_id: Uuid, profile_id: Uuid },
}

#[async_trait::async_trait]
pub trait ProfileStore: Send + Sync {
    // ---- the library ----
    /// Profiles ever created, deleted ones included.
    async fn count_profiles(&self) -> StoreResult<i64>;
    /// A new profile and its first version, together, with the operator's audit entry (None:
    /// the baseline at first start). `Conflict` on a live name or identifier.
    async fn create_profile(&self, p: &ProfileRecord, v: &ProfileVersionRecord, audit: Option<NewAuditEntry>) -> StoreResult<()>;
    /// Store version `v.version` and make it current, with the audit entry, if the profile is
    /// live and at `v.version - 1`; `Conflict` otherwise (or on a live identifier clash).
    async fn add_profile_version(&self, v: &ProfileVersionRecord, at: DateTime<Utc>, audit: NewAuditEntry) -> StoreResult<()>;
    /// Deleted ones too.
    async fn profile(&self, id: Uuid) -> StoreResult<Option<ProfileRecord>>;
    async fn profile_by_name(&self, name: &str) -> StoreResult<Option<ProfileRecord>>;
    async fn profile_by_identifier(&self, identifier: &str) -> StoreResult<Option<ProfileRecord>>;
    /// Live profiles by name.
    async fn list_profiles(&self) -> StoreResult<Vec<ProfileRecord>>;
    async fn profile_version(&self, id: Uuid, version: i64) -> StoreResult<Option<ProfileVersionRecord>>;
    /// Oldest first.
    async fn profile_versions(&self, id: Uuid) -> StoreResult<Vec<ProfileVersionRecord>>;
    /// Soft delete: the profile leaves every group and schedule. False if already deleted
    /// (and nothing audited).
    async fn delete_profile(&self, id: Uuid, by: &str, at: DateTime<Utc>, audit: NewAuditEntry) -> StoreResult<bool>;

    // ---- groups ----
    async fn create_group(&self, g: &GroupRecord, audit: NewAuditEntry) -> StoreResult<()>;
    /// Deleted ones too.
    async fn group(&self, id: Uuid) -> StoreResult<Option<GroupRecord>>;
    async fn group_by_name(&self, name: &str) -> StoreResult<Option<GroupRecord>>;
    /// Live groups by name.
    async fn list_groups(&self) -> StoreResult<Vec<GroupRecord>>;
    /// False if the group is deleted (and nothing audited).
    async fn update_group(&self, id: Uuid, name: &str, rules: Option<&str>, at: DateTime<Utc>, audit: NewAuditEntry) -> StoreResult<bool>;
    /// Soft delete: ends every membership at `at`, drops assignments and schedules. False if
    /// already deleted (and nothing audited).
    async fn delete_group(&self, id: Uuid, by: &str, at: DateTime<Utc>, audit: NewAuditEntry) -> StoreResult<bool>;
    /// Open a membership for each device not already a member, with the operator's audit
    /// entry (a static group). Returns how many were opened; none, nothing audited.
    async fn add_group_members(&self, group_id: Uuid, udids: &[String], at: DateTime<Utc>, audit: NewAuditEntry) -> StoreResult<u64>;
    /// End the device's membership, with the audit entry. False if it was not a member (and
    /// nothing audited).
    async fn remove_group_member(&self, group_id: Uuid, udid: &str, at: DateTime<Utc>, audit: NewAuditEntry) -> StoreResult<bool>;
    /// Current members.
    async fn group_members(&self, group_id: Uuid) -> StoreResult<Vec<String>>;
    /// The live groups a device is in now.
    async fn groups_of_device(&self, udid: &str) -> StoreResult<Vec<Uuid>>;
    /// Every open membership of a live smart group, as (group, udid).
    async fn smart_memberships(&self) -> StoreResult<Vec<(Uuid, String)>>;
    /// False if it was already assigned (and nothing audited).
    async fn assign_profile(
        &self,
        group_id: Uuid,
        profile_id: Uuid,
        by: &str,
        at: DateTime<Utc>,
        audit: NewAuditEntry,
    ) -> StoreResult<bool>;
    /// False if it was not assigned (and nothing audited).
    async fn unassign_profile(&self, group_id: Uuid, profile_id: Uuid, audit: NewAuditEntry) -> StoreResult<bool>;
    async fn group_profile_ids(&self, group_id: Uuid) -> StoreResult<Vec<Uuid>>;
    async fn profile_group_ids(&self, profile_id: Uuid) -> StoreResult<Vec<Uuid>>;
    /// (profile, current version, identifier) of every live profile assigned to a live group the
    /// device is in.
    async fn assigned_profiles_for_device(&self, udid: &str) -> StoreResult<Vec<(Uuid, i64, String)>>;

    // ---- what devices have ----
    async fn device_profiles(&self, udid: &str) -> StoreResult<Vec<DeviceProfileRecord>>;
    async fn profile_device_rows(&self, profile_id: Uuid) -> StoreResult<Vec<DeviceProfileRecord>>;
    /// Insert or replace one row.
    async fn put_device_profile(&self, r: &DeviceProfileRecord) -> StoreResult<()>;
    async fn remove_device_profile(&self, udid: &str, identifier: &str) -> StoreResult<()>;
    /// A ProfileList answer: rows not in `list` go; new ones come in as not Lanyard's; rows
    /// already known keep what Lanyard knows about them.
    async fn sync_device_profiles(&self, udid: &str, list: &[DeviceProfileRecord]) -> StoreResult<()>;
    /// Forget a device's profiles (a new enrolment starts with none of Lanyard's).
    async fn clear_device_profiles(&self, udid: &str) -> StoreResult<()>;

    // ---- profile commands ----
    async fn record_profile_commands(&self, recs: &[ProfileCommandRecord]) -> StoreResult<()>;
    async fn profile_command(&self, command_uuid: &str, udid: &str) -> StoreResult<Option<ProfileCommandRecord>>;
    async fn finish_profile_command(
        &self,
        command_uuid: &str,
        udid: &str,
        outcome: &str,
        error: Option<&str>,
        at: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// A device's profile commands queued since `since`, oldest first, with the queue's status.
    async fn profile_command_states(&self, udid: &str, since: DateTime<Utc>) -> StoreResult<Vec<ProfileCommandState>>;
    /// The same for every device, for one profile.
    async fn profile_command_states_for_profile(&self, profile_id: Uuid, since: DateTime<Utc>) -> StoreResult<Vec<ProfileCommandState>>;

    // ---- filtering change control ----
    /// A proposal, with its audit entry.
    async fn create_filtering_change(&self, c: &FilteringChangeRecord, audit: NewAuditEntry) -> StoreResult<()>;
    async fn filtering_change(&self, id: Uuid) -> StoreResult<Option<FilteringChangeRecord>>;
    /// Newest first; `before` is the cursor (proposed_at, id) of the last row seen.
    async fn list_filtering_changes(
        &self,
        state: Option<&str>,
        profile_id: Option<Uuid>,
        before: Option<(DateTime<Utc>, Uuid)>,
        limit: i64,
    ) -> StoreResult<Vec<FilteringChangeRecord>>;
    /// `proposed` -> `state` (approved or rejected), with the decision's audit entry; false if
    /// it was no longer proposed (and nothing audited).
    async fn decide_filtering_change(
        &self,
        id: Uuid,
        state: &str,
        by: &str,
        justification: &str,
        at: DateTime<Utc>,
        audit: NewAuditEntry,
    ) -> StoreResult<bool>;
    /// `approved` -> `deployed` (`version`: the profile version it deployed), the change itself
    /// (`write`) and the deployment's audit entry, in one transaction. False if the change was
    /// no longer approved (and nothing written).
    async fn deploy_filtering_change(
        &self,
        id: Uuid,
        write: FilteringDeploy<'_>,
        version: Option<i64>,
        at: DateTime<Utc>,
        audit: NewAuditEntry,
    ) -> StoreResult<bool>;

    // ---- timetable and schedules ----
    async fn timetable(&self) -> StoreResult<Option<TimetableRecord>>;
    async fn put_timetable(&self, t: &TimetableRecord, audit: NewAuditEntry) -> StoreResult<()>;
    async fn create_schedule(&self, s: &ScheduleRecord, audit: NewAuditEntry) -> StoreResult<()>;
    async fn schedule(&self, id: Uuid) -> StoreResult<Option<ScheduleRecord>>;
    /// Live schedules, oldest first.
    async fn list_schedules(&self) -> StoreResult<Vec<ScheduleRecord>>;
    /// False if already deleted (and nothing audited).
    async fn delete_schedule(&self, id: Uuid, by: &str, at: DateTime<Utc>, audit: NewAuditEntry) -> StoreResult<bool>;
    /// Open or close a schedule's window; false if it already was (another instance did it).
    async fn set_schedule_active(&self, id: Uuid, active: bool, at: DateTime<Utc>) -> StoreResult<bool>;

    // ---- FileVault ----
    /// Store (or replace) a Mac's key, with the escrow's audit entry.
    async fn put_filevault_key(&self, k: &FileVaultKeyRecord, audit: NewAuditEntry) -> StoreResult<()>;
    async fn filevault_key(&self, udid: &str) -> StoreResult<Option<FileVaultKeyRecord>>;
    async fn escrowed_udids(&self) -> StoreResult<Vec<String>>;

    // ---- periodic checks and smart-group inputs ----
    /// Enrolled devices whose security state is older than `before` and that were not asked
    /// since `before`; at most `limit`.
    async fn devices_due_check(&self, before: DateTime<Utc>, limit: i64) -> StoreResult<Vec<String>>;
    async fn mark_checked(&self, udids: &[String], at: DateTime<Utc>) -> StoreResult<()>;
    /// Who holds each held device now (the register's assignments).
    async fn current_holders(&self, now: DateTime<Utc>) -> StoreResult<Vec<HolderRow>>;
}

macro_rules! impl_profile_store {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::ProfileStore for $store {
            async fn count_profiles(&self) -> $crate::store::StoreResult<i64> {
                let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM profiles").fetch_one(&self.pool).await?;
                Ok(n)
            }

            async fn create_profile(
                &self,
                p: &$crate::store::ProfileRecord,
                v: &$crate::store::ProfileVersionRecord,
                audit: Option<$crate::store::NewAuditEntry>,
            ) -> $crate::store::StoreResult<()> {
                let mut tx = self.pool.begin().await?;
                sqlx::query(
                    "INSERT INTO profiles (id, name, identifier, version, baseline, created_by, created_at, updated_at, deleted_at, deleted_by) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, NULL)",
                )
                .bind(p.id)
                .bind(&p.name)
                .bind(&p.identifier)
                .bind(p.version)
                .bind(p.baseline)
                .bind(&p.created_by)
                .bind(p.created_at)
                .bind(p.updated_at)
                .execute(&mut *tx)
                .await
                .map_err($crate::store::conflict_or("profile"))?;
                Self::insert_profile_version(&mut *tx, v).await?;
                if let Some(audit) = audit {
                    $crate::store::audit::append_audit_in!(&mut *tx, audit)?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn add_profile_version(
                &self,
                v: &$crate::store::ProfileVersionRecord,
                at: chrono::DateTime<chrono::Utc>,
                audit: $crate::store::NewAuditEntry,
            ) -> $crate::store::StoreResult<()> {
                let mut tx = self.pool.begin().await?;
                Self::add_profile_version_in(&mut *tx, v, at).await?;
                $crate::store::audit::append_audit_in!(&mut *tx, audit)?;
                tx.commit().await?;
                Ok(())
            }

            async fn profile(&self, id: uuid::Uuid) -> $crate::store::StoreResult<Option<$crate::store::ProfileRecord>> {
                Ok(sqlx::query_as("SELECT * FROM profiles WHERE id = $1").bind(id).fetch_optional(&self.pool).await?)
            }

            async fn profile_by_name(&self, name: &str) -> $crate::store::StoreResult<Option<$crate::store::ProfileRecord>> {
                Ok(sqlx::query_as("SELECT * FROM profiles WHERE name = $1 AND deleted_at IS NULL")
                    .bind(name)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn profile_by_identifier(&self, identifier: &str) -> $crate::store::StoreResult<Option<$crate::store::ProfileRecord>> {
                Ok(sqlx::query_as("SELECT * FROM profiles WHERE identifier = $1 AND deleted_at IS NULL")
                    .bind(identifier)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn list_profiles(&self) -> $crate::store::StoreResult<Vec<$crate::store::ProfileRecord>> {
                Ok(sqlx::query_as("SELECT * FROM profiles WHERE deleted_at IS NULL ORDER BY name").fetch_all(&self.pool).await?)
            }

            async fn profile_version(
                &self,
                id: uuid::Uuid,
                version: i64,
            ) -> $crate::store::StoreResult<Option<$crate::store::ProfileVersionRecord>> {
                Ok(sqlx::query_as("SELECT * FROM profile_versions WHERE profile_id = $1 AND version = $2")
                    .bind(id)
                    .bind(version)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn profile_versions(&self, id: uuid::Uuid) -> $crate::store::StoreResult<Vec<$crate::store::ProfileVersionRecord>> {
                Ok(sqlx::query_as("SELECT * FROM profile_versions WHERE profile_id = $1 ORDER BY version")
                    .bind(id)
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn delete_profile(
                &self,
                id: uuid::Uuid,
                by: &str,
                at: chrono::DateTime<chrono::Utc>,
                audit: $crate::store::NewAuditEntry,
            ) -> $crate::store::StoreResult<bool> {
                let mut tx = self.pool.begin().await?;
                if !Self::delete_profile_in(&mut *tx, id, by, at).await? {
                    return Ok(false);
                }
                $crate::store::audit::append_audit_in!(&mut *tx, audit)?;
                tx.commit().await?;
                Ok(true)
            }

            async fn create_group(&self, g: &$crate::store::GroupRecord, audit: $crate::store::NewAuditEntry) -> $crate::store::StoreResult<()> {
                let mut tx = self.pool.begin().await?;
                sqlx::query(
                    "INSERT INTO device_groups (id, name, kind, rules, created_by, created_at, updated_at, deleted_at, deleted_by) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, NULL)",
                )
                .bind(g.id)
                .bind(&g.name)
                .bind(&g.kind)
                .bind(&g.rules)
                .bind(&g.created_by)
                .bind(g.created_at)
                .bind(g.updated_at)
                .execute(&mut *tx)
                .await
                .map_err($crate::store::conflict_or("group"))?;
                $crate::store::audit::append_audit_in!(&mut *tx, audit)?;
                tx.commit().await?;
                Ok(())
            }

            async fn group(&self, id: uuid::Uuid) -> $crate::store::StoreResult<Option<$crate::store::GroupRecord>> {
                Ok(sqlx::query_as("SELECT * FROM device_groups WHERE id = $1").bind(id).fetch_optional(&self.pool).await?)
            }

            async fn group_by_name(&self, name: &str) -> $crate::store::StoreResult<Option<$crate::store::GroupRecord>> {
                Ok(sqlx::query_as("SELECT * FROM device_groups WHERE name = $1 AND deleted_at IS NULL")
                    .bind(name)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn list_groups(&self) -> $crate::store::StoreResult<Vec<$crate::store::GroupRecord>> {
                Ok(sqlx::query_as("SELECT * FROM device_groups WHERE deleted_at IS NULL ORDER BY name").fetch_all(&self.pool).await?)
            }

            async fn update_group(
                &self,
                id: uuid::Uuid,
                name: &str,
                rules: Option<&str>,
                at: chrono::DateTime<chrono::Utc>,
                audit: $crate::store::NewAuditEntry,
            ) -> $crate::store::StoreResult<bool> {
                let mut tx = self.pool.begin().await?;
                let r = sqlx::query("UPDATE device_groups SET name = $2, rules = $3, updated_at = $4 WHERE id = $1 AND deleted_at IS NULL")
                    .bind(id)
                    .bind(name)
                    .bind(rules)
                    .bind(at)
                    .execute(&mut *tx)
                    .await
                    .map_err($crate::store::conflict_or("group"))?;
                if r.rows_affected() == 0 {
                    return Ok(false);
                }
                $crate::store::audit::append_audit_in!(&mut *tx, audit)?;
                tx.commit().await?;
                Ok(true)
            }

            async fn delete_group(
                &self,
                id: uuid::Uuid,
                by: &str,
                at: chrono::DateTime<chrono::Utc>,
                audit: $crate::store::NewAuditEntry,
            ) -> $crate::store::StoreResult<bool> {
                let mut tx = self.pool.begin().await?;
                let r = sqlx::query("UPDATE device_groups SET deleted_at = $2, deleted_by = $3 WHERE id = $1 AND deleted_at IS NULL")
                    .bind(id)
                    .bind(at)
                    .bind(by)
                    .execute(&mut *tx)
                    .await?;
                if r.rows_affected() == 0 {
                    return Ok(false);
                }
                sqlx::query("DELETE FROM group_profiles WHERE group_id = $1").bind(id).execute(&mut *tx).await?;
                sqlx::query("UPDATE schedules SET deleted_at = $2, deleted_by = $3 WHERE group_id = $1 AND deleted_at IS NULL")
                    .bind(id)
                    .bind(at)
                    .bind(by)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("UPDATE group_memberships SET removed_at = $2 WHERE group_id = $1 AND removed_at IS NULL")
                    .bind(id)
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
                $crate::store::audit::append_audit_in!(&mut *tx, audit)?;
                tx.commit().await?;
                Ok(true)
            }

            async fn add_group_members(
                &self,
                group_id: uuid::Uuid,
                udids: &[String],
                at: chrono::DateTime<chrono::Utc>,
                audit: $crate::store::NewAuditEntry,
            ) -> $crate::store::StoreResult<u64> {
                let mut tx = self.pool.begin().await?;
                let mut opened = 0;
                for u in udids {
                    // A membership already open (another request a moment ago) stays as it is.
                    let r = sqlx::query(
                        "INSERT INTO group_memberships (group_id, udid, added_at, removed_at) VALUES ($1, $2, $3, NULL) \
                         ON CONFLICT DO NOTHING",
                    )
                    .bind(group_id)
                    .bind(u)
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
                    opened += r.rows_affected();
                }
                if opened == 0 {
                    return Ok(0);
                }
                $crate::store::audit::append_audit_in!(&mut *tx, audit)?;
                tx.commit().await?;
                Ok(opened)
            }

            async fn remove_group_member(
                &self,
                group_id: uuid::Uuid,
                udid: &str,
                at: chrono::DateTime<chrono::Utc>,
                audit: $crate::store::NewAuditEntry,
            ) -> $crate::store::StoreResult<bool> {
                let mut tx = self.pool.begin().await?;
                let r = sqlx::query("UPDATE group_memberships SET removed_at = $3 WHERE group_id = $1 AND udid = $2 AND removed_at IS NULL")
                    .bind(group_id)
                    .bind(udid)
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

            async fn group_members(&self, group_id: uuid::Uuid) -> $crate::store::StoreResult<Vec<String>> {
                let rows: Vec<(String,)> =
                    sqlx::query_as("SELECT DISTINCT udid FROM group_memberships WHERE group_id = $1 AND removed_at IS NULL ORDER BY udid")
                        .bind(group_id)
                        .fetch_all(&self.pool)
                        .await?;
                Ok(rows.into_iter().map(|(u,)| u).collect())
            }

            async fn groups_of_device(&self, udid: &str) -> $crate::store::StoreResult<Vec<uuid::Uuid>> {
                let rows: Vec<(uuid::Uuid,)> = sqlx::query_as(
                    "SELECT DISTINCT m.group_id FROM group_memberships m JOIN device_groups g ON g.id = m.group_id \
                     WHERE m.udid = $1 AND m.removed_at IS NULL AND g.deleted_at IS NULL",
                )
                .bind(udid)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.into_iter().map(|(g,)| g).collect())
            }

            async fn smart_memberships(&self) -> $crate::store::StoreResult<Vec<(uuid::Uuid, String)>> {
                Ok(sqlx::query_as(
                    "SELECT DISTINCT m.group_id, m.udid FROM group_memberships m JOIN device_groups g ON g.id = m.group_id \
                     WHERE m.removed_at IS NULL AND g.deleted_at IS NULL AND g.kind = 'smart'",
                )
                .fetch_all(&self.pool)
                .await?)
            }

            async fn assign_profile(
                &self,
                group_id: uuid::Uuid,
                profile_id: uuid::Uuid,
                by: &str,
                at: chrono::DateTime<chrono::Utc>,
                audit: $crate::store::NewAuditEntry,
            ) -> $crate::store::StoreResult<bool> {
                let mut tx = self.pool.begin().await?;
                if !Self::assign_profile_in(&mut *tx, group_id, profile_id, by, at).await? {
                    return Ok(false);
                }
                $crate::store::audit::append_audit_in!(&mut *tx, audit)?;
                tx.commit().await?;
                Ok(true)
            }

            async fn unassign_profile(
                &self,
                group_id: uuid::Uuid,
                profile_id: uuid::Uuid,
                audit: $crate::store::NewAuditEntry,
            ) -> $crate::store::StoreResult<bool> {
                let mut tx = self.pool.begin().await?;
                if !Self::unassign_profile_in(&mut *tx, group_id, profile_id).await? {
                    return Ok(false);
                }
                $crate::store::audit::append_audit_in!(&mut *tx, audit)?;
                tx.commit().await?;
                Ok(true)
            }

            async fn group_profile_ids(&self, group_id: uuid::Uuid) -> $crate::store::StoreResult<Vec<uuid::Uuid>> {
                let rows: Vec<(uuid::Uuid,)> = sqlx::query_as("SELECT profile_id FROM group_profiles WHERE group_id = $1 ORDER BY assigned_at")
                    .bind(group_id)
                    .fetch_all(&self.pool)
                    .await?;
                Ok(rows.into_iter().map(|(p,)| p).collect())
            }

            async fn profile_group_ids(&self, profile_id: uuid::Uuid) -> $crate::store::StoreResult<Vec<uuid::Uuid>> {
                let rows: Vec<(uuid::Uuid,)> = sqlx::query_as("SELECT group_id FROM group_profiles WHERE profile_id = $1 ORDER BY assigned_at")
                    .bind(profile_id)
                    .fetch_all(&self.pool)
                    .await?;
                Ok(rows.into_iter().map(|(g,)| g).collect())
            }

            async fn assigned_profiles_for_device(&self, udid: &str) -> $crate::store::StoreResult<Vec<(uuid::Uuid, i64, String)>> {
                Ok(sqlx::query_as(
                    "SELECT DISTINCT p.id, p.version, p.identifier FROM group_memberships m \
                     JOIN device_groups g ON g.id = m.group_id AND g.deleted_at IS NULL \
                     JOIN group_profiles gp ON gp.group_id = m.group_id \
                     JOIN profiles p ON p.id = gp.profile_id AND p.deleted_at IS NULL \
                     WHERE m.udid = $1 AND m.removed_at IS NULL",
                )
                .bind(udid)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn device_profiles(&self, udid: &str) -> $crate::store::StoreResult<Vec<$crate::store::DeviceProfileRecord>> {
                Ok(sqlx::query_as("SELECT * FROM device_profiles WHERE udid = $1 ORDER BY identifier")
                    .bind(udid)
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn profile_device_rows(&self, profile_id: uuid::Uuid) -> $crate::store::StoreResult<Vec<$crate::store::DeviceProfileRecord>> {
                Ok(sqlx::query_as("SELECT * FROM device_profiles WHERE profile_id = $1 ORDER BY udid")
                    .bind(profile_id)
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn put_device_profile(&self, r: &$crate::store::DeviceProfileRecord) -> $crate::store::StoreResult<()> {
                sqlx::query(
                    "INSERT INTO device_profiles (udid, identifier, payload_uuid, display_name, profile_id, version, lanyard, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                     ON CONFLICT (udid, identifier) DO UPDATE SET payload_uuid = $3, display_name = $4, profile_id = $5, version = $6, \
                     lanyard = $7, updated_at = $8",
                )
                .bind(&r.udid)
                .bind(&r.identifier)
                .bind(&r.payload_uuid)
                .bind(&r.display_name)
                .bind(r.profile_id)
                .bind(r.version)
                .bind(r.lanyard)
                .bind(r.updated_at)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn remove_device_profile(&self, udid: &str, identifier: &str) -> $crate::store::StoreResult<()> {
                sqlx::query("DELETE FROM device_profiles WHERE udid = $1 AND identifier = $2")
                    .bind(udid)
                    .bind(identifier)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn sync_device_profiles(&self, udid: &str, list: &[$crate::store::DeviceProfileRecord]) -> $crate::store::StoreResult<()> {
                let mut tx = self.pool.begin().await?;
                let mut q = sqlx::QueryBuilder::<$db>::new("DELETE FROM device_profiles WHERE udid = ");
                q.push_bind(udid.to_owned());
                if !list.is_empty() {
                    q.push(" AND identifier NOT IN (");
                    let mut sep = q.separated(", ");
                    for r in list {
                        sep.push_bind(r.identifier.clone());
                    }
                    q.push(")");
                }
                q.build().execute(&mut *tx).await?;
                for r in list {
                    sqlx::query(
                        "INSERT INTO device_profiles (udid, identifier, payload_uuid, display_name, profile_id, version, lanyard, updated_at) \
                         VALUES ($1, $2, $3, $4, NULL, NULL, FALSE, $5) \
                         ON CONFLICT (udid, identifier) DO UPDATE SET payload_uuid = $3, display_name = $4, updated_at = $5",
                    )
                    .bind(udid)
                    .bind(&r.identifier)
                    .bind(&r.payload_uuid)
                    .bind(&r.display_name)
                    .bind(r.updated_at)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn clear_device_profiles(&self, udid: &str) -> $crate::store::StoreResult<()> {
                sqlx::query("DELETE FROM device_profiles WHERE udid = $1").bind(udid).execute(&self.pool).await?;
                Ok(())
            }

            async fn record_profile_commands(&self, recs: &[$crate::store::ProfileCommandRecord]) -> $crate::store::StoreResult<()> {
                let mut tx = self.pool.begin().await?;
                for chunk in recs.chunks(500) {
                    let mut q = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO profile_commands (command_uuid, udid, action, identifier, profile_id, version, queued_at, outcome, error, finished_at) ",
                    );
                    q.push_values(chunk, |mut b, r| {
                        b.push_bind(r.command_uuid.clone())
                            .push_bind(r.udid.clone())
                            .push_bind(r.action.clone())
                            .push_bind(r.identifier.clone())
                            .push_bind(r.profile_id)
                            .push_bind(r.version)
                            .push_bind(r.queued_at)
                            .push_bind(r.outcome.clone())
                            .push_bind(r.error.clone())
                            .push_bind(r.finished_at);
                    });
                    q.build().execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn profile_command(&self, command_uuid: &str, udid: &str) -> $crate::store::StoreResult<Option<$crate::store::ProfileCommandRecord>> {
                Ok(sqlx::query_as("SELECT * FROM profile_commands WHERE command_uuid = $1 AND udid = $2")
                    .bind(command_uuid)
                    .bind(udid)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn finish_profile_command(
                &self,
                command_uuid: &str,
                udid: &str,
                outcome: &str,
                error: Option<&str>,
                at: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<()> {
                sqlx::query("UPDATE profile_commands SET outcome = $3, error = $4, finished_at = $5 WHERE command_uuid = $1 AND udid = $2")
                    .bind(command_uuid)
                    .bind(udid)
                    .bind(outcome)
                    .bind(error)
                    .bind(at)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn profile_command_states(
                &self,
                udid: &str,
                since: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<Vec<$crate::store::ProfileCommandState>> {
                Ok(sqlx::query_as(
                    "SELECT pc.*, t.status AS target_status, t.expires_at AS target_expires_at FROM profile_commands pc \
                     JOIN commands c ON c.uuid = pc.command_uuid JOIN command_targets t ON t.command_seq = c.seq AND t.udid = pc.udid \
                     WHERE pc.udid = $1 AND pc.queued_at >= $2 ORDER BY pc.queued_at, c.seq",
                )
                .bind(udid)
                .bind(since)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn profile_command_states_for_profile(
                &self,
                profile_id: uuid::Uuid,
                since: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<Vec<$crate::store::ProfileCommandState>> {
                Ok(sqlx::query_as(
                    "SELECT pc.*, t.status AS target_status, t.expires_at AS target_expires_at FROM profile_commands pc \
                     JOIN commands c ON c.uuid = pc.command_uuid JOIN command_targets t ON t.command_seq = c.seq AND t.udid = pc.udid \
                     WHERE pc.profile_id = $1 AND pc.queued_at >= $2 ORDER BY pc.queued_at, c.seq",
                )
                .bind(profile_id)
                .bind(since)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn create_filtering_change(
                &self,
                c: &$crate::store::FilteringChangeRecord,
                audit: $crate::store::NewAuditEntry,
            ) -> $crate::store::StoreResult<()> {
                let mut tx = self.pool.begin().await?;
                sqlx::query(
                    "INSERT INTO filtering_changes (id, profile_id, profile_name, kind, group_id, group_name, base_version, proposed_xml, \
                       before_policy, after_policy, diff, reason, risk_assessment_ref, state, proposed_by, proposed_at, decided_by, decided_at, \
                       decision_justification, deployed_version, deployed_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)",
                )
                .bind(c.id)
                .bind(c.profile_id)
                .bind(&c.profile_name)
                .bind(&c.kind)
                .bind(c.group_id)
                .bind(&c.group_name)
                .bind(c.base_version)
                .bind(&c.proposed_xml)
                .bind(&c.before_policy)
                .bind(&c.after_policy)
                .bind(&c.diff)
                .bind(&c.reason)
                .bind(&c.risk_assessment_ref)
                .bind(&c.state)
                .bind(&c.proposed_by)
                .bind(c.proposed_at)
                .bind(&c.decided_by)
                .bind(c.decided_at)
                .bind(&c.decision_justification)
                .bind(c.deployed_version)
                .bind(c.deployed_at)
                .execute(&mut *tx)
                .await?;
                $crate::store::audit::append_audit_in!(&mut *tx, audit)?;
                tx.commit().await?;
                Ok(())
            }

            async fn filtering_change(&self, id: uuid::Uuid) -> $crate::store::StoreResult<Option<$crate::store::FilteringChangeRecord>> {
                Ok(sqlx::query_as("SELECT * FROM filtering_changes WHERE id = $1").bind(id).fetch_optional(&self.pool).await?)
            }

            async fn list_filtering_changes(
                &self,
                state: Option<&str>,
                profile_id: Option<uuid::Uuid>,
                before: Option<(chrono::DateTime<chrono::Utc>, uuid::Uuid)>,
                limit: i64,
            ) -> $crate::store::StoreResult<Vec<$crate::store::FilteringChangeRecord>> {
                let mut q = sqlx::QueryBuilder::<$db>::new("SELECT * FROM filtering_changes WHERE 1 = 1");
                if let Some(s) = state {
                    q.push(" AND state = ").push_bind(s.to_owned());
                }
                if let Some(p) = profile_id {
                    q.push(" AND profile_id = ").push_bind(p);
                }
                if let Some((at, id)) = before {
                    q.push(" AND (proposed_at < ").push_bind(at).push(" OR (proposed_at = ").push_bind(at).push(" AND id < ").push_bind(id).push("))");
                }
                q.push(" ORDER BY proposed_at DESC, id DESC LIMIT ").push_bind(limit);
                Ok(q.build_query_as().fetch_all(&self.pool).await?)
            }

            async fn decide_filtering_change(
                &self,
                id: uuid::Uuid,
                state: &str,
                by: &str,
                justification: &str,
                at: chrono::DateTime<chrono::Utc>,
                audit: $crate::store::NewAuditEntry,
            ) -> $crate::store::StoreResult<bool> {
                let mut tx = self.pool.begin().await?;
                let r = sqlx::query(
                    "UPDATE filtering_changes SET state = $2, decided_by = $3, decision_justification = $4, decided_at = $5 \
                     WHERE id = $1 AND state = 'proposed'",
                )
                .bind(id)
                .bind(state)
                .bind(by)
                .bind(justification)
                .bind(at)
                .execute(&mut *tx)
                .await?;
                if r.rows_affected() != 1 {
                    return Ok(false);
                }
                $crate::store::audit::append_audit_in!(&mut *tx, audit)?;
                tx.commit().await?;
                Ok(true)
            }

            async fn deploy_filtering_change(
                &self,
                id: uuid::Uuid,
                write: $crate::store::profiles::FilteringDeploy<'_>,
                version: Option<i64>,
                at: chrono::DateTime<chrono::Utc>,
                audit: $crate::store::NewAuditEntry,
            ) -> $crate::store::StoreResult<bool> {
                use $crate::store::profiles::FilteringDeploy;
                let mut tx = self.pool.begin().await?;
                let r = sqlx::query(
                    "UPDATE filtering_changes SET state = 'deployed', deployed_version = $2, deployed_at = $3 WHERE id = $1 AND state = 'approved'",
                )
                .bind(id)
                .bind(version)
                .bind(at)
                .execute(&mut *tx)
                .await?;
                if r.rows_affected() != 1 {
                    return Ok(false);
                }
                // The profile or assignment may already be as the change wants it (deleted or
                // assigned meanwhile): the change is deployed all the same.
                match write {
                    FilteringDeploy::NewVersion(v) => Self::add_profile_version_in(&mut *tx, v, at).await?,
                    FilteringDeploy::Delete { profile_id, by } => {
                        Self::delete_profile_in(&mut *tx, profile_id, by, at).await?;
                    }
                    FilteringDeploy::Assign { group_id, profile_id, by } => {
                        Self::assign_profile_in(&mut *tx, group_id, profile_id, by, at).await?;
                    }
                    FilteringDeploy::Unassign { group_id, profile_id } => {
                        Self::unassign_profile_in(&mut *tx, group_id, profile_id).await?;
                    }
                }
                $crate::store::audit::append_audit_in!(&mut *tx, audit)?;
                tx.commit().await?;
                Ok(true)
            }

            async fn timetable(&self) -> $crate::store::StoreResult<Option<$crate::store::TimetableRecord>> {
                Ok(sqlx::query_as("SELECT timezone, periods, terms, updated_by, updated_at FROM timetable WHERE id = 1")
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn put_timetable(&self, t: &$crate::store::TimetableRecord, audit: $crate::store::NewAuditEntry) -> $crate::store::StoreResult<()> {
                let mut tx = self.pool.begin().await?;
                sqlx::query(
                    "INSERT INTO timetable (id, timezone, periods, terms, updated_by, updated_at) VALUES (1, $1, $2, $3, $4, $5) \
                     ON CONFLICT (id) DO UPDATE SET timezone = $1, periods = $2, terms = $3, updated_by = $4, updated_at = $5",
                )
                .bind(&t.timezone)
                .bind(&t.periods)
                .bind(&t.terms)
                .bind(&t.updated_by)
                .bind(t.updated_at)
                .execute(&mut *tx)
                .await?;
                $crate::store::audit::append_audit_in!(&mut *tx, audit)?;
                tx.commit().await?;
                Ok(())
            }

            async fn create_schedule(&self, s: &$crate::store::ScheduleRecord, audit: $crate::store::NewAuditEntry) -> $crate::store::StoreResult<()> {
                let mut tx = self.pool.begin().await?;
                sqlx::query(
                    "INSERT INTO schedules (id, profile_id, group_id, when_kind, active, changed_at, created_by, created_at, deleted_at, deleted_by) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, NULL)",
                )
                .bind(s.id)
                .bind(s.profile_id)
                .bind(s.group_id)
                .bind(&s.when_kind)
                .bind(s.active)
                .bind(s.changed_at)
                .bind(&s.created_by)
                .bind(s.created_at)
                .execute(&mut *tx)
                .await?;
                $crate::store::audit::append_audit_in!(&mut *tx, audit)?;
                tx.commit().await?;
                Ok(())
            }

            async fn schedule(&self, id: uuid::Uuid) -> $crate::store::StoreResult<Option<$crate::store::ScheduleRecord>> {
                Ok(sqlx::query_as("SELECT * FROM schedules WHERE id = $1").bind(id).fetch_optional(&self.pool).await?)
            }

            async fn list_schedules(&self) -> $crate::store::StoreResult<Vec<$crate::store::ScheduleRecord>> {
                Ok(sqlx::query_as("SELECT * FROM schedules WHERE deleted_at IS NULL ORDER BY created_at, id").fetch_all(&self.pool).await?)
            }

            async fn delete_schedule(
                &self,
                id: uuid::Uuid,
                by: &str,
                at: chrono::DateTime<chrono::Utc>,
                audit: $crate::store::NewAuditEntry,
            ) -> $crate::store::StoreResult<bool> {
                let mut tx = self.pool.begin().await?;
                let r = sqlx::query("UPDATE schedules SET deleted_at = $2, deleted_by = $3 WHERE id = $1 AND deleted_at IS NULL")
                    .bind(id)
                    .bind(at)
                    .bind(by)
                    .execute(&mut *tx)
                    .await?;
                if r.rows_affected() != 1 {
                    return Ok(false);
                }
                $crate::store::audit::append_audit_in!(&mut *tx, audit)?;
                tx.commit().await?;
                Ok(true)
            }

            async fn set_schedule_active(&self, id: uuid::Uuid, active: bool, at: chrono::DateTime<chrono::Utc>) -> $crate::store::StoreResult<bool> {
                let r = sqlx::query("UPDATE schedules SET active = $2, changed_at = $3 WHERE id = $1 AND active <> $2")
                    .bind(id)
                    .bind(active)
                    .bind(at)
                    .execute(&self.pool)
                    .await?;
                Ok(r.rows_affected() == 1)
            }

            async fn put_filevault_key(
                &self,
                k: &$crate::store::FileVaultKeyRecord,
                audit: $crate::store::NewAuditEntry,
            ) -> $crate::store::StoreResult<()> {
                let mut tx = self.pool.begin().await?;
                sqlx::query(
                    "INSERT INTO filevault_keys (udid, key_sealed, device_key, escrowed_at, updated_at) VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (udid) DO UPDATE SET key_sealed = $2, device_key = $3, updated_at = $5",
                )
                .bind(&k.udid)
                .bind(&k.key_sealed)
                .bind(&k.device_key)
                .bind(k.escrowed_at)
                .bind(k.updated_at)
                .execute(&mut *tx)
                .await?;
                $crate::store::audit::append_audit_in!(&mut *tx, audit)?;
                tx.commit().await?;
                Ok(())
            }

            async fn filevault_key(&self, udid: &str) -> $crate::store::StoreResult<Option<$crate::store::FileVaultKeyRecord>> {
                Ok(sqlx::query_as("SELECT * FROM filevault_keys WHERE udid = $1").bind(udid).fetch_optional(&self.pool).await?)
            }

            async fn escrowed_udids(&self) -> $crate::store::StoreResult<Vec<String>> {
                let rows: Vec<(String,)> = sqlx::query_as("SELECT udid FROM filevault_keys").fetch_all(&self.pool).await?;
                Ok(rows.into_iter().map(|(u,)| u).collect())
            }

            async fn devices_due_check(&self, before: chrono::DateTime<chrono::Utc>, limit: i64) -> $crate::store::StoreResult<Vec<String>> {
                let rows: Vec<(String,)> = sqlx::query_as(
                    "SELECT d.udid FROM devices d LEFT JOIN device_checks c ON c.udid = d.udid \
                     WHERE d.enrolled = TRUE AND (d.security_updated_at IS NULL OR d.security_updated_at < $1) \
                     AND (c.requested_at IS NULL OR c.requested_at < $1) AND (d.inventory_requested_at IS NULL OR d.inventory_requested_at < $1) \
                     ORDER BY d.udid LIMIT $2",
                )
                .bind(before)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.into_iter().map(|(u,)| u).collect())
            }

            async fn mark_checked(&self, udids: &[String], at: chrono::DateTime<chrono::Utc>) -> $crate::store::StoreResult<()> {
                let mut tx = self.pool.begin().await?;
                for u in udids {
                    sqlx::query(
                        "INSERT INTO device_checks (udid, requested_at) VALUES ($1, $2) ON CONFLICT (udid) DO UPDATE SET requested_at = $2",
                    )
                    .bind(u)
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn current_holders(&self, now: chrono::DateTime<chrono::Utc>) -> $crate::store::StoreResult<Vec<$crate::store::HolderRow>> {
                Ok(sqlx::query_as(
                    "SELECT a.udid, p.kind, p.year_group, p.key_stage FROM assignments a JOIN people p ON p.id = a.person_id \
                     WHERE a.started_at <= $1 AND (a.ended_at IS NULL OR a.ended_at > $1) ORDER BY a.udid, a.started_at",
                )
                .bind(now)
                .fetch_all(&self.pool)
                .await?)
            }
        }

        impl $store {
            /// Version `v.version` stored and made current, if the profile is live and at
            /// `v.version - 1`; `Conflict` otherwise.
            async fn add_profile_version_in(
                conn: &mut <$db as sqlx::Database>::Connection,
                v: &$crate::store::ProfileVersionRecord,
                at: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<()> {
                let r = sqlx::query(
                    "UPDATE profiles SET version = $2, identifier = $3, updated_at = $4 \
                     WHERE id = $1 AND version = $5 AND deleted_at IS NULL",
                )
                .bind(v.profile_id)
                .bind(v.version)
                .bind(&v.identifier)
                .bind(at)
                .bind(v.version - 1)
                .execute(&mut *conn)
                .await
                .map_err($crate::store::conflict_or("profile identifier"))?;
                if r.rows_affected() != 1 {
                    return Err($crate::store::StoreError::Conflict("profile version".into()));
                }
                Self::insert_profile_version(&mut *conn, v).await
            }

            /// Soft-delete a profile: it leaves every group and schedule. False if it already was.
            async fn delete_profile_in(
                conn: &mut <$db as sqlx::Database>::Connection,
                id: uuid::Uuid,
                by: &str,
                at: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<bool> {
                let r = sqlx::query("UPDATE profiles SET deleted_at = $2, deleted_by = $3 WHERE id = $1 AND deleted_at IS NULL")
                    .bind(id)
                    .bind(at)
                    .bind(by)
                    .execute(&mut *conn)
                    .await?;
                if r.rows_affected() == 0 {
                    return Ok(false);
                }
                sqlx::query("DELETE FROM group_profiles WHERE profile_id = $1").bind(id).execute(&mut *conn).await?;
                sqlx::query("UPDATE schedules SET deleted_at = $2, deleted_by = $3 WHERE profile_id = $1 AND deleted_at IS NULL")
                    .bind(id)
                    .bind(at)
                    .bind(by)
                    .execute(&mut *conn)
                    .await?;
                Ok(true)
            }

            /// False if it was already assigned.
            async fn assign_profile_in(
                conn: &mut <$db as sqlx::Database>::Connection,
                group_id: uuid::Uuid,
                profile_id: uuid::Uuid,
                by: &str,
                at: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<bool> {
                let r = sqlx::query(
                    "INSERT INTO group_profiles (group_id, profile_id, assigned_by, assigned_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (group_id, profile_id) DO NOTHING",
                )
                .bind(group_id)
                .bind(profile_id)
                .bind(by)
                .bind(at)
                .execute(&mut *conn)
                .await?;
                Ok(r.rows_affected() == 1)
            }

            /// False if it was not assigned.
            async fn unassign_profile_in(
                conn: &mut <$db as sqlx::Database>::Connection,
                group_id: uuid::Uuid,
                profile_id: uuid::Uuid,
            ) -> $crate::store::StoreResult<bool> {
                let r = sqlx::query("DELETE FROM group_profiles WHERE group_id = $1 AND profile_id = $2")
                    .bind(group_id)
                    .bind(profile_id)
                    .execute(&mut *conn)
                    .await?;
                Ok(r.rows_affected() == 1)
            }

            async fn insert_profile_version(
                conn: &mut <$db as sqlx::Database>::Connection,
                v: &$crate::store::ProfileVersionRecord,
            ) -> $crate::store::StoreResult<()> {
                sqlx::query(
                    "INSERT INTO profile_versions (profile_id, version, xml, sha256, identifier, payload_uuid, display_name, payload_types, \
                       filtering, change_id, created_by, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                )
                .bind(v.profile_id)
                .bind(v.version)
                .bind(&v.xml)
                .bind(&v.sha256)
                .bind(&v.identifier)
                .bind(&v.payload_uuid)
                .bind(&v.display_name)
                .bind(&v.payload_types)
                .bind(&v.filtering)
                .bind(v.change_id)
                .bind(&v.created_by)
                .bind(v.created_at)
                .execute(&mut *conn)
                .await
                .map_err($crate::store::conflict_or("profile version"))?;
                Ok(())
            }
        }
    };
}
pub(crate) use impl_profile_store;
