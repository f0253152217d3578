//! The school's MDM push certificate: requesting it (Lanyard's key and CSR, vendor-signed when
//! the school has a vendor certificate), loading what Apple returns (API, console and CLI),
//! showing it, and warning before it expires. Its private key is sealed at rest; the topic in it
//! is what devices enrol under.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;

use uuid::Uuid;

use crate::apple::push_certificate::read_certificates;
use crate::apple::{PushCertError, PushCertRequest, PushCertificate, PushRequestError, VendorSigner, topic_of};
use crate::error::{Error, Result};
use crate::services::auth::Actor;
use crate::services::expiry;
use crate::services::push::Push;
use crate::store::{PushCertRecord, PushCertRequestRecord};

pub const RENEWAL_STEPS: &str = "renew it at https://identity.apple.com/pushcert with the same Apple ID \
    (choose Renew next to the current certificate, not Create, so the topic stays the same): make a request with \
    `lanyard push-cert request` or on the console's Apple push certificate page, upload it, then load the certificate \
    Apple returns with `lanyard push-cert import --cert FILE` or PUT /api/v1/push-cert";

/// What the school does with a request, in order.
pub const REQUEST_STEPS: [&str; 3] = [
    "Sign in at https://identity.apple.com/pushcert with the school's managed Apple ID (one the school keeps, not a person's: \
     renewals need the same one every year). For the first certificate choose Create a Certificate; every year after, \
     Renew next to the existing one.",
    "Upload the request file (vendor-signed: push-cert-request.b64) and download the certificate Apple issues \
     (MDM_ Lanyard_Certificate.pem). A bare CSR (push-cert.csr) must first be signed by an MDM vendor certificate: \
     see README, \"Apple push certificate\".",
    "Load that certificate: the console's Apple push certificate page, `lanyard push-cert import --cert FILE`, or \
     PUT /api/v1/push-cert {\"cert_pem\"}. Lanyard matches it to this request's key, which never leaves the server.",
];

/// A request Lanyard made for a push certificate, and what to do with it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PushCertRequestInfo {
    pub id: Uuid,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    /// The CSR (PEM). Its key is sealed in Lanyard's database.
    pub csr_pem: String,
    /// True when a vendor certificate signed it, so `request_file` is what the portal takes.
    pub signed: bool,
    /// The file Apple's Push Certificates Portal takes (base64 of the plist with
    /// `PushCertRequestCSR`, `PushCertCertificateChain`, `PushCertSignature`), when signed.
    pub request_file: Option<String>,
    /// The vendor certificate that signed it.
    pub vendor_subject: Option<String>,
    pub next_steps: Vec<String>,
}

impl PushCertRequestInfo {
    fn from_record(r: &PushCertRequestRecord) -> Self {
        PushCertRequestInfo {
            id: r.id,
            created_at: r.created_at,
            created_by: r.created_by.clone(),
            csr_pem: r.csr_pem.clone(),
            signed: r.signed_request.is_some(),
            request_file: r.signed_request.clone(),
            vendor_subject: r.vendor_subject.clone(),
            next_steps: REQUEST_STEPS.iter().map(|s| s.to_string()).collect(),
        }
    }
}

/// An MDM vendor's CSR-signing certificate (PEM or DER, with or without its chain), an optional
/// separate chain (Apple's intermediate and root), and its key (PEM).
pub struct VendorFiles {
    pub cert: Vec<u8>,
    pub chain: Option<Vec<u8>>,
    pub key: Vec<u8>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = PushCert)]
pub struct PushCertInfo {
    pub subject: String,
    pub topic: String,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    pub days_left: i64,
    /// `ok`, `expiring` (within 30 days) or `expired`.
    #[schema(schema_with = crate::schema::enums::push_cert_status)]
    pub status: &'static str,
    pub warning: Option<String>,
    pub uploaded_at: DateTime<Utc>,
    pub uploaded_by: String,
    /// The last time APNs refused this certificate (403), and why; cleared by a delivered push.
    pub apns_error: Option<String>,
    pub apns_error_at: Option<DateTime<Utc>>,
    /// A request made for the renewal (or a replacement), whose certificate is not loaded yet.
    pub pending_request: Option<PushCertRequestInfo>,
}

impl PushCertInfo {
    pub fn from_record(r: &PushCertRecord, now: DateTime<Utc>) -> Self {
        let days_left = (r.not_after - now).num_days();
        let status = expiry::status(days_left, r.not_after <= now);
        let warning = match status {
            "expired" => Some(format!(
                "the MDM push certificate expired on {}: devices get no pushes. To fix it, {RENEWAL_STEPS}",
                r.not_after.date_naive()
            )),
            "expiring" => Some(format!(
                "the MDM push certificate expires in {}: {RENEWAL_STEPS}",
                match days_left {
                    0 => format!("less than a day ({})", r.not_after),
                    1 => format!("1 day ({})", r.not_after.date_naive()),
                    n => format!("{n} days ({})", r.not_after.date_naive()),
                }
            )),
            _ => None,
        };
        PushCertInfo {
            subject: r.subject.clone(),
            topic: r.topic.clone(),
            not_before: r.not_before,
            not_after: r.not_after,
            days_left,
            status,
            warning,
            uploaded_at: r.uploaded_at,
            uploaded_by: r.uploaded_by.clone(),
            apns_error: None,
            apns_error_at: None,
            pending_request: None,
        }
    }
}

/// What an admin uploads.
pub enum PushCertUpload {
    Pem {
        cert_pem: Vec<u8>,
        key_pem: Vec<u8>,
    },
    P12 {
        der: Vec<u8>,
        password: String,
    },
    /// Only the certificate Apple returned: its key is a pending request's.
    Certificate {
        cert_pem: Vec<u8>,
    },
}

impl PushCertUpload {
    pub fn from_p12_base64(b64: &str, password: String) -> Result<Self> {
        let der = B64.decode(b64.trim()).map_err(|_| Error::unprocessable("p12_base64", "not base64"))?;
        Ok(PushCertUpload::P12 { der, password })
    }
}

/// A push-certificate error as a 422 naming the field at fault.
fn push_cert_error(e: PushCertError) -> Error {
    let field = match &e {
        PushCertError::UnreadableKey(_) | PushCertError::KeyMismatch | PushCertError::MissingKey => "key_pem",
        PushCertError::UnreadableP12(_) | PushCertError::WrongPassword => "p12_base64",
        _ => "cert_pem",
    };
    Error::unprocessable(field, e.to_string())
}

/// A vendor-signing error as a 422 naming the field at fault.
fn request_error(e: PushRequestError) -> Error {
    let field = match &e {
        PushRequestError::UnreadableVendorKey(_) | PushRequestError::VendorKeyMismatch { .. } | PushRequestError::VendorKeyNotRsa => {
            "vendor_key_pem"
        }
        PushRequestError::IncompleteChain { .. } => "vendor_chain_pem",
        PushRequestError::UnreadableVendorCertificate(_) => "vendor_cert_pem",
        PushRequestError::Openssl(e) => return Error::internal(anyhow::anyhow!("making the push certificate request: {e}")),
    };
    Error::unprocessable(field, e.to_string())
}

impl Push {
    /// Make a push-certificate request: a new key (sealed) and CSR, signed into the portal's file
    /// when the school has an MDM vendor certificate. Earlier requests stay pending: the
    /// certificate Apple returns is matched to whichever request's key it was issued for.
    pub async fn request_push_cert(&self, actor: &Actor, vendor: Option<VendorFiles>) -> Result<PushCertRequestInfo> {
        let signer = match &vendor {
            Some(v) => Some(VendorSigner::read(&v.cert, v.chain.as_deref(), &v.key).map_err(request_error)?),
            None => None,
        };
        let organization = self.config.organization.clone();
        // Generating an RSA key takes tens of milliseconds: off the runtime's threads.
        let (request, signed) = tokio::task::spawn_blocking(move || -> std::result::Result<_, PushRequestError> {
            let request = PushCertRequest::new(&organization)?;
            let signed = signer.as_ref().map(|s| request.sign(s).map(|file| (file, s.subject()))).transpose()?;
            Ok((request, signed))
        })
        .await
        .map_err(Error::internal)?
        .map_err(request_error)?;
        let key_pem = request.key_pem().map_err(request_error)?;
        let rec = PushCertRequestRecord {
            id: Uuid::new_v4(),
            csr_pem: request.csr_pem(),
            key_sealed: self.pki.sealer.seal(&key_pem).map_err(Error::internal)?,
            signed_request: signed.as_ref().map(|(file, _)| file.clone()),
            vendor_subject: signed.map(|(_, subject)| subject),
            created_at: self.clock.now(),
            created_by: actor.name.clone(),
            completed_at: None,
        };
        let audit = self.audit.audit_entry(
            actor,
            "push_cert.request",
            Some(&rec.id.to_string()),
            json!({"signed": rec.signed_request.is_some(), "vendor": rec.vendor_subject}),
        );
        self.store.create_push_cert_request(&rec, audit).await?;
        Ok(PushCertRequestInfo::from_record(&rec))
    }

    /// The newest request whose certificate has not been loaded.
    pub async fn pending_push_cert_request(&self) -> Result<Option<PushCertRequestInfo>> {
        Ok(self.store.pending_push_cert_requests().await?.first().map(PushCertRequestInfo::from_record))
    }

    pub async fn push_cert_request(&self, id: Uuid) -> Result<PushCertRequestInfo> {
        let rec = self.store.push_cert_request(id).await?.ok_or_else(|| Error::not_found(format!("no push certificate request {id}")))?;
        Ok(PushCertRequestInfo::from_record(&rec))
    }

    /// Read an upload; a bare certificate is matched to the pending request it was issued for.
    async fn parse_upload(&self, upload: PushCertUpload) -> Result<(PushCertificate, Option<Uuid>)> {
        let cert_pem = match upload {
            PushCertUpload::Pem { cert_pem, key_pem } => {
                return Ok((PushCertificate::from_pem(&cert_pem, &key_pem).map_err(push_cert_error)?, None));
            }
            PushCertUpload::P12 { der, password } => {
                return Ok((PushCertificate::from_p12(&der, &password).map_err(push_cert_error)?, None));
            }
            PushCertUpload::Certificate { cert_pem } => cert_pem,
        };
        // Say what is wrong with the file before saying it matches no request.
        let certs = read_certificates(&cert_pem).map_err(push_cert_error)?;
        if let Some(Err(e)) = certs.iter().map(topic_of).find(|t| t.is_ok()).or_else(|| certs.first().map(topic_of)) {
            return Err(push_cert_error(e));
        }
        let pending = self.store.pending_push_cert_requests().await?;
        for request in &pending {
            let key = self.pki.sealer.open(&request.key_sealed).map_err(Error::internal)?;
            match PushCertificate::from_pem(&cert_pem, &key) {
                Ok(cert) => return Ok((cert, Some(request.id))),
                Err(PushCertError::KeyMismatch) => continue,
                Err(e) => return Err(push_cert_error(e)),
            }
        }
        Err(Error::unprocessable(
            "cert_pem",
            if pending.is_empty() {
                "this certificate was not issued for a request Lanyard made (there is none pending): send its private key as key_pem \
                 too, or make a request (`lanyard push-cert request`) and upload that to Apple's portal"
                    .to_owned()
            } else {
                format!(
                    "this certificate was not issued for any of Lanyard's {} pending request(s): upload the newest request file to \
                     Apple's portal and load the certificate it returns, or send this certificate's own private key as key_pem",
                    pending.len()
                )
            },
        ))
    }

    /// Load (or renew) the push certificate. A different topic would orphan every enrolled
    /// device, so it is refused unless `force`.
    pub async fn load_push_cert(&self, actor: &Actor, upload: PushCertUpload, force: bool) -> Result<PushCertInfo> {
        let (cert, completes) = self.parse_upload(upload).await?;
        let previous = self.store.push_cert().await?;
        if let Some(prev) = &previous {
            if prev.topic != cert.topic && !force {
                let mut e = Error::conflict(
                    "topic_mismatch",
                    format!(
                        "this certificate's topic ({}) differs from the current one ({}). Apple issues a new topic when Create a \
                         Certificate is chosen instead of Renew: every device enrolled under the old topic would stop receiving pushes \
                         and have to be enrolled again by hand. Go back to https://identity.apple.com/pushcert, choose Renew next to \
                         the certificate whose topic is {}, upload the same request, and load what it returns. If a new topic is really \
                         intended (a new server, no devices kept), repeat with ?force=true (CLI: --force)",
                        cert.topic, prev.topic, prev.topic
                    ),
                );
                if let Error::Conflict { extra, .. } = &mut e {
                    extra.insert("current_topic".into(), json!(prev.topic));
                    extra.insert("new_topic".into(), json!(cert.topic));
                }
                return Err(e);
            }
        }
        let (cert_pem, key_pem) = cert.to_pem_pair();
        let now = self.clock.now();
        let rec = PushCertRecord {
            topic: cert.topic.clone(),
            subject: cert.subject.clone(),
            not_before: cert.not_before,
            not_after: cert.not_after,
            cert_pem: String::from_utf8_lossy(&cert_pem).into_owned(),
            key_sealed: self.pki.sealer.seal(&key_pem).map_err(Error::internal)?,
            uploaded_at: now,
            uploaded_by: actor.name.clone(),
        };
        let renewal = previous.as_ref().is_some_and(|p| p.topic == rec.topic);
        let audit = self.audit.audit_entry(
            actor,
            "push_cert.load",
            Some(&rec.topic),
            json!({"subject": rec.subject, "not_after": rec.not_after, "renewal": renewal, "forced_topic_change": previous.is_some() && !renewal, "request": completes}),
        );
        self.store.put_push_cert(&rec, completes, audit).await?;
        self.pusher.forget_topic();
        let info = PushCertInfo::from_record(&rec, now);
        if let Some(w) = &info.warning {
            tracing::warn!("{w}");
        }
        Ok(info)
    }

    pub async fn push_cert_info(&self) -> Result<Option<PushCertInfo>> {
        let Some(rec) = self.store.push_cert().await? else { return Ok(None) };
        let mut info = PushCertInfo::from_record(&rec, self.clock.now());
        if let Some((err, at)) = self.store.push_cert_error().await? {
            info.apns_error = Some(err);
            info.apns_error_at = Some(at);
        }
        info.pending_request = self.pending_push_cert_request().await?;
        Ok(Some(info))
    }

    /// Write the push certificate's expiry warning to the audit log once per threshold (30, 14,
    /// 7, 1 days, expired). The sweeper calls this hourly.
    pub async fn warn_push_cert_expiry(&self) -> Result<()> {
        let Some(rec) = self.store.push_cert().await? else { return Ok(()) };
        let info = PushCertInfo::from_record(&rec, self.clock.now());
        if let Some(w) = &info.warning {
            let key = format!("push_cert:{}:{}", rec.topic, rec.not_after.timestamp());
            self.audit.expiry_warning("push_cert.expiry_warning", &key, &rec.topic, info.days_left, w).await?;
        }
        Ok(())
    }

    /// The loaded certificate with its key, for sending pushes.
    pub async fn push_certificate(&self) -> Result<Option<PushCertificate>> {
        let Some(rec) = self.store.push_cert().await? else {
            return Ok(None);
        };
        let key = self.pki.sealer.open(&rec.key_sealed).map_err(Error::internal)?;
        PushCertificate::from_pem(rec.cert_pem.as_bytes(), &key)
            .map(Some)
            .map_err(|e| Error::internal(anyhow::anyhow!("stored push certificate: {e}")))
    }
}
