//! Test fixtures: a throwaway CA, a SCEP requester that builds real
//! pkiMessages (as a device would), and a CertRep decoder (as a device would).

use std::ffi::c_int;

use openssl::asn1::{Asn1Integer, Asn1Time};
use openssl::bn::{BigNum, MsbOption};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::stack::Stack;
use openssl::symm::Cipher;
use openssl::x509::extension::{BasicConstraints, KeyUsage, SubjectKeyIdentifier};
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::{X509, X509Builder, X509ExtendedKeyUsage, X509KeyUsage, X509Name, X509PurposeId, X509Req, X509StoreContext};

use super::MessageType;
use super::client::{self, BuiltMessage, DecodedRep};
use super::ffi::{AttrToSign, ScepAttr};

fn rsa_key() -> PKey<Private> {
    PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap()
}

fn name(cn: &str) -> X509Name {
    let mut name = X509Name::builder().unwrap();
    name.append_entry_by_text("O", "Lanyard Tests").unwrap();
    name.append_entry_by_text("CN", cn).unwrap();
    name.build()
}

fn serial() -> Asn1Integer {
    let mut bn = BigNum::new().unwrap();
    bn.rand(64, MsbOption::ONE, false).unwrap();
    Asn1Integer::from_bn(&bn).unwrap()
}

/// A self-signed RSA-2048 CA, valid from an hour ago.
pub(crate) struct TestCa {
    pub cert: X509,
    pub key: PKey<Private>,
}

impl TestCa {
    pub fn new(cn: &str) -> Self {
        Self::with_days(cn, 3650)
    }

    pub fn with_days(cn: &str, days: u32) -> Self {
        let key = rsa_key();
        let mut b = X509Builder::new().unwrap();
        b.set_version(2).unwrap();
        b.set_serial_number(&serial()).unwrap();
        b.set_subject_name(&name(cn)).unwrap();
        b.set_issuer_name(&name(cn)).unwrap();
        b.set_pubkey(&key).unwrap();
        let now = chrono::Utc::now().timestamp();
        b.set_not_before(&Asn1Time::from_unix(now - 3600).unwrap()).unwrap();
        b.set_not_after(&Asn1Time::days_from_now(days).unwrap()).unwrap();
        b.append_extension(BasicConstraints::new().critical().ca().build().unwrap()).unwrap();
        b.append_extension(KeyUsage::new().critical().key_cert_sign().crl_sign().digital_signature().build().unwrap()).unwrap();
        let ski = SubjectKeyIdentifier::new().build(&b.x509v3_context(None, None)).unwrap();
        b.append_extension(ski).unwrap();
        b.sign(&key, MessageDigest::sha256()).unwrap();
        TestCa { cert: b.build(), key }
    }
}

/// A SCEP client (see [`super::client`]) whose steps panic on failure, for unit tests.
pub(crate) struct Requester(pub client::Requester);

impl std::ops::Deref for Requester {
    type Target = client::Requester;
    fn deref(&self) -> &client::Requester {
        &self.0
    }
}

impl Requester {
    /// CSR signed with `md`, carrying `challenge` as an attribute of ASN.1
    /// string type `challenge_type`.
    pub fn new(cn: &str, challenge: &str, challenge_type: c_int, md: MessageDigest) -> Self {
        Requester(client::Requester::with_challenge(rsa_key(), cn, Some((challenge, challenge_type)), md).unwrap())
    }

    pub fn without_challenge(cn: &str) -> Self {
        Requester(client::Requester::with_challenge(rsa_key(), cn, None, MessageDigest::sha256()).unwrap())
    }

    pub fn csr(&self) -> X509Req {
        self.0.csr().unwrap()
    }

    /// The same key and CSR, signing with another certificate (for renewals).
    pub fn with_cert(&self, cert: X509) -> Self {
        Requester(self.0.with_cert(cert))
    }

    /// pkcsPKIEnvelope: the CSR encrypted to `ca` with `cipher`.
    pub fn envelope(&self, ca: &X509, cipher: Cipher) -> Vec<u8> {
        self.0.envelope(ca, cipher).unwrap()
    }

    /// Signs `content` with this requester's key and certificate.
    pub fn sign(&self, content: &[u8], md: MessageDigest, attrs: &[(ScepAttr, AttrToSign<'_>)]) -> Vec<u8> {
        self.0.sign(content, md, attrs).unwrap()
    }

    /// A complete request pkiMessage of type `message_type`.
    pub fn pkcs_req(&self, ca: &X509, cipher: Cipher, md: MessageDigest, message_type: MessageType) -> BuiltMessage {
        self.0.pkcs_req(ca, cipher, md, message_type).unwrap()
    }

    /// A PKCSReq that carries this requester's certificate but whose
    /// signature was made with `impostor`'s key: the impostor signs with a
    /// look-alike certificate (same subject and serial, its own key), which
    /// is then swapped for the real one inside the DER.
    pub fn forged_by(&self, ca: &X509, impostor: &PKey<Private>) -> Vec<u8> {
        let serial = self.cert.serial_number().to_owned().unwrap();
        let lookalike = client::self_signed(impostor, self.common_name(), &serial).unwrap();
        let fake = Requester(client::Requester {
            key: impostor.clone(),
            cert: lookalike.clone(),
            csr_der: self.csr_der.clone(),
            cn: self.cn.clone(),
        });
        let msg = fake.pkcs_req(ca, Cipher::aes_256_cbc(), MessageDigest::sha256(), MessageType::PkcsReq);
        let fake_der = lookalike.to_der().unwrap();
        let real_der = self.cert.to_der().unwrap();
        assert_eq!(fake_der.len(), real_der.len(), "look-alike must be same size");
        let pos = find(&msg.der, &fake_der).expect("certificate inside message");
        let mut der = msg.der;
        der[pos..pos + fake_der.len()].copy_from_slice(&real_der);
        der
    }
}

/// Position of `needle` in `haystack`.
pub(crate) fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Verifies and decodes a CertRep; decrypts its envelope, if any, with the
/// requester's key.
pub(crate) fn decode_cert_rep(rep: &[u8], requester: &Requester) -> DecodedRep {
    requester.0.decode_cert_rep(rep).expect("CertRep verifies and decodes")
}

/// Checks everything `issue_certificate` promises.
pub(crate) fn assert_valid_client_cert(cert: &X509, ca: &X509, days: u32) {
    // Chains to the CA, for the TLS-client purpose (checks EKU and keyUsage).
    let mut store = X509StoreBuilder::new().unwrap();
    store.add_cert(ca.clone()).unwrap();
    store.set_purpose(X509PurposeId::SSL_CLIENT).unwrap();
    let store = store.build();
    let mut ctx = X509StoreContext::new().unwrap();
    let chain = Stack::new().unwrap();
    let ok = ctx
        .init(&store, cert, &chain, |c| {
            let ok = c.verify_cert()?;
            assert!(ok, "verify failed: {}", c.error());
            Ok(ok)
        })
        .unwrap();
    assert!(ok);

    assert_eq!(cert.extended_key_usage(), Some(X509ExtendedKeyUsage::SSL_CLIENT));
    assert_eq!(cert.key_usage(), Some(X509KeyUsage::DIGITAL_SIGNATURE | X509KeyUsage::KEY_ENCIPHERMENT));
    assert!(cert.subject_key_id().is_some(), "SKI");
    assert!(cert.authority_key_id().is_some(), "AKI");
    assert_eq!(cert.authority_key_id().unwrap().as_slice(), ca.subject_key_id().unwrap().as_slice());
    assert_eq!(cert.signature_algorithm().object().nid(), Nid::SHA256WITHRSAENCRYPTION);
    // Not a CA: OpenSSL refuses it as an issuer.
    let text = String::from_utf8(cert.to_text().unwrap()).unwrap();
    assert!(text.contains("CA:FALSE"), "{text}");
    assert!(text.contains("TLS Web Client Authentication"), "{text}");

    let serial = cert.serial_number().to_bn().unwrap();
    assert!(!serial.is_negative());
    assert!(serial.num_bits() >= 64, "serial has {} bits", serial.num_bits());

    let remaining = Asn1Time::days_from_now(0).unwrap().diff(cert.not_after()).unwrap();
    let expected = i32::try_from(days).unwrap();
    assert!(remaining.days == expected || remaining.days == expected - 1, "valid for {} more days, expected {days}", remaining.days);
    let started = Asn1Time::days_from_now(0).unwrap().diff(cert.not_before()).unwrap();
    assert!(started.days == 0 && started.secs <= 0, "notBefore in the future");
}

/// A certificate for `requester` signed by `ca` that expired yesterday.
pub(crate) fn expired_cert(requester: &Requester, ca: &TestCa) -> X509 {
    let mut b = X509Builder::new().unwrap();
    b.set_version(2).unwrap();
    b.set_serial_number(&serial()).unwrap();
    b.set_subject_name(requester.csr().subject_name()).unwrap();
    b.set_issuer_name(ca.cert.subject_name()).unwrap();
    b.set_pubkey(&requester.key).unwrap();
    let now = chrono::Utc::now().timestamp();
    b.set_not_before(&Asn1Time::from_unix(now - 10 * 86_400).unwrap()).unwrap();
    b.set_not_after(&Asn1Time::from_unix(now - 86_400).unwrap()).unwrap();
    b.sign(&ca.key, MessageDigest::sha256()).unwrap();
    b.build()
}
