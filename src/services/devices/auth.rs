//! Device authentication: the `Mdm-Signature` header (or the TLS client certificate) must come
//! from an identity our CA issued, and that identity must be the one bound to the device.
//!
//! [`Devices::admit_authenticate`] is the one rule for an `Authenticate`: who may enrol under a
//! UDID that Lanyard already knows. Without it, any device holding a live enrolment token could
//! name another device's UDID and take its record (and cancel a quarantine's commands).

use serde_json::json;

use crate::error::{Error, Result};
use crate::protocol::checkin::Authenticate;
use crate::protocol::cms::SignatureError;
use crate::services::auth::Actor;
use crate::services::devices::Devices;
use crate::store::DeviceRecord;

/// A verified device identity certificate.
pub struct DeviceIdentity {
    /// SHA-256 of the certificate's DER, hex: what binds it to a device.
    pub sha256: String,
    /// The CMS signing time of the `Mdm-Signature` (Unix seconds), when it carried one (Apple's
    /// devices sign with one; a TLS client certificate has none).
    pub signed_at: Option<i64>,
}

/// How far a signature's signing time may be from this server's clock. A device whose clock is
/// further out cannot connect over TLS either; a captured request replayed later than this is
/// refused however it reaches us.
pub const MAX_SIGNATURE_SKEW_SECS: i64 = 24 * 3600;

/// Whether a signature made at `signed_at` may be accepted at `now` (both Unix seconds, the
/// wall clock, not the test clock: the device signed with its own wall clock).
pub fn signature_is_fresh(signed_at: i64, now: i64) -> bool {
    (now - signed_at).abs() <= MAX_SIGNATURE_SKEW_SECS
}

/// What an accepted `Authenticate` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enrolment {
    /// A UDID Lanyard has no record of.
    New,
    /// The identity already bound to this device sent it again (a retry, or a replay): nothing
    /// changes, and nothing queued is cancelled.
    AlreadyBound,
    /// The same device enrolling again with a new identity; the reason it may.
    Reenrolment(&'static str),
}

/// How far back a chain of renewals is followed.
const MAX_RENEWALS: usize = 16;

impl Devices {
    fn verify_signer_inner(&self, body: &[u8], signature: Option<&str>, tls_cert: Option<&[u8]>) -> Result<DeviceIdentity> {
        let (sha256, signed_at) = match (signature, tls_cert) {
            (Some(sig), _) => self.signers.verify(body, sig, &self.pki.ca_cert).map(|s| (s.sha256, s.signed_at)).map_err(|e| {
                tracing::warn!(error = %e, "device authentication failed");
                match e {
                    SignatureError::NotBase64(_) | SignatureError::NotCms(_) | SignatureError::Missing => {
                        Error::BadRequest(format!("Mdm-Signature: {e}"))
                    }
                    _ => Error::Forbidden(format!("Mdm-Signature: {e}")),
                }
            })?,
            (None, Some(der)) => {
                let sha256 = self.signers.verify_client_cert(der, &self.pki.ca_cert).ok_or_else(|| {
                    tracing::warn!("device authentication failed: TLS client certificate is unreadable or not from our CA");
                    Error::Forbidden("client certificate is not from this server's CA".into())
                })?;
                (sha256, None)
            }
            (None, None) => {
                tracing::warn!("device authentication failed: no Mdm-Signature and no client certificate");
                return Err(Error::BadRequest("missing Mdm-Signature header".into()));
            }
        };
        if let Some(t) = signed_at {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
            if !signature_is_fresh(t, now) {
                tracing::warn!(signed_at = t, now, "device authentication failed: stale or future signing time");
                return Err(Error::Forbidden(format!(
                    "Mdm-Signature: signed at {}, more than 24 hours from this server's clock (a replayed request, or the device's clock is wrong)",
                    chrono::DateTime::from_timestamp(t, 0).map(|d| d.to_rfc3339()).unwrap_or_else(|| t.to_string())
                )));
            }
        }
        Ok(DeviceIdentity { sha256: hex::encode(sha256), signed_at })
    }

    /// Refuse a state-changing message (Authenticate, TokenUpdate, CheckOut) signed before the
    /// last one accepted from this device: replayed, it would put back an old push token or
    /// mark the device unenrolled. Messages without a signing time are not ordered.
    pub async fn ensure_not_replayed(&self, id: &DeviceIdentity, udid: &str, message: &str) -> Result<()> {
        let Some(t) = id.signed_at else { return Ok(()) };
        if self.store.advance_signed_at(udid, t).await? {
            return Ok(());
        }
        tracing::warn!(udid, message, signed_at = t, "refused: signed before the device's last accepted message (a replay)");
        Err(Error::Forbidden(format!(
            "{message}: signed before the last message accepted from this device; a replayed request changes nothing"
        )))
    }

    /// Verify the message's signer (the signature over the exact body, and a chain to our CA),
    /// then leave OpenSSL's per-thread error queue empty: a failed check must not
    /// leak a stale error into the next TLS read on this worker thread.
    pub fn verify_device_signer(&self, body: &[u8], signature: Option<&str>, tls_cert: Option<&[u8]>) -> Result<DeviceIdentity> {
        let r = self.verify_signer_inner(body, signature, tls_cert);
        let _ = openssl::error::ErrorStack::get();
        r
    }

    /// Whether this identity may enrol as the device the `Authenticate` names.
    ///
    /// A UDID already on record may move to a new identity only when it is the same device
    /// (its serial number and model match the record) and its old identity is finished with: the
    /// device checked out, or never completed its enrolment, or acknowledged an EraseDevice, or
    /// the old certificate has expired. (An operator retiring a device deletes its record, so
    /// it then enrols as new.) Anything else is a takeover and is refused with 403, as is any
    /// new identity for a device on legal hold (recorded on the case). Both outcomes are audited.
    pub async fn admit_authenticate(&self, id: &DeviceIdentity, a: &Authenticate) -> Result<Enrolment> {
        let udid = a.ids.device_id.as_str();
        if let Some(bound) = self.store.device_by_cert(&id.sha256).await? {
            if bound.udid != udid {
                tracing::warn!(claimed = udid, bound = %bound.udid, "certificate is bound to another device");
                return Err(Error::Forbidden("this certificate belongs to another device".into()));
            }
            tracing::info!(udid, "Authenticate from the identity already bound; nothing changes");
            return Ok(Enrolment::AlreadyBound);
        }
        if self.store.issued_cert(&id.sha256).await?.is_none() {
            tracing::warn!(udid, "identity certificate was not issued by this server's SCEP service");
            return Err(Error::Forbidden("identity certificate was not issued by this server".into()));
        }
        let Some(device) = self.store.device(udid).await? else { return Ok(Enrolment::New) };
        let actor = Actor { name: format!("device:{udid}"), ip: None };
        if let Some((case_id, _)) = self.store.legal_hold(udid).await? {
            let action = "enrol again with a new identity";
            self.hold.record_hold_refusal(&actor, udid, case_id, action).await?;
            return Err(Error::Forbidden(format!("device {udid} is on legal hold: it cannot {action}")));
        }
        let reason = match self.reenrolment_reason(&device, a).await? {
            Ok(reason) => reason,
            Err(why) => {
                tracing::warn!(udid, why, "refused an Authenticate from a new identity for an enrolled device");
                self.audit
                    .audit(&actor, "device.takeover_refused", Some(udid), json!({"reason": why, "serial_number": a.serial_number}))
                    .await?;
                return Err(Error::Forbidden(format!(
                    "device {udid} is enrolled with another identity ({why}); an operator must retire it before it can enrol again"
                )));
            }
        };
        tracing::info!(udid, reason, "device enrols again with a new identity");
        Ok(Enrolment::Reenrolment(reason))
    }

    /// Ok(why a new identity may take this record), or Err(why not).
    async fn reenrolment_reason(&self, device: &DeviceRecord, a: &Authenticate) -> Result<std::result::Result<&'static str, &'static str>> {
        let differs = |recorded: &Option<String>, claimed: &Option<String>| recorded.is_some() && recorded != claimed;
        if differs(&device.serial_number, &a.serial_number) {
            return Ok(Err("its serial number does not match the record"));
        }
        if (a.product_name.is_some() && differs(&device.product_name, &a.product_name))
            || (a.model.is_some() && differs(&device.model, &a.model))
        {
            return Ok(Err("its model does not match the record"));
        }
        let Some(old) = &device.cert_sha256 else { return Ok(Ok("no identity was bound")) };
        if !device.enrolled {
            return Ok(Ok(if device.unenrolled_at.is_some() {
                "the old identity checked out"
            } else {
                "the old enrolment never completed"
            }));
        }
        if self.store.issued_cert(old).await?.is_none_or(|c| c.not_after < self.clock.now()) {
            return Ok(Ok("the old identity has expired"));
        }
        if self.store.erased_since(&device.udid, device.authenticated_at).await? {
            return Ok(Ok("the device was erased"));
        }
        Ok(Err("its current identity is live"))
    }

    /// The device this identity speaks for, given the UDID the message names.
    ///
    /// - bound to this UDID: accepted;
    /// - bound to another device: refused (a device replaying another's certificate);
    /// - not bound yet: accepted only if it renews (directly or through earlier renewals) the certificate bound to this
    ///   device, and then the binding moves to it.
    pub async fn bind_identity(&self, id: &DeviceIdentity, udid: &str) -> Result<Option<DeviceRecord>> {
        if let Some(device) = self.store.device_by_cert(&id.sha256).await? {
            if device.udid != udid {
                tracing::warn!(claimed = udid, bound = %device.udid, "certificate is bound to another device");
                return Err(Error::Forbidden("this certificate belongs to another device".into()));
            }
            return Ok(Some(device));
        }
        let Some(issued) = self.store.issued_cert(&id.sha256).await? else {
            tracing::warn!(udid, "identity certificate was not issued by this server's SCEP service");
            return Err(Error::Forbidden("identity certificate was not issued by this server".into()));
        };
        let Some(device) = self.store.device(udid).await? else {
            tracing::warn!(udid, "unknown device");
            return Err(Error::Forbidden("unknown device: it must Authenticate first".into()));
        };
        // A renewal: walk back from this certificate to the one bound to the device.
        let mut from = issued.renewed_from;
        for _ in 0..MAX_RENEWALS {
            let Some(prev) = from else { break };
            if device.cert_sha256.as_deref() == Some(prev.as_str()) {
                self.store.rebind_cert(udid, &id.sha256).await?;
                tracing::info!(udid, "device identity renewed; binding moved to the new certificate");
                return Ok(self.store.device(udid).await?);
            }
            from = self.store.issued_cert(&prev).await?.and_then(|c| c.renewed_from);
        }
        tracing::warn!(udid, "certificate is not bound to this device and does not renew its certificate");
        Err(Error::Forbidden("this certificate is not bound to this device".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_more_than_a_day_from_the_clock_is_stale() {
        let now = 1_800_000_000;
        assert!(signature_is_fresh(now, now));
        assert!(signature_is_fresh(now - MAX_SIGNATURE_SKEW_SECS, now));
        assert!(signature_is_fresh(now + MAX_SIGNATURE_SKEW_SECS, now), "a device clock a little ahead is tolerated");
        assert!(!signature_is_fresh(now - MAX_SIGNATURE_SKEW_SECS - 1, now), "yesterday's captured request");
        assert!(!signature_is_fresh(now + MAX_SIGNATURE_SKEW_SECS + 1, now));
        assert!(!signature_is_fresh(0, now));
    }
}
