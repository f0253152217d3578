//! Safeguarding cases (`/api/v1/cases`): visible only to the DSL, the headteacher and admins;
//! every read is logged on the case.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::created;
use super::extract::{self, Page, Query, uuid_param};
use super::openapi::Unprocessable;
use super::schemas::NotificationSchema;
use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::services::auth::{Permission, Principal, Role};
use crate::services::safeguarding::cases::{Case, NewCase};
use crate::services::safeguarding::quarantine::{QuarantineRequest, Quarantined};
use crate::services::safeguarding::release::{DisposeRequest, ReleaseRequest};

#[utoipa::path(
    post,
    path = "/cases",
    tag = "safeguarding",
    summary = "Open a case",
    description = "Roles: dsl, headteacher, admin. A case about staff notifies the headteacher role.",
    request_body = NewCase,
    responses((status = 201, description = "OK", body = Case), (status = 422, response = Unprocessable))
)]
pub async fn open_case(
    State(ctx): State<Ctx>,
    p: Principal,
    extract::Json(req): extract::Json<NewCase>,
) -> Result<(StatusCode, Json<Case>)> {
    p.require(Permission::Safeguarding)?;
    Ok(created(ctx.safeguarding.open_case(&p.actor(), req).await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// open or closed
    state: Option<String>,
}

#[utoipa::path(
    get,
    path = "/cases",
    tag = "safeguarding",
    summary = "List cases (the read is audited)",
    description = "Roles: dsl, headteacher, admin.",
    params(ListQuery),
    responses((status = 200, description = "OK", body = Page<Case>))
)]
pub async fn list_cases(State(ctx): State<Ctx>, p: Principal, Query(q): Query<ListQuery>) -> Result<Json<Page<Case>>> {
    p.require(Permission::Safeguarding)?;
    Ok(Json(Page { items: ctx.safeguarding.list_cases(&p.actor(), q.state.as_deref()).await?, next_cursor: None }))
}

#[utoipa::path(
    get,
    path = "/cases/{id}",
    tag = "safeguarding",
    summary = "A case with its devices, commands and requests (the read is logged on the case)",
    description = "Roles: dsl, headteacher, admin.",
    params(("id" = String, Path)),
    responses((status = 200, description = "OK", body = Object))
)]
pub async fn get_case(State(ctx): State<Ctx>, p: Principal, Path(id): Path<String>) -> Result<Json<Value>> {
    p.require(Permission::Safeguarding)?;
    Ok(Json(ctx.safeguarding.view_case(&p.actor(), uuid_param(&id, "case")?).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionRequest {
    /// note, police_contact, lado_contact, parent_contact, ceop_report, decision or other
    kind: String,
    text: String,
    justification: String,
}

/// An action, appended to the case's log.
#[derive(serde::Serialize, ToSchema)]
pub struct ActionAdded {
    seq: i64,
    at: chrono::DateTime<chrono::Utc>,
    kind: String,
}

#[utoipa::path(
    post,
    path = "/cases/{id}/actions",
    tag = "safeguarding",
    summary = "Append an action: note, police_contact, lado_contact, parent_contact, ceop_report, decision, other",
    description = "Roles: dsl, headteacher, admin.",
    params(("id" = String, Path)),
    request_body = ActionRequest,
    responses((status = 201, description = "OK", body = ActionAdded), (status = 422, response = Unprocessable))
)]
pub async fn add_action(
    State(ctx): State<Ctx>,
    p: Principal,
    Path(id): Path<String>,
    extract::Json(r): extract::Json<ActionRequest>,
) -> Result<(StatusCode, Json<ActionAdded>)> {
    p.require(Permission::Safeguarding)?;
    let e = ctx.safeguarding.add_case_action(&p.actor(), uuid_param(&id, "case")?, &r.kind, &r.text, &r.justification).await?;
    Ok(created(ActionAdded { seq: e.seq, at: e.at, kind: r.kind }))
}

#[utoipa::path(
    post,
    path = "/cases/{id}/devices",
    tag = "safeguarding",
    summary = "Quarantine a device: lock (Lost Mode / DeviceLock / Mac PIN), evidence snapshot, access suspended, legal hold",
    description = "Roles: dsl, headteacher, admin.",
    params(("id" = String, Path)),
    request_body = QuarantineRequest,
    responses((status = 201, description = "OK", body = Quarantined), (status = 422, response = Unprocessable))
)]
pub async fn quarantine(
    State(ctx): State<Ctx>,
    p: Principal,
    Path(id): Path<String>,
    extract::Json(r): extract::Json<QuarantineRequest>,
) -> Result<(StatusCode, Json<Quarantined>)> {
    p.require(Permission::Safeguarding)?;
    Ok(created(ctx.safeguarding.quarantine_device(&p.actor(), uuid_param(&id, "case")?, r).await?))
}

#[utoipa::path(
    get,
    path = "/cases/{id}/evidence",
    tag = "safeguarding",
    summary = "Evidence items: request type, received_at, sha256",
    description = "Roles: dsl, headteacher, admin.",
    params(("id" = String, Path)),
    responses((status = 200, description = "OK", body = Page<Object>))
)]
pub async fn evidence(State(ctx): State<Ctx>, p: Principal, Path(id): Path<String>) -> Result<Json<Page<Value>>> {
    p.require(Permission::Safeguarding)?;
    Ok(Json(Page { items: ctx.safeguarding.list_evidence(&p.actor(), uuid_param(&id, "case")?).await?, next_cursor: None }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JustificationQuery {
    /// required
    justification: Option<String>,
}

#[utoipa::path(
    get,
    path = "/cases/{id}/evidence/{item}",
    tag = "safeguarding",
    summary = "One evidence item exactly as received (logged)",
    description = "Roles: dsl, headteacher, admin.",
    params(("id" = String, Path), ("item" = String, Path), JustificationQuery),
    responses((status = 200, description = "OK", content_type = "application/xml", body = String, headers(("x-evidence-sha256" = String, description = "the SHA-256 of the item as received"))))
)]
pub async fn evidence_item(
    State(ctx): State<Ctx>,
    p: Principal,
    Path((id, item)): Path<(String, String)>,
    Query(q): Query<JustificationQuery>,
) -> Result<Response> {
    p.require(Permission::Safeguarding)?;
    let (e, raw) = ctx
        .safeguarding
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

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CustodyQuery {
    /// json, html or pdf
    format: Option<String>,
}

#[utoipa::path(
    get,
    path = "/cases/{id}/custody",
    tag = "safeguarding",
    summary = "The chain-of-custody log (JSON, or ?format=html|pdf)",
    description = "Roles: dsl, headteacher, admin.",
    params(("id" = String, Path), CustodyQuery),
    responses((status = 200, description = "OK", content((Object = "application/json"), (String = "text/html"), (String = "application/pdf"))), (status = 422, response = Unprocessable))
)]
pub async fn custody(State(ctx): State<Ctx>, p: Principal, Path(id): Path<String>, Query(q): Query<CustodyQuery>) -> Result<Response> {
    custody_as(ctx, p, id, q.format.unwrap_or_else(|| "json".into())).await
}

/// `/api/v1/cases/{id}/custody.html`.
#[utoipa::path(
    get,
    path = "/cases/{id}/custody.html",
    tag = "safeguarding",
    summary = "The chain-of-custody log as HTML",
    description = "Roles: dsl, headteacher, admin.",
    params(("id" = String, Path)),
    responses((status = 200, description = "OK", content_type = "text/html", body = String))
)]
pub async fn custody_html(State(ctx): State<Ctx>, p: Principal, Path(id): Path<String>) -> Result<Response> {
    custody_as(ctx, p, id, "html".into()).await
}

/// `/api/v1/cases/{id}/custody.pdf`.
#[utoipa::path(
    get,
    path = "/cases/{id}/custody.pdf",
    tag = "safeguarding",
    summary = "The chain-of-custody log as PDF",
    description = "Roles: dsl, headteacher, admin.",
    params(("id" = String, Path)),
    responses((status = 200, description = "OK", content_type = "application/pdf", body = String))
)]
pub async fn custody_pdf(State(ctx): State<Ctx>, p: Principal, Path(id): Path<String>) -> Result<Response> {
    custody_as(ctx, p, id, "pdf".into()).await
}

async fn custody_as(ctx: Ctx, p: Principal, id: String, format: String) -> Result<Response> {
    p.require(Permission::Safeguarding)?;
    if !["json", "html", "pdf"].contains(&format.as_str()) {
        return Err(Error::unprocessable("format", "json, html or pdf"));
    }
    let report = ctx.safeguarding.custody(&p.actor(), uuid_param(&id, "case")?, &format).await?;
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

#[utoipa::path(
    post,
    path = "/cases/{id}/release-requests",
    tag = "safeguarding",
    summary = "Ask to release one device (udid) or the whole case",
    description = "Roles: dsl, headteacher, admin.",
    params(("id" = String, Path)),
    request_body = ReleaseRequest,
    responses((status = 201, description = "OK", body = CaseRequest), (status = 422, response = Unprocessable))
)]
pub async fn request_release(
    State(ctx): State<Ctx>,
    p: Principal,
    Path(id): Path<String>,
    extract::Json(r): extract::Json<ReleaseRequest>,
) -> Result<(StatusCode, Json<Value>)> {
    p.require(Permission::Safeguarding)?;
    Ok(created(ctx.safeguarding.request_release(&p, uuid_param(&id, "case")?, r).await?))
}

#[utoipa::path(
    post,
    path = "/cases/{id}/evidence/dispose-requests",
    tag = "safeguarding",
    summary = "Ask to dispose of a closed case's evidence",
    description = "Roles: dsl, headteacher, admin. Asked as a release is asked: `justification` and `advice_reference` (the advice that the police and other agencies no longer need the evidence), both required: a missing or empty one is 422 naming it. `confirmation` (who confirmed it) is optional. The case must be closed (409 case_open). A different dsl or the headteacher approves (409 second_person_required for the requester).",
    params(("id" = String, Path)),
    request_body = DisposeRequest,
    responses((status = 201, description = "OK", body = CaseRequest), (status = 422, response = Unprocessable))
)]
pub async fn request_disposal(
    State(ctx): State<Ctx>,
    p: Principal,
    Path(id): Path<String>,
    extract::Json(r): extract::Json<DisposeRequest>,
) -> Result<(StatusCode, Json<Value>)> {
    p.require(Permission::Safeguarding)?;
    Ok(created(ctx.safeguarding.request_disposal(&p, uuid_param(&id, "case")?, r).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    justification: String,
}

#[utoipa::path(
    post,
    path = "/release-requests/{id}/approve",
    tag = "safeguarding",
    summary = "Second signature: approve a release (409 second_person_required for the requester)",
    description = "Roles: dsl, headteacher.",
    params(("id" = String, Path)),
    request_body = Decision,
    responses((status = 200, description = "OK", body = Object), (status = 422, response = Unprocessable))
)]
pub async fn approve_request(
    State(ctx): State<Ctx>,
    p: Principal,
    Path(id): Path<String>,
    extract::Json(d): extract::Json<Decision>,
) -> Result<Json<Value>> {
    p.require(Permission::ApproveSecondPerson)?;
    Ok(Json(ctx.safeguarding.approve_case_request(&p, uuid_param(&id, "request")?, &d.justification, true).await?))
}

#[utoipa::path(
    post,
    path = "/release-requests/{id}/reject",
    tag = "safeguarding",
    summary = "Reject a release request",
    description = "Roles: dsl, headteacher.",
    params(("id" = String, Path)),
    request_body = Decision,
    responses((status = 200, description = "OK", body = Object), (status = 422, response = Unprocessable))
)]
pub async fn reject_request(
    State(ctx): State<Ctx>,
    p: Principal,
    Path(id): Path<String>,
    extract::Json(d): extract::Json<Decision>,
) -> Result<Json<Value>> {
    p.require(Permission::ApproveSecondPerson)?;
    Ok(Json(ctx.safeguarding.approve_case_request(&p, uuid_param(&id, "request")?, &d.justification, false).await?))
}

/// `/api/v1/dispose-requests/{id}/approve`: as a release's.
#[utoipa::path(
    post,
    path = "/dispose-requests/{id}/approve",
    tag = "safeguarding",
    summary = "Second signature: approve disposal",
    description = "Roles: dsl, headteacher.",
    params(("id" = String, Path)),
    request_body = Decision,
    responses((status = 200, description = "OK", body = Object), (status = 422, response = Unprocessable))
)]
pub async fn approve_dispose_request(
    state: State<Ctx>,
    p: Principal,
    id: Path<String>,
    body: extract::Json<Decision>,
) -> Result<Json<Value>> {
    approve_request(state, p, id, body).await
}

/// `/api/v1/dispose-requests/{id}/reject`: as a release's.
#[utoipa::path(
    post,
    path = "/dispose-requests/{id}/reject",
    tag = "safeguarding",
    summary = "Reject a disposal request",
    description = "Roles: dsl, headteacher.",
    params(("id" = String, Path)),
    request_body = Decision,
    responses((status = 200, description = "OK", body = Object), (status = 422, response = Unprocessable))
)]
pub async fn reject_dispose_request(
    state: State<Ctx>,
    p: Principal,
    id: Path<String>,
    body: extract::Json<Decision>,
) -> Result<Json<Value>> {
    reject_request(state, p, id, body).await
}

/// `/api/v1/cases/{id}/evidence/dispose-requests/{rid}/approve`: the same as the short form.
#[utoipa::path(
    post,
    path = "/cases/{id}/evidence/dispose-requests/{rid}/approve",
    tag = "safeguarding",
    summary = "Second signature: approve disposal",
    description = "Roles: dsl, headteacher.",
    params(("id" = String, Path), ("rid" = String, Path)),
    request_body = Decision,
    responses((status = 200, description = "OK", body = Object), (status = 422, response = Unprocessable))
)]
pub async fn approve_disposal(
    state: State<Ctx>,
    p: Principal,
    Path((_case, rid)): Path<(String, String)>,
    body: extract::Json<Decision>,
) -> Result<Json<Value>> {
    approve_request(state, p, Path(rid), body).await
}

#[utoipa::path(
    get,
    path = "/devices/{udid}/lock-pin",
    tag = "safeguarding",
    summary = "Reveal a quarantined Mac's lock PIN (logged)",
    description = "Roles: dsl, headteacher, admin.",
    params(("udid" = String, Path), JustificationQuery),
    responses((status = 200, description = "OK", body = Object))
)]
pub async fn lock_pin(
    State(ctx): State<Ctx>,
    p: Principal,
    Path(udid): Path<String>,
    Query(q): Query<JustificationQuery>,
) -> Result<Json<Value>> {
    p.require(Permission::Safeguarding)?;
    Ok(Json(ctx.safeguarding.reveal_lock_pin(&p.actor(), &udid, q.justification.as_deref().unwrap_or("")).await?))
}

#[utoipa::path(
    get,
    path = "/cases/report",
    tag = "safeguarding",
    summary = "Governors' report: counts by kind and month, open cases, devices on hold (no names)",
    description = "Roles: dsl, headteacher, admin, auditor.",
    responses((status = 200, description = "OK", body = Object))
)]
pub async fn report(State(ctx): State<Ctx>, p: Principal) -> Result<Json<Value>> {
    // No names in it: governors (auditor role) may read it too.
    if !(p.role.allows(Permission::Safeguarding) || p.role == Role::Auditor) {
        return Err(Error::Forbidden(format!("the {} role cannot read the safeguarding report", p.role)));
    }
    Ok(Json(ctx.safeguarding.cases_report().await?))
}

#[utoipa::path(
    get,
    path = "/notifications",
    tag = "safeguarding",
    summary = "Notifications for your role (staff cases, CheckOut during hold)",
    description = "Roles: dsl, headteacher, admin.",
    responses((status = 200, description = "OK", body = Page<NotificationSchema>))
)]
pub async fn notifications(State(ctx): State<Ctx>, p: Principal) -> Result<Json<Page<crate::store::NotificationRecord>>> {
    p.require(Permission::Safeguarding)?;
    let role = if p.role == Role::Admin { "headteacher" } else { p.role.as_str() };
    Ok(Json(Page { items: ctx.operators.notifications(role, 200).await?, next_cursor: None }))
}

#[utoipa::path(
    delete,
    path = "/devices/{udid}",
    tag = "devices",
    summary = "Retire a device record and its results (409 legal_hold while quarantined)",
    description = "Roles: admin, technician.",
    params(("udid" = String, Path)),
    responses((status = 204, description = "Retired"))
)]
pub async fn retire_device(State(ctx): State<Ctx>, p: Principal, Path(udid): Path<String>) -> Result<StatusCode> {
    p.require(Permission::ManageDevices)?;
    ctx.commands.retire_device(&p.actor(), &udid).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A release or disposal request, as its answers show it.
// `crate::services::safeguarding::release::request_json` writes it.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct CaseRequest {
    id: uuid::Uuid,
    case_id: uuid::Uuid,
    #[schema(schema_with = case_request_kind)]
    kind: String,
    /// The device to release; null for the whole case (and for a disposal).
    udid: Option<String>,
    #[schema(schema_with = case_request_state)]
    state: String,
    requested_by: String,
    requested_at: chrono::DateTime<chrono::Utc>,
    justification: String,
    /// A release's or disposal's advice reference (null only on disposals asked before it was
    /// required).
    advice_reference: Option<String>,
    restore_access: bool,
    /// A disposal's optional confirmation: who confirmed the advice.
    confirmation: Option<String>,
    decided_by: Option<String>,
    decided_at: Option<chrono::DateTime<chrono::Utc>>,
    decision_justification: Option<String>,
}

fn case_request_kind() -> utoipa::openapi::schema::Object {
    crate::schema::string_enum(&["release", "dispose"], None)
}

fn case_request_state() -> utoipa::openapi::schema::Object {
    crate::schema::string_enum(&["pending", "approved", "rejected"], None)
}
