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
use uuid::Uuid;

use super::extract::{self, Page, Query, page_limit, uuid_param};
use crate::auth::{Permission, Principal};
use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::profiles::changes::{CSV_COLUMNS, FilteringChange};
use crate::profiles::library::{ChangeOutcome, Profile, ProfileDetail, ProfileSource};
use crate::profiles::reconcile::ProfileStatus;

/// `?name=&reason=&risk_assessment_ref=` on uploads (the JSON body may carry them instead).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct UploadQuery {
    name: Option<String>,
    reason: Option<String>,
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

pub async fn create_profile(
    State(ctx): State<Ctx>,
    p: Principal,
    Query(q): Query<UploadQuery>,
    req: Request,
) -> Result<(StatusCode, Json<Profile>)> {
    p.require(Permission::ManageProfiles)?;
    let u = read_upload(req, &ctx, q).await?;
    let name = u.name.ok_or_else(|| Error::unprocessable("name", "required: ?name=N or a \"name\" field"))?;
    Ok((StatusCode::CREATED, Json(ctx.create_profile(&p.actor(), &name, u.source).await?)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    name: Option<String>,
}

pub async fn list_profiles(State(ctx): State<Ctx>, p: Principal, Query(q): Query<ListQuery>) -> Result<Json<Page<Profile>>> {
    p.require(Permission::ReadProfiles)?;
    Ok(Json(Page { items: ctx.list_profile_views(q.name.as_deref()).await?, next_cursor: None }))
}

pub async fn get_profile(State(ctx): State<Ctx>, p: Principal, Path(id): Path<String>) -> Result<Json<ProfileDetail>> {
    p.require(Permission::ReadProfiles)?;
    Ok(Json(ctx.profile_detail(uuid_param(&id, "profile")?).await?))
}

/// 202 with the proposal: `{"change_id", "state": "proposed", ...}`.
fn proposed(change: FilteringChange) -> Response {
    (StatusCode::ACCEPTED, Json(change)).into_response()
}

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
    let current = ctx.live_profile(id).await?;
    if let (Some(n), ProfileSource::Bytes(_)) = (&u.name, &u.source)
        && n.trim() != current.name
    {
        return Err(Error::unprocessable("name", "a profile keeps its name: upload under a new name to make another profile"));
    }
    Ok(match ctx.update_profile(&p.actor(), id, u.source, u.reason, u.risk_assessment_ref).await? {
        ChangeOutcome::Done(profile) => Json(profile).into_response(),
        ChangeOutcome::Proposed(change) => proposed(*change),
    })
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ChangeFields {
    reason: Option<String>,
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
    Ok(match ctx.delete_profile(&p.actor(), id, f.reason, f.risk_assessment_ref).await? {
        ChangeOutcome::Done(()) => StatusCode::NO_CONTENT.into_response(),
        ChangeOutcome::Proposed(change) => proposed(*change),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionQuery {
    version: Option<i64>,
}

/// The stored XML of the current (or a given) version, as a technician opens it in Apple
/// Configurator. Devices get it signed, with the escrow certificate filled in.
pub async fn download_profile(
    State(ctx): State<Ctx>,
    p: Principal,
    Path(id): Path<String>,
    Query(q): Query<VersionQuery>,
) -> Result<Response> {
    p.require(Permission::ReadProfiles)?;
    let (profile, v) = ctx.profile_xml(uuid_param(&id, "profile")?, q.version).await?;
    let disposition = format!("attachment; filename=\"{}-v{}.mobileconfig\"", profile.name, v.version);
    let mut resp = (StatusCode::OK, v.xml).into_response();
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/x-apple-aspen-config"));
    if let Ok(h) = HeaderValue::from_str(&disposition) {
        resp.headers_mut().insert(CONTENT_DISPOSITION, h);
    }
    Ok(resp)
}

pub async fn profile_status(State(ctx): State<Ctx>, p: Principal, Path(id): Path<String>) -> Result<Json<ProfileStatus>> {
    p.require(Permission::ReadProfiles)?;
    Ok(Json(ctx.profile_status(uuid_param(&id, "profile")?).await?))
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangesQuery {
    state: Option<String>,
    profile_id: Option<Uuid>,
    format: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

fn parse_cursor(c: &str) -> Result<(DateTime<Utc>, Uuid)> {
    let bad = || Error::unprocessable("cursor", "not a cursor from this endpoint");
    let (at, id) = c.split_once('_').ok_or_else(bad)?;
    let at = DateTime::parse_from_rfc3339(at).map_err(|_| bad())?.with_timezone(&Utc);
    Ok((at, Uuid::parse_str(id).map_err(|_| bad())?))
}

/// `GET /api/v1/filtering/changes` (`?format=csv`): the log governors ask for, newest first.
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
            let page = ctx.list_filtering_changes(q.state.as_deref(), q.profile_id, before, 1000).await?;
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
    let items = ctx.list_filtering_changes(q.state.as_deref(), q.profile_id, before, limit).await?;
    let next_cursor =
        (items.len() as i64 == limit).then(|| items.last().map(|c| format!("{}_{}", c.proposed_at.to_rfc3339(), c.id))).flatten();
    Ok(Json(Page { items, next_cursor }).into_response())
}

pub async fn get_change(State(ctx): State<Ctx>, p: Principal, Path(id): Path<String>) -> Result<Json<FilteringChange>> {
    require_filtering_reader(&p)?;
    Ok(Json(ctx.filtering_change_view(uuid_param(&id, "filtering change")?).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Decision {
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

pub async fn approve_change(
    State(ctx): State<Ctx>,
    p: Principal,
    Path(id): Path<String>,
    extract::Json(d): extract::Json<Decision>,
) -> Result<Json<FilteringChange>> {
    require_second_person(&p)?;
    Ok(Json(ctx.approve_filtering_change(&p.actor(), uuid_param(&id, "filtering change")?, d.justification).await?))
}

pub async fn reject_change(
    State(ctx): State<Ctx>,
    p: Principal,
    Path(id): Path<String>,
    extract::Json(d): extract::Json<Decision>,
) -> Result<Json<FilteringChange>> {
    require_second_person(&p)?;
    Ok(Json(ctx.reject_filtering_change(&p.actor(), uuid_param(&id, "filtering change")?, d.justification).await?))
}
