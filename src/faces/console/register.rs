//! `/ui/register`: the user-access register — people, AUP signatures, grants, holdings,
//! leavers, and the MIS CSV import with a dry-run preview. Every form calls the register's own
//! services (`src/register/`), so the rules (no access without a current signature, leavers
//! cannot be granted, nothing recorded in the past) are the API's.

use std::collections::HashSet;

use askama::Template;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect};
use chrono::{DateTime, NaiveDate, Utc};
use uuid::Uuid;

use super::devices::{all_devices, display_name};
use super::{Form, Nav, Params, Session, UiError, UiResult, render, sentence, when, when_opt};
use crate::context::Ctx;
use crate::faces::api::extract::uuid_param;
use crate::services::auth::Permission;
use crate::services::register::assignments::NewAssignment;
use crate::services::register::aups::NewAup;
use crate::services::register::grants::NewGrant;
use crate::services::register::people::{PersonFields, is_leaver};
use crate::services::register::signatures::{NewSignature, SignMethod};
use crate::services::register::status::SignatureState;
use crate::services::register::{AUDIENCES, PersonKind};

pub fn state_words(s: SignatureState) -> (&'static str, &'static str) {
    match s {
        SignatureState::Current => ("Signed", "status-done"),
        SignatureState::Lapsed => ("Signed over a year ago: must sign again", "status-wait"),
        SignatureState::Outdated => ("Must sign the new version", "status-wait"),
        SignatureState::NoAup => ("No AUP published for them yet", "status-wait"),
        SignatureState::Unsigned => ("Not signed", "status-bad"),
    }
}

fn kind_words(k: PersonKind) -> &'static str {
    match k {
        PersonKind::Pupil => "Pupil",
        PersonKind::Staff => "Staff",
        PersonKind::Visitor => "Visitor",
        PersonKind::Governor => "Governor",
        PersonKind::Contractor => "Contractor",
        PersonKind::Volunteer => "Volunteer",
    }
}

struct PersonRow {
    id: String,
    name: String,
    kind: &'static str,
    year: String,
    status: &'static str,
    css: &'static str,
    access: bool,
    devices: usize,
    leaving: String,
    leaver: bool,
}

struct Figures {
    people: usize,
    with_access: usize,
    without_current_signature: usize,
    due_to_resign: usize,
    lapsed: usize,
    leavers_with_live_grants: usize,
    visitors_expiring: usize,
    aups_review_overdue: usize,
    ok: bool,
}

struct AupRow {
    audience: String,
    version: i64,
    title: String,
    effective: String,
    current: bool,
    review_overdue: bool,
}

#[derive(Template)]
#[template(path = "register.html")]
struct RegisterPage {
    nav: Nav,
    q: String,
    kind: String,
    leavers: String,
    due: bool,
    rows: Vec<PersonRow>,
    figures: Figures,
    aups: Vec<AupRow>,
    kinds: Vec<(&'static str, &'static str)>,
    audiences: Vec<&'static str>,
    can_write: bool,
    can_sign: bool,
    done: Option<&'static str>,
}

fn done_message(p: &Params) -> Option<&'static str> {
    p.get("done").and_then(|d| {
        Some(match d {
            "person" => "Saved: the person has been added to the register.",
            "aup" => "Published: the new AUP version is in the register.",
            "signed" => "Recorded: the signature is on file.",
            "granted" => "Granted: the access is recorded.",
            "assigned" => "Recorded: they now hold the device.",
            "left" => "Recorded: their access ends on their leaving date and their devices are handed back.",
            "revoked" => "Revoked: the access has ended.",
            "ended" => "Recorded: they no longer hold the device.",
            "imported" => "Imported: the changes are in the register.",
            _ => return None,
        })
    })
}

pub async fn page(State(ctx): State<Ctx>, s: Session, p: Params) -> UiResult {
    s.require(Permission::ReadRegister)?;
    let snap = ctx.register.register_snapshot().await?;
    let q = p.text("q").to_lowercase();
    let kind = p.text("kind");
    let leavers = p.get("leavers").unwrap_or("no").to_owned();
    let due = p.get("due") == Some("yes");
    let due_ids: HashSet<Uuid> =
        if due { ctx.register.due(true, None).await?.into_iter().map(|d| d.person.id).collect() } else { HashSet::new() };
    let mut rows = Vec::new();
    for person in &snap.people {
        let leaver = is_leaver(person, snap.today);
        if !q.is_empty()
            && !person.name.to_lowercase().contains(&q)
            && !person.school_ref.as_deref().unwrap_or("").to_lowercase().contains(&q)
        {
            continue;
        }
        if !kind.is_empty() && person.kind.as_str() != kind {
            continue;
        }
        match leavers.as_str() {
            "no" if leaver => continue,
            "yes" if !leaver => continue,
            _ => {}
        }
        if due && !due_ids.contains(&person.id) {
            continue;
        }
        let (status, css) = state_words(snap.status(person).state);
        rows.push(PersonRow {
            id: person.id.to_string(),
            name: person.name.clone(),
            kind: kind_words(person.kind),
            year: person.year_group.clone().or(person.key_stage.clone()).unwrap_or_default(),
            status,
            css,
            access: snap.has_access(person),
            devices: snap.devices_held(person).len(),
            leaving: person.end_date.map(|d| d.to_string()).unwrap_or_default(),
            leaver,
        });
    }
    rows.sort_by_cached_key(|a| a.name.to_lowercase());
    rows.truncate(1000);
    let r = ctx.register.register_report().await?;
    let figures = Figures {
        people: r.people,
        with_access: r.with_access,
        without_current_signature: r.without_current_signature,
        due_to_resign: r.due_to_resign,
        lapsed: r.lapsed,
        leavers_with_live_grants: r.leavers_with_live_grants,
        visitors_expiring: r.visitors_expiring,
        aups_review_overdue: r.aups_review_overdue,
        ok: r.ok,
    };
    let aups = ctx
        .register
        .list_aups(None)
        .await?
        .into_iter()
        .map(|a| AupRow {
            audience: a.audience,
            version: a.version,
            title: a.title,
            effective: a.effective_date.to_string(),
            current: a.current,
            review_overdue: a.review_overdue,
        })
        .collect();
    Ok(render(&RegisterPage {
        nav: Nav::new(&s, "register"),
        q: p.text("q"),
        kind,
        leavers,
        due,
        rows,
        figures,
        aups,
        kinds: PersonKind::ALL.iter().map(|k| (k.as_str(), kind_words(*k))).collect(),
        audiences: AUDIENCES.to_vec(),
        can_write: s.can(Permission::WriteRegister),
        can_sign: s.can(Permission::WriteSignatures),
        done: done_message(&p),
    }))
}

fn date(form: &Form, name: &str, label: &str) -> UiResult<Option<NaiveDate>> {
    match form.get(name) {
        None => Ok(None),
        Some(v) => NaiveDate::parse_from_str(v, "%Y-%m-%d").map(Some).map_err(|_| UiError::field(label, "enter a date")),
    }
}

/// A date as the start of that day, or now if that is today (the register never records the past).
fn from_date(ctx: &Ctx, d: Option<NaiveDate>) -> Option<DateTime<Utc>> {
    d.filter(|d| *d > ctx.register.today()).map(crate::services::register::day_start)
}

pub async fn create_person(State(ctx): State<Ctx>, form: Form) -> UiResult {
    let s = &form.session;
    s.require(Permission::WriteRegister)?;
    let kind = form.get("kind").and_then(PersonKind::parse).ok_or_else(|| UiError::field("Kind of person", "choose one"))?;
    let fields = PersonFields {
        kind,
        name: form.get("name").unwrap_or("").to_owned(),
        school_ref: form.get("school_ref").map(str::to_owned),
        year_group: form.get("year_group").map(str::to_owned),
        key_stage: None,
        start_date: date(&form, "start_date", "Start date")?,
        end_date: date(&form, "end_date", "Leaving date")?,
        notes: form.get("notes").map(str::to_owned),
    };
    let p = ctx.register.create_person(&s.actor(), fields).await?;
    Ok(Redirect::to(&format!("/ui/register/people/{}?done=person", p.id)).into_response())
}

pub async fn publish_aup(State(ctx): State<Ctx>, form: Form) -> UiResult {
    let s = &form.session;
    s.require(Permission::WriteSignatures)?;
    let req = NewAup {
        audience: form.get("audience").unwrap_or("").to_owned(),
        title: form.get("title").unwrap_or("").to_owned(),
        text: form.raw("text").to_owned(),
        effective_date: date(&form, "effective_date", "Takes effect on")?.unwrap_or_else(|| ctx.register.today()),
        review_due: date(&form, "review_due", "Review due")?,
    };
    ctx.register.publish_aup(&s.actor(), req).await?;
    Ok(Redirect::to("/ui/register?done=aup").into_response())
}

struct SignatureRow {
    title: String,
    signed: String,
    method: String,
    co_signer: String,
    recorded_by: String,
    void: bool,
}

struct GrantRow {
    id: String,
    what: String,
    from: String,
    until: String,
    reason: String,
    status: &'static str,
    live: bool,
}

struct HoldingRow {
    id: String,
    udid: String,
    device: String,
    from: String,
    until: String,
    current: bool,
}

struct AupChoice {
    id: String,
    label: String,
}

#[derive(Template)]
#[template(path = "person.html")]
struct PersonPage {
    nav: Nav,
    id: String,
    name: String,
    facts: Vec<(&'static str, String)>,
    status: &'static str,
    status_css: &'static str,
    must_sign: Option<String>,
    needs_co_signer: bool,
    signatures: Vec<SignatureRow>,
    grants: Vec<GrantRow>,
    holdings: Vec<HoldingRow>,
    history: Vec<(String, String, String)>,
    aup_choices: Vec<AupChoice>,
    devices: Vec<(String, String)>,
    can_write: bool,
    can_sign: bool,
    leaver: bool,
    today: String,
    done: Option<&'static str>,
}

pub async fn person(State(ctx): State<Ctx>, s: Session, Path(id): Path<String>, p: Params) -> UiResult {
    s.require(Permission::ReadRegister)?;
    let id = uuid_param(&id, "person")?;
    let d = ctx.register.person_detail(id).await?;
    let now = ctx.now();
    let devices_all = all_devices(&ctx).await?;
    let device_name = |udid: &str| devices_all.iter().find(|x| x.udid == udid).map(display_name).unwrap_or_else(|| udid.to_owned());
    let person = &d.person;
    let facts = vec![
        ("Kind", kind_words(person.kind).to_owned()),
        ("School reference", person.school_ref.clone().unwrap_or_else(|| "—".into())),
        ("Year group", person.year_group.clone().or(person.key_stage.clone()).unwrap_or_else(|| "—".into())),
        ("Signs the AUP for", person.audience.unwrap_or("—").replace('_', " ")),
        ("Started", person.start_date.map(|d| d.to_string()).unwrap_or_else(|| "—".into())),
        ("Leaving date", person.end_date.map(|d| d.to_string()).unwrap_or_else(|| "—".into())),
        ("Notes", person.notes.clone().unwrap_or_else(|| "—".into())),
    ];
    let (status, status_css) = state_words(d.signature_status.state);
    let must_sign = (d.signature_status.state != SignatureState::Current)
        .then(|| d.signature_status.current_aup.as_ref().map(|a| format!("{} (version {})", a.title, a.version)))
        .flatten();
    let needs_co_signer =
        person.key_stage.as_deref().and_then(crate::services::register::KeyStage::parse).is_some_and(|k| k.needs_co_signer());
    let aup_choices = match person.audience {
        Some(aud) => ctx
            .register
            .list_aups(Some(aud))
            .await?
            .into_iter()
            .filter(|a| a.effective_date <= ctx.register.today())
            .map(|a| AupChoice {
                id: a.id.to_string(),
                label: format!("{} (version {}{})", a.title, a.version, if a.current { ", current" } else { "" }),
            })
            .collect(),
        None => vec![],
    };
    let signatures = d
        .signatures
        .iter()
        .map(|x| SignatureRow {
            title: format!("{} (version {})", x.aup_title, x.aup_version),
            signed: when(x.signed_at),
            method: x.method.replace('_', " "),
            co_signer: x.co_signer.clone().unwrap_or_default(),
            recorded_by: x.recorded_by.clone(),
            void: x.void,
        })
        .collect();
    let grants = d
        .grants
        .iter()
        .map(|g| GrantRow {
            id: g.id.to_string(),
            what: match (&g.udid, &g.system, &g.group_id) {
                (Some(u), _, _) => format!("Device: {}", device_name(u)),
                (_, Some(sys), _) => format!("System: {sys}"),
                (_, _, Some(gid)) => format!("Device group {gid}"),
                _ => "—".into(),
            },
            from: when(g.from),
            until: when_opt(g.ends_at),
            reason: g.reason.clone(),
            status: g.status,
            live: g.status == "live" || g.status == "future",
        })
        .collect();
    let holdings = d
        .assignments
        .iter()
        .map(|a| HoldingRow {
            id: a.id.to_string(),
            device: device_name(&a.udid),
            udid: a.udid.clone(),
            from: when(a.from),
            until: a.until.map(when).unwrap_or_else(|| "now".into()),
            current: a.status == "current",
        })
        .collect();
    let history = d.history.iter().take(50).map(|h| (when(h.at), h.actor.clone(), h.action.clone())).collect();
    let devices = devices_all
        .iter()
        .filter(|x| x.enrolled)
        .map(|x| (x.udid.clone(), format!("{} ({})", display_name(x), x.serial_number.as_deref().unwrap_or(&x.udid))))
        .collect();
    let _ = now;
    Ok(render(&PersonPage {
        nav: Nav::new(&s, "register"),
        id: person.id.to_string(),
        name: person.name.clone(),
        facts,
        status,
        status_css,
        must_sign,
        needs_co_signer,
        signatures,
        grants,
        holdings,
        history,
        aup_choices,
        devices,
        can_write: s.can(Permission::WriteRegister),
        can_sign: s.can(Permission::WriteSignatures),
        leaver: person.leaver,
        today: ctx.register.today().to_string(),
        done: done_message(&p),
    }))
}

fn back(id: Uuid, done: &str) -> UiResult {
    Ok(Redirect::to(&format!("/ui/register/people/{id}?done={done}")).into_response())
}

pub async fn sign(State(ctx): State<Ctx>, Path(id): Path<String>, form: Form) -> UiResult {
    let s = &form.session;
    s.require(Permission::WriteSignatures)?;
    let person_id = uuid_param(&id, "person")?;
    let aup_id = uuid_param(form.get("aup_id").unwrap_or(""), "AUP").map_err(|_| UiError::field("AUP", "choose the AUP they signed"))?;
    let method = match form.get("method") {
        Some("paper") => SignMethod::Paper,
        Some("in_person") => SignMethod::InPerson,
        Some("online") => SignMethod::Online,
        _ => return Err(UiError::field("How they signed", "choose one")),
    };
    let signed_at = date(&form, "signed_on", "Signed on")?
        .filter(|d| *d < ctx.register.today())
        .map(|d| crate::services::register::day_start(d) + chrono::Duration::hours(12));
    let req = NewSignature { person_id, aup_id, method, signed_at, co_signer: form.get("co_signer").map(str::to_owned) };
    ctx.register.record_signature(&s.actor(), req).await?;
    back(person_id, "signed")
}

pub async fn grant(State(ctx): State<Ctx>, Path(id): Path<String>, form: Form) -> UiResult {
    let s = &form.session;
    s.require(Permission::WriteRegister)?;
    let person_id = uuid_param(&id, "person")?;
    let (udid, system) = match form.get("target") {
        Some("system") => {
            (None, Some(form.get("system").ok_or_else(|| UiError::field("System", "name the system, e.g. school Wi-Fi"))?.to_owned()))
        }
        _ => (Some(form.get("udid").ok_or_else(|| UiError::field("Device", "choose a device"))?.to_owned()), None),
    };
    let until = date(&form, "until", "Until")?.map(crate::services::register::day_start);
    let req = NewGrant {
        person_id,
        udid,
        group_id: None,
        system,
        from: from_date(&ctx, date(&form, "from", "From")?),
        until,
        reason: form.get("reason").unwrap_or("").to_owned(),
    };
    ctx.register.create_grant(&s.actor(), req).await?;
    back(person_id, "granted")
}

pub async fn assign(State(ctx): State<Ctx>, Path(id): Path<String>, form: Form) -> UiResult {
    let s = &form.session;
    s.require(Permission::WriteRegister)?;
    let person_id = uuid_param(&id, "person")?;
    let udid = form.get("udid").ok_or_else(|| UiError::field("Device", "choose a device"))?.to_owned();
    ctx.register.create_assignment(&s.actor(), NewAssignment { person_id, udid, from: None }).await?;
    back(person_id, "assigned")
}

pub async fn leave(State(ctx): State<Ctx>, Path(id): Path<String>, form: Form) -> UiResult {
    let s = &form.session;
    s.require(Permission::WriteRegister)?;
    let person_id = uuid_param(&id, "person")?;
    let d = date(&form, "date", "Leaving date")?.ok_or_else(|| UiError::field("Leaving date", "enter the first day without access"))?;
    ctx.register.mark_leaver(&s.actor(), person_id, d, form.get("reason")).await?;
    back(person_id, "left")
}

pub async fn revoke_grant(State(ctx): State<Ctx>, Path(id): Path<String>, form: Form) -> UiResult {
    let s = &form.session;
    s.require(Permission::WriteRegister)?;
    let id = uuid_param(&id, "grant")?;
    let reason = form.get("reason").ok_or_else(|| UiError::field("Reason", "say why the access ends"))?;
    let out = ctx.register.revoke_grant(&s.actor(), id, reason).await?;
    back(out.grant.person_id, "revoked")
}

pub async fn end_assignment(State(ctx): State<Ctx>, Path(id): Path<String>, form: Form) -> UiResult {
    let s = &form.session;
    s.require(Permission::WriteRegister)?;
    let id = uuid_param(&id, "holding")?;
    let a = ctx.register.end_assignment(&s.actor(), id, None).await?;
    back(a.person_id, "ended")
}

struct ImportRow {
    row: usize,
    school_ref: String,
    action: &'static str,
    changes: String,
    ends_access: String,
}

#[derive(Template)]
#[template(path = "import.html")]
struct ImportPage {
    nav: Nav,
    preview: Option<Preview>,
    errors: Vec<(String, String, String)>,
    error: Option<String>,
}

struct Preview {
    csv: String,
    created: usize,
    updated: usize,
    unchanged: usize,
    rows: Vec<ImportRow>,
}

pub async fn import_page(State(_ctx): State<Ctx>, s: Session) -> UiResult {
    s.require(Permission::WriteRegister)?;
    Ok(render(&ImportPage { nav: Nav::new(&s, "register"), preview: None, errors: vec![], error: None }))
}

/// The CSV import: a dry run first (nothing written), then "Apply" posts the same CSV with
/// `apply=yes`. Both go through [`Register::import_people_csv`](crate::services::register::Register::import_people_csv).
pub async fn import(State(ctx): State<Ctx>, form: Form) -> UiResult {
    let s = &form.session;
    s.require(Permission::WriteRegister)?;
    let csv: Vec<u8> = match form.file("file") {
        Some((_, bytes)) => bytes.clone(),
        None => form.raw("csv").as_bytes().to_vec(),
    };
    let nav = Nav::new(s, "register");
    if csv.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(render(&ImportPage {
            nav,
            preview: None,
            errors: vec![],
            error: Some("Choose the CSV file exported from your MIS.".into()),
        }));
    }
    let apply = form.get("apply") == Some("yes");
    match ctx.register.import_people_csv(&s.actor(), &csv, !apply).await {
        Ok(_) if apply => Ok(Redirect::to("/ui/register?done=imported").into_response()),
        Ok(out) => {
            let rows = out
                .rows
                .iter()
                .map(|r| ImportRow {
                    row: r.row,
                    school_ref: r.school_ref.clone(),
                    action: match r.action {
                        "created" => "New person",
                        "updated" => "Changed",
                        _ => "No change",
                    },
                    changes: r
                        .changes
                        .iter()
                        .map(|(k, v)| {
                            let show = |x: &serde_json::Value| match x {
                                serde_json::Value::Null => "(empty)".to_owned(),
                                serde_json::Value::String(s) => s.clone(),
                                other => other.to_string(),
                            };
                            // A new person: what they would be recorded with, not "(empty) →".
                            if r.action == "created" {
                                format!("{}: {}", k.replace('_', " "), show(&v["to"]))
                            } else {
                                format!("{}: {} → {}", k.replace('_', " "), show(&v["from"]), show(&v["to"]))
                            }
                        })
                        .collect::<Vec<_>>()
                        .join("; "),
                    ends_access: r.access_ends_at.map(when).unwrap_or_default(),
                })
                .collect();
            let preview = Preview {
                csv: String::from_utf8_lossy(&csv).into_owned(),
                created: out.created,
                updated: out.updated,
                unchanged: out.unchanged,
                rows,
            };
            Ok(render(&ImportPage { nav, preview: Some(preview), errors: vec![], error: None }))
        }
        Err(crate::error::Error::Invalid { message, extra, .. }) => {
            let errors = extra
                .get("errors")
                .and_then(|e| e.as_array())
                .map(|a| {
                    a.iter()
                        .map(|e| {
                            (
                                e["row"].to_string(),
                                e["column"].as_str().unwrap_or("").to_owned(),
                                e["message"].as_str().unwrap_or("").to_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            Ok(super::render_status(
                axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                &ImportPage { nav, preview: None, errors, error: Some(format!("Nothing was imported. {}", sentence(&message))) },
            ))
        }
        Err(e) => Err(e.into()),
    }
}
