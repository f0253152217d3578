//! Returning a trolley of iPads to service from the console (`/ui/devices/return-to-service`):
//! type or scan their serial numbers (or UDIDs), choose the Wi-Fi they come back on, and watch
//! each erase go through. The same service as `POST /api/v1/devices/return-to-service`, so the
//! same all-or-nothing rules and legal hold.

use askama::Template;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::json;

use super::devices::status_css;
use super::session::{Form, Session, urlencode};
use super::{Nav, Params, UiError, UiResult, render, status_words};
use crate::context::Ctx;
use crate::services::auth::Permission;
use crate::store::DeviceFilter;

#[derive(Template)]
#[template(path = "trolley.html")]
struct TrolleyPage {
    nav: Nav,
    wifi_profiles: Vec<(String, String)>,
}

struct ProgressRow {
    uuid: String,
    device: String,
    udid: String,
    status: String,
    css: &'static str,
}

#[derive(Template)]
#[template(path = "trolley_progress.html")]
struct ProgressPage {
    nav: Nav,
    rows: Vec<ProgressRow>,
    query: String,
    pending: bool,
}

pub async fn page(State(ctx): State<Ctx>, s: Session) -> UiResult {
    s.require(Permission::ManageDevices)?;
    let wifi_profiles = ctx.profiles.wifi_profiles().await?.into_iter().map(|(id, name)| (id.to_string(), name)).collect();
    Ok(render(&TrolleyPage { nav: Nav::new(&s, "devices"), wifi_profiles }))
}

/// The UDID of a typed serial number or UDID (as typed when no device has it: the service
/// names it among the refused).
async fn udid_of(ctx: &Ctx, typed: &str) -> crate::error::Result<String> {
    if ctx.devices.device(typed).await?.is_some() {
        return Ok(typed.to_owned());
    }
    let filter = DeviceFilter { text: Some(typed.to_owned()), limit: 20, ..Default::default() };
    let found = ctx.devices.list_devices(&filter).await?;
    Ok(found
        .into_iter()
        .find(|d| d.serial_number.as_deref().is_some_and(|s| s.eq_ignore_ascii_case(typed)))
        .map(|d| d.udid)
        .unwrap_or_else(|| typed.to_owned()))
}

pub async fn submit(State(ctx): State<Ctx>, form: Form) -> UiResult {
    let s = &form.session;
    s.require(Permission::ManageDevices)?;
    if !form.checked("confirm") {
        return Err(UiError::field("Return to service", "tick the box to confirm that everything on these iPads will be erased"));
    }
    let typed = form.list("devices");
    if typed.is_empty() {
        return Err(UiError::field("iPads", "type or scan at least one serial number"));
    }
    let mut udids = Vec::new();
    for t in &typed {
        udids.push(udid_of(&ctx, t).await?);
    }
    let wifi = match form.get("wifi_profile_id") {
        Some(v) => Some(v.parse::<uuid::Uuid>().map_err(|_| UiError::bad_form())?),
        None => None,
    };
    let done = ctx.devices.return_to_service(&s.actor(), udids, wifi, true).await?;
    let uuids: Vec<&str> = done.devices.iter().map(|d| d.command_uuid.as_str()).collect();
    Ok(Redirect::to(&format!("/ui/devices/return-to-service/progress?c={}", urlencode(&uuids.join(",")))).into_response())
}

async fn rows(ctx: &Ctx, p: &Params) -> crate::error::Result<Vec<ProgressRow>> {
    let mut out = Vec::new();
    for uuid in p.get("c").unwrap_or("").split(',').filter(|u| !u.is_empty()).take(500) {
        let Ok(view) = ctx.commands.command_status(uuid).await else { continue };
        for t in view.targets {
            // As the API shows it: a pending target past its expiry is expired.
            let status = t.status.clone();
            let device = ctx.devices.device(&t.udid).await?;
            out.push(ProgressRow {
                uuid: uuid.to_owned(),
                device: device
                    .map(|d| format!("{} ({})", d.device_name.unwrap_or_default(), d.serial_number.unwrap_or_default()))
                    .unwrap_or_else(|| t.udid.clone()),
                udid: t.udid,
                status: status_words(&status).0.to_owned(),
                css: status_css(&status),
            });
        }
    }
    Ok(out)
}

pub async fn progress(State(ctx): State<Ctx>, s: Session, p: Params) -> UiResult {
    s.require(Permission::ManageDevices)?;
    let rows = rows(&ctx, &p).await?;
    let pending = rows.iter().any(|r| r.css == "status-wait");
    let query = urlencode(p.get("c").unwrap_or(""));
    Ok(render(&ProgressPage { nav: Nav::new(&s, "devices"), rows, query, pending }))
}

/// The same, as JSON for the page's live status.
pub async fn progress_json(State(ctx): State<Ctx>, s: Session, p: Params) -> Response {
    if let Err(e) = s.require(Permission::ManageDevices) {
        return (e.status, axum::Json(json!({"error": e.message, "code": "forbidden"}))).into_response();
    }
    match rows(&ctx, &p).await {
        Ok(rows) => {
            let done = !rows.iter().any(|r| r.css == "status-wait");
            let items: Vec<_> = rows.iter().map(|r| json!({"key": r.uuid, "css": r.css, "fields": {"status": r.status}})).collect();
            axum::Json(json!({"items": items, "done": done})).into_response()
        }
        Err(e) => e.into_response(),
    }
}
