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
use uuid::Uuid;

use super::extract::{self, Page, Query, uuid_param};
use crate::auth::{Permission, Principal};
use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::profiles::compliance::CSV_COLUMNS;
use crate::profiles::filevault::RevealedKey;
use crate::profiles::reconcile::DeviceProfiles;
use crate::profiles::timetable::{Drift, Schedule, Timetable};

pub async fn get_timetable(State(ctx): State<Ctx>, p: Principal) -> Result<Json<Timetable>> {
    p.require(Permission::ReadProfiles)?;
    Ok(Json(ctx.timetable_view().await?))
}

pub async fn put_timetable(State(ctx): State<Ctx>, p: Principal, extract::Json(body): extract::Json<Value>) -> Result<Json<Timetable>> {
    p.require(Permission::ManageProfiles)?;
    Ok(Json(ctx.put_timetable(&p.actor(), &body).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSchedule {
    profile_id: Uuid,
    group_id: Uuid,
    when: String,
}

pub async fn create_schedule(
    State(ctx): State<Ctx>,
    p: Principal,
    extract::Json(s): extract::Json<NewSchedule>,
) -> Result<(StatusCode, Json<Schedule>)> {
    p.require(Permission::ManageProfiles)?;
    Ok((StatusCode::CREATED, Json(ctx.create_schedule(&p.actor(), s.profile_id, s.group_id, &s.when).await?)))
}

pub async fn list_schedules(State(ctx): State<Ctx>, p: Principal) -> Result<Json<Page<Schedule>>> {
    p.require(Permission::ReadProfiles)?;
    Ok(Json(Page { items: ctx.list_schedule_views().await?, next_cursor: None }))
}

pub async fn delete_schedule(State(ctx): State<Ctx>, p: Principal, Path(id): Path<String>) -> Result<StatusCode> {
    p.require(Permission::ManageProfiles)?;
    ctx.delete_schedule(&p.actor(), uuid_param(&id, "schedule")?).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn drift(State(ctx): State<Ctx>, p: Principal) -> Result<Json<Drift>> {
    p.require(Permission::ReadProfiles)?;
    Ok(Json(ctx.schedule_drift().await?))
}

pub async fn device_profiles(State(ctx): State<Ctx>, p: Principal, Path(udid): Path<String>) -> Result<Json<DeviceProfiles>> {
    p.require(Permission::ReadDevices)?;
    Ok(Json(ctx.device_profiles_view(&udid).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevealQuery {
    justification: Option<String>,
}

/// `GET /api/v1/devices/{udid}/filevault-key?justification=...` (admin, dsl).
pub async fn filevault_key(
    State(ctx): State<Ctx>,
    p: Principal,
    Path(udid): Path<String>,
    Query(q): Query<RevealQuery>,
) -> Result<Response> {
    p.require(Permission::RevealSecrets)?;
    let key: RevealedKey = ctx.reveal_filevault_key(&p.actor(), &udid, q.justification.as_deref()).await?;
    Ok(([(CACHE_CONTROL, "no-store")], Json(key)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComplianceQuery {
    format: Option<String>,
}

/// `GET /api/v1/compliance` (`?format=csv`).
pub async fn compliance(State(ctx): State<Ctx>, p: Principal, Query(q): Query<ComplianceQuery>) -> Result<Response> {
    p.require(Permission::ReadDevices)?;
    let report = ctx.compliance_report().await?;
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
