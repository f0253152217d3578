//! Certificate issuance from a PKCS#10 request, and renewal checks.
//!
//! A device identity is written by **rcgen** when it can write it exactly as OpenSSL would, and
//! by **OpenSSL**'s `X509Builder` otherwise; either way the certificate is the same (subject and
//! public key copied byte for byte from the CSR, the same extensions in the same order), signed
//! by the CA's OpenSSL key, and **OpenSSL** verifies the CSR's signature first.
//! * rcgen takes the CSR's SubjectPublicKeyInfo as it is ([`CsrKey`]), where OpenSSL 3.0's
//!   `X509_PUBKEY_set` re-encodes and re-decodes the key (0.3 ms alone, timed in a loop).
//!   Parsing rcgen's DER back into an `X509` (the CertRep's CMS needs one) costs less than that:
//!   an issuance took 0.52 ms against 0.56-0.87 ms with `X509Builder` (same loop, debug build,
//!   RSA-2048 CSR and CA, OpenSSL 3.0). Most of what is left is the CA's RSA signature.
//! * OpenSSL is kept for what rcgen cannot write the same: a subject with a multi-valued RDN, a
//!   repeated attribute type or a string type rcgen lacks, a key other than RSA or P-256, and a
//!   CA certificate without a subjectKeyIdentifier (whose AKI is then issuer and serial).
//! * CMS (the CertRep), the chain checks below and TLS stay OpenSSL's.

use std::time::{SystemTime, UNIX_EPOCH};

use openssl::asn1::{Asn1Integer, Asn1Time};
use openssl::bn::{BigNum, MsbOption};
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::stack::Stack;
use openssl::x509::extension::{AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectKeyIdentifier};
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::{X509, X509Builder, X509Req, X509StoreContext};

use super::{MessageType, OpensslContext as _, ScepError, ScepRequest};

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
    let cert = match issue_with_rcgen(csr, ca_cert, ca_key, days)? {
        Some(cert) => cert,
        None => issue_with_openssl(csr, &public_key, ca_cert, ca_key, days)?,
    };
    tracing::info!(
        subject = ?cert.subject_name(),
        serial = %cert.serial_number().to_bn().and_then(|b| b.to_hex_str().map(|s| s.to_string())).unwrap_or_default(),
        days,
        "scep: issued certificate"
    );
    Ok(cert)
}

/// The validity period: notBefore five minutes ago, notAfter `days` from now but never after
/// the CA's notAfter (Unix seconds).
fn validity(ca_cert: &X509, days: u32) -> Result<(i64, i64), ScepError> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)).unwrap_or(0);
    let remaining = Asn1Time::from_unix(now).and_then(|t| t.diff(ca_cert.not_after())).ctx("comparing with the CA's notAfter")?;
    let ca_end = now + i64::from(remaining.days) * 86_400 + i64::from(remaining.secs);
    let end = (now + i64::from(days) * 86_400).min(ca_end);
    if end <= now {
        return Err(ScepError::Issue("the CA certificate has expired".into()));
    }
    Ok((now - BACKDATE_SECS, end))
}

/// The CSR's public key as rcgen's, taken as it is: [`issue_with_rcgen`] writes the
/// SubjectPublicKeyInfo from `algorithm` and `bits`, and uses this only when that is `spki`.
struct CsrKey<'a> {
    bits: &'a [u8],
    algorithm: &'static rcgen::SignatureAlgorithm,
}

impl rcgen::PublicKeyData for CsrKey<'_> {
    fn der_bytes(&self) -> &[u8] {
        self.bits
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        self.algorithm
    }
}

/// The AlgorithmIdentifiers of the keys rcgen writes as OpenSSL does: rsaEncryption with NULL
/// parameters, and id-ecPublicKey on P-256.
const RSA_SPKI_ALGORITHM: &[u8] = &[0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00];
const P256_SPKI_ALGORITHM: &[u8] =
    &[0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

/// The parts of a DER CertificationRequest rcgen needs: its subject (DER) and its
/// SubjectPublicKeyInfo's algorithm and key bits.
fn csr_parts(der: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    use crate::der::{INTEGER, Reader, SEQUENCE};
    let request = Reader::new(der).expect(SEQUENCE)?;
    let info = request.children().expect(SEQUENCE)?;
    let mut fields = info.children();
    fields.expect(INTEGER)?;
    let subject = fields.expect(SEQUENCE)?;
    let spki = fields.expect(SEQUENCE)?;
    let mut key = spki.children();
    let algorithm = key.expect(SEQUENCE)?;
    let bits = key.expect(0x03)?;
    match bits.content.split_first() {
        Some((0, bits)) if key.is_empty() => Some((subject.raw, algorithm.raw, bits)),
        _ => None,
    }
}

/// A DER extension's value: an OCTET STRING's worth of `content`.
fn extension(oid: &[u64], critical: bool, content: Vec<u8>) -> rcgen::CustomExtension {
    let mut ext = rcgen::CustomExtension::from_oid_content(oid, content);
    ext.set_criticality(critical);
    ext
}

/// A DER header for `len` content octets (definite form).
fn der_header(tag: u8, len: usize) -> Vec<u8> {
    let mut out = vec![tag];
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len.to_be_bytes().into_iter().skip_while(|&b| b == 0).collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out
}

/// Issue with rcgen, or `None` when rcgen could not write this certificate exactly as
/// [`issue_with_openssl`] would (see the module comment).
fn issue_with_rcgen(csr: &X509Req, ca_cert: &X509, ca_key: &PKey<Private>, days: u32) -> Result<Option<X509>, ScepError> {
    use rcgen::{CertificateParams, IsCa, Issuer, KeyIdMethod, SerialNumber};
    let Some(ca_key_id) = ca_cert.subject_key_id().map(|id| id.as_slice().to_vec()) else { return Ok(None) };
    let Ok(signer) = crate::pki::OpensslSigner::without_public_key(ca_key) else { return Ok(None) };
    let csr_der = csr.to_der().ctx("encoding the CSR")?;
    let Some((subject_der, algorithm, bits)) = csr_parts(&csr_der) else { return Ok(None) };
    let algorithm = match algorithm {
        RSA_SPKI_ALGORITHM => &rcgen::PKCS_RSA_SHA256,
        P256_SPKI_ALGORITHM => &rcgen::PKCS_ECDSA_P256_SHA256,
        _ => return Ok(None),
    };
    let key = CsrKey { bits, algorithm };
    // One attribute per RDN (a SET of one), which is all rcgen writes.
    let mut rdns = crate::der::Reader::new(subject_der).expect(crate::der::SEQUENCE).map(|s| s.children());
    let mut rdn_count = 0;
    while let Some(rdn) = rdns.as_mut().and_then(|r| r.next_tlv()) {
        let mut attrs = rdn.children();
        if rdn.tag != crate::der::SET || attrs.next_tlv().is_none() || attrs.next_tlv().is_some() {
            return Ok(None);
        }
        rdn_count += 1;
    }
    if rdn_count != csr.subject_name().entries().count() {
        return Ok(None);
    }
    let (Ok(subject), Ok(issuer_name)) = (crate::pki::rcgen_name(csr.subject_name()), crate::pki::rcgen_name(ca_cert.subject_name()))
    else {
        return Ok(None);
    };

    let mut ca_params = CertificateParams::default();
    ca_params.distinguished_name = issuer_name;
    ca_params.key_identifier_method = KeyIdMethod::PreSpecified(ca_key_id.clone());
    let issuer = Issuer::new(ca_params, signer);

    let mut params = CertificateParams::default();
    params.distinguished_name = subject;
    let mut serial = BigNum::new().ctx("allocating a serial")?;
    serial.rand(SERIAL_BITS, MsbOption::ONE, false).ctx("generating a serial")?;
    params.serial_number = Some(SerialNumber::from_slice(&serial.to_vec()));
    let (from, to) = validity(ca_cert, days)?;
    let time = |t: i64| time::OffsetDateTime::from_unix_timestamp(t).map_err(|e| ScepError::Issue(format!("validity: {e}")));
    params.not_before = time(from)?;
    params.not_after = time(to)?;
    params.is_ca = IsCa::NoCa;
    // The extensions as OpenSSL writes them, in its order: basicConstraints CA:FALSE (critical),
    // keyUsage digitalSignature + keyEncipherment (critical), extendedKeyUsage clientAuth,
    // subjectKeyIdentifier (SHA-1 of the key bits), authorityKeyIdentifier (the CA's keyid).
    let ski = openssl::sha::sha1(bits);
    let mut ski_der = der_header(0x04, ski.len());
    ski_der.extend_from_slice(&ski);
    let mut keyid = der_header(0x80, ca_key_id.len());
    keyid.extend_from_slice(&ca_key_id);
    let mut aki = der_header(0x30, keyid.len());
    aki.extend(keyid);
    params.custom_extensions = vec![
        extension(&[2, 5, 29, 19], true, vec![0x30, 0x00]),
        extension(&[2, 5, 29, 15], true, vec![0x03, 0x02, 0x05, 0xa0]),
        extension(&[2, 5, 29, 37], false, vec![0x30, 0x0a, 0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02]),
        extension(&[2, 5, 29, 14], false, ski_der),
        extension(&[2, 5, 29, 35], false, aki),
    ];
    let der = params.signed_by(&key, &issuer).map_err(|e| ScepError::Issue(format!("signing failed (does the CA key match?): {e}")))?;
    let cert = X509::from_der(der.der()).ctx("reading the issued certificate")?;
    // What the checks above promise, made sure of: the subject is the CSR's, byte for byte.
    let same_subject = cert.subject_name().to_der().ctx("encoding the subject")? == subject_der;
    Ok(same_subject.then_some(cert))
}

/// Issue with OpenSSL's `X509Builder`: any subject and key OpenSSL reads.
fn issue_with_openssl(
    csr: &X509Req,
    public_key: &PKey<openssl::pkey::Public>,
    ca_cert: &X509,
    ca_key: &PKey<Private>,
    days: u32,
) -> Result<X509, ScepError> {
    let mut builder = X509Builder::new().ctx("creating a certificate builder")?;
    builder.set_version(2).ctx("setting the version")?;

    let mut serial = BigNum::new().ctx("allocating a serial")?;
    serial.rand(SERIAL_BITS, MsbOption::ONE, false).ctx("generating a serial")?;
    let serial = Asn1Integer::from_bn(&serial).ctx("encoding the serial")?;
    builder.set_serial_number(&serial).ctx("setting the serial")?;

    builder.set_subject_name(csr.subject_name()).ctx("setting the subject")?;
    builder.set_issuer_name(ca_cert.subject_name()).ctx("setting the issuer")?;
    builder.set_pubkey(public_key).ctx("setting the public key")?;

    let (from, to) = validity(ca_cert, days)?;
    let not_before = Asn1Time::from_unix(from).ctx("computing notBefore")?;
    let not_after = Asn1Time::from_unix(to).ctx("computing notAfter")?;
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
    Ok(builder.build())
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
    use super::super::testutil::{self, Requester, TestCa};
    use super::super::{ffi, parse_pki_message};
    use super::*;
    use openssl::nid::Nid;
    use openssl::rsa::Rsa;
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

    /// A CSR for `key` with the given subject entries, signed with SHA-256.
    fn csr_for(key: &PKey<Private>, entries: &[(Nid, &str)]) -> X509Req {
        let mut name = openssl::x509::X509NameBuilder::new().unwrap();
        for (nid, value) in entries {
            name.append_entry_by_nid(*nid, value).unwrap();
        }
        let mut b = openssl::x509::X509ReqBuilder::new().unwrap();
        b.set_subject_name(&name.build()).unwrap();
        b.set_pubkey(key).unwrap();
        b.sign(key, MessageDigest::sha256()).unwrap();
        b.build()
    }

    /// `openssl x509 -text` without what differs between two issuances (serial, validity,
    /// signature value).
    fn text_without_serial_and_dates(cert: &X509) -> String {
        let text = String::from_utf8(cert.to_text().unwrap()).unwrap();
        let text = text.split("Signature Value:").next().unwrap();
        let mut out = Vec::new();
        let mut skip_next = false;
        for line in text.lines() {
            if std::mem::take(&mut skip_next) || line.contains("Not Before") || line.contains("Not After") {
                continue;
            }
            skip_next = line.trim() == "Serial Number:";
            out.push(line);
        }
        out.join("\n")
    }

    fn ec_key(curve: Nid) -> PKey<Private> {
        let group = openssl::ec::EcGroup::from_curve_name(curve).unwrap();
        PKey::from_ec_key(openssl::ec::EcKey::generate(&group).unwrap()).unwrap()
    }

    #[test]
    fn rcgen_writes_what_openssl_writes() {
        let ca = TestCa::new("Lanyard Test CA");
        let rsa = Requester::new("device-1", "secret", ffi::V_ASN1_PRINTABLESTRING, MessageDigest::sha256());
        let p256 = ec_key(Nid::X9_62_PRIME256V1);
        let csrs =
            [rsa.csr(), csr_for(&p256, &[(Nid::COMMONNAME, "ipad-7"), (Nid::ORGANIZATIONNAME, "Test School"), (Nid::COUNTRYNAME, "GB")])];
        for csr in &csrs {
            let by_rcgen = issue_with_rcgen(csr, &ca.cert, &ca.key, 365).unwrap().expect("rcgen writes this one");
            let by_openssl = issue_with_openssl(csr, &csr.public_key().unwrap(), &ca.cert, &ca.key, 365).unwrap();
            assert_eq!(text_without_serial_and_dates(&by_rcgen), text_without_serial_and_dates(&by_openssl));
            assert_eq!(by_rcgen.subject_name().to_der().unwrap(), csr.subject_name().to_der().unwrap());
            assert_eq!(by_rcgen.public_key().unwrap().public_key_to_der().unwrap(), csr.public_key().unwrap().public_key_to_der().unwrap());
            assert_eq!(by_rcgen.serial_number().to_bn().unwrap().num_bits(), SERIAL_BITS);
            let (a, b) = (by_rcgen.not_after(), by_openssl.not_after());
            assert!(a.diff(b).unwrap().days == 0 && a.diff(b).unwrap().secs.abs() <= 2);
            testutil::assert_valid_client_cert(&by_rcgen, &ca.cert, 365);
        }
    }

    #[test]
    fn what_rcgen_cannot_write_openssl_issues() {
        let ca = TestCa::new("Lanyard Test CA");
        let rsa = Rsa::generate(2048).unwrap();
        let rsa = PKey::from_rsa(rsa).unwrap();
        let cases = [
            // A repeated attribute type.
            csr_for(&rsa, &[(Nid::COMMONNAME, "ipad-8"), (Nid::ORGANIZATIONALUNITNAME, "Year 7"), (Nid::ORGANIZATIONALUNITNAME, "Art")]),
            // A key rcgen has no SubjectPublicKeyInfo for.
            csr_for(&ec_key(Nid::SECP384R1), &[(Nid::COMMONNAME, "mac-3")]),
        ];
        for csr in &cases {
            assert!(issue_with_rcgen(csr, &ca.cert, &ca.key, 365).unwrap().is_none());
            let cert = issue_certificate(csr, &ca.cert, &ca.key, 365).unwrap();
            assert_eq!(cert.subject_name().to_der().unwrap(), csr.subject_name().to_der().unwrap());
            testutil::assert_valid_client_cert(&cert, &ca.cert, 365);
        }
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
