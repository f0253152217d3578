//! CMS (PKCS#7) signatures over the openssl crate.
//!
//! - [`verify_mdm_signature`] authenticates a device request: the `Mdm-Signature` header holds a
//!   detached CMS SignedData over the exact body, made with the device's identity certificate,
//!   which must chain to Lanyard's CA. This works behind any TLS-terminating proxy.
//! - [`sign_detached`] makes such a signature, to play a device in tests and load generation.
//! - [`sign_profile`] signs a configuration profile (content attached, DER) so devices show it
//!   as verified; [`unwrap_signed_profile`] reads one back.
//! - [`verify_attached`] checks a SignedData that carries its content (a device's MachineInfo at
//!   ADE enrolment) against a given set of anchors, and returns the content.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use openssl::error::ErrorStack;
use openssl::pkcs7::{Pkcs7, Pkcs7Flags};
use openssl::pkey::{PKey, Private};
use openssl::stack::Stack;
use openssl::x509::store::{X509Store, X509StoreBuilder};
use openssl::x509::verify::X509VerifyFlags;
use openssl::x509::{X509, X509PurposeId, X509StoreContext};

/// Why a request's `Mdm-Signature` did not authenticate it. Answer any of these with 400 or
/// 403, never 401 (a 401 makes devices unenrol).
#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    /// The header is absent or empty.
    #[error("no Mdm-Signature header")]
    Missing,
    /// The header is not base64.
    #[error("Mdm-Signature is not base64: {0}")]
    NotBase64(String),
    /// The decoded header is not a DER PKCS#7/CMS structure.
    #[error("Mdm-Signature is not DER CMS signed data: {0}")]
    NotCms(String),
    /// The CMS structure names no signer certificate.
    #[error("Mdm-Signature carries no signer certificate")]
    NoSigner,
    /// The signature does not match the body (tampered body, or forged signature).
    #[error("Mdm-Signature does not verify over the request body: {0}")]
    BadSignature(String),
    /// The signature is sound but the signer certificate does not chain to Lanyard's CA (or
    /// has expired, or is not yet valid).
    #[error("Mdm-Signature signer `{subject}` is not trusted: {reason}")]
    Untrusted {
        /// The signer certificate's subject, for the log.
        subject: String,
        /// openssl's verification verdict.
        reason: String,
    },
    /// openssl failed for a reason unrelated to the input.
    #[error("openssl error: {0}")]
    Openssl(#[from] ErrorStack),
}

/// Why signing, or reading a signed profile, failed.
#[derive(Debug, thiserror::Error)]
pub enum CmsError {
    /// The input is not DER PKCS#7/CMS signed data.
    #[error("not DER CMS signed data: {0}")]
    NotCms(String),
    /// The signature does not verify over the content.
    #[error("signature does not verify: {0}")]
    BadSignature(String),
    /// openssl failed: e.g. the key does not match the certificate.
    #[error("openssl error: {0}")]
    Openssl(#[from] ErrorStack),
}

/// Checks the `Mdm-Signature` header of a device request and returns the signer certificate.
///
/// `header_b64` is the header value: base64 of a DER, detached CMS SignedData over `body`.
/// The signature is checked over the exact body bytes, then the signer certificate is verified
/// against `ca` alone (purpose "any": device identities carry the clientAuth EKU). `ca` is the
/// CA that issues device identities; it is trusted as an anchor even if it is itself an
/// intermediate. Chain certificates inside the signature are used as untrusted intermediates.
pub fn verify_mdm_signature(body: &[u8], header_b64: &str, ca: &X509) -> Result<X509, SignatureError> {
    verify_detached_der(body, &decode_header(header_b64)?, ca)
}

/// The DER inside an `Mdm-Signature` header value.
pub fn decode_header(header_b64: &str) -> Result<Vec<u8>, SignatureError> {
    let header = header_b64.trim();
    if header.is_empty() {
        return Err(SignatureError::Missing);
    }
    BASE64.decode(header).map_err(|e| SignatureError::NotBase64(e.to_string()))
}

/// [`verify_mdm_signature`] after the base64: `der` is the CMS SignedData itself.
pub fn verify_detached_der(body: &[u8], der: &[u8], ca: &X509) -> Result<X509, SignatureError> {
    let (p7, signer) = signed_data(der)?;
    // Signature over the body only; the chain is checked below against our CA alone, so that
    // a forged signature and a foreign certificate give different answers.
    let none = Stack::new()?;
    let empty_store = X509StoreBuilder::new()?.build();
    p7.verify(&none, &empty_store, Some(body), None, Pkcs7Flags::NOVERIFY | Pkcs7Flags::BINARY | Pkcs7Flags::DETACHED)
        .map_err(|e| SignatureError::BadSignature(first_reason(&e)))?;
    verify_chain(&p7, signer, &ca_store(ca)?)
}

/// Checks a CMS SignedData that carries its content (attached), made by a certificate that
/// chains to one of `anchors`, and returns the content and the signer.
///
/// For ADE enrolment: a device in Setup Assistant signs its MachineInfo with the identity Apple
/// gave it at manufacture, sending the intermediate with it, so `anchors` is Apple's root (or a
/// test CA). An anchor may be an intermediate (partial chains allowed). Validity dates are not
/// checked: Apple's device identities and the "Apple iPhone Device CA" they chain to were made
/// years ago and some are past their notAfter, yet Apple documents them as the device's proof.
pub fn verify_attached(der: &[u8], anchors: &[X509]) -> Result<(Vec<u8>, X509), SignatureError> {
    let (p7, signer) = signed_data(der)?;
    // The signature first, without the chain, as above.
    let none = Stack::new()?;
    let empty_store = X509StoreBuilder::new()?.build();
    let mut content = Vec::new();
    p7.verify(&none, &empty_store, None, Some(&mut content), Pkcs7Flags::NOVERIFY | Pkcs7Flags::BINARY)
        .map_err(|e| SignatureError::BadSignature(first_reason(&e)))?;
    let signer = verify_chain(&p7, signer, &anchor_store(anchors, X509VerifyFlags::NO_CHECK_TIME)?)?;
    Ok((content, signer))
}

/// A SignedData and its first signer certificate, refusing a digest OpenSSL would leak on.
fn signed_data(der: &[u8]) -> Result<(Pkcs7, X509), SignatureError> {
    let p7 = Pkcs7::from_der(der).map_err(|e| SignatureError::NotCms(first_reason(&e)))?;
    if p7.signed().is_none() {
        return Err(SignatureError::NotCms("not a SignedData structure".into()));
    }
    if !digests_are_known(&p7.to_der()?) {
        return Err(SignatureError::BadSignature("a listed digest algorithm is not MD5, SHA-1 or SHA-2".into()));
    }
    let none = Stack::new()?;
    let signer = p7
        .signers(&none, Pkcs7Flags::empty())
        .ok()
        .and_then(|signers| signers.iter().next().map(|c| c.to_owned()))
        .ok_or(SignatureError::NoSigner)?;
    Ok((p7, signer))
}

/// The signer's chain against `store`, with the certificates in the message as untrusted
/// intermediates.
fn verify_chain(p7: &Pkcs7, signer: X509, store: &X509Store) -> Result<X509, SignatureError> {
    let mut intermediates = Stack::new()?;
    if let Some(certs) = p7.signed().and_then(|s| s.certificates()) {
        for cert in certs {
            intermediates.push(cert.to_owned())?;
        }
    }
    let mut ctx = X509StoreContext::new()?;
    let verdict = ctx.init(store, &signer, &intermediates, |c| {
        let ok = c.verify_cert()?;
        Ok((ok, c.error()))
    })?;
    match verdict {
        (true, _) => Ok(signer),
        (false, err) => Err(SignatureError::Untrusted { subject: subject_of(&signer), reason: err.error_string().to_owned() }),
    }
}

/// Whether every algorithm in a SignedData's digestAlgorithms (read from `der`, OpenSSL's own
/// DER encoding of it) is a digest OpenSSL computes: MD5 (refused later, by
/// [`super::signers::SignerCache::verify`]), SHA-1 or SHA-2.
///
/// OpenSSL 3.0's `PKCS7_verify` leaks the copy of the detached body it makes (about 270 bytes)
/// when it cannot set up a listed digest, so an unauthenticated request naming an unknown one
/// cost the server memory for good: found by the `mdm_signature` fuzz target under
/// LeakSanitizer. Such a signature never reaches it.
fn digests_are_known(der: &[u8]) -> bool {
    use crate::protocol::der::{OID, Reader, SEQUENCE, SET, context};
    const KNOWN: [&[u8]; 6] = [
        &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x02, 0x05],       // MD5
        &[0x2B, 0x0E, 0x03, 0x02, 0x1A],                         // SHA-1
        &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x04], // SHA-224
        &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01], // SHA-256
        &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02], // SHA-384
        &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03], // SHA-512
    ];
    let read = || -> Option<bool> {
        let mut ci = Reader::new(der).expect(SEQUENCE)?.children();
        ci.expect(OID)?;
        let mut sd = ci.expect(context(0))?.children().expect(SEQUENCE)?.children();
        sd.expect(crate::protocol::der::INTEGER)?;
        let mut algs = sd.expect(SET)?.children();
        let mut all_known = true;
        while let Some(alg) = algs.next_tlv() {
            let oid = alg.children().expect(OID)?.content;
            all_known &= alg.tag == SEQUENCE && KNOWN.contains(&oid);
        }
        Some(all_known && algs.is_empty())
    };
    read().unwrap_or(false)
}

/// Whether `cert` chains to `ca` alone (any purpose): the check `verify_mdm_signature` makes,
/// for a certificate that arrived without a signature (a TLS client certificate).
pub fn chains_to(cert: &X509, ca: &X509) -> bool {
    let verify = || -> Result<bool, ErrorStack> {
        let store = ca_store(ca)?;
        let chain = Stack::new()?;
        let mut ctx = X509StoreContext::new()?;
        ctx.init(&store, cert, &chain, |c| c.verify_cert())
    };
    verify().unwrap_or(false)
}

/// A store trusting only `ca`, accepting a leaf of any purpose. `ca` is a trust anchor even
/// when it is an intermediate (partial chains allowed), so the issuing CA is always enough.
fn ca_store(ca: &X509) -> Result<X509Store, ErrorStack> {
    anchor_store(std::slice::from_ref(ca), X509VerifyFlags::empty())
}

/// A store trusting `anchors` (each an anchor even if an intermediate), any purpose, with
/// `extra` flags beside PARTIAL_CHAIN.
fn anchor_store(anchors: &[X509], extra: X509VerifyFlags) -> Result<X509Store, ErrorStack> {
    let mut b = X509StoreBuilder::new()?;
    for a in anchors {
        b.add_cert(a.clone())?;
    }
    b.set_purpose(X509PurposeId::ANY)?;
    b.set_flags(X509VerifyFlags::PARTIAL_CHAIN | extra)?;
    Ok(b.build())
}

/// Signs `body` as a device signs a request: detached CMS SignedData, DER, with the signer
/// certificate included. Base64 of the result is the `Mdm-Signature` header.
///
/// Fails only when openssl does, e.g. when `key` does not belong to `cert`.
pub fn sign_detached(body: &[u8], cert: &X509, key: &PKey<Private>) -> Result<Vec<u8>, CmsError> {
    let none = Stack::new()?;
    let p7 = Pkcs7::sign(cert, key, &none, body, Pkcs7Flags::DETACHED | Pkcs7Flags::BINARY)?;
    Ok(p7.to_der()?)
}

/// Signs a configuration profile: CMS SignedData with the plist attached (binary, so the bytes
/// are signed as they are), the signer certificate and `chain` included, DER-encoded. Devices
/// show such a profile as verified when the chain reaches a root they trust.
///
/// `openssl smime -verify` checks the signer for the S/MIME signing purpose: the signing
/// certificate should carry no extended key usage, or one that includes emailProtection.
pub fn sign_profile(plist: &[u8], cert: &X509, key: &PKey<Private>, chain: &[X509]) -> Result<Vec<u8>, CmsError> {
    let mut certs = Stack::new()?;
    for c in chain {
        certs.push(c.clone())?;
    }
    let p7 = Pkcs7::sign(cert, key, &certs, plist, Pkcs7Flags::BINARY)?;
    Ok(p7.to_der()?)
}

/// Reads a signed profile: checks the signature over the attached content (not the signer's
/// chain) and returns the content and the signer certificates.
pub fn unwrap_signed_profile(der: &[u8]) -> Result<(Vec<u8>, Vec<X509>), CmsError> {
    let p7 = Pkcs7::from_der(der).map_err(|e| CmsError::NotCms(first_reason(&e)))?;
    if p7.signed().is_none() {
        return Err(CmsError::NotCms("not a SignedData structure".into()));
    }
    let none = Stack::new()?;
    let store = X509StoreBuilder::new()?.build();
    let mut content = Vec::new();
    p7.verify(&none, &store, None, Some(&mut content), Pkcs7Flags::NOVERIFY | Pkcs7Flags::BINARY)
        .map_err(|e| CmsError::BadSignature(first_reason(&e)))?;
    let signers = p7
        .signers(&none, Pkcs7Flags::empty())
        .map_err(|e| CmsError::BadSignature(first_reason(&e)))?
        .iter()
        .map(|c| c.to_owned())
        .collect();
    Ok((content, signers))
}

/// The most useful line of an openssl error stack.
fn first_reason(e: &ErrorStack) -> String {
    e.errors().iter().rev().find_map(|err| err.reason().map(str::to_owned)).unwrap_or_else(|| e.to_string())
}

fn subject_of(cert: &X509) -> String {
    cert.subject_name()
        .entries()
        .map(|entry| {
            let key = entry.object().nid().short_name().unwrap_or("?");
            let value = entry.data().to_string().unwrap_or_default();
            format!("{key}={value}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use std::process::Command as Process;

    use super::*;
    use crate::protocol::testutil::{Identity, Leaf, make_ca, make_leaf};

    const BODY: &[u8] = b"<?xml version=\"1.0\"?><plist><dict><key>Status</key>\
        <string>Idle</string></dict></plist>";

    fn header(body: &[u8], id: &Identity) -> String {
        BASE64.encode(sign_detached(body, &id.cert, &id.key).expect("sign"))
    }

    #[test]
    fn round_trip_returns_the_signer() {
        let ca = make_ca("Lanyard Test CA");
        let device = make_leaf(&ca, "device-1", Leaf::Device);
        let signer = verify_mdm_signature(BODY, &header(BODY, &device), &ca.cert).expect("ok");
        assert_eq!(signer.to_der().expect("der"), device.cert.to_der().expect("der"));
    }

    #[test]
    fn tampered_body_fails() {
        let ca = make_ca("Lanyard Test CA");
        let device = make_leaf(&ca, "device-1", Leaf::Device);
        let h = header(BODY, &device);
        let mut tampered = BODY.to_vec();
        tampered[60] ^= 1;
        let e = verify_mdm_signature(&tampered, &h, &ca.cert).unwrap_err();
        assert!(matches!(e, SignatureError::BadSignature(_)), "{e}");
    }

    #[test]
    fn forged_signature_fails() {
        // Someone holding the device's certificate but not its key.
        let ca = make_ca("Lanyard Test CA");
        let device = make_leaf(&ca, "device-1", Leaf::Device);
        let forger = make_leaf(&ca, "forger", Leaf::Device);
        let e = sign_detached(BODY, &device.cert, &forger.key).unwrap_err();
        assert!(matches!(e, CmsError::Openssl(_)), "{e}");
        // A signature whose bytes were altered: the encrypted digest ends the DER.
        let mut der = sign_detached(BODY, &device.cert, &device.key).expect("sign");
        let last = der.len() - 1;
        der[last] ^= 0x5a;
        let e = verify_mdm_signature(BODY, &BASE64.encode(&der), &ca.cert).unwrap_err();
        assert!(matches!(e, SignatureError::BadSignature(_)), "{e}");
    }

    /// Found by the `mdm_signature` fuzz target (LeakSanitizer): a signature listing a digest
    /// OpenSSL does not know made `PKCS7_verify` leak a copy of the body on every request. It is
    /// refused before OpenSSL sees it (our message, not OpenSSL's "unknown digest type").
    #[test]
    fn unknown_listed_digests_never_reach_pkcs7_verify() {
        let ca = make_ca("Lanyard Test CA");
        let device = make_leaf(&ca, "device-1", Leaf::Device);
        let der = sign_detached(BODY, &device.cert, &device.key).expect("sign");
        assert!(digests_are_known(&der));
        // The first SHA-256 OID is the one in digestAlgorithms; 2.16.840.1.101.3.4.2.1 becomes
        // 2.16.840.1.101.3.4.2.49, which no provider implements.
        let sha256 = [0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];
        let at = der.windows(sha256.len()).position(|w| w == sha256).expect("SHA-256");
        let mut unknown = der.clone();
        unknown[at + sha256.len() - 1] = 0x31;
        assert!(!digests_are_known(&unknown));
        let e = verify_detached_der(BODY, &unknown, &ca.cert).unwrap_err();
        assert!(e.to_string().contains("not MD5, SHA-1 or SHA-2"), "{e}");
        for garbage in [&b""[..], b"\x30\x00", &der[..40]] {
            assert!(!digests_are_known(garbage));
        }
    }

    #[test]
    fn issuing_intermediate_is_enough() {
        let root = make_ca("Lanyard Test Root");
        let issuing = make_leaf(&root, "Lanyard Device CA", Leaf::Intermediate);
        let device = make_leaf(&issuing, "device-2", Leaf::Device);
        let h = header(BODY, &device);
        verify_mdm_signature(BODY, &h, &issuing.cert).expect("issuing CA as anchor");
        // The root alone cannot vouch: the device does not send the intermediate.
        let e = verify_mdm_signature(BODY, &h, &root.cert).unwrap_err();
        assert!(matches!(e, SignatureError::Untrusted { .. }), "{e}");
    }

    #[test]
    fn attached_content_verifies_against_the_anchor_through_a_sent_intermediate() {
        let root = make_ca("Test Apple Root CA");
        let device_ca = make_leaf(&root, "Test Apple iPhone Device CA", Leaf::Intermediate);
        let device = make_leaf(&device_ca, "device-3", Leaf::Device);
        let der = sign_profile(BODY, &device.cert, &device.key, std::slice::from_ref(&device_ca.cert)).expect("sign");
        let (content, signer) = verify_attached(&der, std::slice::from_ref(&root.cert)).expect("verifies");
        assert_eq!(content, BODY);
        assert_eq!(signer.to_der().unwrap(), device.cert.to_der().unwrap());
        // Another root: untrusted. Altered content: a bad signature. Not CMS: NotCms.
        let other = make_ca("Someone Else Root");
        let e = verify_attached(&der, std::slice::from_ref(&other.cert)).unwrap_err();
        assert!(matches!(e, SignatureError::Untrusted { .. }), "{e}");
        let mut tampered = der.clone();
        let at = tampered.windows(6).position(|w| w == b"Status").expect("content in the DER");
        tampered[at] ^= 1;
        let e = verify_attached(&tampered, std::slice::from_ref(&root.cert)).unwrap_err();
        assert!(matches!(e, SignatureError::BadSignature(_)), "{e}");
        assert!(matches!(verify_attached(b"plist", &[root.cert.clone()]).unwrap_err(), SignatureError::NotCms(_)));
        // Without the intermediate in the message, the root cannot vouch.
        let bare = sign_profile(BODY, &device.cert, &device.key, &[]).expect("sign");
        assert!(matches!(verify_attached(&bare, &[root.cert.clone()]).unwrap_err(), SignatureError::Untrusted { .. }));
    }

    #[test]
    fn signer_from_another_ca_fails() {
        let ours = make_ca("Lanyard Test CA");
        let theirs = make_ca("Someone Else CA");
        let device = make_leaf(&theirs, "device-x", Leaf::Device);
        let e = verify_mdm_signature(BODY, &header(BODY, &device), &ours.cert).unwrap_err();
        match e {
            SignatureError::Untrusted { subject, reason } => {
                assert!(subject.contains("device-x"), "{subject}");
                assert!(!reason.is_empty());
            }
            other => panic!("expected Untrusted, got {other}"),
        }
    }

    #[test]
    fn missing_and_garbage_headers_fail_distinctly() {
        let ca = make_ca("Lanyard Test CA");
        assert!(matches!(verify_mdm_signature(BODY, "", &ca.cert), Err(SignatureError::Missing)));
        assert!(matches!(verify_mdm_signature(BODY, "  ", &ca.cert), Err(SignatureError::Missing)));
        assert!(matches!(verify_mdm_signature(BODY, "not base64!!", &ca.cert), Err(SignatureError::NotBase64(_))));
        assert!(matches!(verify_mdm_signature(BODY, &BASE64.encode(b"garbage"), &ca.cert), Err(SignatureError::NotCms(_))));
        // Truncated real signature.
        let device = make_leaf(&ca, "device-1", Leaf::Device);
        let der = sign_detached(BODY, &device.cert, &device.key).expect("sign");
        let e = verify_mdm_signature(BODY, &BASE64.encode(&der[..der.len() / 2]), &ca.cert).unwrap_err();
        assert!(matches!(e, SignatureError::NotCms(_)), "{e}");
        // Signed without the signer certificate (NOCERTS): nobody to trust.
        let none = Stack::new().expect("stack");
        let bare = Pkcs7::sign(&device.cert, &device.key, &none, BODY, Pkcs7Flags::DETACHED | Pkcs7Flags::BINARY | Pkcs7Flags::NOCERTS)
            .expect("sign");
        let bare = BASE64.encode(bare.to_der().expect("der"));
        let e = verify_mdm_signature(BODY, &bare, &ca.cert).unwrap_err();
        assert!(matches!(e, SignatureError::NoSigner), "{e}");
    }

    #[test]
    fn signed_profile_unwraps() {
        let ca = make_ca("Lanyard Test CA");
        let signer = make_leaf(&ca, "Lanyard profile signing", Leaf::Signer);
        let der = sign_profile(BODY, &signer.cert, &signer.key, std::slice::from_ref(&ca.cert)).expect("sign");
        let (content, signers) = unwrap_signed_profile(&der).expect("unwrap");
        assert_eq!(content, BODY);
        assert_eq!(signers.len(), 1);
        assert_eq!(signers[0].to_der().expect("der"), signer.cert.to_der().expect("der"));
        assert!(matches!(unwrap_signed_profile(b"nope"), Err(CmsError::NotCms(_))));
        // Flip a byte of the attached content: the signature no longer verifies.
        let mut bad = der.clone();
        let at = bad.windows(6).position(|w| w == b"<plist").expect("content inside");
        bad[at + 1] = b'P';
        assert!(matches!(unwrap_signed_profile(&bad), Err(CmsError::BadSignature(_))));
    }

    #[test]
    fn openssl_cli_verifies_a_signed_profile() {
        let ca = make_ca("Lanyard Test CA");
        let signer = make_leaf(&ca, "Lanyard profile signing", Leaf::Signer);
        let der = sign_profile(BODY, &signer.cert, &signer.key, &[]).expect("sign");
        let dir = tempfile::tempdir().expect("tempdir");
        let ca_pem = dir.path().join("ca.pem");
        let profile = dir.path().join("profile.mobileconfig");
        std::fs::write(&ca_pem, ca.cert.to_pem().expect("pem")).expect("write");
        std::fs::write(&profile, &der).expect("write");
        let out = Process::new("openssl")
            .args(["smime", "-verify", "-inform", "DER", "-in"])
            .arg(&profile)
            .arg("-CAfile")
            .arg(&ca_pem)
            .output()
            .expect("run openssl");
        assert!(out.status.success(), "openssl smime -verify failed: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.stdout, BODY);

        // Against another CA the CLI refuses it.
        let other = make_ca("Someone Else CA");
        std::fs::write(&ca_pem, other.cert.to_pem().expect("pem")).expect("write");
        let out = Process::new("openssl")
            .args(["smime", "-verify", "-inform", "DER", "-in"])
            .arg(&profile)
            .arg("-CAfile")
            .arg(&ca_pem)
            .output()
            .expect("run openssl");
        assert!(!out.status.success());
    }
}
