//! FileVault recovery keys (policy 7.5/7.10: devices "appropriately encrypted if taken off
//! site").
//!
//! The `mac-filevault` profile carries Lanyard's escrow certificate (filled in as it is sent).
//! A Mac encrypts its personal recovery key to that certificate and hands it over in its
//! SecurityInfo answer (`FDE_PersonalRecoveryKeyCMS`, a CMS envelope). Lanyard decrypts it with
//! the escrow key, seals it with `data/seal.key` and stores it. Revealing it takes the
//! `admin` or `dsl` role and a written justification, and is audited (and, for a device on
//! legal hold, written to the case's custody log).

use chrono::{DateTime, Utc};
use openssl::cms::CmsContentInfo;
use openssl::pkey::{PKey, Private};
use openssl::x509::X509;
use plist::Value;
use serde::Serialize;
use serde_json::json;

use crate::error::{Error, Result};
use crate::protocol::report::CommandReport;
use crate::services::auth::Actor;
use crate::services::profiles::Profiles;
use crate::store::{FileVaultKeyRecord, NewCaseEvent};

/// A justification shorter than this is not a justification.
pub const MIN_JUSTIFICATION: usize = 10;

/// Decrypts a Mac's `FDE_PersonalRecoveryKeyCMS`: CMS EnvelopedData (DER) encrypted to the
/// escrow certificate. The content is the recovery key as text (some tools wrap it in a plist
/// with a `RecoveryKey` string; that is read too).
pub fn decrypt_recovery_key(cms_der: &[u8], cert: &X509, key: &PKey<Private>) -> std::result::Result<String, String> {
    let cms = CmsContentInfo::from_der(cms_der).map_err(|e| format!("not DER CMS: {e}"))?;
    let content = cms.decrypt(key, cert).map_err(|e| format!("does not decrypt with the escrow key: {e}"))?;
    let text = match plist::from_bytes::<Value>(&content).ok().and_then(|v| v.into_dictionary()) {
        Some(d) => d.get("RecoveryKey").and_then(Value::as_string).map(str::to_owned).ok_or("a plist without RecoveryKey")?,
        None => String::from_utf8(content).map_err(|_| "the content is not text")?,
    };
    let text = text.trim().to_owned();
    if text.is_empty() || text.len() > 256 || text.chars().any(char::is_control) {
        return Err("the content is not a recovery key".into());
    }
    Ok(text)
}

/// A reveal's written reason, trimmed: 10 to 2000 characters (422 `justification` otherwise).
/// `what` names the secret in the message ("the key").
pub fn check_justification<'a>(justification: Option<&'a str>, what: &str) -> Result<&'a str> {
    let justification = justification.map(str::trim).unwrap_or_default();
    if justification.chars().count() < MIN_JUSTIFICATION {
        return Err(Error::unprocessable(
            "justification",
            format!("say why {what} is needed (at least {MIN_JUSTIFICATION} characters); it is kept in the audit log"),
        ));
    }
    if justification.chars().count() > 2000 {
        return Err(Error::unprocessable("justification", "at most 2000 characters"));
    }
    Ok(justification)
}

/// The answer to a reveal.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RevealedKey {
    pub udid: String,
    pub serial_number: Option<String>,
    pub device_name: Option<String>,
    pub recovery_key: String,
    /// What the Mac shows at the login window to identify the key (its serial number).
    pub device_key: Option<String>,
    pub escrowed_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Profiles {
    /// Keep the recovery key from an acknowledged SecurityInfo, if it carries one. A key that
    /// does not decrypt is logged and ignored (the Mac keeps its key; nothing is lost).
    pub async fn escrow_filevault_key(&self, udid: &str, report: &CommandReport) -> Result<()> {
        let Some(info) = report.raw.get("SecurityInfo").and_then(Value::as_dictionary) else { return Ok(()) };
        let Some(cms) = info.get("FDE_PersonalRecoveryKeyCMS").and_then(Value::as_data) else { return Ok(()) };
        let device_key = info.get("FDE_PersonalRecoveryKeyDeviceKey").and_then(Value::as_string).map(str::to_owned);
        let key = match decrypt_recovery_key(cms, &self.pki.escrow_cert, &self.pki.escrow_key) {
            Ok(k) => k,
            Err(why) => {
                tracing::warn!(udid, why, "a Mac sent a FileVault recovery key Lanyard cannot read; not stored");
                return Ok(());
            }
        };
        let now = self.clock.now();
        let existing = self.store.filevault_key(udid).await?;
        if let Some(e) = &existing
            && self.pki.sealer.open(&e.key_sealed).ok().as_deref() == Some(key.as_bytes())
            && e.device_key == device_key
        {
            return Ok(());
        }
        let sealed = self.pki.sealer.seal(key.as_bytes()).map_err(Error::internal)?;
        let audit = self.audit.audit_entry(
            &Actor::system(),
            "filevault.escrow",
            Some(udid),
            json!({"device_key": device_key, "replaced": existing.is_some()}),
        );
        let rec = FileVaultKeyRecord {
            udid: udid.to_owned(),
            key_sealed: sealed,
            device_key: device_key.clone(),
            escrowed_at: existing.as_ref().map_or(now, |e| e.escrowed_at),
            updated_at: now,
        };
        self.store.put_filevault_key(&rec, audit).await?;
        tracing::info!(udid, "FileVault recovery key escrowed");
        Ok(())
    }

    /// Reveal a Mac's recovery key, with a written justification (audited with it).
    pub async fn reveal_filevault_key(&self, actor: &Actor, udid: &str, justification: Option<&str>) -> Result<RevealedKey> {
        let justification = check_justification(justification, "the key")?;
        let device = self.store.device(udid).await?.ok_or_else(|| Error::not_found(format!("no device with UDID {udid}")))?;
        let rec = self
            .store
            .filevault_key(udid)
            .await?
            .ok_or_else(|| Error::not_found(format!("no FileVault recovery key has been escrowed for {udid}")))?;
        let key = self.pki.sealer.open(&rec.key_sealed).map_err(Error::internal)?;
        let recovery_key = String::from_utf8(key).map_err(Error::internal)?;
        self.audit
            .audit(actor, "filevault.reveal", Some(udid), json!({"justification": justification, "serial_number": device.serial_number}))
            .await?;
        if let Some((case_id, _)) = self.store.legal_hold(udid).await? {
            self.store
                .append_case_event(
                    &NewCaseEvent {
                        case_id,
                        at: self.clock.now(),
                        actor: actor.name.clone(),
                        kind: "filevault_key_revealed".into(),
                        udid: Some(udid.to_owned()),
                        justification: Some(justification.to_owned()),
                        detail: json!({}),
                    },
                    None,
                )
                .await?;
        }
        tracing::info!(udid, actor = %actor.name, "FileVault recovery key revealed");
        Ok(RevealedKey {
            udid: udid.to_owned(),
            serial_number: device.serial_number,
            device_name: device.device_name,
            recovery_key,
            device_key: rec.device_key,
            escrowed_at: rec.escrowed_at,
            updated_at: rec.updated_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use openssl::cms::CMSOptions;
    use openssl::stack::Stack;
    use openssl::symm::Cipher;

    use super::*;
    use crate::services::profiles::testutil::self_signed;

    fn envelope(content: &[u8], cert: &X509) -> Vec<u8> {
        let mut certs = Stack::new().unwrap();
        certs.push(cert.clone()).unwrap();
        CmsContentInfo::encrypt(&certs, content, Cipher::aes_256_cbc(), CMSOptions::BINARY).unwrap().to_der().unwrap()
    }

    #[test]
    fn decrypts_text_and_plist_keys_only_with_the_escrow_key() {
        let (cert, key) = self_signed("escrow");
        let der = envelope(b"ABCD-EFGH-IJKL-MNOP-QRST-UVWX\n", &cert);
        assert_eq!(decrypt_recovery_key(&der, &cert, &key).unwrap(), "ABCD-EFGH-IJKL-MNOP-QRST-UVWX");
        let mut d = plist::Dictionary::new();
        d.insert("RecoveryKey".into(), "WXYZ-1234".into());
        let mut xml = Vec::new();
        Value::Dictionary(d).to_writer_xml(&mut xml).unwrap();
        assert_eq!(decrypt_recovery_key(&envelope(&xml, &cert), &cert, &key).unwrap(), "WXYZ-1234");
        let (other, other_key) = self_signed("someone else");
        assert!(decrypt_recovery_key(&der, &other, &other_key).is_err());
        assert!(decrypt_recovery_key(b"not cms", &cert, &key).is_err());
    }
}
