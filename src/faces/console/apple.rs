//! `/ui/apple`: Apple's portals, step by step: the MDM push certificate (make the request,
//! download it, load what Apple returns, renew) and Apple School Manager (Lanyard's public key,
//! the server tokens, sync now). Everything here is also in the API (`/api/v1/push-cert`,
//! `/api/v1/push-cert/requests`, `/api/v1/ade/...`).

use askama::Template;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Redirect};

use super::{Form, Nav, Params, Session, UiError, UiResult, render, when};
use crate::context::Ctx;
use crate::services::ade::AdeTokenInfo;
use crate::services::auth::Permission;
use crate::services::push::certificate::{PushCertInfo, PushCertRequestInfo, PushCertUpload, REQUEST_STEPS, VendorFiles};

#[derive(Template)]
#[template(path = "apple.html")]
struct ApplePage {
    nav: Nav,
    done: Option<&'static str>,
    cert: Option<PushCertInfo>,
    /// `notice-ok`, `notice-warn` or `notice-bad`, for the certificate's state.
    cert_class: &'static str,
    cert_expires: String,
    pending: Option<PushCertRequestInfo>,
    pending_made: String,
    steps: [&'static str; 3],
    ade_tokens: Vec<AdeTokenRow>,
}

struct AdeTokenRow {
    id: String,
    server_name: String,
    org_name: String,
    /// `notice-ok`, `notice-warn` or `notice-bad`.
    class: &'static str,
    state: String,
    expires: String,
    last_sync: String,
    devices: String,
    running: bool,
}

impl AdeTokenRow {
    fn from(t: AdeTokenInfo) -> AdeTokenRow {
        let class = match t.status.as_str() {
            "ok" => "notice-ok",
            "expiring" => "notice-warn",
            _ => "notice-bad",
        };
        let state = match (&t.warning, &t.last_error) {
            (Some(w), _) => super::sentence(w),
            (None, Some(e)) => format!("The last sync failed: {}", super::sentence(e)),
            (None, None) => "Working.".to_owned(),
        };
        AdeTokenRow {
            id: t.id.to_string(),
            class,
            state,
            expires: format!("{} ({} days)", when(t.expires_at), t.days_left),
            last_sync: match (t.sync_state.as_str(), t.last_sync_at) {
                ("running", _) => format!("Syncing now: {} devices so far", t.sync_devices),
                (_, Some(at)) => when(at),
                (_, None) => "Not yet".to_owned(),
            },
            devices: match (t.migrating, &t.next_migration_deadline) {
                (0, _) | (_, None) => format!("{} listed, {} enrolled, {} removed in ASM", t.devices, t.enrolled, t.removed),
                (m, Some(deadline)) => format!(
                    "{} listed, {} enrolled, {} removed in ASM; {m} moving here from another MDM server, to enrol by {deadline}",
                    t.devices, t.enrolled, t.removed
                ),
            },
            running: t.sync_state == "running",
            server_name: t.server_name,
            org_name: t.org_name,
        }
    }
}

pub async fn page(State(ctx): State<Ctx>, s: Session, p: Params) -> UiResult {
    s.require(Permission::ManagePushCert)?;
    let done = match p.get("done") {
        Some("requested") => Some("Request made. Download it below and take it to Apple's Push Certificates Portal."),
        Some("loaded") => Some("Push certificate loaded. Devices can now be woken with it."),
        Some("token") => Some("Server token uploaded and checked with Apple. Its devices are being synced."),
        Some("syncing") => Some("Sync started. Reload this page to see its progress."),
        Some("deleted") => Some("Token removed. Enrolled devices are not affected."),
        _ => None,
    };
    let cert = ctx.push.push_cert_info().await?;
    let pending = ctx.push.pending_push_cert_request().await?;
    let cert_class = match cert.as_ref().map(|c| c.status) {
        Some("ok") if cert.as_ref().is_some_and(|c| c.apns_error.is_none()) => "notice-ok",
        Some("ok" | "expiring") => "notice-warn",
        _ => "notice-bad",
    };
    Ok(render(&ApplePage {
        nav: Nav::new(&s, "apple"),
        done,
        cert_expires: cert.as_ref().map(|c| when(c.not_after)).unwrap_or_default(),
        cert_class,
        cert,
        pending_made: pending.as_ref().map(|r| format!("{} by {}", when(r.created_at), r.created_by)).unwrap_or_default(),
        pending,
        steps: REQUEST_STEPS,
        ade_tokens: ctx.ade.tokens().await?.into_iter().map(AdeTokenRow::from).collect(),
    }))
}

/// Lanyard's public key for Apple School Manager, as a file.
pub async fn ade_public_key(State(ctx): State<Ctx>, s: Session) -> UiResult {
    s.require(Permission::ManageAde)?;
    let pem = ctx.ade.public_key().await?;
    Ok(([(header::CONTENT_TYPE, "application/x-pem-file"), (header::CONTENT_DISPOSITION, "attachment; filename=\"lanyard-ade.pem\"")], pem)
        .into_response())
}

/// Upload a server token (.p7m) and start its first sync.
pub async fn ade_upload(State(ctx): State<Ctx>, form: Form) -> UiResult {
    let s = &form.session;
    s.require(Permission::ManageAde)?;
    let (_, file) =
        form.file("token").ok_or_else(|| UiError::field("Server token", "choose the .p7m file Apple School Manager downloaded"))?;
    let t = ctx.ade.upload_token(&s.actor(), file).await?;
    ctx.ade.request_sync(&s.actor(), t.id).await?;
    Ok(Redirect::to("/ui/apple?done=token").into_response())
}

pub async fn ade_sync(State(ctx): State<Ctx>, Path(id): Path<String>, form: Form) -> UiResult {
    let s = &form.session;
    s.require(Permission::ManageDevices)?;
    ctx.ade.request_sync(&s.actor(), crate::faces::api::extract::uuid_param(&id, "token")?).await?;
    Ok(Redirect::to("/ui/apple?done=syncing").into_response())
}

pub async fn ade_delete(State(ctx): State<Ctx>, Path(id): Path<String>, form: Form) -> UiResult {
    let s = &form.session;
    s.require(Permission::ManageAde)?;
    ctx.ade.delete_token(&s.actor(), crate::faces::api::extract::uuid_param(&id, "token")?).await?;
    Ok(Redirect::to("/ui/apple?done=deleted").into_response())
}

/// Make a request: bare, or signed with the vendor certificate files given.
pub async fn request(State(ctx): State<Ctx>, form: Form) -> UiResult {
    let s = &form.session;
    s.require(Permission::ManagePushCert)?;
    let vendor = match (form.file("vendor_cert"), form.file("vendor_key")) {
        (Some((_, cert)), Some((_, key))) => {
            Some(VendorFiles { cert: cert.clone(), chain: form.file("vendor_chain").map(|(_, c)| c.clone()), key: key.clone() })
        }
        (None, None) => None,
        (Some(_), None) => return Err(UiError::field("Vendor private key", "choose the key file that goes with the vendor certificate")),
        (None, Some(_)) => return Err(UiError::field("Vendor certificate", "choose the vendor certificate that goes with the key")),
    };
    ctx.push.request_push_cert(&s.actor(), vendor).await?;
    Ok(Redirect::to("/ui/apple?done=requested").into_response())
}

/// Download a request: the portal's file when signed, else the CSR.
pub async fn download(State(ctx): State<Ctx>, s: Session, Path(id): Path<String>) -> UiResult {
    s.require(Permission::ManagePushCert)?;
    let r = ctx.push.push_cert_request(crate::faces::api::extract::uuid_param(&id, "push certificate request")?).await?;
    let (name, body) = match r.request_file {
        Some(file) => ("push-cert-request.b64", file),
        None => ("push-cert.csr", r.csr_pem),
    };
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\"")),
        ],
        body,
    )
        .into_response())
}

/// Load a certificate: the one Apple returned for the pending request, a PEM pair, or a .p12.
pub async fn load(State(ctx): State<Ctx>, form: Form) -> UiResult {
    let s = &form.session;
    s.require(Permission::ManagePushCert)?;
    let upload = match (form.file("cert"), form.file("key"), form.file("p12")) {
        (Some((_, cert)), None, None) => PushCertUpload::Certificate { cert_pem: cert.clone() },
        (Some((_, cert)), Some((_, key)), None) => PushCertUpload::Pem { cert_pem: cert.clone(), key_pem: key.clone() },
        (None, None, Some((_, p12))) => PushCertUpload::P12 { der: p12.clone(), password: form.raw("password").to_owned() },
        _ => {
            return Err(UiError::field(
                "Certificate",
                "choose the certificate Apple returned (with its key file only if Lanyard did not make the request), or a .p12 file",
            ));
        }
    };
    ctx.push.load_push_cert(&s.actor(), upload, form.checked("force")).await?;
    Ok(Redirect::to("/ui/apple?done=loaded").into_response())
}
