//! Device groups (`/api/v1/groups`): static and smart groups, members, assigned profiles.
//!
//! Roles: reading takes `ReadDevices`; creating, changing and deleting groups and their members
//! `ManageDevices`; assigning profiles `ManageProfiles` (admin and technician for both).

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
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
use crate::services::profiles::groups::{Assigned, Group, GroupKind, MembersAdded};
use crate::services::profiles::library::ChangeOutcome;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewGroup {
    name: String,
    #[schema(inline)]
    kind: GroupKind,
    /// A smart group's rules (required for one): all given rules must hold; each may be one
    /// value or a list.
    #[schema(value_type = Option<crate::services::profiles::groups::RulesInput>)]
    rules: Option<Value>,
}

#[utoipa::path(
    post,
    path = "/groups",
    tag = "groups",
    summary = "Create a group",
    description = "Roles: admin, technician. kind static (members added by hand) or smart (rules required; members follow them). Memberships are written to the register's group_memberships history. 409 group_name_taken; 422 rules.<rule>.",
    request_body = NewGroup,
    responses((status = 201, description = "OK", body = Group), (status = 422, response = Unprocessable))
)]
pub async fn create_group(
    State(ctx): State<Ctx>,
    p: Principal,
    extract::Json(g): extract::Json<NewGroup>,
) -> Result<(StatusCode, Json<Group>)> {
    p.require(Permission::ManageDevices)?;
    Ok((StatusCode::CREATED, Json(ctx.profiles.create_group(&p.actor(), &g.name, g.kind, g.rules.as_ref()).await?)))
}

#[utoipa::path(
    get,
    path = "/groups",
    tag = "groups",
    summary = "Device groups",
    description = "Roles: admin, technician, dsl, headteacher, auditor.",
    responses((status = 200, description = "OK", body = Page<Group>))
)]
pub async fn list_groups(State(ctx): State<Ctx>, p: Principal) -> Result<Json<Page<Group>>> {
    p.require(Permission::ReadDevices)?;
    Ok(Json(Page { items: ctx.profiles.list_group_views().await?, next_cursor: None }))
}

#[utoipa::path(
    get,
    path = "/groups/{id}",
    tag = "groups",
    summary = "A group",
    description = "Roles: as the list.",
    params(("id" = String, Path)),
    responses((status = 200, description = "OK", body = Group))
)]
pub async fn get_group(State(ctx): State<Ctx>, p: Principal, Path(id): Path<String>) -> Result<Json<Group>> {
    p.require(Permission::ReadDevices)?;
    let g = ctx.profiles.live_group(uuid_param(&id, "group")?).await?;
    Ok(Json(ctx.profiles.group_view(&g).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupPatch {
    name: Option<String>,
    /// A smart group's new rules: each may be one value or a list.
    #[schema(value_type = Option<crate::services::profiles::groups::RulesInput>)]
    rules: Option<Value>,
}

#[utoipa::path(
    patch,
    path = "/groups/{id}",
    tag = "groups",
    summary = "Rename a group or change a smart group's rules",
    description = "Roles: admin, technician. Refused (409 legal_hold) if a device on legal hold would leave the group.",
    params(("id" = String, Path)),
    request_body = GroupPatch,
    responses((status = 200, description = "OK", body = Group), (status = 422, response = Unprocessable))
)]
pub async fn update_group(
    State(ctx): State<Ctx>,
    p: Principal,
    Path(id): Path<String>,
    extract::Json(u): extract::Json<GroupPatch>,
) -> Result<Json<Group>> {
    p.require(Permission::ManageDevices)?;
    Ok(Json(ctx.profiles.update_group(&p.actor(), uuid_param(&id, "group")?, u.name.as_deref(), u.rules.as_ref()).await?))
}

#[utoipa::path(
    delete,
    path = "/groups/{id}",
    tag = "groups",
    summary = "Delete a group",
    description = "Roles: admin, technician. Memberships end (history kept), assignments and schedules go, reconcile removes what no other group gives. 409 legal_hold if a member is on legal hold; 409 filtering_assigned while a filtering profile is assigned.",
    params(("id" = String, Path)),
    responses((status = 204, description = "Deleted"))
)]
pub async fn delete_group(State(ctx): State<Ctx>, p: Principal, Path(id): Path<String>) -> Result<StatusCode> {
    p.require(Permission::ManageDevices)?;
    ctx.profiles.delete_group(&p.actor(), uuid_param(&id, "group")?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A group's members.
#[derive(serde::Serialize, ToSchema)]
pub struct GroupMembers {
    group_id: Uuid,
    #[schema(schema_with = crate::schema::enums::group_kind)]
    kind: String,
    /// UDIDs
    members: Vec<String>,
}

#[utoipa::path(
    get,
    path = "/groups/{id}/members",
    tag = "groups",
    summary = "A group's members",
    description = "Roles: as the list.",
    params(("id" = String, Path)),
    responses((status = 200, description = "OK", body = GroupMembers))
)]
pub async fn list_members(State(ctx): State<Ctx>, p: Principal, Path(id): Path<String>) -> Result<Json<GroupMembers>> {
    p.require(Permission::ReadDevices)?;
    let g = ctx.profiles.live_group(uuid_param(&id, "group")?).await?;
    Ok(Json(GroupMembers { group_id: g.id, kind: g.kind.clone(), members: ctx.profiles.group_members(g.id).await? }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Members {
    udids: Vec<String>,
}

#[utoipa::path(
    post,
    path = "/groups/{id}/members",
    tag = "groups",
    summary = "Add devices to a static group",
    description = "Roles: admin, technician. 409 smart_group for a smart group; 422 udids[i] for an unknown device. Reconcile installs the group's profiles.",
    params(("id" = String, Path)),
    request_body = Members,
    responses((status = 200, description = "OK", body = MembersAdded), (status = 422, response = Unprocessable))
)]
pub async fn add_members(
    State(ctx): State<Ctx>,
    p: Principal,
    Path(id): Path<String>,
    extract::Json(m): extract::Json<Members>,
) -> Result<Json<MembersAdded>> {
    p.require(Permission::ManageDevices)?;
    Ok(Json(ctx.profiles.add_group_members(&p.actor(), uuid_param(&id, "group")?, m.udids).await?))
}

#[utoipa::path(
    delete,
    path = "/groups/{id}/members/{udid}",
    tag = "groups",
    summary = "Take a device out of a static group",
    description = "Roles: admin, technician. 409 legal_hold while the device is on legal hold (refusal audited and on the case's custody log). Reconcile removes the profiles no other group gives it.",
    params(("id" = String, Path), ("udid" = String, Path)),
    responses((status = 204, description = "Removed"))
)]
pub async fn remove_member(State(ctx): State<Ctx>, p: Principal, Path((id, udid)): Path<(String, String)>) -> Result<StatusCode> {
    p.require(Permission::ManageDevices)?;
    ctx.profiles.remove_group_member(&p.actor(), uuid_param(&id, "group")?, &udid).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignRequest {
    profile_id: Uuid,
    reason: Option<String>,
    risk_assessment_ref: Option<String>,
}

/// 201 when assigned, 200 when it already was, 202 with a proposal for a filtering profile.
#[utoipa::path(
    post,
    path = "/groups/{id}/profiles",
    tag = "groups",
    summary = "Assign a profile to a group",
    description = "Roles: admin, technician. 201 assigned, 200 if it already was. A filtering profile's assignment is a filtering change: reason and risk_assessment_ref required, 202 proposal. `warnings` names the members that are not supervised (or have not said) when the profile holds settings that need supervision.",
    params(("id" = String, Path)),
    request_body = AssignRequest,
    responses((status = 201, description = "OK", body = Assigned), (status = 200, description = "It was already assigned (same body, `assigned` false)", body = Assigned), (status = 202, description = "A filtering change, proposed for a second person's approval", body = crate::services::profiles::changes::FilteringChange), (status = 422, response = Unprocessable))
)]
pub async fn assign_profile(
    State(ctx): State<Ctx>,
    p: Principal,
    Path(id): Path<String>,
    extract::Json(a): extract::Json<AssignRequest>,
) -> Result<Response> {
    p.require(Permission::ManageProfiles)?;
    let outcome =
        ctx.profiles.assign_group_profile(&p.actor(), uuid_param(&id, "group")?, a.profile_id, a.reason, a.risk_assessment_ref).await?;
    Ok(match outcome {
        ChangeOutcome::Done(done) if done.assigned => (StatusCode::CREATED, Json(done)).into_response(),
        ChangeOutcome::Done(done) => (StatusCode::OK, Json(done)).into_response(),
        ChangeOutcome::Proposed(change) => (StatusCode::ACCEPTED, Json(*change)).into_response(),
    })
}

#[derive(Deserialize, Default, IntoParams, ToSchema)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ChangeFields {
    /// filtering change: why
    reason: Option<String>,
    /// filtering change: the risk assessment
    risk_assessment_ref: Option<String>,
}

/// 204 when taken off, 202 with a proposal for a filtering profile (`?reason=&risk_assessment_ref=`
/// or the same as a JSON body).
#[utoipa::path(
    delete,
    path = "/groups/{id}/profiles/{pid}",
    tag = "groups",
    summary = "Take a profile off a group",
    description = "Roles: admin, technician. Reconcile removes it from members no other group gives it to (except devices on legal hold). A filtering profile: a filtering change (reason, risk_assessment_ref as query or JSON; 202).",
    params(("id" = String, Path), ("pid" = Uuid, Path), ChangeFields),
    request_body(content = Option<ChangeFields>, description = "optional: reason and risk_assessment_ref as JSON instead of query parameters"),
    responses((status = 204, description = "Taken off"), (status = 202, description = "A filtering change, proposed for a second person's approval", body = crate::services::profiles::changes::FilteringChange))
)]
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
    Ok(match ctx.profiles.unassign_group_profile(&p.actor(), uuid_param(&id, "group")?, pid, f.reason, f.risk_assessment_ref).await? {
        ChangeOutcome::Done(()) => StatusCode::NO_CONTENT.into_response(),
        ChangeOutcome::Proposed(change) => (StatusCode::ACCEPTED, Json(*change)).into_response(),
    })
}
