//! The device's side of SCEP: what an iPad does with the SCEP payload of its enrolment profile.
//!
//! A [`Requester`] holds the device's key, a self-signed certificate to sign its request with
//! (RFC 8894 §2.3: a requester without a certificate signs with a self-signed one) and its
//! PKCS#10 request carrying the enrolment challenge. [`Requester::pkcs_req`] builds the
//! PKCSReq pkiMessage (the CSR encrypted to the CA, signed by the requester with the SCEP signed
//! attributes), and [`Requester::decode_cert_rep`] verifies the CA's CertRep and decrypts the
//! issued certificate out of it.
//!
//! Lanyard itself never runs this side in production; the device simulator, `lanyard bench enrol`
//! and the tests do, so that enrolment is exercised through the same bytes a device sends. It
//! shares the FFI of [`super::ffi`] with the server side because the `openssl` crate has no API
//! for CMS signed attributes.

use std::ffi::c_int;

use openssl::asn1::{Asn1Integer, Asn1Time};
use openssl::bn::{BigNum, MsbOption};
use openssl::cms::{CMSOptions, CmsContentInfo};
use openssl::hash::MessageDigest;
use openssl::pkcs7::Pkcs7;
use openssl::pkey::{PKey, Private};
use openssl::stack::Stack;
use openssl::symm::Cipher;
use openssl::x509::{X509, X509Builder, X509Name, X509Req, X509ReqBuilder};

use super::ffi::{self, AttrToSign, AttrValue, ScepAttr};
use super::{ContentCipher, MessageType, ScepError, der};

/// ASN.1 PrintableString: how iOS encodes the challenge password.
pub const CHALLENGE_PRINTABLE: c_int = ffi::V_ASN1_PRINTABLESTRING;
/// ASN.1 UTF8String, for a challenge outside PrintableString's alphabet.
pub const CHALLENGE_UTF8: c_int = ffi::V_ASN1_UTF8STRING;

fn ossl(context: &'static str) -> impl FnOnce(openssl::error::ErrorStack) -> ScepError {
    move |e| ScepError::openssl(context, e)
}

fn name(cn: &str) -> Result<X509Name, ScepError> {
    let mut name = X509Name::builder().map_err(ossl("building a subject name"))?;
    name.append_entry_by_text("CN", cn).map_err(ossl("building a subject name"))?;
    Ok(name.build())
}

fn random_serial() -> Result<Asn1Integer, ScepError> {
    let mut bn = BigNum::new().map_err(ossl("making a serial"))?;
    bn.rand(64, MsbOption::ONE, false).map_err(ossl("making a serial"))?;
    Asn1Integer::from_bn(&bn).map_err(ossl("making a serial"))
}

/// A self-signed certificate for `key`, valid for a day: what a requester signs with.
pub fn self_signed(key: &PKey<Private>, cn: &str, serial: &Asn1Integer) -> Result<X509, ScepError> {
    let subject = name(cn)?;
    let build = || -> Result<X509, openssl::error::ErrorStack> {
        let mut b = X509Builder::new()?;
        b.set_version(2)?;
        b.set_serial_number(serial)?;
        b.set_subject_name(&subject)?;
        b.set_issuer_name(&subject)?;
        b.set_pubkey(key)?;
        b.set_not_before(&*Asn1Time::days_from_now(0)?)?;
        b.set_not_after(&*Asn1Time::days_from_now(1)?)?;
        b.sign(key, MessageDigest::sha256())?;
        Ok(b.build())
    };
    build().map_err(ossl("self-signing the requester's certificate"))
}

/// A SCEP client: key pair, self-signed signing certificate and CSR.
pub struct Requester {
    pub key: PKey<Private>,
    pub cert: X509,
    pub csr_der: Vec<u8>,
    pub(super) cn: String,
}

/// A request pkiMessage and the values it was built with.
pub struct BuiltMessage {
    pub der: Vec<u8>,
    pub transaction_id: String,
    pub sender_nonce: Vec<u8>,
}

/// A CertRep as a device sees it.
#[derive(Debug)]
pub struct DecodedRep {
    pub message_type: String,
    pub pki_status: String,
    pub fail_info: Option<String>,
    pub transaction_id: String,
    pub recipient_nonce: Vec<u8>,
    pub sender_nonce: Vec<u8>,
    pub signer_der: Vec<u8>,
    pub digest_nid: c_int,
    pub reply_cipher: Option<ContentCipher>,
    pub certs: Vec<X509>,
}

impl DecodedRep {
    /// pkiStatus SUCCESS (RFC 8894 §3.2.1.3: "0").
    pub fn is_success(&self) -> bool {
        self.pki_status == "0"
    }
}

impl Requester {
    /// A requester for `key` whose CSR (subject `CN=cn`, signed with SHA-256) carries
    /// `challenge` as a PrintableString, as iOS sends it.
    pub fn new(key: PKey<Private>, cn: &str, challenge: &str) -> Result<Self, ScepError> {
        Self::with_challenge(key, cn, Some((challenge, CHALLENGE_PRINTABLE)), MessageDigest::sha256())
    }

    /// A requester whose CSR is signed with `md` and carries `challenge` (the password and its
    /// ASN.1 string type), or no challenge at all.
    pub fn with_challenge(key: PKey<Private>, cn: &str, challenge: Option<(&str, c_int)>, md: MessageDigest) -> Result<Self, ScepError> {
        let subject = name(cn)?;
        let build_csr = || -> Result<Vec<u8>, openssl::error::ErrorStack> {
            let mut req = X509ReqBuilder::new()?;
            req.set_subject_name(&subject)?;
            req.set_pubkey(&key)?;
            req.sign(&key, md)?;
            req.build().to_der()
        };
        let mut csr_der = build_csr().map_err(ossl("building the CSR"))?;
        if let Some((password, string_type)) = challenge {
            let key_der = key.private_key_to_der().map_err(ossl("encoding the requester's key"))?;
            csr_der = ffi::add_challenge_password(&csr_der, &key_der, password, string_type, md)?;
        }
        let cert = self_signed(&key, cn, &random_serial()?)?;
        Ok(Requester { key, cert, csr_der, cn: cn.to_owned() })
    }

    /// The subject CN this requester asks for.
    pub fn common_name(&self) -> &str {
        &self.cn
    }

    pub fn csr(&self) -> Result<X509Req, ScepError> {
        X509Req::from_der(&self.csr_der).map_err(ossl("reading the CSR"))
    }

    /// The same key and CSR, signing with another certificate (for renewals).
    pub fn with_cert(&self, cert: X509) -> Self {
        Requester { key: self.key.clone(), cert, csr_der: self.csr_der.clone(), cn: self.cn.clone() }
    }

    /// pkcsPKIEnvelope: the CSR encrypted to `ca` with `cipher`.
    pub fn envelope(&self, ca: &X509, cipher: Cipher) -> Result<Vec<u8>, ScepError> {
        let encrypt = || -> Result<Vec<u8>, openssl::error::ErrorStack> {
            let mut recipients = Stack::new()?;
            recipients.push(ca.clone())?;
            CmsContentInfo::encrypt(&recipients, &self.csr_der, cipher, CMSOptions::BINARY)?.to_der()
        };
        encrypt().map_err(ossl("encrypting the CSR to the CA"))
    }

    /// Signs `content` with this requester's key and certificate.
    pub(super) fn sign(&self, content: &[u8], md: MessageDigest, attrs: &[(ScepAttr, AttrToSign<'_>)]) -> Result<Vec<u8>, ScepError> {
        ffi::sign_signed_data(content, &self.cert, &self.key, md, attrs)
    }

    /// A complete request pkiMessage of type `message_type`; the transactionID is the hex SHA-1
    /// of the public key, as iOS makes it.
    pub fn pkcs_req(&self, ca: &X509, cipher: Cipher, md: MessageDigest, message_type: MessageType) -> Result<BuiltMessage, ScepError> {
        let envelope = self.envelope(ca, cipher)?;
        let public = self.key.public_key_to_der().map_err(ossl("encoding the requester's public key"))?;
        let transaction_id = hex::encode_upper(openssl::sha::sha1(&public));
        let mut nonce = vec![0u8; 16];
        openssl::rand::rand_bytes(&mut nonce).map_err(ossl("making a nonce"))?;
        let code = message_type.code().to_string();
        let der = self.sign(
            &envelope,
            md,
            &[
                (ScepAttr::TransactionId, AttrToSign::Printable(&transaction_id)),
                (ScepAttr::MessageType, AttrToSign::Printable(&code)),
                (ScepAttr::SenderNonce, AttrToSign::Octets(&nonce)),
            ],
        )?;
        Ok(BuiltMessage { der, transaction_id, sender_nonce: nonce })
    }

    /// Verifies a CertRep's signature and decodes it; decrypts its envelope, if any, with this
    /// requester's key. The caller checks the signer is the CA it trusts (`signer_der`).
    pub fn decode_cert_rep(&self, rep: &[u8]) -> Result<DecodedRep, ScepError> {
        let signed = ffi::verify_signed_data(rep)?;
        let text = |attr: ScepAttr| match signed.attribute(attr) {
            Some(AttrValue::Text(s)) => Ok(Some(s.clone())),
            None => Ok(None),
            Some(_) => Err(ScepError::InvalidAttribute { name: attr.name(), reason: "not a string".into() }),
        };
        let required = |attr: ScepAttr| text(attr)?.ok_or(ScepError::MissingAttribute(attr.name()));
        let octets = |attr: ScepAttr| match signed.attribute(attr) {
            Some(AttrValue::Octets(b)) => Ok(b.clone()),
            None => Err(ScepError::MissingAttribute(attr.name())),
            Some(_) => Err(ScepError::InvalidAttribute { name: attr.name(), reason: "not an OCTET STRING".into() }),
        };
        let (reply_cipher, certs) = if signed.content.is_empty() {
            (None, Vec::new())
        } else {
            let oid = der::enveloped_content_cipher_oid(&signed.content)
                .ok_or_else(|| ScepError::Malformed("the CertRep's content is not an EnvelopedData".into()))?
                .to_vec();
            let envelope = CmsContentInfo::from_der(&signed.content).map_err(ossl("reading the CertRep's envelope"))?;
            let degenerate = envelope.decrypt(&self.key, &self.cert).map_err(|e| ScepError::Decrypt(e.to_string()))?;
            let p7 = Pkcs7::from_der(&degenerate).map_err(ossl("reading the issued certificates"))?;
            let certs = p7.signed().and_then(|s| s.certificates()).map(|s| s.iter().map(|c| c.to_owned()).collect()).unwrap_or_default();
            (Some(ContentCipher::from_oid(&oid)), certs)
        };
        Ok(DecodedRep {
            message_type: required(ScepAttr::MessageType)?,
            pki_status: required(ScepAttr::PkiStatus)?,
            fail_info: text(ScepAttr::FailInfo)?,
            transaction_id: required(ScepAttr::TransactionId)?,
            recipient_nonce: octets(ScepAttr::RecipientNonce)?,
            sender_nonce: octets(ScepAttr::SenderNonce)?,
            signer_der: signed.signer_cert.to_der().map_err(ossl("encoding the signer certificate"))?,
            digest_nid: signed.digest_nid,
            reply_cipher,
            certs,
        })
    }

    /// The issued certificate from a successful CertRep, checked to be for this requester's key.
    pub fn issued_certificate(&self, rep: &[u8]) -> Result<X509, ScepError> {
        let decoded = self.decode_cert_rep(rep)?;
        if !decoded.is_success() {
            return Err(ScepError::Issue(format!(
                "the CA answered pkiStatus {} (failInfo {})",
                decoded.pki_status,
                decoded.fail_info.as_deref().unwrap_or("none")
            )));
        }
        let ours = self.key.public_key_to_der().map_err(ossl("encoding the requester's public key"))?;
        decoded
            .certs
            .into_iter()
            .find(|c| c.public_key().and_then(|k| k.public_key_to_der()).is_ok_and(|k| k == ours))
            .ok_or_else(|| ScepError::Issue("the CertRep holds no certificate for this key".into()))
    }
}
