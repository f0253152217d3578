//! Apple's Push Certificates Portal (identity.apple.com/pushcert), as far as a test can stand in
//! for a web page: it takes the request file a school uploads, checks it as the portal does (the
//! plist's three keys, the CSR signed by the chain's first certificate, a chain that ends at the
//! root it trusts as Apple's), refuses a bare CSR, and issues a push certificate for the CSR's
//! key. Create gives a new topic; Renew keeps the topic of the certificate renewed.
//!
//! [`test_vendor`] makes an MDM vendor identity under a throwaway "Apple" root and intermediate,
//! as Apple's developer programme issues one.

use base64::Engine;
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::extension::BasicConstraints;
use openssl::x509::{X509, X509Builder, X509NameBuilder};

use crate::certificates::{push_certificate_for_key, self_signed_ca};

/// An MDM vendor's CSR-signing identity and the "Apple" certificates above it.
pub struct TestVendor {
    /// The vendor certificate alone (PEM), as the developer portal downloads it.
    pub cert_pem: Vec<u8>,
    /// Apple's intermediate and root (PEM).
    pub chain_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    /// The root a [`PushPortal`] trusts.
    pub apple_root: X509,
}

/// A vendor identity under a fresh throwaway Apple root.
pub fn test_vendor() -> Result<TestVendor, ErrorStack> {
    let root_key = PKey::from_rsa(Rsa::generate(2048)?)?;
    let root = self_signed_ca("Test Apple Root CA", &root_key)?;
    let wwdr_key = PKey::from_rsa(Rsa::generate(2048)?)?;
    let wwdr = issue(&root, &root_key, "Test Apple Worldwide Developer Relations", &wwdr_key, true)?;
    let vendor_key = PKey::from_rsa(Rsa::generate(2048)?)?;
    let vendor = issue(&wwdr, &wwdr_key, "MDM Vendor: Test Trust", &vendor_key, false)?;
    Ok(TestVendor {
        cert_pem: vendor.to_pem()?,
        chain_pem: [wwdr.to_pem()?, root.to_pem()?].concat(),
        key_pem: vendor_key.private_key_to_pem_pkcs8()?,
        apple_root: root,
    })
}

pub(crate) fn issue(issuer: &X509, issuer_key: &PKey<Private>, cn: &str, key: &PKey<Private>, ca: bool) -> Result<X509, ErrorStack> {
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_nid(Nid::COMMONNAME, cn)?;
    let name = name.build();
    let mut b = X509Builder::new()?;
    b.set_version(2)?;
    b.set_serial_number(&*openssl::bn::BigNum::from_u32(rand_u32())?.to_asn1_integer()?)?;
    b.set_subject_name(&name)?;
    b.set_issuer_name(issuer.subject_name())?;
    b.set_pubkey(key)?;
    b.set_not_before(&*openssl::asn1::Asn1Time::days_from_now(0)?)?;
    b.set_not_after(&*openssl::asn1::Asn1Time::days_from_now(365)?)?;
    if ca {
        b.append_extension(BasicConstraints::new().critical().ca().build()?)?;
    }
    b.sign(issuer_key, MessageDigest::sha256())?;
    Ok(b.build())
}

fn rand_u32() -> u32 {
    let mut b = [0u8; 4];
    openssl::rand::rand_bytes(&mut b).ok();
    u32::from_le_bytes(b) >> 1
}

/// The portal: Apple's push CA and the root it trusts for vendor certificates.
pub struct PushPortal {
    ca: X509,
    ca_key: PKey<Private>,
    apple_root: X509,
}

impl PushPortal {
    pub fn new(apple_root: X509) -> Result<PushPortal, ErrorStack> {
        let ca_key = PKey::from_rsa(Rsa::generate(2048)?)?;
        let ca = self_signed_ca("Test Apple Application Integration CA", &ca_key)?;
        Ok(PushPortal { ca, ca_key, apple_root })
    }

    /// The push CA, for a mock APNs to trust.
    pub fn ca(&self) -> &X509 {
        &self.ca
    }

    /// "Create a Certificate": a new topic. Returns the certificate as the portal downloads it (PEM).
    pub fn create(&self, request_file: &str) -> Result<(String, Vec<u8>), String> {
        let topic = format!("com.apple.mgmt.External.{}", uuid::Uuid::new_v4());
        let pem = self.issue(request_file, &topic)?;
        Ok((topic, pem))
    }

    /// "Renew": the same topic as the certificate renewed.
    pub fn renew(&self, request_file: &str, topic: &str) -> Result<Vec<u8>, String> {
        self.issue(request_file, topic)
    }

    fn issue(&self, request_file: &str, topic: &str) -> Result<Vec<u8>, String> {
        if request_file.contains("BEGIN CERTIFICATE REQUEST") {
            return Err("The certificate request is not signed by an MDM vendor".into());
        }
        let csr = lanyard::apple::push_cert_request::verify_request_file(request_file)?;
        let xml = base64::engine::general_purpose::STANDARD.decode(request_file.trim()).map_err(|e| e.to_string())?;
        let chain_text = plist::Value::from_reader_xml(xml.as_slice())
            .ok()
            .and_then(|v| v.as_dictionary().and_then(|d| d.get("PushCertCertificateChain")).and_then(|c| c.as_string()).map(str::to_owned))
            .ok_or("no chain")?;
        let chain = X509::stack_from_pem(chain_text.as_bytes()).map_err(|e| e.to_string())?;
        let top = chain.last().ok_or("empty chain")?;
        if top.to_der().ok() != self.apple_root.to_der().ok() {
            return Err("The vendor certificate does not chain to Apple's root".into());
        }
        let key = csr.public_key().map_err(|e| e.to_string())?;
        let cert = push_certificate_for_key(&self.ca, &self.ca_key, &key, topic, 365).map_err(|e| e.to_string())?;
        cert.to_pem().map_err(|e| e.to_string())
    }
}
