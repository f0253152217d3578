//! Device groups (`/api/v1/groups`): static and smart groups, members, assigned profiles.
//!
//! Roles: reading takes `ReadDevices`; creating, changing and deleting groups and their members
//! `ManageDevices`; assigning profiles `ManageProfiles` (admin and technician for both).

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::extract::{self, Page, Query, uuid_param};
use crate::auth::{Permission, Principal};
use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::profiles::groups::{Group, GroupKind, MembersAdded};
use crate::profiles::library::ChangeOutcome;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewGroup {
    name: String,
    kind: GroupKind,
    rules: Option<Value>,
}

pub async fn create_group(
    State(ctx): State<Ctx>,
    p: Principal,
    extract::Json(g): extract::Json<NewGroup>,
) -> Result<(StatusCode, Json<Group>)> {
    p.require(Permission::ManageDevices)?;
    Ok((StatusCode::CREATED, Json(ctx.create_group(&p.actor(), &g.name, g.kind, g.rules.as_ref()).await?)))
}

pub async fn list_groups(State(ctx): State<Ctx>, p: Principal) -> Result<Json<Page<Group>>> {
    p.require(Permission::ReadDevices)?;
    Ok(Json(Page { items: ctx.list_group_views().await?, next_cursor: None }))
}

pub async fn get_group(State(ctx): State<Ctx>, p: Principal, Path(id): Path<String>) -> Result<Json<Group>> {
    p.require(Permission::ReadDevices)?;
    let g = ctx.live_group(uuid_param(&id, "group")?).await?;
    Ok(Json(ctx.group_view(&g).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupPatch {
    name: Option<String>,
    rules: Option<Value>,
}

pub async fn update_group(
    State(ctx): State<Ctx>,
    p: Principal,
    Path(id): Path<String>,
    extract::Json(u): extract::Json<GroupPatch>,
) -> Result<Json<Group>> {
    p.require(Permission::ManageDevices)?;
    Ok(Json(ctx.update_group(&p.actor(), uuid_param(&id, "group")?, u.name.as_deref(), u.rules.as_ref()).await?))
}

pub async fn delete_group(State(ctx): State<Ctx>, p: Principal, Path(id): Path<String>) -> Result<StatusCode> {
    p.require(Permission::ManageDevices)?;
    ctx.delete_group(&p.actor(), uuid_param(&id, "group")?).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn list_members(State(ctx): State<Ctx>, p: Principal, Path(id): Path<String>) -> Result<Json<Value>> {
    p.require(Permission::ReadDevices)?;
    let g = ctx.live_group(uuid_param(&id, "group")?).await?;
    Ok(Json(json!({"group_id": g.id, "kind": g.kind, "members": ctx.store.group_members(g.id).await?})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Members {
    udids: Vec<String>,
}

pub async fn add_members(
    State(ctx): State<Ctx>,
    p: Principal,
    Path(id): Path<String>,
    extract::Json(m): extract::Json<Members>,
) -> Result<Json<MembersAdded>> {
    p.require(Permission::ManageDevices)?;
    Ok(Json(ctx.add_group_members(&p.actor(), uuid_param(&id, "group")?, m.udids).await?))
}

pub async fn remove_member(State(ctx): State<Ctx>, p: Principal, Path((id, udid)): Path<(String, String)>) -> Result<StatusCode> {
    p.require(Permission::ManageDevices)?;
    ctx.remove_group_member(&p.actor(), uuid_param(&id, "group")?, &udid).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssignRequest {
    profile_id: Uuid,
    reason: Option<String>,
    risk_assessment_ref: Option<String>,
}

/// 201 when assigned, 200 when it already was, 202 with a proposal for a filtering profile.
pub async fn assign_profile(
    State(ctx): State<Ctx>,
    p: Principal,
    Path(id): Path<String>,
    extract::Json(a): extract::Json<AssignRequest>,
) -> Result<Response> {
    p.require(Permission::ManageProfiles)?;
    let outcome = ctx.assign_group_profile(&p.actor(), uuid_param(&id, "group")?, a.profile_id, a.reason, a.risk_assessment_ref).await?;
    Ok(match outcome {
        ChangeOutcome::Done(done) if done.assigned => (StatusCode::CREATED, Json(done)).into_response(),
        ChangeOutcome::Done(done) => (StatusCode::OK, Json(done)).into_response(),
        ChangeOutcome::Proposed(change) => (StatusCode::ACCEPTED, Json(*change)).into_response(),
    })
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ChangeFields {
    reason: Option<String>,
    risk_assessment_ref: Option<String>,
}

/// 204 when taken off, 202 with a proposal for a filtering profile (`?reason=&risk_assessment_ref=`
/// or the same as a JSON body).
pub async fn unassign_profile(
    State(ctx): State<Ctx>,
    p: Principal,
    Path((id, pid)): Path<(String, String)>,
    Query(q): Query<ChangeFields>,
    req: Request,
) -> Result<Response> {
    p.require(Permission::ManageProfiles)?;
    let is_json = req
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/json"));
    let body = extract::read_body(req, &ctx).await?;
    let f = if is_json && !body.is_empty() {
        let b: ChangeFields = extract::parse_json(&body)?;
        ChangeFields { reason: b.reason.or(q.reason), risk_assessment_ref: b.risk_assessment_ref.or(q.risk_assessment_ref) }
    } else {
        q
    };
    let pid = Uuid::parse_str(&pid).map_err(|_| Error::not_found(format!("no such profile: {pid:?} is not an id")))?;
    Ok(match ctx.unassign_group_profile(&p.actor(), uuid_param(&id, "group")?, pid, f.reason, f.risk_assessment_ref).await? {
        ChangeOutcome::Done(()) => StatusCode::NO_CONTENT.into_response(),
        ChangeOutcome::Proposed(change) => (StatusCode::ACCEPTED, Json(*change)).into_response(),
    })
}
