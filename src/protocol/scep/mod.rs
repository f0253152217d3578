//! SCEP server core (RFC 8894, Simple Certificate Enrolment Protocol).
//!
//! Apple devices obtain their MDM identity certificate through a SCEP payload:
//! the device asks our CA for its capabilities (`GetCACaps`) and certificate
//! (`GetCACert`), then sends a `PKIOperation` whose body is a *pkiMessage*:
//!
//! ```text
//! ContentInfo(SignedData)                       signed by the requester
//!   signed attributes: messageType, transactionID, senderNonce
//!   content: ContentInfo(EnvelopedData)         encrypted to our CA certificate
//!              content: PKCS#10 request         (carries the challengePassword)
//! ```
//!
//! We answer with a *CertRep* pkiMessage, signed by the CA, whose content on
//! success is an EnvelopedData (encrypted to the requester's signing
//! certificate) of a degenerate, certificates-only SignedData holding the
//! issued certificate.
//!
//! This module is transport-agnostic: the HTTP route decodes the request and
//! calls, in order,
//!
//! 1. [`parse_pki_message`] — verify, decrypt, parse;
//! 2. its own policy (challenge check, [`is_renewal_signed_by_ca`], ...);
//! 3. [`issue_certificate`] and [`cert_rep_success`], or [`cert_rep_failure`].
//!
//! HTTP reference (RFC 8894 §4): `GET ?operation=GetCACaps` → [`CA_CAPS`] as
//! `text/plain`; `GET ?operation=GetCACert` → [`ca_cert_response`] as
//! [`CONTENT_TYPE_CA_CERT`] (or [`ca_chain_response`] as
//! [`CONTENT_TYPE_CA_RA_CERT`]); `POST ?operation=PKIOperation` with the DER
//! pkiMessage as body, or `GET ?operation=PKIOperation&message=<base64>` (see
//! [`decode_message_param`]) → CertRep as [`CONTENT_TYPE_PKI_MESSAGE`].
//!
//! OpenSSL does all cryptography. The `openssl` crate has no API for CMS
//! signed attributes, so the `ffi` submodule wraps the few libcrypto calls needed.

pub mod client;
mod der;
pub(crate) mod ffi;
mod message;

#[cfg(test)]
pub(crate) mod testutil;

use std::fmt;
use std::sync::OnceLock;

use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::provider::Provider;
use openssl::symm::Cipher;
use openssl::x509::{X509, X509Req};

pub use message::{cert_rep_failure, cert_rep_pending, cert_rep_success, degenerate_certs_only, parse_pki_message};

/// The `GetCACaps` answer (RFC 8894 §3.5.2), one capability per line.
///
/// Advertising `POSTPKIOperation` makes clients POST pkiMessages instead of
/// base64 in the query string; `AES`/`SHA-256` steer them to modern
/// algorithms, while `DES3`/`SHA-1` keep older clients working.
pub const CA_CAPS: &str = "POSTPKIOperation\nSHA-256\nSHA-512\nSHA-1\nAES\nDES3\nSCEPStandard\nRenewal\n";

/// Content-Type of a `GetCACert` answer holding just the CA certificate (DER).
pub const CONTENT_TYPE_CA_CERT: &str = "application/x-x509-ca-cert";
/// Content-Type of a `GetCACert` answer holding a certificate chain
/// (degenerate certificates-only PKCS#7).
pub const CONTENT_TYPE_CA_RA_CERT: &str = "application/x-x509-ca-ra-cert";
/// Content-Type of a `PKIOperation` answer (a CertRep pkiMessage).
pub const CONTENT_TYPE_PKI_MESSAGE: &str = "application/x-pki-message";
/// Content-Type of a `GetCACaps` answer.
pub const CONTENT_TYPE_CA_CAPS: &str = "text/plain";

/// Body of a `GetCACert` answer when the CA has no chain or RA certificate:
/// the DER of the CA certificate, served as [`CONTENT_TYPE_CA_CERT`].
pub fn ca_cert_response(ca: &X509) -> Result<Vec<u8>, ScepError> {
    ca.to_der().map_err(|e| ScepError::openssl("encoding the CA certificate", e))
}

/// Body of a `GetCACert` answer for a chain (CA, intermediates, RA
/// certificates): a degenerate certificates-only PKCS#7 SignedData, served
/// as [`CONTENT_TYPE_CA_RA_CERT`]. The `certificates` field is a DER
/// `SET OF`, so the encoding sorts the certificates: clients tell CA and RA
/// apart by their extensions, not by position (RFC 8894 §4.2.1.2).
pub fn ca_chain_response(certs: &[X509]) -> Result<Vec<u8>, ScepError> {
    degenerate_certs_only(certs)
}

/// Decodes the `message` query parameter of `GET ?operation=PKIOperation`.
///
/// Clients disagree on the encoding, so this accepts standard and URL-safe
/// base64, with or without padding, still percent-encoded or not, and also
/// undoes the `+` → space damage of form-style query decoding.
pub fn decode_message_param(message: &str) -> Result<Vec<u8>, ScepError> {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};

    // Spaces are kept: a form-decoded `+` is a space, and a message may end in one.
    let unescaped = percent_decode(message.trim_matches(|c| matches!(c, '\r' | '\n' | '\t')));
    let cleaned: String = unescaped.chars().filter(|c| !matches!(c, '\r' | '\n' | '=')).map(|c| if c == ' ' { '+' } else { c }).collect();
    let engine = if cleaned.contains(['-', '_']) { URL_SAFE_NO_PAD } else { STANDARD_NO_PAD };
    engine.decode(cleaned.as_bytes()).map_err(|e| ScepError::Malformed(format!("message parameter is not base64: {e}")))
}

/// Minimal `%XX` decoding (invalid escapes are kept verbatim).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = bytes.get(i + 1..i + 3)
            && let Ok(hex) = std::str::from_utf8(hex)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether single DES (`DES-CBC`, the default of some old clients and of Go's
/// PKCS#7 library, hence of micromdm's `scepclient`) can be decrypted. With
/// OpenSSL 3 this needs the *legacy* provider; the first call tries to load
/// it into the default library context (keeping the default provider active)
/// and remembers the outcome for the life of the process.
pub fn single_des_available() -> bool {
    static PROVIDERS: OnceLock<Option<(Provider, Provider)>> = OnceLock::new();
    PROVIDERS
        .get_or_init(|| {
            // Activate the default provider explicitly *before* the legacy one.
            // If it is still only an implicit fallback (nothing has fetched an
            // algorithm yet), the legacy provider's child library context
            // cannot see it and DES key generation fails for want of a DRBG.
            let loaded =
                Provider::try_load(None, "default", true).and_then(|default| Ok((default, Provider::try_load(None, "legacy", true)?)));
            match loaded {
                Ok(providers) => {
                    tracing::debug!("scep: loaded the OpenSSL legacy provider for DES-CBC");
                    Some(providers)
                }
                Err(e) => {
                    tracing::warn!("scep: OpenSSL legacy provider unavailable, DES-CBC disabled: {e}");
                    None
                }
            }
        })
        .is_some()
}

/// SCEP `messageType` (RFC 8894 §3.2.1.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MessageType {
    /// 3: response to any request (only ever produced by the CA).
    CertRep,
    /// 17: renewal of a certificate we issued, signed with that certificate.
    RenewalReq,
    /// 18: UpdateReq (obsolete draft-era renewal; handle like RenewalReq).
    UpdateReq,
    /// 19: initial enrolment ("PKCSReq"), usually signed with a self-signed certificate.
    PkcsReq,
    /// 20: CertPoll, formerly "GetCertInitial": polling after a PENDING answer.
    GetCertInitial,
    /// 21: GetCert: fetch a certificate by issuer and serial.
    GetCert,
    /// 22: GetCRL.
    GetCrl,
}

impl MessageType {
    /// The decimal code carried in the attribute.
    pub fn code(self) -> u8 {
        match self {
            MessageType::CertRep => 3,
            MessageType::RenewalReq => 17,
            MessageType::UpdateReq => 18,
            MessageType::PkcsReq => 19,
            MessageType::GetCertInitial => 20,
            MessageType::GetCert => 21,
            MessageType::GetCrl => 22,
        }
    }

    /// Parses the decimal code; `None` if unknown.
    pub fn from_code(code: u32) -> Option<Self> {
        Some(match code {
            3 => MessageType::CertRep,
            17 => MessageType::RenewalReq,
            18 => MessageType::UpdateReq,
            19 => MessageType::PkcsReq,
            20 => MessageType::GetCertInitial,
            21 => MessageType::GetCert,
            22 => MessageType::GetCrl,
            _ => return None,
        })
    }

    /// Whether the pkiEnvelope of this request type holds a PKCS#10 request.
    pub fn carries_csr(self) -> bool {
        matches!(self, MessageType::PkcsReq | MessageType::RenewalReq | MessageType::UpdateReq)
    }
}

impl fmt::Display for MessageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            MessageType::CertRep => "CertRep",
            MessageType::RenewalReq => "RenewalReq",
            MessageType::UpdateReq => "UpdateReq",
            MessageType::PkcsReq => "PKCSReq",
            MessageType::GetCertInitial => "GetCertInitial",
            MessageType::GetCert => "GetCert",
            MessageType::GetCrl => "GetCRL",
        };
        write!(f, "{name}({})", self.code())
    }
}

/// SCEP `pkiStatus` of a CertRep (RFC 8894 §3.2.1.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PkiStatus {
    /// 0: request granted.
    Success,
    /// 2: request rejected (see [`FailInfo`]).
    Failure,
    /// 3: request pending manual approval; the client polls.
    Pending,
}

impl PkiStatus {
    /// The decimal code as carried in the attribute.
    pub fn code(self) -> &'static str {
        match self {
            PkiStatus::Success => "0",
            PkiStatus::Failure => "2",
            PkiStatus::Pending => "3",
        }
    }
}

/// SCEP `failInfo` of a FAILURE CertRep (RFC 8894 §3.2.1.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FailInfo {
    /// 0: unrecognised or unsupported algorithm.
    BadAlg,
    /// 1: integrity check (signature) failed.
    BadMessageCheck,
    /// 2: transaction not permitted or supported (e.g. wrong challenge).
    BadRequest,
    /// 3: message time too far from system time.
    BadTime,
    /// 4: no certificate matches the given criteria.
    BadCertId,
}

impl FailInfo {
    /// The decimal code as carried in the attribute.
    pub fn code(self) -> &'static str {
        match self {
            FailInfo::BadAlg => "0",
            FailInfo::BadMessageCheck => "1",
            FailInfo::BadRequest => "2",
            FailInfo::BadTime => "3",
            FailInfo::BadCertId => "4",
        }
    }
}

/// Content-encryption algorithm of a pkcsPKIEnvelope.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ContentCipher {
    /// DES-CBC (1.3.14.3.2.7): weak; only decrypted, never used for answers.
    DesCbc,
    /// DES-EDE3-CBC (1.2.840.113549.3.7).
    DesEde3Cbc,
    /// AES-128-CBC (2.16.840.1.101.3.4.1.2).
    Aes128Cbc,
    /// AES-192-CBC (2.16.840.1.101.3.4.1.22).
    Aes192Cbc,
    /// AES-256-CBC (2.16.840.1.101.3.4.1.42).
    Aes256Cbc,
    /// Something else OpenSSL could decrypt.
    Other,
}

impl ContentCipher {
    /// Maps the DER contents of an algorithm OID.
    fn from_oid(oid: &[u8]) -> Self {
        const DES_CBC: &[u8] = &[0x2b, 0x0e, 0x03, 0x02, 0x07];
        const DES_EDE3_CBC: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x03, 0x07];
        const AES_PREFIX: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01];
        match oid {
            DES_CBC => ContentCipher::DesCbc,
            DES_EDE3_CBC => ContentCipher::DesEde3Cbc,
            [prefix @ .., last] if prefix == AES_PREFIX => match last {
                0x02 => ContentCipher::Aes128Cbc,
                0x16 => ContentCipher::Aes192Cbc,
                0x2a => ContentCipher::Aes256Cbc,
                _ => ContentCipher::Other,
            },
            _ => ContentCipher::Other,
        }
    }

    /// The cipher to answer a client that used `self`: the same AES size
    /// (AES-192 is answered with AES-256), and DES-EDE3-CBC for DES-family or
    /// unknown ciphers. Single DES is never used for answers.
    pub fn reply_cipher(self) -> ContentCipher {
        match self {
            ContentCipher::Aes128Cbc => ContentCipher::Aes128Cbc,
            ContentCipher::Aes192Cbc | ContentCipher::Aes256Cbc => ContentCipher::Aes256Cbc,
            ContentCipher::DesCbc | ContentCipher::DesEde3Cbc | ContentCipher::Other => ContentCipher::DesEde3Cbc,
        }
    }

    /// The OpenSSL cipher for encrypting an answer with [`Self::reply_cipher`].
    fn openssl_reply_cipher(self) -> Cipher {
        match self.reply_cipher() {
            ContentCipher::Aes128Cbc => Cipher::aes_128_cbc(),
            ContentCipher::Aes256Cbc => Cipher::aes_256_cbc(),
            _ => Cipher::des_ede3_cbc(),
        }
    }
}

/// Digest algorithm of the requester's signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DigestAlgorithm {
    /// SHA-1 (still used by old clients).
    Sha1,
    /// SHA-224.
    Sha224,
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

impl DigestAlgorithm {
    /// Maps an OpenSSL NID; `None` for anything else (MD5 included).
    fn from_nid(nid: i32) -> Option<Self> {
        Some(match Nid::from_raw(nid) {
            Nid::SHA1 => DigestAlgorithm::Sha1,
            Nid::SHA224 => DigestAlgorithm::Sha224,
            Nid::SHA256 => DigestAlgorithm::Sha256,
            Nid::SHA384 => DigestAlgorithm::Sha384,
            Nid::SHA512 => DigestAlgorithm::Sha512,
            _ => return None,
        })
    }

    /// The OpenSSL digest; CertReps are signed with the digest the client
    /// used, which it is therefore known to support.
    pub fn message_digest(self) -> MessageDigest {
        match self {
            DigestAlgorithm::Sha1 => MessageDigest::sha1(),
            DigestAlgorithm::Sha224 => MessageDigest::sha224(),
            DigestAlgorithm::Sha256 => MessageDigest::sha256(),
            DigestAlgorithm::Sha384 => MessageDigest::sha384(),
            DigestAlgorithm::Sha512 => MessageDigest::sha512(),
        }
    }
}

/// A verified and decrypted SCEP request.
///
/// Produced by [`parse_pki_message`]; the fields the answer needs
/// (transaction ID, nonce, signer certificate, algorithms) are kept so that
/// [`cert_rep_success`] / [`cert_rep_failure`] can be called with it alone.
pub struct ScepRequest {
    /// What the client asks for.
    pub message_type: MessageType,
    /// Client-chosen transaction identifier, echoed in the answer.
    pub transaction_id: String,
    /// Client nonce, echoed as recipientNonce in the answer.
    pub sender_nonce: Vec<u8>,
    /// Certificate whose key signed the request (self-signed for PKCSReq,
    /// the certificate being renewed for RenewalReq). The answer is
    /// encrypted to it. Only its signature over *this message* was checked:
    /// trust decisions are the caller's (see [`is_renewal_signed_by_ca`]).
    pub signer_cert: X509,
    /// The PKCS#10 request, for PKCSReq / RenewalReq / UpdateReq.
    pub csr: Option<X509Req>,
    /// The CSR's challengePassword, if any.
    pub challenge: Option<String>,
    /// Digest algorithm of the request signature (reused for the answer).
    pub digest: DigestAlgorithm,
    /// Cipher of the request's envelope; the answer uses
    /// [`ContentCipher::reply_cipher`] of it. The caller may override it.
    pub content_cipher: ContentCipher,
    /// Decrypted pkcsPKIEnvelope: the DER CSR for CSR-carrying requests,
    /// IssuerAndSubject for GetCertInitial, IssuerAndSerialNumber for
    /// GetCert/GetCRL.
    pub message_data: Vec<u8>,
}

impl fmt::Debug for ScepRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScepRequest")
            .field("message_type", &self.message_type)
            .field("transaction_id", &self.transaction_id)
            .field("sender_nonce", &hex::encode(&self.sender_nonce))
            .field("signer_subject", &self.signer_cert.subject_name())
            .field("has_csr", &self.csr.is_some())
            // Never print the challenge itself: it is a shared secret.
            .field("has_challenge", &self.challenge.is_some())
            .field("digest", &self.digest)
            .field("content_cipher", &self.content_cipher)
            .finish_non_exhaustive()
    }
}

/// Errors of the SCEP core. Messages are for logs: do not send them to
/// clients (decryption details must not become an oracle).
#[derive(Debug, thiserror::Error)]
pub enum ScepError {
    /// The input is not a well-formed pkiMessage.
    #[error("malformed SCEP message: {0}")]
    Malformed(String),
    /// The SignedData signature (or its message digest) does not verify.
    #[error("SCEP message signature does not verify: {0}")]
    BadSignature(String),
    /// A mandatory signed attribute is absent.
    #[error("SCEP message lacks the {0} signed attribute")]
    MissingAttribute(&'static str),
    /// A signed or CSR attribute has the wrong type or value.
    #[error("SCEP {name} attribute is invalid: {reason}")]
    InvalidAttribute {
        /// Attribute name, e.g. `transactionID`.
        name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// messageType is unknown or not a request.
    #[error("unsupported SCEP messageType {0}")]
    UnsupportedMessageType(String),
    /// An algorithm we refuse or cannot run (MD5, DES without the legacy provider).
    #[error("unsupported algorithm: {0}")]
    UnsupportedAlgorithm(String),
    /// The pkcsPKIEnvelope could not be decrypted with the CA key.
    #[error("cannot decrypt the SCEP pkcsPKIEnvelope: {0}")]
    Decrypt(String),
    /// The PKCS#10 request is unusable (bad signature, unparsable, ...).
    #[error("invalid certificate request: {0}")]
    InvalidCsr(String),
    /// The certificate could not be issued.
    #[error("cannot issue the certificate: {0}")]
    Issue(String),
    /// The SCEP OIDs could not be registered with OpenSSL.
    #[error("cannot register the SCEP attribute OIDs with OpenSSL: {0}")]
    OidRegistration(String),
    /// An OpenSSL operation failed.
    #[error("OpenSSL error while {context}: {source}")]
    OpenSsl {
        /// What we were doing.
        context: &'static str,
        /// OpenSSL's error queue.
        #[source]
        source: ErrorStack,
    },
}

impl ScepError {
    pub(crate) fn openssl(context: &'static str, source: ErrorStack) -> Self {
        ScepError::OpenSsl { context, source }
    }

    /// The failInfo to put in a FAILURE CertRep when this error occurs after
    /// a request was parsed (e.g. from [`issue_certificate`]).
    pub fn fail_info(&self) -> FailInfo {
        match self {
            ScepError::BadSignature(_) => FailInfo::BadMessageCheck,
            ScepError::UnsupportedAlgorithm(_) => FailInfo::BadAlg,
            _ => FailInfo::BadRequest,
        }
    }
}

/// Adds context to `openssl` crate errors.
#[doc(hidden)]
pub trait OpensslContext<T> {
    fn ctx(self, context: &'static str) -> Result<T, ScepError>;
}

impl<T> OpensslContext<T> for Result<T, ErrorStack> {
    fn ctx(self, context: &'static str) -> Result<T, ScepError> {
        self.map_err(|e| ScepError::openssl(context, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_list_the_required_capabilities() {
        let caps: Vec<&str> = CA_CAPS.lines().collect();
        for cap in ["POSTPKIOperation", "SHA-256", "SHA-1", "AES", "DES3", "SCEPStandard", "Renewal"] {
            assert!(caps.contains(&cap), "missing {cap}");
        }
    }

    #[test]
    fn message_types_round_trip() {
        for code in 0..=30u32 {
            if let Some(t) = MessageType::from_code(code) {
                assert_eq!(u32::from(t.code()), code);
            }
        }
        assert_eq!(MessageType::from_code(19), Some(MessageType::PkcsReq));
        assert_eq!(MessageType::from_code(20), Some(MessageType::GetCertInitial));
        assert_eq!(MessageType::PkcsReq.to_string(), "PKCSReq(19)");
        assert!(MessageType::from_code(99).is_none());
    }

    #[test]
    fn cipher_oids_match_openssl() {
        for (dotted, cipher) in [
            ("1.3.14.3.2.7", ContentCipher::DesCbc),
            ("1.2.840.113549.3.7", ContentCipher::DesEde3Cbc),
            ("2.16.840.1.101.3.4.1.2", ContentCipher::Aes128Cbc),
            ("2.16.840.1.101.3.4.1.22", ContentCipher::Aes192Cbc),
            ("2.16.840.1.101.3.4.1.42", ContentCipher::Aes256Cbc),
            ("2.16.840.1.101.3.4.1.6", ContentCipher::Other),
        ] {
            let obj = openssl::asn1::Asn1Object::from_str(dotted).unwrap();
            assert_eq!(ContentCipher::from_oid(obj.as_slice()), cipher, "{dotted}");
        }
        assert_eq!(ContentCipher::DesCbc.reply_cipher(), ContentCipher::DesEde3Cbc);
        assert_eq!(ContentCipher::Aes128Cbc.reply_cipher(), ContentCipher::Aes128Cbc);
        assert_eq!(ContentCipher::Aes192Cbc.reply_cipher(), ContentCipher::Aes256Cbc);
    }

    #[test]
    fn message_param_decoding_is_tolerant() {
        let data: Vec<u8> = (0u8..=255).collect();
        use base64::Engine as _;
        let std = base64::engine::general_purpose::STANDARD.encode(&data);
        let url = base64::engine::general_purpose::URL_SAFE.encode(&data);
        assert!(std.contains('+') && std.contains('/'));
        let percent = std.replace('+', "%2B").replace('/', "%2F").replace('=', "%3D");
        let spaced = std.replace('+', " ");
        for input in [&std, &url, &percent, &spaced, &std.trim_end_matches('=').to_owned()] {
            assert_eq!(decode_message_param(input).unwrap(), data, "{input}");
        }
        assert!(decode_message_param("!!!not base64!!!").is_err());
    }

    #[test]
    fn a_form_decoded_message_ending_in_plus_keeps_it() {
        // 0xfb 0xef 0xbe encodes as "++++": all four become spaces when form-decoded.
        let data = [0x01, 0x02, 0x03, 0xfb, 0xef, 0xbe];
        use base64::Engine as _;
        let std = base64::engine::general_purpose::STANDARD.encode(data);
        assert!(std.ends_with('+'), "{std}");
        assert_eq!(decode_message_param(&std.replace('+', " ")).unwrap(), data);
        assert_eq!(decode_message_param(&format!("{std}\r\n")).unwrap(), data);
    }

    #[test]
    fn ca_cert_responses() {
        let ca = testutil::TestCa::new("Lanyard Test CA");
        let other = testutil::TestCa::new("Other CA");
        assert_eq!(ca_cert_response(&ca.cert).unwrap(), ca.cert.to_der().unwrap());
        let chain = ca_chain_response(&[ca.cert.clone(), other.cert.clone()]).unwrap();
        let p7 = openssl::pkcs7::Pkcs7::from_der(&chain).unwrap();
        let certs = p7.signed().unwrap().certificates().unwrap();
        // `certificates` is a DER SET OF: OpenSSL sorts it, order is not kept.
        let mut got: Vec<Vec<u8>> = certs.iter().map(|c| c.to_der().unwrap()).collect();
        let mut want = vec![ca.cert.to_der().unwrap(), other.cert.to_der().unwrap()];
        got.sort();
        want.sort();
        assert_eq!(got, want);
    }
}
