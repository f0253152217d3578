//! Re-issuing an iPad to its next pupil: erase it with Return to Service so it comes back
//! enrolled, and its Activation Lock bypass code for when it comes back locked.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::http::header::CACHE_CONTROL;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::extract::{self, Query};
use super::openapi::{ErrorBody, Unprocessable};
use crate::context::Ctx;
use crate::error::Result;
use crate::services::auth::{Permission, Principal};
use crate::services::devices::activation_lock::ActivationLockBypass;
use crate::services::devices::return_to_service::ReturnToService;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct BypassQuery {
    /// why the code is needed (required: 10+ characters), kept in the audit log
    #[param(required = true)]
    justification: Option<String>,
}

/// `GET /api/v1/devices/{udid}/activation-lock-bypass?justification=...`.
#[utoipa::path(
    get,
    path = "/devices/{udid}/activation-lock-bypass",
    tag = "devices",
    summary = "Reveal a supervised device's Activation Lock bypass code",
    description = "Roles: admin, technician. Lanyard asks a supervised device for its code (ActivationLockBypassCode) as soon as it reports being supervised (a device gives it only within 15 days of supervision) and keeps it sealed. justification required (10+ characters; 422 without); audited with it. 409 legal_hold for a device on legal hold (audited, and on the case's custody log). 404 when Lanyard holds no code for it.",
    params(("udid" = String, Path), BypassQuery),
    responses(
        (status = 200, description = "OK", body = ActivationLockBypass),
        (status = 404, description = "no such device, or no code held", body = ErrorBody),
        (status = 409, description = "legal_hold", body = ErrorBody),
        (status = 422, response = Unprocessable)
    )
)]
pub async fn activation_lock_bypass(
    State(ctx): State<Ctx>,
    p: Principal,
    Path(udid): Path<String>,
    Query(q): Query<BypassQuery>,
) -> Result<Response> {
    p.require(Permission::ManageDevices)?;
    let code = ctx.devices.reveal_activation_lock_bypass(&p.actor(), &udid, q.justification.as_deref()).await?;
    Ok(([(CACHE_CONTROL, "no-store")], Json(code)).into_response())
}

/// `POST /api/v1/devices/{udid}/return-to-service`.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct ReturnOne {
    /// A Wi-Fi profile of the library (`com.apple.wifi.managed`) the erased iPad joins to come back.
    #[serde(default)]
    wifi_profile_id: Option<Uuid>,
    /// push the device now (default true)
    #[serde(default)]
    push: Option<bool>,
}

/// `POST /api/v1/devices/return-to-service`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReturnMany {
    /// The devices (a trolley), at most 500.
    udids: Vec<String>,
    #[serde(default)]
    wifi_profile_id: Option<Uuid>,
    #[serde(default)]
    push: Option<bool>,
}

const RTS: &str = "Roles: admin, technician. EraseDevice with ReturnToService (iOS and iPadOS 17 and later): the iPad is erased and comes back enrolled by itself, through ADE when Apple School Manager lists it for this school, otherwise with a one-time enrolment profile bound to its serial number (valid 24 hours) carried in the command. Give `wifi_profile_id` (a Wi-Fi profile of the library) or it only comes back on Ethernet. All or nothing: 409 legal_hold if any device is on legal hold (`devices_on_hold` names them; audited), 422 `return_to_service_refused` with `refused: [{udid, reason}]` for devices that are unknown, not enrolled, Macs, below 17, or without a serial number. Each device's EraseDevice is a command of its own: follow it with GET /api/v1/commands/{uuid}.";

#[utoipa::path(
    post,
    path = "/devices/{udid}/return-to-service",
    tag = "devices",
    summary = "Erase an iPad so that it comes back enrolled (Return to Service)",
    description = RTS,
    params(("udid" = String, Path)),
    request_body = ReturnOne,
    responses(
        (status = 202, description = "queued", body = ReturnToService),
        (status = 409, description = "legal_hold", body = ErrorBody),
        (status = 422, response = Unprocessable)
    )
)]
pub async fn return_one(
    State(ctx): State<Ctx>,
    p: Principal,
    Path(udid): Path<String>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<ReturnToService>)> {
    p.require(Permission::ManageDevices)?;
    // The body may be left out: no Wi-Fi profile, pushed.
    let b: ReturnOne = if body.iter().all(u8::is_ascii_whitespace) { ReturnOne::default() } else { extract::parse_json(&body)? };
    let done = ctx.devices.return_to_service(&p.actor(), vec![udid], b.wifi_profile_id, b.push.unwrap_or(true)).await?;
    Ok((StatusCode::ACCEPTED, Json(done)))
}

#[utoipa::path(
    post,
    path = "/devices/return-to-service",
    tag = "devices",
    summary = "Return a trolley of iPads to service",
    description = RTS,
    request_body = ReturnMany,
    responses(
        (status = 202, description = "queued", body = ReturnToService),
        (status = 409, description = "legal_hold", body = ErrorBody),
        (status = 422, response = Unprocessable)
    )
)]
pub async fn return_many(
    State(ctx): State<Ctx>,
    p: Principal,
    extract::Json(b): extract::Json<ReturnMany>,
) -> Result<(StatusCode, Json<ReturnToService>)> {
    p.require(Permission::ManageDevices)?;
    let done = ctx.devices.return_to_service(&p.actor(), b.udids, b.wifi_profile_id, b.push.unwrap_or(true)).await?;
    Ok((StatusCode::ACCEPTED, Json(done)))
}
