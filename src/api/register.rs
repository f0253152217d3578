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
use uuid::Uuid;

use super::created;
use super::extract::{self, Page, Query, page_limit, uuid_param};
use crate::auth::{Permission, Principal};
use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::register::PersonKind;
use crate::register::assignments::{Assignment, EndAssignment, NewAssignment};
use crate::register::aups::{Aup, NewAup};
use crate::register::grants::{Grant, NewGrant, RevokeOutcome};
use crate::register::holders::Holders;
use crate::register::import::ImportOutcome;
use crate::register::people::{LeaveOutcome, Person, PersonDetail, PersonFields, PersonPatch};
use crate::register::signatures::{NewSignature, SignatureView};
use crate::register::status::{DueItem, Report};
use crate::store::PeopleFilter;

/// The largest CSV an import accepts (a trust's whole MIS export fits many times over).
pub const IMPORT_BODY_LIMIT: usize = 8 * 1024 * 1024;

// ---- people ----

pub async fn create_person(
    State(ctx): State<Ctx>,
    p: Principal,
    extract::Json(req): extract::Json<PersonFields>,
) -> Result<(StatusCode, Json<Person>)> {
    p.require(Permission::WriteRegister)?;
    Ok(created(ctx.create_person(&p.actor(), req).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeopleQuery {
    kind: Option<PersonKind>,
    /// Part of the name or school reference, any case.
    q: Option<String>,
    /// true: only leavers; false: only people who have not left.
    leavers: Option<bool>,
    limit: Option<i64>,
    cursor: Option<String>,
}

pub async fn list_people(State(ctx): State<Ctx>, p: Principal, Query(q): Query<PeopleQuery>) -> Result<Json<Page<Person>>> {
    p.require(Permission::ReadRegister)?;
    let limit = page_limit(q.limit)?;
    let cursor = match q.cursor.as_deref() {
        Some(c) => Some(Uuid::parse_str(c).map_err(|_| Error::unprocessable("cursor", "not a cursor from this endpoint"))?),
        None => None,
    };
    let filter = PeopleFilter { kind: q.kind, text: q.q.filter(|t| !t.trim().is_empty()), leavers: q.leavers, limit, ..Default::default() };
    let items = ctx.list_people(filter, cursor).await?;
    let next_cursor = (items.len() as i64 == limit).then(|| items.last().map(|p| p.id.to_string())).flatten();
    Ok(Json(Page { items, next_cursor }))
}

pub async fn get_person(State(ctx): State<Ctx>, p: Principal, Path(id): Path<String>) -> Result<Json<PersonDetail>> {
    p.require(Permission::ReadRegister)?;
    Ok(Json(ctx.person_detail(uuid_param(&id, "person")?).await?))
}

pub async fn update_person(
    State(ctx): State<Ctx>,
    p: Principal,
    Path(id): Path<String>,
    extract::Json(req): extract::Json<PersonPatch>,
) -> Result<Json<PersonDetail>> {
    p.require(Permission::WriteRegister)?;
    let id = uuid_param(&id, "person")?;
    Ok(Json(ctx.update_person(&p.actor(), id, req).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Leave {
    date: NaiveDate,
    reason: Option<String>,
}

pub async fn leave(
    State(ctx): State<Ctx>,
    p: Principal,
    Path(id): Path<String>,
    extract::Json(req): extract::Json<Leave>,
) -> Result<Json<LeaveOutcome>> {
    p.require(Permission::WriteRegister)?;
    let id = uuid_param(&id, "person")?;
    Ok(Json(ctx.mark_leaver(&p.actor(), id, req.date, req.reason.as_deref()).await?))
}

// ---- AUPs and signatures ----

pub async fn create_aup(
    State(ctx): State<Ctx>,
    p: Principal,
    extract::Json(req): extract::Json<NewAup>,
) -> Result<(StatusCode, Json<Aup>)> {
    p.require(Permission::WriteSignatures)?;
    Ok(created(ctx.publish_aup(&p.actor(), req).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AupQuery {
    audience: Option<String>,
}

pub async fn list_aups(State(ctx): State<Ctx>, p: Principal, Query(q): Query<AupQuery>) -> Result<Json<Page<Aup>>> {
    p.require(Permission::ReadRegister)?;
    Ok(Json(Page { items: ctx.list_aups(q.audience.as_deref()).await?, next_cursor: None }))
}

pub async fn get_aup(State(ctx): State<Ctx>, p: Principal, Path(id): Path<String>) -> Result<Json<Aup>> {
    p.require(Permission::ReadRegister)?;
    Ok(Json(ctx.aup(uuid_param(&id, "AUP")?).await?))
}

pub async fn create_signature(
    State(ctx): State<Ctx>,
    p: Principal,
    extract::Json(req): extract::Json<NewSignature>,
) -> Result<(StatusCode, Json<SignatureView>)> {
    p.require(Permission::WriteSignatures)?;
    Ok(created(ctx.record_signature(&p.actor(), req).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reason {
    reason: String,
}

pub async fn void_signature(
    State(ctx): State<Ctx>,
    p: Principal,
    Path(id): Path<String>,
    extract::Json(req): extract::Json<Reason>,
) -> Result<Json<SignatureView>> {
    p.require(Permission::WriteSignatures)?;
    let id = uuid_param(&id, "signature")?;
    Ok(Json(ctx.void_signature(&p.actor(), id, &req.reason).await?))
}

// ---- grants and assignments ----

pub async fn create_grant(
    State(ctx): State<Ctx>,
    p: Principal,
    extract::Json(req): extract::Json<NewGrant>,
) -> Result<(StatusCode, Json<Grant>)> {
    p.require(Permission::WriteRegister)?;
    Ok(created(ctx.create_grant(&p.actor(), req).await?))
}

pub async fn revoke_grant(
    State(ctx): State<Ctx>,
    p: Principal,
    Path(id): Path<String>,
    extract::Json(req): extract::Json<Reason>,
) -> Result<Json<RevokeOutcome>> {
    p.require(Permission::WriteRegister)?;
    let id = uuid_param(&id, "grant")?;
    Ok(Json(ctx.revoke_grant(&p.actor(), id, &req.reason).await?))
}

pub async fn create_assignment(
    State(ctx): State<Ctx>,
    p: Principal,
    extract::Json(req): extract::Json<NewAssignment>,
) -> Result<(StatusCode, Json<Assignment>)> {
    p.require(Permission::WriteRegister)?;
    Ok(created(ctx.create_assignment(&p.actor(), req).await?))
}

pub async fn end_assignment(State(ctx): State<Ctx>, p: Principal, Path(id): Path<String>, req: Request) -> Result<Json<Assignment>> {
    p.require(Permission::WriteRegister)?;
    let id = uuid_param(&id, "assignment")?;
    // The body is optional: no body (or `{}`) ends the holding now.
    let bytes = extract::read_body(req, &()).await?;
    let body: EndAssignment =
        if bytes.iter().all(u8::is_ascii_whitespace) { EndAssignment::default() } else { extract::parse_json(&bytes)? };
    Ok(Json(ctx.end_assignment(&p.actor(), id, body.at).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HoldersQuery {
    at: Option<DateTime<Utc>>,
}

pub async fn device_holders(
    State(ctx): State<Ctx>,
    p: Principal,
    Path(udid): Path<String>,
    Query(q): Query<HoldersQuery>,
) -> Result<Json<Holders>> {
    p.require(Permission::ReadRegister)?;
    Ok(Json(ctx.device_holders(&udid, q.at).await?))
}

// ---- the register as a whole ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DueQuery {
    /// Default true: everyone who must sign, with or without access (new starters included).
    /// `false`: only people with live or future access.
    everyone: Option<bool>,
    kind: Option<PersonKind>,
}

pub async fn due(State(ctx): State<Ctx>, p: Principal, Query(q): Query<DueQuery>) -> Result<Json<Page<DueItem>>> {
    p.require(Permission::ReadRegister)?;
    Ok(Json(Page { items: ctx.due(q.everyone.unwrap_or(true), q.kind).await?, next_cursor: None }))
}

pub async fn report(State(ctx): State<Ctx>, p: Principal) -> Result<Json<Report>> {
    p.require(Permission::ReadRegister)?;
    Ok(Json(ctx.register_report().await?))
}

pub async fn export_csv(State(ctx): State<Ctx>, p: Principal) -> Result<Response> {
    p.require(Permission::ReadRegister)?;
    let body = ctx.export_register_csv().await?;
    let name = format!("attachment; filename=\"register-{}.csv\"", ctx.today().format("%Y-%m-%d"));
    let mut resp = body.into_response();
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
    if let Ok(v) = HeaderValue::from_str(&name) {
        resp.headers_mut().insert(CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportQuery {
    /// Default true: show what would change and write nothing. `dry_run=false` applies it.
    dry_run: Option<bool>,
}

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
    Ok(Json(ctx.import_people_csv(&p.actor(), &body, q.dry_run.unwrap_or(true)).await?))
}
