//! `/ui/cases`: safeguarding, for the DSL, the headteacher and admins (everyone else gets 403).
//!
//! - the case list and "open a case";
//! - "Quarantine a device" as one guided flow: find the device, choose or open the case, write
//!   the justification, confirm (nothing happens before this), then watch each command and
//!   evidence item arrive (`/ui/cases/{id}/devices/{udid}`, polling a same-origin JSON);
//! - a case page: its devices, its evidence (each item viewable raw with a written reason),
//!   release and disposal requests and the second person's approval, a Mac's lock PIN revealed
//!   with a written reason, notes;
//! - the chain-of-custody report, printable.
//!
//! Everything goes through the safeguarding services (`src/safeguarding/`): reading a case, its
//! evidence or its custody log is logged on the case exactly as through the API. The live poll
//! returns only command and evidence status (no case content), so it is not logged each time.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::{Value, json};
use uuid::Uuid;

use super::devices::{all_devices, display_name};
use super::{Form, Nav, Params, Session, UiError, UiResult, ago, command_words, render, status_words, when};
use crate::context::{Ctx, Lanyard};
use crate::faces::api::extract::uuid_param;
use crate::services::auth::Permission;
use crate::services::commands::effective_status;
use crate::services::safeguarding::cases::{ACTION_KINDS, KINDS, NewCase};
use crate::services::safeguarding::quarantine::{QuarantineRequest, lock_method};
use crate::services::safeguarding::release::{DisposeRequest, ReleaseRequest};
use crate::store::DeviceRecord;

pub fn kind_words(kind: &str) -> &'static str {
    match kind {
        "iioc" => "Indecent images of children",
        "youth_produced_imagery" => "Youth-produced sexual imagery (nudes and semi-nudes)",
        "child_sexual_exploitation" => "Child sexual exploitation",
        "filtering_breach" => "Breach of web filtering",
        "cyberbullying" => "Cyberbullying",
        "online_hate" => "Online hate",
        "radicalisation" => "Radicalisation",
        "staff_misuse" => "Misuse by a member of staff",
        _ => "Other",
    }
}

fn action_words(kind: &str) -> &'static str {
    match kind {
        "note" => "Note",
        "police_contact" => "Contact with the police",
        "lado_contact" => "Contact with the LADO",
        "parent_contact" => "Contact with parents or carers",
        "ceop_report" => "Report to CEOP",
        "decision" => "Decision",
        _ => "Other",
    }
}

/// What the lock will be, in words, for the confirmation step.
fn method_words(method: &str) -> &'static str {
    match method {
        "lost_mode" => "Lock it in Lost Mode with your message: it cannot be used until the case releases it",
        "mac_lock" => "Lock it with a new 6-digit PIN that only the DSL can reveal",
        _ => "Lock its screen with your message",
    }
}

fn case_id(id: &str) -> UiResult<Uuid> {
    Ok(uuid_param(id, "case")?)
}

struct CaseRow {
    id: String,
    number: i64,
    kind: &'static str,
    state: String,
    opened: String,
    by: String,
}

#[derive(Template)]
#[template(path = "cases.html")]
struct CasesPage {
    nav: Nav,
    cases: Vec<CaseRow>,
    notifications: Vec<(String, String)>,
    kinds: Vec<(&'static str, &'static str)>,
}

fn kinds() -> Vec<(&'static str, &'static str)> {
    KINDS.iter().map(|k| (*k, kind_words(k))).collect()
}

pub async fn list(State(ctx): State<Ctx>, s: Session) -> UiResult {
    s.require(Permission::Safeguarding)?;
    let cases = ctx
        .safeguarding
        .list_cases(&s.actor(), None)
        .await?
        .into_iter()
        .map(|c| CaseRow {
            id: c.id.to_string(),
            number: c.number,
            kind: kind_words(&c.kind),
            state: c.state,
            opened: when(c.opened_at),
            by: c.opened_by,
        })
        .collect();
    let role = if s.principal.role == crate::services::auth::Role::Admin { "headteacher" } else { s.principal.role.as_str() };
    let notifications = ctx.operators.notifications(role, 20).await?.into_iter().map(|n| (when(n.at), n.message)).collect();
    Ok(render(&CasesPage { nav: Nav::new(&s, "cases"), cases, notifications, kinds: kinds() }))
}

fn new_case(form: &Form) -> NewCase {
    NewCase {
        kind: form.get("kind").unwrap_or("").to_owned(),
        summary: form.raw("summary").to_owned(),
        justification: form.raw("case_justification").to_owned(),
        people: vec![],
        police_reference: form.get("police_reference").map(str::to_owned),
        lado_referral: form.get("lado_referral").map(str::to_owned),
        ceop_report: form.get("ceop_report").map(str::to_owned),
    }
}

pub async fn open(State(ctx): State<Ctx>, form: Form) -> UiResult {
    let s = &form.session;
    s.require(Permission::Safeguarding)?;
    let c = ctx.safeguarding.open_case(&s.actor(), new_case(&form)).await?;
    Ok(Redirect::to(&format!("/ui/cases/{}?done=opened", c.id)).into_response())
}

// ---- the guided quarantine flow ----

struct DeviceChoice {
    udid: String,
    name: String,
    serial: String,
    platform: String,
    holder: String,
    last_seen: String,
}

struct OpenCase {
    id: String,
    label: String,
}

#[derive(Template)]
#[template(path = "quarantine.html")]
struct QuarantinePage {
    nav: Nav,
    /// 1 find the device, 2 case and justification, 3 confirm.
    step: u8,
    q: String,
    matches: Vec<DeviceChoice>,
    device: Option<DeviceChoice>,
    hold: Option<i64>,
    open_cases: Vec<OpenCase>,
    case_choice: String,
    kinds: Vec<(&'static str, &'static str)>,
    // step 3: what will happen
    method: &'static str,
    evidence: Vec<&'static str>,
    holders_affected: usize,
    case_label: String,
    fields: Vec<(&'static str, String)>,
    justification: String,
    message: String,
    phone: String,
    error: Option<String>,
}

impl QuarantinePage {
    fn new(s: &Session) -> QuarantinePage {
        QuarantinePage {
            nav: Nav::new(s, "cases"),
            step: 1,
            q: String::new(),
            matches: vec![],
            device: None,
            hold: None,
            open_cases: vec![],
            case_choice: String::new(),
            kinds: kinds(),
            method: "",
            evidence: vec![],
            holders_affected: 0,
            case_label: String::new(),
            fields: vec![],
            justification: String::new(),
            message: String::new(),
            phone: String::new(),
            error: None,
        }
    }
}

async fn choice(ctx: &Lanyard, d: &DeviceRecord) -> crate::error::Result<DeviceChoice> {
    let now = ctx.now();
    let holders = ctx.register.device_holders(&d.udid, Some(now)).await?;
    Ok(DeviceChoice {
        udid: d.udid.clone(),
        name: display_name(d),
        serial: d.serial_number.clone().unwrap_or_default(),
        platform: format!("{} {}", d.platform, d.os_version.as_deref().unwrap_or("")),
        holder: holders.holders.first().map(|h| h.person.name.clone()).unwrap_or_default(),
        last_seen: ago(now, d.last_seen_at),
    })
}

async fn open_cases(ctx: &Lanyard, s: &Session) -> crate::error::Result<Vec<OpenCase>> {
    Ok(ctx
        .safeguarding
        .list_cases(&s.actor(), Some("open"))
        .await?
        .into_iter()
        .map(|c| OpenCase {
            id: c.id.to_string(),
            label: format!("Case {}: {} (opened {} by {})", c.number, kind_words(&c.kind), when(c.opened_at), c.opened_by),
        })
        .collect())
}

/// Steps 1 and 2: find the device, then choose or open the case and write the justification.
pub async fn flow(State(ctx): State<Ctx>, s: Session, p: Params) -> UiResult {
    s.require(Permission::Safeguarding)?;
    let mut page = QuarantinePage::new(&s);
    page.case_choice = p.text("case");
    if let Some(udid) = p.get("udid") {
        let d =
            ctx.devices.device(udid).await?.ok_or_else(|| {
                UiError::new(StatusCode::NOT_FOUND, "Device not found", "There is no such device. Go back and search again.")
            })?;
        page.step = 2;
        page.hold = ctx.hold.legal_hold(udid).await?.map(|(_, n)| n);
        page.device = Some(choice(&ctx, &d).await?);
        page.open_cases = open_cases(&ctx, &s).await?;
        return Ok(render(&page));
    }
    page.q = p.text("q");
    if !page.q.is_empty() {
        let needle = page.q.to_lowercase();
        for d in all_devices(&ctx).await? {
            let c = choice(&ctx, &d).await?;
            let hay = [&c.name, &c.serial, &c.udid, &c.holder];
            if hay.iter().any(|h| h.to_lowercase().contains(&needle)) {
                page.matches.push(c);
            }
            if page.matches.len() >= 50 {
                break;
            }
        }
    }
    Ok(render(&page))
}

fn carried(form: &Form) -> Vec<(&'static str, String)> {
    [
        "udid",
        "case",
        "kind",
        "summary",
        "case_justification",
        "police_reference",
        "lado_referral",
        "ceop_report",
        "justification",
        "message",
        "phone",
    ]
    .into_iter()
    .filter_map(|k| form.get(k).map(|_| (k, form.raw(k).trim().to_owned())))
    .collect()
}

/// Step 3: show exactly what will happen. Nothing is changed yet.
pub async fn confirm(State(ctx): State<Ctx>, form: Form) -> UiResult {
    let s = &form.session;
    s.require(Permission::Safeguarding)?;
    let udid = form.get("udid").ok_or_else(UiError::bad_form)?;
    let d = ctx.devices.device(udid).await?.ok_or_else(UiError::bad_form)?;
    let mut page = QuarantinePage::new(s);
    page.device = Some(choice(&ctx, &d).await?);
    page.hold = ctx.hold.legal_hold(udid).await?.map(|(_, n)| n);
    page.case_choice = form.get("case").unwrap_or("").to_owned();
    page.justification = form.raw("justification").trim().to_owned();
    page.message = form.get("message").unwrap_or("").to_owned();
    page.phone = form.get("phone").unwrap_or("").to_owned();
    let problem = if page.justification.is_empty() {
        Some("Write down why this device must be quarantined: the justification goes on the case's custody log.")
    } else if page.case_choice.is_empty() {
        Some("Choose the case this is part of, or open a new one.")
    } else if page.case_choice == "new"
        && (form.get("kind").is_none() || form.get("summary").is_none() || form.get("case_justification").is_none())
    {
        Some("To open a new case, choose what it is about and write a summary and why you are opening it.")
    } else {
        None
    };
    if let Some(problem) = problem {
        page.step = 2;
        page.error = Some(problem.into());
        page.open_cases = open_cases(&ctx, s).await?;
        return Ok(super::render_status(StatusCode::UNPROCESSABLE_ENTITY, &page));
    }
    page.case_label = if page.case_choice == "new" {
        format!("a new case: {}", kind_words(form.get("kind").unwrap_or("")))
    } else {
        let id = case_id(&page.case_choice)?;
        let c = ctx
            .safeguarding
            .case(id)
            .await?
            .ok_or_else(|| UiError::new(StatusCode::NOT_FOUND, "Case not found", "There is no such case."))?;
        format!("case {} ({})", c.number, kind_words(&c.kind))
    };
    let method = lock_method(&d);
    page.method = method_words(method);
    page.evidence = vec![
        "its details (model, serial number, system)",
        "its security settings",
        "the apps installed",
        "the profiles installed",
        "its certificates",
    ];
    if method == "lost_mode" {
        page.evidence.push("its location");
    }
    page.holders_affected = ctx.register.device_holders(udid, Some(ctx.now())).await?.access.len();
    page.fields = carried(&form);
    page.step = 3;
    Ok(render(&page))
}

/// The confirmed quarantine: open the case if asked, then the one service call.
pub async fn quarantine(State(ctx): State<Ctx>, form: Form) -> UiResult {
    let s = &form.session;
    s.require(Permission::Safeguarding)?;
    let udid = form.get("udid").ok_or_else(UiError::bad_form)?.to_owned();
    let actor = s.actor();
    let case = match form.get("case") {
        Some("new") => ctx.safeguarding.open_case(&actor, new_case(&form)).await?.id,
        Some(id) => case_id(id)?,
        None => return Err(UiError::field("Case", "choose the case")),
    };
    let req = QuarantineRequest {
        udid: udid.clone(),
        justification: form.raw("justification").to_owned(),
        message: form.get("message").map(str::to_owned),
        phone_number: form.get("phone").map(str::to_owned),
    };
    ctx.safeguarding.quarantine_device(&actor, case, req).await?;
    Ok(Redirect::to(&format!("/ui/cases/{case}/devices/{}", super::session::urlencode(&udid))).into_response())
}

// ---- watching a quarantined device ----

struct ProgressRow {
    key: String,
    what: &'static str,
    request_type: String,
    purpose: &'static str,
    status: &'static str,
    css: &'static str,
    received: String,
    sha256: String,
}

fn css(status: &str) -> &'static str {
    match status {
        "acknowledged" => "status-done",
        "error" | "expired" | "cancelled" => "status-bad",
        _ => "status-wait",
    }
}

/// Command and evidence status for one device of a case (store reads only: no case content).
async fn progress(ctx: &Lanyard, case: Uuid, udid: &str) -> crate::error::Result<Vec<ProgressRow>> {
    let now = ctx.now();
    let evidence = ctx.safeguarding.case_evidence(case).await?;
    let mut rows = Vec::new();
    for cc in ctx.safeguarding.case_commands(case).await?.into_iter().filter(|c| c.udid == udid) {
        let status = match ctx.commands.command(&cc.command_uuid).await? {
            Some(cmd) => {
                ctx.commands.command_targets(cmd.seq).await?.into_iter().find(|t| t.udid == udid).map(|t| effective_status(&t, now))
            }
            None => None,
        }
        .unwrap_or_else(|| "queued".into());
        let ev = cc.evidence_id.and_then(|id| evidence.iter().find(|e| e.id == id));
        rows.push(ProgressRow {
            what: command_words(&cc.request_type),
            purpose: match cc.purpose.as_str() {
                "lock" => "Lock",
                "evidence" => "Evidence",
                "release" => "Release",
                _ => "Other",
            },
            status: status_words(&status).0,
            css: css(&status),
            received: ev.and_then(|e| e.received_at).map(when).unwrap_or_default(),
            sha256: ev.and_then(|e| e.sha256.clone()).unwrap_or_default(),
            request_type: cc.request_type,
            key: cc.command_uuid,
        });
    }
    Ok(rows)
}

#[derive(Template)]
#[template(path = "case_device.html")]
struct CaseDevicePage {
    nav: Nav,
    case_id: String,
    case_number: i64,
    udid: String,
    device_name: String,
    state: String,
    method: String,
    grants_suspended: usize,
    rows: Vec<ProgressRow>,
    done: bool,
}

pub async fn watch(State(ctx): State<Ctx>, s: Session, Path((id, udid)): Path<(String, String)>) -> UiResult {
    s.require(Permission::Safeguarding)?;
    let id = case_id(&id)?;
    let case = ctx.safeguarding.view_case(&s.actor(), id).await?;
    let dev =
        case["devices"].as_array().and_then(|a| a.iter().find(|d| d["udid"] == json!(udid))).cloned().ok_or_else(|| {
            UiError::new(StatusCode::NOT_FOUND, "Not part of this case", "This device is not quarantined under this case.")
        })?;
    let rows = progress(&ctx, id, &udid).await?;
    let done = rows.iter().all(|r| r.css != "status-wait");
    let device_name = ctx.devices.device(&udid).await?.map(|d| display_name(&d)).unwrap_or_else(|| udid.clone());
    Ok(render(&CaseDevicePage {
        nav: Nav::new(&s, "cases"),
        case_id: id.to_string(),
        case_number: case["number"].as_i64().unwrap_or_default(),
        device_name,
        state: dev["state"].as_str().unwrap_or("").to_owned(),
        method: method_words(dev["method"].as_str().unwrap_or("")).to_owned(),
        grants_suspended: dev["grants_suspended"].as_array().map(Vec::len).unwrap_or(0),
        udid,
        rows,
        done,
    }))
}

/// `GET /ui/cases/{id}/devices/{udid}/progress.json`.
pub async fn progress_json(State(ctx): State<Ctx>, s: Session, Path((id, udid)): Path<(String, String)>) -> Response {
    if !s.can(Permission::Safeguarding) {
        return (StatusCode::FORBIDDEN, axum::Json(json!({"error": "safeguarding roles only", "code": "forbidden"}))).into_response();
    }
    let Ok(id) = Uuid::parse_str(&id) else {
        return (StatusCode::NOT_FOUND, axum::Json(json!({"error": "no such case", "code": "not_found"}))).into_response();
    };
    match progress(&ctx, id, &udid).await {
        Ok(rows) => {
            let done = rows.iter().all(|r| r.css != "status-wait");
            let acknowledged = rows.iter().filter(|r| r.css == "status-done").count();
            let items: Vec<Value> = rows
                .iter()
                .map(|r| json!({"key": r.key, "css": r.css, "fields": {"status": r.status, "received": r.received, "sha256": r.sha256}}))
                .collect();
            let summary = format!("{acknowledged} of {} done", rows.len());
            axum::Json(json!({"items": items, "done": done, "summary": summary})).into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "case progress poll");
            (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(json!({"error": "internal error", "code": "internal"}))).into_response()
        }
    }
}

// ---- a case ----

struct CaseDeviceRow {
    udid: String,
    name: String,
    state: String,
    method: &'static str,
    added: String,
}

struct RequestRow {
    id: String,
    kind: &'static str,
    what: String,
    state: String,
    requested: String,
    justification: String,
    advice: String,
    /// Who confirmed a disposal's advice (optional).
    confirmation: String,
    mine: bool,
    pending: bool,
    decided: String,
    dispose: bool,
}

struct EvidenceRow {
    id: String,
    what: &'static str,
    request_type: String,
    device: String,
    received: String,
    sha256: String,
    viewable: bool,
    disposed: bool,
    note: &'static str,
}

struct EventRow {
    at: String,
    kind: String,
    actor: String,
    justification: String,
    text: String,
}

#[derive(Template)]
#[template(path = "case.html")]
struct CasePage {
    nav: Nav,
    id: String,
    number: i64,
    kind: &'static str,
    state: String,
    summary: String,
    justification: String,
    references: Vec<(String, String)>,
    opened: String,
    involves_staff: bool,
    devices: Vec<CaseDeviceRow>,
    held: Vec<(String, String)>,
    requests: Vec<RequestRow>,
    notes: Vec<EventRow>,
    action_kinds: Vec<(&'static str, &'static str)>,
    can_approve: bool,
    done: Option<&'static str>,
    evidence: Vec<EvidenceRow>,
    /// Macs held under this case with a lock PIN: (udid, name).
    mac_locks: Vec<(String, String)>,
    /// Closed, with evidence not yet disposed of.
    disposable: bool,
}

pub async fn show(State(ctx): State<Ctx>, s: Session, Path(id): Path<String>, p: Params) -> UiResult {
    s.require(Permission::Safeguarding)?;
    let id = case_id(&id)?;
    let c = ctx.safeguarding.view_case(&s.actor(), id).await?;
    let me = s.actor().name;
    let names: std::collections::HashMap<String, String> =
        all_devices(&ctx).await?.iter().map(|d| (d.udid.clone(), display_name(d))).collect();
    let name = |u: &str| names.get(u).cloned().unwrap_or_else(|| u.to_owned());
    let devices: Vec<CaseDeviceRow> = c["devices"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            let udid = d["udid"].as_str().unwrap_or("").to_owned();
            CaseDeviceRow {
                name: name(&udid),
                state: match d["state"].as_str() {
                    Some("held") => "On legal hold".into(),
                    Some(other) => super::sentence(other).trim_end_matches('.').to_owned(),
                    None => String::new(),
                },
                method: method_words(d["method"].as_str().unwrap_or("")),
                added: d["added_at"].as_str().and_then(|t| t.parse().ok()).map(when).unwrap_or_default(),
                udid,
            }
        })
        .collect();
    let held = devices.iter().filter(|d| d.state == "On legal hold").map(|d| (d.udid.clone(), d.name.clone())).collect();
    let requests = c["requests"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap_or("").to_owned();
            RequestRow {
                id: s("id"),
                kind: if s("kind") == "release" { "Release" } else { "Dispose of evidence" },
                what: match r["udid"].as_str() {
                    Some(u) => format!("the device {}", name(u)),
                    None if s("kind") == "release" => "every device, and close the case".into(),
                    None => "all the evidence".into(),
                },
                state: s("state"),
                requested: format!("{} by {}", s("requested_at").parse().ok().map(when).unwrap_or_default(), s("requested_by")),
                justification: s("justification"),
                advice: s("advice_reference"),
                confirmation: s("confirmation"),
                mine: s("requested_by") == me,
                pending: s("state") == "pending",
                decided: if r["decided_by"].is_null() {
                    String::new()
                } else {
                    format!("{} by {}: {}", s("state"), s("decided_by"), s("decision_justification"))
                },
                dispose: s("kind") == "dispose",
            }
        })
        .collect();
    let references = c["references"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.replace('_', " "), v.as_str().unwrap_or("").to_owned()))
        .collect();
    // Notes and decisions on the case, newest first.
    let notes = ctx
        .safeguarding
        .case_events(id)
        .await?
        .into_iter()
        .filter(|e| e.kind == "action")
        .rev()
        .map(|e| {
            let d: Value = serde_json::from_str(&e.detail).unwrap_or(Value::Null);
            EventRow {
                at: when(e.at),
                kind: action_words(d["action"].as_str().unwrap_or("")).to_owned(),
                actor: e.actor,
                justification: e.justification.unwrap_or_default(),
                text: d["text"].as_str().unwrap_or("").to_owned(),
            }
        })
        .collect();
    // The evidence list, read as `GET /api/v1/cases/{id}/evidence` reads it (logged on the case).
    let evidence: Vec<EvidenceRow> = ctx
        .safeguarding
        .list_evidence(&s.actor(), id)
        .await?
        .iter()
        .map(|e| {
            let received = e["received_at"].as_str().and_then(|t| t.parse().ok()).map(when);
            let disposed = !e["disposed_at"].is_null();
            EvidenceRow {
                id: e["id"].as_str().unwrap_or("").to_owned(),
                what: command_words(e["request_type"].as_str().unwrap_or("")),
                request_type: e["request_type"].as_str().unwrap_or("").to_owned(),
                device: name(e["udid"].as_str().unwrap_or("")),
                viewable: received.is_some() && !disposed,
                disposed,
                received: received.unwrap_or_default(),
                sha256: e["sha256"].as_str().unwrap_or("").to_owned(),
                note: if disposed { "Disposed of: its SHA-256 stays in the custody log." } else { "Not received yet." },
            }
        })
        .collect();
    let mac_locks = c["devices"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|d| d["method"] == "mac_lock" && d["state"] == "held")
        .map(|d| {
            let udid = d["udid"].as_str().unwrap_or("").to_owned();
            (udid.clone(), name(&udid))
        })
        .collect();
    let state = c["state"].as_str().unwrap_or("").to_owned();
    let disposable = state != "open" && evidence.iter().any(|e| !e.disposed);
    let done = p.get("done").and_then(|d| {
        Some(match d {
            "opened" => "The case is open. Only safeguarding staff can see it, and every time it is read is recorded on it.",
            "requested" => "Your request is recorded. A different DSL or the headteacher must approve it before anything changes.",
            "dispose_requested" => {
                "Your request to dispose of the evidence is recorded. A different DSL or the headteacher must approve it before \
                 anything is deleted."
            }
            "disposed" => "Approved: the evidence has been disposed of. Its SHA-256 hashes stay in the custody log.",
            "approved" => "Approved: the release is being carried out.",
            "rejected" => "Rejected: nothing changes.",
            "noted" => "Added to the case.",
            _ => return None,
        })
    });
    Ok(render(&CasePage {
        nav: Nav::new(&s, "cases"),
        id: id.to_string(),
        number: c["number"].as_i64().unwrap_or_default(),
        kind: kind_words(c["kind"].as_str().unwrap_or("")),
        state,
        summary: c["summary"].as_str().unwrap_or("").to_owned(),
        justification: c["justification"].as_str().unwrap_or("").to_owned(),
        references,
        opened: format!(
            "{} by {}",
            c["opened_at"].as_str().and_then(|t| t.parse().ok()).map(when).unwrap_or_default(),
            c["opened_by"].as_str().unwrap_or("")
        ),
        involves_staff: c["involves_staff"].as_bool().unwrap_or(false),
        devices,
        held,
        requests,
        notes,
        action_kinds: ACTION_KINDS.iter().map(|k| (*k, action_words(k))).collect(),
        can_approve: s.can(Permission::ApproveSecondPerson),
        done,
        evidence,
        mac_locks,
        disposable,
    }))
}

pub async fn add_action(State(ctx): State<Ctx>, Path(id): Path<String>, form: Form) -> UiResult {
    let s = &form.session;
    s.require(Permission::Safeguarding)?;
    let id = case_id(&id)?;
    ctx.safeguarding.add_case_action(&s.actor(), id, form.get("kind").unwrap_or(""), form.raw("text"), form.raw("justification")).await?;
    Ok(Redirect::to(&format!("/ui/cases/{id}?done=noted#notes")).into_response())
}

pub async fn request_release(State(ctx): State<Ctx>, Path(id): Path<String>, form: Form) -> UiResult {
    let s = &form.session;
    s.require(Permission::Safeguarding)?;
    let id = case_id(&id)?;
    let udid = match form.get("udid") {
        None | Some("all") => None,
        Some(u) => Some(u.to_owned()),
    };
    let r = ReleaseRequest {
        udid,
        justification: form.raw("justification").to_owned(),
        advice_reference: form.raw("advice_reference").to_owned(),
        restore_access: form.checked("restore_access"),
    };
    ctx.safeguarding.request_release(&s.principal, id, r).await?;
    Ok(Redirect::to(&format!("/ui/cases/{id}?done=requested#requests")).into_response())
}

pub async fn decide(State(ctx): State<Ctx>, Path((id, rid)): Path<(String, String)>, form: Form) -> UiResult {
    let s = &form.session;
    s.require(Permission::ApproveSecondPerson)?;
    let id = case_id(&id)?;
    let rid = uuid_param(&rid, "request")?;
    let approve = match form.get("decision") {
        Some("approve") => true,
        Some("reject") => false,
        _ => return Err(UiError::bad_form()),
    };
    let out = ctx.safeguarding.approve_case_request(&s.principal, rid, form.raw("justification"), approve).await?;
    let done = match (approve, out["kind"].as_str()) {
        (false, _) => "rejected",
        (true, Some("dispose")) => "disposed",
        (true, _) => "approved",
    };
    Ok(Redirect::to(&format!("/ui/cases/{id}?done={done}#requests")).into_response())
}

/// Ask to dispose of a closed case's evidence (`POST /api/v1/cases/{id}/evidence/dispose-requests`);
/// a different DSL or the headteacher approves it through [`decide`].
pub async fn request_disposal(State(ctx): State<Ctx>, Path(id): Path<String>, form: Form) -> UiResult {
    let s = &form.session;
    s.require(Permission::Safeguarding)?;
    let id = case_id(&id)?;
    let r = DisposeRequest {
        justification: form.raw("justification").to_owned(),
        advice_reference: Some(form.raw("advice_reference").to_owned()),
        confirmation: form.get("confirmation").map(str::to_owned),
    };
    ctx.safeguarding.request_disposal(&s.principal, id, r).await?;
    Ok(Redirect::to(&format!("/ui/cases/{id}?done=dispose_requested#requests")).into_response())
}

#[derive(Template)]
#[template(path = "evidence.html")]
struct EvidencePage {
    nav: Nav,
    case_id: String,
    case_number: i64,
    what: &'static str,
    request_type: String,
    device: String,
    received: String,
    sha256: String,
    shown_sha256: String,
    bytes: usize,
    raw: String,
    justification: String,
}

/// One evidence item, raw, for a written reason (`GET /api/v1/cases/{id}/evidence/{item}`):
/// the service records the viewing, with the reason, on the case and in the audit log. A POST,
/// so the reason is not left in the browser's history.
pub async fn view_evidence(State(ctx): State<Ctx>, Path((id, item)): Path<(String, String)>, form: Form) -> UiResult {
    let s = &form.session;
    s.require(Permission::Safeguarding)?;
    let id = case_id(&id)?;
    let item = uuid_param(&item, "evidence item")?;
    let (e, raw) = ctx.safeguarding.view_evidence(&s.actor(), id, item, form.raw("justification")).await?;
    let case_number = ctx.safeguarding.case(id).await?.map(|c| c.number).unwrap_or_default();
    let device = ctx.devices.device(&e.udid).await?.map(|d| display_name(&d)).unwrap_or_else(|| e.udid.clone());
    Ok(render(&EvidencePage {
        nav: Nav::new(s, "cases"),
        case_id: id.to_string(),
        case_number,
        what: command_words(&e.request_type),
        device,
        received: e.received_at.map(when).unwrap_or_default(),
        sha256: e.sha256.clone().unwrap_or_default(),
        shown_sha256: hex::encode(openssl::sha::sha256(&raw)),
        bytes: raw.len(),
        raw: String::from_utf8_lossy(&raw).into_owned(),
        justification: form.raw("justification").trim().to_owned(),
        request_type: e.request_type,
    }))
}

#[derive(Template)]
#[template(path = "lock_pin.html")]
struct LockPinPage {
    nav: Nav,
    case_id: String,
    case_number: i64,
    device: String,
    pin: String,
}

/// A Mac's lock PIN, for a written reason (`GET /api/v1/devices/{udid}/lock-pin`): the same
/// role rule (safeguarding roles) and the same service, which records it on the case.
pub async fn lock_pin(State(ctx): State<Ctx>, Path((_id, udid)): Path<(String, String)>, form: Form) -> UiResult {
    let s = &form.session;
    s.require(Permission::Safeguarding)?;
    let v = ctx.safeguarding.reveal_lock_pin(&s.actor(), &udid, form.raw("justification")).await?;
    let held_under = v["case_id"].as_str().and_then(|c| Uuid::parse_str(c).ok());
    let case = match held_under {
        Some(c) => ctx.safeguarding.case(c).await?,
        None => None,
    };
    let device = ctx.devices.device(&udid).await?.map(|d| display_name(&d)).unwrap_or_else(|| udid.clone());
    Ok(render(&LockPinPage {
        nav: Nav::new(s, "cases"),
        case_id: held_under.map(|c| c.to_string()).unwrap_or_default(),
        case_number: case.map(|c| c.number).unwrap_or_default(),
        device,
        pin: v["pin"].as_str().unwrap_or("").to_owned(),
    }))
}

// ---- the custody report ----

#[derive(Template)]
#[template(path = "custody.html")]
struct CustodyPage {
    nav: Nav,
    id: String,
    number: i64,
    organization: String,
    kind: &'static str,
    state: String,
    opened: String,
    closed: String,
    references: String,
    evidence: Vec<(String, String, String, String)>,
    events: Vec<(String, String, String, String, String, String)>,
    generated: String,
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub async fn custody(State(ctx): State<Ctx>, s: Session, Path(id): Path<String>) -> UiResult {
    s.require(Permission::Safeguarding)?;
    let id = case_id(&id)?;
    let r = ctx.safeguarding.custody(&s.actor(), id, "html").await?;
    let evidence = r
        .evidence
        .iter()
        .map(|e| {
            let received = match (e["received_at"].as_str(), e["disposed_at"].as_str()) {
                (Some(t), None) => t.to_owned(),
                (Some(t), Some(d)) => format!("{t} (disposed {d})"),
                (None, _) => "not yet received".into(),
            };
            (text(&e["request_type"]), text(&e["udid"]), received, text(&e["sha256"]))
        })
        .collect();
    let events = r
        .events
        .iter()
        .map(|e| {
            (
                text(&e["seq"]),
                text(&e["at"]),
                text(&e["kind"]),
                text(&e["actor"]),
                text(&e["udid"]),
                format!("{} {}", text(&e["justification"]), e["detail"]),
            )
        })
        .collect();
    let c = &r.case;
    Ok(render(&CustodyPage {
        nav: Nav::new(&s, "cases"),
        id: c.id.to_string(),
        number: c.number,
        organization: ctx.config.organization.clone(),
        kind: kind_words(&c.kind),
        state: c.state.clone(),
        opened: format!("{} by {}", c.opened_at.to_rfc3339(), c.opened_by),
        closed: c.closed_at.map(|t| format!("{} by {}", t.to_rfc3339(), c.closed_by.as_deref().unwrap_or(""))).unwrap_or_default(),
        references: c
            .references
            .as_object()
            .map(|o| o.iter().map(|(k, v)| format!("{k}: {}", text(v))).collect::<Vec<_>>().join("; "))
            .unwrap_or_default(),
        evidence,
        events,
        generated: ctx.now().to_rfc3339(),
    }))
}

pub async fn custody_pdf(State(ctx): State<Ctx>, s: Session, Path(id): Path<String>) -> UiResult {
    s.require(Permission::Safeguarding)?;
    let id = case_id(&id)?;
    let r = ctx.safeguarding.custody(&s.actor(), id, "pdf").await?;
    let body = r.pdf(&ctx.config.organization);
    Ok((
        [
            (CONTENT_TYPE, "application/pdf".to_owned()),
            (CONTENT_DISPOSITION, format!("attachment; filename=\"case-{}-custody.pdf\"", r.case.number)),
        ],
        body,
    )
        .into_response())
}
