//! The console's Apple School Manager page (`/ui/ade`, admin and technician): the ADE profiles
//! Setup Assistant follows, which profile each token's new iPads get, and the devices ASM lists,
//! with assignment by hand. The same services as `/api/v1/ade/...`.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect};
use serde_json::{Map, json};

use super::session::{Form, Session};
use super::{Nav, Params, UiError, UiResult, render, when};
use crate::context::Ctx;
use crate::faces::api::extract::uuid_param;
use crate::services::ade::AdeDeviceInfo;
use crate::services::ade::assign::{AssignmentRule, AssignmentRules};
use crate::services::ade::profiles::{AdeProfileInfo, AdeProfileInput};
use crate::services::auth::Permission;
use crate::store::AdeDeviceFilter;

/// How many devices the page lists (narrow with the search).
const SHOWN: i64 = 200;

struct TokenRules {
    id: String,
    server_name: String,
    default_profile: String,
    /// (index, words)
    rules: Vec<(usize, String)>,
}

struct DeviceRow {
    serial: String,
    model: String,
    profile_status: String,
    enrolled_udid: Option<String>,
    flags: String,
}

#[derive(Template)]
#[template(path = "ade.html")]
struct AdePage {
    nav: Nav,
    done: Option<String>,
    profiles: Vec<AdeProfileInfo>,
    tokens: Vec<TokenRules>,
    devices: Vec<DeviceRow>,
    q: String,
    more: bool,
}

fn profile_name(profiles: &[AdeProfileInfo], id: Option<uuid::Uuid>) -> String {
    match id {
        None => "none (Lanyard assigns nothing by default)".to_owned(),
        Some(id) => profiles.iter().find(|p| p.id == id).map(|p| p.name.clone()).unwrap_or_else(|| id.to_string()),
    }
}

fn rule_words(profiles: &[AdeProfileInfo], r: &AssignmentRule) -> String {
    let mut when = Vec::new();
    if let Some(f) = &r.device_family {
        when.push(format!("family is {f}"));
    }
    if let Some(m) = &r.model {
        when.push(format!("model contains \u{201c}{m}\u{201d}"));
    }
    if let Some(serials) = r.serials.as_ref().filter(|s| !s.is_empty()) {
        when.push(format!("serial is one of {}", serials.join(", ")));
    }
    format!("{} when {}", profile_name(profiles, Some(r.profile)), when.join(" and "))
}

fn flags(d: &AdeDeviceInfo) -> String {
    let mut out = Vec::new();
    if d.migrating {
        out.push(format!("moving here from another MDM server by {}", d.mdm_migration_deadline.as_deref().unwrap_or("?")));
    }
    if d.removed_but_enrolled {
        out.push("removed in ASM but still enrolled: look at it".to_owned());
    } else if let Some(at) = d.removed_at {
        out.push(format!("removed in ASM {}", when(at)));
    }
    out.join("; ")
}

pub async fn page(State(ctx): State<Ctx>, s: Session, p: Params) -> UiResult {
    s.require(Permission::ManageDevices)?;
    let profiles = ctx.ade.profiles().await?;
    let mut tokens = Vec::new();
    for t in ctx.ade.tokens().await? {
        let rules = ctx.ade.assignment_rules(t.id).await?;
        tokens.push(TokenRules {
            id: t.id.to_string(),
            server_name: t.server_name,
            default_profile: profile_name(&profiles, rules.default_profile),
            rules: rules.rules.iter().enumerate().map(|(i, r)| (i, rule_words(&profiles, r))).collect(),
        });
    }
    let q = p.get("q").unwrap_or("").to_owned();
    let filter = AdeDeviceFilter { q: (!q.is_empty()).then(|| q.clone()), limit: SHOWN + 1, ..Default::default() };
    let mut listed = ctx.ade.devices(&filter).await?;
    let more = listed.len() as i64 > SHOWN;
    listed.truncate(SHOWN as usize);
    let devices = listed
        .iter()
        .map(|d| DeviceRow {
            serial: d.serial_number.clone(),
            model: d.model.clone().or(d.description.clone()).unwrap_or_default(),
            profile_status: d.profile_status.clone().unwrap_or_else(|| "empty".into()),
            enrolled_udid: d.enrolled_udid.clone(),
            flags: flags(d),
        })
        .collect();
    let done = p.get("done").map(|d| match d {
        "profile" => "ADE profile saved. Apple is given it when a device first needs it.".to_owned(),
        "deleted" => "ADE profile deleted.".to_owned(),
        "rules" => "Saved. New devices get their profile after the next sync.".to_owned(),
        other => match other.strip_prefix("assigned-") {
            Some(n) => format!("Assigned: {n}. Each device's answer from Apple is in the list below."),
            None => "Done.".to_owned(),
        },
    });
    Ok(render(&AdePage { nav: Nav::new(&s, "ade"), done, profiles, tokens, devices, q, more }))
}

/// `POST /ui/ade/profiles`: a new ADE profile from the form (checked by the same rules as the API).
pub async fn create_profile(State(ctx): State<Ctx>, form: Form) -> UiResult {
    let s = &form.session;
    s.require(Permission::ManageDevices)?;
    let mut fields = Map::new();
    fields.insert("name".into(), json!(form.get("name").unwrap_or("")));
    for flag in ["is_supervised", "is_mandatory", "is_mdm_removable", "await_device_configured", "is_multi_user"] {
        fields.insert(flag.into(), json!(form.checked(flag)));
    }
    let skip = form.list("skip_setup_items");
    fields.insert("skip_setup_items".into(), json!(skip));
    for text in ["department", "support_phone_number", "support_email_address"] {
        if let Some(v) = form.get(text) {
            fields.insert(text.into(), json!(v));
        }
    }
    let input = AdeProfileInput::try_from(fields).map_err(|e| UiError::field("Profile", &e))?;
    ctx.ade.create_profile(&s.actor(), input).await?;
    Ok(Redirect::to("/ui/ade?done=profile").into_response())
}

pub async fn delete_profile(State(ctx): State<Ctx>, Path(id): Path<String>, form: Form) -> UiResult {
    let s = &form.session;
    s.require(Permission::ManageDevices)?;
    ctx.ade.delete_profile(&s.actor(), uuid_param(&id, "profile")?).await?;
    Ok(Redirect::to("/ui/ade?done=deleted").into_response())
}

/// `POST /ui/ade/tokens/{id}/rules`: set the default, add a rule, or remove one
/// (`action` = `default`, `add` or `remove`), keeping the rest.
pub async fn rules(State(ctx): State<Ctx>, Path(id): Path<String>, form: Form) -> UiResult {
    let s = &form.session;
    s.require(Permission::ManageDevices)?;
    let token = uuid_param(&id, "token")?;
    let mut rules: AssignmentRules = ctx.ade.assignment_rules(token).await?;
    let profile = |name: &str| -> Result<Option<uuid::Uuid>, UiError> {
        form.get(name).map(|v| v.parse().map_err(|_| UiError::bad_form())).transpose()
    };
    match form.get("action") {
        Some("default") => rules.default_profile = profile("profile")?,
        Some("add") => {
            let Some(p) = profile("profile")? else { return Err(UiError::field("Profile", "choose the ADE profile the rule gives")) };
            let serials = form.list("serials");
            rules.rules.push(AssignmentRule {
                profile: p,
                device_family: form.get("device_family").map(str::to_owned),
                model: form.get("model").map(str::to_owned),
                serials: (!serials.is_empty()).then_some(serials),
            });
        }
        Some("remove") => {
            let i: usize = form.get("index").and_then(|v| v.parse().ok()).ok_or_else(UiError::bad_form)?;
            if i >= rules.rules.len() {
                return Err(UiError::bad_form());
            }
            rules.rules.remove(i);
        }
        _ => return Err(UiError::bad_form()),
    }
    ctx.ade.set_assignment_rules(&s.actor(), token, rules).await?;
    Ok(Redirect::to("/ui/ade?done=rules").into_response())
}

/// `POST /ui/ade/assign`: give these serials a profile now.
pub async fn assign(State(ctx): State<Ctx>, form: Form) -> UiResult {
    let s = &form.session;
    s.require(Permission::ManageDevices)?;
    let profile: uuid::Uuid = form.get("profile").and_then(|v| v.parse().ok()).ok_or_else(|| UiError::field("Profile", "choose one"))?;
    let serials = form.list("serials");
    if serials.is_empty() {
        return Err(UiError::field("Serial numbers", "type one or more, separated by spaces or new lines"));
    }
    let report = ctx.ade.assign_profile(&s.actor(), profile, serials).await?;
    let words: Vec<String> = report.devices.iter().map(|(serial, r)| format!("{serial} {r}")).collect();
    let done = format!("assigned-{}", words.join(", "));
    Ok(Redirect::to(&format!("/ui/ade?done={}", super::session::urlencode(&done))).into_response())
}

/// The profiles as (id, name) for the selects.
impl AdePage {
    fn options(&self) -> Vec<(String, String)> {
        self.profiles.iter().map(|p| (p.id.to_string(), p.name.clone())).collect()
    }
}
