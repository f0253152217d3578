//! `/api/v1/ade/...`: Apple School Manager: Lanyard's public key for it, the server tokens, their
//! sync, and the devices they list.

use axum::Json;
use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;

use super::created;
use super::extract::{Page, Query, page_limit, uuid_param};
use super::openapi::Unprocessable;
use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::services::ade::assign::{AssignReport, AssignmentRules};
use crate::services::ade::profiles::{AdeProfileInfo, AdeProfileInput};
use crate::services::ade::{AdeDeviceInfo, AdeTokenInfo};
use crate::services::auth::{Permission, Principal};
use crate::store::AdeDeviceFilter;

#[utoipa::path(
    get,
    path = "/ade/public-key",
    tag = "ade",
    summary = "The certificate to upload in Apple School Manager when adding Lanyard as an MDM server",
    description = "Roles: admin. PEM. Server tokens ASM issues for that MDM server are encrypted to it; its key stays sealed in Lanyard.",
    responses((status = 200, description = "PEM certificate", content_type = "application/x-pem-file", body = String))
)]
pub async fn public_key(State(ctx): State<Ctx>, p: Principal) -> Result<Response> {
    p.require(Permission::ManageAde)?;
    let pem = ctx.ade.public_key().await?;
    Ok(([(header::CONTENT_TYPE, "application/x-pem-file"), (header::CONTENT_DISPOSITION, "attachment; filename=\"lanyard-ade.pem\"")], pem)
        .into_response())
}

#[utoipa::path(
    post,
    path = "/ade/tokens",
    tag = "ade",
    summary = "Upload a server token (.p7m) from Apple School Manager",
    description = "Roles: admin. The body is the `.p7m` file as ASM downloads it (raw, any content type), or multipart with it in a part named `token`. Lanyard decrypts it with its ADE key, checks it with Apple (`GET /account`) and stores it sealed. A token for a server Lanyard already has renews it (its devices kept). A file that is not a token, a token encrypted to another key, an expired token or one Apple refuses: 422 with the reason, nothing stored.",
    request_body(content = String, description = "the .p7m file", content_type = "application/pkcs7-mime"),
    responses((status = 201, description = "Stored", body = AdeTokenInfo), (status = 422, response = Unprocessable), (status = 503, description = "Apple could not be reached"))
)]
pub async fn upload_token(State(ctx): State<Ctx>, p: Principal, req: Request) -> Result<(StatusCode, Json<AdeTokenInfo>)> {
    p.require(Permission::ManageAde)?;
    let is_multipart =
        req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("multipart/form-data"));
    let file = if is_multipart {
        let mut mp = Multipart::from_request(req, &ctx).await.map_err(|e| Error::BadRequest(format!("multipart body: {e}")))?;
        let mut found = None;
        while let Some(field) = mp.next_field().await.map_err(|e| Error::BadRequest(format!("multipart body: {e}")))? {
            if field.name() == Some("token") {
                found = Some(field.bytes().await.map_err(|e| Error::BadRequest(format!("multipart body: {e}")))?);
            }
        }
        found.ok_or_else(|| Error::unprocessable("token", "send the .p7m file in a part named \"token\""))?
    } else {
        axum::body::Bytes::from_request(req, &ctx).await.map_err(|_| Error::PayloadTooLarge { limit: super::extract::API_BODY_LIMIT })?
    };
    if file.is_empty() {
        return Err(Error::unprocessable("token", "empty: send the .p7m file Apple School Manager downloads"));
    }
    Ok(created(ctx.ade.upload_token(&p.actor(), &file).await?).into())
}

#[utoipa::path(
    get,
    path = "/ade/tokens",
    tag = "ade",
    summary = "Apple School Manager tokens: expiry, last sync, errors, device counts",
    description = "Roles: admin, technician, dsl, headteacher, auditor.",
    responses((status = 200, description = "OK", body = Page<AdeTokenInfo>))
)]
pub async fn list_tokens(State(ctx): State<Ctx>, p: Principal) -> Result<Json<Page<AdeTokenInfo>>> {
    p.require(Permission::ReadDevices)?;
    Ok(Json(Page { items: ctx.ade.tokens().await?, next_cursor: None }))
}

#[utoipa::path(
    get,
    path = "/ade/tokens/{id}",
    tag = "ade",
    summary = "One Apple School Manager token, with its sync progress",
    description = "Roles: admin, technician, dsl, headteacher, auditor.",
    params(("id" = uuid::Uuid, Path)),
    responses((status = 200, description = "OK", body = AdeTokenInfo), (status = 404, description = "No such token"))
)]
pub async fn get_token(State(ctx): State<Ctx>, p: Principal, Path(id): Path<String>) -> Result<Json<AdeTokenInfo>> {
    p.require(Permission::ReadDevices)?;
    Ok(Json(ctx.ade.token(uuid_param(&id, "token")?).await?))
}

#[utoipa::path(
    delete,
    path = "/ade/tokens/{id}",
    tag = "ade",
    summary = "Forget an Apple School Manager token and the device list it brought",
    description = "Roles: admin. Enrolled devices are not touched.",
    params(("id" = uuid::Uuid, Path)),
    responses((status = 204, description = "Deleted"), (status = 404, description = "No such token"))
)]
pub async fn delete_token(State(ctx): State<Ctx>, p: Principal, Path(id): Path<String>) -> Result<StatusCode> {
    p.require(Permission::ManageAde)?;
    ctx.ade.delete_token(&p.actor(), uuid_param(&id, "token")?).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post,
    path = "/ade/tokens/{id}/sync",
    tag = "ade",
    summary = "Sync this token's devices now",
    description = "Roles: admin, technician. Starts the sync in the background: 202 with the token, whose `sync_state`, `sync_devices` and `last_error` show progress (GET /ade/tokens/{id}).",
    params(("id" = uuid::Uuid, Path)),
    responses((status = 202, description = "Started (or already running)", body = AdeTokenInfo), (status = 404, description = "No such token"))
)]
pub async fn sync_token(State(ctx): State<Ctx>, p: Principal, Path(id): Path<String>) -> Result<(StatusCode, Json<AdeTokenInfo>)> {
    p.require(Permission::ManageDevices)?;
    Ok((StatusCode::ACCEPTED, Json(ctx.ade.request_sync(&p.actor(), uuid_param(&id, "token")?).await?)))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeviceQuery {
    /// only this token's devices
    #[param(required = false)]
    token: Option<String>,
    /// ASM's profile status: empty, assigned, pushed, removed
    #[param(required = false)]
    profile_status: Option<String>,
    /// serial number, model, description or asset tag contains this
    #[param(required = false)]
    q: Option<String>,
    #[param(required = false)]
    limit: Option<i64>,
    /// `next_cursor` of the previous page
    #[param(required = false)]
    cursor: Option<String>,
}

#[utoipa::path(
    get,
    path = "/ade/devices",
    tag = "ade",
    summary = "The devices Apple School Manager assigned to Lanyard, and the enrolled device each matches",
    description = "Roles: admin, technician. By serial number; `removed_but_enrolled` marks a device ASM no longer lists that is still enrolled.",
    params(DeviceQuery),
    responses((status = 200, description = "OK", body = Page<AdeDeviceInfo>), (status = 422, response = Unprocessable))
)]
pub async fn list_devices(State(ctx): State<Ctx>, p: Principal, Query(q): Query<DeviceQuery>) -> Result<Json<Page<AdeDeviceInfo>>> {
    p.require(Permission::ManageDevices)?;
    let filter = AdeDeviceFilter {
        token: q.token.as_deref().filter(|t| !t.is_empty()).map(|t| uuid_param(t, "token")).transpose()?,
        profile_status: match q.profile_status.as_deref().filter(|s| !s.is_empty()) {
            Some(s @ ("empty" | "assigned" | "pushed" | "removed")) => Some(s.to_owned()),
            Some(other) => {
                return Err(Error::unprocessable("profile_status", format!("expected empty, assigned, pushed or removed, got {other:?}")));
            }
            None => None,
        },
        q: q.q.filter(|s| !s.trim().is_empty()).map(|s| s.trim().to_owned()),
        after: q.cursor.filter(|c| !c.is_empty()),
        limit: page_limit(q.limit)?,
    };
    let items = ctx.ade.devices(&filter).await?;
    let next_cursor = (items.len() as i64 == filter.limit).then(|| items.last().map(|d| d.serial_number.clone())).flatten();
    Ok(Json(Page { items, next_cursor }))
}

#[utoipa::path(
    post,
    path = "/ade/profiles",
    tag = "ade",
    summary = "Make an ADE profile: what Setup Assistant does on a new iPad from Apple School Manager",
    description = "Roles: admin, technician. Defaults: `is_supervised` true, `is_mandatory` true, `is_mdm_removable` false, `await_device_configured` true, `allow_pairing` false. `skip_setup_items` must be Apple's skip keys. Checked as Apple checks it (422 naming the field). It is defined with Apple per token when a sync or an assignment first needs it.",
    request_body = AdeProfileInput,
    responses((status = 201, description = "Created", body = AdeProfileInfo), (status = 409, description = "A profile has this name"), (status = 422, response = Unprocessable))
)]
pub async fn create_profile(
    State(ctx): State<Ctx>,
    p: Principal,
    super::extract::Json(input): super::extract::Json<AdeProfileInput>,
) -> Result<(StatusCode, Json<AdeProfileInfo>)> {
    p.require(Permission::ManageDevices)?;
    Ok(created(ctx.ade.create_profile(&p.actor(), input).await?).into())
}

#[utoipa::path(
    get,
    path = "/ade/profiles",
    tag = "ade",
    summary = "ADE profiles",
    description = "Roles: admin, technician, dsl, headteacher, auditor.",
    responses((status = 200, description = "OK", body = Page<AdeProfileInfo>))
)]
pub async fn list_profiles(State(ctx): State<Ctx>, p: Principal) -> Result<Json<Page<AdeProfileInfo>>> {
    p.require(Permission::ReadDevices)?;
    Ok(Json(Page { items: ctx.ade.profiles().await?, next_cursor: None }))
}

#[utoipa::path(
    get,
    path = "/ade/profiles/{id}",
    tag = "ade",
    summary = "One ADE profile",
    description = "Roles: admin, technician, dsl, headteacher, auditor.",
    params(("id" = uuid::Uuid, Path)),
    responses((status = 200, description = "OK", body = AdeProfileInfo), (status = 404, description = "No such profile"))
)]
pub async fn get_profile(State(ctx): State<Ctx>, p: Principal, Path(id): Path<String>) -> Result<Json<AdeProfileInfo>> {
    p.require(Permission::ReadDevices)?;
    Ok(Json(ctx.ade.profile(uuid_param(&id, "profile")?).await?))
}

#[utoipa::path(
    put,
    path = "/ade/profiles/{id}",
    tag = "ade",
    summary = "Change an ADE profile",
    description = "Roles: admin, technician. Apple's profiles cannot change: the next sync defines it again and moves the devices that had the old version to the new one (they see it at their next Setup Assistant).",
    params(("id" = uuid::Uuid, Path)),
    request_body = AdeProfileInput,
    responses((status = 200, description = "OK", body = AdeProfileInfo), (status = 404, description = "No such profile"), (status = 422, response = Unprocessable))
)]
pub async fn update_profile(
    State(ctx): State<Ctx>,
    p: Principal,
    Path(id): Path<String>,
    super::extract::Json(input): super::extract::Json<AdeProfileInput>,
) -> Result<Json<AdeProfileInfo>> {
    p.require(Permission::ManageDevices)?;
    Ok(Json(ctx.ade.update_profile(&p.actor(), uuid_param(&id, "profile")?, input).await?))
}

#[utoipa::path(
    delete,
    path = "/ade/profiles/{id}",
    tag = "ade",
    summary = "Delete an ADE profile no assignment rule names",
    description = "Roles: admin, technician. 409 `profile_in_use` while a token's rules name it.",
    params(("id" = uuid::Uuid, Path)),
    responses((status = 204, description = "Deleted"), (status = 404, description = "No such profile"), (status = 409, description = "In use"))
)]
pub async fn delete_profile(State(ctx): State<Ctx>, p: Principal, Path(id): Path<String>) -> Result<StatusCode> {
    p.require(Permission::ManageDevices)?;
    ctx.ade.delete_profile(&p.actor(), uuid_param(&id, "profile")?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Serial numbers to give the profile.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SerialList {
    serials: Vec<String>,
}

#[utoipa::path(
    post,
    path = "/ade/profiles/{id}/devices",
    tag = "ade",
    summary = "Assign this ADE profile to devices by hand",
    description = "Roles: admin, technician. `{\"serials\": [...]}` (1 to 10,000): each serial's answer from Apple (`SUCCESS`, `NOT_ACCESSIBLE`, `FAILED`, `THROTTLED`), or `NOT_IN_ASM` for a serial no token lists. Refused serials are tried again by later syncs only if the rules name this profile for them.",
    params(("id" = uuid::Uuid, Path)),
    request_body = SerialList,
    responses((status = 200, description = "OK", body = AssignReport), (status = 404, description = "No such profile"), (status = 422, response = Unprocessable), (status = 503, description = "Apple could not be reached"))
)]
pub async fn assign_profile(
    State(ctx): State<Ctx>,
    p: Principal,
    Path(id): Path<String>,
    super::extract::Json(body): super::extract::Json<SerialList>,
) -> Result<Json<AssignReport>> {
    p.require(Permission::ManageDevices)?;
    let serials = body.serials.into_iter().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect();
    Ok(Json(ctx.ade.assign_profile(&p.actor(), uuid_param(&id, "profile")?, serials).await?))
}

#[utoipa::path(
    get,
    path = "/ade/tokens/{id}/assignment",
    tag = "ade",
    summary = "Which ADE profile this token's new devices get",
    description = "Roles: admin, technician, dsl, headteacher, auditor.",
    params(("id" = uuid::Uuid, Path)),
    responses((status = 200, description = "OK", body = AssignmentRules), (status = 404, description = "No such token"))
)]
pub async fn get_assignment(State(ctx): State<Ctx>, p: Principal, Path(id): Path<String>) -> Result<Json<AssignmentRules>> {
    p.require(Permission::ReadDevices)?;
    Ok(Json(ctx.ade.assignment_rules(uuid_param(&id, "token")?).await?))
}

#[utoipa::path(
    put,
    path = "/ade/tokens/{id}/assignment",
    tag = "ade",
    summary = "Set which ADE profile this token's new devices get",
    description = "Roles: admin, technician. `{\"default_profile\": id, \"rules\": [{\"profile\": id, \"device_family\"?: \"iPad\", \"model\"?: \"iPad Air\", \"serials\"?: [...]}]}`: the first rule whose conditions all hold wins, else the default. Each sync assigns it to devices that have no profile (or an older version of it); devices given a profile outside Lanyard are left alone.",
    params(("id" = uuid::Uuid, Path)),
    request_body = AssignmentRules,
    responses((status = 200, description = "OK", body = AssignmentRules), (status = 404, description = "No such token"), (status = 422, response = Unprocessable))
)]
pub async fn put_assignment(
    State(ctx): State<Ctx>,
    p: Principal,
    Path(id): Path<String>,
    super::extract::Json(rules): super::extract::Json<AssignmentRules>,
) -> Result<Json<AssignmentRules>> {
    p.require(Permission::ManageDevices)?;
    Ok(Json(ctx.ade.set_assignment_rules(&p.actor(), uuid_param(&id, "token")?, rules).await?))
}
