//! Where everyone stands: each person's signature status, who must sign what
//! (`GET /register/due`), the governors' report (`GET /register/report`) and the register as
//! CSV (`GET /register/export.csv`). All three read one snapshot and one set of rules, so the
//! report's counts are exactly the due list's.

use std::collections::HashMap;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::aups::current_aups;
use super::people::{Person, is_leaver};
use super::{PersonKind, audience_for, lapses_at};
use crate::error::Result;
use crate::services::register::Register;
use crate::store::{AssignmentRecord, AupRecord, GrantRecord, PersonRecord, SignatureRecord};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SignatureState {
    /// Signed the current version of their audience's AUP within the last year.
    Current,
    /// Signed the current version, more than a year ago: must re-sign (annual review).
    Lapsed,
    /// Signed only an earlier version, or another audience's AUP (e.g. moved up a key stage):
    /// due to re-sign.
    Outdated,
    /// Has signed before, but their audience has no AUP in effect: publish one.
    NoAup,
    /// No valid signature at all.
    Unsigned,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AupRef {
    pub id: Uuid,
    pub audience: String,
    pub version: i64,
    pub title: String,
}

impl From<&AupRecord> for AupRef {
    fn from(a: &AupRecord) -> Self {
        AupRef { id: a.id, audience: a.audience.clone(), version: a.version, title: a.title.clone() }
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SignatureRef {
    pub id: Uuid,
    pub aup_id: Uuid,
    pub audience: String,
    pub version: i64,
    pub signed_at: DateTime<Utc>,
}

impl From<&SignatureRecord> for SignatureRef {
    fn from(s: &SignatureRecord) -> Self {
        SignatureRef { id: s.id, aup_id: s.aup_id, audience: s.aup_audience.clone(), version: s.aup_version, signed_at: s.signed_at }
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SignatureStatus {
    pub state: SignatureState,
    #[schema(nullable)]
    pub audience: Option<&'static str>,
    /// What they must have signed: the current version of their audience's AUP.
    pub current_aup: Option<AupRef>,
    /// Their signature that counts: of the current version if any, else their newest.
    pub signature: Option<SignatureRef>,
    /// When that signature lapses (or lapsed).
    pub lapses_at: Option<DateTime<Utc>>,
}

/// One person's status from their valid (not void) signatures.
pub fn signature_status(
    person: &PersonRecord,
    current: &HashMap<String, AupRecord>,
    valid: &[&SignatureRecord],
    now: DateTime<Utc>,
) -> SignatureStatus {
    let audience = audience_for(person.kind, person.key_stage.as_deref());
    let current_aup = audience.and_then(|a| current.get(a));
    let newest = valid.iter().max_by_key(|s| s.signed_at).copied();
    let of_current = current_aup.and_then(|c| {
        valid.iter().filter(|s| s.aup_audience == c.audience && s.aup_version >= c.version).max_by_key(|s| s.signed_at).copied()
    });
    let state = match (newest, current_aup, of_current) {
        (None, _, _) => SignatureState::Unsigned,
        (Some(_), None, _) => SignatureState::NoAup,
        (Some(_), Some(_), None) => SignatureState::Outdated,
        (Some(_), Some(_), Some(s)) if lapses_at(s.signed_at) <= now => SignatureState::Lapsed,
        (Some(_), Some(_), Some(_)) => SignatureState::Current,
    };
    let shown = of_current.or(newest);
    SignatureStatus {
        state,
        audience,
        current_aup: current_aup.map(AupRef::from),
        signature: shown.map(SignatureRef::from),
        lapses_at: shown.map(|s| lapses_at(s.signed_at)),
    }
}

/// Everything the due list, the report and the export read, loaded once.
pub struct Snapshot {
    pub now: DateTime<Utc>,
    pub today: NaiveDate,
    pub people: Vec<PersonRecord>,
    pub aups: Vec<AupRecord>,
    pub current: HashMap<String, AupRecord>,
    pub signatures: HashMap<Uuid, Vec<SignatureRecord>>,
    /// Grants not ended now (live, or starting later).
    pub grants: HashMap<Uuid, Vec<GrantRecord>>,
    /// Holdings not ended now.
    pub holdings: HashMap<Uuid, Vec<AssignmentRecord>>,
}

impl Snapshot {
    pub fn status(&self, p: &PersonRecord) -> SignatureStatus {
        let valid: Vec<&SignatureRecord> = self.signatures.get(&p.id).map(|v| v.iter().collect()).unwrap_or_default();
        signature_status(p, &self.current, &valid, self.now)
    }

    pub fn live_grants(&self, p: &PersonRecord) -> impl Iterator<Item = &GrantRecord> {
        self.grants.get(&p.id).into_iter().flatten().filter(|g| g.live_at(self.now))
    }

    /// Live now or granted for later.
    pub fn has_access(&self, p: &PersonRecord) -> bool {
        self.grants.get(&p.id).is_some_and(|gs| gs.iter().any(|g| g.open_at(self.now)))
    }

    pub fn devices_held(&self, p: &PersonRecord) -> Vec<&str> {
        self.holdings.get(&p.id).into_iter().flatten().filter(|a| a.held_at(self.now)).map(|a| a.udid.as_str()).collect()
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DueItem {
    pub person: Person,
    #[schema(schema_with = crate::schema::enums::due_state)]
    pub state: SignatureState,
    /// The AUP to sign (null when their audience has none in effect).
    pub must_sign: Option<AupRef>,
    /// Their signature that counts now, if any.
    pub signature: Option<SignatureRef>,
    pub lapses_at: Option<DateTime<Utc>>,
    /// Has a live or future grant.
    pub has_access: bool,
    /// Why they are due, in a sentence: never signed, an earlier version superseded, the
    /// signature over a year old, or no AUP in effect for their audience. `state` says the same
    /// as a code.
    pub reason: String,
}

/// Why someone whose status is not current must sign, in words an office manager can act on.
pub fn due_reason(st: &SignatureStatus) -> String {
    let audience = st.audience.unwrap_or("their");
    let aup = |a: &AupRef| format!("{} (version {} of the {} AUP)", a.title, a.version, a.audience);
    match (st.state, &st.current_aup, &st.signature) {
        (SignatureState::Unsigned, Some(a), _) => format!("has never signed {}", aup(a)),
        (SignatureState::Unsigned, None, _) => {
            format!("has never signed an AUP, and the {audience} audience has none in effect: publish one for them to sign")
        }
        (SignatureState::Outdated, Some(a), Some(s)) if s.audience == a.audience => format!(
            "signed version {} on {}, which version {} supersedes: must sign {}",
            s.version,
            s.signed_at.format("%Y-%m-%d"),
            a.version,
            aup(a)
        ),
        (SignatureState::Outdated, Some(a), Some(s)) => {
            format!("signed version {} of the {} AUP, but now signs the {} one: must sign {}", s.version, s.audience, a.audience, aup(a))
        }
        (SignatureState::Lapsed, Some(a), Some(s)) => format!(
            "signed {} on {}; a signature lasts a year and this one expired on {}: must sign it again",
            aup(a),
            s.signed_at.format("%Y-%m-%d"),
            st.lapses_at.unwrap_or(s.signed_at).format("%Y-%m-%d")
        ),
        (SignatureState::NoAup, _, _) => {
            format!("has signed before, but the {audience} audience has no AUP in effect: publish one for them to sign")
        }
        (SignatureState::Current, _, _) => "signed the current version within the last year".into(),
        // Outdated or lapsed always have a current AUP and a signature; say something true anyway.
        (_, _, _) => "their signature is not of the current version of their AUP".into(),
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ExpiringVisitor {
    pub id: Uuid,
    pub name: String,
    pub kind: PersonKind,
    pub end_date: Option<NaiveDate>,
}

/// The register at a glance, for governors and auditors.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = RegisterReport)]
pub struct Report {
    pub generated_at: DateTime<Utc>,
    /// People who are not leavers.
    pub people: usize,
    /// People with at least one live grant.
    pub with_access: usize,
    /// Of those, people with no valid AUP signature at all. Must be zero: Lanyard refuses grants
    /// without a signature and refuses to void the only signature behind access.
    pub without_current_signature: usize,
    /// Of those, people who signed an earlier version (or another audience's AUP) and must
    /// re-sign the current one.
    pub due_to_resign: usize,
    /// Of those, people whose signature of the current version is over a year old.
    pub lapsed: usize,
    /// Of those, people whose audience has no AUP in effect.
    pub no_aup: usize,
    /// Leavers (end date come) who still have a live grant. Must be zero.
    pub leavers_with_live_grants: usize,
    /// Visitors and contractors whose access ends within the next 7 days.
    pub visitors_expiring: usize,
    #[schema(inline)]
    pub visitors_expiring_people: Vec<ExpiringVisitor>,
    /// AUP versions in effect whose review date has passed.
    pub aups_review_overdue: usize,
    /// Both "must be zero" counts are zero.
    pub ok: bool,
}

impl Register {
    pub async fn register_snapshot(&self) -> Result<Snapshot> {
        let now = self.clock.now();
        let today = now.date_naive();
        let people = self.store.all_people().await?;
        let aups = self.store.list_aups(None).await?;
        let current = current_aups(&aups, today);
        let mut signatures: HashMap<Uuid, Vec<SignatureRecord>> = HashMap::new();
        for s in self.store.valid_signatures().await? {
            signatures.entry(s.person_id).or_default().push(s);
        }
        let mut grants: HashMap<Uuid, Vec<GrantRecord>> = HashMap::new();
        for g in self.store.grants_open_at(now).await? {
            grants.entry(g.person_id).or_default().push(g);
        }
        let mut holdings: HashMap<Uuid, Vec<AssignmentRecord>> = HashMap::new();
        for a in self.store.assignments_open_at(now).await? {
            holdings.entry(a.person_id).or_default().push(a);
        }
        Ok(Snapshot { now, today, people, aups, current, signatures, grants, holdings })
    }

    /// Who must sign what: every person who is not a leaver and whose signature is not current,
    /// whether or not they hold a grant today (they must sign before they get one), each with
    /// the reason. `everyone = false` keeps only people with live or future access.
    pub async fn due(&self, everyone: bool, kind: Option<PersonKind>) -> Result<Vec<DueItem>> {
        let snap = self.register_snapshot().await?;
        let mut items = Vec::new();
        for p in &snap.people {
            if is_leaver(p, snap.today) || kind.is_some_and(|k| k != p.kind) {
                continue;
            }
            let has_access = snap.has_access(p);
            if !has_access && !everyone {
                continue;
            }
            let st = snap.status(p);
            if st.state == SignatureState::Current {
                continue;
            }
            items.push(DueItem {
                reason: due_reason(&st),
                person: Person::new(p.clone(), snap.today),
                state: st.state,
                must_sign: st.current_aup,
                signature: st.signature,
                lapses_at: st.lapses_at,
                has_access,
            });
        }
        Ok(items)
    }

    pub async fn register_report(&self) -> Result<Report> {
        let snap = self.register_snapshot().await?;
        let mut r = Report {
            generated_at: snap.now,
            people: 0,
            with_access: 0,
            without_current_signature: 0,
            due_to_resign: 0,
            lapsed: 0,
            no_aup: 0,
            leavers_with_live_grants: 0,
            visitors_expiring: 0,
            visitors_expiring_people: Vec::new(),
            aups_review_overdue: snap.current.values().filter(|a| a.review_due <= snap.today).count(),
            ok: false,
        };
        let week = snap.today + Duration::days(7);
        for p in &snap.people {
            let leaver = is_leaver(p, snap.today);
            let live = snap.live_grants(p).next().is_some();
            if !leaver {
                r.people += 1;
            }
            if leaver && live {
                r.leavers_with_live_grants += 1;
            }
            if p.kind.is_temporary() && p.end_date.is_some_and(|d| d > snap.today && d <= week) {
                r.visitors_expiring += 1;
                r.visitors_expiring_people.push(ExpiringVisitor { id: p.id, name: p.name.clone(), kind: p.kind, end_date: p.end_date });
            }
            if !live {
                continue;
            }
            r.with_access += 1;
            match snap.status(p).state {
                SignatureState::Current => {}
                SignatureState::Lapsed => r.lapsed += 1,
                SignatureState::Outdated => r.due_to_resign += 1,
                SignatureState::NoAup => r.no_aup += 1,
                SignatureState::Unsigned => r.without_current_signature += 1,
            }
        }
        r.ok = r.without_current_signature == 0 && r.leavers_with_live_grants == 0;
        Ok(r)
    }

    /// The register as CSV. The first eight columns are the import's; the rest are read-only
    /// (the import ignores them), so an export can be edited and imported back.
    pub async fn export_register_csv(&self) -> Result<String> {
        let snap = self.register_snapshot().await?;
        let mut out = String::new();
        crate::services::csv::write_row(&mut out, EXPORT_COLUMNS.iter().copied());
        for p in &snap.people {
            let st = snap.status(p);
            let live: Vec<String> = snap.live_grants(p).map(grant_label).collect();
            let row = [
                p.school_ref.clone().unwrap_or_default(),
                p.kind.as_str().to_owned(),
                p.name.clone(),
                p.year_group.clone().unwrap_or_default(),
                p.key_stage.clone().unwrap_or_default(),
                p.start_date.map(|d| d.to_string()).unwrap_or_default(),
                p.end_date.map(|d| d.to_string()).unwrap_or_default(),
                p.notes.clone().unwrap_or_default(),
                p.id.to_string(),
                st.audience.unwrap_or("").to_owned(),
                serde_json::to_value(st.state).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default(),
                st.current_aup.as_ref().map(|a| a.version.to_string()).unwrap_or_default(),
                st.signature.as_ref().map(|s| s.version.to_string()).unwrap_or_default(),
                st.signature.as_ref().map(|s| s.signed_at.to_rfc3339()).unwrap_or_default(),
                live.join("; "),
                snap.devices_held(p).join("; "),
            ];
            crate::services::csv::write_row(&mut out, row.iter().map(String::as_str));
        }
        Ok(out)
    }
}

pub const EXPORT_COLUMNS: [&str; 16] = [
    "school_ref",
    "kind",
    "name",
    "year_group",
    "key_stage",
    "start_date",
    "leaving_date",
    "notes",
    "id",
    "audience",
    "signature_status",
    "current_aup_version",
    "signed_version",
    "signed_at",
    "live_grants",
    "devices_held",
];

fn grant_label(g: &GrantRecord) -> String {
    match (&g.udid, g.group_id, &g.system) {
        (Some(u), _, _) => format!("device:{u}"),
        (_, Some(gid), _) => format!("group:{gid}"),
        (_, _, Some(s)) => format!("system:{s}"),
        _ => "?".into(),
    }
}
