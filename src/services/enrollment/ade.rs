//! ADE enrolment (`POST /mdm/ade/enroll`): the URL Lanyard's ADE profiles give Setup Assistant.
//!
//! A new iPad from Apple School Manager sends its MachineInfo (UDID, serial, model, OS) signed
//! with the identity Apple gave it at manufacture. Lanyard answers with the enrolment profile
//! only when:
//!
//! 1. the signature verifies and chains to Apple's root (`ade_device_ca_file`), so the message
//!    came from a real Apple device;
//! 2. ASM lists that serial number for one of this school's MDM servers (and has not removed
//!    it), so an iPad that is not the school's cannot enrol itself by pointing at the URL;
//! 3. this exact message has not been accepted before (replays are refused).
//!
//! The profile's SCEP challenge is a one-time enrolment token (one use, one hour) bound to the
//! serial number: the identity issued against it authenticates only as that iPad
//! ([`crate::services::devices::checkin`] checks it at Authenticate).

use chrono::Duration;
use openssl::x509::X509;
use serde_json::json;

use crate::error::{Error, Result};
use crate::protocol::cms::{SignatureError, verify_attached};
use crate::protocol::machine_info::{self, MachineInfo};
use crate::services::auth::Actor;
use crate::services::enrollment::Enrollment;
use crate::store::AdeEnrolmentRecord;

/// How long the one-time challenge of an ADE enrolment lives: Setup Assistant asks for its
/// certificate within seconds.
pub const ADE_TOKEN_MINUTES: i64 = 60;

/// What the operator is told to do when Apple's root is not configured.
pub const NO_ANCHOR: &str = "ADE enrolment needs Apple's root certificate to check the signature on a device's MachineInfo: download \
    \"Apple Root CA\" from https://www.apple.com/certificateauthority/ and set ade_device_ca_file (LANYARD_ADE_DEVICE_CA_FILE) to it";

impl Enrollment {
    /// The signed enrolment profile for a device in Setup Assistant; `der` is the CMS
    /// SignedData it sent (its body, or the `x-apple-aspen-deviceinfo` header decoded).
    pub async fn ade_enrollment_profile(&self, der: Vec<u8>) -> Result<Vec<u8>> {
        let anchors = self.ade_device_anchors()?;
        let digest = hex::encode(openssl::sha::sha256(&der));
        let (content, _signer) =
            tokio::task::spawn_blocking(move || verify_attached(&der, &anchors)).await.map_err(Error::internal)?.map_err(|e| {
                tracing::warn!(error = %e, "ADE enrolment: MachineInfo refused");
                refusal(e)
            })?;
        let info = machine_info::parse(&content).map_err(|e| Error::BadRequest(format!("MachineInfo: {e}")))?;
        let listed = self.store.ade_device(&info.serial).await?;
        if listed.as_ref().is_none_or(|d| d.removed_at.is_some()) {
            tracing::warn!(serial = info.serial, "ADE enrolment: a device Apple School Manager does not list for this server");
            return Err(Error::Forbidden(format!(
                "the device with serial number {} is not assigned to this school's MDM server in Apple School Manager \
                 (or was released from it): assign it in ASM, then sync in Lanyard",
                info.serial
            )));
        }
        // Nothing is spent on a device that could not enrol anyway.
        self.require_push_cert().await?;
        let secret = self.ade_token(&info, &digest).await?;
        tracing::info!(serial = info.serial, udid = info.udid, product = info.product, "ADE enrolment: profile issued");
        self.signed_profile(&secret).await
    }

    /// Apple's root (or a test CA) from `ade_device_ca_file`.
    fn ade_device_anchors(&self) -> Result<Vec<X509>> {
        let path = self.config.ade_device_ca_file.as_ref().ok_or_else(|| Error::Unavailable(NO_ANCHOR.into()))?;
        let pem = std::fs::read(path).map_err(|e| {
            tracing::error!(path = %path.display(), error = %e, "ade_device_ca_file cannot be read");
            Error::Unavailable(format!("{NO_ANCHOR} (the file set, {}, cannot be read: {e})", path.display()))
        })?;
        let certs = X509::stack_from_pem(&pem).unwrap_or_default();
        if certs.is_empty() {
            return Err(Error::Unavailable(format!("{NO_ANCHOR} (the file set, {}, holds no PEM certificate)", path.display())));
        }
        Ok(certs)
    }

    /// The one-time token for this device, stored with the MachineInfo's record and the
    /// audit entry. Returns the secret (the SCEP challenge).
    async fn ade_token(&self, info: &MachineInfo, digest: &str) -> Result<String> {
        let (secret, token) =
            self.one_time_token(&info.serial, &format!("ADE {}", info.serial), "system:ade", Duration::minutes(ADE_TOKEN_MINUTES));
        let now = self.clock.now();
        let rec = AdeEnrolmentRecord {
            machine_info_sha256: digest.to_owned(),
            serial_number: info.serial.clone(),
            udid: info.udid.clone(),
            product: info.product.clone(),
            os_version: info.os_version.clone(),
            token_id: token.id,
            at: now,
        };
        let device = Actor { name: format!("device:{}", info.serial), ip: None };
        let audit = self.audit.audit_entry(
            &device,
            "ade.enrol",
            Some(&info.serial),
            json!({"udid": info.udid, "product": info.product, "version": info.version, "os_version": info.os_version, "token": token.id}),
        );
        if !self.store.create_ade_enrolment(&rec, &token, audit).await? {
            tracing::warn!(serial = info.serial, "ADE enrolment: a MachineInfo sent before (replay) refused");
            return Err(Error::Forbidden(
                "this MachineInfo was used already; the device signs a new one when Setup Assistant tries again".into(),
            ));
        }
        Ok(secret)
    }
}

/// A MachineInfo signature problem, as the device (and the log) is told.
fn refusal(e: SignatureError) -> Error {
    match e {
        SignatureError::NotCms(why) => Error::BadRequest(format!("the body is not a signed MachineInfo (CMS SignedData): {why}")),
        SignatureError::NoSigner => Error::BadRequest("the MachineInfo carries no signer certificate".into()),
        SignatureError::BadSignature(why) => Error::Forbidden(format!("the MachineInfo signature does not verify: {why}")),
        SignatureError::Untrusted { subject, reason } => {
            Error::Forbidden(format!("the MachineInfo was signed by {subject}, which does not chain to Apple's root: {reason}"))
        }
        SignatureError::Missing | SignatureError::NotBase64(_) => Error::BadRequest("no MachineInfo was sent".into()),
        SignatureError::Openssl(e) => Error::internal(e),
    }
}
