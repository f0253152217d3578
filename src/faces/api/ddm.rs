//! Declarative Device Management, as the operator API shows it: a device's declarations, a
//! group's declarations, and OS updates by deadline with their report.
//!
//! Roles: reading takes `ReadDevices` (group declarations `ReadProfiles`); writing a group's
//! declarations `ManageProfiles`; creating and cancelling OS updates `ManageDevices` (admin and
//! technician for all three). The report shows which case holds a device only to safeguarding
//! roles.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;

use super::extract::{self, Query, uuid_param};
use super::openapi::{ErrorBody, Unprocessable};
use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::services::auth::{Permission, Principal};
use crate::services::ddm::DeviceDeclarations;
use crate::services::ddm::groups::{GroupDeclarations, PutGroupDeclarations};
use crate::services::ddm::os_updates::{CreateOsUpdate, OsUpdateReport, OsUpdateView, report_csv};

/// `GET /api/v1/devices/{udid}/declarations`.
#[utoipa::path(
    get,
    path = "/devices/{udid}/declarations",
    tag = "devices",
    summary = "The declarations a device should have, and what it last reported",
    description = "Roles: admin, technician, dsl, headteacher, auditor. Each declaration with its server token and the device's last state of it (active, valid, reasons in words; `reported_on_older_version` while the device has not caught up), and every status item's last value with the time it came. `requested_at`: when Lanyard turned DDM on (iOS and iPadOS 15, macOS 13 and later); `enabled_at`: when the device first answered. `conflicts`: declarations two of its groups disagree about (withheld until they agree); `withheld_os_updates`: its groups' OS updates it does not get because it is on legal hold.",
    params(("udid" = String, Path)),
    responses((status = 200, description = "OK", body = DeviceDeclarations), (status = 404, description = "no such device", body = ErrorBody))
)]
pub async fn device_declarations(State(ctx): State<Ctx>, p: Principal, Path(udid): Path<String>) -> Result<Json<DeviceDeclarations>> {
    p.require(Permission::ReadDevices)?;
    Ok(Json(ctx.ddm.device_declarations(&udid).await?))
}

#[utoipa::path(
    get,
    path = "/groups/{id}/declarations",
    tag = "groups",
    summary = "The declarations a group's devices get",
    description = "Roles: admin, technician, dsl, headteacher, auditor. The group's configurations, assets and activations, each with its server token; `conflicts`: declarations this group and another group of the same devices disagree about (withheld from those devices until they agree).",
    params(("id" = String, Path)),
    responses((status = 200, description = "OK", body = GroupDeclarations), (status = 404, description = "no such group", body = ErrorBody))
)]
pub async fn get_group_declarations(State(ctx): State<Ctx>, p: Principal, Path(id): Path<String>) -> Result<Json<GroupDeclarations>> {
    p.require(Permission::ReadProfiles)?;
    Ok(Json(ctx.ddm.group_declarations(uuid_param(&id, "group")?).await?))
}

#[utoipa::path(
    put,
    path = "/groups/{id}/declarations",
    tag = "groups",
    summary = "Set the declarations a group's devices get",
    description = "Roles: admin, technician. Replaces the group's set. Each declaration (`type`, `identifier`, `payload`) is checked against Apple's schema: a 422 names the declaration and key (`declarations[0].payload.MinimumLength`). Configurations no activation of the group names are activated for the group's devices by Lanyard (`lanyard.group.<id>`); an activation may name only this group's configurations and may carry a `Predicate` on the management properties `ownership` (pupil, staff, shared), `year_group` and `key_stage` (`@property(year_group) == 'Y6'`). Management declarations are Lanyard's own, and OS updates go through `POST /api/v1/os-updates`. Audited (`group.declarations.set`). The group's devices with DDM on whose set changed get a DeclarativeManagement command and a push (`resync`).",
    params(("id" = String, Path)),
    request_body = PutGroupDeclarations,
    responses((status = 200, description = "OK", body = GroupDeclarations), (status = 404, description = "no such group", body = ErrorBody), (status = 422, response = Unprocessable))
)]
pub async fn put_group_declarations(
    State(ctx): State<Ctx>,
    p: Principal,
    Path(id): Path<String>,
    extract::Json(body): extract::Json<PutGroupDeclarations>,
) -> Result<Json<GroupDeclarations>> {
    p.require(Permission::ManageProfiles)?;
    Ok(Json(ctx.ddm.put_group_declarations(&p.actor(), uuid_param(&id, "group")?, body).await?))
}

#[utoipa::path(
    post,
    path = "/os-updates",
    tag = "os-updates",
    summary = "Update a group's devices to an OS version by a deadline",
    description = "Roles: admin, technician. The group's devices get Apple's software-update enforcement declaration (iPadOS 17, macOS 14 and later). `deadline` is the school's local time (`YYYY-MM-DDTHH:MM`, no offset); a deadline during lessons is refused (422 `deadline_in_lessons`) with `suggested_deadline` outside them, unless `allow_during_lessons` is true; without one, Lanyard picks the end of lessons on the next school day (16:00 on the next weekday without a timetable). Devices on legal hold get no OS update. Audited (`os_update.create`).",
    request_body = CreateOsUpdate,
    responses((status = 201, description = "Created", body = OsUpdateView), (status = 422, response = Unprocessable))
)]
pub async fn create_os_update(
    State(ctx): State<Ctx>,
    p: Principal,
    extract::Json(body): extract::Json<CreateOsUpdate>,
) -> Result<Response> {
    p.require(Permission::ManageDevices)?;
    Ok((StatusCode::CREATED, Json(ctx.ddm.create_os_update(&p.actor(), body).await?)).into_response())
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct OsUpdateQuery {
    /// Include cancelled updates.
    #[serde(default)]
    include_cancelled: bool,
}

#[utoipa::path(
    get,
    path = "/os-updates",
    tag = "os-updates",
    summary = "OS updates by deadline",
    description = "Roles: admin, technician, dsl, headteacher, auditor. Newest first; cancelled ones with include_cancelled=true.",
    params(OsUpdateQuery),
    responses((status = 200, description = "OK", body = Vec<OsUpdateView>))
)]
pub async fn list_os_updates(State(ctx): State<Ctx>, p: Principal, Query(q): Query<OsUpdateQuery>) -> Result<Json<Vec<OsUpdateView>>> {
    p.require(Permission::ReadDevices)?;
    Ok(Json(ctx.ddm.list_os_updates(q.include_cancelled).await?))
}

#[utoipa::path(
    get,
    path = "/os-updates/{id}",
    tag = "os-updates",
    summary = "One OS update",
    description = "Roles: admin, technician, dsl, headteacher, auditor.",
    params(("id" = String, Path)),
    responses((status = 200, description = "OK", body = OsUpdateView), (status = 404, description = "no such update", body = ErrorBody))
)]
pub async fn get_os_update(State(ctx): State<Ctx>, p: Principal, Path(id): Path<String>) -> Result<Json<OsUpdateView>> {
    p.require(Permission::ReadDevices)?;
    Ok(Json(ctx.ddm.os_update(uuid_param(&id, "OS update")?).await?))
}

#[utoipa::path(
    delete,
    path = "/os-updates/{id}",
    tag = "os-updates",
    summary = "Cancel an OS update",
    description = "Roles: admin, technician. The declaration leaves the group's devices (a device already installing finishes). Kept, with who cancelled it. Audited (`os_update.cancel`).",
    params(("id" = String, Path)),
    responses((status = 200, description = "Cancelled", body = OsUpdateView), (status = 404, description = "no such update", body = ErrorBody), (status = 409, description = "already cancelled", body = ErrorBody))
)]
pub async fn cancel_os_update(State(ctx): State<Ctx>, p: Principal, Path(id): Path<String>) -> Result<Json<OsUpdateView>> {
    p.require(Permission::ManageDevices)?;
    Ok(Json(ctx.ddm.cancel_os_update(&p.actor(), uuid_param(&id, "OS update")?).await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ReportQuery {
    /// json (default) or csv
    format: Option<String>,
}

#[utoipa::path(
    get,
    path = "/os-updates/report",
    tag = "os-updates",
    summary = "Where each device stands with each OS update",
    description = "Roles: admin, technician, dsl, headteacher, auditor. Per live update and device of its group: `on_target`, `pending`, `downloading`, `installing`, `failed` (with Apple's reason), `overdue`, `not_ddm_capable` (too old an OS: the note says what it needs, and to replace it if it cannot) or `held` (on legal hold: no OS update; `case_id` only for dsl, headteacher and admin). With format=csv: one row per update and device.",
    params(ReportQuery),
    responses((status = 200, description = "OK", content((OsUpdateReport = "application/json"), (String = "text/csv"))), (status = 422, response = Unprocessable))
)]
pub async fn os_update_report(State(ctx): State<Ctx>, p: Principal, Query(q): Query<ReportQuery>) -> Result<Response> {
    p.require(Permission::ReadDevices)?;
    let csv = match q.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(other) => return Err(Error::unprocessable("format", format!("expected json or csv, got {other:?}"))),
    };
    let report = ctx.ddm.os_update_report(p.role.allows(Permission::Safeguarding)).await?;
    if csv {
        return Ok((
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8"), (header::CONTENT_DISPOSITION, "attachment; filename=\"os-updates.csv\"")],
            report_csv(&report),
        )
            .into_response());
    }
    Ok(Json(report).into_response())
}
