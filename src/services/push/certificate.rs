//! The school's MDM push certificate: loading it (API and CLI), showing it, and warning before
//! it expires. Its private key is sealed at rest; the topic in it is what devices enrol under.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;

use crate::apple::{PushCertError, PushCertificate};
use crate::error::{Error, Result};
use crate::services::auth::Actor;
use crate::services::push::Push;
use crate::store::PushCertRecord;

/// Warn this many days before the certificate expires.
pub const WARN_DAYS: i64 = 30;

pub const RENEWAL_STEPS: &str = "renew it at https://identity.apple.com/pushcert with the same Apple ID \
    (choose Renew, not Create, so the topic stays the same), upload Lanyard's CSR as before, then load the new \
    certificate with `lanyard push-cert import` or PUT /api/v1/push-cert";

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
}

impl PushCertInfo {
    pub fn from_record(r: &PushCertRecord, now: DateTime<Utc>) -> Self {
        let days_left = (r.not_after - now).num_days();
        let (status, warning) = if r.not_after <= now {
            (
                "expired",
                Some(format!(
                    "the MDM push certificate expired on {}: devices get no pushes. To fix it, {RENEWAL_STEPS}",
                    r.not_after.date_naive()
                )),
            )
        } else if days_left <= WARN_DAYS {
            (
                "expiring",
                Some(format!("the MDM push certificate expires in {days_left} days ({}): {RENEWAL_STEPS}", r.not_after.date_naive())),
            )
        } else {
            ("ok", None)
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
        }
    }
}

/// What an admin uploads.
pub enum PushCertUpload {
    Pem { cert_pem: Vec<u8>, key_pem: Vec<u8> },
    P12 { der: Vec<u8>, password: String },
}

impl PushCertUpload {
    pub fn from_p12_base64(b64: &str, password: String) -> Result<Self> {
        let der = B64.decode(b64.trim()).map_err(|_| Error::unprocessable("p12_base64", "not base64"))?;
        Ok(PushCertUpload::P12 { der, password })
    }

    fn parse(self) -> Result<PushCertificate> {
        let parsed = match self {
            PushCertUpload::Pem { cert_pem, key_pem } => PushCertificate::from_pem(&cert_pem, &key_pem),
            PushCertUpload::P12 { der, password } => PushCertificate::from_p12(&der, &password),
        };
        parsed.map_err(|e| {
            let field = match &e {
                PushCertError::UnreadableKey(_) | PushCertError::KeyMismatch | PushCertError::MissingKey => "key_pem",
                PushCertError::UnreadableP12(_) | PushCertError::WrongPassword => "p12_base64",
                _ => "cert_pem",
            };
            Error::unprocessable(field, e.to_string())
        })
    }
}

impl Push {
    /// Load (or renew) the push certificate. A different topic would orphan every enrolled
    /// device, so it is refused unless `force`.
    pub async fn load_push_cert(&self, actor: &Actor, upload: PushCertUpload, force: bool) -> Result<PushCertInfo> {
        let cert = upload.parse()?;
        let previous = self.store.push_cert().await?;
        if let Some(prev) = &previous {
            if prev.topic != cert.topic && !force {
                let mut e = Error::conflict(
                    "topic_mismatch",
                    format!(
                        "this certificate's topic ({}) differs from the current one ({}): every device enrolled under the old topic \
                         would stop receiving pushes and have to re-enrol. If that is really intended, repeat with ?force=true (CLI: --force)",
                        cert.topic, prev.topic
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
            json!({"subject": rec.subject, "not_after": rec.not_after, "renewal": renewal, "forced_topic_change": previous.is_some() && !renewal}),
        );
        self.store.put_push_cert(&rec, audit).await?;
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
        Ok(Some(info))
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
