//! People in the register: creating and changing them (with the rules shared by the API and the
//! MIS import), marking leavers, and one person's whole record (signatures, grants, devices held,
//! history).

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::signatures::SignatureView;
use super::status::SignatureStatus;
use super::{
    KeyStage, PersonKind, VISITOR_DEFAULT_DAYS, access_end, audience_for, conflict, optional_text, parse_year_group, person_target,
    required_text,
};
use crate::error::{Error, Result};
use crate::services::auth::Actor;
use crate::services::register::Register;
use crate::services::register::assignments::Assignment;
use crate::services::register::grants::Grant;
use crate::store::register::EndedAccess;
use crate::store::{AuditFilter, NewAuditEntry, PeopleFilter, PersonRecord, StoreError};

/// A person as the API shows them.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Person {
    pub id: Uuid,
    pub kind: PersonKind,
    pub name: String,
    pub school_ref: Option<String>,
    pub year_group: Option<String>,
    pub key_stage: Option<String>,
    /// Which AUP they sign.
    #[schema(schema_with = crate::services::register::schema::audience_or_null)]
    pub audience: Option<&'static str>,
    pub start_date: Option<NaiveDate>,
    /// The first day without access (leaving date).
    pub end_date: Option<NaiveDate>,
    /// Their end date has come.
    pub leaver: bool,
    pub notes: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Person {
    pub fn new(r: PersonRecord, today: NaiveDate) -> Person {
        Person {
            audience: audience_for(r.kind, r.key_stage.as_deref()),
            leaver: is_leaver(&r, today),
            id: r.id,
            kind: r.kind,
            name: r.name,
            school_ref: r.school_ref,
            year_group: r.year_group,
            key_stage: r.key_stage,
            start_date: r.start_date,
            end_date: r.end_date,
            notes: r.notes,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

pub fn is_leaver(r: &PersonRecord, today: NaiveDate) -> bool {
    r.end_date.is_some_and(|d| d <= today)
}

/// The fields a person is made of, before the rules are applied.
#[derive(Debug, Clone, PartialEq, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PersonFields {
    pub kind: PersonKind,
    pub name: String,
    pub school_ref: Option<String>,
    /// N, R/Reception, Y1..Y13 (pupils only)
    pub year_group: Option<String>,
    /// EYFS, KS1..KS5, if no year group
    pub key_stage: Option<String>,
    pub start_date: Option<NaiveDate>,
    pub end_date: Option<NaiveDate>,
    pub notes: Option<String>,
}

impl PersonFields {
    pub fn of(r: &PersonRecord) -> PersonFields {
        PersonFields {
            kind: r.kind,
            name: r.name.clone(),
            school_ref: r.school_ref.clone(),
            year_group: r.year_group.clone(),
            key_stage: r.key_stage.clone(),
            start_date: r.start_date,
            end_date: r.end_date,
            notes: r.notes.clone(),
        }
    }

    /// Apply the rules: trim, canonical year group, key stage derived from it, pupils need one,
    /// only pupils have one, end on or after start, visitors' and contractors' default end date.
    /// Errors name the field.
    pub fn normalise(self, today: NaiveDate) -> Result<PersonFields> {
        let name = required_text("name", &self.name, 200)?;
        let school_ref = optional_text("school_ref", self.school_ref.as_deref(), 64)?;
        let notes = optional_text("notes", self.notes.as_deref(), 2000)?;
        let year_group = optional_text("year_group", self.year_group.as_deref(), 20)?;
        let key_stage = optional_text("key_stage", self.key_stage.as_deref(), 10)?;
        let pupil = self.kind == PersonKind::Pupil;
        if !pupil && year_group.is_some() {
            return Err(Error::unprocessable("year_group", format!("only pupils have a year group; this person is {}", self.kind)));
        }
        if !pupil && key_stage.is_some() {
            return Err(Error::unprocessable("key_stage", format!("only pupils have a key stage; this person is {}", self.kind)));
        }
        let from_year = match &year_group {
            Some(y) => Some(parse_year_group(y).ok_or_else(|| {
                Error::unprocessable("year_group", format!("{y:?} is not a year group: use N, R (Reception), or Y1 to Y13"))
            })?),
            None => None,
        };
        let given_ks = match &key_stage {
            Some(k) => Some(KeyStage::parse(k).ok_or_else(|| {
                Error::unprocessable("key_stage", format!("{k:?} is not a key stage: use EYFS, KS1, KS2, KS3, KS4 or KS5"))
            })?),
            None => None,
        };
        let ks = match (&from_year, given_ks) {
            (Some((y, derived)), Some(given)) if *derived != given => {
                return Err(Error::unprocessable(
                    "key_stage",
                    format!("{y} is in {}, not {}; leave key_stage out to derive it from the year group", derived.as_str(), given.as_str()),
                ));
            }
            (Some((_, derived)), _) => Some(*derived),
            (None, given) => given,
        };
        if pupil && ks.is_none() {
            return Err(Error::unprocessable(
                "year_group",
                "a pupil needs a year group (N, R, Y1 to Y13) or a key stage (EYFS, KS1 to KS5)",
            ));
        }
        let mut end_date = self.end_date;
        // Leaving on the start date is allowed: a supply teacher in for one day.
        if let (Some(s), Some(e)) = (self.start_date, end_date)
            && e < s
        {
            return Err(Error::unprocessable("end_date", format!("the end date {e} must be on or after the start date {s}")));
        }
        if self.kind.is_temporary() && end_date.is_none() {
            end_date = Some(self.start_date.unwrap_or(today).max(today) + chrono::Duration::days(VISITOR_DEFAULT_DAYS));
        }
        Ok(PersonFields {
            kind: self.kind,
            name,
            school_ref,
            year_group: from_year.map(|(y, _)| y),
            key_stage: ks.map(|k| k.as_str().to_owned()),
            start_date: self.start_date,
            end_date,
            notes,
        })
    }

    pub fn into_record(self, id: Uuid, created_at: DateTime<Utc>, now: DateTime<Utc>) -> PersonRecord {
        PersonRecord {
            id,
            kind: self.kind,
            name: self.name,
            school_ref: self.school_ref,
            year_group: self.year_group,
            key_stage: self.key_stage,
            start_date: self.start_date,
            end_date: self.end_date,
            notes: self.notes,
            created_at,
            updated_at: now,
        }
    }

    /// Each field as JSON, with whether it is personal or free text (name, notes).
    fn json_fields(&self) -> [(&'static str, Value, bool); 8] {
        [
            ("kind", json!(self.kind), false),
            ("name", json!(self.name), true),
            ("school_ref", json!(self.school_ref), false),
            ("year_group", json!(self.year_group), false),
            ("key_stage", json!(self.key_stage), false),
            ("start_date", json!(self.start_date), false),
            ("end_date", json!(self.end_date), false),
            ("notes", json!(self.notes), true),
        ]
    }

    /// What changed, field by field, for the audit log and the import's dry run. Names and notes
    /// are personal or free text: the audit log (which is never deleted) only says they changed.
    pub fn changes(&self, new: &PersonFields, redact: bool) -> Map<String, Value> {
        let mut m = Map::new();
        for ((field, old, personal), (_, new, _)) in self.json_fields().into_iter().zip(new.json_fields()) {
            if old != new {
                let v = if personal && redact { json!("changed") } else { json!({"from": old, "to": new}) };
                m.insert(field.to_owned(), v);
            }
        }
        m
    }

    /// A new person as changes from nothing (`{"from": null, "to": ...}` for every field that has
    /// a value), so the import's dry run shows who it would create as it shows an update.
    pub fn as_created(&self) -> Map<String, Value> {
        self.json_fields()
            .into_iter()
            .filter(|(_, v, _)| !v.is_null())
            .map(|(field, v, _)| (field.to_owned(), json!({"from": null, "to": v})))
            .collect()
    }
}

/// `PATCH /people/{id}`: absent fields stay, `null` clears.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PersonPatch {
    pub kind: Option<PersonKind>,
    pub name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub school_ref: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    /// N, R/Reception, Y1..Y13 (pupils only)
    pub year_group: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    /// EYFS, KS1..KS5, if no year group
    pub key_stage: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<chrono::NaiveDate>)]
    pub start_date: Option<Option<NaiveDate>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<chrono::NaiveDate>)]
    pub end_date: Option<Option<NaiveDate>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub notes: Option<Option<String>>,
}

/// A field that is present (possibly `null`) is `Some(..)`; an absent one stays `None`.
fn present<'de, D, T>(d: D) -> std::result::Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Some(Option::deserialize(d)?))
}

/// A person with everything the register knows about them.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PersonDetail {
    #[serde(flatten)]
    pub person: Person,
    pub signature_status: SignatureStatus,
    pub signatures: Vec<SignatureView>,
    pub grants: Vec<Grant>,
    /// Every holding, past, current and future.
    pub assignments: Vec<Assignment>,
    /// The devices they hold now.
    pub devices_held: Vec<String>,
    /// Every change to their record, from the audit log, newest first.
    #[schema(inline)]
    pub history: Vec<HistoryItem>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct HistoryItem {
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub details: Value,
}

/// What marking a leaver (or moving an end date earlier) ended.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LeaveOutcome {
    pub person: Person,
    /// When their grants and holdings end: 00:00 UTC on the date, or now if that has passed.
    pub access_ends_at: DateTime<Utc>,
    pub grants_ended: Vec<Uuid>,
    pub assignments_ended: Vec<Uuid>,
}

impl Register {
    pub fn today(&self) -> NaiveDate {
        self.clock.now().date_naive()
    }

    pub(crate) async fn person_record(&self, id: Uuid) -> Result<PersonRecord> {
        self.store.person_by_id(id).await?.ok_or_else(|| Error::not_found("no such person"))
    }

    /// A person named in a request body: 422 naming the field when there is none.
    pub(crate) async fn person_field(&self, field: &str, id: Uuid) -> Result<PersonRecord> {
        self.store.person_by_id(id).await?.ok_or_else(|| Error::unprocessable(field, format!("no such person: {id}")))
    }

    async fn school_ref_taken(&self, school_ref: Option<&str>) -> Error {
        let existing = match school_ref {
            Some(r) => self.store.person_by_school_ref(r).await.ok().flatten(),
            None => None,
        };
        conflict(
            "school_ref_taken",
            format!("another person already has school reference {}", school_ref.unwrap_or("")),
            json!({"person_id": existing.map(|p| p.id)}),
        )
    }

    pub async fn create_person(&self, actor: &Actor, fields: PersonFields) -> Result<Person> {
        let now = self.clock.now();
        let fields = fields.normalise(now.date_naive())?;
        let rec = fields.into_record(Uuid::new_v4(), now, now);
        let audit = self.audit.audit_entry(
            actor,
            "register.person.create",
            Some(&person_target(rec.id)),
            json!({
                "id": rec.id,
                "kind": rec.kind,
                "school_ref": rec.school_ref,
                "year_group": rec.year_group,
                "key_stage": rec.key_stage,
                "start_date": rec.start_date,
                "end_date": rec.end_date,
            }),
        );
        if let Err(e) = self.store.create_person(&rec, audit).await {
            return Err(match e {
                StoreError::Conflict(_) => self.school_ref_taken(rec.school_ref.as_deref()).await,
                e => e.into(),
            });
        }
        Ok(Person::new(rec, now.date_naive()))
    }

    pub async fn update_person(&self, actor: &Actor, id: Uuid, patch: PersonPatch) -> Result<PersonDetail> {
        let now = self.clock.now();
        let current = self.person_record(id).await?;
        let old = PersonFields::of(&current);
        let merged = PersonFields {
            kind: patch.kind.unwrap_or(old.kind),
            name: patch.name.unwrap_or_else(|| old.name.clone()),
            school_ref: patch.school_ref.unwrap_or_else(|| old.school_ref.clone()),
            // A pupil's key stage follows a new year group unless one is given too.
            key_stage: match (&patch.key_stage, &patch.year_group) {
                (Some(k), _) => k.clone(),
                (None, Some(_)) => None,
                (None, None) => old.key_stage.clone(),
            },
            year_group: patch.year_group.unwrap_or_else(|| old.year_group.clone()),
            start_date: patch.start_date.unwrap_or(old.start_date),
            end_date: patch.end_date.unwrap_or(old.end_date),
            notes: patch.notes.unwrap_or_else(|| old.notes.clone()),
        };
        let new = merged.normalise(now.date_naive())?;
        let changes = old.changes(&new, true);
        if changes.is_empty() {
            return self.person_detail(id).await;
        }
        let rec = new.into_record(id, current.created_at, now);
        let audit =
            self.audit.audit_entry(actor, "register.person.update", Some(&person_target(id)), json!({"id": id, "changes": changes}));
        self.write_person_with_end_date(&current, &rec, &actor.name, "end date changed", audit).await?;
        self.person_detail(id).await
    }

    /// Write a changed person with its audit entry; if their end date appeared or moved earlier,
    /// end their access at that date in the same transaction (the entry then says when and what
    /// ended).
    async fn write_person_with_end_date(
        &self,
        old: &PersonRecord,
        new: &PersonRecord,
        by: &str,
        reason: &str,
        mut audit: NewAuditEntry,
    ) -> Result<Option<(DateTime<Utc>, EndedAccess)>> {
        let ends_earlier = match (old.end_date, new.end_date) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(o), Some(n)) => n < o,
        };
        let result = if ends_earlier {
            let at = access_end(new.end_date.expect("checked"), self.clock.now());
            audit.details = crate::store::audit::with_detail(&audit.details, "access_ends_at", json!(at));
            self.store.end_person_access(new, at, by, reason, audit).await.map(|e| Some((at, e)))
        } else {
            self.store.update_person(new, audit).await.map(|_| None)
        };
        match result {
            Ok(r) => Ok(r),
            Err(StoreError::Conflict(_)) => Err(self.school_ref_taken(new.school_ref.as_deref()).await),
            Err(e) => Err(e.into()),
        }
    }

    /// Mark a leaver: their end date becomes `date`, and every grant and holding still open then
    /// ends then (00:00 UTC on `date`, or now if that has passed). The records stay.
    pub async fn mark_leaver(&self, actor: &Actor, id: Uuid, date: NaiveDate, reason: Option<&str>) -> Result<LeaveOutcome> {
        let now = self.clock.now();
        let reason = optional_text("reason", reason, 500)?;
        let current = self.person_record(id).await?;
        let mut rec = current.clone();
        rec.end_date = Some(date);
        rec.updated_at = now;
        // On the start date is allowed (a one-day supply teacher, a place withdrawn on day one);
        // today or earlier ends their access now.
        if let Some(start) = rec.start_date.filter(|s| *s > date) {
            return Err(Error::unprocessable("date", format!("the leaving date {date} must be on or after the start date {start}")));
        }
        let at = access_end(date, now);
        let why = match &reason {
            Some(r) => format!("leaver: {r}"),
            None => "leaver".to_owned(),
        };
        let audit = self.audit.audit_entry(
            actor,
            "register.person.leave",
            Some(&person_target(id)),
            json!({
                "id": id,
                "date": date,
                "previous_end_date": current.end_date,
                "access_ends_at": at,
                "reason": reason,
            }),
        );
        let ended = self.store.end_person_access(&rec, at, &actor.name, &why, audit).await?;
        Ok(LeaveOutcome {
            person: Person::new(rec, now.date_naive()),
            access_ends_at: at,
            grants_ended: ended.grants,
            assignments_ended: ended.assignments,
        })
    }

    pub async fn list_people(&self, mut filter: PeopleFilter, cursor: Option<Uuid>) -> Result<Vec<Person>> {
        let today = self.today();
        filter.today = Some(today);
        if let Some(c) = cursor {
            let last =
                self.store.person_by_id(c).await?.ok_or_else(|| Error::unprocessable("cursor", "not a cursor from this endpoint"))?;
            filter.after = Some((last.name, last.id));
        }
        Ok(self.store.list_people(&filter).await?.into_iter().map(|r| Person::new(r, today)).collect())
    }

    pub async fn person_detail(&self, id: Uuid) -> Result<PersonDetail> {
        let now = self.clock.now();
        let rec = self.person_record(id).await?;
        let sigs = self.store.signatures_for_person(id).await?;
        let aups = self.store.list_aups(None).await?;
        let current = super::aups::current_aups(&aups, now.date_naive());
        let valid: Vec<_> = sigs.iter().filter(|s| s.voided_at.is_none()).collect();
        let signature_status = super::status::signature_status(&rec, &current, &valid, now);
        let grants = self.store.grants_for_person(id).await?;
        let assignments = self.store.assignments_for_person(id).await?;
        let devices_held = assignments.iter().filter(|a| a.held_at(now)).map(|a| a.udid.clone()).collect();
        let history = self
            .store
            .list_audit(&AuditFilter { target: Some(person_target(id)), limit: 500, ..Default::default() })
            .await?
            .into_iter()
            .map(|e| HistoryItem { details: e.details_json(), seq: e.seq, at: e.at, actor: e.actor, action: e.action })
            .collect();
        Ok(PersonDetail {
            person: Person::new(rec, now.date_naive()),
            signature_status,
            signatures: sigs.into_iter().map(SignatureView::from).collect(),
            grants: grants.into_iter().map(|g| Grant::new(g, now)).collect(),
            assignments: assignments.into_iter().map(|a| Assignment::new(a, now)).collect(),
            devices_held,
            history,
        })
    }
}
