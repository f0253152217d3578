//! The user-access register (policy 7.2): who may use which school device or system, on the
//! strength of which signed AUP, and who held which device when.
//!
//! The shared vocabulary lives here: kinds of person, year groups and key stages, AUP audiences,
//! the defaults, and how dates become moments. The services are split by record:
//! `people.rs`, `aups.rs`, `signatures.rs`, `grants.rs`, `assignments.rs`, `holders.rs` (who could
//! use a device at a time), `status.rs` (who must sign what, the report, the CSV export) and
//! `import.rs` (the MIS import), with the small CSV reader and writer in `csv.rs`.
//!
//! Times are UTC. A person's `end_date` (leaving date) is the first day without access: access
//! ends at 00:00 UTC that day, or at the moment it is recorded if that is already past — the
//! register never rewrites history, so nothing can be granted, held or ended in the past.

use crate::clock::Clock;
use crate::store::DynStore;
use chrono::{DateTime, Duration, Months, NaiveDate, Utc};
use std::sync::Arc;

/// The user-access register: people, AUPs and signatures, grants, assignments.
#[derive(Clone)]
pub struct Register {
    pub(crate) store: DynStore,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) audit: crate::services::audit::Audit,
    pub(crate) hold: crate::services::hold::Hold,
}

pub mod assignments;
pub mod aups;
pub mod grants;
pub mod holders;
pub mod import;
pub mod people;
pub mod signatures;
pub mod status;

/// Visitors and contractors get an end date this many days after they start, unless given one.
pub const VISITOR_DEFAULT_DAYS: i64 = 30;
/// A signature lapses, and an AUP is due for review, this many months after (policy: "reviewed
/// at least annually").
pub const REVIEW_MONTHS: u32 = 12;
/// How far in the past a "from" or "at" may be before it counts as rewriting history (clock
/// skew between a script and the server).
pub const CLOCK_SKEW: Duration = Duration::minutes(5);

pub use crate::store::register::PersonKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyStage {
    Eyfs,
    Ks1,
    Ks2,
    Ks3,
    Ks4,
    Ks5,
}

impl KeyStage {
    pub const ALL: [KeyStage; 6] = [KeyStage::Eyfs, KeyStage::Ks1, KeyStage::Ks2, KeyStage::Ks3, KeyStage::Ks4, KeyStage::Ks5];

    pub fn as_str(self) -> &'static str {
        match self {
            KeyStage::Eyfs => "EYFS",
            KeyStage::Ks1 => "KS1",
            KeyStage::Ks2 => "KS2",
            KeyStage::Ks3 => "KS3",
            KeyStage::Ks4 => "KS4",
            KeyStage::Ks5 => "KS5",
        }
    }

    pub fn parse(s: &str) -> Option<KeyStage> {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect::<String>().to_ascii_uppercase();
        KeyStage::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Nursery and Reception are EYFS; Y1-2 KS1; Y3-6 KS2; Y7-9 KS3; Y10-11 KS4; Y12-13 KS5.
    pub fn of_year(year: u8) -> KeyStage {
        match year {
            0 => KeyStage::Eyfs,
            1..=2 => KeyStage::Ks1,
            3..=6 => KeyStage::Ks2,
            7..=9 => KeyStage::Ks3,
            10..=11 => KeyStage::Ks4,
            _ => KeyStage::Ks5,
        }
    }

    /// Young pupils (EYFS, KS1, KS2: primary school) sign with a parent or carer.
    pub fn needs_co_signer(self) -> bool {
        matches!(self, KeyStage::Eyfs | KeyStage::Ks1 | KeyStage::Ks2)
    }
}

/// A year group in its canonical spelling (`N`, `R`, `Y1`..`Y13`) and its key stage. Accepts
/// `Nursery`, `Reception`, `YR`, `7`, `Y7`, `Year 7`, any case.
pub fn parse_year_group(s: &str) -> Option<(String, KeyStage)> {
    let t: String = s.chars().filter(|c| !c.is_whitespace()).collect::<String>().to_ascii_uppercase();
    match t.as_str() {
        "N" | "NURSERY" | "N1" | "N2" => return Some(("N".into(), KeyStage::Eyfs)),
        "R" | "YR" | "RECEPTION" | "REC" => return Some(("R".into(), KeyStage::Eyfs)),
        _ => {}
    }
    let digits = t.strip_prefix("YEAR").or_else(|| t.strip_prefix('Y')).unwrap_or(&t);
    let year: u8 = digits.parse().ok()?;
    if !(1..=13).contains(&year) {
        return None;
    }
    Some((format!("Y{year}"), KeyStage::of_year(year)))
}

/// Every AUP audience. A person signs the AUP of exactly one audience: see [`audience_for`].
pub const AUDIENCES: [&str; 9] =
    ["pupil_eyfs", "pupil_ks1", "pupil_ks2", "pupil_ks3", "pupil_ks4", "pupil_ks5", "staff", "governor", "visitor"];

/// Which AUP a person signs: pupils their key stage's (`pupil_ks2`); staff and volunteers the
/// staff AUP (policy: "staff (including volunteers)" follow the staff code of conduct/AUP);
/// governors their own; visitors and contractors the visitor AUP.
pub fn audience_for(kind: PersonKind, key_stage: Option<&str>) -> Option<&'static str> {
    Some(match kind {
        PersonKind::Pupil => match KeyStage::parse(key_stage?)? {
            KeyStage::Eyfs => "pupil_eyfs",
            KeyStage::Ks1 => "pupil_ks1",
            KeyStage::Ks2 => "pupil_ks2",
            KeyStage::Ks3 => "pupil_ks3",
            KeyStage::Ks4 => "pupil_ks4",
            KeyStage::Ks5 => "pupil_ks5",
        },
        PersonKind::Staff | PersonKind::Volunteer => "staff",
        PersonKind::Governor => "governor",
        PersonKind::Visitor | PersonKind::Contractor => "visitor",
    })
}

/// 00:00 UTC on `d`.
pub fn day_start(d: NaiveDate) -> DateTime<Utc> {
    d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc()
}

/// When a signature made at `signed_at` lapses (and a review falls due).
pub fn lapses_at(signed_at: DateTime<Utc>) -> DateTime<Utc> {
    signed_at.checked_add_months(Months::new(REVIEW_MONTHS)).unwrap_or(signed_at)
}

/// When a person's access ends for an end date: 00:00 UTC that day, or now if that has passed.
pub fn access_end(end_date: NaiveDate, now: DateTime<Utc>) -> DateTime<Utc> {
    day_start(end_date).max(now)
}

/// 409 with a stable code and extra fields a script can act on.
pub(crate) fn conflict(code: &'static str, message: impl Into<String>, extra: serde_json::Value) -> crate::error::Error {
    crate::error::Error::Conflict { code, message: message.into(), extra: extra.as_object().cloned().unwrap_or_default() }
}

/// A required free-text field: trimmed, non-empty, at most `max` characters.
pub(crate) fn required_text(field: &str, value: &str, max: usize) -> crate::error::Result<String> {
    let v = value.trim();
    if v.is_empty() {
        return Err(crate::error::Error::unprocessable(field, "must not be empty"));
    }
    if v.chars().count() > max {
        return Err(crate::error::Error::unprocessable(field, format!("at most {max} characters")));
    }
    Ok(v.to_owned())
}

/// An optional free-text field: trimmed; empty means none.
pub(crate) fn optional_text(field: &str, value: Option<&str>, max: usize) -> crate::error::Result<Option<String>> {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => required_text(field, v, max).map(Some),
    }
}

/// Audit target for everything about one person, so their history is one audit query.
pub fn person_target(id: uuid::Uuid) -> String {
    format!("person:{id}")
}

/// The OpenAPI schemas of the register's string values.
pub mod schema {
    use crate::schema::{hand_schema, nullable_string_enum, string_enum};
    use utoipa::openapi::schema::Object;

    hand_schema!(
        /// An AUP audience (`crate::services::register::AUDIENCES`).
        Audience => string_enum(
            &crate::services::register::AUDIENCES,
            Some("Pupils sign their key stage's AUP; staff and volunteers the staff AUP; governors the governor AUP; visitors and contractors the visitor AUP."),
        )
    );

    pub fn audience_or_null() -> Object {
        nullable_string_enum(&crate::services::register::AUDIENCES, Some("which AUP they sign"))
    }
}

/// What the faces read about register, through this service rather than from the store.
impl Register {
    pub async fn all_people(&self) -> crate::error::Result<Vec<crate::store::PersonRecord>> {
        Ok(self.store.all_people().await?)
    }
}

impl Register {
    pub async fn assignments_open_at(
        &self,
        at: chrono::DateTime<chrono::Utc>,
    ) -> crate::error::Result<Vec<crate::store::AssignmentRecord>> {
        Ok(self.store.assignments_open_at(at).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn year_groups_and_key_stages() {
        let ks = |s: &str| parse_year_group(s).map(|(y, k)| (y, k.as_str()));
        assert_eq!(ks("Reception"), Some(("R".into(), "EYFS")));
        assert_eq!(ks("n"), Some(("N".into(), "EYFS")));
        assert_eq!(ks("Y1"), Some(("Y1".into(), "KS1")));
        assert_eq!(ks("2"), Some(("Y2".into(), "KS1")));
        assert_eq!(ks("year 3"), Some(("Y3".into(), "KS2")));
        assert_eq!(ks("Y6"), Some(("Y6".into(), "KS2")));
        assert_eq!(ks("Y7"), Some(("Y7".into(), "KS3")));
        assert_eq!(ks("Y9"), Some(("Y9".into(), "KS3")));
        assert_eq!(ks("Y10"), Some(("Y10".into(), "KS4")));
        assert_eq!(ks("Y11"), Some(("Y11".into(), "KS4")));
        assert_eq!(ks("Y12"), Some(("Y12".into(), "KS5")));
        assert_eq!(ks("13"), Some(("Y13".into(), "KS5")));
        assert_eq!(ks("Y14"), None);
        assert_eq!(ks("0"), None);
        assert_eq!(ks("seven"), None);
        assert_eq!(KeyStage::parse("ks 2"), Some(KeyStage::Ks2));
        assert!(KeyStage::Ks2.needs_co_signer() && !KeyStage::Ks3.needs_co_signer());
    }

    #[test]
    fn audiences() {
        assert_eq!(audience_for(PersonKind::Pupil, Some("KS1")), Some("pupil_ks1"));
        assert_eq!(audience_for(PersonKind::Pupil, None), None);
        assert_eq!(audience_for(PersonKind::Volunteer, None), Some("staff"));
        assert_eq!(audience_for(PersonKind::Contractor, None), Some("visitor"));
        for k in PersonKind::ALL {
            for ks in KeyStage::ALL {
                let a = audience_for(k, Some(ks.as_str())).unwrap();
                assert!(AUDIENCES.contains(&a), "{a}");
            }
        }
    }
}
