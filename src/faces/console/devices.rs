//! `/ui/devices` (search, filters, sortable table) and `/ui/devices/{udid}` (inventory, holder
//! history, profiles, the command queue with live status, and the actions the viewer may take).

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Duration, Utc};
use serde_json::{Map, Value, json};

use super::{Form, Nav, Params, Session, UiError, UiResult, ago, command_words, render, status_words, when, when_opt};
use crate::context::{Ctx, Lanyard};
use crate::error::Result;
use crate::services::auth::Permission;
use crate::services::commands::effective_status;
use crate::services::compliance::compliance_problems;
use crate::services::hold::FORBIDDEN_UNDER_HOLD;
use crate::services::profiles::reconcile::DeviceProfiles;
use crate::store::{DeviceFilter, DeviceRecord};

/// Every device, in pages (the console filters and sorts in memory: a school has thousands of
/// devices, not millions).
pub async fn all_devices(ctx: &Lanyard) -> Result<Vec<DeviceRecord>> {
    let mut out = Vec::new();
    let mut filter = DeviceFilter { limit: 1000, ..Default::default() };
    loop {
        let page = ctx.devices.list_devices(&filter).await?;
        let Some(last) = page.last().map(|d| d.udid.clone()) else { break };
        let full = page.len() as i64 == filter.limit;
        out.extend(page);
        if !full {
            break;
        }
        filter.after_udid = Some(last);
    }
    Ok(out)
}

/// The device's name for people: its name, else model and serial, else its UDID.
pub fn display_name(d: &DeviceRecord) -> String {
    d.device_name
        .clone()
        .or_else(|| d.serial_number.as_ref().map(|s| format!("{} {s}", d.model_name.as_deref().unwrap_or("Device"))))
        .unwrap_or_else(|| d.udid.clone())
}

/// Current holders: udid -> person's name.
async fn current_holders(ctx: &Lanyard) -> Result<HashMap<String, String>> {
    let now = ctx.now();
    let names: HashMap<uuid::Uuid, String> = ctx.register.all_people().await?.into_iter().map(|p| (p.id, p.name)).collect();
    Ok(ctx
        .register
        .assignments_open_at(now)
        .await?
        .into_iter()
        .filter(|a| a.held_at(now))
        .map(|a| (a.udid, names.get(&a.person_id).cloned().unwrap_or_default()))
        .collect())
}

struct Row {
    udid: String,
    name: String,
    serial: String,
    model: String,
    platform: String,
    os: String,
    holder: String,
    last_seen: String,
    last_seen_at: DateTime<Utc>,
    enrolled: bool,
    problems: String,
    hold: Option<i64>,
    /// From DeviceInformation; None until it reports (iOS and iPadOS only: a Mac's is not shown).
    supervised: Option<bool>,
    /// Waiting in Setup Assistant for DeviceConfigured.
    setting_up: bool,
}

struct SortLink {
    key: &'static str,
    label: &'static str,
    href: String,
    /// `ascending`, `descending` or `none`, for aria-sort.
    aria: &'static str,
}

#[derive(Template)]
#[template(path = "devices.html")]
struct DevicesPage {
    nav: Nav,
    q: String,
    platform: String,
    state: String,
    seen: String,
    compliance: String,
    hold: String,
    pending: String,
    columns: Vec<SortLink>,
    rows: Vec<Row>,
    total: usize,
    shown_limit: usize,
}

const SHOWN_LIMIT: usize = 500;

pub async fn list(State(ctx): State<Ctx>, s: Session, p: Params) -> UiResult {
    s.require(Permission::ReadDevices)?;
    let now = ctx.now();
    let q = p.text("q");
    let needle = q.to_lowercase();
    let platform = p.text("platform");
    let state = p.get("state").unwrap_or("all").to_owned();
    let seen = p.text("seen");
    let compliance = p.text("compliance");
    let hold = p.text("hold");
    let pending = p.text("pending");
    let sort = p.get("sort").unwrap_or("name").to_owned();
    let desc = p.get("dir") == Some("desc");

    let devices = all_devices(&ctx).await?;
    let not_in_force = ctx.profiles.not_in_force_counts(&devices).await?;
    let holders = current_holders(&ctx).await?;
    let udids: Vec<String> = devices.iter().map(|d| d.udid.clone()).collect();
    let holds: HashMap<String, i64> = ctx.hold.legal_holds(&udids).await?.into_iter().map(|(u, _, n)| (u, n)).collect();
    let today = now.date_naive().and_hms_opt(0, 0, 0).expect("midnight").and_utc();

    let mut rows = Vec::new();
    for d in devices {
        let holder = holders.get(&d.udid).cloned().unwrap_or_default();
        let name = display_name(&d);
        if !needle.is_empty() {
            let hay = [Some(&name), Some(&d.udid), d.serial_number.as_ref(), d.model_name.as_ref(), d.product_name.as_ref(), Some(&holder)];
            if !hay.iter().flatten().any(|h| h.to_lowercase().contains(&needle)) {
                continue;
            }
        }
        if !platform.is_empty() && d.platform != platform {
            continue;
        }
        match state.as_str() {
            "enrolled" if !d.enrolled => continue,
            "unenrolled" if d.enrolled => continue,
            _ => {}
        }
        match seen.as_str() {
            "today" if d.last_seen_at < today => continue,
            "week" if d.last_seen_at >= now - Duration::days(7) || !d.enrolled => continue,
            _ => {}
        }
        let mut problems: Vec<String> = compliance_problems(&d).into_iter().map(str::to_owned).collect();
        if let Some(n) = not_in_force.get(&d.udid) {
            problems.push(not_in_force_words(*n));
        }
        if compliance == "no" && problems.is_empty() {
            continue;
        }
        let on_hold = holds.get(&d.udid).copied();
        if hold == "yes" && on_hold.is_none() {
            continue;
        }
        if pending == "yes" && ctx.commands.pending_count(&d.udid, now).await? == 0 {
            continue;
        }
        rows.push(Row {
            name,
            serial: d.serial_number.clone().unwrap_or_default(),
            model: d.model_name.clone().or(d.product_name.clone()).unwrap_or_default(),
            platform: d.platform.clone(),
            os: d.os_version.clone().unwrap_or_default(),
            holder,
            last_seen: ago(now, d.last_seen_at),
            last_seen_at: d.last_seen_at,
            enrolled: d.enrolled,
            problems: problems.join(", "),
            hold: on_hold,
            supervised: d.supervised.filter(|_| d.platform != "macOS"),
            setting_up: d.enrolled && d.awaiting_configuration,
            udid: d.udid,
        });
    }
    let key = |r: &Row| -> String {
        match sort.as_str() {
            "serial" => r.serial.to_lowercase(),
            "platform" => format!("{} {}", r.platform, r.os),
            "holder" => r.holder.to_lowercase(),
            "seen" => format!("{:020}", r.last_seen_at.timestamp() + 10_000_000_000),
            _ => r.name.to_lowercase(),
        }
    };
    rows.sort_by_cached_key(|r| (key(r), r.udid.clone()));
    if desc {
        rows.reverse();
    }
    let total = rows.len();
    rows.truncate(SHOWN_LIMIT);

    let base: Vec<(&str, &str)> = [
        ("q", q.as_str()),
        ("platform", &platform),
        ("state", &state),
        ("seen", &seen),
        ("compliance", &compliance),
        ("hold", &hold),
        ("pending", &pending),
    ]
    .into_iter()
    .filter(|(_, v)| !v.is_empty())
    .collect();
    let columns = [("name", "Name"), ("serial", "Serial number"), ("platform", "System"), ("holder", "Held by"), ("seen", "Last seen")]
        .into_iter()
        .map(|(k, label)| {
            let active = sort == k || (k == "name" && !["serial", "platform", "holder", "seen"].contains(&sort.as_str()));
            let next_desc = active && !desc;
            let mut qs: Vec<(&str, &str)> = base.clone();
            qs.push(("sort", k));
            if next_desc {
                qs.push(("dir", "desc"));
            }
            let query: String = form_urlencoded::Serializer::new(String::new()).extend_pairs(qs).finish();
            SortLink {
                key: k,
                label,
                href: format!("/ui/devices?{query}"),
                aria: if !active {
                    "none"
                } else if desc {
                    "descending"
                } else {
                    "ascending"
                },
            }
        })
        .collect();
    Ok(render(&DevicesPage {
        nav: Nav::new(&s, "devices"),
        q,
        platform,
        state,
        seen,
        compliance,
        hold,
        pending,
        columns,
        rows,
        total,
        shown_limit: SHOWN_LIMIT,
    }))
}

/// "3 settings of its profiles not in force: device not supervised".
fn not_in_force_words(n: usize) -> String {
    format!("{n} setting{} of its profiles not in force: device not supervised", if n == 1 { "" } else { "s" })
}

/// What the console calls a device of this platform.
fn kind_words(platform: &str) -> &'static str {
    match platform {
        "iPadOS" => "iPad",
        "macOS" => "Mac",
        _ => "iPhone",
    }
}

/// Why an action is unavailable on a device known not to be supervised, if its command needs
/// supervision there (Apple's schema, as the service that refuses it reads it).
fn needs_supervision(d: &DeviceRecord, request_type: &str) -> Option<String> {
    let os = crate::services::supervision::Os::of_platform(&d.platform);
    (d.supervised == Some(false) && crate::services::supervision::request_needs(request_type).contains(&os))
        .then(|| format!("Not available: this {} is not supervised, and this command needs a supervised device.", kind_words(&d.platform)))
}

struct CommandRow {
    uuid: String,
    words: &'static str,
    request_type: String,
    status: &'static str,
    css: &'static str,
    queued: String,
    updated: String,
    by: String,
}

pub(super) fn status_css(status: &str) -> &'static str {
    match status {
        "acknowledged" => "status-done",
        "error" | "expired" | "cancelled" => "status-bad",
        _ => "status-wait",
    }
}

struct HolderRow {
    name: String,
    person_id: String,
    from: String,
    until: String,
}

/// One action on the device page.
struct Action {
    key: &'static str,
    title: &'static str,
    explain: &'static str,
    button: &'static str,
    css: &'static str,
    /// Why it cannot be used now (legal hold), shown beside the disabled button.
    disabled: Option<String>,
    confirm: Option<&'static str>,
    with_message: bool,
}

/// One profile on the device page: what its groups say against what the device reported.
struct ProfileMatch {
    name: String,
    identifier: String,
    via: String,
    /// `Matching`, `Missing`, `Out of date` or `Extra`.
    verdict: &'static str,
    css: &'static str,
    detail: String,
}

fn profile_matches(v: &DeviceProfiles) -> Vec<ProfileMatch> {
    let failure = |identifier: &str| {
        v.failed.iter().find(|f| f.identifier == identifier && f.action == "install").and_then(|f| f.error.clone()).unwrap_or_default()
    };
    let mut rows: Vec<ProfileMatch> = v
        .intended
        .iter()
        .map(|i| {
            let (verdict, css, detail) = match i.state.as_str() {
                "installed" => ("Matching", "status-done", format!("Version {} is installed, as its groups say.", i.version)),
                "outdated" => ("Out of date", "status-wait", format!("An older version is installed; version {} should be.", i.version)),
                "pending_install" => {
                    ("Missing", "status-wait", "Not installed yet: it has been sent and Lanyard is waiting for the device.".into())
                }
                "install_failed" => {
                    let why = failure(&i.identifier);
                    let why = if why.is_empty() { String::new() } else { format!(" It said: {why}") };
                    ("Missing", "status-bad", format!("Not installed: the device refused it.{why}"))
                }
                _ => ("Missing", "status-bad", "Not installed.".into()),
            };
            let mut detail = detail;
            if !i.not_in_force.is_empty() {
                let keys: Vec<String> = i.not_in_force.iter().map(|k| format!("{}: {}", k.label(), k.reason)).collect();
                detail = format!("{detail} Needs a supervised device — {}.", keys.join("; "));
            }
            ProfileMatch { name: i.name.clone(), identifier: i.identifier.clone(), via: i.via.join(", "), verdict, css, detail }
        })
        .collect();
    for p in v.installed.iter().filter(|p| !p.intended) {
        let detail = if !p.managed_by_lanyard {
            "Not installed by Lanyard (by hand, at enrolment or by another system), so Lanyard leaves it alone."
        } else if v.on_legal_hold {
            "No group asks for it any more; it stays while the device is on legal hold."
        } else {
            "No group asks for it any more: Lanyard is removing it."
        };
        rows.push(ProfileMatch {
            name: p.name.clone().or_else(|| p.display_name.clone()).unwrap_or_else(|| "(no name)".into()),
            identifier: p.identifier.clone(),
            via: String::new(),
            verdict: "Extra",
            css: if p.managed_by_lanyard { "status-wait" } else { "status-neutral" },
            detail: detail.into(),
        });
    }
    rows
}

#[derive(Template)]
#[template(path = "bypass_code.html")]
struct BypassCodePage {
    nav: Nav,
    udid: String,
    device: String,
    code: String,
    received: String,
}

#[derive(Template)]
#[template(path = "device.html")]
struct DevicePage {
    nav: Nav,
    udid: String,
    name: String,
    done: Option<&'static str>,
    facts: Vec<(&'static str, String)>,
    problems: Vec<String>,
    hold: Option<i64>,
    holders: Vec<HolderRow>,
    access: Vec<HolderRow>,
    profile_rows: Vec<ProfileMatch>,
    profile_groups: Vec<String>,
    profile_counts: (usize, usize, usize),
    profiles_reported: Option<String>,
    commands: Vec<CommandRow>,
    any_pending: bool,
    diagnosis: Vec<String>,
    actions: Vec<Action>,
    can_quarantine: bool,
    /// (id, name) of the library's Wi-Fi profiles, for Return to Service.
    wifi_profiles: Vec<(String, String)>,
}

fn yes_no(v: Option<bool>) -> String {
    match v {
        Some(true) => "Yes".into(),
        Some(false) => "No".into(),
        None => "Not reported yet".into(),
    }
}

fn device_or_404(d: Option<DeviceRecord>, udid: &str) -> UiResult<DeviceRecord> {
    d.ok_or_else(|| UiError::new(StatusCode::NOT_FOUND, "Device not found", &format!("There is no device with UDID {udid}.")))
}

async fn command_rows(ctx: &Lanyard, udid: &str) -> Result<Vec<CommandRow>> {
    let now = ctx.now();
    Ok(ctx
        .commands
        .device_commands(udid, None, 50)
        .await?
        .into_iter()
        .map(|r| {
            let status = effective_status(&r.target, now);
            let (words, _) = status_words(&status);
            CommandRow {
                words: command_words(&r.request_type),
                css: status_css(&status),
                status: words,
                queued: when(r.target.queued_at),
                updated: ago(now, r.target.updated_at),
                by: r.created_by,
                request_type: r.request_type,
                uuid: r.uuid,
            }
        })
        .collect())
}

pub async fn show(State(ctx): State<Ctx>, s: Session, Path(udid): Path<String>, p: Params) -> UiResult {
    s.require(Permission::ReadDevices)?;
    let now = ctx.now();
    let d = device_or_404(ctx.devices.device(&udid).await?, &udid)?;
    let hold = ctx.hold.legal_hold(&udid).await?.map(|(_, n)| n);
    let mut facts = vec![
        ("Name", d.device_name.clone().unwrap_or_else(|| "—".into())),
        ("Serial number", d.serial_number.clone().unwrap_or_else(|| "—".into())),
        ("Model", format!("{} ({})", d.model_name.as_deref().unwrap_or("—"), d.product_name.as_deref().unwrap_or("—"))),
        ("System", format!("{} {}", d.platform, d.os_version.as_deref().unwrap_or(""))),
        ("UDID", d.udid.clone()),
        ("Enrolled", if d.enrolled { format!("Yes, since {}", when_opt(d.enrolled_at)) } else { "No".into() }),
        ("Last seen", format!("{} ({})", ago(now, d.last_seen_at), when(d.last_seen_at))),
        ("Supervised", yes_no(d.supervised)),
        ("Passcode set", yes_no(d.passcode_present)),
        ("Passcode meets policy", yes_no(d.passcode_compliant)),
        (
            if d.platform == "macOS" { "FileVault on" } else { "Data protection on" },
            yes_no(if d.platform == "macOS" { d.filevault_enabled } else { d.encrypted }),
        ),
        (
            "Storage",
            match (d.storage_available_gb, d.storage_capacity_gb) {
                (Some(a), Some(c)) => format!("{a:.1} GB free of {c:.1} GB"),
                _ => "Not reported yet".into(),
            },
        ),
        ("Battery", d.battery_level.map(|b| format!("{:.0}%", b * 100.0)).unwrap_or_else(|| "Not reported yet".into())),
        ("Wi-Fi address", d.wifi_mac.clone().unwrap_or_else(|| "—".into())),
    ];
    let mut problems: Vec<String> = compliance_problems(&d).into_iter().map(str::to_owned).collect();

    let h = ctx.register.device_holders(&udid, None).await?;
    let holders = h
        .holders
        .iter()
        .rev()
        .map(|x| HolderRow {
            name: x.person.name.clone(),
            person_id: x.person.id.to_string(),
            from: when(x.from),
            until: x.until.map(when).unwrap_or_else(|| "now".into()),
        })
        .collect();
    let access = h
        .access
        .iter()
        .rev()
        .map(|x| HolderRow {
            name: format!("{} (through a {} grant)", x.person.name, x.via),
            person_id: x.person.id.to_string(),
            from: when(x.from),
            until: x.until.map(when).unwrap_or_else(|| "open-ended".into()),
        })
        .collect();

    // When the device last answered ProfileList (what "installed" below is from).
    let mut profiles_reported = None;
    for r in ctx.commands.latest_results(&udid).await? {
        if r.request_type == "ProfileList" {
            profiles_reported = Some(when(r.target.updated_at));
        }
    }
    // Intended (from its groups) against installed, from the same view as
    // `GET /api/v1/devices/{udid}/profiles`.
    let view = ctx.profiles.device_profiles_view(&udid).await?;
    if let Some(p) = crate::services::devices::setup::progress(&d, &view) {
        facts.insert(1, ("Setup Assistant", format!("Waiting, {}; it goes on when they are in", p.words())));
    } else if let Some(flag) = &d.setup_flag {
        facts.insert(1, ("Setup Assistant", format!("Let go before all its profiles were in: {flag}")));
        problems.push(format!("It left Setup Assistant before all its profiles were in ({flag})."));
    }
    // Declarative management: on or not, and any declaration the device says is not valid.
    let ddm = ctx.ddm.device_declarations(&udid).await?;
    facts.push((
        "Declarative management",
        match (ddm.enabled_at, ddm.requested_at) {
            (Some(at), _) => format!("On since {}", when(at)),
            (None, Some(_)) => "Turned on; waiting for the device to answer".to_owned(),
            (None, None) => "Not on (it needs iOS or iPadOS 15, or macOS 13)".to_owned(),
        },
    ));
    for decl in ddm.declarations.iter().filter(|x| x.valid.as_deref() == Some("invalid")) {
        let why = if decl.reasons.is_empty() { "no reason given".to_owned() } else { decl.reasons.join("; ") };
        problems.push(format!("Declaration {} is invalid on the device: {why}", decl.identifier));
    }
    let profile_rows = profile_matches(&view);
    let count = |v: &str| profile_rows.iter().filter(|r| r.verdict == v).count();
    let profile_counts = (count("Matching"), count("Missing") + count("Out of date"), count("Extra"));
    let profile_groups = view.groups.iter().map(|g| g.name.clone()).collect();
    // Settings its profiles hold that it ignores, not being supervised (as the compliance
    // report counts them; not counted while its supervision is unknown, as above).
    let not_in_force = view.intended.iter().flat_map(|i| &i.not_in_force).filter(|k| k.state == "not_in_force").count();
    if not_in_force > 0 {
        problems.push(not_in_force_words(not_in_force));
    }

    let commands = command_rows(&ctx, &udid).await?;
    let any_pending = commands.iter().any(|c| c.css == "status-wait");
    let diagnosis = if any_pending { ctx.commands.queue_view(&udid).await?.diagnosis } else { vec![] };

    let mut actions = Vec::new();
    if s.can(Permission::ManageDevices) {
        let held = |request_type: &str| {
            (FORBIDDEN_UNDER_HOLD.contains(&request_type))
                .then_some(hold)
                .flatten()
                .map(|n| format!("Not available: on legal hold under case {n}."))
        };
        actions.push(Action {
            key: "inventory",
            title: "Update its details now",
            explain: "Ask the device for its details, security settings and installed profiles.",
            button: "Update details",
            css: "secondary",
            disabled: None,
            confirm: None,
            with_message: false,
        });
        actions.push(Action {
            key: "lock",
            title: "Lock the screen",
            explain: "Locks the device straight away. Whoever has it needs the passcode to get back in. You can show a message on the lock screen.",
            button: "Lock now",
            css: "secondary",
            disabled: None,
            confirm: None,
            with_message: true,
        });
        actions.push(Action {
            key: "restart",
            title: "Restart",
            explain: "Restarts the device. Anything unsaved on it is lost.",
            button: "Restart",
            css: "secondary",
            disabled: needs_supervision(&d, "RestartDevice"),
            confirm: Some("Restart this device now?"),
            with_message: false,
        });
        actions.push(Action {
            key: "leave_lost_mode",
            title: "Take out of Lost Mode",
            explain: "Unlocks a device that was put in Lost Mode.",
            button: "Take out of Lost Mode",
            css: "secondary",
            disabled: held("DisableLostMode").or_else(|| needs_supervision(&d, "DisableLostMode")),
            confirm: Some("Take this device out of Lost Mode?"),
            with_message: false,
        });
        actions.push(Action {
            key: "clear_passcode",
            title: "Remove the passcode",
            explain: "Removes the passcode so the device can be opened without it. Lanyard sends the unlock token the device gave it at enrolment.",
            button: "Remove passcode",
            css: "danger",
            // The hold is said first; then a device that never gave an unlock token.
            disabled: held("ClearPasscode").or_else(|| {
                d.unlock_token_sealed.is_none().then(|| {
                    "Not available: this device has not given Lanyard an unlock token (only supervised devices do, at enrolment).".to_owned()
                })
            }),
            confirm: Some("Remove the passcode from this device?"),
            with_message: false,
        });
        let is_ios = d.platform != "macOS";
        actions.push(Action {
            key: "return_to_service",
            title: "Return to service for its next pupil",
            explain: "Erases everything on it, then it joins the Wi-Fi below and enrols again by itself, with its groups' profiles: nobody needs to touch it. iPhone and iPad on 17 or later.",
            button: "Erase and return to service",
            css: "danger",
            disabled: held("EraseDevice").or_else(|| {
                (!is_ios).then(|| "Not available: Return to Service is for iPhone and iPad; erase a Mac instead.".to_owned())
            }),
            confirm: Some("Erase everything on this device and return it to service? This cannot be undone."),
            with_message: false,
        });
        if d.activation_lock_bypass_at.is_some() {
            actions.push(Action {
                key: "bypass_code",
                title: "Show its Activation Lock bypass code",
                explain: "If it comes back from an erase asking for the previous user's Apple Account, this code lifts the lock.",
                button: "Show the code",
                css: "secondary",
                disabled: hold.map(|n| format!("Not available: on legal hold under case {n}.")),
                confirm: None,
                with_message: false,
            });
        }
        actions.push(Action {
            key: "erase",
            title: "Erase everything on it",
            explain: "Deletes all content and settings and returns the device to factory state. This cannot be undone.",
            button: "Erase this device",
            css: "danger",
            disabled: held("EraseDevice"),
            confirm: Some("Erase everything on this device? This cannot be undone."),
            with_message: false,
        });
    }
    let wifi_profiles = if s.can(Permission::ManageDevices) {
        ctx.profiles.wifi_profiles().await?.into_iter().map(|(id, name)| (id.to_string(), name)).collect()
    } else {
        Vec::new()
    };
    let done = p.get("done").and_then(|d| match d {
        "queued" => Some("Done: the command is queued and the device has been woken. Its status below updates by itself."),
        _ => None,
    });
    Ok(render(&DevicePage {
        nav: Nav::new(&s, "devices"),
        name: display_name(&d),
        udid,
        done,
        facts,
        problems,
        hold,
        holders,
        access,
        profile_rows,
        profile_groups,
        profile_counts,
        profiles_reported,
        commands,
        any_pending,
        diagnosis,
        actions,
        can_quarantine: s.can(Permission::Safeguarding),
        wifi_profiles,
    }))
}

/// `GET /ui/devices/{udid}/status.json`: the command queue, for the page's live status.
pub async fn status_json(State(ctx): State<Ctx>, s: Session, Path(udid): Path<String>) -> Response {
    if let Err(e) = s.require(Permission::ReadDevices) {
        return (e.status, axum::Json(json!({"error": e.message, "code": "forbidden"}))).into_response();
    }
    match command_rows(&ctx, &udid).await {
        Ok(rows) => {
            let done = !rows.iter().any(|c| c.css == "status-wait");
            let items: Vec<Value> = rows
                .into_iter()
                .map(|c| json!({"key": c.uuid, "css": c.css, "fields": {"status": c.status, "updated": c.updated}}))
                .collect();
            axum::Json(json!({"items": items, "done": done})).into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "console status poll");
            (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(json!({"error": "internal error", "code": "internal"}))).into_response()
        }
    }
}

/// `POST /ui/devices/{udid}/actions`: queue one of the page's actions through the same service
/// as `POST /api/v1/devices/{udid}/commands`, which refuses what a legal hold forbids.
pub async fn action(State(ctx): State<Ctx>, Path(udid): Path<String>, form: Form) -> UiResult {
    let s = &form.session;
    s.require(Permission::ManageDevices)?;
    device_or_404(ctx.devices.device(&udid).await?, &udid)?;
    let actor = s.actor();
    let mut fields = Map::new();
    let request_type = match form.get("action") {
        Some("inventory") => {
            for cmd in crate::services::devices::checkin::initial_inventory() {
                ctx.commands.enqueue_command(&actor, vec![udid.clone()], cmd.request_type(), &cmd.fields_json(), None, true).await?;
            }
            return Ok(Redirect::to(&format!("/ui/devices/{}?done=queued#commands", super::session::urlencode(&udid))).into_response());
        }
        Some("lock") => {
            if let Some(m) = form.get("message") {
                fields.insert("Message".into(), json!(m));
            }
            if let Some(ph) = form.get("phone") {
                fields.insert("PhoneNumber".into(), json!(ph));
            }
            "DeviceLock"
        }
        Some("restart") => "RestartDevice",
        Some("leave_lost_mode") => "DisableLostMode",
        Some("clear_passcode") => "ClearPasscode",
        Some("return_to_service") => {
            let wifi = match form.get("wifi_profile_id").filter(|v| !v.is_empty()) {
                Some(v) => Some(v.parse::<uuid::Uuid>().map_err(|_| UiError::bad_form())?),
                None => None,
            };
            ctx.devices.return_to_service(&actor, vec![udid.clone()], wifi, true).await?;
            return Ok(Redirect::to(&format!("/ui/devices/{}?done=queued#commands", super::session::urlencode(&udid))).into_response());
        }
        Some("bypass_code") => {
            let code = ctx.devices.reveal_activation_lock_bypass(&actor, &udid, form.get("justification")).await?;
            let device = code.device_name.clone().or(code.serial_number.clone()).unwrap_or_else(|| udid.clone());
            return Ok(render(&BypassCodePage {
                nav: Nav::new(s, "devices"),
                udid: udid.clone(),
                device,
                code: code.bypass_code,
                received: when(code.received_at),
            }));
        }
        Some("erase") => {
            if !form.checked("confirm") {
                return Err(UiError::field("Erase", "tick the box to confirm that everything on the device will be deleted"));
            }
            "EraseDevice"
        }
        _ => return Err(UiError::bad_form()),
    };
    ctx.commands.enqueue_command(&actor, vec![udid.clone()], request_type, &fields, None, true).await?;
    Ok(Redirect::to(&format!("/ui/devices/{}?done=queued#commands", super::session::urlencode(&udid))).into_response())
}
