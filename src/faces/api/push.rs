//! `GET/PUT /api/v1/push-cert`: the school's MDM push certificate.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::extract::{self, Query};
use super::openapi::Unprocessable;
use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::services::auth::{Permission, Principal};
use crate::services::commands::queue::QueueView;
use crate::services::push::certificate::{PushCertInfo, PushCertUpload};

/// The certificate and key as PEM (`cert_pem` and `key_pem`), or a .p12 (`p12_base64`, with its
/// `password` if it has one).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Upload {
    cert_pem: Option<String>,
    key_pem: Option<String>,
    p12_base64: Option<String>,
    password: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ForceQuery {
    /// allow a different topic (orphans enrolled devices)
    #[serde(default)]
    #[param(required = false)]
    force: bool,
}

#[utoipa::path(
    put,
    path = "/push-cert",
    tag = "push",
    summary = "Load or renew the MDM push certificate",
    description = "Roles: admin.",
    params(ForceQuery),
    request_body = Upload,
    responses((status = 200, description = "OK", body = PushCertInfo), (status = 422, response = Unprocessable))
)]
pub async fn put_push_cert(
    State(ctx): State<Ctx>,
    p: Principal,
    Query(q): Query<ForceQuery>,
    extract::Json(u): extract::Json<Upload>,
) -> Result<Json<PushCertInfo>> {
    p.require(Permission::ManagePushCert)?;
    let upload = match (u.cert_pem, u.key_pem, u.p12_base64) {
        (Some(c), Some(k), None) => PushCertUpload::Pem { cert_pem: c.into_bytes(), key_pem: k.into_bytes() },
        (None, None, Some(p12)) => PushCertUpload::from_p12_base64(&p12, u.password.unwrap_or_default())?,
        (Some(_), None, None) => {
            return Err(Error::unprocessable("key_pem", "missing: send the private key with the certificate"));
        }
        _ => {
            return Err(Error::unprocessable("cert_pem", "send either {\"cert_pem\",\"key_pem\"} or {\"p12_base64\",\"password\"}"));
        }
    };
    Ok(Json(ctx.push.load_push_cert(&p.actor(), upload, q.force).await?))
}

#[utoipa::path(
    get,
    path = "/push-cert",
    tag = "push",
    summary = "The loaded push certificate: subject, topic, expiry",
    description = "Roles: admin, technician, dsl, headteacher, auditor.",
    responses((status = 200, description = "OK", body = PushCertInfo))
)]
pub async fn get_push_cert(State(ctx): State<Ctx>, p: Principal) -> Result<Json<PushCertInfo>> {
    p.require(Permission::ReadDevices)?;
    ctx.push.push_cert_info().await?.map(Json).ok_or_else(|| {
        Error::not_found("no push certificate loaded: get one from Apple's Push Certificates Portal and load it with `lanyard push-cert import` or PUT /api/v1/push-cert")
    })
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PushRequest {
    targets: Vec<String>,
}

/// `POST /api/v1/push` `{"targets": [...]}`: wake these devices now.
#[utoipa::path(
    post,
    path = "/push",
    tag = "push",
    summary = "Push these devices now",
    description = "Roles: admin, technician.",
    request_body = PushRequest,
    responses((status = 200, description = "OK", body = crate::services::push::PushSummary), (status = 422, response = Unprocessable))
)]
pub async fn push_many(
    State(ctx): State<Ctx>,
    p: Principal,
    extract::Json(r): extract::Json<PushRequest>,
) -> Result<Json<crate::services::push::PushSummary>> {
    p.require(Permission::ManageDevices)?;
    if r.targets.is_empty() || r.targets.len() > crate::services::commands::MAX_TARGETS {
        return Err(Error::unprocessable("targets", format!("1 to {} devices", crate::services::commands::MAX_TARGETS)));
    }
    let summary = ctx.push.push_devices(&r.targets).await?;
    ctx.audit.audit(&p.actor(), "push.send", None, serde_json::json!({"targets": r.targets.len(), "delivered": summary.delivered})).await?;
    Ok(Json(summary))
}

/// `POST /api/v1/devices/{udid}/push`.
#[utoipa::path(
    post,
    path = "/devices/{udid}/push",
    tag = "push",
    summary = "Push one device now",
    description = "Roles: admin, technician.",
    params(("udid" = String, Path)),
    responses((status = 200, description = "OK", body = crate::services::push::PushSummary))
)]
pub async fn push_device(
    State(ctx): State<Ctx>,
    p: Principal,
    axum::extract::Path(udid): axum::extract::Path<String>,
) -> Result<Json<crate::services::push::PushSummary>> {
    p.require(Permission::ManageDevices)?;
    if ctx.devices.device(&udid).await?.is_none() {
        return Err(Error::not_found(format!("no device with UDID {udid}")));
    }
    let summary = ctx.push.push_devices(std::slice::from_ref(&udid)).await?;
    ctx.audit.audit(&p.actor(), "push.send", Some(&udid), serde_json::json!({"outcomes": summary.outcomes})).await?;
    Ok(Json(summary))
}

/// `GET /api/v1/devices/{udid}/queue`: what is pending and why it has not arrived.
#[utoipa::path(
    get,
    path = "/devices/{udid}/queue",
    tag = "push",
    summary = "What is pending for a device, its push history, and why nothing has arrived",
    description = "Roles: admin, technician, dsl, headteacher, auditor.",
    params(("udid" = String, Path)),
    responses((status = 200, description = "OK", body = QueueView))
)]
pub async fn device_queue(
    State(ctx): State<Ctx>,
    p: Principal,
    axum::extract::Path(udid): axum::extract::Path<String>,
) -> Result<Json<crate::services::commands::queue::QueueView>> {
    p.require(Permission::ReadDevices)?;
    Ok(Json(ctx.commands.queue_view(&udid).await?))
}
