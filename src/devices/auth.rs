//! Device authentication: the `Mdm-Signature` header (or the TLS client certificate) must come
//! from an identity our CA issued, and that identity must be the one bound to the device.

use crate::context::Lanyard;
use crate::error::{Error, Result};
use crate::mdm::cms::SignatureError;
use crate::store::DeviceRecord;

/// A verified device identity certificate.
pub struct DeviceIdentity {
    /// SHA-256 of the certificate's DER, hex: what binds it to a device.
    pub sha256: String,
}

/// How far back a chain of renewals is followed.
const MAX_RENEWALS: usize = 16;

impl Lanyard {
    fn verify_signer_inner(&self, body: &[u8], signature: Option<&str>, tls_cert: Option<&[u8]>) -> Result<DeviceIdentity> {
        let sha256 = match (signature, tls_cert) {
            (Some(sig), _) => self.signers.verify(body, sig, &self.pki.ca_cert).map_err(|e| {
                tracing::warn!(error = %e, "device authentication failed");
                match e {
                    SignatureError::NotBase64(_) | SignatureError::NotCms(_) | SignatureError::Missing => {
                        Error::BadRequest(format!("Mdm-Signature: {e}"))
                    }
                    _ => Error::Forbidden(format!("Mdm-Signature: {e}")),
                }
            })?,
            (None, Some(der)) => self.signers.verify_client_cert(der, &self.pki.ca_cert).ok_or_else(|| {
                tracing::warn!("device authentication failed: TLS client certificate is unreadable or not from our CA");
                Error::Forbidden("client certificate is not from this server's CA".into())
            })?,
            (None, None) => {
                tracing::warn!("device authentication failed: no Mdm-Signature and no client certificate");
                return Err(Error::BadRequest("missing Mdm-Signature header".into()));
            }
        };
        Ok(DeviceIdentity { sha256: hex::encode(sha256) })
    }

    /// Verify the message's signer (the signature over the exact body, and a chain to our CA),
    /// then leave OpenSSL's per-thread error queue empty: a failed check must not
    /// leak a stale error into the next TLS read on this worker thread.
    pub fn verify_device_signer(&self, body: &[u8], signature: Option<&str>, tls_cert: Option<&[u8]>) -> Result<DeviceIdentity> {
        let r = self.verify_signer_inner(body, signature, tls_cert);
        let _ = openssl::error::ErrorStack::get();
        r
    }

    /// The device this identity speaks for, given the UDID the message names.
    ///
    /// - bound to this UDID: accepted;
    /// - bound to another device: refused (a device replaying another's certificate);
    /// - not bound yet: accepted at Authenticate if our SCEP service issued it; otherwise only
    ///   if it renews (directly or through earlier renewals) the certificate bound to this
    ///   device, and then the binding moves to it.
    pub async fn bind_identity(&self, id: &DeviceIdentity, udid: &str, authenticate: bool) -> Result<Option<DeviceRecord>> {
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
        if authenticate {
            return Ok(self.store.device(udid).await?);
        }
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
