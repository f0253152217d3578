//! The user-access register: people, AUPs, signatures, grants, device assignments, device
//! holders, who must sign, the report, and CSV import and export.
//!
//! Roles: every role reads (`ReadRegister`); admin and technician change
//! people, grants, assignments and import (`WriteRegister`); admin, dsl and headteacher record
//! signatures and publish AUP versions (`WriteSignatures`).

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use super::created;
use super::extract::{self, Page, Query, page_limit, uuid_param};
use super::openapi::Unprocessable;
use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::services::auth::{Permission, Principal};
use crate::services::register::PersonKind;
use crate::services::register::assignments::{Assignment, EndAssignment, NewAssignment};
use crate::services::register::aups::{Aup, NewAup};
use crate::services::register::grants::{Grant, NewGrant, RevokeOutcome};
use crate::services::register::holders::Holders;
use crate::services::register::import::ImportOutcome;
use crate::services::register::people::{LeaveOutcome, Person, PersonDetail, PersonFields, PersonPatch};
use crate::services::register::signatures::{NewSignature, SignatureView};
use crate::services::register::status::{DueItem, Report};
use crate::store::PeopleFilter;

/// The largest CSV an import accepts (a trust's whole MIS export fits many times over).
pub const IMPORT_BODY_LIMIT: usize = 8 * 1024 * 1024;

// ---- people ----

#[utoipa::path(
    post,
    path = "/people",
    tag = "register",
    summary = "Add a person",
    description = "Roles: admin, technician. Pupils need a year group or key stage; visitors and contractors get an end date 30 days after they start unless given one. 409 school_ref_taken.",
    request_body = PersonFields,
    responses((status = 201, description = "OK", body = Person), (status = 422, response = Unprocessable))
)]
pub async fn create_person(
    State(ctx): State<Ctx>,
    p: Principal,
    extract::Json(req): extract::Json<PersonFields>,
) -> Result<(StatusCode, Json<Person>)> {
    p.require(Permission::WriteRegister)?;
    Ok(created(ctx.register.create_person(&p.actor(), req).await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PeopleQuery {
    /// pupil, staff, visitor, governor, contractor, volunteer
    #[param(inline)]
    kind: Option<PersonKind>,
    /// part of the name or school reference, any case; matched literally (% and _ are not wildcards)
    q: Option<String>,
    /// true: only leavers; false: only people who have not left
    leavers: Option<bool>,
    /// page size, 1-1000 (default 100); anything else is 422 naming `limit`
    #[param(minimum = 1, maximum = 1000, default = 100)]
    limit: Option<i64>,
    /// next_cursor from the previous page
    cursor: Option<String>,
}

#[utoipa::path(
    get,
    path = "/people",
    tag = "register",
    summary = "List people",
    description = "Roles: every role. Ordered by name.",
    params(PeopleQuery),
    responses((status = 200, description = "OK", body = Page<Person>), (status = 422, response = Unprocessable))
)]
pub async fn list_people(State(ctx): State<Ctx>, p: Principal, Query(q): Query<PeopleQuery>) -> Result<Json<Page<Person>>> {
    p.require(Permission::ReadRegister)?;
    let limit = page_limit(q.limit)?;
    let cursor = match q.cursor.as_deref() {
        Some(c) => Some(Uuid::parse_str(c).map_err(|_| Error::unprocessable("cursor", "not a cursor from this endpoint"))?),
        None => None,
    };
    let filter = PeopleFilter { kind: q.kind, text: q.q.filter(|t| !t.trim().is_empty()), leavers: q.leavers, limit, ..Default::default() };
    let items = ctx.register.list_people(filter, cursor).await?;
    let next_cursor = (items.len() as i64 == limit).then(|| items.last().map(|p| p.id.to_string())).flatten();
    Ok(Json(Page { items, next_cursor }))
}

#[utoipa::path(
    get,
    path = "/people/{id}",
    tag = "register",
    summary = "One person with signatures, grants, holdings, devices held and history",
    description = "Roles: every role.",
    params(("id" = String, Path, description = "id")),
    responses((status = 200, description = "OK", body = PersonDetail))
)]
pub async fn get_person(State(ctx): State<Ctx>, p: Principal, Path(id): Path<String>) -> Result<Json<PersonDetail>> {
    p.require(Permission::ReadRegister)?;
    Ok(Json(ctx.register.person_detail(uuid_param(&id, "person")?).await?))
}

#[utoipa::path(
    patch,
    path = "/people/{id}",
    tag = "register",
    summary = "Change a person",
    description = "Roles: admin, technician. Absent fields stay; null clears. An end date that appears or moves earlier ends their access on that date, as leaving does.",
    params(("id" = String, Path, description = "id")),
    request_body = PersonPatch,
    responses((status = 200, description = "OK", body = PersonDetail), (status = 422, response = Unprocessable))
)]
pub async fn update_person(
    State(ctx): State<Ctx>,
    p: Principal,
    Path(id): Path<String>,
    extract::Json(req): extract::Json<PersonPatch>,
) -> Result<Json<PersonDetail>> {
    p.require(Permission::WriteRegister)?;
    let id = uuid_param(&id, "person")?;
    Ok(Json(ctx.register.update_person(&p.actor(), id, req).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Leave {
    date: NaiveDate,
    reason: Option<String>,
}

#[utoipa::path(
    post,
    path = "/people/{id}/leave",
    tag = "register",
    summary = "Mark a leaver",
    description = "Roles: admin, technician. Their grants are revoked and holdings ended at 00:00 UTC on `date` (or now, if that has passed: today or earlier ends them at once); the records stay. `date` may be the start date itself (a one-day supply teacher) but not before it: 422 naming `date`.",
    params(("id" = String, Path, description = "id")),
    request_body = Leave,
    responses((status = 200, description = "OK", body = LeaveOutcome), (status = 422, response = Unprocessable))
)]
pub async fn leave(
    State(ctx): State<Ctx>,
    p: Principal,
    Path(id): Path<String>,
    extract::Json(req): extract::Json<Leave>,
) -> Result<Json<LeaveOutcome>> {
    p.require(Permission::WriteRegister)?;
    let id = uuid_param(&id, "person")?;
    Ok(Json(ctx.register.mark_leaver(&p.actor(), id, req.date, req.reason.as_deref()).await?))
}

// ---- AUPs and signatures ----

#[utoipa::path(
    post,
    path = "/aups",
    tag = "register",
    summary = "Publish the next version of an audience's AUP",
    description = "Roles: admin, dsl, headteacher. Versions count up per audience; review_due defaults to a year after effective_date. The version becomes current on its effective date.",
    request_body = NewAup,
    responses((status = 201, description = "OK", body = Aup), (status = 422, response = Unprocessable))
)]
pub async fn create_aup(
    State(ctx): State<Ctx>,
    p: Principal,
    extract::Json(req): extract::Json<NewAup>,
) -> Result<(StatusCode, Json<Aup>)> {
    p.require(Permission::WriteSignatures)?;
    Ok(created(ctx.register.publish_aup(&p.actor(), req).await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AupQuery {
    /// only this audience
    audience: Option<String>,
}

#[utoipa::path(
    get,
    path = "/aups",
    tag = "register",
    summary = "List AUP versions",
    description = "Roles: every role.",
    params(AupQuery),
    responses((status = 200, description = "OK", body = Page<Aup>))
)]
pub async fn list_aups(State(ctx): State<Ctx>, p: Principal, Query(q): Query<AupQuery>) -> Result<Json<Page<Aup>>> {
    p.require(Permission::ReadRegister)?;
    Ok(Json(Page { items: ctx.register.list_aups(q.audience.as_deref()).await?, next_cursor: None }))
}

#[utoipa::path(
    get,
    path = "/aups/{id}",
    tag = "register",
    summary = "One AUP version",
    description = "Roles: every role.",
    params(("id" = String, Path, description = "id")),
    responses((status = 200, description = "OK", body = Aup))
)]
pub async fn get_aup(State(ctx): State<Ctx>, p: Principal, Path(id): Path<String>) -> Result<Json<Aup>> {
    p.require(Permission::ReadRegister)?;
    Ok(Json(ctx.register.aup(uuid_param(&id, "AUP")?).await?))
}

#[utoipa::path(
    post,
    path = "/signatures",
    tag = "register",
    summary = "Record an AUP signature",
    description = "Roles: admin, dsl, headteacher. Immutable. EYFS, KS1 and KS2 pupils need co_signer (the parent or carer). 409 already_signed.",
    request_body = NewSignature,
    responses((status = 201, description = "OK", body = SignatureView), (status = 422, response = Unprocessable))
)]
pub async fn create_signature(
    State(ctx): State<Ctx>,
    p: Principal,
    extract::Json(req): extract::Json<NewSignature>,
) -> Result<(StatusCode, Json<SignatureView>)> {
    p.require(Permission::WriteSignatures)?;
    Ok(created(ctx.register.record_signature(&p.actor(), req).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Reason {
    reason: String,
}

#[utoipa::path(
    post,
    path = "/signatures/{id}/void",
    tag = "register",
    summary = "Void a signature, with a reason",
    description = "Roles: admin, dsl, headteacher. 409 signature_in_use while it is the only signature behind live access.",
    params(("id" = String, Path, description = "id")),
    request_body = Reason,
    responses((status = 200, description = "OK", body = SignatureView), (status = 422, response = Unprocessable))
)]
pub async fn void_signature(
    State(ctx): State<Ctx>,
    p: Principal,
    Path(id): Path<String>,
    extract::Json(req): extract::Json<Reason>,
) -> Result<Json<SignatureView>> {
    p.require(Permission::WriteSignatures)?;
    let id = uuid_param(&id, "signature")?;
    Ok(Json(ctx.register.void_signature(&p.actor(), id, &req.reason).await?))
}

// ---- grants and assignments ----

#[utoipa::path(
    post,
    path = "/grants",
    tag = "register",
    summary = "Grant access to a device, a device group or a system",
    description = "Roles: admin, technician. Exactly one of udid, group_id, system. 409 aup_not_signed (with aup_id) unless the person has a valid signature, under a year old, of the current AUP for their audience; 409 no_current_aup if their audience has none; 409 person_left. `from` defaults to now and is never in the past; `until` is capped at the person's end date.",
    request_body = NewGrant,
    responses((status = 201, description = "OK", body = Grant), (status = 422, response = Unprocessable))
)]
pub async fn create_grant(
    State(ctx): State<Ctx>,
    p: Principal,
    extract::Json(req): extract::Json<NewGrant>,
) -> Result<(StatusCode, Json<Grant>)> {
    p.require(Permission::WriteRegister)?;
    Ok(created(ctx.register.create_grant(&p.actor(), req).await?))
}

#[utoipa::path(
    post,
    path = "/grants/{id}/revoke",
    tag = "register",
    summary = "Revoke a grant now",
    description = "Roles: admin, technician. The person's holdings that no other live grant covers end too.",
    params(("id" = String, Path, description = "id")),
    request_body = Reason,
    responses((status = 200, description = "OK", body = RevokeOutcome), (status = 422, response = Unprocessable))
)]
pub async fn revoke_grant(
    State(ctx): State<Ctx>,
    p: Principal,
    Path(id): Path<String>,
    extract::Json(req): extract::Json<Reason>,
) -> Result<Json<RevokeOutcome>> {
    p.require(Permission::WriteRegister)?;
    let id = uuid_param(&id, "grant")?;
    Ok(Json(ctx.register.revoke_grant(&p.actor(), id, &req.reason).await?))
}

#[utoipa::path(
    post,
    path = "/assignments",
    tag = "register",
    summary = "Give a person a device to hold",
    description = "Roles: admin, technician. Needs a live grant covering the device (a device grant, or a group grant whose group holds the device). 409 device_held (with assignment_id) while someone else holds it; 409 no_grant.",
    request_body = NewAssignment,
    responses((status = 201, description = "OK", body = Assignment), (status = 422, response = Unprocessable))
)]
pub async fn create_assignment(
    State(ctx): State<Ctx>,
    p: Principal,
    extract::Json(req): extract::Json<NewAssignment>,
) -> Result<(StatusCode, Json<Assignment>)> {
    p.require(Permission::WriteRegister)?;
    Ok(created(ctx.register.create_assignment(&p.actor(), req).await?))
}

#[utoipa::path(
    post,
    path = "/assignments/{id}/end",
    tag = "register",
    summary = "End a holding",
    description = "Roles: admin, technician. `at` defaults to now (the body may be empty).",
    params(("id" = String, Path, description = "id")),
    request_body = Option<EndAssignment>,
    responses((status = 200, description = "OK", body = Assignment), (status = 422, response = Unprocessable))
)]
pub async fn end_assignment(State(ctx): State<Ctx>, p: Principal, Path(id): Path<String>, req: Request) -> Result<Json<Assignment>> {
    p.require(Permission::WriteRegister)?;
    let id = uuid_param(&id, "assignment")?;
    // The body is optional: no body (or `{}`) ends the holding now.
    let bytes = extract::read_body(req, &()).await?;
    let body: EndAssignment =
        if bytes.iter().all(u8::is_ascii_whitespace) { EndAssignment::default() } else { extract::parse_json(&bytes)? };
    Ok(Json(ctx.register.end_assignment(&p.actor(), id, body.at).await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct HoldersQuery {
    /// a moment (RFC 3339); without it, the whole history
    at: Option<DateTime<Utc>>,
}

#[utoipa::path(
    get,
    path = "/devices/{udid}/holders",
    tag = "register",
    summary = "Who held a device, and who had access to it, at a moment or over its history",
    description = "Roles: every role. 404 if the UDID is neither enrolled nor in the register (an enrolled device nobody was given answers empty lists).",
    params(("udid" = String, Path, description = "the device's UDID"), HoldersQuery),
    responses((status = 200, description = "OK", body = Holders))
)]
pub async fn device_holders(
    State(ctx): State<Ctx>,
    p: Principal,
    Path(udid): Path<String>,
    Query(q): Query<HoldersQuery>,
) -> Result<Json<Holders>> {
    p.require(Permission::ReadRegister)?;
    Ok(Json(ctx.register.device_holders(&udid, q.at).await?))
}

// ---- the register as a whole ----

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DueQuery {
    /// default true: everyone who must sign, with or without access; false: only people with a live or future grant
    #[param(default = true)]
    everyone: Option<bool>,
    /// only this kind of person
    #[param(inline)]
    kind: Option<PersonKind>,
}

#[utoipa::path(
    get,
    path = "/register/due",
    tag = "register",
    summary = "Who must sign what",
    description = "Roles: every role. Everyone who must sign the current AUP version of their audience and has not (leavers excepted), whether or not they hold a grant today — a new starter or a signer of an older version without access must still sign before they get one — each with `state` and `reason`: lapsed (signed over a year ago: expired), outdated (an earlier version, superseded, or another audience's AUP), unsigned (never signed), or no_aup.",
    params(DueQuery),
    responses((status = 200, description = "OK", body = Page<DueItem>))
)]
pub async fn due(State(ctx): State<Ctx>, p: Principal, Query(q): Query<DueQuery>) -> Result<Json<Page<DueItem>>> {
    p.require(Permission::ReadRegister)?;
    Ok(Json(Page { items: ctx.register.due(q.everyone.unwrap_or(true), q.kind).await?, next_cursor: None }))
}

#[utoipa::path(
    get,
    path = "/register/report",
    tag = "register",
    summary = "The register at a glance",
    description = "Roles: every role.",
    responses((status = 200, description = "OK", body = Report))
)]
pub async fn report(State(ctx): State<Ctx>, p: Principal) -> Result<Json<Report>> {
    p.require(Permission::ReadRegister)?;
    Ok(Json(ctx.register.register_report().await?))
}

#[utoipa::path(
    get,
    path = "/register/export.csv",
    tag = "register",
    summary = "The register as CSV",
    description = "Roles: every role. The first eight columns are the import's; the rest are read-only.",
    responses((status = 200, description = "OK", content_type = "text/csv", body = String))
)]
pub async fn export_csv(State(ctx): State<Ctx>, p: Principal) -> Result<Response> {
    p.require(Permission::ReadRegister)?;
    let body = ctx.register.export_register_csv().await?;
    let name = format!("attachment; filename=\"register-{}.csv\"", ctx.register.today().format("%Y-%m-%d"));
    let mut resp = body.into_response();
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
    if let Ok(v) = HeaderValue::from_str(&name) {
        resp.headers_mut().insert(CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ImportQuery {
    /// true (default): show what would change; false: apply
    dry_run: Option<bool>,
}

#[utoipa::path(
    post,
    path = "/register/import",
    tag = "register",
    summary = "Import people from the MIS (CSV), upserting by school_ref",
    description = "Roles: admin, technician. Columns: school_ref, kind, name (required), year_group, key_stage, start_date, leaving_date, notes. Nothing is written if any row is invalid: 422 invalid_csv with errors [{row, column, message}] (the header is row 1). dry_run defaults to true.",
    params(ImportQuery),
    request_body(content = String, content_type = "text/csv"),
    responses((status = 200, description = "OK", body = ImportOutcome), (status = 422, description = "invalid_csv: every row and column the import got wrong, in `errors`", body = ImportErrors))
)]
pub async fn import(State(ctx): State<Ctx>, p: Principal, Query(q): Query<ImportQuery>, req: Request) -> Result<Json<ImportOutcome>> {
    p.require(Permission::WriteRegister)?;
    let is_csv = req.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|ct| {
        let ct = ct.to_ascii_lowercase();
        ct.starts_with("text/csv") || ct.starts_with("application/csv")
    });
    if !is_csv {
        return Err(Error::UnsupportedMediaType("expected Content-Type: text/csv (the MIS export as CSV)".into()));
    }
    let body = axum::body::to_bytes(req.into_body(), IMPORT_BODY_LIMIT).await.map_err(|e| {
        if format!("{e:#}").contains("length limit") {
            Error::PayloadTooLarge { limit: IMPORT_BODY_LIMIT }
        } else {
            Error::BadRequest(format!("could not read the request body: {e}"))
        }
    })?;
    Ok(Json(ctx.register.import_people_csv(&p.actor(), &body, q.dry_run.unwrap_or(true)).await?))
}

/// 422 `invalid_csv`: nothing was written.
// `crate::services::register::import` writes it.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ImportErrors {
    #[serde(flatten)]
    error: super::openapi::ErrorBody,
    /// the first problem's row (the header is row 1)
    row: Option<u64>,
    /// the first problem's column
    column: Option<String>,
    /// how many problems there are
    error_count: u64,
    /// every row and column the import got wrong (the header is row 1)
    errors: Vec<crate::services::register::import::RowError>,
}
