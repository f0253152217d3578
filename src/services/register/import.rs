//! Importing people from the school's MIS export (CSV), upserting by `school_ref`. Every row is
//! checked before anything is written; one bad row rejects the whole file, with every error
//! naming its row and column. A dry run shows what would change. A real run writes everything
//! in one transaction, ending the access of anyone whose leaving date arrives or moves earlier.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::people::PersonFields;
use super::status::EXPORT_COLUMNS;
use super::{PersonKind, access_end, person_target};
use crate::error::{Error, Result};
use crate::services::auth::Actor;
use crate::services::csv;
use crate::services::register::Register;
use crate::store::PersonRecord;
use crate::store::register::ImportWrite;

/// The columns an import reads. `school_ref`, `kind` and `name` are required; a column left out
/// of the file leaves that field unchanged, an empty cell clears it.
pub const IMPORT_COLUMNS: [&str; 8] = ["school_ref", "kind", "name", "year_group", "key_stage", "start_date", "leaving_date", "notes"];
const REQUIRED: [&str; 3] = ["school_ref", "kind", "name"];
/// At most this many errors are listed.
const MAX_ERRORS: usize = 200;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RowError {
    pub row: usize,
    /// Null when the problem is the row's shape rather than one cell.
    pub column: Option<String>,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RowOutcome {
    pub row: usize,
    pub school_ref: String,
    /// `created`, `updated` or `unchanged`.
    #[schema(schema_with = crate::schema::enums::import_action)]
    pub action: &'static str,
    /// The person's id (for a dry run's new people: null).
    pub person_id: Option<Uuid>,
    /// Field by field: `{"from", "to"}`. For a new person, every field they would have, each
    /// `{"from": null, "to": ...}`.
    pub changes: Map<String, Value>,
    /// Set when this row ends the person's access (leaving date arrived or moved earlier).
    pub access_ends_at: Option<DateTime<Utc>>,
    pub grants_ended: Vec<Uuid>,
    pub assignments_ended: Vec<Uuid>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ImportOutcome {
    pub dry_run: bool,
    pub created: usize,
    pub updated: usize,
    pub unchanged: usize,
    #[schema(inline)]
    pub rows: Vec<RowOutcome>,
}

/// `2026-09-01`, or `01/09/2026` as UK MIS exports write it.
fn parse_date(s: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").or_else(|_| NaiveDate::parse_from_str(s, "%d/%m/%Y")).ok()
}

/// The CSV column a `PersonFields` field is read from.
fn column_of(field: &str) -> &str {
    match field {
        "end_date" => "leaving_date",
        f => f,
    }
}

fn invalid(errors: Vec<RowError>, total: usize) -> Error {
    let first = errors.first().cloned();
    let summary = match &first {
        Some(e) => format!(
            "{total} problem(s) in the file; nothing was imported. Row {}{}: {}",
            e.row,
            e.column.as_deref().map(|c| format!(", column {c}")).unwrap_or_default(),
            e.message
        ),
        None => "the file is invalid; nothing was imported".into(),
    };
    let mut extra = Map::new();
    extra.insert("row".into(), json!(first.as_ref().map(|e| e.row)));
    extra.insert("column".into(), json!(first.as_ref().and_then(|e| e.column.clone())));
    extra.insert("error_count".into(), json!(total));
    extra.insert("errors".into(), json!(errors));
    Error::Invalid { code: "invalid_csv", field: first.and_then(|e| e.column).unwrap_or_else(|| "body".into()), message: summary, extra }
}

#[derive(Default)]
struct Errors {
    list: Vec<RowError>,
    total: usize,
}

impl Errors {
    fn push(&mut self, row: usize, column: Option<&str>, message: String) {
        self.total += 1;
        if self.list.len() < MAX_ERRORS {
            self.list.push(RowError { row, column: column.map(str::to_owned), message });
        }
    }

    fn into_error(self) -> Error {
        invalid(self.list, self.total)
    }
}

impl Register {
    pub async fn import_people_csv(&self, actor: &Actor, body: &[u8], dry_run: bool) -> Result<ImportOutcome> {
        let now = self.clock.now();
        let today = now.date_naive();
        let text = std::str::from_utf8(body).map_err(|_| {
            invalid(vec![RowError { row: 1, column: None, message: "the file is not UTF-8 text: save it as \"CSV UTF-8\"".into() }], 1)
        })?;
        let records = csv::parse(text).map_err(|(row, message)| invalid(vec![RowError { row, column: None, message }], 1))?;
        let mut errs = Errors::default();
        let Some((header, rows)) = records.split_first() else {
            errs.push(1, None, format!("the file is empty: the first row must name the columns ({})", IMPORT_COLUMNS.join(",")));
            return Err(errs.into_error());
        };
        let header: Vec<String> = header
            .iter()
            .map(|h| h.trim().to_ascii_lowercase().replace([' ', '-'], "_"))
            .map(|h| if h == "end_date" { "leaving_date".into() } else { h })
            .collect();
        let mut col: HashMap<&str, usize> = HashMap::new();
        for (i, h) in header.iter().enumerate() {
            if let Some(known) = IMPORT_COLUMNS.iter().find(|c| **c == h.as_str()) {
                if col.insert(known, i).is_some() {
                    errs.push(1, Some(h), "this column appears twice".into());
                }
            } else if !EXPORT_COLUMNS.contains(&h.as_str()) {
                errs.push(1, Some(h), format!("unknown column; the columns are {}", IMPORT_COLUMNS.join(", ")));
            }
        }
        for r in REQUIRED {
            if !col.contains_key(r) {
                errs.push(1, Some(r), "this column is required".into());
            }
        }
        if errs.total > 0 {
            return Err(errs.into_error());
        }

        let existing: HashMap<String, PersonRecord> =
            self.store.all_people().await?.into_iter().filter_map(|p| p.school_ref.clone().map(|r| (r, p))).collect();
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut planned: Vec<(RowOutcome, Option<ImportWrite>)> = Vec::new();
        for (i, cells) in rows.iter().enumerate() {
            let row = i + 2;
            // Spreadsheets leave rows of empty cells at the end.
            if cells.iter().all(|c| c.trim().is_empty()) {
                continue;
            }
            if cells.len() != header.len() {
                errs.push(row, None, format!("this row has {} cells but the header has {}", cells.len(), header.len()));
                continue;
            }
            let cell = |name: &str| -> Option<Option<String>> {
                col.get(name).map(|i| {
                    let v = csv::unguard(cells[*i].trim()).trim();
                    (!v.is_empty()).then(|| v.to_owned())
                })
            };
            let Some(school_ref) = cell("school_ref").flatten() else {
                errs.push(row, Some("school_ref"), "required: the MIS id the import matches people by".into());
                continue;
            };
            if let Some(first) = seen.insert(school_ref.clone(), row) {
                errs.push(row, Some("school_ref"), format!("{school_ref} is also on row {first}"));
                continue;
            }
            let kind = match cell("kind").flatten() {
                None => {
                    errs.push(row, Some("kind"), "required".into());
                    continue;
                }
                Some(k) => match PersonKind::parse(&k) {
                    Some(k) => k,
                    None => {
                        errs.push(
                            row,
                            Some("kind"),
                            format!("{k:?} is not a kind of person; use one of {}", PersonKind::ALL.map(|k| k.as_str()).join(", ")),
                        );
                        continue;
                    }
                },
            };
            let mut bad_date = false;
            let mut date = |name: &str| -> Option<Option<NaiveDate>> {
                cell(name).map(|v| {
                    v.and_then(|s| {
                        let d = parse_date(&s);
                        if d.is_none() {
                            bad_date = true;
                            errs.push(row, Some(name), format!("{s:?} is not a date: use YYYY-MM-DD or DD/MM/YYYY"));
                        }
                        d
                    })
                })
            };
            let start_date = date("start_date");
            let end_date = date("leaving_date");
            if bad_date {
                continue;
            }
            let old = existing.get(&school_ref);
            let old_fields = old.map(PersonFields::of);
            let keep = |new: Option<Option<String>>, old: Option<String>| match new {
                Some(v) => v,
                None => old,
            };
            let o = old_fields.clone();
            let fields = PersonFields {
                kind,
                name: cell("name").flatten().unwrap_or_default(),
                school_ref: Some(school_ref.clone()),
                year_group: keep(cell("year_group"), o.as_ref().and_then(|o| o.year_group.clone())),
                key_stage: match (cell("key_stage"), cell("year_group")) {
                    (Some(k), _) => k,
                    // A new year group re-derives the key stage.
                    (None, Some(_)) => None,
                    (None, None) => o.as_ref().and_then(|o| o.key_stage.clone()),
                },
                start_date: start_date.unwrap_or(o.as_ref().and_then(|o| o.start_date)),
                end_date: match end_date {
                    Some(Some(d)) => Some(d),
                    // A visitor's default end date was set when they were added: an empty cell
                    // keeps it rather than moving it a month on at every import.
                    Some(None) if kind.is_temporary() => o.as_ref().and_then(|o| o.end_date),
                    Some(None) => None,
                    None => o.as_ref().and_then(|o| o.end_date),
                },
                notes: keep(cell("notes"), o.as_ref().and_then(|o| o.notes.clone())),
            };
            let new = match fields.normalise(today) {
                Ok(n) => n,
                Err(Error::Unprocessable { field, message }) => {
                    errs.push(row, Some(column_of(&field)), message);
                    continue;
                }
                Err(e) => return Err(e),
            };
            let (action, changes, write) = match (old, &old_fields) {
                (Some(old), Some(of)) => {
                    let changes = of.changes(&new, false);
                    if changes.is_empty() {
                        ("unchanged", changes, None)
                    } else {
                        let ends_earlier = match (old.end_date, new.end_date) {
                            (_, None) => false,
                            (None, Some(_)) => true,
                            (Some(o), Some(n)) => n < o,
                        };
                        let rec = new.clone().into_record(old.id, old.created_at, now);
                        let write = ImportWrite {
                            end_access_at: ends_earlier.then(|| access_end(rec.end_date.expect("checked"), now)),
                            person: rec,
                            create: false,
                        };
                        ("updated", changes, Some(write))
                    }
                }
                _ => {
                    // Everything the new person would have, as changes from nothing.
                    let changes = new.as_created();
                    let rec = new.clone().into_record(Uuid::new_v4(), now, now);
                    let write = ImportWrite { person: rec, create: true, end_access_at: None };
                    ("created", changes, Some(write))
                }
            };
            planned.push((
                RowOutcome {
                    row,
                    school_ref,
                    action,
                    person_id: old.map(|o| o.id),
                    changes,
                    access_ends_at: write.as_ref().and_then(|w| w.end_access_at),
                    grants_ended: Vec::new(),
                    assignments_ended: Vec::new(),
                },
                write,
            ));
        }
        if errs.total > 0 {
            return Err(errs.into_error());
        }
        let count = |a: &str| planned.iter().filter(|(o, _)| o.action == a).count();
        let mut outcome = ImportOutcome {
            dry_run,
            created: count("created"),
            updated: count("updated"),
            unchanged: count("unchanged"),
            rows: Vec::new(),
        };
        if dry_run {
            outcome.rows = planned.into_iter().map(|(o, _)| o).collect();
            return Ok(outcome);
        }
        let writes: Vec<ImportWrite> = planned.iter().filter_map(|(_, w)| w.clone()).collect();
        // Each person's entry and the import's own go into the import's transaction; the store
        // adds what ending a leaver's access ended.
        let audits = planned
            .iter()
            .filter_map(|(o, w)| w.as_ref().map(|w| (o, w)))
            .map(|(o, w)| {
                let action = if w.create { "register.person.create" } else { "register.person.update" };
                // Names and notes never go into the permanent log: a change says only that they
                // changed, and a new person's are left out (as `POST /people` leaves them out).
                let redacted: Map<String, Value> = o
                    .changes
                    .iter()
                    .filter(|(k, _)| !(w.create && (*k == "name" || *k == "notes")))
                    .map(|(k, v)| {
                        let v = if k == "name" || k == "notes" { json!("changed") } else { v.clone() };
                        (k.clone(), v)
                    })
                    .collect();
                self.audit.audit_entry(
                    actor,
                    action,
                    Some(&person_target(w.person.id)),
                    json!({
                        "id": w.person.id,
                        "via": "import",
                        "row": o.row,
                        "kind": w.person.kind,
                        "school_ref": w.person.school_ref,
                        "changes": redacted,
                        "access_ends_at": w.end_access_at,
                        "grants_ended": [],
                        "assignments_ended": [],
                    }),
                )
            })
            .collect();
        let applied = self.audit.audit_entry(
            actor,
            "register.import.apply",
            Some("register"),
            json!({
                "rows": planned.len(),
                "created": outcome.created,
                "updated": outcome.updated,
                "unchanged": outcome.unchanged,
            }),
        );
        let ended = self.store.import_people(&writes, &actor.name, "leaver (import)", audits, applied).await.map_err(|e| match e {
            crate::store::StoreError::Conflict(what) => {
                Error::conflict("school_ref_taken", format!("{what} was created while importing; try again"))
            }
            e => e.into(),
        })?;
        for (o, w) in planned.iter_mut() {
            let Some(w) = w else { continue };
            o.person_id = Some(w.person.id);
            if let Some(e) = ended.iter().find(|e| e.person_id == w.person.id) {
                o.grants_ended = e.grants.clone();
                o.assignments_ended = e.assignments.clone();
            }
        }
        outcome.rows = planned.into_iter().map(|(o, _)| o).collect();
        Ok(outcome)
    }
}
