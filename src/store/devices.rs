//! Devices, their identity certificates, enrolment tokens and the school's push certificate.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{NewAuditEntry, NewCommand, StoreResult};

/// The device whose certificate is `$1`, for a device request (see [`DeviceSession`]).
pub(crate) const DEVICE_SESSION: &str = concat!(
    "SELECT d.udid, d.last_seen_at, (SELECT p.last_push_at FROM device_push p WHERE p.udid = d.udid) AS last_push_at, \
       (SELECT COUNT(*) FROM command_targets t WHERE t.udid = d.udid AND ",
    super::pending!("t."),
    ") AS pending FROM devices d WHERE d.cert_sha256 = $1"
);

/// Device `$1` was seen at `$2` (which also ends its count of unanswered pushes: see store::push).
pub(crate) const TOUCH_DEVICE: &str = "UPDATE devices SET last_seen_at = $2 WHERE udid = $1";

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PushCertRecord {
    pub topic: String,
    pub subject: String,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    pub cert_pem: String,
    pub key_sealed: Vec<u8>,
    pub uploaded_at: DateTime<Utc>,
    pub uploaded_by: String,
}

/// A push-certificate request Lanyard made: its CSR, its sealed key, and (signed by a vendor
/// certificate) the file the portal takes. Pending until the certificate issued for it is loaded.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PushCertRequestRecord {
    pub id: Uuid,
    pub csr_pem: String,
    pub key_sealed: Vec<u8>,
    pub signed_request: Option<String>,
    pub vendor_subject: Option<String>,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub completed_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EnrollmentTokenRecord {
    pub id: Uuid,
    pub label: String,
    pub token_hash: String,
    pub max_uses: Option<i64>,
    pub uses: i64,
    pub expires_at: Option<DateTime<Utc>>,
    pub group_name: Option<String>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// ADE enrolment: the serial number of the one device this token was made for.
    pub bound_serial: Option<String>,
}

impl EnrollmentTokenRecord {
    /// Not revoked, not expired, uses left.
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|e| e > now) && self.max_uses.is_none_or(|m| self.uses < m)
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct IssuedCertRecord {
    pub sha256: String,
    pub serial: String,
    pub subject: String,
    pub not_after: DateTime<Utc>,
    pub issued_at: DateTime<Utc>,
    pub enrollment_token_id: Option<Uuid>,
    /// The certificate this one renewed (SCEP RenewalReq).
    pub renewed_from: Option<String>,
}

/// What a device's connect request needs to know about it: who it is, when it was last seen
/// and pushed, and whether anything is pending for it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeviceSession {
    pub udid: String,
    pub last_seen_at: DateTime<Utc>,
    pub last_push_at: Option<DateTime<Utc>>,
    /// How many of this device's targets are queued, sent or not_now (expired ones too).
    pub pending: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeviceRecord {
    pub udid: String,
    pub serial_number: Option<String>,
    pub model: Option<String>,
    pub model_name: Option<String>,
    pub product_name: Option<String>,
    pub device_name: Option<String>,
    pub os_version: Option<String>,
    pub build_version: Option<String>,
    pub platform: String,
    pub topic: Option<String>,
    pub imei: Option<String>,
    pub meid: Option<String>,
    pub wifi_mac: Option<String>,
    pub bluetooth_mac: Option<String>,
    pub supervised: Option<bool>,
    pub encrypted: Option<bool>,
    pub passcode_present: Option<bool>,
    pub passcode_compliant: Option<bool>,
    pub filevault_enabled: Option<bool>,
    pub storage_capacity_gb: Option<f64>,
    pub storage_available_gb: Option<f64>,
    pub battery_level: Option<f64>,
    pub enrolled: bool,
    pub enrolled_at: Option<DateTime<Utc>>,
    pub unenrolled_at: Option<DateTime<Utc>>,
    pub first_seen_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub authenticated_at: DateTime<Utc>,
    pub enrollment_token_id: Option<Uuid>,
    pub cert_sha256: Option<String>,
    pub push_token: Option<Vec<u8>>,
    pub push_magic: Option<String>,
    pub push_token_invalid_at: Option<DateTime<Utc>>,
    pub unlock_token_sealed: Option<Vec<u8>>,
    pub bootstrap_token_sealed: Option<Vec<u8>>,
    pub awaiting_configuration: bool,
    /// Let out of Setup Assistant before all its profiles were in: what happened.
    pub setup_flag: Option<String>,
    /// When the device gave the Activation Lock bypass code Lanyard holds (sealed, read apart).
    pub activation_lock_bypass_at: Option<DateTime<Utc>>,
    /// When Lanyard last asked for that code.
    pub activation_lock_requested_at: Option<DateTime<Utc>>,
    /// When Lanyard turned Declarative Device Management on for it.
    pub ddm_requested_at: Option<DateTime<Utc>>,
    pub inventory_requested_at: Option<DateTime<Utc>>,
    pub info_updated_at: Option<DateTime<Utc>>,
    pub security_updated_at: Option<DateTime<Utc>>,
}

/// What a TokenUpdate message tells us.
#[derive(Debug, Clone, Copy)]
pub struct TokenUpdateRecord<'a> {
    pub udid: &'a str,
    pub token: &'a [u8],
    pub push_magic: &'a str,
    /// Sealed; None keeps the one on record.
    pub unlock_token_sealed: Option<&'a [u8]>,
    pub awaiting_configuration: bool,
    pub at: DateTime<Utc>,
}

/// What an Authenticate message tells us.
#[derive(Debug, Clone)]
pub struct AuthenticateRecord {
    pub udid: String,
    pub serial_number: Option<String>,
    pub model: Option<String>,
    pub model_name: Option<String>,
    pub product_name: Option<String>,
    pub device_name: Option<String>,
    pub os_version: Option<String>,
    pub build_version: Option<String>,
    pub platform: String,
    pub topic: String,
    pub imei: Option<String>,
    pub meid: Option<String>,
    pub cert_sha256: String,
    pub enrollment_token_id: Option<Uuid>,
    pub at: DateTime<Utc>,
    /// The CMS signing time of the Authenticate, if its signature carried one.
    pub signed_at: Option<i64>,
}

/// Inventory read from DeviceInformation / SecurityInfo results; `None` leaves a column alone.
#[derive(Debug, Clone, Default)]
pub struct InventoryUpdate {
    pub serial_number: Option<String>,
    pub model: Option<String>,
    pub model_name: Option<String>,
    pub product_name: Option<String>,
    pub device_name: Option<String>,
    pub os_version: Option<String>,
    pub build_version: Option<String>,
    pub platform: Option<String>,
    pub imei: Option<String>,
    pub meid: Option<String>,
    pub wifi_mac: Option<String>,
    pub bluetooth_mac: Option<String>,
    pub supervised: Option<bool>,
    pub encrypted: Option<bool>,
    pub passcode_present: Option<bool>,
    pub passcode_compliant: Option<bool>,
    pub filevault_enabled: Option<bool>,
    pub storage_capacity_gb: Option<f64>,
    pub storage_available_gb: Option<f64>,
    pub battery_level: Option<f64>,
    pub info_updated_at: Option<DateTime<Utc>>,
    pub security_updated_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Default)]
pub struct DeviceFilter {
    /// Matches UDID, serial number, device name, model name or product name.
    pub text: Option<String>,
    pub platform: Option<String>,
    pub enrolled: Option<bool>,
    pub last_seen_before: Option<DateTime<Utc>>,
    pub last_seen_after: Option<DateTime<Utc>>,
    /// Cursor: UDIDs after this one.
    pub after_udid: Option<String>,
    pub limit: i64,
}

#[async_trait::async_trait]
pub trait DeviceStore: Send + Sync {
    /// Load (or replace) the push certificate, with the operator's audit entry.
    /// Load the push certificate; `completes` is the request it was issued for, marked done in
    /// the same transaction.
    async fn put_push_cert(&self, rec: &PushCertRecord, completes: Option<Uuid>, audit: NewAuditEntry) -> StoreResult<()>;
    async fn push_cert(&self) -> StoreResult<Option<PushCertRecord>>;
    async fn create_push_cert_request(&self, rec: &PushCertRequestRecord, audit: NewAuditEntry) -> StoreResult<()>;
    /// Requests whose certificate has not been loaded yet, newest first.
    async fn pending_push_cert_requests(&self) -> StoreResult<Vec<PushCertRequestRecord>>;
    async fn push_cert_request(&self, id: Uuid) -> StoreResult<Option<PushCertRequestRecord>>;

    /// A new token, with the operator's audit entry.
    async fn create_enrollment_token(&self, rec: &EnrollmentTokenRecord, audit: NewAuditEntry) -> StoreResult<()>;
    async fn enrollment_token_by_hash(&self, token_hash: &str) -> StoreResult<Option<EnrollmentTokenRecord>>;
    async fn enrollment_token(&self, id: Uuid) -> StoreResult<Option<EnrollmentTokenRecord>>;
    async fn list_enrollment_tokens(&self, limit: i64) -> StoreResult<Vec<EnrollmentTokenRecord>>;
    /// Revoke a token, with the audit entry. False if it was already revoked (and nothing
    /// audited).
    async fn revoke_enrollment_token(&self, id: Uuid, at: DateTime<Utc>, audit: NewAuditEntry) -> StoreResult<bool>;
    /// Record a certificate SCEP issued. For one issued against an enrolment token, spend one
    /// of the token's uses in the same transaction, only if the token is still live at
    /// `rec.issued_at`: false, recording nothing, if it is not (used up, expired or revoked
    /// since the request was read). So a use is spent exactly when a certificate is on record.
    async fn record_issued_cert(&self, rec: &IssuedCertRecord) -> StoreResult<bool>;
    async fn issued_cert(&self, sha256: &str) -> StoreResult<Option<IssuedCertRecord>>;

    async fn device(&self, udid: &str) -> StoreResult<Option<DeviceRecord>>;
    async fn device_by_cert(&self, cert_sha256: &str) -> StoreResult<Option<DeviceRecord>>;
    /// The device bound to this certificate, as a connect request needs it: the one query an
    /// Idle with nothing pending costs.
    async fn device_session(&self, cert_sha256: &str) -> StoreResult<Option<DeviceSession>>;
    /// Record an Authenticate: create or refresh the device, bind the certificate, forget the
    /// previous enrolment's push token and cancel what was queued for it.
    /// With the audit entry of a re-enrolment, if it is one, in the same transaction.
    async fn authenticate_device(&self, rec: &AuthenticateRecord, audit: Option<NewAuditEntry>) -> StoreResult<()>;
    /// Store a TokenUpdate. Returns true if this made the device enrolled (the first one); then,
    /// in the same transaction, `first_commands` are queued for the device and its inventory is
    /// marked requested, so an enrolment never stands without the commands that fill in its
    /// inventory.
    async fn token_update(&self, t: &TokenUpdateRecord<'_>, first_commands: &[NewCommand]) -> StoreResult<bool>;
    async fn check_out(&self, udid: &str, at: DateTime<Utc>) -> StoreResult<()>;
    /// Devices waiting in Setup Assistant (`AwaitingConfiguration`) that enrolled before this.
    async fn devices_awaiting_configuration(&self, enrolled_before: DateTime<Utc>, limit: i64) -> StoreResult<Vec<String>>;
    /// Let a device out of Setup Assistant: clear `awaiting_configuration` and queue
    /// `DeviceConfigured` (`cmd`), with the audit entry, in one transaction. False, doing
    /// nothing, if the device was not waiting (released already, by another instance or path).
    /// Mark that Lanyard asks the device for its Activation Lock bypass code now: true when it
    /// holds none and has not asked since `asked_before` (so it asks once a day at most).
    async fn claim_activation_lock_request(&self, udid: &str, at: DateTime<Utc>, asked_before: DateTime<Utc>) -> StoreResult<bool>;
    /// Keep the device's bypass code (sealed), replacing the one held.
    async fn put_activation_lock_bypass(&self, udid: &str, sealed: &[u8], at: DateTime<Utc>) -> StoreResult<()>;
    /// The sealed bypass code and when it came.
    async fn activation_lock_bypass(&self, udid: &str) -> StoreResult<Option<(Vec<u8>, DateTime<Utc>)>>;
    /// `flag`: why it goes before all its profiles were in (None: they were).
    async fn release_setup(&self, udid: &str, cmd: &NewCommand, flag: Option<&str>, audit: NewAuditEntry) -> StoreResult<bool>;
    /// Record that a state-changing message signed at `signed_at` (Unix seconds) was accepted
    /// from the device. False, changing nothing, if one signed later was accepted already: this
    /// one is a replay. True for a device with no record yet.
    async fn advance_signed_at(&self, udid: &str, signed_at: i64) -> StoreResult<bool>;
    async fn set_bootstrap_token(&self, udid: &str, sealed: Option<&[u8]>) -> StoreResult<()>;
    /// Move the device's binding to a renewed certificate.
    async fn rebind_cert(&self, udid: &str, cert_sha256: &str) -> StoreResult<()>;
    async fn touch_device(&self, udid: &str, at: DateTime<Utc>) -> StoreResult<()>;
    async fn update_inventory(&self, udid: &str, inv: &InventoryUpdate) -> StoreResult<()>;
    async fn list_devices(&self, f: &DeviceFilter) -> StoreResult<Vec<DeviceRecord>>;
    /// Remove a device record and its command results (retiring it). Not for devices on hold:
    /// the service checks first.
    async fn delete_device(&self, udid: &str, audit: NewAuditEntry) -> StoreResult<bool>;
    /// Which of these UDIDs exist.
    async fn existing_udids(&self, udids: &[String]) -> StoreResult<Vec<String>>;
    /// Which of these devices hold a (sealed) unlock token from TokenUpdate: the ones a
    /// ClearPasscode can be sent to.
    async fn udids_with_unlock_token(&self, udids: &[String]) -> StoreResult<Vec<String>>;
    /// `(udid, platform, supervised, device_name)` of those of these UDIDs that exist.
    async fn device_supervision(&self, udids: &[String]) -> StoreResult<Vec<(String, String, Option<bool>, Option<String>)>>;
}

/// Insert an enrolment token inside the caller's transaction (`$conn` is `&mut *tx`): for a token
/// an operator makes and for the one-time token of an ADE enrolment. `StoreResult<()>`.
macro_rules! insert_enrollment_token_in {
    ($conn:expr, $r:expr) => {{
        let r: &$crate::store::EnrollmentTokenRecord = $r;
        sqlx::query(
            "INSERT INTO enrollment_tokens (id, label, token_hash, max_uses, uses, expires_at, group_name, created_by, created_at, revoked_at, bound_serial) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(r.id)
        .bind(&r.label)
        .bind(&r.token_hash)
        .bind(r.max_uses)
        .bind(r.uses)
        .bind(r.expires_at)
        .bind(&r.group_name)
        .bind(&r.created_by)
        .bind(r.created_at)
        .bind(r.revoked_at)
        .bind(&r.bound_serial)
        .execute($conn)
        .await
        .map(|_| ())
        .map_err($crate::store::conflict_or("enrollment token"))
    }};
}
pub(crate) use insert_enrollment_token_in;

macro_rules! impl_device_store {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::DeviceStore for $store {
            async fn put_push_cert(
                &self,
                r: &$crate::store::PushCertRecord,
                completes: Option<uuid::Uuid>,
                audit: $crate::store::NewAuditEntry,
            ) -> $crate::store::StoreResult<()> {
                let mut tx = self.pool.begin().await?;
                if let Some(id) = completes {
                    sqlx::query("UPDATE push_cert_requests SET completed_at = $1 WHERE id = $2")
                        .bind(r.uploaded_at)
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                }
                sqlx::query(
                    "INSERT INTO push_certificate (id, topic, subject, not_before, not_after, cert_pem, key_sealed, uploaded_at, uploaded_by) \
                     VALUES (1, $1, $2, $3, $4, $5, $6, $7, $8) \
                     ON CONFLICT (id) DO UPDATE SET topic = $1, subject = $2, not_before = $3, not_after = $4, cert_pem = $5, \
                     key_sealed = $6, uploaded_at = $7, uploaded_by = $8, last_error = NULL, last_error_at = NULL",
                )
                .bind(&r.topic)
                .bind(&r.subject)
                .bind(r.not_before)
                .bind(r.not_after)
                .bind(&r.cert_pem)
                .bind(&r.key_sealed)
                .bind(r.uploaded_at)
                .bind(&r.uploaded_by)
                .execute(&mut *tx)
                .await?;
                $crate::store::audit::append_audit_in!(&mut *tx, audit)?;
                tx.commit().await?;
                Ok(())
            }

            async fn push_cert(&self) -> $crate::store::StoreResult<Option<$crate::store::PushCertRecord>> {
                Ok(sqlx::query_as("SELECT * FROM push_certificate WHERE id = 1").fetch_optional(&self.pool).await?)
            }

            async fn create_push_cert_request(
                &self,
                r: &$crate::store::PushCertRequestRecord,
                audit: $crate::store::NewAuditEntry,
            ) -> $crate::store::StoreResult<()> {
                let mut tx = self.pool.begin().await?;
                sqlx::query(
                    "INSERT INTO push_cert_requests (id, csr_pem, key_sealed, signed_request, vendor_subject, created_at, created_by) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(r.id)
                .bind(&r.csr_pem)
                .bind(&r.key_sealed)
                .bind(&r.signed_request)
                .bind(&r.vendor_subject)
                .bind(r.created_at)
                .bind(&r.created_by)
                .execute(&mut *tx)
                .await?;
                $crate::store::audit::append_audit_in!(&mut *tx, audit)?;
                tx.commit().await?;
                Ok(())
            }

            async fn pending_push_cert_requests(&self) -> $crate::store::StoreResult<Vec<$crate::store::PushCertRequestRecord>> {
                Ok(sqlx::query_as("SELECT * FROM push_cert_requests WHERE completed_at IS NULL ORDER BY created_at DESC")
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn push_cert_request(&self, id: uuid::Uuid) -> $crate::store::StoreResult<Option<$crate::store::PushCertRequestRecord>> {
                Ok(sqlx::query_as("SELECT * FROM push_cert_requests WHERE id = $1").bind(id).fetch_optional(&self.pool).await?)
            }

            async fn create_enrollment_token(
                &self,
                r: &$crate::store::EnrollmentTokenRecord,
                audit: $crate::store::NewAuditEntry,
            ) -> $crate::store::StoreResult<()> {
                let mut tx = self.pool.begin().await?;
                $crate::store::devices::insert_enrollment_token_in!(&mut *tx, r)?;
                $crate::store::audit::append_audit_in!(&mut *tx, audit)?;
                tx.commit().await?;
                Ok(())
            }

            async fn enrollment_token_by_hash(&self, h: &str) -> $crate::store::StoreResult<Option<$crate::store::EnrollmentTokenRecord>> {
                Ok(sqlx::query_as("SELECT * FROM enrollment_tokens WHERE token_hash = $1").bind(h).fetch_optional(&self.pool).await?)
            }

            async fn enrollment_token(&self, id: uuid::Uuid) -> $crate::store::StoreResult<Option<$crate::store::EnrollmentTokenRecord>> {
                Ok(sqlx::query_as("SELECT * FROM enrollment_tokens WHERE id = $1").bind(id).fetch_optional(&self.pool).await?)
            }

            async fn list_enrollment_tokens(&self, limit: i64) -> $crate::store::StoreResult<Vec<$crate::store::EnrollmentTokenRecord>> {
                Ok(sqlx::query_as("SELECT * FROM enrollment_tokens ORDER BY created_at DESC LIMIT $1").bind(limit).fetch_all(&self.pool).await?)
            }

            async fn revoke_enrollment_token(
                &self,
                id: uuid::Uuid,
                at: chrono::DateTime<chrono::Utc>,
                audit: $crate::store::NewAuditEntry,
            ) -> $crate::store::StoreResult<bool> {
                let mut tx = self.pool.begin().await?;
                let r = sqlx::query("UPDATE enrollment_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
                    .bind(id)
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

            async fn record_issued_cert(&self, r: &$crate::store::IssuedCertRecord) -> $crate::store::StoreResult<bool> {
                let mut tx = self.pool.begin().await?;
                if let Some(token) = r.enrollment_token_id {
                    let spent = sqlx::query(
                        "UPDATE enrollment_tokens SET uses = uses + 1 WHERE id = $1 AND revoked_at IS NULL \
                         AND (expires_at IS NULL OR expires_at > $2) AND (max_uses IS NULL OR uses < max_uses)",
                    )
                    .bind(token)
                    .bind(r.issued_at)
                    .execute(&mut *tx)
                    .await?;
                    if spent.rows_affected() != 1 {
                        return Ok(false);
                    }
                }
                sqlx::query(
                    "INSERT INTO issued_certificates (sha256, serial, subject, not_after, issued_at, enrollment_token_id, renewed_from) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(&r.sha256)
                .bind(&r.serial)
                .bind(&r.subject)
                .bind(r.not_after)
                .bind(r.issued_at)
                .bind(r.enrollment_token_id)
                .bind(&r.renewed_from)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn issued_cert(&self, sha256: &str) -> $crate::store::StoreResult<Option<$crate::store::IssuedCertRecord>> {
                Ok(sqlx::query_as("SELECT * FROM issued_certificates WHERE sha256 = $1").bind(sha256).fetch_optional(&self.pool).await?)
            }

            async fn device(&self, udid: &str) -> $crate::store::StoreResult<Option<$crate::store::DeviceRecord>> {
                Ok(sqlx::query_as("SELECT * FROM devices WHERE udid = $1").bind(udid).fetch_optional(&self.pool).await?)
            }

            async fn device_by_cert(&self, h: &str) -> $crate::store::StoreResult<Option<$crate::store::DeviceRecord>> {
                Ok(sqlx::query_as("SELECT * FROM devices WHERE cert_sha256 = $1").bind(h).fetch_optional(&self.pool).await?)
            }

            async fn device_session(&self, h: &str) -> $crate::store::StoreResult<Option<$crate::store::DeviceSession>> {
                if let Some(db) = $crate::store::inline::InPlace::inline(self)
                    && let $crate::store::inline::Ran::Done(done) = db.device_session(h)?
                {
                    return Ok(done);
                }
                Ok(sqlx::query_as($crate::store::devices::DEVICE_SESSION)
                .bind(h)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn authenticate_device(
                &self,
                r: &$crate::store::AuthenticateRecord,
                audit: Option<$crate::store::NewAuditEntry>,
            ) -> $crate::store::StoreResult<()> {
                let mut tx = self.pool.begin().await?;
                sqlx::query(
                    "INSERT INTO devices (udid, serial_number, model, model_name, product_name, device_name, os_version, build_version, \
                       platform, topic, imei, meid, enrolled, first_seen_at, last_seen_at, authenticated_at, enrollment_token_id, cert_sha256, \
                       last_signed_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, FALSE, $13, $13, $13, $14, $15, $16) \
                     ON CONFLICT (udid) DO UPDATE SET \
                       serial_number = COALESCE($2, devices.serial_number), model = COALESCE($3, devices.model), \
                       model_name = COALESCE($4, devices.model_name), product_name = COALESCE($5, devices.product_name), \
                       device_name = COALESCE($6, devices.device_name), os_version = COALESCE($7, devices.os_version), \
                       build_version = COALESCE($8, devices.build_version), platform = $9, topic = $10, \
                       imei = COALESCE($11, devices.imei), meid = COALESCE($12, devices.meid), \
                       enrolled = FALSE, last_seen_at = $13, authenticated_at = $13, \
                       enrollment_token_id = COALESCE($14, devices.enrollment_token_id), cert_sha256 = $15, \
                       push_token = NULL, push_magic = NULL, push_token_invalid_at = NULL, unlock_token_sealed = NULL, \
                       awaiting_configuration = FALSE, inventory_requested_at = NULL, \
                       last_signed_at = COALESCE($16, devices.last_signed_at)",
                )
                .bind(&r.udid)
                .bind(&r.serial_number)
                .bind(&r.model)
                .bind(&r.model_name)
                .bind(&r.product_name)
                .bind(&r.device_name)
                .bind(&r.os_version)
                .bind(&r.build_version)
                .bind(&r.platform)
                .bind(&r.topic)
                .bind(&r.imei)
                .bind(&r.meid)
                .bind(r.at)
                .bind(r.enrollment_token_id)
                .bind(&r.cert_sha256)
                .bind(r.signed_at)
                .execute(&mut *tx)
                .await?;
                sqlx::query(concat!(
                    "UPDATE command_targets SET status = 'cancelled', updated_at = $2 WHERE udid = $1 AND ",
                    $crate::store::pending!("")
                ))
                .bind(&r.udid)
                .bind(r.at)
                .execute(&mut *tx)
                .await?;
                if let Some(audit) = audit {
                    $crate::store::audit::append_audit_in!(&mut *tx, audit)?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn token_update(
                &self,
                t: &$crate::store::TokenUpdateRecord<'_>,
                first_commands: &[$crate::store::NewCommand],
            ) -> $crate::store::StoreResult<bool> {
                let mut tx = self.pool.begin().await?;
                // The first TokenUpdate enrols the device; a later one refreshes the token.
                let mut first = false;
                for (enrolling, sql) in [
                    (
                        true,
                        "UPDATE devices SET push_token = $2, push_magic = $3, unlock_token_sealed = COALESCE($4, unlock_token_sealed), \
                         awaiting_configuration = $5, push_token_invalid_at = NULL, last_seen_at = $6, \
                         enrolled = TRUE, enrolled_at = $6, unenrolled_at = NULL, inventory_requested_at = $6 \
                         WHERE udid = $1 AND enrolled = FALSE",
                    ),
                    (
                        false,
                        "UPDATE devices SET push_token = $2, push_magic = $3, unlock_token_sealed = COALESCE($4, unlock_token_sealed), \
                         awaiting_configuration = $5, push_token_invalid_at = NULL, last_seen_at = $6 WHERE udid = $1",
                    ),
                ] {
                    let r = sqlx::query(sql)
                        .bind(t.udid)
                        .bind(t.token)
                        .bind(t.push_magic)
                        .bind(t.unlock_token_sealed)
                        .bind(t.awaiting_configuration)
                        .bind(t.at)
                        .execute(&mut *tx)
                        .await?;
                    if r.rows_affected() == 1 {
                        first = enrolling;
                        break;
                    }
                }
                if first {
                    let target = [t.udid.to_owned()];
                    for c in first_commands {
                        $crate::store::commands::enqueue_in!(&mut *tx, $db, c, &target)?;
                    }
                }
                tx.commit().await?;
                Ok(first)
            }

            async fn advance_signed_at(&self, udid: &str, signed_at: i64) -> $crate::store::StoreResult<bool> {
                let r = sqlx::query("UPDATE devices SET last_signed_at = $2 WHERE udid = $1 AND (last_signed_at IS NULL OR last_signed_at <= $2)")
                    .bind(udid)
                    .bind(signed_at)
                    .execute(&self.pool)
                    .await?;
                if r.rows_affected() == 1 {
                    return Ok(true);
                }
                let (exists,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM devices WHERE udid = $1").bind(udid).fetch_one(&self.pool).await?;
                Ok(exists == 0)
            }

            async fn claim_activation_lock_request(
                &self,
                udid: &str,
                at: chrono::DateTime<chrono::Utc>,
                asked_before: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<bool> {
                let r = sqlx::query(
                    "UPDATE devices SET activation_lock_requested_at = $2 WHERE udid = $1 AND activation_lock_bypass_sealed IS NULL \
                     AND (activation_lock_requested_at IS NULL OR activation_lock_requested_at < $3)",
                )
                .bind(udid)
                .bind(at)
                .bind(asked_before)
                .execute(&self.pool)
                .await?;
                Ok(r.rows_affected() == 1)
            }

            async fn put_activation_lock_bypass(
                &self,
                udid: &str,
                sealed: &[u8],
                at: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<()> {
                sqlx::query("UPDATE devices SET activation_lock_bypass_sealed = $2, activation_lock_bypass_at = $3 WHERE udid = $1")
                    .bind(udid)
                    .bind(sealed)
                    .bind(at)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn activation_lock_bypass(
                &self,
                udid: &str,
            ) -> $crate::store::StoreResult<Option<(Vec<u8>, chrono::DateTime<chrono::Utc>)>> {
                let row: Option<(Option<Vec<u8>>, Option<chrono::DateTime<chrono::Utc>>)> =
                    sqlx::query_as("SELECT activation_lock_bypass_sealed, activation_lock_bypass_at FROM devices WHERE udid = $1")
                        .bind(udid)
                        .fetch_optional(&self.pool)
                        .await?;
                Ok(match row {
                    Some((Some(sealed), Some(at))) => Some((sealed, at)),
                    _ => None,
                })
            }

            async fn devices_awaiting_configuration(
                &self,
                enrolled_before: chrono::DateTime<chrono::Utc>,
                limit: i64,
            ) -> $crate::store::StoreResult<Vec<String>> {
                Ok(sqlx::query_scalar(
                    "SELECT udid FROM devices WHERE awaiting_configuration AND enrolled AND enrolled_at < $1 ORDER BY enrolled_at LIMIT $2",
                )
                .bind(enrolled_before)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn release_setup(
                &self,
                udid: &str,
                cmd: &$crate::store::NewCommand,
                flag: Option<&str>,
                audit: $crate::store::NewAuditEntry,
            ) -> $crate::store::StoreResult<bool> {
                let mut tx = self.pool.begin().await?;
                let r = sqlx::query(
                    "UPDATE devices SET awaiting_configuration = FALSE, setup_flag = $2 WHERE udid = $1 AND awaiting_configuration",
                )
                .bind(udid)
                .bind(flag)
                    .execute(&mut *tx)
                    .await?;
                if r.rows_affected() != 1 {
                    return Ok(false);
                }
                $crate::store::commands::enqueue_in!(&mut *tx, $db, cmd, &[udid.to_owned()])?;
                $crate::store::audit::append_audit_in!(&mut *tx, audit)?;
                tx.commit().await?;
                Ok(true)
            }

            async fn check_out(&self, udid: &str, at: chrono::DateTime<chrono::Utc>) -> $crate::store::StoreResult<()> {
                let mut tx = self.pool.begin().await?;
                sqlx::query(
                    "UPDATE devices SET enrolled = FALSE, unenrolled_at = $2, last_seen_at = $2, push_token = NULL, push_magic = NULL \
                     WHERE udid = $1",
                )
                .bind(udid)
                .bind(at)
                .execute(&mut *tx)
                .await?;
                sqlx::query(concat!(
                    "UPDATE command_targets SET status = 'cancelled', updated_at = $2 WHERE udid = $1 AND ",
                    $crate::store::pending!("")
                ))
                .bind(udid)
                .bind(at)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn set_bootstrap_token(&self, udid: &str, sealed: Option<&[u8]>) -> $crate::store::StoreResult<()> {
                sqlx::query("UPDATE devices SET bootstrap_token_sealed = $2 WHERE udid = $1").bind(udid).bind(sealed).execute(&self.pool).await?;
                Ok(())
            }

            async fn rebind_cert(&self, udid: &str, h: &str) -> $crate::store::StoreResult<()> {
                sqlx::query("UPDATE devices SET cert_sha256 = $2 WHERE udid = $1")
                    .bind(udid)
                    .bind(h)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::store::conflict_or("certificate binding"))?;
                Ok(())
            }

            async fn touch_device(&self, udid: &str, at: chrono::DateTime<chrono::Utc>) -> $crate::store::StoreResult<()> {
                if let Some(db) = $crate::store::inline::InPlace::inline(self)
                    && let $crate::store::inline::Ran::Done(done) = db.touch_device(udid, at)?
                {
                    return Ok(done);
                }
                sqlx::query($crate::store::devices::TOUCH_DEVICE).bind(udid).bind(at).execute(&self.pool).await?;
                Ok(())
            }

            async fn update_inventory(&self, udid: &str, i: &$crate::store::InventoryUpdate) -> $crate::store::StoreResult<()> {
                if let Some(db) = $crate::store::inline::InPlace::inline(self)
                    && let $crate::store::inline::Ran::Done(done) = db.update_inventory(udid, i)?
                {
                    return Ok(done);
                }
                $crate::store::inventory::bind_inventory!(sqlx::query($crate::store::inventory::UPDATE_INVENTORY).bind(udid), i)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn list_devices(&self, f: &$crate::store::DeviceFilter) -> $crate::store::StoreResult<Vec<$crate::store::DeviceRecord>> {
                let mut q = sqlx::QueryBuilder::<$db>::new("SELECT * FROM devices WHERE 1 = 1");
                if let Some(t) = &f.text {
                    let pat = $crate::store::register::like_pattern(t);
                    q.push(" AND (LOWER(udid) LIKE ").push_bind(pat.clone()).push(" ESCAPE '\\'");
                    for col in ["serial_number", "device_name", "model_name", "product_name"] {
                        q.push(" OR LOWER(COALESCE(").push(col).push(", '')) LIKE ").push_bind(pat.clone()).push(" ESCAPE '\\'");
                    }
                    q.push(")");
                }
                if let Some(p) = &f.platform {
                    q.push(" AND platform = ").push_bind(p.clone());
                }
                if let Some(e) = f.enrolled {
                    q.push(" AND enrolled = ").push_bind(e);
                }
                if let Some(t) = f.last_seen_before {
                    q.push(" AND last_seen_at < ").push_bind(t);
                }
                if let Some(t) = f.last_seen_after {
                    q.push(" AND last_seen_at >= ").push_bind(t);
                }
                if let Some(u) = &f.after_udid {
                    q.push(" AND udid > ").push_bind(u.clone());
                }
                q.push(" ORDER BY udid LIMIT ").push_bind(f.limit);
                Ok(q.build_query_as().fetch_all(&self.pool).await?)
            }

            async fn delete_device(&self, udid: &str, audit: $crate::store::NewAuditEntry) -> $crate::store::StoreResult<bool> {
                let mut tx = self.pool.begin().await?;
                sqlx::query("DELETE FROM command_targets WHERE udid = $1").bind(udid).execute(&mut *tx).await?;
                let r = sqlx::query("DELETE FROM devices WHERE udid = $1").bind(udid).execute(&mut *tx).await?;
                $crate::store::audit::append_audit_in!(&mut *tx, audit)?;
                tx.commit().await?;
                Ok(r.rows_affected() == 1)
            }

            async fn existing_udids(&self, udids: &[String]) -> $crate::store::StoreResult<Vec<String>> {
                let mut found = Vec::with_capacity(udids.len());
                for chunk in udids.chunks(500) {
                    let mut q = sqlx::QueryBuilder::<$db>::new("SELECT udid FROM devices WHERE udid IN (");
                    $crate::store::close_in_list(&mut q, chunk);
                    let rows: Vec<(String,)> = q.build_query_as().fetch_all(&self.pool).await?;
                    found.extend(rows.into_iter().map(|(u,)| u));
                }
                Ok(found)
            }

            async fn udids_with_unlock_token(&self, udids: &[String]) -> $crate::store::StoreResult<Vec<String>> {
                let mut found = Vec::new();
                for chunk in udids.chunks(500) {
                    let mut q = sqlx::QueryBuilder::<$db>::new("SELECT udid FROM devices WHERE unlock_token_sealed IS NOT NULL AND udid IN (");
                    $crate::store::close_in_list(&mut q, chunk);
                    let rows: Vec<(String,)> = q.build_query_as().fetch_all(&self.pool).await?;
                    found.extend(rows.into_iter().map(|(u,)| u));
                }
                Ok(found)
            }

            async fn device_supervision(
                &self,
                udids: &[String],
            ) -> $crate::store::StoreResult<Vec<(String, String, Option<bool>, Option<String>)>> {
                let mut found = Vec::with_capacity(udids.len());
                for chunk in udids.chunks(500) {
                    let mut q = sqlx::QueryBuilder::<$db>::new("SELECT udid, platform, supervised, device_name FROM devices WHERE udid IN (");
                    $crate::store::close_in_list(&mut q, chunk);
                    found.extend(q.build_query_as::<(String, String, Option<bool>, Option<String>)>().fetch_all(&self.pool).await?);
                }
                Ok(found)
            }
        }
    };
}
pub(crate) use impl_device_store;
