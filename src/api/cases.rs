//! Safeguarding cases (`/api/v1/cases`): visible only to the DSL, the headteacher and admins;
//! every read is logged on the case.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::created;
use super::extract::{self, Page, Query, uuid_param};
use crate::auth::{Permission, Principal, Role};
use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::safeguarding::cases::{Case, NewCase};
use crate::safeguarding::quarantine::{QuarantineRequest, Quarantined};
use crate::safeguarding::release::{DisposeRequest, ReleaseRequest};

pub async fn open_case(
    State(ctx): State<Ctx>,
    p: Principal,
    extract::Json(req): extract::Json<NewCase>,
) -> Result<(StatusCode, Json<Case>)> {
    p.require(Permission::Safeguarding)?;
    Ok(created(ctx.open_case(&p.actor(), req).await?))
}

#[derive(Deserialize)]
pub struct ListQuery {
    state: Option<String>,
}

pub async fn list_cases(State(ctx): State<Ctx>, p: Principal, Query(q): Query<ListQuery>) -> Result<Json<Page<Case>>> {
    p.require(Permission::Safeguarding)?;
    Ok(Json(Page { items: ctx.list_cases(&p.actor(), q.state.as_deref()).await?, next_cursor: None }))
}

pub async fn get_case(State(ctx): State<Ctx>, p: Principal, Path(id): Path<String>) -> Result<Json<Value>> {
    p.require(Permission::Safeguarding)?;
    Ok(Json(ctx.view_case(&p.actor(), uuid_param(&id, "case")?).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionRequest {
    kind: String,
    text: String,
    justification: String,
}

pub async fn add_action(
    State(ctx): State<Ctx>,
    p: Principal,
    Path(id): Path<String>,
    extract::Json(r): extract::Json<ActionRequest>,
) -> Result<(StatusCode, Json<Value>)> {
    p.require(Permission::Safeguarding)?;
    let e = ctx.add_case_action(&p.actor(), uuid_param(&id, "case")?, &r.kind, &r.text, &r.justification).await?;
    Ok(created(json!({"seq": e.seq, "at": e.at, "kind": r.kind})))
}

pub async fn quarantine(
    State(ctx): State<Ctx>,
    p: Principal,
    Path(id): Path<String>,
    extract::Json(r): extract::Json<QuarantineRequest>,
) -> Result<(StatusCode, Json<Quarantined>)> {
    p.require(Permission::Safeguarding)?;
    Ok(created(ctx.quarantine_device(&p.actor(), uuid_param(&id, "case")?, r).await?))
}

pub async fn evidence(State(ctx): State<Ctx>, p: Principal, Path(id): Path<String>) -> Result<Json<Page<Value>>> {
    p.require(Permission::Safeguarding)?;
    Ok(Json(Page { items: ctx.list_evidence(&p.actor(), uuid_param(&id, "case")?).await?, next_cursor: None }))
}

#[derive(Deserialize)]
pub struct JustificationQuery {
    justification: Option<String>,
}

pub async fn evidence_item(
    State(ctx): State<Ctx>,
    p: Principal,
    Path((id, item)): Path<(String, String)>,
    Query(q): Query<JustificationQuery>,
) -> Result<Response> {
    p.require(Permission::Safeguarding)?;
    let (e, raw) = ctx
        .view_evidence(&p.actor(), uuid_param(&id, "case")?, uuid_param(&item, "evidence item")?, q.justification.as_deref().unwrap_or(""))
        .await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/xml".to_owned()),
            (header::HeaderName::from_static("x-evidence-sha256"), e.sha256.unwrap_or_default()),
        ],
        raw,
    )
        .into_response())
}

#[derive(Deserialize)]
pub struct CustodyQuery {
    format: Option<String>,
}

pub async fn custody(State(ctx): State<Ctx>, p: Principal, Path(id): Path<String>, Query(q): Query<CustodyQuery>) -> Result<Response> {
    custody_as(ctx, p, id, q.format.unwrap_or_else(|| "json".into())).await
}

/// `/api/v1/cases/{id}/custody.html`.
pub async fn custody_html(State(ctx): State<Ctx>, p: Principal, Path(id): Path<String>) -> Result<Response> {
    custody_as(ctx, p, id, "html".into()).await
}

/// `/api/v1/cases/{id}/custody.pdf`.
pub async fn custody_pdf(State(ctx): State<Ctx>, p: Principal, Path(id): Path<String>) -> Result<Response> {
    custody_as(ctx, p, id, "pdf".into()).await
}

async fn custody_as(ctx: Ctx, p: Principal, id: String, format: String) -> Result<Response> {
    p.require(Permission::Safeguarding)?;
    if !["json", "html", "pdf"].contains(&format.as_str()) {
        return Err(Error::unprocessable("format", "json, html or pdf"));
    }
    let report = ctx.custody(&p.actor(), uuid_param(&id, "case")?, &format).await?;
    let org = &ctx.config.organization;
    Ok(match format.as_str() {
        "html" => ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], report.html(org)).into_response(),
        "pdf" => (
            [
                (header::CONTENT_TYPE, "application/pdf".to_owned()),
                (header::CONTENT_DISPOSITION, format!("attachment; filename=\"case-{}-custody.pdf\"", report.case.number)),
            ],
            report.pdf(org),
        )
            .into_response(),
        _ => Json(report.json()).into_response(),
    })
}

pub async fn request_release(
    State(ctx): State<Ctx>,
    p: Principal,
    Path(id): Path<String>,
    extract::Json(r): extract::Json<ReleaseRequest>,
) -> Result<(StatusCode, Json<Value>)> {
    p.require(Permission::Safeguarding)?;
    Ok(created(ctx.request_release(&p, uuid_param(&id, "case")?, r).await?))
}

pub async fn request_disposal(
    State(ctx): State<Ctx>,
    p: Principal,
    Path(id): Path<String>,
    extract::Json(r): extract::Json<DisposeRequest>,
) -> Result<(StatusCode, Json<Value>)> {
    p.require(Permission::Safeguarding)?;
    Ok(created(ctx.request_disposal(&p, uuid_param(&id, "case")?, r).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    justification: String,
}

pub async fn approve_request(
    State(ctx): State<Ctx>,
    p: Principal,
    Path(id): Path<String>,
    extract::Json(d): extract::Json<Decision>,
) -> Result<Json<Value>> {
    p.require(Permission::ApproveSecondPerson)?;
    Ok(Json(ctx.approve_case_request(&p, uuid_param(&id, "request")?, &d.justification, true).await?))
}

pub async fn reject_request(
    State(ctx): State<Ctx>,
    p: Principal,
    Path(id): Path<String>,
    extract::Json(d): extract::Json<Decision>,
) -> Result<Json<Value>> {
    p.require(Permission::ApproveSecondPerson)?;
    Ok(Json(ctx.approve_case_request(&p, uuid_param(&id, "request")?, &d.justification, false).await?))
}

/// `/api/v1/cases/{id}/evidence/dispose-requests/{rid}/approve`: the same as the short form.
pub async fn approve_disposal(
    state: State<Ctx>,
    p: Principal,
    Path((_case, rid)): Path<(String, String)>,
    body: extract::Json<Decision>,
) -> Result<Json<Value>> {
    approve_request(state, p, Path(rid), body).await
}

pub async fn lock_pin(
    State(ctx): State<Ctx>,
    p: Principal,
    Path(udid): Path<String>,
    Query(q): Query<JustificationQuery>,
) -> Result<Json<Value>> {
    p.require(Permission::Safeguarding)?;
    Ok(Json(ctx.reveal_lock_pin(&p.actor(), &udid, q.justification.as_deref().unwrap_or("")).await?))
}

pub async fn report(State(ctx): State<Ctx>, p: Principal) -> Result<Json<Value>> {
    // No names in it: governors (auditor role) may read it too.
    if !(p.role.allows(Permission::Safeguarding) || p.role == Role::Auditor) {
        return Err(Error::Forbidden(format!("the {} role cannot read the safeguarding report", p.role)));
    }
    Ok(Json(ctx.cases_report().await?))
}

pub async fn notifications(State(ctx): State<Ctx>, p: Principal) -> Result<Json<Page<crate::store::NotificationRecord>>> {
    p.require(Permission::Safeguarding)?;
    let role = if p.role == Role::Admin { "headteacher" } else { p.role.as_str() };
    Ok(Json(Page { items: ctx.store.notifications(role, 200).await?, next_cursor: None }))
}

pub async fn retire_device(State(ctx): State<Ctx>, p: Principal, Path(udid): Path<String>) -> Result<StatusCode> {
    p.require(Permission::ManageDevices)?;
    ctx.retire_device(&p.actor(), &udid).await?;
    Ok(StatusCode::NO_CONTENT)
}
