//! Profiles (`/api/v1/profiles`) and filtering change control (`/api/v1/filtering/changes`).
//!
//! Roles: every role but none reads profiles (`ReadProfiles`); admin and technician upload,
//! change and delete (`ManageProfiles`). Filtering changes are read by the roles that read the
//! filtering history and by those who propose them; approved or rejected by admin, dsl or
//! headteacher (`ApproveSecondPerson`), with their own login.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::extract::{self, Page, Query, page_limit, uuid_param};
use super::openapi::{Binary, Unprocessable};
use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::services::auth::{Permission, Principal};
use crate::services::profiles::changes::{CSV_COLUMNS, FilteringChange};
use crate::services::profiles::library::{ChangeOutcome, Profile, ProfileDetail, ProfileSource};
use crate::services::profiles::reconcile::ProfileStatus;

/// `?name=&reason=&risk_assessment_ref=` on uploads (the JSON body may carry them instead).
#[derive(Deserialize, Default, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct UploadQuery {
    /// the profile's name (on a new version: must match the profile's name if given)
    name: Option<String>,
    /// filtering change: why
    reason: Option<String>,
    /// filtering change: the risk assessment
    risk_assessment_ref: Option<String>,
}

/// A profile as JSON: `{name, mobileconfig_base64}`, or `{name, display_name, description?,
/// payloads: [{type, ...Apple's keys}]}` to build one.
// `read_upload` reads it, field by field.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ProfileUpload {
    name: Option<String>,
    /// the .mobileconfig (XML, binary or CMS-signed), base64
    mobileconfig_base64: Option<String>,
    /// with payloads: build the profile from JSON
    display_name: Option<String>,
    description: Option<String>,
    /// `{"type": PayloadType, ...Apple's keys}`
    payloads: Option<Vec<Map<String, Value>>>,
    /// required for a filtering change
    reason: Option<String>,
    /// required for a filtering change
    risk_assessment_ref: Option<String>,
}

/// An upload, however it came.
struct Upload {
    name: Option<String>,
    source: ProfileSource,
    reason: Option<String>,
    risk_assessment_ref: Option<String>,
}

fn content_type(headers: &HeaderMap) -> String {
    headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").split(';').next().unwrap_or("").trim().to_ascii_lowercase()
}

fn take_string(obj: &mut Map<String, Value>, key: &str) -> Result<Option<String>> {
    match obj.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(Error::unprocessable(key, "must be a string")),
    }
}

/// Read an upload: a raw `.mobileconfig` (`application/x-apple-aspen-config`,
/// `application/octet-stream`, or XML), or JSON `{"name", "mobileconfig_base64"}`, or JSON
/// `{"name", "display_name", "payloads": [...]}` to build one.
async fn read_upload(req: Request, state: &Ctx, q: UploadQuery) -> Result<Upload> {
    let ct = content_type(req.headers());
    let body: Bytes = extract::read_body(req, state).await?;
    let raw_types =
        ["application/x-apple-aspen-config", "application/octet-stream", "application/xml", "text/xml", "application/pkcs7-mime"];
    if raw_types.contains(&ct.as_str()) {
        return Ok(Upload {
            name: q.name,
            source: ProfileSource::Bytes(body.to_vec()),
            reason: q.reason,
            risk_assessment_ref: q.risk_assessment_ref,
        });
    }
    if ct != "application/json" && !ct.ends_with("+json") {
        return Err(Error::UnsupportedMediaType(
            "send the .mobileconfig as application/x-apple-aspen-config (or application/octet-stream), or JSON".into(),
        ));
    }
    let mut obj: Map<String, Value> = extract::parse_json(&body)?;
    let reason = take_string(&mut obj, "reason")?.or(q.reason);
    let risk = take_string(&mut obj, "risk_assessment_ref")?.or(q.risk_assessment_ref);
    if let Some(b64) = take_string(&mut obj, "mobileconfig_base64")? {
        let name = take_string(&mut obj, "name")?.or(q.name);
        if let Some(k) = obj.keys().next() {
            return Err(Error::unprocessable(k.clone(), "unknown field (expected name, mobileconfig_base64, reason, risk_assessment_ref)"));
        }
        let bytes = BASE64
            .decode(b64.split_whitespace().collect::<String>())
            .map_err(|e| Error::unprocessable("mobileconfig_base64", format!("must be standard base64: {e}")))?;
        return Ok(Upload { name, source: ProfileSource::Bytes(bytes), reason, risk_assessment_ref: risk });
    }
    if obj.contains_key("payloads") {
        let name = match obj.get("name") {
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(Error::unprocessable("name", "must be a string")),
            None => {
                let n = q.name.clone();
                if let Some(n) = &n {
                    obj.insert("name".into(), Value::String(n.clone()));
                }
                n
            }
        };
        return Ok(Upload { name, source: ProfileSource::Spec(Value::Object(obj)), reason, risk_assessment_ref: risk });
    }
    Err(Error::unprocessable(
        "mobileconfig_base64",
        "send {\"name\", \"mobileconfig_base64\"}, or a profile specification with \"payloads\"",
    ))
}

#[utoipa::path(
    post,
    path = "/profiles",
    tag = "profiles",
    summary = "Upload or build a profile",
    description = "Roles: admin, technician. The .mobileconfig as the body (application/x-apple-aspen-config or application/octet-stream; XML, binary or CMS-signed, verified and unwrapped) with ?name=, or JSON {name, mobileconfig_base64}, or JSON {name, display_name, description?, payloads:[{type, ...Apple's keys}]} to build one. The structure is checked (PayloadType, PayloadUUID, PayloadIdentifier, PayloadVersion, unique UUIDs and identifiers, 1 MiB): 422 naming the payload and key. 409 profile_name_taken, identifier_taken. Version 1, assigned to no group.",
    params(UploadQuery),
    request_body(content((Binary = "application/x-apple-aspen-config"), (Binary = "application/octet-stream"), (ProfileUpload = "application/json"))),
    responses((status = 201, description = "OK", body = Profile), (status = 422, response = Unprocessable))
)]
pub async fn create_profile(
    State(ctx): State<Ctx>,
    p: Principal,
    Query(q): Query<UploadQuery>,
    req: Request,
) -> Result<(StatusCode, Json<Profile>)> {
    p.require(Permission::ManageProfiles)?;
    let u = read_upload(req, &ctx, q).await?;
    let name = u.name.ok_or_else(|| Error::unprocessable("name", "required: ?name=N or a \"name\" field"))?;
    Ok((StatusCode::CREATED, Json(ctx.profiles.create_profile(&p.actor(), &name, u.source).await?)))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// exact name
    name: Option<String>,
}

#[utoipa::path(
    get,
    path = "/profiles",
    tag = "profiles",
    summary = "The profile library",
    description = "Roles: every role. ?name= finds one profile by name (baseline profiles carry their file stem).",
    params(ListQuery),
    responses((status = 200, description = "OK", body = Page<Profile>))
)]
pub async fn list_profiles(State(ctx): State<Ctx>, p: Principal, Query(q): Query<ListQuery>) -> Result<Json<Page<Profile>>> {
    p.require(Permission::ReadProfiles)?;
    Ok(Json(Page { items: ctx.profiles.list_profile_views(q.name.as_deref()).await?, next_cursor: None }))
}

#[utoipa::path(
    get,
    path = "/profiles/{id}",
    tag = "profiles",
    summary = "A profile, its versions and where it is used",
    description = "Roles: every role. Deleted profiles stay readable (deleted_at).",
    params(("id" = String, Path)),
    responses((status = 200, description = "OK", body = ProfileDetail))
)]
pub async fn get_profile(State(ctx): State<Ctx>, p: Principal, Path(id): Path<String>) -> Result<Json<ProfileDetail>> {
    p.require(Permission::ReadProfiles)?;
    Ok(Json(ctx.profiles.profile_detail(uuid_param(&id, "profile")?).await?))
}

/// 202 with the proposal: `{"change_id", "state": "proposed", ...}`.
fn proposed(change: FilteringChange) -> Response {
    (StatusCode::ACCEPTED, Json(change)).into_response()
}

#[utoipa::path(
    put,
    path = "/profiles/{id}",
    tag = "profiles",
    summary = "Make a new version",
    description = "Roles: admin, technician. Same bodies as POST. For a filtering profile (web content filter, proxy or DNS payload, before or after) reason and risk_assessment_ref are required (JSON fields or query parameters; 422 without) and the answer is 202 {change_id, state: proposed}: it takes effect when a second person approves. 409 no_change for identical content. Reconcile sends the new version to the devices that have the profile.",
    params(("id" = String, Path), UploadQuery),
    request_body(content((Binary = "application/x-apple-aspen-config"), (Binary = "application/octet-stream"), (ProfileUpload = "application/json"))),
    responses((status = 200, description = "OK", body = Profile), (status = 202, description = "A filtering change, proposed for a second person's approval", body = FilteringChange), (status = 422, response = Unprocessable))
)]
pub async fn update_profile(
    State(ctx): State<Ctx>,
    p: Principal,
    Path(id): Path<String>,
    Query(q): Query<UploadQuery>,
    req: Request,
) -> Result<Response> {
    p.require(Permission::ManageProfiles)?;
    let id = uuid_param(&id, "profile")?;
    let u = read_upload(req, &ctx, q).await?;
    let current = ctx.profiles.live_profile(id).await?;
    if let (Some(n), ProfileSource::Bytes(_)) = (&u.name, &u.source)
        && n.trim() != current.name
    {
        return Err(Error::unprocessable("name", "a profile keeps its name: upload under a new name to make another profile"));
    }
    Ok(match ctx.profiles.update_profile(&p.actor(), id, u.source, u.reason, u.risk_assessment_ref).await? {
        ChangeOutcome::Done(profile) => Json(profile).into_response(),
        ChangeOutcome::Proposed(change) => proposed(*change),
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

/// `reason`/`risk_assessment_ref` from the query, or from a JSON body if one is sent.
async fn change_fields(req: Request, state: &Ctx, q: ChangeFields) -> Result<ChangeFields> {
    let is_json = content_type(req.headers()) == "application/json";
    let body = extract::read_body(req, state).await?;
    if is_json && !body.is_empty() {
        let b: ChangeFields = extract::parse_json(&body)?;
        return Ok(ChangeFields { reason: b.reason.or(q.reason), risk_assessment_ref: b.risk_assessment_ref.or(q.risk_assessment_ref) });
    }
    Ok(q)
}

#[utoipa::path(
    delete,
    path = "/profiles/{id}",
    tag = "profiles",
    summary = "Delete a profile",
    description = "Roles: admin, technician. It leaves every group and schedule and reconcile removes it from devices (not from devices on legal hold); versions stay readable. A filtering profile's deletion is a filtering change (reason, risk_assessment_ref; 202).",
    params(("id" = String, Path), ChangeFields),
    request_body(content = Option<ChangeFields>, description = "optional: reason and risk_assessment_ref as JSON instead of query parameters"),
    responses((status = 204, description = "Deleted"), (status = 202, description = "A filtering change, proposed for a second person's approval", body = FilteringChange))
)]
pub async fn delete_profile(
    State(ctx): State<Ctx>,
    p: Principal,
    Path(id): Path<String>,
    Query(q): Query<ChangeFields>,
    req: Request,
) -> Result<Response> {
    p.require(Permission::ManageProfiles)?;
    let id = uuid_param(&id, "profile")?;
    let f = change_fields(req, &ctx, q).await?;
    Ok(match ctx.profiles.delete_profile(&p.actor(), id, f.reason, f.risk_assessment_ref).await? {
        ChangeOutcome::Done(()) => StatusCode::NO_CONTENT.into_response(),
        ChangeOutcome::Proposed(change) => proposed(*change),
    })
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct VersionQuery {
    /// a version number (default: current)
    version: Option<i64>,
}

/// The stored XML of the current (or a given) version, as a technician opens it in Apple
/// Configurator. Devices get it signed, with the escrow certificate filled in.
#[utoipa::path(
    get,
    path = "/profiles/{id}/mobileconfig",
    tag = "profiles",
    summary = "Download a version as .mobileconfig",
    description = "Roles: every role. The stored XML (unsigned; devices get it signed, with the escrow certificate filled in).",
    params(("id" = String, Path), VersionQuery),
    responses((status = 200, description = "The profile", content_type = "application/x-apple-aspen-config", body = Binary))
)]
pub async fn download_profile(
    State(ctx): State<Ctx>,
    p: Principal,
    Path(id): Path<String>,
    Query(q): Query<VersionQuery>,
) -> Result<Response> {
    p.require(Permission::ReadProfiles)?;
    let (profile, v) = ctx.profiles.profile_xml(uuid_param(&id, "profile")?, q.version).await?;
    let disposition = format!("attachment; filename=\"{}-v{}.mobileconfig\"", profile.name, v.version);
    let mut resp = (StatusCode::OK, v.xml).into_response();
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/x-apple-aspen-config"));
    if let Ok(h) = HeaderValue::from_str(&disposition) {
        resp.headers_mut().insert(CONTENT_DISPOSITION, h);
    }
    Ok(resp)
}

#[utoipa::path(
    get,
    path = "/profiles/{id}/status",
    tag = "profiles",
    summary = "Per-device state of a profile",
    description = "Roles: every role. Devices it is intended for, or that Lanyard installed it on.",
    params(("id" = String, Path)),
    responses((status = 200, description = "OK", body = ProfileStatus))
)]
pub async fn profile_status(State(ctx): State<Ctx>, p: Principal, Path(id): Path<String>) -> Result<Json<ProfileStatus>> {
    p.require(Permission::ReadProfiles)?;
    Ok(Json(ctx.profiles.profile_status(uuid_param(&id, "profile")?).await?))
}

// ---- filtering change control ----

/// Who may read filtering changes (the console's profiles page uses the same rule).
pub fn require_filtering_reader(p: &Principal) -> Result<()> {
    if p.role.allows(Permission::ReadFilteringHistory) || p.role.allows(Permission::ManageProfiles) {
        Ok(())
    } else {
        p.require(Permission::ReadFilteringHistory)
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ChangesQuery {
    /// proposed, approved, rejected, deployed
    state: Option<String>,
    /// one profile
    profile_id: Option<Uuid>,
    /// json (default) or csv
    format: Option<String>,
    /// page size, 1-1000 (default 100); anything else is 422 naming `limit`
    #[param(minimum = 1, maximum = 1000, default = 100)]
    limit: Option<i64>,
    /// next_cursor from the previous page
    cursor: Option<String>,
}

fn parse_cursor(c: &str) -> Result<(DateTime<Utc>, Uuid)> {
    let bad = || Error::unprocessable("cursor", "not a cursor from this endpoint");
    let (at, id) = c.split_once('_').ok_or_else(bad)?;
    let at = DateTime::parse_from_rfc3339(at).map_err(|_| bad())?.with_timezone(&Utc);
    Ok((at, Uuid::parse_str(id).map_err(|_| bad())?))
}

/// `GET /api/v1/filtering/changes` (`?format=csv`): the log governors ask for, newest first.
#[utoipa::path(
    get,
    path = "/filtering/changes",
    tag = "filtering",
    summary = "The filtering change log",
    description = "Roles: admin, dsl, headteacher, auditor, technician. Newest first; every state; the diff in words. ?format=csv: columns id, proposed_at, profile, kind, group, state, proposed_by, reason, risk_assessment_ref, decided_by, decided_at, justification, deployed_at, deployed_version, diff.",
    params(ChangesQuery),
    responses((status = 200, description = "OK", content((Page<FilteringChange> = "application/json"), (String = "text/csv"))), (status = 422, response = Unprocessable))
)]
pub async fn list_changes(State(ctx): State<Ctx>, p: Principal, Query(q): Query<ChangesQuery>) -> Result<Response> {
    require_filtering_reader(&p)?;
    let csv = match q.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(other) => return Err(Error::unprocessable("format", format!("expected json or csv, got {other:?}"))),
    };
    let limit = page_limit(q.limit)?;
    let mut before = q.cursor.as_deref().map(parse_cursor).transpose()?;
    if csv {
        let mut out = CSV_COLUMNS.join(",");
        out.push('\n');
        loop {
            let page = ctx.profiles.list_filtering_changes(q.state.as_deref(), q.profile_id, before, 1000).await?;
            for c in &page {
                out.push_str(&c.csv_row());
                out.push('\n');
            }
            match page.last() {
                Some(c) if page.len() == 1000 => before = Some((c.proposed_at, c.id)),
                _ => break,
            }
        }
        return Ok((
            [(CONTENT_TYPE, "text/csv; charset=utf-8"), (CONTENT_DISPOSITION, "attachment; filename=\"filtering-changes.csv\"")],
            out,
        )
            .into_response());
    }
    let items = ctx.profiles.list_filtering_changes(q.state.as_deref(), q.profile_id, before, limit).await?;
    let next_cursor =
        (items.len() as i64 == limit).then(|| items.last().map(|c| format!("{}_{}", c.proposed_at.to_rfc3339(), c.id))).flatten();
    Ok(Json(Page { items, next_cursor }).into_response())
}

#[utoipa::path(
    get,
    path = "/filtering/changes/{id}",
    tag = "filtering",
    summary = "One filtering change",
    description = "Roles: as the log.",
    params(("id" = String, Path)),
    responses((status = 200, description = "OK", body = FilteringChange))
)]
pub async fn get_change(State(ctx): State<Ctx>, p: Principal, Path(id): Path<String>) -> Result<Json<FilteringChange>> {
    require_filtering_reader(&p)?;
    Ok(Json(ctx.profiles.filtering_change_view(uuid_param(&id, "filtering change")?).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    /// required
    justification: Option<String>,
}

/// The second person must be a person: an operator's own login, not an API token. The console
/// checks its decisions with this too.
pub fn require_second_person(p: &Principal) -> Result<()> {
    p.require(Permission::ApproveSecondPerson)?;
    if p.operator_id().is_none() {
        return Err(Error::Forbidden("a filtering change is decided by a person: log in as an operator, not with an API token".into()));
    }
    Ok(())
}

#[utoipa::path(
    post,
    path = "/filtering/changes/{id}/approve",
    tag = "filtering",
    summary = "Approve (and deploy) a filtering change",
    description = "Roles: admin, dsl, headteacher, logged in as themselves (not an API token). 409 second_person_required for the proposer; 422 without a justification; 409 not_proposed once decided; 409 stale_change if the profile changed since it was proposed. Deploys at once: state deployed.",
    params(("id" = String, Path)),
    request_body = Decision,
    responses((status = 200, description = "OK", body = FilteringChange), (status = 422, response = Unprocessable))
)]
pub async fn approve_change(
    State(ctx): State<Ctx>,
    p: Principal,
    Path(id): Path<String>,
    extract::Json(d): extract::Json<Decision>,
) -> Result<Json<FilteringChange>> {
    require_second_person(&p)?;
    Ok(Json(ctx.profiles.approve_filtering_change(&p.actor(), uuid_param(&id, "filtering change")?, d.justification).await?))
}

#[utoipa::path(
    post,
    path = "/filtering/changes/{id}/reject",
    tag = "filtering",
    summary = "Reject a filtering change",
    description = "Roles and rules as approve (the proposer cannot reject their own either).",
    params(("id" = String, Path)),
    request_body = Decision,
    responses((status = 200, description = "OK", body = FilteringChange), (status = 422, response = Unprocessable))
)]
pub async fn reject_change(
    State(ctx): State<Ctx>,
    p: Principal,
    Path(id): Path<String>,
    extract::Json(d): extract::Json<Decision>,
) -> Result<Json<FilteringChange>> {
    require_second_person(&p)?;
    Ok(Json(ctx.profiles.reject_filtering_change(&p.actor(), uuid_param(&id, "filtering change")?, d.justification).await?))
}
