//! FileVault recovery-key escrow: putting Lanyard's escrow certificate into a profile as it is
//! sent.
//!
//! A Mac encrypts its FileVault recovery key to the certificate named by the
//! `com.apple.security.FDERecoveryKeyEscrow` payload's `EncryptCertPayloadUUID`, and hands the
//! result to the MDM server. That certificate is per installation (its private key never
//! leaves Lanyard), so stored profiles carry [`ESCROW_PLACEHOLDER_DER`] and
//! [`fill_escrow_certificate`] swaps in the real one before the profile is signed and sent.

use openssl::x509::X509;
use plist::Value;

use super::{ProfileError, parse_plist, payload_content, payload_label, required_str, to_xml, top_dictionary};

/// The certificate payload's content in stored profiles until Lanyard fills it in.
///
/// It is valid DER (a UTF8String reading `LANYARD ESCROW CERTIFICATE PLACEHOLDER`) but not a
/// certificate, deliberately: a Mac given the profile unfilled cannot escrow its recovery key
/// to a certificate nobody holds the key for.
pub const ESCROW_PLACEHOLDER_DER: &[u8] = b"\x0c\x26LANYARD ESCROW CERTIFICATE PLACEHOLDER";

const ESCROW: &str = "com.apple.security.FDERecoveryKeyEscrow";
const CERTIFICATE: &str = "com.apple.security.pkcs1";

/// Puts `cert_der` (a DER X.509 certificate) into every certificate payload that an escrow
/// payload of the profile points at, and returns the profile as XML.
///
/// A profile without an escrow payload is returned unchanged, so callers can pass every
/// profile through this on the way out. An escrow payload that points nowhere, or at a payload
/// that is not a certificate, is an error naming it.
pub fn fill_escrow_certificate(xml: &[u8], cert_der: &[u8]) -> Result<Vec<u8>, ProfileError> {
    let mut profile = parse_plist(xml)?;
    let targets = escrow_targets(&profile)?;
    if targets.is_empty() {
        return Ok(xml.to_vec());
    }
    X509::from_der(cert_der).map_err(|e| ProfileError::BadCertificate(e.to_string()))?;
    let mut items = profile.as_dictionary_mut().and_then(|top| top.get_mut("PayloadContent")).and_then(Value::as_array_mut);
    for index in targets {
        if let Some(cert) = items.as_deref_mut().and_then(|items| items.get_mut(index)).and_then(Value::as_dictionary_mut) {
            cert.insert("PayloadContent".into(), Value::Data(cert_der.to_vec()));
        }
    }
    to_xml(&profile)
}

/// The indexes in `PayloadContent` of the certificate payloads escrow payloads point at.
pub(super) fn escrow_targets(profile: &Value) -> Result<Vec<usize>, ProfileError> {
    let items = payload_content(top_dictionary(profile)?, "profile")?;
    let mut targets = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let Some(escrow) = item.as_dictionary() else {
            continue;
        };
        if escrow.get("PayloadType").and_then(Value::as_string) != Some(ESCROW) {
            continue;
        }
        let at = payload_label(index, Some(escrow));
        let wanted = required_str(escrow, "EncryptCertPayloadUUID", &at)?;
        let found = items.iter().enumerate().find_map(|(i, other)| {
            let other = other.as_dictionary()?;
            let uuid = other.get("PayloadUUID")?.as_string()?;
            uuid.eq_ignore_ascii_case(wanted).then_some((i, other))
        });
        let Some((target, cert)) = found else {
            return Err(ProfileError::InvalidKey {
                at,
                key: "EncryptCertPayloadUUID",
                problem: format!("{wanted:?} is the PayloadUUID of no payload in the profile"),
            });
        };
        if cert.get("PayloadType").and_then(Value::as_string) != Some(CERTIFICATE) {
            return Err(ProfileError::InvalidKey {
                at,
                key: "EncryptCertPayloadUUID",
                problem: format!("points at {}, which is not a {CERTIFICATE} certificate payload", payload_label(target, Some(cert))),
            });
        }
        targets.push(target);
    }
    Ok(targets)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::profiles::testutil::{self_signed, validate};
    use crate::services::profiles::{BASELINE, inspect};

    fn baseline(stem: &str) -> &'static [u8] {
        BASELINE.iter().find(|(s, _)| *s == stem).map(|(_, xml)| xml.as_bytes()).expect("baseline profile")
    }

    fn certificate_payloads(xml: &[u8]) -> Vec<Vec<u8>> {
        let value = Value::from_reader_xml(xml).expect("plist");
        value
            .as_dictionary()
            .and_then(|d| d.get("PayloadContent"))
            .and_then(Value::as_array)
            .expect("payloads")
            .iter()
            .filter_map(Value::as_dictionary)
            .filter(|d| d.get("PayloadType").and_then(Value::as_string) == Some(CERTIFICATE))
            .filter_map(|d| d.get("PayloadContent").and_then(Value::as_data))
            .map(<[u8]>::to_vec)
            .collect()
    }

    #[test]
    fn the_baseline_carries_the_placeholder() {
        assert_eq!(certificate_payloads(baseline("mac-filevault")), [ESCROW_PLACEHOLDER_DER.to_vec()]);
        // The placeholder is well-formed DER: tag, then a length that matches.
        assert_eq!(ESCROW_PLACEHOLDER_DER[0], 0x0c);
        assert_eq!(usize::from(ESCROW_PLACEHOLDER_DER[1]), ESCROW_PLACEHOLDER_DER.len() - 2);
    }

    #[test]
    fn fills_the_mac_filevault_baseline() {
        let (cert, _) = self_signed("Lanyard FileVault escrow");
        let der = cert.to_der().expect("der");
        let filled = fill_escrow_certificate(baseline("mac-filevault"), &der).expect("fill");
        assert_eq!(certificate_payloads(&filled), [der]);
        let p = inspect(&filled).expect("still a sound profile");
        assert_eq!(p.identifier, "uk.sch.lanyard.baseline.mac-filevault");
        validate(&filled, Some("macOS")).expect("filled profile validates");
    }

    #[test]
    fn leaves_profiles_without_escrow_alone() {
        let xml = baseline("ks2-web-filtered");
        assert_eq!(fill_escrow_certificate(xml, b"not even a cert").expect("no-op"), xml);
    }

    #[test]
    fn refuses_bad_certificates_and_dangling_references() {
        let xml = baseline("mac-filevault");
        let e = fill_escrow_certificate(xml, ESCROW_PLACEHOLDER_DER).unwrap_err();
        assert!(matches!(e, ProfileError::BadCertificate(_)), "{e}");

        let (cert, _) = self_signed("Lanyard FileVault escrow");
        let der = cert.to_der().expect("der");
        let text = std::str::from_utf8(xml).expect("utf-8");
        let cert_uuid = "72EB990A-7AE4-4145-A121-5452105DD9A2";
        assert!(text.contains(cert_uuid), "the baseline's certificate UUID changed");

        // Point the escrow payload at nothing.
        let dangling = text.replacen(
            &format!("<key>EncryptCertPayloadUUID</key>\n\t\t\t<string>{cert_uuid}"),
            "<key>EncryptCertPayloadUUID</key>\n\t\t\t<string>00000000-0000-0000-0000-000000000000",
            1,
        );
        assert_ne!(dangling, text);
        let e = fill_escrow_certificate(dangling.as_bytes(), &der).unwrap_err();
        assert!(
            e.to_string().starts_with(
                "payload 3 (com.apple.security.FDERecoveryKeyEscrow \"Send the recovery key to \
                 Lanyard\"): EncryptCertPayloadUUID"
            ),
            "{e}"
        );

        // Point it at the FileVault payload instead of the certificate.
        let filevault_uuid = "C7F73BA4-EFA8-42E1-8A51-4D5F16C30FE2";
        let wrong = text.replacen(
            &format!("<key>EncryptCertPayloadUUID</key>\n\t\t\t<string>{cert_uuid}"),
            &format!("<key>EncryptCertPayloadUUID</key>\n\t\t\t<string>{filevault_uuid}"),
            1,
        );
        let e = fill_escrow_certificate(wrong.as_bytes(), &der).unwrap_err();
        assert!(e.to_string().contains("not a com.apple.security.pkcs1"), "{e}");

        let missing = text.replacen("<key>EncryptCertPayloadUUID</key>", "<key>Unused</key>", 1);
        let e = fill_escrow_certificate(missing.as_bytes(), &der).unwrap_err();
        assert!(e.to_string().ends_with("missing EncryptCertPayloadUUID"), "{e}");
    }
}
