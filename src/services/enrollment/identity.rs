//! Certificate issuance from a PKCS#10 request, and renewal checks.
//!
//! These device identities are written by OpenSSL's `X509Builder`, not by rcgen (which writes
//! the certificates of `crate::pki`). rcgen does not fit here, for three reasons:
//! * the subject is copied from the CSR as it is; rcgen's `DistinguishedName` keeps one value
//!   per attribute type and one attribute per RDN, so a subject with two `OU`s or a
//!   multi-valued RDN could not be copied faithfully;
//! * rcgen writes the SubjectPublicKeyInfo from its own algorithm table (RSA, P-256, P-384,
//!   Ed25519), so a CSR with any other key would be refused where OpenSSL issues it;
//! * it would not be faster: the CertRep's CMS (OpenSSL) needs the certificate as an `X509`, so
//!   rcgen's DER would be parsed straight back, and on OpenSSL 3.0 that parse decodes the public
//!   key (the slow part of `X509_PUBKEY_set` that rcgen would save); the CA's RSA signature,
//!   most of the time here, costs the same either way. Measured (BENCHMARKS.md round 6): with
//!   rcgen writing them from the CSR's SubjectPublicKeyInfo, an enrolment took 4.40–4.42 ms of
//!   server CPU against 4.12–4.20 ms with OpenSSL, on the same quiet machine.

use std::time::{SystemTime, UNIX_EPOCH};

use openssl::asn1::{Asn1Integer, Asn1Time};
use openssl::bn::{BigNum, MsbOption};
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::stack::Stack;
use openssl::x509::extension::{AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectKeyIdentifier};
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::{X509, X509Builder, X509Req, X509StoreContext};

use crate::protocol::scep::{MessageType, OpensslContext as _, ScepError, ScepRequest};

/// Backdating of notBefore, to tolerate clients whose clock is a little slow.
const BACKDATE_SECS: i64 = 5 * 60;
/// Random bits in a serial number (RFC 5280 needs ≤ 20 octets, CA/B ≥ 64 bits).
const SERIAL_BITS: i32 = 127;

/// Issues a client certificate for `csr`, signed by the CA.
///
/// * The CSR's self-signature must verify (any digest OpenSSL accepts,
///   SHA-1 included, for old clients).
/// * Subject and public key come from the CSR; requested extensions are
///   ignored (no SANs are copied).
/// * Random positive 127-bit serial; notBefore five minutes in the past;
///   notAfter `days` from now, but never after the CA's own notAfter.
/// * Extensions: basicConstraints CA:FALSE (critical), keyUsage
///   digitalSignature + keyEncipherment (critical), extendedKeyUsage
///   clientAuth, subjectKeyIdentifier, authorityKeyIdentifier.
/// * Signed with SHA-256.
pub fn issue_certificate(csr: &X509Req, ca_cert: &X509, ca_key: &PKey<Private>, days: u32) -> Result<X509, ScepError> {
    if days == 0 {
        return Err(ScepError::Issue("validity must be at least one day".into()));
    }
    let public_key = csr.public_key().map_err(|e| ScepError::InvalidCsr(format!("unreadable public key: {e}")))?;
    let signature_ok = csr.verify(&public_key).map_err(|e| ScepError::InvalidCsr(format!("signature check failed: {e}")))?;
    if !signature_ok {
        return Err(ScepError::InvalidCsr("self-signature does not verify".into()));
    }
    if csr.subject_name().entries().next().is_none() {
        return Err(ScepError::InvalidCsr("subject is empty".into()));
    }

    let mut builder = X509Builder::new().ctx("creating a certificate builder")?;
    builder.set_version(2).ctx("setting the version")?;

    let mut serial = BigNum::new().ctx("allocating a serial")?;
    serial.rand(SERIAL_BITS, MsbOption::ONE, false).ctx("generating a serial")?;
    let serial_hex = serial.to_hex_str().map(|s| s.to_string()).unwrap_or_default();
    let serial = Asn1Integer::from_bn(&serial).ctx("encoding the serial")?;
    builder.set_serial_number(&serial).ctx("setting the serial")?;

    builder.set_subject_name(csr.subject_name()).ctx("setting the subject")?;
    builder.set_issuer_name(ca_cert.subject_name()).ctx("setting the issuer")?;
    builder.set_pubkey(&public_key).ctx("setting the public key")?;

    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)).unwrap_or(0);
    let not_before = Asn1Time::from_unix(now - BACKDATE_SECS).ctx("computing notBefore")?;
    let mut not_after = Asn1Time::days_from_now(days).ctx("computing notAfter")?;
    if ca_cert.not_after() < not_after {
        // Never outlive the issuing CA: end exactly when it does.
        let remaining = Asn1Time::from_unix(now).and_then(|t| t.diff(ca_cert.not_after())).ctx("comparing with the CA's notAfter")?;
        let end = now + i64::from(remaining.days) * 86_400 + i64::from(remaining.secs);
        not_after = Asn1Time::from_unix(end).ctx("clamping notAfter to the CA's")?;
    }
    if not_after <= Asn1Time::from_unix(now).ctx("computing now")? {
        return Err(ScepError::Issue("the CA certificate has expired".into()));
    }
    builder.set_not_before(&not_before).ctx("setting notBefore")?;
    builder.set_not_after(&not_after).ctx("setting notAfter")?;

    let basic = BasicConstraints::new().critical().build().ctx("building basicConstraints")?;
    builder.append_extension(basic).ctx("adding basicConstraints")?;
    let key_usage = KeyUsage::new().critical().digital_signature().key_encipherment().build().ctx("building keyUsage")?;
    builder.append_extension(key_usage).ctx("adding keyUsage")?;
    let eku = ExtendedKeyUsage::new().client_auth().build().ctx("building extendedKeyUsage")?;
    builder.append_extension(eku).ctx("adding extendedKeyUsage")?;
    let ski = SubjectKeyIdentifier::new().build(&builder.x509v3_context(Some(ca_cert), None)).ctx("building subjectKeyIdentifier")?;
    builder.append_extension(ski).ctx("adding subjectKeyIdentifier")?;
    // keyid when the CA has an SKI, otherwise issuer name + serial.
    let aki = AuthorityKeyIdentifier::new()
        .keyid(false)
        .issuer(false)
        .build(&builder.x509v3_context(Some(ca_cert), None))
        .ctx("building authorityKeyIdentifier")?;
    builder.append_extension(aki).ctx("adding authorityKeyIdentifier")?;

    builder.sign(ca_key, MessageDigest::sha256()).map_err(|e| ScepError::Issue(format!("signing failed (does the CA key match?): {e}")))?;
    let cert = builder.build();
    tracing::info!(
        subject = ?cert.subject_name(),
        serial = %serial_hex,
        days,
        "scep: issued certificate"
    );
    Ok(cert)
}

/// Whether `cert` was issued by `ca_cert` and is currently valid: its
/// signature verifies with the CA key, the issuer matches and neither
/// certificate is outside its validity period. (A one-element chain check by
/// OpenSSL's verifier, with the CA as the only trust anchor.)
pub fn cert_issued_by(cert: &X509, ca_cert: &X509) -> bool {
    let check = || -> Result<bool, openssl::error::ErrorStack> {
        let mut store = X509StoreBuilder::new()?;
        store.add_cert(ca_cert.clone())?;
        let store = store.build();
        let chain = Stack::new()?;
        let mut ctx = X509StoreContext::new()?;
        ctx.init(&store, cert, &chain, |c| c.verify_cert())
    };
    match check() {
        Ok(ok) => ok,
        Err(e) => {
            tracing::debug!("scep: certificate chain check failed: {e}");
            false
        }
    }
}

/// Whether `req` is a RenewalReq (or the obsolete UpdateReq) signed with a
/// valid certificate issued by our CA — i.e. a renewal the server may grant
/// without a challenge. The signature over the message itself was already
/// verified by [`super::parse_pki_message`].
pub fn is_renewal_signed_by_ca(req: &ScepRequest, ca_cert: &X509) -> bool {
    matches!(req.message_type, MessageType::RenewalReq | MessageType::UpdateReq) && cert_issued_by(&req.signer_cert, ca_cert)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::scep::testutil::{self, Requester, TestCa};
    use crate::protocol::scep::{ffi, parse_pki_message};
    use openssl::symm::Cipher;

    #[test]
    fn issues_a_valid_client_certificate() {
        let ca = TestCa::new("Lanyard Test CA");
        let requester = Requester::new("device-1", "secret", ffi::V_ASN1_PRINTABLESTRING, MessageDigest::sha256());
        let cert = issue_certificate(&requester.csr(), &ca.cert, &ca.key, 365).unwrap();
        testutil::assert_valid_client_cert(&cert, &ca.cert, 365);
        assert_eq!(cert.subject_name().to_der().unwrap(), requester.csr().subject_name().to_der().unwrap());
        assert!(cert.public_key().unwrap().public_eq(&requester.key));
        // Two issuances never share a serial.
        let again = issue_certificate(&requester.csr(), &ca.cert, &ca.key, 365).unwrap();
        assert_ne!(cert.serial_number().to_bn().unwrap(), again.serial_number().to_bn().unwrap());
    }

    #[test]
    fn accepts_sha1_signed_csr() {
        let ca = TestCa::new("Lanyard Test CA");
        let requester = Requester::new("old-device", "secret", ffi::V_ASN1_PRINTABLESTRING, MessageDigest::sha1());
        let cert = issue_certificate(&requester.csr(), &ca.cert, &ca.key, 30).unwrap();
        testutil::assert_valid_client_cert(&cert, &ca.cert, 30);
    }

    #[test]
    fn rejects_csr_with_bad_signature() {
        let ca = TestCa::new("Lanyard Test CA");
        let requester = Requester::new("device-1", "secret", ffi::V_ASN1_PRINTABLESTRING, MessageDigest::sha256());
        let mut der = requester.csr_der.clone();
        *der.last_mut().unwrap() ^= 1;
        let csr = X509Req::from_der(&der).unwrap();
        let err = issue_certificate(&csr, &ca.cert, &ca.key, 365).unwrap_err();
        assert!(matches!(err, ScepError::InvalidCsr(_)), "{err}");
    }

    #[test]
    fn validity_is_clamped_to_the_ca() {
        let ca = TestCa::with_days("Short CA", 10);
        let requester = Requester::without_challenge("device-1");
        let cert = issue_certificate(&requester.csr(), &ca.cert, &ca.key, 365).unwrap();
        assert!(cert.not_after() <= ca.cert.not_after());
        let days = Asn1Time::days_from_now(0).unwrap().diff(cert.not_after()).unwrap().days;
        assert!((9..=10).contains(&days), "{days}");
    }

    #[test]
    fn renewal_detection() {
        let ca = TestCa::new("Lanyard Test CA");
        let other = TestCa::new("Other CA");
        let requester = Requester::new("device-1", "secret", ffi::V_ASN1_PRINTABLESTRING, MessageDigest::sha256());

        // Enrol, then renew signing with the issued certificate.
        let issued = issue_certificate(&requester.csr(), &ca.cert, &ca.key, 365).unwrap();
        let renewing = requester.with_cert(issued.clone());
        let msg = renewing.pkcs_req(&ca.cert, Cipher::aes_256_cbc(), MessageDigest::sha256(), MessageType::RenewalReq);
        let req = parse_pki_message(&msg.der, &ca.cert, &ca.key).unwrap();
        assert_eq!(req.message_type, MessageType::RenewalReq);
        assert!(is_renewal_signed_by_ca(&req, &ca.cert));
        assert!(!is_renewal_signed_by_ca(&req, &other.cert));

        // RenewalReq signed with a self-signed certificate: not a renewal.
        let msg = requester.pkcs_req(&ca.cert, Cipher::aes_256_cbc(), MessageDigest::sha256(), MessageType::RenewalReq);
        let req = parse_pki_message(&msg.der, &ca.cert, &ca.key).unwrap();
        assert!(!is_renewal_signed_by_ca(&req, &ca.cert));

        // A PKCSReq signed with an issued certificate is not a renewal either.
        let msg = renewing.pkcs_req(&ca.cert, Cipher::aes_256_cbc(), MessageDigest::sha256(), MessageType::PkcsReq);
        let req = parse_pki_message(&msg.der, &ca.cert, &ca.key).unwrap();
        assert!(!is_renewal_signed_by_ca(&req, &ca.cert));
        assert!(cert_issued_by(&req.signer_cert, &ca.cert));

        // A certificate from another CA, and an expired one, are refused.
        let foreign = issue_certificate(&requester.csr(), &other.cert, &other.key, 365).unwrap();
        assert!(!cert_issued_by(&foreign, &ca.cert));
        let expired = testutil::expired_cert(&requester, &ca);
        assert!(!cert_issued_by(&expired, &ca.cert));
    }
}
