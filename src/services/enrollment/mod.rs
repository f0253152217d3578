//! Enrolment: tokens, the signed enrolment profile, and the SCEP issuing policy.
//!
//! An enrolment token is both the key to the profile (`/mdm/enroll?token=T`) and the SCEP
//! challenge inside it. It is stored hashed; a use is spent when SCEP issues a certificate (in the
//! transaction that records the certificate).

pub mod ade;
pub mod identity;

use chrono::{DateTime, Duration, Utc};
use openssl::pkey::{PKey, Private};
use openssl::x509::X509;
use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::protocol::cms::sign_profile;
use crate::protocol::enrollment_profile::{EnrollmentProfileParams, enrollment_profile};
use crate::protocol::scep::{self, FailInfo, MessageType};
use crate::services::auth::{Actor, constant_time_eq, tokens};
use crate::store::DynStore;
use crate::store::{EnrollmentTokenRecord, IssuedCertRecord};
use std::sync::Arc;

/// Enrolment tokens and profiles, and the device identities SCEP issues.
#[derive(Clone)]
pub struct Enrollment {
    pub(crate) store: DynStore,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) config: Arc<crate::config::Config>,
    pub(crate) pki: Arc<crate::pki::Pki>,
    pub(crate) public_url: Arc<str>,
    pub(crate) audit: crate::services::audit::Audit,
}

pub const TOKEN_PREFIX: &str = "enr_";
/// Device identity certificates last a year; devices renew them by SCEP.
pub const IDENTITY_DAYS: u32 = 365;
pub const DEFAULT_TOKEN_HOURS: i64 = 24 * 7;

/// An enrolment token, without its secret.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EnrollmentToken {
    pub id: Uuid,
    pub label: String,
    pub max_uses: Option<i64>,
    pub uses: i64,
    pub expires_at: Option<DateTime<Utc>>,
    pub group: Option<String>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub live: bool,
}

/// An enrolment token as created.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct NewEnrollmentToken {
    pub id: Uuid,
    pub label: String,
    /// shown once; the SCEP challenge
    pub token: String,
    pub enroll_url: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub max_uses: Option<i64>,
    pub group: Option<String>,
}

impl EnrollmentToken {
    fn from_record(r: EnrollmentTokenRecord, now: DateTime<Utc>) -> Self {
        EnrollmentToken {
            live: r.is_live(now),
            id: r.id,
            label: r.label,
            max_uses: r.max_uses,
            uses: r.uses,
            expires_at: r.expires_at,
            group: r.group_name,
            created_by: r.created_by,
            created_at: r.created_at,
            revoked_at: r.revoked_at,
        }
    }
}

/// The SCEP service's answer: body and content type.
pub struct ScepReply {
    pub body: Vec<u8>,
    pub content_type: &'static str,
}

impl Enrollment {
    pub fn enroll_url(&self, token: &str) -> String {
        format!("{}/mdm/enroll?token={token}", self.public_url)
    }

    pub async fn create_enrollment_token(
        &self,
        actor: &Actor,
        label: &str,
        max_uses: Option<i64>,
        expires_in_hours: Option<i64>,
        group: Option<String>,
    ) -> Result<NewEnrollmentToken> {
        if label.trim().is_empty() || label.len() > 200 {
            return Err(Error::unprocessable("label", "1 to 200 characters, e.g. \"Year 3 trolley\""));
        }
        if max_uses.is_some_and(|m| m < 1) {
            return Err(Error::unprocessable("max_uses", "must be at least 1"));
        }
        let hours = expires_in_hours.unwrap_or(DEFAULT_TOKEN_HOURS);
        if !(1..=24 * 366).contains(&hours) {
            return Err(Error::unprocessable("expires_in_hours", "between 1 and 8784 (a year)"));
        }
        let token = format!("{TOKEN_PREFIX}{}", &tokens::generate()[tokens::PREFIX.len()..]);
        let now = self.clock.now();
        let rec = EnrollmentTokenRecord {
            id: Uuid::new_v4(),
            label: label.to_owned(),
            token_hash: tokens::hash(&token),
            max_uses,
            uses: 0,
            expires_at: Some(now + Duration::hours(hours)),
            group_name: group.clone(),
            created_by: actor.name.clone(),
            created_at: now,
            revoked_at: None,
            bound_serial: None,
        };
        let audit = self.audit.audit_entry(
            actor,
            "enrollment_token.create",
            Some(label),
            json!({"id": rec.id, "max_uses": max_uses, "expires_at": rec.expires_at, "group": group}),
        );
        self.store.create_enrollment_token(&rec, audit).await?;
        Ok(NewEnrollmentToken {
            id: rec.id,
            label: rec.label,
            enroll_url: self.enroll_url(&token),
            token,
            expires_at: rec.expires_at,
            max_uses,
            group,
        })
    }

    pub async fn list_enrollment_tokens(&self) -> Result<Vec<EnrollmentToken>> {
        let now = self.clock.now();
        Ok(self.store.list_enrollment_tokens(1000).await?.into_iter().map(|r| EnrollmentToken::from_record(r, now)).collect())
    }

    pub async fn revoke_enrollment_token(&self, actor: &Actor, id: Uuid) -> Result<()> {
        let rec = self.store.enrollment_token(id).await?.ok_or_else(|| Error::not_found("no such enrollment token"))?;
        let audit = self.audit.audit_entry(actor, "enrollment_token.revoke", Some(&rec.label), json!({"id": id}));
        if !self.store.revoke_enrollment_token(id, self.clock.now(), audit).await? {
            return Err(Error::conflict("already_revoked", "this enrollment token was already revoked"));
        }
        Ok(())
    }

    /// The live token matching `presented`, compared in constant time.
    pub async fn live_enrollment_token(&self, presented: &str) -> Result<Option<EnrollmentTokenRecord>> {
        if !presented.starts_with(TOKEN_PREFIX) {
            return Ok(None);
        }
        let hash = tokens::hash(presented);
        let now = self.clock.now();
        Ok(self
            .store
            .enrollment_token_by_hash(&hash)
            .await?
            .filter(|t| constant_time_eq(t.token_hash.as_bytes(), hash.as_bytes()) && t.is_live(now)))
    }

    /// The signed enrolment profile for a token (DER CMS).
    pub async fn enrollment_profile(&self, token: &str) -> Result<Vec<u8>> {
        if self.live_enrollment_token(token).await?.is_none() {
            return Err(Error::Forbidden("this enrolment link is unknown, expired, revoked or used up; ask for a new one".into()));
        }
        self.signed_profile(token).await
    }

    /// A signed enrolment profile whose challenge is a new one-time token (one use, `hours`)
    /// bound to `serial`, with the operator's audit entry: what an iPad re-enrols with after
    /// Return to Service when ADE will not enrol it.
    pub async fn bound_enrollment_profile(&self, actor: &Actor, serial: &str, label: &str, hours: i64) -> Result<Vec<u8>> {
        let (secret, rec) = self.one_time_token(serial, label, &actor.name, Duration::hours(hours));
        let audit = self.audit.audit_entry(
            actor,
            "enrollment_token.create",
            Some(label),
            json!({"id": rec.id, "max_uses": 1, "expires_at": rec.expires_at, "bound_serial": serial}),
        );
        self.store.create_enrollment_token(&rec, audit).await?;
        self.signed_profile(&secret).await
    }

    /// A new one-time token (one use, for `lasts`) bound to `serial`: (secret, record).
    pub(crate) fn one_time_token(&self, serial: &str, label: &str, created_by: &str, lasts: Duration) -> (String, EnrollmentTokenRecord) {
        let secret = format!("{TOKEN_PREFIX}{}", &tokens::generate()[tokens::PREFIX.len()..]);
        let now = self.clock.now();
        let rec = EnrollmentTokenRecord {
            id: Uuid::new_v4(),
            label: label.to_owned(),
            token_hash: tokens::hash(&secret),
            max_uses: Some(1),
            uses: 0,
            expires_at: Some(now + lasts),
            group_name: None,
            created_by: created_by.to_owned(),
            created_at: now,
            revoked_at: None,
            bound_serial: Some(serial.to_owned()),
        };
        (secret, rec)
    }

    /// The push certificate, without which no device can enrol (503 saying how to load one).
    pub(crate) async fn require_push_cert(&self) -> Result<crate::store::PushCertRecord> {
        self.store.push_cert().await?.ok_or_else(|| {
            Error::Unavailable(
                "no push certificate is loaded yet, so devices cannot enrol: an admin must load the school's MDM push certificate \
                 (`lanyard push-cert import --p12 FILE` or PUT /api/v1/push-cert)"
                    .into(),
            )
        })
    }

    /// The enrolment profile with `challenge` as its SCEP challenge, signed (DER CMS).
    pub(crate) async fn signed_profile(&self, challenge: &str) -> Result<Vec<u8>> {
        let push = self.require_push_cert().await?;
        let ca_der = self.pki.ca_cert.to_der().map_err(Error::internal)?;
        let mut params = EnrollmentProfileParams::new(&self.config.organization, &*self.public_url, push.topic, challenge, ca_der);
        params.scep_name = "lanyard".into();
        let unsigned = enrollment_profile(&params);
        sign_profile(&unsigned, &self.pki.signing_cert, &self.pki.signing_key, std::slice::from_ref(&self.pki.ca_cert))
            .map_err(Error::internal)
    }

    /// Answer one SCEP PKIOperation. Never fails: problems become a CertRep FAILURE (or, for a
    /// message we cannot read at all, a 400 from the caller).
    ///
    /// The CPU work runs off the runtime threads in two steps: read the request; then issue the
    /// certificate and build its CertRep together. The certificate goes on record (spending the
    /// token's use in the same transaction) before the CertRep leaves: a device never holds an
    /// identity the server has no record of, and a token use is never spent on a certificate
    /// that was not issued.
    pub async fn scep_pki_operation(&self, der: Vec<u8>) -> Result<ScepReply> {
        let ca_cert = self.pki.ca_cert.clone();
        let ca_key = self.pki.ca_key.clone();
        let req = tokio::task::spawn_blocking(move || scep::parse_pki_message(&der, &ca_cert, &ca_key))
            .await
            .map_err(Error::internal)?
            .map_err(|e| {
                tracing::warn!(error = %e, "SCEP: unreadable PKIOperation");
                Error::BadRequest("not a SCEP pkiMessage this CA can read".into())
            })?;
        let body = match self.scep_decide(&req).await? {
            Ok(grant) => {
                let (ca_cert, ca_key) = (self.pki.ca_cert.clone(), self.pki.ca_key.clone());
                let (req, issued) = tokio::task::spawn_blocking(move || {
                    let issued = issue_with_reply(&req, &ca_cert, &ca_key);
                    (req, issued)
                })
                .await
                .map_err(Error::internal)?;
                match issued {
                    Ok((cert, reply)) if self.record_issued(&cert, grant).await? => reply,
                    Ok(_) => {
                        tracing::warn!("SCEP: the enrolment token was used up, expired or revoked while the certificate was made");
                        self.scep_failure(req, FailInfo::BadRequest).await?
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "SCEP: cannot issue");
                        self.scep_failure(req, FailInfo::BadRequest).await?
                    }
                }
            }
            Err(fail) => self.scep_failure(req, fail).await?,
        };
        Ok(ScepReply { body, content_type: scep::CONTENT_TYPE_PKI_MESSAGE })
    }

    async fn scep_failure(&self, req: scep::ScepRequest, fail: FailInfo) -> Result<Vec<u8>> {
        let (ca_cert, ca_key) = (self.pki.ca_cert.clone(), self.pki.ca_key.clone());
        tokio::task::spawn_blocking(move || scep::cert_rep_failure(&req, fail, &ca_cert, &ca_key))
            .await
            .map_err(Error::internal)?
            .map_err(Error::internal)
    }

    /// The policy: a PKCSReq needs a live enrolment token as its challenge (its use is spent
    /// when the certificate is recorded); a RenewalReq must be signed by a certificate we
    /// issued.
    async fn scep_decide(&self, req: &scep::ScepRequest) -> Result<std::result::Result<Grant, FailInfo>> {
        match req.message_type {
            MessageType::PkcsReq => {
                let Some(challenge) = req.challenge.as_deref() else {
                    tracing::warn!("SCEP: PKCSReq without a challenge");
                    return Ok(Err(FailInfo::BadRequest));
                };
                let Some(token) = self.live_enrollment_token(challenge).await? else {
                    tracing::warn!("SCEP: PKCSReq with an unknown, expired or used-up challenge");
                    return Ok(Err(FailInfo::BadRequest));
                };
                Ok(Ok(Grant { token_id: Some(token.id), renewed_from: None }))
            }
            MessageType::RenewalReq | MessageType::UpdateReq => {
                if !identity::is_renewal_signed_by_ca(req, &self.pki.ca_cert) {
                    tracing::warn!("SCEP: renewal not signed by a certificate from our CA");
                    return Ok(Err(FailInfo::BadMessageCheck));
                }
                let from = cert_sha256(&req.signer_cert)?;
                Ok(Ok(Grant { token_id: None, renewed_from: Some(from) }))
            }
            _ => Ok(Err(FailInfo::BadRequest)),
        }
    }

    /// Put an issued certificate on record; false if its enrolment token's use could not be
    /// spent (see [`crate::store::DeviceStore::record_issued_cert`]).
    async fn record_issued(&self, cert: &X509, grant: Grant) -> Result<bool> {
        let serial = cert.serial_number().to_bn().and_then(|b| b.to_hex_str().map(|s| s.to_string())).map_err(Error::internal)?;
        let not_after = crate::pki::asn1_to_utc(cert.not_after()).map_err(Error::internal)?;
        let rec = IssuedCertRecord {
            sha256: cert_sha256(cert)?,
            serial,
            subject: format!("{:?}", cert.subject_name()),
            not_after,
            issued_at: self.clock.now(),
            enrollment_token_id: grant.token_id,
            renewed_from: grant.renewed_from,
        };
        if !self.store.record_issued_cert(&rec).await? {
            return Ok(false);
        }
        tracing::info!(sha256 = %rec.sha256, renewal = rec.renewed_from.is_some(), "SCEP: issued a device identity");
        Ok(true)
    }
}

/// What the SCEP policy allows a request: a certificate against an enrolment token, or the
/// renewal of one we issued.
struct Grant {
    token_id: Option<Uuid>,
    renewed_from: Option<String>,
}

/// Issue the certificate a request asks for and its CertRep, in one piece of blocking work.
fn issue_with_reply(
    req: &scep::ScepRequest,
    ca_cert: &X509,
    ca_key: &PKey<Private>,
) -> std::result::Result<(X509, Vec<u8>), scep::ScepError> {
    let csr = req.csr.as_ref().ok_or_else(|| scep::ScepError::InvalidCsr("SCEP request has no CSR".into()))?;
    let cert = identity::issue_certificate(csr, ca_cert, ca_key, IDENTITY_DAYS)?;
    let reply = scep::cert_rep_success(req, &cert, ca_cert, ca_key)?;
    Ok((cert, reply))
}

/// Hex SHA-256 of a certificate's DER: how a device identity is bound and looked up.
pub fn cert_sha256(cert: &X509) -> Result<String> {
    Ok(hex::encode(openssl::sha::sha256(&cert.to_der().map_err(Error::internal)?)))
}
