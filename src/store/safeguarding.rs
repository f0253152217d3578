//! Safeguarding records: cases, the custody log, devices on legal hold, evidence and the
//! two-person requests. The custody log (`case_events`) is append-only in the database too.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{NewAuditEntry, StoreResult};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CaseRecord {
    pub id: Uuid,
    pub number: i64,
    pub kind: String,
    pub state: String,
    pub summary: String,
    pub justification: String,
    /// JSON array of register person ids.
    pub people: String,
    /// JSON object of external references (police, LADO, CEOP).
    pub refs: String,
    pub involves_staff: bool,
    pub opened_by: String,
    pub opened_at: DateTime<Utc>,
    pub closed_by: Option<String>,
    pub closed_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct CaseEvent {
    pub seq: i64,
    #[serde(skip)]
    pub case_id: Uuid,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub kind: String,
    pub udid: Option<String>,
    pub justification: Option<String>,
    #[serde(skip)]
    pub detail: String,
}

#[derive(Debug, Clone)]
pub struct NewCaseEvent {
    pub case_id: Uuid,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub kind: String,
    pub udid: Option<String>,
    pub justification: Option<String>,
    pub detail: serde_json::Value,
}

impl NewCaseEvent {
    /// An entry for case `case_id`'s custody log, by `actor` (an audit actor name) at `at`.
    pub fn new(
        case_id: Uuid,
        at: DateTime<Utc>,
        actor: &str,
        kind: &str,
        udid: Option<&str>,
        justification: Option<&str>,
        detail: serde_json::Value,
    ) -> Self {
        NewCaseEvent {
            case_id,
            at,
            actor: actor.to_owned(),
            kind: kind.to_owned(),
            udid: udid.map(str::to_owned),
            justification: justification.map(str::to_owned),
            detail,
        }
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CaseDeviceRecord {
    pub case_id: Uuid,
    pub udid: String,
    /// `held` or `released`.
    pub state: String,
    /// `lost_mode`, `device_lock` or `mac_lock`.
    pub method: String,
    pub lock_pin_sealed: Option<Vec<u8>>,
    /// JSON array of the grant ids suspended when the device was quarantined.
    pub suspended_grants: String,
    pub added_by: String,
    pub added_at: DateTime<Utc>,
    pub released_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CaseCommandRecord {
    pub command_uuid: String,
    pub case_id: Uuid,
    pub udid: String,
    pub request_type: String,
    /// `lock`, `evidence` or `release`.
    pub purpose: String,
    pub evidence_id: Option<Uuid>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EvidenceRecord {
    pub id: Uuid,
    pub case_id: Uuid,
    pub udid: String,
    pub command_uuid: String,
    pub request_type: String,
    pub requested_at: DateTime<Utc>,
    pub received_at: Option<DateTime<Utc>>,
    pub status: Option<String>,
    pub sha256: Option<String>,
    pub raw: Option<Vec<u8>>,
    pub disposed_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CaseRequestRecord {
    pub id: Uuid,
    pub case_id: Uuid,
    /// `release` or `dispose`.
    pub kind: String,
    pub udid: Option<String>,
    /// `pending`, `approved` or `rejected`.
    pub state: String,
    pub requested_by: String,
    pub requested_at: DateTime<Utc>,
    pub justification: String,
    pub advice_reference: Option<String>,
    pub restore_access: bool,
    pub confirmation: Option<String>,
    pub decided_by: Option<String>,
    pub decided_at: Option<DateTime<Utc>>,
    pub decision_justification: Option<String>,
}

#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct NotificationRecord {
    pub id: Uuid,
    pub role: String,
    pub at: DateTime<Utc>,
    pub kind: String,
    pub case_id: Option<Uuid>,
    pub message: String,
}

/// The open case holding a device, if any: (case id, case number).
pub type Hold = (Uuid, i64);

#[async_trait::async_trait]
pub trait SafeguardingStore: Send + Sync {
    /// Insert a case, numbering it after the highest number so far.
    /// The audit entry is stored with the case, with the case's `number` added.
    async fn create_case(&self, c: &CaseRecord, audit: NewAuditEntry) -> StoreResult<i64>;
    async fn case(&self, id: Uuid) -> StoreResult<Option<CaseRecord>>;
    async fn list_cases(&self, state: Option<&str>, limit: i64) -> StoreResult<Vec<CaseRecord>>;
    async fn close_case(&self, id: Uuid, by: &str, at: DateTime<Utc>) -> StoreResult<()>;
    /// With an operator's audit entry, if given, in the same transaction.
    async fn append_case_event(&self, e: &NewCaseEvent, audit: Option<NewAuditEntry>) -> StoreResult<CaseEvent>;
    async fn case_events(&self, case_id: Uuid) -> StoreResult<Vec<CaseEvent>>;

    async fn put_case_device(&self, d: &CaseDeviceRecord, audit: NewAuditEntry) -> StoreResult<()>;
    async fn case_devices(&self, case_id: Uuid) -> StoreResult<Vec<CaseDeviceRecord>>;
    async fn release_case_device(&self, case_id: Uuid, udid: &str, at: DateTime<Utc>) -> StoreResult<()>;
    /// The open case (if any) holding this device.
    async fn legal_hold(&self, udid: &str) -> StoreResult<Option<Hold>>;
    /// Which of these devices are held, and by which case.
    async fn legal_holds(&self, udids: &[String]) -> StoreResult<Vec<(String, Uuid, i64)>>;
    /// The latest held record for the device (for the Mac PIN).
    async fn held_device(&self, udid: &str) -> StoreResult<Option<CaseDeviceRecord>>;

    async fn put_case_command(&self, c: &CaseCommandRecord) -> StoreResult<()>;
    async fn case_command(&self, command_uuid: &str) -> StoreResult<Option<CaseCommandRecord>>;
    async fn case_commands(&self, case_id: Uuid) -> StoreResult<Vec<CaseCommandRecord>>;

    async fn put_evidence(&self, e: &EvidenceRecord) -> StoreResult<()>;
    /// Seal a received item: raw bytes and their hash, once.
    async fn seal_evidence(&self, id: Uuid, status: &str, raw: &[u8], sha256: &str, at: DateTime<Utc>) -> StoreResult<bool>;
    async fn evidence(&self, id: Uuid) -> StoreResult<Option<EvidenceRecord>>;
    async fn case_evidence(&self, case_id: Uuid) -> StoreResult<Vec<EvidenceRecord>>;
    async fn dispose_evidence(&self, case_id: Uuid, at: DateTime<Utc>) -> StoreResult<u64>;

    async fn put_case_request(&self, r: &CaseRequestRecord, audit: NewAuditEntry) -> StoreResult<()>;
    async fn case_request(&self, id: Uuid) -> StoreResult<Option<CaseRequestRecord>>;
    async fn case_requests(&self, case_id: Uuid) -> StoreResult<Vec<CaseRequestRecord>>;
    /// Decide a pending request; false if it was no longer pending.
    /// The audit entry is stored with the decision, if it was still pending.
    async fn decide_case_request(
        &self,
        id: Uuid,
        state: &str,
        by: &str,
        justification: &str,
        at: DateTime<Utc>,
        audit: NewAuditEntry,
    ) -> StoreResult<bool>;

    async fn add_notification(&self, n: &NotificationRecord) -> StoreResult<()>;
    async fn notifications(&self, role: &str, limit: i64) -> StoreResult<Vec<NotificationRecord>>;
    /// For the governors' report: (kind, month "YYYY-MM", count) and open counts.
    async fn all_cases_brief(&self) -> StoreResult<Vec<(String, String, DateTime<Utc>)>>;
    async fn devices_on_hold(&self) -> StoreResult<i64>;
}

macro_rules! impl_safeguarding_store {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::SafeguardingStore for $store {
            async fn create_case(&self, c: &$crate::store::CaseRecord, audit: $crate::store::NewAuditEntry) -> $crate::store::StoreResult<i64> {
                // Two instances may number at once; the unique index makes one retry.
                for _ in 0..5 {
                    let mut tx = self.pool.begin().await?;
                    let r: Result<(i64,), sqlx::Error> = sqlx::query_as(
                        "INSERT INTO cases (id, number, kind, state, summary, justification, people, refs, involves_staff, opened_by, opened_at) \
                         VALUES ($1, (SELECT COALESCE(MAX(number), 0) + 1 FROM cases), $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING number",
                    )
                    .bind(c.id)
                    .bind(&c.kind)
                    .bind(&c.state)
                    .bind(&c.summary)
                    .bind(&c.justification)
                    .bind(&c.people)
                    .bind(&c.refs)
                    .bind(c.involves_staff)
                    .bind(&c.opened_by)
                    .bind(c.opened_at)
                    .fetch_one(&mut *tx)
                    .await;
                    match r {
                        Ok((n,)) => {
                            let mut audit = audit;
                            audit.details = $crate::store::audit::with_detail(&audit.details, "number", n.into());
                            $crate::store::audit::append_audit_in!(&mut *tx, audit)?;
                            tx.commit().await?;
                            return Ok(n);
                        }
                        Err(sqlx::Error::Database(db)) if db.is_unique_violation() => continue,
                        Err(e) => return Err(e.into()),
                    }
                }
                Err($crate::store::StoreError::Conflict("case number".into()))
            }

            async fn case(&self, id: uuid::Uuid) -> $crate::store::StoreResult<Option<$crate::store::CaseRecord>> {
                Ok(sqlx::query_as("SELECT * FROM cases WHERE id = $1").bind(id).fetch_optional(&self.pool).await?)
            }

            async fn list_cases(&self, state: Option<&str>, limit: i64) -> $crate::store::StoreResult<Vec<$crate::store::CaseRecord>> {
                Ok(sqlx::query_as("SELECT * FROM cases WHERE ($1 IS NULL OR state = $1) ORDER BY number DESC LIMIT $2")
                    .bind(state)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn close_case(&self, id: uuid::Uuid, by: &str, at: chrono::DateTime<chrono::Utc>) -> $crate::store::StoreResult<()> {
                sqlx::query("UPDATE cases SET state = 'closed', closed_by = $2, closed_at = $3 WHERE id = $1")
                    .bind(id)
                    .bind(by)
                    .bind(at)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn append_case_event(
                &self,
                e: &$crate::store::NewCaseEvent,
                audit: Option<$crate::store::NewAuditEntry>,
            ) -> $crate::store::StoreResult<$crate::store::CaseEvent> {
                let mut tx = self.pool.begin().await?;
                let event = sqlx::query_as(
                    "INSERT INTO case_events (case_id, at, actor, kind, udid, justification, detail) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *",
                )
                .bind(e.case_id)
                .bind(e.at)
                .bind(&e.actor)
                .bind(&e.kind)
                .bind(&e.udid)
                .bind(&e.justification)
                .bind(e.detail.to_string())
                .fetch_one(&mut *tx)
                .await?;
                if let Some(audit) = audit {
                    $crate::store::audit::append_audit_in!(&mut *tx, audit)?;
                }
                tx.commit().await?;
                Ok(event)
            }

            async fn case_events(&self, case_id: uuid::Uuid) -> $crate::store::StoreResult<Vec<$crate::store::CaseEvent>> {
                Ok(sqlx::query_as("SELECT * FROM case_events WHERE case_id = $1 ORDER BY seq").bind(case_id).fetch_all(&self.pool).await?)
            }

            async fn put_case_device(&self, d: &$crate::store::CaseDeviceRecord, audit: $crate::store::NewAuditEntry) -> $crate::store::StoreResult<()> {
                let mut tx = self.pool.begin().await?;
                sqlx::query(
                    "INSERT INTO case_devices (case_id, udid, state, method, lock_pin_sealed, suspended_grants, added_by, added_at, released_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .bind(d.case_id)
                .bind(&d.udid)
                .bind(&d.state)
                .bind(&d.method)
                .bind(&d.lock_pin_sealed)
                .bind(&d.suspended_grants)
                .bind(&d.added_by)
                .bind(d.added_at)
                .bind(d.released_at)
                .execute(&mut *tx)
                .await
                .map_err($crate::store::conflict_or("device on this case"))?;
                $crate::store::audit::append_audit_in!(&mut *tx, audit)?;
                Ok(tx.commit().await?)
            }

            async fn case_devices(&self, case_id: uuid::Uuid) -> $crate::store::StoreResult<Vec<$crate::store::CaseDeviceRecord>> {
                Ok(sqlx::query_as("SELECT * FROM case_devices WHERE case_id = $1 ORDER BY added_at").bind(case_id).fetch_all(&self.pool).await?)
            }

            async fn release_case_device(&self, case_id: uuid::Uuid, udid: &str, at: chrono::DateTime<chrono::Utc>) -> $crate::store::StoreResult<()> {
                sqlx::query("UPDATE case_devices SET state = 'released', released_at = $3 WHERE case_id = $1 AND udid = $2 AND state = 'held'")
                    .bind(case_id)
                    .bind(udid)
                    .bind(at)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn legal_hold(&self, udid: &str) -> $crate::store::StoreResult<Option<(uuid::Uuid, i64)>> {
                Ok(sqlx::query_as(
                    "SELECT c.id, c.number FROM case_devices d JOIN cases c ON c.id = d.case_id \
                     WHERE d.udid = $1 AND d.state = 'held' AND c.state = 'open' ORDER BY c.number LIMIT 1",
                )
                .bind(udid)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn legal_holds(&self, udids: &[String]) -> $crate::store::StoreResult<Vec<(String, uuid::Uuid, i64)>> {
                let mut out = Vec::new();
                for chunk in udids.chunks(500) {
                    let mut q = sqlx::QueryBuilder::<$db>::new(
                        "SELECT d.udid, c.id, c.number FROM case_devices d JOIN cases c ON c.id = d.case_id \
                         WHERE d.state = 'held' AND c.state = 'open' AND d.udid IN (",
                    );
                    $crate::store::close_in_list(&mut q, chunk);
                    out.extend(q.build_query_as::<(String, uuid::Uuid, i64)>().fetch_all(&self.pool).await?);
                }
                Ok(out)
            }

            async fn held_device(&self, udid: &str) -> $crate::store::StoreResult<Option<$crate::store::CaseDeviceRecord>> {
                Ok(sqlx::query_as(
                    "SELECT d.* FROM case_devices d JOIN cases c ON c.id = d.case_id WHERE d.udid = $1 AND d.state = 'held' \
                     AND c.state = 'open' ORDER BY d.added_at DESC LIMIT 1",
                )
                .bind(udid)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn put_case_command(&self, c: &$crate::store::CaseCommandRecord) -> $crate::store::StoreResult<()> {
                sqlx::query(
                    "INSERT INTO case_commands (command_uuid, case_id, udid, request_type, purpose, evidence_id) VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(&c.command_uuid)
                .bind(c.case_id)
                .bind(&c.udid)
                .bind(&c.request_type)
                .bind(&c.purpose)
                .bind(c.evidence_id)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn case_command(&self, command_uuid: &str) -> $crate::store::StoreResult<Option<$crate::store::CaseCommandRecord>> {
                Ok(sqlx::query_as("SELECT * FROM case_commands WHERE command_uuid = $1").bind(command_uuid).fetch_optional(&self.pool).await?)
            }

            async fn case_commands(&self, case_id: uuid::Uuid) -> $crate::store::StoreResult<Vec<$crate::store::CaseCommandRecord>> {
                Ok(sqlx::query_as("SELECT * FROM case_commands WHERE case_id = $1").bind(case_id).fetch_all(&self.pool).await?)
            }

            async fn put_evidence(&self, e: &$crate::store::EvidenceRecord) -> $crate::store::StoreResult<()> {
                sqlx::query(
                    "INSERT INTO evidence (id, case_id, udid, command_uuid, request_type, requested_at, received_at, status, sha256, raw, disposed_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                )
                .bind(e.id)
                .bind(e.case_id)
                .bind(&e.udid)
                .bind(&e.command_uuid)
                .bind(&e.request_type)
                .bind(e.requested_at)
                .bind(e.received_at)
                .bind(&e.status)
                .bind(&e.sha256)
                .bind(&e.raw)
                .bind(e.disposed_at)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn seal_evidence(
                &self,
                id: uuid::Uuid,
                status: &str,
                raw: &[u8],
                sha256: &str,
                at: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<bool> {
                let r = sqlx::query("UPDATE evidence SET status = $2, raw = $3, sha256 = $4, received_at = $5 WHERE id = $1 AND received_at IS NULL")
                    .bind(id)
                    .bind(status)
                    .bind(raw)
                    .bind(sha256)
                    .bind(at)
                    .execute(&self.pool)
                    .await?;
                Ok(r.rows_affected() == 1)
            }

            async fn evidence(&self, id: uuid::Uuid) -> $crate::store::StoreResult<Option<$crate::store::EvidenceRecord>> {
                Ok(sqlx::query_as("SELECT * FROM evidence WHERE id = $1").bind(id).fetch_optional(&self.pool).await?)
            }

            async fn case_evidence(&self, case_id: uuid::Uuid) -> $crate::store::StoreResult<Vec<$crate::store::EvidenceRecord>> {
                Ok(sqlx::query_as("SELECT * FROM evidence WHERE case_id = $1 ORDER BY requested_at, request_type").bind(case_id).fetch_all(&self.pool).await?)
            }

            async fn dispose_evidence(&self, case_id: uuid::Uuid, at: chrono::DateTime<chrono::Utc>) -> $crate::store::StoreResult<u64> {
                let r = sqlx::query("UPDATE evidence SET raw = NULL, disposed_at = $2 WHERE case_id = $1 AND disposed_at IS NULL")
                    .bind(case_id)
                    .bind(at)
                    .execute(&self.pool)
                    .await?;
                Ok(r.rows_affected())
            }

            async fn put_case_request(&self, r: &$crate::store::CaseRequestRecord, audit: $crate::store::NewAuditEntry) -> $crate::store::StoreResult<()> {
                let mut tx = self.pool.begin().await?;
                sqlx::query(
                    "INSERT INTO case_requests (id, case_id, kind, udid, state, requested_by, requested_at, justification, advice_reference, \
                     restore_access, confirmation, decided_by, decided_at, decision_justification) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
                )
                .bind(r.id)
                .bind(r.case_id)
                .bind(&r.kind)
                .bind(&r.udid)
                .bind(&r.state)
                .bind(&r.requested_by)
                .bind(r.requested_at)
                .bind(&r.justification)
                .bind(&r.advice_reference)
                .bind(r.restore_access)
                .bind(&r.confirmation)
                .bind(&r.decided_by)
                .bind(r.decided_at)
                .bind(&r.decision_justification)
                .execute(&mut *tx)
                .await?;
                $crate::store::audit::append_audit_in!(&mut *tx, audit)?;
                Ok(tx.commit().await?)
            }

            async fn case_request(&self, id: uuid::Uuid) -> $crate::store::StoreResult<Option<$crate::store::CaseRequestRecord>> {
                Ok(sqlx::query_as("SELECT * FROM case_requests WHERE id = $1").bind(id).fetch_optional(&self.pool).await?)
            }

            async fn case_requests(&self, case_id: uuid::Uuid) -> $crate::store::StoreResult<Vec<$crate::store::CaseRequestRecord>> {
                Ok(sqlx::query_as("SELECT * FROM case_requests WHERE case_id = $1 ORDER BY requested_at").bind(case_id).fetch_all(&self.pool).await?)
            }

            async fn decide_case_request(
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
                    "UPDATE case_requests SET state = $2, decided_by = $3, decision_justification = $4, decided_at = $5 \
                     WHERE id = $1 AND state = 'pending'",
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

            async fn add_notification(&self, n: &$crate::store::NotificationRecord) -> $crate::store::StoreResult<()> {
                sqlx::query("INSERT INTO notifications (id, role, at, kind, case_id, message) VALUES ($1, $2, $3, $4, $5, $6)")
                    .bind(n.id)
                    .bind(&n.role)
                    .bind(n.at)
                    .bind(&n.kind)
                    .bind(n.case_id)
                    .bind(&n.message)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn notifications(&self, role: &str, limit: i64) -> $crate::store::StoreResult<Vec<$crate::store::NotificationRecord>> {
                Ok(sqlx::query_as("SELECT * FROM notifications WHERE role = $1 ORDER BY at DESC LIMIT $2")
                    .bind(role)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn all_cases_brief(&self) -> $crate::store::StoreResult<Vec<(String, String, chrono::DateTime<chrono::Utc>)>> {
                Ok(sqlx::query_as("SELECT kind, state, opened_at FROM cases").fetch_all(&self.pool).await?)
            }

            async fn devices_on_hold(&self) -> $crate::store::StoreResult<i64> {
                let (n,): (i64,) = sqlx::query_as(
                    "SELECT COUNT(DISTINCT d.udid) FROM case_devices d JOIN cases c ON c.id = d.case_id WHERE d.state = 'held' AND c.state = 'open'",
                )
                .fetch_one(&self.pool)
                .await?;
                Ok(n)
            }
        }
    };
}
pub(crate) use impl_safeguarding_store;
