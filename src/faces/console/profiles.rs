//! `/ui/profiles`: the profile library, groups, and filtering change control.
//!
//! - every live profile in the library (what it holds, its web-filtering policy in words, the
//!   groups it is assigned to, how many devices have it), with upload, new versions, assigning to
//!   and taking off groups, and deletion for admins and technicians;
//! - the shipped baseline files that are not in the library, to add back;
//! - groups: make a static group, add and remove its devices;
//! - filtering changes waiting for a second person, each with what changes in words (sites now
//!   blocked, no longer allowed...), approved or rejected by a different DSL, headteacher or admin.
//!
//! Every form calls the service the API calls (`src/profiles/`): a change to a filtering
//! profile becomes a proposal there, the proposer cannot decide their own, and each step is
//! audited there. A refusal is shown on this page, in the service's words, and nothing is saved.

use std::collections::{BTreeMap, HashMap};

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use uuid::Uuid;

use super::devices::{all_devices, display_name};
use super::{Form, Nav, Params, Session, UiError, UiResult, render_status, when};
use crate::context::{Ctx, Lanyard};
use crate::error::Error;
use crate::faces::api::extract::uuid_param;
use crate::faces::api::profiles::{require_filtering_reader, require_second_person};
use crate::services::auth::Permission;
use crate::services::profiles::changes::FilteringChange;
use crate::services::profiles::groups::GroupKind;
use crate::services::profiles::library::{ChangeOutcome, ProfileSource};
use crate::services::profiles::{BASELINE, FilterPolicy, diff, inspect};

/// A filtering policy in words.
struct PolicyWords {
    how: String,
    allowed: Vec<String>,
    denied: Vec<String>,
    services: Vec<String>,
}

fn mode_words(mode: &str) -> String {
    let parts: Vec<&str> = mode
        .split('+')
        .map(|m| match m {
            "allow_list" => "only the sites listed as allowed",
            "auto_filter" => "Apple's adult-content filter",
            "deny_list" => "a list of blocked sites",
            "plugin" => "a filter app",
            "proxy" => "a web proxy",
            "dns" => "a filtering DNS service",
            "none" => "no filtering",
            _ => "another method",
        })
        .collect();
    parts.join(" and ")
}

fn policy_words(p: &FilterPolicy) -> PolicyWords {
    let mut services = Vec::new();
    if let Some(x) = &p.plugin {
        services.push(format!("Filter app: {x}"));
    }
    if let Some(x) = &p.proxy {
        services.push(format!("Proxy: {x}"));
    }
    if let Some(x) = &p.dns {
        services.push(format!("DNS: {x}"));
    }
    PolicyWords {
        how: mode_words(&p.mode),
        allowed: p.allowed.iter().cloned().collect(),
        denied: p.denied.iter().cloned().collect(),
        services,
    }
}

/// A device state of one profile, in words (see `ProfileStatus`).
fn state_words(state: &str) -> &'static str {
    match state {
        "installed" => "installed",
        "outdated" => "on an older version",
        "pending_install" => "being installed",
        "pending_removal" => "being removed",
        "install_failed" => "refused by the device",
        "removal_failed" => "could not be removed",
        "missing" => "not installed yet",
        "kept_legal_hold" => "kept (legal hold)",
        "removal_due" => "to be removed",
        _ => "not installed",
    }
}

struct ProfileCard {
    id: String,
    name: String,
    display_name: String,
    identifier: String,
    version: i64,
    baseline: bool,
    payloads: String,
    filtering: Option<PolicyWords>,
    groups: Vec<(String, String)>,
    /// Groups it is not assigned to (for the assign form).
    other_groups: Vec<(String, String)>,
    status: String,
    pending: usize,
    /// Its settings a device applies only when supervised, in words.
    needs_supervision: Vec<String>,
}

struct DiffLine {
    css: &'static str,
    text: String,
}

struct ChangeCard {
    id: String,
    what: String,
    state: &'static str,
    lines: Vec<DiffLine>,
    before_after: Vec<(&'static str, String, String)>,
    reason: String,
    risk: String,
    proposed: String,
    decided: String,
    mine: bool,
}

struct GroupCard {
    id: String,
    name: String,
    smart: bool,
    rules: String,
    members: Vec<(String, String)>,
    profiles: Vec<String>,
}

struct ErrorNotice {
    title: String,
    message: String,
}

struct BaselineFile {
    stem: String,
    name: String,
    description: String,
}

#[derive(Template)]
#[template(path = "profiles.html")]
struct ProfilesPage {
    nav: Nav,
    done: Option<&'static str>,
    warnings: Vec<String>,
    /// After assigning: members that will not (or may not) apply some of it.
    assign_warnings: Vec<String>,
    error: Option<ErrorNotice>,
    profiles: Vec<ProfileCard>,
    baseline_missing: Vec<BaselineFile>,
    pending: Vec<ChangeCard>,
    history: Vec<ChangeCard>,
    groups: Vec<GroupCard>,
    can_manage: bool,
    can_groups: bool,
    can_decide: bool,
    can_read_changes: bool,
}

fn change_what(c: &FilteringChange) -> String {
    let group = c.group_name.as_deref().unwrap_or("?");
    match c.kind.as_str() {
        "update" => format!("New version of {}", c.profile_name),
        "delete" => format!("Delete {}", c.profile_name),
        "assign" => format!("Assign {} to the group {group}", c.profile_name),
        "unassign" => format!("Take {} off the group {group}", c.profile_name),
        other => format!("{other} {}", c.profile_name),
    }
}

/// What a change does to filtering, in words, from the policies before and after.
fn diff_lines(c: &FilteringChange) -> Vec<DiffLine> {
    let d = diff(c.before.as_ref(), c.after.as_ref());
    let mut out = Vec::new();
    if let Some((b, a)) = &d.mode_changed {
        out.push(DiffLine { css: "", text: format!("How it filters: {} → {}", mode_words(b), mode_words(a)) });
    }
    for (what, change) in [("Filter app", &d.plugin_changed), ("Proxy", &d.proxy_changed), ("DNS", &d.dns_changed)] {
        if let Some((b, a)) = change {
            let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "none".into());
            out.push(DiffLine { css: "", text: format!("{what}: {} → {}", show(b), show(a)) });
        }
    }
    let lists = [
        ("diff-add", "Now always allowed", &d.added_allowed),
        ("diff-del", "No longer always allowed", &d.removed_allowed),
        ("diff-add", "Now blocked", &d.added_denied),
        ("diff-del", "No longer blocked", &d.removed_denied),
    ];
    for (css, what, sites) in lists {
        out.extend(sites.iter().map(|s| DiffLine { css, text: format!("{what}: {s}") }));
    }
    if out.is_empty() {
        let text = if c.kind == "update" {
            "No change to what is allowed or blocked (other settings of the profile change)."
        } else {
            "No change to what is allowed or blocked."
        };
        out.push(DiffLine { css: "", text: text.into() });
    }
    out
}

fn before_after(c: &FilteringChange) -> Vec<(&'static str, String, String)> {
    let how = |p: Option<&FilterPolicy>| p.map(|p| mode_words(&p.mode)).unwrap_or_else(|| "no filtering".into());
    let count = |p: Option<&FilterPolicy>, f: fn(&FilterPolicy) -> usize| p.map(f).unwrap_or(0).to_string();
    let (b, a) = (c.before.as_ref(), c.after.as_ref());
    vec![
        ("How it filters", how(b), how(a)),
        ("Sites always allowed", count(b, |p| p.allowed.len()), count(a, |p| p.allowed.len())),
        ("Sites blocked", count(b, |p| p.denied.len()), count(a, |p| p.denied.len())),
    ]
}

fn change_state_words(state: &str) -> &'static str {
    match state {
        "proposed" => "Waiting for a second person",
        "approved" => "Approved",
        "deployed" => "Approved and deployed",
        "rejected" => "Rejected",
        _ => "Unknown",
    }
}

fn change_card(c: &FilteringChange, me: &str) -> ChangeCard {
    ChangeCard {
        id: c.id.to_string(),
        what: change_what(c),
        state: change_state_words(&c.state),
        lines: diff_lines(c),
        before_after: before_after(c),
        reason: c.reason.clone(),
        risk: c.risk_assessment_ref.clone(),
        proposed: format!("{} by {}", when(c.proposed_at), c.proposed_by),
        decided: match (&c.decided_by, c.decided_at) {
            (Some(by), Some(at)) => format!("{} by {}: {}", when(at), by, c.justification.as_deref().unwrap_or("")),
            _ => String::new(),
        },
        mine: c.proposed_by == me,
    }
}

async fn build(ctx: &Lanyard, s: &Session) -> crate::error::Result<ProfilesPage> {
    let me = s.actor().name;
    let groups_all = ctx.profiles.list_group_views().await?;
    let mut groups_of: HashMap<Uuid, Vec<(String, String)>> = HashMap::new();
    for g in &groups_all {
        for p in &g.profiles {
            groups_of.entry(p.id).or_default().push((g.id.to_string(), g.name.clone()));
        }
    }
    let can_read_changes = require_filtering_reader(&s.principal).is_ok();
    let pending_changes =
        if can_read_changes { ctx.profiles.list_filtering_changes(Some("proposed"), None, None, 200).await? } else { Vec::new() };
    let mut pending_of: HashMap<Uuid, usize> = HashMap::new();
    for c in &pending_changes {
        *pending_of.entry(c.profile_id).or_default() += 1;
    }

    let library = ctx.profiles.list_profile_views(None).await?;
    let mut profiles = Vec::new();
    for p in &library {
        let status = ctx.profiles.profile_status(p.id).await?;
        let counts: BTreeMap<&str, usize> = status.counts.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        let status = if counts.is_empty() {
            "No device should have it yet.".to_owned()
        } else {
            let parts: Vec<String> = counts.iter().map(|(k, n)| format!("{n} {}", state_words(k))).collect();
            format!("Devices: {}.", parts.join(", "))
        };
        let groups = groups_of.remove(&p.id).unwrap_or_default();
        let other_groups = groups_all
            .iter()
            .filter(|g| !groups.iter().any(|(id, _)| *id == g.id.to_string()))
            .map(|g| (g.id.to_string(), g.name.clone()))
            .collect();
        profiles.push(ProfileCard {
            id: p.id.to_string(),
            name: p.name.clone(),
            display_name: p.display_name.clone().unwrap_or_default(),
            identifier: p.identifier.clone(),
            version: p.version,
            baseline: p.baseline,
            payloads: p.payload_types.join(", "),
            filtering: p.filtering.as_ref().map(policy_words),
            groups,
            other_groups,
            status,
            pending: pending_of.get(&p.id).copied().unwrap_or(0),
            needs_supervision: p
                .needs_supervision
                .iter()
                .map(|n| {
                    let on: Vec<&str> = n.os.iter().map(|o| o.words()).collect();
                    format!("{} ({}, on {})", n.label(), n.payload_type, on.join(" and "))
                })
                .collect(),
        });
    }

    // Shipped baseline files no live profile stands for (deleted, or never loaded).
    let baseline_missing = BASELINE
        .iter()
        .filter_map(|(stem, xml)| {
            let p = inspect(xml.as_bytes()).ok()?;
            let present = library.iter().any(|l| l.identifier == p.identifier || l.name == *stem);
            (!present).then(|| BaselineFile {
                stem: stem.to_string(),
                name: p.display_name.clone().unwrap_or_else(|| stem.to_string()),
                description: p.description.clone().unwrap_or_default(),
            })
        })
        .collect();

    let history = if can_read_changes {
        ctx.profiles
            .list_filtering_changes(None, None, None, 30)
            .await?
            .iter()
            .filter(|c| c.state != "proposed")
            .take(20)
            .map(|c| change_card(c, &me))
            .collect()
    } else {
        Vec::new()
    };

    let names: HashMap<String, String> = if groups_all.iter().any(|g| !g.members.is_empty()) {
        all_devices(ctx).await?.iter().map(|d| (d.udid.clone(), display_name(d))).collect()
    } else {
        HashMap::new()
    };
    let groups = groups_all
        .iter()
        .map(|g| GroupCard {
            id: g.id.to_string(),
            name: g.name.clone(),
            smart: g.kind == "smart",
            rules: g.rules.as_ref().and_then(|r| serde_json::to_string(r).ok()).unwrap_or_default(),
            members: g.members.iter().map(|u| (u.clone(), names.get(u).cloned().unwrap_or_else(|| u.clone()))).collect(),
            profiles: g.profiles.iter().map(|p| p.name.clone()).collect(),
        })
        .collect();

    Ok(ProfilesPage {
        nav: Nav::new(s, "profiles"),
        done: None,
        warnings: Vec::new(),
        assign_warnings: Vec::new(),
        error: None,
        profiles,
        baseline_missing,
        pending: pending_changes.iter().map(|c| change_card(c, &me)).collect(),
        history,
        groups,
        can_manage: s.can(Permission::ManageProfiles),
        can_groups: s.can(Permission::ManageDevices),
        can_decide: s.can(Permission::ApproveSecondPerson),
        can_read_changes,
    })
}

fn done_message(code: &str) -> Option<&'static str> {
    Some(match code {
        "uploaded" => "Uploaded. It reaches no device until it is assigned to a group.",
        "baseline" => "Added from the baseline. It reaches no device until it is assigned to a group.",
        "version" => "Saved as a new version: the devices that have it are being updated.",
        "proposed" => {
            "This changes web filtering, so it has only been proposed: nothing changes until a different person (a DSL, the \
             headteacher or an admin) approves it under \"Filtering changes waiting for a second person\"."
        }
        "assigned" => "Assigned: the group's devices are being sent it.",
        "already" => "It was already assigned to that group: nothing changed.",
        "unassigned" => "Taken off the group: Lanyard removes it from devices no other group gives it to.",
        "deleted" => "Deleted: Lanyard removes it from the devices it installed it on. Its versions stay readable.",
        "group" => "The group is made. Add devices to it, then assign profiles to it.",
        "members" => "Added to the group: the group's profiles are being sent to them.",
        "member_removed" => "Taken out of the group.",
        "approved" => "Approved: the change is deployed and devices are being updated.",
        "rejected" => "Rejected: nothing changes.",
        _ => return None,
    })
}

pub async fn page(State(ctx): State<Ctx>, s: Session, p: Params) -> UiResult {
    s.require(Permission::ReadProfiles)?;
    let mut page = build(&ctx, &s).await?;
    page.done = p.get("done").and_then(done_message);
    Ok(render_status(StatusCode::OK, &page))
}

/// A field name from the services, as the form labels it.
fn field_words(field: &str) -> String {
    match field {
        "mobileconfig" | "payloads" => "The file".into(),
        "name" => "Name".into(),
        "reason" => "Reason for the change".into(),
        "risk_assessment_ref" => "Risk assessment reference".into(),
        "justification" => "Your reason for deciding".into(),
        "profile_id" => "Profile".into(),
        "group" => "Group".into(),
        f if f.starts_with("udids") => "Devices".into(),
        f => f.replace('_', " "),
    }
}

/// The page again, with the service's refusal at the top. Nothing was saved.
async fn refused(ctx: &Lanyard, s: &Session, e: Error) -> UiResult {
    let (status, title, message) = match &e {
        Error::Unprocessable { field, message } => {
            // "reason is required ..." reads "Reason for the change: This is required ...".
            let message = match message.strip_prefix(field.as_str()) {
                Some(rest) if rest.starts_with(' ') => format!("this{rest}"),
                _ => message.clone(),
            };
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                "Please check what you entered".to_owned(),
                format!("{}: {}", field_words(field), super::sentence(&message)),
            )
        }
        _ => {
            let u = UiError::from(e);
            (u.status, u.title, u.message)
        }
    };
    let mut page = build(ctx, s).await?;
    page.error = Some(ErrorNotice { title, message: format!("{message} Nothing was changed.") });
    Ok(render_status(status, &page))
}

fn to(done: &str, anchor: &str) -> UiResult {
    Ok(Redirect::to(&format!("/ui/profiles?done={done}{anchor}")).into_response())
}

fn profile_id(id: &str) -> UiResult<Uuid> {
    Ok(uuid_param(id, "profile")?)
}

fn group_id(id: &str) -> UiResult<Uuid> {
    Ok(uuid_param(id, "group")?)
}

/// `reason` and `risk_assessment_ref` as typed (the service says when they are needed).
fn change_fields(form: &Form) -> (Option<String>, Option<String>) {
    (form.get("reason").map(str::to_owned), form.get("risk_assessment_ref").map(str::to_owned))
}

/// The uploaded `.mobileconfig`, or the refusal to show.
fn uploaded(form: &Form) -> Result<&(String, Vec<u8>), Error> {
    form.file("file").ok_or_else(|| Error::unprocessable("mobileconfig", "choose the .mobileconfig file to upload"))
}

/// `POST /ui/profiles`: upload a new profile (`POST /api/v1/profiles`).
pub async fn upload(State(ctx): State<Ctx>, form: Form) -> UiResult {
    let s = &form.session;
    s.require(Permission::ManageProfiles)?;
    let (file_name, bytes) = match uploaded(&form) {
        Ok(f) => f,
        Err(e) => return refused(&ctx, s, e).await,
    };
    let name = match form.get("name") {
        Some(n) => n.to_owned(),
        None => file_name.rsplit(['/', '\\']).next().unwrap_or("").trim_end_matches(".mobileconfig").to_owned(),
    };
    match ctx.profiles.create_profile(&s.actor(), &name, ProfileSource::Bytes(bytes.clone())).await {
        Ok(p) if p.warnings.is_empty() => to("uploaded", &format!("#p-{}", p.id)),
        Ok(p) => {
            let mut page = build(&ctx, s).await?;
            page.done = done_message("uploaded");
            page.warnings = p.warnings;
            Ok(render_status(StatusCode::CREATED, &page))
        }
        Err(e) => refused(&ctx, s, e).await,
    }
}

/// `POST /ui/profiles/baseline`: put a shipped baseline file back in the library, as an upload
/// of that file would.
pub async fn add_baseline(State(ctx): State<Ctx>, form: Form) -> UiResult {
    let s = &form.session;
    s.require(Permission::ManageProfiles)?;
    let stem = form.get("stem").unwrap_or("");
    let Some((stem, xml)) = BASELINE.iter().find(|(b, _)| *b == stem) else {
        return refused(&ctx, s, Error::unprocessable("name", "there is no such baseline file")).await;
    };
    match ctx.profiles.create_profile(&s.actor(), stem, ProfileSource::Bytes(xml.as_bytes().to_vec())).await {
        Ok(p) => to("baseline", &format!("#p-{}", p.id)),
        Err(e) => refused(&ctx, s, e).await,
    }
}

/// `POST /ui/profiles/{id}/versions`: a new version (`PUT /api/v1/profiles/{id}`). A filtering
/// profile's becomes a proposal.
pub async fn new_version(State(ctx): State<Ctx>, Path(id): Path<String>, form: Form) -> UiResult {
    let s = &form.session;
    s.require(Permission::ManageProfiles)?;
    let id = profile_id(&id)?;
    let (_, bytes) = match uploaded(&form) {
        Ok(f) => f,
        Err(e) => return refused(&ctx, s, e).await,
    };
    let (reason, risk) = change_fields(&form);
    match ctx.profiles.update_profile(&s.actor(), id, ProfileSource::Bytes(bytes.clone()), reason, risk).await {
        Ok(ChangeOutcome::Done(p)) => to("version", &format!("#p-{}", p.id)),
        Ok(ChangeOutcome::Proposed(c)) => to("proposed", &format!("#c-{}", c.id)),
        Err(e) => refused(&ctx, s, e).await,
    }
}

/// `POST /ui/profiles/{id}/delete` (`DELETE /api/v1/profiles/{id}`).
pub async fn delete(State(ctx): State<Ctx>, Path(id): Path<String>, form: Form) -> UiResult {
    let s = &form.session;
    s.require(Permission::ManageProfiles)?;
    let id = profile_id(&id)?;
    let (reason, risk) = change_fields(&form);
    match ctx.profiles.delete_profile(&s.actor(), id, reason, risk).await {
        Ok(ChangeOutcome::Done(())) => to("deleted", ""),
        Ok(ChangeOutcome::Proposed(c)) => to("proposed", &format!("#c-{}", c.id)),
        Err(e) => refused(&ctx, s, e).await,
    }
}

/// `POST /ui/profiles/{id}/groups`: assign to a group (`POST /api/v1/groups/{id}/profiles`).
pub async fn assign(State(ctx): State<Ctx>, Path(id): Path<String>, form: Form) -> UiResult {
    let s = &form.session;
    s.require(Permission::ManageProfiles)?;
    let pid = profile_id(&id)?;
    let Some(gid) = form.get("group_id") else {
        return refused(&ctx, s, Error::unprocessable("group", "choose the group")).await;
    };
    let gid = group_id(gid)?;
    let (reason, risk) = change_fields(&form);
    match ctx.profiles.assign_group_profile(&s.actor(), gid, pid, reason, risk).await {
        Ok(ChangeOutcome::Done(a)) if a.assigned && !a.warnings.is_empty() => {
            // Say which members will not apply some of it, as the API's `warnings` do.
            let mut page = build(&ctx, s).await?;
            page.done = done_message("assigned");
            page.assign_warnings = a.warnings.into_iter().map(|w| w.message).collect();
            Ok(render_status(StatusCode::CREATED, &page))
        }
        Ok(ChangeOutcome::Done(a)) if a.assigned => to("assigned", &format!("#p-{pid}")),
        Ok(ChangeOutcome::Done(_)) => to("already", &format!("#p-{pid}")),
        Ok(ChangeOutcome::Proposed(c)) => to("proposed", &format!("#c-{}", c.id)),
        Err(e) => refused(&ctx, s, e).await,
    }
}

/// `POST /ui/profiles/{id}/groups/{gid}/remove` (`DELETE /api/v1/groups/{gid}/profiles/{id}`).
pub async fn unassign(State(ctx): State<Ctx>, Path((id, gid)): Path<(String, String)>, form: Form) -> UiResult {
    let s = &form.session;
    s.require(Permission::ManageProfiles)?;
    let pid = profile_id(&id)?;
    let gid = group_id(&gid)?;
    let (reason, risk) = change_fields(&form);
    match ctx.profiles.unassign_group_profile(&s.actor(), gid, pid, reason, risk).await {
        Ok(ChangeOutcome::Done(())) => to("unassigned", &format!("#p-{pid}")),
        Ok(ChangeOutcome::Proposed(c)) => to("proposed", &format!("#c-{}", c.id)),
        Err(e) => refused(&ctx, s, e).await,
    }
}

/// `POST /ui/profiles/groups`: a new static group (`POST /api/v1/groups`).
pub async fn create_group(State(ctx): State<Ctx>, form: Form) -> UiResult {
    let s = &form.session;
    s.require(Permission::ManageDevices)?;
    match ctx.profiles.create_group(&s.actor(), form.raw("name"), GroupKind::Static, None).await {
        Ok(g) => to("group", &format!("#g-{}", g.id)),
        Err(e) => refused(&ctx, s, e).await,
    }
}

/// `POST /ui/profiles/groups/{gid}/members`: add devices by UDID or serial number, one a line
/// (`POST /api/v1/groups/{gid}/members`).
pub async fn add_members(State(ctx): State<Ctx>, Path(gid): Path<String>, form: Form) -> UiResult {
    let s = &form.session;
    s.require(Permission::ManageDevices)?;
    let gid = group_id(&gid)?;
    let wanted: Vec<String> = form.raw("devices").split(['\n', ',']).map(str::trim).filter(|x| !x.is_empty()).map(str::to_owned).collect();
    let devices = all_devices(&ctx).await?;
    // A serial number stands for its device's UDID; anything else goes to the service as given,
    // which names what it cannot find.
    let udids = wanted
        .into_iter()
        .map(|w| {
            devices
                .iter()
                .find(|d| d.udid == w || d.serial_number.as_deref().is_some_and(|sn| sn.eq_ignore_ascii_case(&w)))
                .map(|d| d.udid.clone())
                .unwrap_or(w)
        })
        .collect();
    match ctx.profiles.add_group_members(&s.actor(), gid, udids).await {
        Ok(_) => to("members", &format!("#g-{gid}")),
        Err(e) => refused(&ctx, s, e).await,
    }
}

/// `POST /ui/profiles/groups/{gid}/members/{udid}/remove`
/// (`DELETE /api/v1/groups/{gid}/members/{udid}`).
pub async fn remove_member(State(ctx): State<Ctx>, Path((gid, udid)): Path<(String, String)>, form: Form) -> UiResult {
    let s = &form.session;
    s.require(Permission::ManageDevices)?;
    let gid = group_id(&gid)?;
    match ctx.profiles.remove_group_member(&s.actor(), gid, &udid).await {
        Ok(()) => to("member_removed", &format!("#g-{gid}")),
        Err(e) => refused(&ctx, s, e).await,
    }
}

/// `POST /ui/profiles/changes/{id}`: approve or reject a filtering change
/// (`POST /api/v1/filtering/changes/{id}/approve|reject`), by a second person.
pub async fn decide(State(ctx): State<Ctx>, Path(id): Path<String>, form: Form) -> UiResult {
    let s = &form.session;
    require_second_person(&s.principal)?;
    let id = uuid_param(&id, "filtering change")?;
    let justification = form.get("justification").map(str::to_owned);
    let (result, done) = match form.get("decision") {
        Some("approve") => (ctx.profiles.approve_filtering_change(&s.actor(), id, justification).await, "approved"),
        Some("reject") => (ctx.profiles.reject_filtering_change(&s.actor(), id, justification).await, "rejected"),
        _ => return Err(UiError::bad_form()),
    };
    match result {
        Ok(_) => to(done, &format!("#h-{id}")),
        Err(e) => refused(&ctx, s, e).await,
    }
}
