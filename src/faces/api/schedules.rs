//! The timetable, lesson-time schedules and their drift; a device's profiles; FileVault keys;
//! the compliance report.
//!
//! Roles: the timetable and schedules are read with `ReadProfiles` and changed with
//! `ManageProfiles`; a device's profiles and the compliance report need `ReadDevices`; a
//! FileVault key needs `RevealSecrets` (admin, dsl) and a justification.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::http::header::{CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::extract::{self, Page, Query, uuid_param};
use super::openapi::Unprocessable;
use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::services::auth::{Permission, Principal};
use crate::services::profiles::compliance::{CSV_COLUMNS, ComplianceReport};
use crate::services::profiles::filevault::RevealedKey;
use crate::services::profiles::reconcile::DeviceProfiles;
use crate::services::profiles::timetable::{Drift, Schedule, Timetable};

#[utoipa::path(
    get,
    path = "/timetable",
    tag = "schedules",
    summary = "The timetable",
    description = "Roles: every role.",
    responses((status = 200, description = "OK", body = Timetable))
)]
pub async fn get_timetable(State(ctx): State<Ctx>, p: Principal) -> Result<Json<Timetable>> {
    p.require(Permission::ReadProfiles)?;
    Ok(Json(ctx.profiles.timetable_view().await?))
}

#[utoipa::path(
    put,
    path = "/timetable",
    tag = "schedules",
    summary = "Replace the timetable",
    description = "Roles: admin, technician. {periods:[{name, weekday, start, end}], terms:[{start, end}], timezone?: Europe/London (default) or UTC}. Lessons are on inside a period on a term day (no terms: every week). 422 names the field (periods[2].start).",
    request_body = Timetable,
    responses((status = 200, description = "OK", body = Timetable), (status = 422, response = Unprocessable))
)]
pub async fn put_timetable(State(ctx): State<Ctx>, p: Principal, extract::Json(body): extract::Json<Value>) -> Result<Json<Timetable>> {
    p.require(Permission::ManageProfiles)?;
    Ok(Json(ctx.profiles.put_timetable(&p.actor(), &body).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSchedule {
    profile_id: Uuid,
    group_id: Uuid,
    #[schema(schema_with = crate::schema::enums::schedule_when)]
    when: String,
}

#[utoipa::path(
    post,
    path = "/schedules",
    tag = "schedules",
    summary = "Apply a profile to a group during lessons",
    description = "Roles: admin, technician. when: lessons. Installed at the start and removed at the end of each window; a removal not confirmed leaves the restriction on. Filtering profiles cannot be scheduled (422). 409 schedule_exists.",
    request_body = NewSchedule,
    responses((status = 201, description = "OK", body = Schedule), (status = 422, response = Unprocessable))
)]
pub async fn create_schedule(
    State(ctx): State<Ctx>,
    p: Principal,
    extract::Json(s): extract::Json<NewSchedule>,
) -> Result<(StatusCode, Json<Schedule>)> {
    p.require(Permission::ManageProfiles)?;
    Ok((StatusCode::CREATED, Json(ctx.profiles.create_schedule(&p.actor(), s.profile_id, s.group_id, &s.when).await?)))
}

#[utoipa::path(
    get,
    path = "/schedules",
    tag = "schedules",
    summary = "Lesson-time schedules",
    description = "Roles: every role.",
    responses((status = 200, description = "OK", body = Page<Schedule>))
)]
pub async fn list_schedules(State(ctx): State<Ctx>, p: Principal) -> Result<Json<Page<Schedule>>> {
    p.require(Permission::ReadProfiles)?;
    Ok(Json(Page { items: ctx.profiles.list_schedule_views().await?, next_cursor: None }))
}

#[utoipa::path(
    delete,
    path = "/schedules/{id}",
    tag = "schedules",
    summary = "Delete a schedule",
    description = "Roles: admin, technician.",
    params(("id" = String, Path)),
    responses((status = 204, description = "Deleted"))
)]
pub async fn delete_schedule(State(ctx): State<Ctx>, p: Principal, Path(id): Path<String>) -> Result<StatusCode> {
    p.require(Permission::ManageProfiles)?;
    ctx.profiles.delete_schedule(&p.actor(), uuid_param(&id, "schedule")?).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    get,
    path = "/schedules/drift",
    tag = "schedules",
    summary = "Devices whose state differs from the timetable's intent",
    description = "Roles: every role. Each with what the timetable wants, what the device has, a pending command, the last refusal, since when and for how long.",
    responses((status = 200, description = "OK", body = Drift))
)]
pub async fn drift(State(ctx): State<Ctx>, p: Principal) -> Result<Json<Drift>> {
    p.require(Permission::ReadProfiles)?;
    Ok(Json(ctx.profiles.schedule_drift().await?))
}

#[utoipa::path(
    get,
    path = "/devices/{udid}/profiles",
    tag = "devices",
    summary = "A device's profiles: intended vs installed vs pending",
    description = "Roles: admin, technician, dsl, headteacher, auditor. Installed includes profiles Lanyard did not install (managed_by_lanyard false), which it never touches.",
    params(("udid" = String, Path)),
    responses((status = 200, description = "OK", body = DeviceProfiles))
)]
pub async fn device_profiles(State(ctx): State<Ctx>, p: Principal, Path(udid): Path<String>) -> Result<Json<DeviceProfiles>> {
    p.require(Permission::ReadDevices)?;
    Ok(Json(ctx.profiles.device_profiles_view(&udid).await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RevealQuery {
    /// why the key is needed (required: 10+ characters)
    #[param(required = true)]
    justification: Option<String>,
}

/// `GET /api/v1/devices/{udid}/filevault-key?justification=...` (admin, dsl).
#[utoipa::path(
    get,
    path = "/devices/{udid}/filevault-key",
    tag = "devices",
    summary = "Reveal a Mac's escrowed FileVault recovery key",
    description = "Roles: admin, dsl. justification required (10+ characters; 422 without); audited with it, and on the custody log of a case holding the device. 404 if none escrowed.",
    params(("udid" = String, Path), RevealQuery),
    responses((status = 200, description = "OK", body = RevealedKey), (status = 422, response = Unprocessable))
)]
pub async fn filevault_key(
    State(ctx): State<Ctx>,
    p: Principal,
    Path(udid): Path<String>,
    Query(q): Query<RevealQuery>,
) -> Result<Response> {
    p.require(Permission::RevealSecrets)?;
    let key: RevealedKey = ctx.profiles.reveal_filevault_key(&p.actor(), &udid, q.justification.as_deref()).await?;
    Ok(([(CACHE_CONTROL, "no-store")], Json(key)).into_response())
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ComplianceQuery {
    /// json (default) or csv
    format: Option<String>,
}

/// `GET /api/v1/compliance` (`?format=csv`).
#[utoipa::path(
    get,
    path = "/compliance",
    tag = "devices",
    summary = "Compliance per device",
    description = "Roles: admin, technician, dsl, headteacher, auditor. Encrypted (FileVault / data protection with a passcode), passcode compliant, required profiles installed, recovery key escrowed (Macs), last seen; summary counts. ?format=csv: one row per enrolled device (x-non-compliant header gives the count).",
    params(ComplianceQuery),
    responses((status = 200, description = "OK", content((ComplianceReport = "application/json"), (String = "text/csv")), headers(("x-non-compliant" = u64, description = "with ?format=csv: how many devices are not compliant"))), (status = 422, response = Unprocessable))
)]
pub async fn compliance(State(ctx): State<Ctx>, p: Principal, Query(q): Query<ComplianceQuery>) -> Result<Response> {
    p.require(Permission::ReadDevices)?;
    let report = ctx.profiles.compliance_report().await?;
    match q.format.as_deref() {
        None | Some("json") => Ok(Json(report).into_response()),
        Some("csv") => {
            let mut out = CSV_COLUMNS.join(",");
            out.push('\n');
            for r in &report.items {
                out.push_str(&r.csv_row());
                out.push('\n');
            }
            Ok((
                [
                    (CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
                    (CONTENT_DISPOSITION, "attachment; filename=\"compliance.csv\"".to_owned()),
                    (axum::http::HeaderName::from_static("x-non-compliant"), report.summary.non_compliant.to_string()),
                ],
                out,
            )
                .into_response())
        }
        Some(other) => Err(Error::unprocessable("format", format!("expected json or csv, got {other:?}"))),
    }
}
