//! Inventory (`/api/v1/devices`), enrolment tokens, and commands.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use utoipa::{IntoParams, ToSchema};

use super::created;
use super::extract::{self, Page, Query, page_limit, uuid_param};
use super::openapi::{CommandRequest, CommandUnprocessable, Unprocessable};
use super::schemas::{CommandStatusSchema, DeviceCommand, DeviceDetail, DeviceSchema, EnqueuedSchema};
use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::services::auth::{Permission, Principal};
use crate::services::commands::{CommandStatusView, Enqueued, TargetStatus, effective_status};
use crate::services::devices::Device;
use crate::services::devices::inventory::CSV_COLUMNS;
use crate::services::enrollment::{EnrollmentToken, NewEnrollmentToken};
use crate::store::DeviceFilter;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTokenRequest {
    label: String,
    #[schema(minimum = 1)]
    max_uses: Option<i64>,
    #[schema(default = 168)]
    expires_in_hours: Option<i64>,
    group: Option<String>,
}

#[utoipa::path(
    post,
    path = "/enrollment-tokens",
    tag = "enrolment",
    summary = "Create an enrolment token",
    description = "Roles: admin, technician.",
    request_body = NewTokenRequest,
    responses((status = 201, description = "OK", body = crate::services::enrollment::NewEnrollmentToken), (status = 422, response = Unprocessable))
)]
pub async fn create_enrollment_token(
    State(ctx): State<Ctx>,
    p: Principal,
    extract::Json(r): extract::Json<NewTokenRequest>,
) -> Result<(StatusCode, Json<NewEnrollmentToken>)> {
    p.require(Permission::ManageDevices)?;
    Ok(created(ctx.enrollment.create_enrollment_token(&p.actor(), &r.label, r.max_uses, r.expires_in_hours, r.group).await?))
}

#[utoipa::path(
    get,
    path = "/enrollment-tokens",
    tag = "enrolment",
    summary = "List enrolment tokens (without secrets)",
    description = "Roles: admin, technician.",
    responses((status = 200, description = "OK", body = Page<crate::services::enrollment::EnrollmentToken>))
)]
pub async fn list_enrollment_tokens(State(ctx): State<Ctx>, p: Principal) -> Result<Json<Page<EnrollmentToken>>> {
    p.require(Permission::ManageDevices)?;
    Ok(Json(Page { items: ctx.enrollment.list_enrollment_tokens().await?, next_cursor: None }))
}

#[utoipa::path(
    delete,
    path = "/enrollment-tokens/{id}",
    tag = "enrolment",
    summary = "Revoke an enrolment token",
    description = "Roles: admin, technician.",
    params(("id" = String, Path)),
    responses((status = 204, description = "OK"))
)]
pub async fn revoke_enrollment_token(State(ctx): State<Ctx>, p: Principal, Path(id): Path<String>) -> Result<StatusCode> {
    p.require(Permission::ManageDevices)?;
    ctx.enrollment.revoke_enrollment_token(&p.actor(), uuid_param(&id, "enrollment token")?).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeviceQuery {
    /// text: UDID, serial, name, model; matched literally (% and _ are not wildcards)
    q: Option<String>,
    /// the same as `q`
    text: Option<String>,
    /// iOS, iPadOS or macOS
    platform: Option<String>,
    /// true/false
    enrolled: Option<bool>,
    /// RFC 3339
    last_seen_before: Option<DateTime<Utc>>,
    /// RFC 3339
    last_seen_after: Option<DateTime<Utc>>,
    /// page size, 1-1000 (default 100); anything else is 422 naming `limit`
    #[param(minimum = 1, maximum = 1000, default = 100)]
    limit: Option<i64>,
    /// next_cursor from the previous page
    cursor: Option<String>,
    /// json (default) or csv
    format: Option<String>,
}

#[utoipa::path(
    get,
    path = "/devices",
    tag = "devices",
    summary = "The inventory",
    description = "Roles: admin, technician, dsl, headteacher, auditor. With format=csv: every matching device, one header row.",
    params(DeviceQuery),
    responses(
        (status = 200, description = "OK", content(
            (Page<DeviceSchema> = "application/json"),
            (String = "text/csv")
        )),
        (status = 422, response = Unprocessable)
    )
)]
pub async fn list_devices(State(ctx): State<Ctx>, p: Principal, Query(q): Query<DeviceQuery>) -> Result<Response> {
    p.require(Permission::ReadDevices)?;
    let csv = match q.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(other) => {
            return Err(Error::unprocessable("format", format!("expected json or csv, got {other:?}")));
        }
    };
    if let Some(pl) = &q.platform {
        if !["iOS", "iPadOS", "macOS"].contains(&pl.as_str()) {
            return Err(Error::unprocessable("platform", "expected iOS, iPadOS or macOS"));
        }
    }
    let mut filter = DeviceFilter {
        text: q.q.or(q.text).filter(|t| !t.trim().is_empty()),
        platform: q.platform,
        enrolled: q.enrolled,
        last_seen_before: q.last_seen_before,
        last_seen_after: q.last_seen_after,
        after_udid: q.cursor,
        limit: page_limit(q.limit)?,
    };
    if csv {
        // The whole inventory, in pages, for audits.
        filter.limit = 1000;
        let mut out = CSV_COLUMNS.join(",");
        out.push('\n');
        loop {
            let page = ctx.devices.list_devices(&filter).await?;
            let last = page.last().map(|d| d.udid.clone());
            for d in page {
                out.push_str(&Device::from(d).csv_row());
                out.push('\n');
            }
            match last {
                Some(u) => filter.after_udid = Some(u),
                None => break,
            }
        }
        return Ok((
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8"), (header::CONTENT_DISPOSITION, "attachment; filename=\"devices.csv\"")],
            out,
        )
            .into_response());
    }
    let rows = ctx.devices.list_devices(&filter).await?;
    let next_cursor = (rows.len() as i64 == filter.limit).then(|| rows.last().map(|d| d.udid.clone())).flatten();
    Ok(Json(Page { items: rows.into_iter().map(Device::from).collect(), next_cursor }).into_response())
}

/// `GET /api/v1/devices.csv`.
#[utoipa::path(
    get,
    path = "/devices.csv",
    tag = "devices",
    summary = "The inventory as CSV (one header row)",
    description = "Roles: admin, technician, dsl, headteacher, auditor.",
    params(DeviceQuery),
    responses((status = 200, description = "OK", content_type = "text/csv", body = String), (status = 422, response = Unprocessable))
)]
pub async fn devices_csv(state: State<Ctx>, p: Principal, Query(mut q): Query<DeviceQuery>) -> Result<Response> {
    q.format = Some("csv".into());
    list_devices(state, p, Query(q)).await
}

#[utoipa::path(
    get,
    path = "/devices/{udid}",
    tag = "devices",
    summary = "One device: the full record, pending count and the last result of each request type",
    description = "Roles: admin, technician, dsl, headteacher, auditor.",
    params(("udid" = String, Path)),
    responses((status = 200, description = "OK", body = DeviceDetail))
)]
pub async fn get_device(State(ctx): State<Ctx>, p: Principal, Path(udid): Path<String>) -> Result<Json<Value>> {
    p.require(Permission::ReadDevices)?;
    let d = ctx.devices.device(&udid).await?.ok_or_else(|| Error::not_found(format!("no device with UDID {udid}")))?;
    let now = ctx.now();
    let mut results = Map::new();
    for r in ctx.commands.latest_results(&udid).await? {
        results.insert(
            r.request_type.clone(),
            json!({
                "command_uuid": r.uuid,
                "status": effective_status(&r.target, now),
                "received_at": r.target.updated_at,
                "result": r.target.result_json.as_deref().and_then(|j| serde_json::from_str::<Value>(j).ok()),
            }),
        );
    }
    let pending = ctx.commands.pending_count(&udid, now).await?;
    let mut v = serde_json::to_value(Device::from(d)).map_err(Error::internal)?;
    v["last_results"] = Value::Object(results);
    v["pending_commands"] = json!(pending);
    v["setup"] = json!(ctx.devices.setup_progress(&udid).await?);
    Ok(Json(v))
}

/// `(request_type, Apple's fields, expires_at, push)`.
type CommandParts = (String, Map<String, Value>, Option<DateTime<Utc>>, bool);

/// `{"request_type": "...", ...Apple's fields, "expires_at"?, "push"?}`.
fn split_command(mut body: Map<String, Value>) -> Result<CommandParts> {
    let request_type = match body.remove("request_type") {
        Some(Value::String(s)) => s,
        Some(_) => {
            return Err(Error::unprocessable("request_type", "must be a string such as \"DeviceLock\""));
        }
        None => {
            return Err(Error::unprocessable("request_type", "missing, e.g. \"DeviceInformation\""));
        }
    };
    let expires_at = match body.remove("expires_at") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(
            DateTime::parse_from_rfc3339(&s)
                .map_err(|_| Error::unprocessable("expires_at", "expected an RFC 3339 time"))?
                .with_timezone(&Utc),
        ),
        Some(_) => {
            return Err(Error::unprocessable("expires_at", "expected an RFC 3339 time"));
        }
    };
    let push = match body.remove("push") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => b,
        Some(_) => return Err(Error::unprocessable("push", "true or false")),
    };
    Ok((request_type, body, expires_at, push))
}

#[utoipa::path(
    post,
    path = "/devices/{udid}/commands",
    tag = "commands",
    summary = "Queue a command for one device",
    description = "Roles: admin, technician. 409 legal_hold if a target is on legal hold and the command is one the hold forbids (EraseDevice, ClearPasscode, DisableLostMode, RemoveProfile) — checked first. ClearPasscode needs no fields: each device gets its own unlock token from TokenUpdate; a target that never sent one (not supervised) is refused before anything is queued: 422 `no_unlock_token`, with `udids` (up to 100) and `count` of the devices without one. A command that needs a supervised device (Apple's schema: e.g. RestartDevice, ShutDownDevice, Lost Mode, the Settings item DeviceName on iOS/iPadOS) is refused with 422 `needs_supervision` when a target is known not to be supervised.",
    params(("udid" = String, Path)),
    request_body = CommandRequest,
    responses(
        (status = 201, description = "OK", body = EnqueuedSchema),
        (status = 422, response = CommandUnprocessable),
        (status = 409, description = "legal_hold: a target is on legal hold", body = super::openapi::ErrorBody)
    )
)]
pub async fn device_command(
    State(ctx): State<Ctx>,
    p: Principal,
    Path(udid): Path<String>,
    extract::Json(body): extract::Json<Map<String, Value>>,
) -> Result<(StatusCode, Json<Enqueued>)> {
    p.require(Permission::ManageDevices)?;
    let (request_type, fields, expires_at, push) = split_command(body)?;
    Ok(created(ctx.commands.enqueue_command(&p.actor(), vec![udid], &request_type, &fields, expires_at, push).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkCommand {
    targets: Vec<String>,
    #[schema(value_type = CommandRequest)]
    command: Map<String, Value>,
    /// push the targets (default true; overrides the command's own `push`)
    #[serde(default)]
    push: Option<bool>,
}

#[utoipa::path(
    post,
    path = "/commands",
    tag = "commands",
    summary = "Queue one command for many devices",
    description = "Roles: admin, technician. 409 legal_hold if a target is on legal hold and the command is one the hold forbids (EraseDevice, ClearPasscode, DisableLostMode, RemoveProfile) — checked first. ClearPasscode needs no fields: each device gets its own unlock token from TokenUpdate; a target that never sent one (not supervised) is refused before anything is queued: 422 `no_unlock_token`, with `udids` (up to 100) and `count` of the devices without one. A command that needs a supervised device (Apple's schema: e.g. RestartDevice, ShutDownDevice, Lost Mode, the Settings item DeviceName on iOS/iPadOS) is refused with 422 `needs_supervision` when a target is known not to be supervised (the whole request, naming those targets).",
    request_body = BulkCommand,
    responses(
        (status = 201, description = "OK", body = EnqueuedSchema),
        (status = 422, response = CommandUnprocessable),
        (status = 409, description = "legal_hold: a target is on legal hold", body = super::openapi::ErrorBody)
    )
)]
pub async fn bulk_command(
    State(ctx): State<Ctx>,
    p: Principal,
    extract::Json(b): extract::Json<BulkCommand>,
) -> Result<(StatusCode, Json<Enqueued>)> {
    p.require(Permission::ManageDevices)?;
    let (request_type, fields, expires_at, push) = split_command(b.command)?;
    let push = b.push.unwrap_or(push);
    Ok(created(ctx.commands.enqueue_command(&p.actor(), b.targets, &request_type, &fields, expires_at, push).await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeviceCommandsQuery {
    /// page size, 1-1000 (default 100); anything else is 422 naming `limit`
    #[param(minimum = 1, maximum = 1000, default = 100)]
    limit: Option<i64>,
    /// next_cursor from the previous page
    cursor: Option<String>,
}

#[utoipa::path(
    get,
    path = "/devices/{udid}/commands",
    tag = "commands",
    summary = "The device's commands, newest first, with status and result",
    description = "Roles: admin, technician, dsl, headteacher, auditor.",
    params(("udid" = String, Path), DeviceCommandsQuery),
    responses((status = 200, description = "OK", body = Page<DeviceCommand>), (status = 422, response = Unprocessable))
)]
pub async fn device_commands(
    State(ctx): State<Ctx>,
    p: Principal,
    Path(udid): Path<String>,
    Query(q): Query<DeviceCommandsQuery>,
) -> Result<Json<Page<Value>>> {
    p.require(Permission::ReadDevices)?;
    if ctx.devices.device(&udid).await?.is_none() {
        return Err(Error::not_found(format!("no device with UDID {udid}")));
    }
    let before = q
        .cursor
        .as_deref()
        .map(|c| c.parse::<i64>())
        .transpose()
        .map_err(|_| Error::unprocessable("cursor", "not a cursor from this endpoint"))?;
    let limit = page_limit(q.limit)?;
    let rows = ctx.commands.device_commands(&udid, before, limit).await?;
    let next_cursor = (rows.len() as i64 == limit).then(|| rows.last().map(|r| r.target.command_seq.to_string())).flatten();
    let now = ctx.now();
    let items = rows
        .into_iter()
        .map(|r| {
            let mut v = serde_json::to_value(TargetStatus::from_record(r.target, now)).unwrap_or(Value::Null);
            v["command_uuid"] = json!(r.uuid);
            v["request_type"] = json!(r.request_type);
            v["created_by"] = json!(r.created_by);
            v["created_at"] = json!(r.created_at);
            v
        })
        .collect();
    Ok(Json(Page { items, next_cursor }))
}

#[utoipa::path(
    get,
    path = "/commands/{uuid}",
    tag = "commands",
    summary = "A command's status per device",
    description = "Roles: admin, technician, dsl, headteacher, auditor.",
    params(("uuid" = String, Path)),
    responses((status = 200, description = "OK", body = CommandStatusSchema))
)]
pub async fn get_command(State(ctx): State<Ctx>, p: Principal, Path(uuid): Path<String>) -> Result<Json<CommandStatusView>> {
    p.require(Permission::ReadDevices)?;
    Ok(Json(ctx.commands.command_status(&uuid).await?))
}

/// What cancelling did.
#[derive(serde::Serialize, ToSchema)]
pub struct Cancelled {
    command_uuid: String,
    /// How many targets it was cancelled for (those it had not been delivered to).
    cancelled: u64,
}

#[utoipa::path(
    delete,
    path = "/commands/{uuid}",
    tag = "commands",
    summary = "Cancel what has not been delivered",
    description = "Roles: admin, technician.",
    params(("uuid" = String, Path)),
    responses((status = 200, description = "OK", body = Cancelled))
)]
pub async fn cancel_command(State(ctx): State<Ctx>, p: Principal, Path(uuid): Path<String>) -> Result<Json<Cancelled>> {
    p.require(Permission::ManageDevices)?;
    let n = ctx.commands.cancel_command(&p.actor(), &uuid).await?;
    Ok(Json(Cancelled { command_uuid: uuid, cancelled: n }))
}
