//! Apple School Manager: Lanyard's ADE key pair, the server tokens, and the devices each token's
//! MDM server is assigned, with the sync state that lets an interrupted sync resume.
//!
//! A page of devices and the cursor that follows it commit in one transaction
//! ([`AdeStore::apply_ade_page`]): after a crash the next sync asks Apple for the page after the
//! last one stored, never skipping one nor losing its cursor.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{EnrollmentTokenRecord, NewAuditEntry, StoreResult};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AdeTokenRecord {
    pub id: Uuid,
    pub server_uuid: String,
    pub server_name: String,
    pub org_name: String,
    pub org_email: Option<String>,
    pub admin_id: Option<String>,
    pub secrets_sealed: Vec<u8>,
    pub expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub renewed_at: Option<DateTime<Utc>>,
    pub cursor: Option<String>,
    pub cursor_at: Option<DateTime<Utc>>,
    pub fetch_cursor: Option<String>,
    pub fetch_generation: i64,
    /// `idle` or `running`.
    pub sync_state: String,
    pub sync_started_at: Option<DateTime<Utc>>,
    /// Device records applied by the running (or last) sync.
    pub sync_devices: i64,
    pub last_sync_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
    /// Which profile new devices get (JSON; see `services::ade::assign`).
    pub assignment: Option<String>,
}

/// A device as ASM lists it.
#[derive(Debug, Clone, Default, sqlx::FromRow)]
pub struct AdeDeviceRecord {
    pub serial_number: String,
    pub model: Option<String>,
    pub description: Option<String>,
    pub color: Option<String>,
    pub asset_tag: Option<String>,
    pub os: Option<String>,
    pub device_family: Option<String>,
    pub profile_status: Option<String>,
    pub profile_uuid: Option<String>,
    pub profile_assign_time: Option<String>,
    pub profile_push_time: Option<String>,
    pub device_assigned_date: Option<String>,
    pub device_assigned_by: Option<String>,
    pub mdm_migration_deadline: Option<String>,
    pub op_type: Option<String>,
    pub op_date: Option<String>,
}

/// A device row with its token and the enrolled device of the same serial, for the list.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AdeDeviceRow {
    #[sqlx(flatten)]
    pub device: AdeDeviceRecord,
    pub token_id: Uuid,
    pub removed_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
    pub enrolled_udid: Option<String>,
}

/// What a page moves the cursors to.
#[derive(Debug, Clone)]
pub enum CursorMove {
    /// A page of the full fetch; `done` on its last page, whose cursor becomes the sync cursor
    /// and which flags the token's devices the fetch did not list.
    Fetch { cursor: String, done: bool },
    /// A page of changes.
    Sync { cursor: String },
}

/// One page to apply: devices added or changed, devices deleted (serial, op_date), the cursor.
#[derive(Debug, Clone)]
pub struct AdePage {
    pub devices: Vec<AdeDeviceRecord>,
    pub removed: Vec<(String, Option<String>)>,
    pub cursor: CursorMove,
    pub at: DateTime<Utc>,
}

/// Filters of the device list.
#[derive(Debug, Clone, Default)]
pub struct AdeDeviceFilter {
    pub token: Option<Uuid>,
    pub profile_status: Option<String>,
    /// Serial, description, model or asset tag contains this.
    pub q: Option<String>,
    /// Only devices after this serial (the page cursor).
    pub after: Option<String>,
    pub limit: i64,
}

/// Device counts of one token.
#[derive(Debug, Clone, Default, sqlx::FromRow)]
pub struct AdeTokenCounts {
    pub token_id: Uuid,
    pub devices: i64,
    pub removed: i64,
    pub enrolled: i64,
    /// Moved to Lanyard from another MDM server with a deadline, and not enrolled yet.
    pub migrating: i64,
    /// The nearest such deadline (as ASM wrote it).
    pub next_migration_deadline: Option<String>,
}

/// An ADE profile: its name and Lanyard's JSON of its settings.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AdeProfileRecord {
    pub id: Uuid,
    pub name: String,
    pub settings: String,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub updated_at: DateTime<Utc>,
}

/// A device that may need an ADE profile assigned.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AdeAssignCandidate {
    pub serial_number: String,
    pub model: Option<String>,
    pub device_family: Option<String>,
    pub profile_uuid: Option<String>,
    pub profile_status: Option<String>,
    pub assign_profile_id: Option<Uuid>,
    pub assign_result: Option<String>,
    pub assign_retry_at: Option<DateTime<Utc>>,
}

/// Apple's answer for one serial.
#[derive(Debug, Clone)]
pub struct AdeAssignResult {
    pub serial_number: String,
    pub profile_id: Uuid,
    pub profile_uuid: String,
    /// `SUCCESS`, `NOT_ACCESSIBLE`, `FAILED` or `THROTTLED`.
    pub result: String,
    /// When to try again (not SUCCESS).
    pub retry_at: Option<DateTime<Utc>>,
}

/// A MachineInfo accepted at ADE enrolment (table `ade_enrolments`).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AdeEnrolmentRecord {
    pub machine_info_sha256: String,
    pub serial_number: String,
    pub udid: String,
    pub product: String,
    pub os_version: Option<String>,
    pub token_id: Uuid,
    pub at: DateTime<Utc>,
}

#[async_trait::async_trait]
pub trait AdeStore: Send + Sync {
    /// Lanyard's key pair for server tokens: (certificate PEM, sealed key).
    async fn ade_keypair(&self) -> StoreResult<Option<(String, Vec<u8>)>>;
    /// Store the key pair unless one exists (two instances starting together keep one).
    async fn put_ade_keypair_if_absent(&self, cert_pem: &str, key_sealed: &[u8], at: DateTime<Utc>) -> StoreResult<()>;
    /// Store a token; a token for a server already known replaces its secrets and names and
    /// keeps its id, sync state and devices. Returns (id stored, renewed).
    async fn put_ade_token(&self, rec: &AdeTokenRecord, audit: NewAuditEntry) -> StoreResult<(Uuid, bool)>;
    async fn ade_tokens(&self) -> StoreResult<Vec<AdeTokenRecord>>;
    async fn ade_token(&self, id: Uuid) -> StoreResult<Option<AdeTokenRecord>>;
    async fn delete_ade_token(&self, id: Uuid, audit: NewAuditEntry) -> StoreResult<bool>;
    async fn ade_token_counts(&self) -> StoreResult<Vec<AdeTokenCounts>>;
    /// Mark a sync as running unless one is (a sync started before `stale_before` is taken
    /// over: its instance died). True when this caller may sync.
    async fn begin_ade_sync(&self, id: Uuid, at: DateTime<Utc>, stale_before: DateTime<Utc>) -> StoreResult<bool>;
    /// End the sync: idle, and the outcome (`error` None: success, `last_sync_at` = at).
    async fn finish_ade_sync(&self, id: Uuid, at: DateTime<Utc>, error: Option<&str>) -> StoreResult<()>;
    /// Start a full fetch: a new generation and no cursors. Returns the generation.
    async fn start_ade_fetch(&self, id: Uuid) -> StoreResult<i64>;
    /// Apply one page and move the cursors, in one transaction.
    async fn apply_ade_page(&self, id: Uuid, page: &AdePage) -> StoreResult<()>;
    async fn ade_devices(&self, filter: &AdeDeviceFilter) -> StoreResult<Vec<AdeDeviceRow>>;

    async fn create_ade_profile(&self, rec: &AdeProfileRecord, audit: NewAuditEntry) -> StoreResult<()>;
    async fn ade_profiles(&self) -> StoreResult<Vec<AdeProfileRecord>>;
    async fn ade_profile(&self, id: Uuid) -> StoreResult<Option<AdeProfileRecord>>;
    /// Name and settings; false when there is no such profile.
    async fn update_ade_profile(&self, rec: &AdeProfileRecord, audit: NewAuditEntry) -> StoreResult<bool>;
    async fn delete_ade_profile(&self, id: Uuid, audit: NewAuditEntry) -> StoreResult<bool>;
    /// Every definition with Apple for this token: (profile id, settings hash, Apple's uuid).
    async fn ade_profile_definitions(&self, token_id: Uuid) -> StoreResult<Vec<(Uuid, String, String)>>;
    async fn put_ade_profile_definition(
        &self,
        profile_id: Uuid,
        token_id: Uuid,
        hash: &str,
        profile_uuid: &str,
        at: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// The token's assignment rules (JSON), with the audit entry.
    async fn set_ade_assignment(&self, token_id: Uuid, rules: Option<&str>, audit: NewAuditEntry) -> StoreResult<bool>;
    /// The token's devices ASM still lists, for assignment.
    async fn ade_assignment_candidates(&self, token_id: Uuid) -> StoreResult<Vec<AdeAssignCandidate>>;
    /// Record Apple's answers; a SUCCESS also sets the device's profile as ASM now has it.
    async fn record_ade_assignments(&self, results: &[AdeAssignResult], at: DateTime<Utc>) -> StoreResult<()>;
    /// The token of each of these serials ASM lists.
    async fn ade_device_tokens(&self, serials: &[String]) -> StoreResult<Vec<(String, Uuid)>>;
    /// One device ASM lists (or listed), by serial number.
    async fn ade_device(&self, serial: &str) -> StoreResult<Option<AdeDeviceRow>>;
    /// Record an accepted MachineInfo with the one-time enrolment token made for it and the
    /// audit entry, in one transaction. False, storing nothing, when this MachineInfo was
    /// accepted before (a replay).
    async fn create_ade_enrolment(
        &self,
        rec: &AdeEnrolmentRecord,
        token: &EnrollmentTokenRecord,
        audit: NewAuditEntry,
    ) -> StoreResult<bool>;
    /// The latest accepted MachineInfo of a serial number.
    async fn latest_ade_enrolment(&self, serial: &str) -> StoreResult<Option<AdeEnrolmentRecord>>;
}

macro_rules! impl_ade_store {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::AdeStore for $store {
            async fn ade_keypair(&self) -> $crate::store::StoreResult<Option<(String, Vec<u8>)>> {
                Ok(sqlx::query_as("SELECT cert_pem, key_sealed FROM ade_keypair WHERE id = 1").fetch_optional(&self.pool).await?)
            }

            async fn put_ade_keypair_if_absent(
                &self,
                cert_pem: &str,
                key_sealed: &[u8],
                at: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<()> {
                sqlx::query("INSERT INTO ade_keypair (id, cert_pem, key_sealed, created_at) VALUES (1, $1, $2, $3) ON CONFLICT (id) DO NOTHING")
                    .bind(cert_pem)
                    .bind(key_sealed)
                    .bind(at)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn put_ade_token(
                &self,
                r: &$crate::store::AdeTokenRecord,
                audit: $crate::store::NewAuditEntry,
            ) -> $crate::store::StoreResult<(uuid::Uuid, bool)> {
                let mut tx = self.pool.begin().await?;
                let existing: Option<(uuid::Uuid,)> =
                    sqlx::query_as("SELECT id FROM ade_tokens WHERE server_uuid = $1").bind(&r.server_uuid).fetch_optional(&mut *tx).await?;
                let result = match existing {
                    Some((id,)) => {
                        sqlx::query(
                            "UPDATE ade_tokens SET server_name = $1, org_name = $2, org_email = $3, admin_id = $4, secrets_sealed = $5, \
                             expires_at = $6, renewed_at = $7, last_error = NULL, last_error_at = NULL WHERE id = $8",
                        )
                        .bind(&r.server_name)
                        .bind(&r.org_name)
                        .bind(&r.org_email)
                        .bind(&r.admin_id)
                        .bind(&r.secrets_sealed)
                        .bind(r.expires_at)
                        .bind(r.created_at)
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                        (id, true)
                    }
                    None => {
                        sqlx::query(
                            "INSERT INTO ade_tokens (id, server_uuid, server_name, org_name, org_email, admin_id, secrets_sealed, expires_at, \
                             created_at, created_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                        )
                        .bind(r.id)
                        .bind(&r.server_uuid)
                        .bind(&r.server_name)
                        .bind(&r.org_name)
                        .bind(&r.org_email)
                        .bind(&r.admin_id)
                        .bind(&r.secrets_sealed)
                        .bind(r.expires_at)
                        .bind(r.created_at)
                        .bind(&r.created_by)
                        .execute(&mut *tx)
                        .await?;
                        (r.id, false)
                    }
                };
                let mut audit = audit;
                audit.target = Some(result.0.to_string());
                audit.details = $crate::store::audit::with_detail(&audit.details, "renewal", serde_json::json!(result.1));
                $crate::store::audit::append_audit_in!(&mut *tx, audit)?;
                tx.commit().await?;
                Ok(result)
            }

            async fn ade_tokens(&self) -> $crate::store::StoreResult<Vec<$crate::store::AdeTokenRecord>> {
                Ok(sqlx::query_as("SELECT * FROM ade_tokens ORDER BY created_at, id").fetch_all(&self.pool).await?)
            }

            async fn ade_token(&self, id: uuid::Uuid) -> $crate::store::StoreResult<Option<$crate::store::AdeTokenRecord>> {
                Ok(sqlx::query_as("SELECT * FROM ade_tokens WHERE id = $1").bind(id).fetch_optional(&self.pool).await?)
            }

            async fn delete_ade_token(&self, id: uuid::Uuid, audit: $crate::store::NewAuditEntry) -> $crate::store::StoreResult<bool> {
                let mut tx = self.pool.begin().await?;
                let gone = sqlx::query("DELETE FROM ade_tokens WHERE id = $1").bind(id).execute(&mut *tx).await?.rows_affected() == 1;
                if gone {
                    $crate::store::audit::append_audit_in!(&mut *tx, audit)?;
                }
                tx.commit().await?;
                Ok(gone)
            }

            async fn ade_token_counts(&self) -> $crate::store::StoreResult<Vec<$crate::store::AdeTokenCounts>> {
                Ok(sqlx::query_as(
                    "SELECT a.token_id AS token_id, COUNT(*) AS devices, \
                     COALESCE(SUM(CASE WHEN a.removed_at IS NOT NULL THEN 1 ELSE 0 END), 0) AS removed, \
                     COALESCE(SUM(CASE WHEN EXISTS (SELECT 1 FROM devices d WHERE d.serial_number = a.serial_number) THEN 1 ELSE 0 END), 0) AS enrolled, \
                     COALESCE(SUM(CASE WHEN a.mdm_migration_deadline IS NOT NULL AND a.removed_at IS NULL \
                       AND NOT EXISTS (SELECT 1 FROM devices d WHERE d.serial_number = a.serial_number) THEN 1 ELSE 0 END), 0) AS migrating, \
                     MIN(CASE WHEN a.removed_at IS NULL AND NOT EXISTS (SELECT 1 FROM devices d WHERE d.serial_number = a.serial_number) \
                       THEN a.mdm_migration_deadline END) AS next_migration_deadline \
                     FROM ade_devices a GROUP BY a.token_id",
                )
                .fetch_all(&self.pool)
                .await?)
            }

            async fn begin_ade_sync(
                &self,
                id: uuid::Uuid,
                at: chrono::DateTime<chrono::Utc>,
                stale_before: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<bool> {
                Ok(sqlx::query(
                    "UPDATE ade_tokens SET sync_state = 'running', sync_started_at = $1, sync_devices = 0 \
                     WHERE id = $2 AND (sync_state <> 'running' OR sync_started_at IS NULL OR sync_started_at < $3)",
                )
                .bind(at)
                .bind(id)
                .bind(stale_before)
                .execute(&self.pool)
                .await?
                .rows_affected()
                    == 1)
            }

            async fn finish_ade_sync(
                &self,
                id: uuid::Uuid,
                at: chrono::DateTime<chrono::Utc>,
                error: Option<&str>,
            ) -> $crate::store::StoreResult<()> {
                let q = match error {
                    None => sqlx::query("UPDATE ade_tokens SET sync_state = 'idle', last_sync_at = $1, last_error = NULL, last_error_at = NULL WHERE id = $2")
                        .bind(at)
                        .bind(id),
                    Some(e) => sqlx::query("UPDATE ade_tokens SET sync_state = 'idle', last_error = $1, last_error_at = $2 WHERE id = $3")
                        .bind(e)
                        .bind(at)
                        .bind(id),
                };
                q.execute(&self.pool).await?;
                Ok(())
            }

            async fn start_ade_fetch(&self, id: uuid::Uuid) -> $crate::store::StoreResult<i64> {
                let (generation,): (i64,) = sqlx::query_as(
                    "UPDATE ade_tokens SET fetch_generation = fetch_generation + 1, fetch_cursor = '', cursor = NULL, cursor_at = NULL \
                     WHERE id = $1 RETURNING fetch_generation",
                )
                .bind(id)
                .fetch_one(&self.pool)
                .await?;
                Ok(generation)
            }

            async fn apply_ade_page(&self, id: uuid::Uuid, page: &$crate::store::AdePage) -> $crate::store::StoreResult<()> {
                let mut tx = self.pool.begin().await?;
                let (generation,): (i64,) =
                    sqlx::query_as("SELECT fetch_generation FROM ade_tokens WHERE id = $1").bind(id).fetch_one(&mut *tx).await?;
                for chunk in page.devices.chunks(500) {
                    let mut q = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO ade_devices (serial_number, token_id, model, description, color, asset_tag, os, device_family, \
                         profile_status, profile_uuid, profile_assign_time, profile_push_time, device_assigned_date, device_assigned_by, \
                         mdm_migration_deadline, op_type, op_date, seen_generation, removed_at, updated_at) ",
                    );
                    q.push_values(chunk, |mut b, d| {
                        b.push_bind(&d.serial_number)
                            .push_bind(id)
                            .push_bind(&d.model)
                            .push_bind(&d.description)
                            .push_bind(&d.color)
                            .push_bind(&d.asset_tag)
                            .push_bind(&d.os)
                            .push_bind(&d.device_family)
                            .push_bind(&d.profile_status)
                            .push_bind(&d.profile_uuid)
                            .push_bind(&d.profile_assign_time)
                            .push_bind(&d.profile_push_time)
                            .push_bind(&d.device_assigned_date)
                            .push_bind(&d.device_assigned_by)
                            .push_bind(&d.mdm_migration_deadline)
                            .push_bind(&d.op_type)
                            .push_bind(&d.op_date)
                            .push_bind(generation)
                            .push_bind(None::<chrono::DateTime<chrono::Utc>>)
                            .push_bind(page.at);
                    });
                    // A record older than the one stored (Apple may send both) changes nothing.
                    q.push(
                        " ON CONFLICT (serial_number) DO UPDATE SET token_id = excluded.token_id, model = excluded.model, \
                         description = excluded.description, color = excluded.color, asset_tag = excluded.asset_tag, os = excluded.os, \
                         device_family = excluded.device_family, profile_status = excluded.profile_status, profile_uuid = excluded.profile_uuid, \
                         profile_assign_time = excluded.profile_assign_time, profile_push_time = excluded.profile_push_time, \
                         device_assigned_date = excluded.device_assigned_date, device_assigned_by = excluded.device_assigned_by, \
                         mdm_migration_deadline = excluded.mdm_migration_deadline, op_type = excluded.op_type, \
                         op_date = COALESCE(excluded.op_date, ade_devices.op_date), seen_generation = excluded.seen_generation, \
                         removed_at = NULL, updated_at = excluded.updated_at \
                         WHERE excluded.op_date IS NULL OR ade_devices.op_date IS NULL OR excluded.op_date >= ade_devices.op_date",
                    );
                    q.build().execute(&mut *tx).await?;
                }
                for (serial, op_date) in &page.removed {
                    sqlx::query(
                        "UPDATE ade_devices SET removed_at = $1, op_type = 'deleted', op_date = COALESCE($2, op_date), updated_at = $1 \
                         WHERE serial_number = $3 AND token_id = $4 AND ($2 IS NULL OR op_date IS NULL OR op_date <= $2)",
                    )
                    .bind(page.at)
                    .bind(op_date)
                    .bind(serial)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                }
                let applied = (page.devices.len() + page.removed.len()) as i64;
                match &page.cursor {
                    $crate::store::CursorMove::Fetch { cursor, done: false } => {
                        sqlx::query("UPDATE ade_tokens SET fetch_cursor = $1, sync_devices = sync_devices + $2 WHERE id = $3")
                            .bind(cursor)
                            .bind(applied)
                            .bind(id)
                            .execute(&mut *tx)
                            .await?;
                    }
                    $crate::store::CursorMove::Fetch { cursor, done: true } => {
                        sqlx::query(
                            "UPDATE ade_tokens SET fetch_cursor = NULL, cursor = $1, cursor_at = $2, sync_devices = sync_devices + $3 WHERE id = $4",
                        )
                        .bind(cursor)
                        .bind(page.at)
                        .bind(applied)
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                        // What the full fetch no longer lists has left this server in ASM.
                        sqlx::query(
                            "UPDATE ade_devices SET removed_at = $1, updated_at = $1 \
                             WHERE token_id = $2 AND seen_generation < $3 AND removed_at IS NULL",
                        )
                        .bind(page.at)
                        .bind(id)
                        .bind(generation)
                        .execute(&mut *tx)
                        .await?;
                    }
                    $crate::store::CursorMove::Sync { cursor } => {
                        sqlx::query("UPDATE ade_tokens SET cursor = $1, cursor_at = $2, sync_devices = sync_devices + $3 WHERE id = $4")
                            .bind(cursor)
                            .bind(page.at)
                            .bind(applied)
                            .bind(id)
                            .execute(&mut *tx)
                            .await?;
                    }
                }
                tx.commit().await?;
                Ok(())
            }

            async fn ade_devices(&self, f: &$crate::store::AdeDeviceFilter) -> $crate::store::StoreResult<Vec<$crate::store::AdeDeviceRow>> {
                let mut q = sqlx::QueryBuilder::<$db>::new(
                    "SELECT a.*, (SELECT d.udid FROM devices d WHERE d.serial_number = a.serial_number ORDER BY d.udid LIMIT 1) AS enrolled_udid \
                     FROM ade_devices a WHERE 1 = 1",
                );
                if let Some(t) = f.token {
                    q.push(" AND a.token_id = ").push_bind(t);
                }
                if let Some(s) = &f.profile_status {
                    q.push(" AND a.profile_status = ").push_bind(s.clone());
                }
                if let Some(text) = &f.q {
                    let like = format!("%{}%", $crate::store::like_escape(&text.to_lowercase()));
                    q.push(" AND (LOWER(a.serial_number) LIKE ").push_bind(like.clone()).push(" ESCAPE '\\'");
                    q.push(" OR LOWER(COALESCE(a.description, '')) LIKE ").push_bind(like.clone()).push(" ESCAPE '\\'");
                    q.push(" OR LOWER(COALESCE(a.model, '')) LIKE ").push_bind(like.clone()).push(" ESCAPE '\\'");
                    q.push(" OR LOWER(COALESCE(a.asset_tag, '')) LIKE ").push_bind(like).push(" ESCAPE '\\')");
                }
                if let Some(after) = &f.after {
                    q.push(" AND a.serial_number > ").push_bind(after.clone());
                }
                q.push(" ORDER BY a.serial_number LIMIT ").push_bind(f.limit);
                Ok(q.build_query_as().fetch_all(&self.pool).await?)
            }

            async fn create_ade_profile(&self, r: &$crate::store::AdeProfileRecord, audit: $crate::store::NewAuditEntry) -> $crate::store::StoreResult<()> {
                let mut tx = self.pool.begin().await?;
                sqlx::query("INSERT INTO ade_profiles (id, name, settings, created_at, created_by, updated_at) VALUES ($1, $2, $3, $4, $5, $6)")
                    .bind(r.id)
                    .bind(&r.name)
                    .bind(&r.settings)
                    .bind(r.created_at)
                    .bind(&r.created_by)
                    .bind(r.updated_at)
                    .execute(&mut *tx)
                    .await
                    .map_err($crate::store::conflict_or("an ADE profile with this name"))?;
                $crate::store::audit::append_audit_in!(&mut *tx, audit)?;
                tx.commit().await?;
                Ok(())
            }

            async fn ade_profiles(&self) -> $crate::store::StoreResult<Vec<$crate::store::AdeProfileRecord>> {
                Ok(sqlx::query_as("SELECT * FROM ade_profiles ORDER BY name").fetch_all(&self.pool).await?)
            }

            async fn ade_profile(&self, id: uuid::Uuid) -> $crate::store::StoreResult<Option<$crate::store::AdeProfileRecord>> {
                Ok(sqlx::query_as("SELECT * FROM ade_profiles WHERE id = $1").bind(id).fetch_optional(&self.pool).await?)
            }

            async fn update_ade_profile(&self, r: &$crate::store::AdeProfileRecord, audit: $crate::store::NewAuditEntry) -> $crate::store::StoreResult<bool> {
                let mut tx = self.pool.begin().await?;
                let found = sqlx::query("UPDATE ade_profiles SET name = $1, settings = $2, updated_at = $3 WHERE id = $4")
                    .bind(&r.name)
                    .bind(&r.settings)
                    .bind(r.updated_at)
                    .bind(r.id)
                    .execute(&mut *tx)
                    .await
                    .map_err($crate::store::conflict_or("an ADE profile with this name"))?
                    .rows_affected()
                    == 1;
                if found {
                    $crate::store::audit::append_audit_in!(&mut *tx, audit)?;
                }
                tx.commit().await?;
                Ok(found)
            }

            async fn delete_ade_profile(&self, id: uuid::Uuid, audit: $crate::store::NewAuditEntry) -> $crate::store::StoreResult<bool> {
                let mut tx = self.pool.begin().await?;
                let found = sqlx::query("DELETE FROM ade_profiles WHERE id = $1").bind(id).execute(&mut *tx).await?.rows_affected() == 1;
                if found {
                    $crate::store::audit::append_audit_in!(&mut *tx, audit)?;
                }
                tx.commit().await?;
                Ok(found)
            }

            async fn ade_profile_definitions(&self, token_id: uuid::Uuid) -> $crate::store::StoreResult<Vec<(uuid::Uuid, String, String)>> {
                Ok(sqlx::query_as("SELECT profile_id, settings_hash, profile_uuid FROM ade_profile_definitions WHERE token_id = $1")
                    .bind(token_id)
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn put_ade_profile_definition(
                &self,
                profile_id: uuid::Uuid,
                token_id: uuid::Uuid,
                hash: &str,
                profile_uuid: &str,
                at: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<()> {
                sqlx::query(
                    "INSERT INTO ade_profile_definitions (profile_id, token_id, settings_hash, profile_uuid, defined_at) VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (profile_id, token_id) DO UPDATE SET settings_hash = excluded.settings_hash, profile_uuid = excluded.profile_uuid, \
                     defined_at = excluded.defined_at",
                )
                .bind(profile_id)
                .bind(token_id)
                .bind(hash)
                .bind(profile_uuid)
                .bind(at)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn set_ade_assignment(&self, token_id: uuid::Uuid, rules: Option<&str>, audit: $crate::store::NewAuditEntry) -> $crate::store::StoreResult<bool> {
                let mut tx = self.pool.begin().await?;
                let found =
                    sqlx::query("UPDATE ade_tokens SET assignment = $1 WHERE id = $2").bind(rules).bind(token_id).execute(&mut *tx).await?.rows_affected() == 1;
                if found {
                    $crate::store::audit::append_audit_in!(&mut *tx, audit)?;
                }
                tx.commit().await?;
                Ok(found)
            }

            async fn ade_assignment_candidates(&self, token_id: uuid::Uuid) -> $crate::store::StoreResult<Vec<$crate::store::AdeAssignCandidate>> {
                Ok(sqlx::query_as(
                    "SELECT serial_number, model, device_family, profile_uuid, profile_status, assign_profile_id, assign_result, assign_retry_at \
                     FROM ade_devices WHERE token_id = $1 AND removed_at IS NULL ORDER BY serial_number",
                )
                .bind(token_id)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn record_ade_assignments(&self, results: &[$crate::store::AdeAssignResult], at: chrono::DateTime<chrono::Utc>) -> $crate::store::StoreResult<()> {
                let mut tx = self.pool.begin().await?;
                let stamp = at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
                for r in results {
                    if r.result == "SUCCESS" {
                        sqlx::query(
                            "UPDATE ade_devices SET assign_profile_id = $1, assign_result = $2, assign_attempted_at = $3, assign_retry_at = NULL, \
                             profile_uuid = $4, profile_status = 'assigned', profile_assign_time = $5 WHERE serial_number = $6",
                        )
                        .bind(r.profile_id)
                        .bind(&r.result)
                        .bind(at)
                        .bind(&r.profile_uuid)
                        .bind(&stamp)
                        .bind(&r.serial_number)
                        .execute(&mut *tx)
                        .await?;
                    } else {
                        sqlx::query(
                            "UPDATE ade_devices SET assign_profile_id = $1, assign_result = $2, assign_attempted_at = $3, assign_retry_at = $4 \
                             WHERE serial_number = $5",
                        )
                        .bind(r.profile_id)
                        .bind(&r.result)
                        .bind(at)
                        .bind(r.retry_at)
                        .bind(&r.serial_number)
                        .execute(&mut *tx)
                        .await?;
                    }
                }
                tx.commit().await?;
                Ok(())
            }

            async fn ade_device_tokens(&self, serials: &[String]) -> $crate::store::StoreResult<Vec<(String, uuid::Uuid)>> {
                let mut out = Vec::new();
                for chunk in serials.chunks(500) {
                    let mut q = sqlx::QueryBuilder::<$db>::new("SELECT serial_number, token_id FROM ade_devices WHERE serial_number IN (");
                    $crate::store::close_in_list(&mut q, chunk);
                    out.extend(q.build_query_as::<(String, uuid::Uuid)>().fetch_all(&self.pool).await?);
                }
                Ok(out)
            }

            async fn ade_device(&self, serial: &str) -> $crate::store::StoreResult<Option<$crate::store::AdeDeviceRow>> {
                Ok(sqlx::query_as(
                    "SELECT a.*, (SELECT d.udid FROM devices d WHERE d.serial_number = a.serial_number ORDER BY d.udid LIMIT 1) AS enrolled_udid \
                     FROM ade_devices a WHERE a.serial_number = $1",
                )
                .bind(serial)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn create_ade_enrolment(
                &self,
                e: &$crate::store::AdeEnrolmentRecord,
                token: &$crate::store::EnrollmentTokenRecord,
                audit: $crate::store::NewAuditEntry,
            ) -> $crate::store::StoreResult<bool> {
                let mut tx = self.pool.begin().await?;
                $crate::store::devices::insert_enrollment_token_in!(&mut *tx, token)?;
                let r = sqlx::query(
                    "INSERT INTO ade_enrolments (machine_info_sha256, serial_number, udid, product, os_version, token_id, at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (machine_info_sha256) DO NOTHING",
                )
                .bind(&e.machine_info_sha256)
                .bind(&e.serial_number)
                .bind(&e.udid)
                .bind(&e.product)
                .bind(&e.os_version)
                .bind(e.token_id)
                .bind(e.at)
                .execute(&mut *tx)
                .await?;
                if r.rows_affected() != 1 {
                    return Ok(false); // dropped: the token goes with it
                }
                $crate::store::audit::append_audit_in!(&mut *tx, audit)?;
                tx.commit().await?;
                Ok(true)
            }

            async fn latest_ade_enrolment(&self, serial: &str) -> $crate::store::StoreResult<Option<$crate::store::AdeEnrolmentRecord>> {
                Ok(sqlx::query_as("SELECT * FROM ade_enrolments WHERE serial_number = $1 ORDER BY at DESC LIMIT 1")
                    .bind(serial)
                    .fetch_optional(&self.pool)
                    .await?)
            }
        }
    };
}
pub(crate) use impl_ade_store;
