//! `GET/PUT /api/v1/push-cert`: the school's MDM push certificate, and
//! `/api/v1/push-cert/requests`: the requests Lanyard makes for Apple's portal.

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
use crate::services::push::certificate::{PushCertInfo, PushCertRequestInfo, PushCertUpload, VendorFiles};

/// The certificate Apple returned for Lanyard's request (`cert_pem` alone: its key is the
/// request's), or a certificate and key as PEM (`cert_pem` and `key_pem`), or a .p12
/// (`p12_base64`, with its `password` if it has one).
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
    description = "Roles: admin. `cert_pem` alone is matched to the pending request (POST /push-cert/requests) whose key it was issued for. A certificate with another topic than the loaded one (Create chosen instead of Renew in Apple's portal) is refused with 409 `topic_mismatch` unless `force`.",
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
        (Some(c), None, None) => PushCertUpload::Certificate { cert_pem: c.into_bytes() },
        _ => {
            return Err(Error::unprocessable(
                "cert_pem",
                "send {\"cert_pem\"} (the certificate Apple returned for Lanyard's request), {\"cert_pem\",\"key_pem\"}, or {\"p12_base64\",\"password\"}",
            ));
        }
    };
    Ok(Json(ctx.push.load_push_cert(&p.actor(), upload, q.force).await?))
}

#[utoipa::path(
    get,
    path = "/push-cert",
    tag = "push",
    summary = "The loaded push certificate: subject, topic, expiry",
    description = "Roles: admin, technician, dsl, headteacher, auditor. `pending_request` is a request made for the renewal whose certificate is not loaded yet. 404 when none is loaded (naming the pending request, if any).",
    responses((status = 200, description = "OK", body = PushCertInfo), (status = 404, description = "No push certificate loaded"))
)]
pub async fn get_push_cert(State(ctx): State<Ctx>, p: Principal) -> Result<Json<PushCertInfo>> {
    p.require(Permission::ReadDevices)?;
    if let Some(info) = ctx.push.push_cert_info().await? {
        return Ok(Json(info));
    }
    Err(Error::not_found(match ctx.push.pending_push_cert_request().await? {
        Some(r) => format!(
            "no push certificate loaded yet: request {} ({}) is pending; upload it at https://identity.apple.com/pushcert and load what Apple returns with PUT /api/v1/push-cert {{\"cert_pem\"}}",
            r.id,
            if r.signed { "vendor-signed" } else { "a bare CSR, to be signed by an MDM vendor certificate" }
        ),
        None => "no push certificate loaded: make a request (POST /api/v1/push-cert/requests or `lanyard push-cert request`), upload it to Apple's Push Certificates Portal, and load the certificate it returns with PUT /api/v1/push-cert".to_owned(),
    }))
}

/// An MDM vendor certificate to sign the request with: the certificate (PEM, possibly with
/// Apple's intermediate and root after it), optionally the chain separately, and its key (PEM).
/// An empty body makes a bare CSR.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct NewPushCertRequest {
    vendor_cert_pem: Option<String>,
    vendor_chain_pem: Option<String>,
    vendor_key_pem: Option<String>,
}

#[utoipa::path(
    post,
    path = "/push-cert/requests",
    tag = "push",
    summary = "Make a push-certificate request for Apple's portal",
    description = "Roles: admin. Lanyard makes the push key (sealed in its database; it never leaves) and a CSR. With an MDM vendor certificate and key, it signs the CSR into the file Apple's Push Certificates Portal takes (`request_file`: base64 of the plist with `PushCertRequestCSR`, `PushCertCertificateChain`, `PushCertSignature`); without, `csr_pem` is for whoever signs for the school (README, \"Apple push certificate\"). The vendor key is used once and not stored.",
    request_body(content = NewPushCertRequest, description = "empty, or the vendor certificate and key"),
    responses((status = 201, description = "Created", body = PushCertRequestInfo), (status = 422, response = Unprocessable))
)]
pub async fn create_push_cert_request(
    State(ctx): State<Ctx>,
    p: Principal,
    body: axum::body::Bytes,
) -> Result<(axum::http::StatusCode, Json<PushCertRequestInfo>)> {
    p.require(Permission::ManagePushCert)?;
    let r: NewPushCertRequest =
        if body.iter().all(u8::is_ascii_whitespace) { NewPushCertRequest::default() } else { extract::parse_json(&body)? };
    let vendor = match (r.vendor_cert_pem, r.vendor_key_pem) {
        (Some(cert), Some(key)) => {
            Some(VendorFiles { cert: cert.into_bytes(), chain: r.vendor_chain_pem.map(String::into_bytes), key: key.into_bytes() })
        }
        (None, None) if r.vendor_chain_pem.is_none() => None,
        (_, None) => return Err(Error::unprocessable("vendor_key_pem", "missing: the vendor certificate's private key signs the request")),
        (None, _) => {
            return Err(Error::unprocessable("vendor_cert_pem", "missing: the MDM vendor certificate (from Apple's developer account)"));
        }
    };
    Ok((axum::http::StatusCode::CREATED, Json(ctx.push.request_push_cert(&p.actor(), vendor).await?)))
}

#[utoipa::path(
    get,
    path = "/push-cert/requests/{id}",
    tag = "push",
    summary = "One push-certificate request: its CSR, request file and the steps",
    description = "Roles: admin.",
    params(("id" = uuid::Uuid, Path)),
    responses((status = 200, description = "OK", body = PushCertRequestInfo), (status = 404, description = "No such request"))
)]
pub async fn get_push_cert_request(
    State(ctx): State<Ctx>,
    p: Principal,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Json<PushCertRequestInfo>> {
    p.require(Permission::ManagePushCert)?;
    Ok(Json(ctx.push.push_cert_request(extract::uuid_param(&id, "push certificate request")?).await?))
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
