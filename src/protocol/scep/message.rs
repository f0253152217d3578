//! pkiMessage parsing (requests) and building (CertRep answers).

use openssl::cms::{CMSOptions, CmsContentInfo};
use openssl::pkey::{PKey, Private};
use openssl::stack::Stack;
use openssl::x509::{X509, X509Req};

use super::ffi::{self, AttrToSign, AttrValue, ScepAttr, VerifiedSignedData};
use super::{ContentCipher, DigestAlgorithm, FailInfo, MessageType, OpensslContext as _, PkiStatus, ScepError, ScepRequest, der};

/// Longest transactionID we accept (clients use 20–64 characters).
const MAX_TRANSACTION_ID: usize = 256;
/// Longest senderNonce we accept (RFC 8894 uses 16 bytes).
const MAX_NONCE: usize = 256;

/// Verifies, decrypts and parses a request pkiMessage (the DER body of a
/// `PKIOperation`).
///
/// Steps, each failing with an `Err` (never a panic) on malformed input:
///
/// 1. parse the CMS SignedData and verify its single signature against the
///    signer certificate carried in the message (self-signed for PKCSReq,
///    previously issued for RenewalReq — that certificate is *not* trusted
///    here; see [`super::is_renewal_signed_by_ca`]);
/// 2. read the signed attributes messageType, transactionID and senderNonce;
/// 3. decrypt the pkcsPKIEnvelope with the CA key (AES-128/192/256-CBC,
///    DES-EDE3-CBC, and DES-CBC when [`super::single_des_available`]);
/// 4. for PKCSReq / RenewalReq / UpdateReq, parse the PKCS#10 request and its
///    challengePassword (PrintableString, UTF8String or another
///    DirectoryString type). The CSR's own signature is checked later, by
///    [`super::issue_certificate`].
pub fn parse_pki_message(der: &[u8], ca_cert: &X509, ca_key: &PKey<Private>) -> Result<ScepRequest, ScepError> {
    let signed = ffi::verify_signed_data(der)?;

    let message_type = read_message_type(&signed)?;
    if message_type == MessageType::CertRep {
        return Err(ScepError::UnsupportedMessageType("CertRep(3) is an answer, not a request".into()));
    }
    let transaction_id = read_text(&signed, ScepAttr::TransactionId)?;
    if transaction_id.is_empty() || transaction_id.len() > MAX_TRANSACTION_ID {
        return Err(invalid(ScepAttr::TransactionId, format!("length {} is out of range", transaction_id.len())));
    }
    let sender_nonce = read_octets(&signed, ScepAttr::SenderNonce)?;
    if sender_nonce.is_empty() || sender_nonce.len() > MAX_NONCE {
        return Err(invalid(ScepAttr::SenderNonce, format!("length {} is out of range", sender_nonce.len())));
    }
    let digest = DigestAlgorithm::from_nid(signed.digest_nid).ok_or_else(|| {
        ScepError::UnsupportedAlgorithm(format!(
            "request digest {}",
            openssl::nid::Nid::from_raw(signed.digest_nid).short_name().unwrap_or("unknown")
        ))
    })?;

    let (message_data, content_cipher) = decrypt_envelope(&signed.content, ca_cert, ca_key)?;

    let (csr, challenge) = if message_type.carries_csr() {
        let csr = X509Req::from_der(&message_data).map_err(|e| ScepError::InvalidCsr(format!("not a PKCS#10 request: {e}")))?;
        let challenge = ffi::csr_challenge_password(&csr).map_err(|e| match e {
            ScepError::Malformed(m) => ScepError::InvalidCsr(m),
            other => other,
        })?;
        (Some(csr), challenge)
    } else {
        (None, None)
    };

    let request = ScepRequest {
        message_type,
        transaction_id,
        sender_nonce,
        signer_cert: signed.signer_cert.clone(),
        csr,
        challenge,
        digest,
        content_cipher,
        message_data,
    };
    tracing::debug!(?request, "scep: parsed pkiMessage");
    Ok(request)
}

fn invalid(attr: ScepAttr, reason: String) -> ScepError {
    ScepError::InvalidAttribute { name: attr.name(), reason }
}

fn read_text(signed: &VerifiedSignedData, attr: ScepAttr) -> Result<String, ScepError> {
    match signed.attribute(attr) {
        None => Err(ScepError::MissingAttribute(attr.name())),
        Some(AttrValue::Text(s)) => Ok(s.clone()),
        Some(AttrValue::Octets(_)) => Err(invalid(attr, "is an OCTET STRING, expected PrintableString".into())),
        Some(AttrValue::Other(t)) => Err(invalid(attr, format!("has ASN.1 type {t}, expected PrintableString"))),
    }
}

fn read_octets(signed: &VerifiedSignedData, attr: ScepAttr) -> Result<Vec<u8>, ScepError> {
    match signed.attribute(attr) {
        None => Err(ScepError::MissingAttribute(attr.name())),
        Some(AttrValue::Octets(b)) => Ok(b.clone()),
        Some(_) => Err(invalid(attr, "is not an OCTET STRING".into())),
    }
}

fn read_message_type(signed: &VerifiedSignedData) -> Result<MessageType, ScepError> {
    let text = read_text(signed, ScepAttr::MessageType)?;
    text.trim()
        .parse::<u32>()
        .ok()
        .and_then(MessageType::from_code)
        .ok_or_else(|| ScepError::UnsupportedMessageType(text.chars().take(16).collect()))
}

/// Decrypts the pkcsPKIEnvelope (a CMS EnvelopedData) with the CA key.
fn decrypt_envelope(envelope_der: &[u8], ca_cert: &X509, ca_key: &PKey<Private>) -> Result<(Vec<u8>, ContentCipher), ScepError> {
    if envelope_der.is_empty() {
        return Err(ScepError::Malformed("pkiMessage has no pkcsPKIEnvelope".into()));
    }
    let envelope = CmsContentInfo::from_der(envelope_der).map_err(|e| ScepError::Malformed(format!("pkcsPKIEnvelope is not CMS: {e}")))?;
    // Read from OpenSSL's DER re-encoding: the client may have sent BER beyond what
    // crate::protocol::der reads (constructed strings, say).
    let reencoded = envelope.to_der().ctx("re-encoding the pkcsPKIEnvelope")?;
    let cipher = der::enveloped_content_cipher_oid(&reencoded)
        .map(ContentCipher::from_oid)
        .ok_or_else(|| ScepError::Malformed("pkcsPKIEnvelope is not an EnvelopedData".into()))?;
    match cipher {
        ContentCipher::DesCbc if !super::single_des_available() => {
            return Err(ScepError::UnsupportedAlgorithm("DES-CBC envelope, and the OpenSSL legacy provider is not available".into()));
        }
        // Unusual ciphers (RC2, ...) may also live in the legacy provider.
        ContentCipher::Other => {
            super::single_des_available();
        }
        _ => {}
    }
    let data = envelope.decrypt(ca_key, ca_cert).map_err(|e| ScepError::Decrypt(e.to_string()))?;
    Ok((data, cipher))
}

/// A degenerate, certificates-only CMS SignedData (no signers, no content)
/// holding `certs` (a DER `SET OF`: the encoding sorts them): the format of CertRep payloads and of
/// multi-certificate `GetCACert` answers.
pub fn degenerate_certs_only(certs: &[X509]) -> Result<Vec<u8>, ScepError> {
    if certs.is_empty() {
        return Err(ScepError::Issue("no certificates to package".into()));
    }
    let mut stack = Stack::new().ctx("allocating a certificate stack")?;
    for cert in certs {
        stack.push(cert.clone()).ctx("building a certificate stack")?;
    }
    // PARTIAL: no signer and nothing to finalise; DETACHED: no eContent, as
    // RFC 8894 §3.4 describes the degenerate structure.
    let cms =
        CmsContentInfo::sign::<Private>(None, None, Some(&stack), None, CMSOptions::PARTIAL | CMSOptions::DETACHED | CMSOptions::BINARY)
            .ctx("building a certificates-only SignedData")?;
    cms.to_der().ctx("encoding a certificates-only SignedData")
}

/// Builds the SUCCESS CertRep for `req`: a SignedData by the CA whose content
/// is an EnvelopedData, encrypted to `req.signer_cert` with
/// `req.content_cipher.reply_cipher()`, of a certificates-only SignedData
/// holding `issued`. Serve it as [`super::CONTENT_TYPE_PKI_MESSAGE`].
pub fn cert_rep_success(req: &ScepRequest, issued: &X509, ca_cert: &X509, ca_key: &PKey<Private>) -> Result<Vec<u8>, ScepError> {
    let degenerate = degenerate_certs_only(std::slice::from_ref(issued))?;
    let mut recipients = Stack::new().ctx("allocating a certificate stack")?;
    recipients.push(req.signer_cert.clone()).ctx("building a certificate stack")?;
    let envelope = CmsContentInfo::encrypt(&recipients, &degenerate, req.content_cipher.openssl_reply_cipher(), CMSOptions::BINARY)
        .ctx("encrypting the CertRep envelope")?
        .to_der()
        .ctx("encoding the CertRep envelope")?;
    build_cert_rep(req, PkiStatus::Success, None, &envelope, ca_cert, ca_key)
}

/// Builds a FAILURE CertRep for `req` (pkiStatus 2 with `fail_info`, no
/// envelope). Use [`FailInfo::BadRequest`] for a wrong challenge.
pub fn cert_rep_failure(req: &ScepRequest, fail_info: FailInfo, ca_cert: &X509, ca_key: &PKey<Private>) -> Result<Vec<u8>, ScepError> {
    build_cert_rep(req, PkiStatus::Failure, Some(fail_info), &[], ca_cert, ca_key)
}

/// Builds a PENDING CertRep for `req` (pkiStatus 3, no envelope): the client
/// will poll with GetCertInitial using the same transactionID.
pub fn cert_rep_pending(req: &ScepRequest, ca_cert: &X509, ca_key: &PKey<Private>) -> Result<Vec<u8>, ScepError> {
    build_cert_rep(req, PkiStatus::Pending, None, &[], ca_cert, ca_key)
}

/// Whether a string fits the PrintableString character set (X.680 §41.4).
fn is_printable_string(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_alphanumeric() || b" '()+,-./:=?".contains(&b))
}

fn build_cert_rep(
    req: &ScepRequest,
    status: PkiStatus,
    fail_info: Option<FailInfo>,
    content: &[u8],
    ca_cert: &X509,
    ca_key: &PKey<Private>,
) -> Result<Vec<u8>, ScepError> {
    let mut sender_nonce = [0u8; 16];
    openssl::rand::rand_bytes(&mut sender_nonce).ctx("generating a senderNonce")?;
    // RFC 8894 wants PrintableString; a transactionID outside that set (which
    // we accepted in some other string type) is echoed as UTF8String.
    let transaction_id = if is_printable_string(&req.transaction_id) {
        AttrToSign::Printable(&req.transaction_id)
    } else {
        AttrToSign::Utf8(&req.transaction_id)
    };
    let message_type = MessageType::CertRep.code().to_string();
    let mut attrs = vec![
        (ScepAttr::TransactionId, transaction_id),
        (ScepAttr::MessageType, AttrToSign::Printable(&message_type)),
        (ScepAttr::PkiStatus, AttrToSign::Printable(status.code())),
        (ScepAttr::RecipientNonce, AttrToSign::Octets(&req.sender_nonce)),
        (ScepAttr::SenderNonce, AttrToSign::Octets(&sender_nonce)),
    ];
    if let Some(fail_info) = fail_info {
        attrs.push((ScepAttr::FailInfo, AttrToSign::Printable(fail_info.code())));
    }
    ffi::sign_signed_data(content, ca_cert, ca_key, req.digest.message_digest(), &attrs)
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{self, Requester, TestCa, decode_cert_rep};
    use super::super::{ffi::V_ASN1_UTF8STRING, *};
    use super::*;
    use crate::services::enrollment::identity::issue_certificate;
    use openssl::hash::MessageDigest;
    use openssl::symm::Cipher;

    fn round_trip(cipher: Cipher, md: MessageDigest, expect: ContentCipher) {
        let ca = TestCa::new("Lanyard Test CA");
        let requester = Requester::new("device-1", "secret", ffi::V_ASN1_PRINTABLESTRING, md);
        let msg = requester.pkcs_req(&ca.cert, cipher, md, MessageType::PkcsReq);

        let req = parse_pki_message(&msg.der, &ca.cert, &ca.key).expect("parse");
        assert_eq!(req.message_type, MessageType::PkcsReq);
        assert_eq!(req.transaction_id, msg.transaction_id);
        assert_eq!(req.sender_nonce, msg.sender_nonce);
        assert_eq!(req.challenge.as_deref(), Some("secret"));
        assert_eq!(req.content_cipher, expect);
        assert_eq!(req.signer_cert.to_der().unwrap(), requester.cert.to_der().unwrap());
        let csr = req.csr.as_ref().expect("csr");
        assert_eq!(csr.to_der().unwrap(), requester.csr_der);
        assert!(!format!("{req:?}").contains("secret"), "Debug leaks the challenge");

        let issued = issue_certificate(csr, &ca.cert, &ca.key, 365).expect("issue");
        testutil::assert_valid_client_cert(&issued, &ca.cert, 365);

        let rep = cert_rep_success(&req, &issued, &ca.cert, &ca.key).expect("certrep");
        let decoded = decode_cert_rep(&rep, &requester);
        assert_eq!(decoded.message_type, "3");
        assert_eq!(decoded.pki_status, "0");
        assert_eq!(decoded.fail_info, None);
        assert_eq!(decoded.transaction_id, msg.transaction_id);
        assert_eq!(decoded.recipient_nonce, msg.sender_nonce);
        assert_eq!(decoded.sender_nonce.len(), 16);
        assert_ne!(decoded.sender_nonce, msg.sender_nonce);
        assert_eq!(decoded.signer_der, ca.cert.to_der().unwrap());
        assert_eq!(decoded.digest_nid, md.type_().as_raw());
        assert_eq!(decoded.reply_cipher, Some(expect.reply_cipher()));
        assert_eq!(decoded.certs.len(), 1);
        assert_eq!(decoded.certs[0].to_der().unwrap(), issued.to_der().unwrap());
    }

    #[test]
    fn pkcs_req_round_trip_aes256_sha256() {
        round_trip(Cipher::aes_256_cbc(), MessageDigest::sha256(), ContentCipher::Aes256Cbc);
    }

    #[test]
    fn pkcs_req_round_trip_aes128_sha256() {
        round_trip(Cipher::aes_128_cbc(), MessageDigest::sha256(), ContentCipher::Aes128Cbc);
    }

    #[test]
    fn pkcs_req_round_trip_3des_sha1() {
        round_trip(Cipher::des_ede3_cbc(), MessageDigest::sha1(), ContentCipher::DesEde3Cbc);
    }

    #[test]
    fn pkcs_req_round_trip_single_des_when_available() {
        if !single_des_available() {
            eprintln!("OpenSSL legacy provider unavailable: single-DES round trip not run");
            return;
        }
        round_trip(Cipher::des_cbc(), MessageDigest::sha256(), ContentCipher::DesCbc);
    }

    #[test]
    fn utf8_challenge_is_read() {
        let ca = TestCa::new("Lanyard Test CA");
        let requester = Requester::new("device-2", "sécret ✓", V_ASN1_UTF8STRING, MessageDigest::sha256());
        let msg = requester.pkcs_req(&ca.cert, Cipher::aes_256_cbc(), MessageDigest::sha256(), MessageType::PkcsReq);
        let req = parse_pki_message(&msg.der, &ca.cert, &ca.key).unwrap();
        assert_eq!(req.challenge.as_deref(), Some("sécret ✓"));
    }

    #[test]
    fn csr_without_challenge_parses_with_none() {
        let ca = TestCa::new("Lanyard Test CA");
        let requester = Requester::without_challenge("device-3");
        let msg = requester.pkcs_req(&ca.cert, Cipher::aes_256_cbc(), MessageDigest::sha256(), MessageType::PkcsReq);
        let req = parse_pki_message(&msg.der, &ca.cert, &ca.key).unwrap();
        assert_eq!(req.challenge, None);
        assert!(req.csr.is_some());
    }

    #[test]
    fn failure_rep_carries_status_2_and_fail_info() {
        let ca = TestCa::new("Lanyard Test CA");
        let requester = Requester::new("device-4", "wrong", ffi::V_ASN1_PRINTABLESTRING, MessageDigest::sha256());
        let msg = requester.pkcs_req(&ca.cert, Cipher::aes_256_cbc(), MessageDigest::sha256(), MessageType::PkcsReq);
        let req = parse_pki_message(&msg.der, &ca.cert, &ca.key).unwrap();
        let rep = cert_rep_failure(&req, FailInfo::BadRequest, &ca.cert, &ca.key).unwrap();
        let decoded = decode_cert_rep(&rep, &requester);
        assert_eq!(decoded.message_type, "3");
        assert_eq!(decoded.pki_status, "2");
        assert_eq!(decoded.fail_info.as_deref(), Some("2"));
        assert_eq!(decoded.recipient_nonce, msg.sender_nonce);
        assert_eq!(decoded.transaction_id, msg.transaction_id);
        assert!(decoded.certs.is_empty(), "a FAILURE CertRep has no envelope");

        let pending = cert_rep_pending(&req, &ca.cert, &ca.key).unwrap();
        let decoded = decode_cert_rep(&pending, &requester);
        assert_eq!(decoded.pki_status, "3");
        assert_eq!(decoded.fail_info, None);
    }

    #[test]
    fn tampered_signature_is_rejected() {
        let ca = TestCa::new("Lanyard Test CA");
        let requester = Requester::new("device-5", "secret", ffi::V_ASN1_PRINTABLESTRING, MessageDigest::sha256());
        let msg = requester.pkcs_req(&ca.cert, Cipher::aes_256_cbc(), MessageDigest::sha256(), MessageType::PkcsReq);
        // The signature value is the last element of the DER.
        let mut bad = msg.der.clone();
        *bad.last_mut().unwrap() ^= 0x01;
        let err = parse_pki_message(&bad, &ca.cert, &ca.key).unwrap_err();
        assert!(matches!(err, ScepError::BadSignature(_)), "{err}");
        assert_eq!(err.fail_info(), FailInfo::BadMessageCheck);

        // Changing a signed attribute (the transactionID) breaks the signature.
        let mut bad = msg.der.clone();
        let pos = testutil::find(&bad, msg.transaction_id.as_bytes()).expect("tid in DER");
        bad[pos] = if bad[pos] == b'A' { b'B' } else { b'A' };
        let err = parse_pki_message(&bad, &ca.cert, &ca.key).unwrap_err();
        assert!(matches!(err, ScepError::BadSignature(_)), "{err}");

        // Signed by one key, carrying another key's certificate.
        let impostor = Requester::new("impostor", "secret", ffi::V_ASN1_PRINTABLESTRING, MessageDigest::sha256());
        let forged = requester.forged_by(&ca.cert, &impostor.key);
        let err = parse_pki_message(&forged, &ca.cert, &ca.key).unwrap_err();
        assert!(matches!(err, ScepError::BadSignature(_)), "{err}");
    }

    #[test]
    fn envelope_for_another_ca_is_rejected() {
        let ca = TestCa::new("Lanyard Test CA");
        let other = TestCa::new("Other CA");
        let requester = Requester::new("device-6", "secret", ffi::V_ASN1_PRINTABLESTRING, MessageDigest::sha256());
        let msg = requester.pkcs_req(&other.cert, Cipher::aes_256_cbc(), MessageDigest::sha256(), MessageType::PkcsReq);
        let err = parse_pki_message(&msg.der, &ca.cert, &ca.key).unwrap_err();
        assert!(matches!(err, ScepError::Decrypt(_)), "{err}");
    }

    #[test]
    fn missing_and_bad_attributes_are_rejected() {
        let ca = TestCa::new("Lanyard Test CA");
        let requester = Requester::new("device-7", "secret", ffi::V_ASN1_PRINTABLESTRING, MessageDigest::sha256());
        let envelope = requester.envelope(&ca.cert, Cipher::aes_256_cbc());
        let nonce = [7u8; 16];
        let cases: Vec<(Vec<(ScepAttr, AttrToSign<'_>)>, &str)> = vec![
            (
                vec![(ScepAttr::TransactionId, AttrToSign::Printable("t1")), (ScepAttr::SenderNonce, AttrToSign::Octets(&nonce))],
                "messageType",
            ),
            (
                vec![(ScepAttr::MessageType, AttrToSign::Printable("19")), (ScepAttr::SenderNonce, AttrToSign::Octets(&nonce))],
                "transactionID",
            ),
            (
                vec![(ScepAttr::MessageType, AttrToSign::Printable("19")), (ScepAttr::TransactionId, AttrToSign::Printable("t1"))],
                "senderNonce",
            ),
            (
                vec![
                    (ScepAttr::MessageType, AttrToSign::Printable("99")),
                    (ScepAttr::TransactionId, AttrToSign::Printable("t1")),
                    (ScepAttr::SenderNonce, AttrToSign::Octets(&nonce)),
                ],
                "unsupported SCEP messageType 99",
            ),
            (
                vec![
                    (ScepAttr::MessageType, AttrToSign::Printable("3")),
                    (ScepAttr::TransactionId, AttrToSign::Printable("t1")),
                    (ScepAttr::SenderNonce, AttrToSign::Octets(&nonce)),
                ],
                "CertRep",
            ),
            (
                vec![
                    (ScepAttr::MessageType, AttrToSign::Printable("19")),
                    (ScepAttr::TransactionId, AttrToSign::Printable("t1")),
                    (ScepAttr::SenderNonce, AttrToSign::Printable("not octets")),
                ],
                "OCTET STRING",
            ),
            (
                vec![
                    (ScepAttr::MessageType, AttrToSign::Printable("19")),
                    (ScepAttr::TransactionId, AttrToSign::Octets(b"t1")),
                    (ScepAttr::SenderNonce, AttrToSign::Octets(&nonce)),
                ],
                "transactionID",
            ),
        ];
        for (attrs, expected) in cases {
            let der = requester.sign(&envelope, MessageDigest::sha256(), &attrs);
            let err = parse_pki_message(&der, &ca.cert, &ca.key).unwrap_err();
            assert!(err.to_string().contains(expected), "{err} !~ {expected}");
        }
    }

    #[test]
    fn garbage_and_truncations_are_errors_not_panics() {
        let ca = TestCa::new("Lanyard Test CA");
        let requester = Requester::new("device-8", "secret", ffi::V_ASN1_PRINTABLESTRING, MessageDigest::sha256());
        let msg = requester.pkcs_req(&ca.cert, Cipher::aes_256_cbc(), MessageDigest::sha256(), MessageType::PkcsReq);
        assert!(parse_pki_message(b"", &ca.cert, &ca.key).is_err());
        assert!(parse_pki_message(b"hello, SCEP", &ca.cert, &ca.key).is_err());
        assert!(parse_pki_message(&[0u8; 4096], &ca.cert, &ca.key).is_err());
        // A CA certificate is valid DER but not a pkiMessage.
        assert!(parse_pki_message(&ca.cert.to_der().unwrap(), &ca.cert, &ca.key).is_err());
        // Every truncation, and trailing garbage.
        for len in (0..msg.der.len()).step_by(7) {
            assert!(parse_pki_message(&msg.der[..len], &ca.cert, &ca.key).is_err());
        }
        let mut trailing = msg.der.clone();
        trailing.extend_from_slice(b"junk");
        assert!(parse_pki_message(&trailing, &ca.cert, &ca.key).is_err());
        // Single-byte corruptions anywhere (a deterministic sample).
        for i in (0..msg.der.len()).step_by(13) {
            let mut bad = msg.der.clone();
            bad[i] ^= 0x5a;
            let _ = parse_pki_message(&bad, &ca.cert, &ca.key);
        }
        // And the untouched message still parses.
        assert!(parse_pki_message(&msg.der, &ca.cert, &ca.key).is_ok());
    }

    #[test]
    fn get_cert_initial_has_no_csr() {
        let ca = TestCa::new("Lanyard Test CA");
        let requester = Requester::new("device-9", "secret", ffi::V_ASN1_PRINTABLESTRING, MessageDigest::sha256());
        let msg = requester.pkcs_req(&ca.cert, Cipher::aes_256_cbc(), MessageDigest::sha256(), MessageType::GetCertInitial);
        let req = parse_pki_message(&msg.der, &ca.cert, &ca.key).unwrap();
        assert_eq!(req.message_type, MessageType::GetCertInitial);
        assert!(req.csr.is_none());
        assert!(req.challenge.is_none());
        assert!(!req.message_data.is_empty());
    }

    #[test]
    fn printable_string_check() {
        assert!(is_printable_string("Ab0 '()+,-./:=?"));
        assert!(!is_printable_string("a_b"));
        assert!(!is_printable_string("é"));
        assert!(!is_printable_string("a*b"));
    }
}
