//! The user-access register's tables: people, AUP versions, signatures, grants, device
//! assignments and device-group membership history. The rules live in `crate::services::register`; this
//! only stores, except that ending a person's access (leavers, imports) is one transaction here.

use chrono::{DateTime, NaiveDate, Utc};
use uuid::Uuid;

use super::{NewAuditEntry, StoreResult};

/// What a person is to the school.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PersonKind {
    Pupil,
    Staff,
    Visitor,
    Governor,
    Contractor,
    Volunteer,
}

impl PersonKind {
    pub const ALL: [PersonKind; 6] =
        [PersonKind::Pupil, PersonKind::Staff, PersonKind::Visitor, PersonKind::Governor, PersonKind::Contractor, PersonKind::Volunteer];

    pub fn as_str(self) -> &'static str {
        match self {
            PersonKind::Pupil => "pupil",
            PersonKind::Staff => "staff",
            PersonKind::Visitor => "visitor",
            PersonKind::Governor => "governor",
            PersonKind::Contractor => "contractor",
            PersonKind::Volunteer => "volunteer",
        }
    }

    pub fn parse(s: &str) -> Option<PersonKind> {
        let s = s.trim().to_ascii_lowercase();
        PersonKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Visitors and contractors have an end date by default.
    pub fn is_temporary(self) -> bool {
        matches!(self, PersonKind::Visitor | PersonKind::Contractor)
    }
}

impl std::fmt::Display for PersonKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<String> for PersonKind {
    type Error = String;
    fn try_from(s: String) -> Result<PersonKind, String> {
        PersonKind::parse(&s).ok_or_else(|| format!("unknown kind of person {s:?}"))
    }
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct PersonRecord {
    pub id: Uuid,
    #[sqlx(try_from = "String")]
    pub kind: PersonKind,
    pub name: String,
    pub school_ref: Option<String>,
    pub year_group: Option<String>,
    pub key_stage: Option<String>,
    pub start_date: Option<NaiveDate>,
    /// The first day without access.
    pub end_date: Option<NaiveDate>,
    pub notes: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Default)]
pub struct PeopleFilter {
    pub kind: Option<PersonKind>,
    /// Case-insensitive substring of the name or school reference.
    pub text: Option<String>,
    /// Some(true): only people whose end date has come (`end_date <= today`); Some(false): only
    /// the others.
    pub leavers: Option<bool>,
    pub today: Option<NaiveDate>,
    /// Cursor: (name, id) of the last person of the previous page.
    pub after: Option<(String, Uuid)>,
    pub limit: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AupRecord {
    pub id: Uuid,
    pub audience: String,
    pub version: i64,
    pub title: String,
    pub text: String,
    pub sha256: String,
    pub effective_date: NaiveDate,
    pub review_due: NaiveDate,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
}

/// A signature, with the audience, version and title of the AUP it signs (joined).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SignatureRecord {
    pub id: Uuid,
    pub person_id: Uuid,
    pub aup_id: Uuid,
    pub method: String,
    pub signed_at: DateTime<Utc>,
    pub co_signer: Option<String>,
    pub recorded_by: String,
    pub recorded_at: DateTime<Utc>,
    pub voided_at: Option<DateTime<Utc>>,
    pub voided_by: Option<String>,
    pub void_reason: Option<String>,
    pub aup_audience: String,
    pub aup_version: i64,
    pub aup_title: String,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct GrantRecord {
    pub id: Uuid,
    pub person_id: Uuid,
    pub udid: Option<String>,
    pub group_id: Option<Uuid>,
    pub system: Option<String>,
    pub valid_from: DateTime<Utc>,
    pub valid_until: Option<DateTime<Utc>>,
    pub reason: String,
    pub signature_id: Option<Uuid>,
    pub granted_by: String,
    pub granted_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub revoked_by: Option<String>,
    pub revoke_reason: Option<String>,
}

impl GrantRecord {
    /// When the grant stops: the earlier of `valid_until` and `revoked_at`.
    pub fn ends_at(&self) -> Option<DateTime<Utc>> {
        match (self.valid_until, self.revoked_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn live_at(&self, t: DateTime<Utc>) -> bool {
        self.valid_from <= t && self.ends_at().is_none_or(|e| e > t)
    }

    /// Live now or later.
    pub fn open_at(&self, t: DateTime<Utc>) -> bool {
        self.ends_at().is_none_or(|e| e > t) && self.ends_at().is_none_or(|e| e > self.valid_from)
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AssignmentRecord {
    pub id: Uuid,
    pub person_id: Uuid,
    pub udid: String,
    pub grant_id: Option<Uuid>,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub assigned_by: String,
    pub ended_by: Option<String>,
}

impl AssignmentRecord {
    pub fn held_at(&self, t: DateTime<Utc>) -> bool {
        self.started_at <= t && self.ended_at.is_none_or(|e| e > t)
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct GroupMembership {
    pub group_id: Uuid,
    pub udid: String,
    pub added_at: DateTime<Utc>,
    pub removed_at: Option<DateTime<Utc>>,
}

/// What ending a person's access changed.
#[derive(Debug, Clone, Default)]
pub struct EndedAccess {
    pub person_id: Uuid,
    pub grants: Vec<Uuid>,
    pub assignments: Vec<Uuid>,
}

/// One person written by an import.
#[derive(Debug, Clone)]
pub struct ImportWrite {
    pub person: PersonRecord,
    pub create: bool,
    /// End the person's grants and holdings at this moment (their end date came or moved earlier).
    pub end_access_at: Option<DateTime<Utc>>,
}

#[async_trait::async_trait]
pub trait RegisterStore: Send + Sync {
    /// `Conflict("school_ref X")` if the school reference is taken.
    async fn create_person(&self, p: &PersonRecord, audit: NewAuditEntry) -> StoreResult<()>;
    /// Replace every field but `id` and `created_at`.
    async fn update_person(&self, p: &PersonRecord, audit: NewAuditEntry) -> StoreResult<()>;
    async fn person_by_id(&self, id: Uuid) -> StoreResult<Option<PersonRecord>>;
    async fn person_by_school_ref(&self, school_ref: &str) -> StoreResult<Option<PersonRecord>>;
    /// Ordered by name then id.
    async fn list_people(&self, f: &PeopleFilter) -> StoreResult<Vec<PersonRecord>>;
    async fn all_people(&self) -> StoreResult<Vec<PersonRecord>>;
    /// In one transaction: write `person` (its new end date), revoke every grant still open at
    /// `at` and end every holding still open at `at`, both at `at`.
    /// The audit entry is stored in the same transaction, with `grants_ended` and
    /// `assignments_ended` added to its details.
    async fn end_person_access(
        &self,
        person: &PersonRecord,
        at: DateTime<Utc>,
        by: &str,
        reason: &str,
        audit: NewAuditEntry,
    ) -> StoreResult<EndedAccess>;
    /// Every write of an import and its audit entry (`audits[i]` for `writes[i]`, then `applied`
    /// for the whole import), in one transaction: all or nothing.
    async fn import_people(
        &self,
        writes: &[ImportWrite],
        by: &str,
        reason: &str,
        audits: Vec<NewAuditEntry>,
        applied: NewAuditEntry,
    ) -> StoreResult<Vec<EndedAccess>>;

    async fn next_aup_version(&self, audience: &str) -> StoreResult<i64>;
    /// `Conflict` if that audience's version number was taken meanwhile.
    async fn create_aup(&self, a: &AupRecord, audit: NewAuditEntry) -> StoreResult<()>;
    async fn aup_by_id(&self, id: Uuid) -> StoreResult<Option<AupRecord>>;
    /// Ordered by audience, then newest version first.
    async fn list_aups(&self, audience: Option<&str>) -> StoreResult<Vec<AupRecord>>;

    async fn create_signature(&self, s: &SignatureRecord, audit: NewAuditEntry) -> StoreResult<()>;
    async fn signature_by_id(&self, id: Uuid) -> StoreResult<Option<SignatureRecord>>;
    /// True if it existed and was not already void.
    async fn void_signature(&self, id: Uuid, at: DateTime<Utc>, by: &str, reason: &str, audit: NewAuditEntry) -> StoreResult<bool>;
    /// Newest first, void ones included.
    async fn signatures_for_person(&self, person_id: Uuid) -> StoreResult<Vec<SignatureRecord>>;
    /// Every signature that is not void.
    async fn valid_signatures(&self) -> StoreResult<Vec<SignatureRecord>>;

    async fn create_grant(&self, g: &GrantRecord, audit: NewAuditEntry) -> StoreResult<()>;
    async fn grant_by_id(&self, id: Uuid) -> StoreResult<Option<GrantRecord>>;
    /// Revoke these grants at `at` (those not already ended by then) and, if any was, end the
    /// holdings `end_assignments` at `at` and store the audit entry (with `grants` and
    /// `assignments_ended` added), all in one transaction. The grants revoked and the holdings ended.
    async fn revoke_grants(
        &self,
        ids: &[Uuid],
        at: DateTime<Utc>,
        by: &str,
        reason: &str,
        end_assignments: &[Uuid],
        audit: NewAuditEntry,
    ) -> StoreResult<(Vec<Uuid>, Vec<Uuid>)>;
    /// Oldest first.
    async fn grants_for_person(&self, person_id: Uuid) -> StoreResult<Vec<GrantRecord>>;
    /// Grants not ended at `at` (live, or starting later).
    async fn grants_open_at(&self, at: DateTime<Utc>) -> StoreResult<Vec<GrantRecord>>;
    /// Device grants for one device, oldest first.
    async fn grants_for_udid(&self, udid: &str) -> StoreResult<Vec<GrantRecord>>;
    /// Group grants for any of these groups, oldest first.
    async fn grants_for_groups(&self, group_ids: &[Uuid]) -> StoreResult<Vec<GrantRecord>>;

    /// `Conflict` if the device already has an open holding.
    async fn create_assignment(&self, a: &AssignmentRecord, audit: NewAuditEntry) -> StoreResult<()>;
    async fn assignment_by_id(&self, id: Uuid) -> StoreResult<Option<AssignmentRecord>>;
    /// End at `at` unless already ended by then; true if it changed.
    /// The audit entry is stored with it, if it changed.
    async fn end_assignment(&self, id: Uuid, at: DateTime<Utc>, by: &str, audit: NewAuditEntry) -> StoreResult<bool>;
    /// Oldest first.
    async fn assignments_for_person(&self, person_id: Uuid) -> StoreResult<Vec<AssignmentRecord>>;
    /// Oldest first.
    async fn assignments_for_udid(&self, udid: &str) -> StoreResult<Vec<AssignmentRecord>>;
    /// Holdings not ended at `at` (current, or starting later).
    async fn assignments_open_at(&self, at: DateTime<Utc>) -> StoreResult<Vec<AssignmentRecord>>;

    /// The device-groups feature records membership changes here.
    async fn record_group_membership(&self, group_id: Uuid, udid: &str, at: DateTime<Utc>) -> StoreResult<()>;
    /// True if the device was in the group.
    async fn end_group_membership(&self, group_id: Uuid, udid: &str, at: DateTime<Utc>) -> StoreResult<bool>;
    /// Oldest first.
    async fn memberships_for_udid(&self, udid: &str) -> StoreResult<Vec<GroupMembership>>;
}

/// An audit entry's details with what ending someone's access ended.
pub(crate) fn with_ended(details: &str, e: &EndedAccess) -> String {
    let d = super::audit::with_detail(details, "grants_ended", serde_json::json!(e.grants));
    super::audit::with_detail(&d, "assignments_ended", serde_json::json!(e.assignments))
}

/// `%text%`, lower-cased and escaped, for `LOWER(column) LIKE ... ESCAPE '\'`.
pub(crate) fn like_pattern(text: &str) -> String {
    format!("%{}%", super::like_escape(&text.to_lowercase()))
}

macro_rules! impl_register_store {
    ($store:ty, $db:ty) => {
        impl $store {
            /// End one holding at `at` unless it already ended by then, inside `conn`; true if it changed.
            async fn register_end_assignment(
                conn: &mut <$db as sqlx::Database>::Connection,
                id: uuid::Uuid,
                at: chrono::DateTime<chrono::Utc>,
                by: &str,
            ) -> Result<bool, sqlx::Error> {
                let done = sqlx::query(
                    "UPDATE assignments SET ended_at = $2, ended_by = $3 WHERE id = $1 AND started_at <= $2 \
                     AND (ended_at IS NULL OR ended_at > $2)",
                )
                .bind(id)
                .bind(at)
                .bind(by)
                .execute(&mut *conn)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            /// Revoke open grants and end open holdings of one person at `at`, inside `conn`.
            async fn register_end_access(
                conn: &mut <$db as sqlx::Database>::Connection,
                person_id: uuid::Uuid,
                at: chrono::DateTime<chrono::Utc>,
                by: &str,
                reason: &str,
            ) -> Result<$crate::store::register::EndedAccess, sqlx::Error> {
                let grants: Vec<(uuid::Uuid,)> = sqlx::query_as(
                    "UPDATE grants SET revoked_at = $2, revoked_by = $3, revoke_reason = $4 \
                     WHERE person_id = $1 AND (revoked_at IS NULL OR revoked_at > $2) \
                     AND (valid_until IS NULL OR valid_until > $2) RETURNING id",
                )
                .bind(person_id)
                .bind(at)
                .bind(by)
                .bind(reason)
                .fetch_all(&mut *conn)
                .await?;
                let assignments: Vec<(uuid::Uuid,)> = sqlx::query_as(
                    "UPDATE assignments SET ended_at = CASE WHEN started_at > $2 THEN started_at ELSE $2 END, \
                     ended_by = $3 WHERE person_id = $1 AND (ended_at IS NULL OR ended_at > $2) RETURNING id",
                )
                .bind(person_id)
                .bind(at)
                .bind(by)
                .fetch_all(&mut *conn)
                .await?;
                Ok($crate::store::register::EndedAccess {
                    person_id,
                    grants: grants.into_iter().map(|(id,)| id).collect(),
                    assignments: assignments.into_iter().map(|(id,)| id).collect(),
                })
            }

            async fn register_write_person(
                conn: &mut <$db as sqlx::Database>::Connection,
                p: &$crate::store::PersonRecord,
                create: bool,
            ) -> $crate::store::StoreResult<()> {
                let q = if create {
                    sqlx::query(
                        "INSERT INTO people (id, kind, name, school_ref, year_group, key_stage, start_date, end_date, notes, updated_at, created_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                    )
                } else {
                    sqlx::query(
                        "UPDATE people SET kind = $2, name = $3, school_ref = $4, year_group = $5, key_stage = $6, \
                         start_date = $7, end_date = $8, notes = $9, updated_at = $10 WHERE id = $1",
                    )
                };
                let q = q
                    .bind(p.id)
                    .bind(p.kind.as_str())
                    .bind(&p.name)
                    .bind(&p.school_ref)
                    .bind(&p.year_group)
                    .bind(&p.key_stage)
                    .bind(p.start_date)
                    .bind(p.end_date)
                    .bind(&p.notes)
                    .bind(p.updated_at);
                let q = if create { q.bind(p.created_at) } else { q };
                let done = q
                    .execute(&mut *conn)
                    .await
                    .map_err($crate::store::conflict_or(&format!(
                        "a person with school reference {}",
                        p.school_ref.as_deref().unwrap_or("")
                    )))?;
                if done.rows_affected() != 1 {
                    return Err($crate::store::StoreError::NotFound);
                }
                Ok(())
            }
        }

        #[async_trait::async_trait]
        impl $crate::store::RegisterStore for $store {
            async fn create_person(&self, p: &$crate::store::PersonRecord, audit: $crate::store::NewAuditEntry) -> $crate::store::StoreResult<()> {
                let mut tx = self.pool.begin().await?;
                Self::register_write_person(&mut tx, p, true).await?;
                $crate::store::audit::append_audit_in!(&mut *tx, audit)?;
                Ok(tx.commit().await?)
            }

            async fn update_person(&self, p: &$crate::store::PersonRecord, audit: $crate::store::NewAuditEntry) -> $crate::store::StoreResult<()> {
                let mut tx = self.pool.begin().await?;
                Self::register_write_person(&mut tx, p, false).await?;
                $crate::store::audit::append_audit_in!(&mut *tx, audit)?;
                Ok(tx.commit().await?)
            }

            async fn person_by_id(&self, id: uuid::Uuid) -> $crate::store::StoreResult<Option<$crate::store::PersonRecord>> {
                Ok(sqlx::query_as("SELECT * FROM people WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn person_by_school_ref(&self, school_ref: &str) -> $crate::store::StoreResult<Option<$crate::store::PersonRecord>> {
                Ok(sqlx::query_as("SELECT * FROM people WHERE school_ref = $1")
                    .bind(school_ref)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn list_people(&self, f: &$crate::store::PeopleFilter) -> $crate::store::StoreResult<Vec<$crate::store::PersonRecord>> {
                let mut q = sqlx::QueryBuilder::<$db>::new("SELECT * FROM people WHERE 1 = 1");
                if let Some(k) = f.kind {
                    q.push(" AND kind = ").push_bind(k.as_str());
                }
                if let Some(t) = &f.text {
                    let pat = $crate::store::register::like_pattern(t);
                    q.push(" AND (LOWER(name) LIKE ")
                        .push_bind(pat.clone())
                        .push(" ESCAPE '\\' OR LOWER(COALESCE(school_ref, '')) LIKE ")
                        .push_bind(pat)
                        .push(" ESCAPE '\\')");
                }
                if let (Some(leavers), Some(today)) = (f.leavers, f.today) {
                    if leavers {
                        q.push(" AND end_date IS NOT NULL AND end_date <= ").push_bind(today);
                    } else {
                        q.push(" AND (end_date IS NULL OR end_date > ").push_bind(today).push(")");
                    }
                }
                if let Some((name, id)) = &f.after {
                    q.push(" AND (name > ")
                        .push_bind(name.clone())
                        .push(" OR (name = ")
                        .push_bind(name.clone())
                        .push(" AND id > ")
                        .push_bind(*id)
                        .push("))");
                }
                q.push(" ORDER BY name, id LIMIT ").push_bind(f.limit);
                Ok(q.build_query_as().fetch_all(&self.pool).await?)
            }

            async fn all_people(&self) -> $crate::store::StoreResult<Vec<$crate::store::PersonRecord>> {
                Ok(sqlx::query_as("SELECT * FROM people ORDER BY name, id")
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn end_person_access(
                &self,
                person: &$crate::store::PersonRecord,
                at: chrono::DateTime<chrono::Utc>,
                by: &str,
                reason: &str,
                mut audit: $crate::store::NewAuditEntry,
            ) -> $crate::store::StoreResult<$crate::store::register::EndedAccess> {
                let mut tx = self.pool.begin().await?;
                Self::register_write_person(&mut tx, person, false).await?;
                let ended = Self::register_end_access(&mut tx, person.id, at, by, reason).await?;
                audit.details = $crate::store::register::with_ended(&audit.details, &ended);
                $crate::store::audit::append_audit_in!(&mut *tx, audit)?;
                tx.commit().await?;
                Ok(ended)
            }

            async fn import_people(
                &self,
                writes: &[$crate::store::register::ImportWrite],
                by: &str,
                reason: &str,
                audits: Vec<$crate::store::NewAuditEntry>,
                applied: $crate::store::NewAuditEntry,
            ) -> $crate::store::StoreResult<Vec<$crate::store::register::EndedAccess>> {
                let mut tx = self.pool.begin().await?;
                let mut ended = Vec::new();
                for (w, mut audit) in writes.iter().zip(audits) {
                    Self::register_write_person(&mut tx, &w.person, w.create).await?;
                    if let Some(at) = w.end_access_at {
                        let e = Self::register_end_access(&mut tx, w.person.id, at, by, reason).await?;
                        audit.details = $crate::store::register::with_ended(&audit.details, &e);
                        ended.push(e);
                    }
                    $crate::store::audit::append_audit_in!(&mut *tx, audit)?;
                }
                $crate::store::audit::append_audit_in!(&mut *tx, applied)?;
                tx.commit().await?;
                Ok(ended)
            }

            async fn next_aup_version(&self, audience: &str) -> $crate::store::StoreResult<i64> {
                let (max,): (Option<i64>,) = sqlx::query_as("SELECT MAX(version) FROM aups WHERE audience = $1")
                    .bind(audience)
                    .fetch_one(&self.pool)
                    .await?;
                Ok(max.unwrap_or(0) + 1)
            }

            async fn create_aup(&self, a: &$crate::store::AupRecord, audit: $crate::store::NewAuditEntry) -> $crate::store::StoreResult<()> {
                let mut tx = self.pool.begin().await?;
                sqlx::query(
                    "INSERT INTO aups (id, audience, version, title, text, sha256, effective_date, review_due, created_by, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                )
                .bind(a.id)
                .bind(&a.audience)
                .bind(a.version)
                .bind(&a.title)
                .bind(&a.text)
                .bind(&a.sha256)
                .bind(a.effective_date)
                .bind(a.review_due)
                .bind(&a.created_by)
                .bind(a.created_at)
                .execute(&mut *tx)
                .await
                .map_err($crate::store::conflict_or(&format!("version {} of the {} AUP", a.version, a.audience)))?;
                $crate::store::audit::append_audit_in!(&mut *tx, audit)?;
                Ok(tx.commit().await?)
            }

            async fn aup_by_id(&self, id: uuid::Uuid) -> $crate::store::StoreResult<Option<$crate::store::AupRecord>> {
                Ok(sqlx::query_as("SELECT * FROM aups WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn list_aups(&self, audience: Option<&str>) -> $crate::store::StoreResult<Vec<$crate::store::AupRecord>> {
                let mut q = sqlx::QueryBuilder::<$db>::new("SELECT * FROM aups");
                if let Some(a) = audience {
                    q.push(" WHERE audience = ").push_bind(a.to_owned());
                }
                q.push(" ORDER BY audience, version DESC");
                Ok(q.build_query_as().fetch_all(&self.pool).await?)
            }

            async fn create_signature(&self, s: &$crate::store::SignatureRecord, audit: $crate::store::NewAuditEntry) -> $crate::store::StoreResult<()> {
                let mut tx = self.pool.begin().await?;
                sqlx::query(
                    "INSERT INTO signatures (id, person_id, aup_id, method, signed_at, co_signer, recorded_by, recorded_at, voided_at, voided_by, void_reason) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                )
                .bind(s.id)
                .bind(s.person_id)
                .bind(s.aup_id)
                .bind(&s.method)
                .bind(s.signed_at)
                .bind(&s.co_signer)
                .bind(&s.recorded_by)
                .bind(s.recorded_at)
                .bind(s.voided_at)
                .bind(&s.voided_by)
                .bind(&s.void_reason)
                .execute(&mut *tx)
                .await
                .map_err($crate::store::conflict_or("signature"))?;
                $crate::store::audit::append_audit_in!(&mut *tx, audit)?;
                Ok(tx.commit().await?)
            }

            async fn signature_by_id(&self, id: uuid::Uuid) -> $crate::store::StoreResult<Option<$crate::store::SignatureRecord>> {
                Ok(sqlx::query_as(
                    "SELECT s.*, a.audience AS aup_audience, a.version AS aup_version, a.title AS aup_title \
                     FROM signatures s JOIN aups a ON a.id = s.aup_id WHERE s.id = $1",
                )
                .bind(id)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn void_signature(
                &self,
                id: uuid::Uuid,
                at: chrono::DateTime<chrono::Utc>,
                by: &str,
                reason: &str,
                audit: $crate::store::NewAuditEntry,
            ) -> $crate::store::StoreResult<bool> {
                let mut tx = self.pool.begin().await?;
                let done = sqlx::query(
                    "UPDATE signatures SET voided_at = $2, voided_by = $3, void_reason = $4 WHERE id = $1 AND voided_at IS NULL",
                )
                .bind(id)
                .bind(at)
                .bind(by)
                .bind(reason)
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() != 1 {
                    return Ok(false);
                }
                $crate::store::audit::append_audit_in!(&mut *tx, audit)?;
                tx.commit().await?;
                Ok(true)
            }

            async fn signatures_for_person(&self, person_id: uuid::Uuid) -> $crate::store::StoreResult<Vec<$crate::store::SignatureRecord>> {
                Ok(sqlx::query_as(
                    "SELECT s.*, a.audience AS aup_audience, a.version AS aup_version, a.title AS aup_title \
                     FROM signatures s JOIN aups a ON a.id = s.aup_id WHERE s.person_id = $1 ORDER BY s.signed_at DESC, s.recorded_at DESC",
                )
                .bind(person_id)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn valid_signatures(&self) -> $crate::store::StoreResult<Vec<$crate::store::SignatureRecord>> {
                Ok(sqlx::query_as(
                    "SELECT s.*, a.audience AS aup_audience, a.version AS aup_version, a.title AS aup_title \
                     FROM signatures s JOIN aups a ON a.id = s.aup_id WHERE s.voided_at IS NULL ORDER BY s.signed_at DESC",
                )
                .fetch_all(&self.pool)
                .await?)
            }

            async fn create_grant(&self, g: &$crate::store::GrantRecord, audit: $crate::store::NewAuditEntry) -> $crate::store::StoreResult<()> {
                let mut tx = self.pool.begin().await?;
                sqlx::query(
                    "INSERT INTO grants (id, person_id, udid, group_id, system, valid_from, valid_until, reason, signature_id, \
                     granted_by, granted_at, revoked_at, revoked_by, revoke_reason) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
                )
                .bind(g.id)
                .bind(g.person_id)
                .bind(&g.udid)
                .bind(g.group_id)
                .bind(&g.system)
                .bind(g.valid_from)
                .bind(g.valid_until)
                .bind(&g.reason)
                .bind(g.signature_id)
                .bind(&g.granted_by)
                .bind(g.granted_at)
                .bind(g.revoked_at)
                .bind(&g.revoked_by)
                .bind(&g.revoke_reason)
                .execute(&mut *tx)
                .await
                .map_err($crate::store::conflict_or("grant"))?;
                $crate::store::audit::append_audit_in!(&mut *tx, audit)?;
                Ok(tx.commit().await?)
            }

            async fn grant_by_id(&self, id: uuid::Uuid) -> $crate::store::StoreResult<Option<$crate::store::GrantRecord>> {
                Ok(sqlx::query_as("SELECT * FROM grants WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn revoke_grants(
                &self,
                ids: &[uuid::Uuid],
                at: chrono::DateTime<chrono::Utc>,
                by: &str,
                reason: &str,
                end_assignments: &[uuid::Uuid],
                mut audit: $crate::store::NewAuditEntry,
            ) -> $crate::store::StoreResult<(Vec<uuid::Uuid>, Vec<uuid::Uuid>)> {
                let mut tx = self.pool.begin().await?;
                let mut revoked = Vec::new();
                for id in ids {
                    let done = sqlx::query(
                        "UPDATE grants SET revoked_at = $2, revoked_by = $3, revoke_reason = $4 \
                         WHERE id = $1 AND (revoked_at IS NULL OR revoked_at > $2) AND (valid_until IS NULL OR valid_until > $2)",
                    )
                    .bind(id)
                    .bind(at)
                    .bind(by)
                    .bind(reason)
                    .execute(&mut *tx)
                    .await?;
                    if done.rows_affected() == 1 {
                        revoked.push(*id);
                    }
                }
                if revoked.is_empty() {
                    return Ok((revoked, Vec::new()));
                }
                let mut ended = Vec::new();
                for id in end_assignments {
                    if Self::register_end_assignment(&mut tx, *id, at, by).await? {
                        ended.push(*id);
                    }
                }
                audit.details = $crate::store::audit::with_detail(&audit.details, "grants", serde_json::json!(revoked));
                audit.details = $crate::store::audit::with_detail(&audit.details, "assignments_ended", serde_json::json!(ended));
                $crate::store::audit::append_audit_in!(&mut *tx, audit)?;
                tx.commit().await?;
                Ok((revoked, ended))
            }

            async fn grants_for_person(&self, person_id: uuid::Uuid) -> $crate::store::StoreResult<Vec<$crate::store::GrantRecord>> {
                Ok(sqlx::query_as("SELECT * FROM grants WHERE person_id = $1 ORDER BY valid_from, granted_at")
                    .bind(person_id)
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn grants_open_at(&self, at: chrono::DateTime<chrono::Utc>) -> $crate::store::StoreResult<Vec<$crate::store::GrantRecord>> {
                Ok(sqlx::query_as(
                    "SELECT * FROM grants WHERE (revoked_at IS NULL OR revoked_at > $1) AND (valid_until IS NULL OR valid_until > $1) \
                     ORDER BY valid_from, granted_at",
                )
                .bind(at)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn grants_for_udid(&self, udid: &str) -> $crate::store::StoreResult<Vec<$crate::store::GrantRecord>> {
                Ok(sqlx::query_as("SELECT * FROM grants WHERE udid = $1 ORDER BY valid_from, granted_at")
                    .bind(udid)
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn grants_for_groups(&self, group_ids: &[uuid::Uuid]) -> $crate::store::StoreResult<Vec<$crate::store::GrantRecord>> {
                if group_ids.is_empty() {
                    return Ok(Vec::new());
                }
                let mut q = sqlx::QueryBuilder::<$db>::new("SELECT * FROM grants WHERE group_id IN (");
                let mut sep = q.separated(", ");
                for g in group_ids {
                    sep.push_bind(*g);
                }
                q.push(") ORDER BY valid_from, granted_at");
                Ok(q.build_query_as().fetch_all(&self.pool).await?)
            }

            async fn create_assignment(&self, a: &$crate::store::AssignmentRecord, audit: $crate::store::NewAuditEntry) -> $crate::store::StoreResult<()> {
                let mut tx = self.pool.begin().await?;
                sqlx::query(
                    "INSERT INTO assignments (id, person_id, udid, grant_id, started_at, ended_at, assigned_by, ended_by) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(a.id)
                .bind(a.person_id)
                .bind(&a.udid)
                .bind(a.grant_id)
                .bind(a.started_at)
                .bind(a.ended_at)
                .bind(&a.assigned_by)
                .bind(&a.ended_by)
                .execute(&mut *tx)
                .await
                .map_err($crate::store::conflict_or(&format!("a holder of device {}", a.udid)))?;
                $crate::store::audit::append_audit_in!(&mut *tx, audit)?;
                Ok(tx.commit().await?)
            }

            async fn assignment_by_id(&self, id: uuid::Uuid) -> $crate::store::StoreResult<Option<$crate::store::AssignmentRecord>> {
                Ok(sqlx::query_as("SELECT * FROM assignments WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn end_assignment(
                &self,
                id: uuid::Uuid,
                at: chrono::DateTime<chrono::Utc>,
                by: &str,
                audit: $crate::store::NewAuditEntry,
            ) -> $crate::store::StoreResult<bool> {
                let mut tx = self.pool.begin().await?;
                if !Self::register_end_assignment(&mut tx, id, at, by).await? {
                    return Ok(false);
                }
                $crate::store::audit::append_audit_in!(&mut *tx, audit)?;
                tx.commit().await?;
                Ok(true)
            }

            async fn assignments_for_person(&self, person_id: uuid::Uuid) -> $crate::store::StoreResult<Vec<$crate::store::AssignmentRecord>> {
                Ok(sqlx::query_as("SELECT * FROM assignments WHERE person_id = $1 ORDER BY started_at")
                    .bind(person_id)
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn assignments_for_udid(&self, udid: &str) -> $crate::store::StoreResult<Vec<$crate::store::AssignmentRecord>> {
                Ok(sqlx::query_as("SELECT * FROM assignments WHERE udid = $1 ORDER BY started_at")
                    .bind(udid)
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn assignments_open_at(&self, at: chrono::DateTime<chrono::Utc>) -> $crate::store::StoreResult<Vec<$crate::store::AssignmentRecord>> {
                Ok(sqlx::query_as("SELECT * FROM assignments WHERE ended_at IS NULL OR ended_at > $1 ORDER BY started_at")
                    .bind(at)
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn record_group_membership(
                &self,
                group_id: uuid::Uuid,
                udid: &str,
                at: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<()> {
                sqlx::query("INSERT INTO group_memberships (group_id, udid, added_at, removed_at) VALUES ($1, $2, $3, NULL)")
                    .bind(group_id)
                    .bind(udid)
                    .bind(at)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::store::conflict_or("group membership"))?;
                Ok(())
            }

            async fn end_group_membership(
                &self,
                group_id: uuid::Uuid,
                udid: &str,
                at: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<bool> {
                let done = sqlx::query(
                    "UPDATE group_memberships SET removed_at = $3 WHERE group_id = $1 AND udid = $2 AND removed_at IS NULL",
                )
                .bind(group_id)
                .bind(udid)
                .bind(at)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn memberships_for_udid(&self, udid: &str) -> $crate::store::StoreResult<Vec<$crate::store::GroupMembership>> {
                Ok(sqlx::query_as("SELECT * FROM group_memberships WHERE udid = $1 ORDER BY added_at")
                    .bind(udid)
                    .fetch_all(&self.pool)
                    .await?)
            }
        }
    };
}
pub(crate) use impl_register_store;
