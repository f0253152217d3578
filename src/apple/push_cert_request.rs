//! The request a school takes to Apple's Push Certificates Portal.
//!
//! The portal (<https://identity.apple.com/pushcert>) issues an MDM push certificate for a
//! certificate signing request that an MDM vendor has signed: the file it takes is the base64 of
//! an XML plist with three strings:
//!
//! * `PushCertRequestCSR`: the base64 of the CSR (DER), whose key stays with Lanyard;
//! * `PushCertCertificateChain`: PEM of the vendor's MDM CSR-signing certificate, then Apple's
//!   intermediate (WWDR) and root certificates that issued it;
//! * `PushCertSignature`: the base64 of the vendor key's RSA PKCS#1 v1.5 signature, over SHA-256,
//!   of the CSR's DER bytes.
//!
//! [`PushCertRequest::new`] makes the key and the CSR; [`VendorSigner`] reads a vendor's
//! certificate, chain and key and [`PushCertRequest::sign`] writes the portal's file. A school
//! without a vendor certificate takes the bare CSR to whoever signs for it (README, "Apple push
//! certificate"). Written here because no crate makes this Apple-specific file; the crypto is
//! OpenSSL's.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::sign::{Signer, Verifier};
use openssl::x509::{X509, X509NameBuilder, X509Req, X509ReqBuilder};

use super::push_certificate::subject_line;

/// The size of the push key. Apple's portal takes RSA 2048.
const KEY_BITS: u32 = 2048;

/// Why a push-certificate request could not be made or signed.
#[derive(Debug, thiserror::Error)]
pub enum PushRequestError {
    #[error("could not read the vendor certificate: {0}")]
    UnreadableVendorCertificate(String),
    #[error("could not read the vendor private key: {0}")]
    UnreadableVendorKey(String),
    #[error("the vendor private key does not belong to the vendor certificate ({subject})")]
    VendorKeyMismatch { subject: String },
    #[error("the vendor certificate must have an RSA key (Apple's MDM CSR certificates do)")]
    VendorKeyNotRsa,
    /// Apple's portal refuses a chain that does not reach Apple's root.
    #[error(
        "the vendor certificate's chain is incomplete: nothing in it issued {subject}. Add Apple's intermediate and root certificates \
         (the Apple Worldwide Developer Relations certificate and Apple Inc. Root, from https://www.apple.com/certificateauthority/) \
         to the vendor certificate file, or give them as the chain"
    )]
    IncompleteChain { subject: String },
    #[error("OpenSSL error: {0}")]
    Openssl(#[from] openssl::error::ErrorStack),
}

/// A new push key and its CSR.
pub struct PushCertRequest {
    pub key: PKey<Private>,
    pub csr: X509Req,
}

impl PushCertRequest {
    /// A fresh RSA key and a CSR for it naming the school.
    pub fn new(organization: &str) -> Result<PushCertRequest, PushRequestError> {
        let key = PKey::from_rsa(Rsa::generate(KEY_BITS)?)?;
        let mut name = X509NameBuilder::new()?;
        name.append_entry_by_nid(Nid::COMMONNAME, "Lanyard MDM push certificate")?;
        if !organization.trim().is_empty() {
            name.append_entry_by_nid(Nid::ORGANIZATIONNAME, organization.trim())?;
        }
        let mut req = X509ReqBuilder::new()?;
        req.set_subject_name(&name.build())?;
        req.set_pubkey(&key)?;
        req.sign(&key, MessageDigest::sha256())?;
        Ok(PushCertRequest { key, csr: req.build() })
    }

    /// Rebuilds a stored request from its key and CSR (both PEM).
    pub fn from_pem(key_pem: &[u8], csr_pem: &[u8]) -> Result<PushCertRequest, PushRequestError> {
        Ok(PushCertRequest { key: PKey::private_key_from_pem(key_pem)?, csr: X509Req::from_pem(csr_pem)? })
    }

    pub fn csr_pem(&self) -> String {
        String::from_utf8_lossy(&self.csr.to_pem().unwrap_or_default()).into_owned()
    }

    pub fn key_pem(&self) -> Result<Vec<u8>, PushRequestError> {
        Ok(self.key.private_key_to_pem_pkcs8()?)
    }

    /// True when `cert` was issued for this request's key.
    pub fn issued(&self, cert: &X509) -> bool {
        let matches = cert.public_key().map(|public| public.public_eq(&self.key)).unwrap_or(false);
        let _ = openssl::error::ErrorStack::get();
        matches
    }

    /// The portal's file: base64 of the plist that carries the CSR, the vendor's chain and the
    /// vendor's signature of the CSR.
    pub fn sign(&self, vendor: &VendorSigner) -> Result<String, PushRequestError> {
        let csr_der = self.csr.to_der()?;
        let mut signer = Signer::new(MessageDigest::sha256(), &vendor.key)?;
        signer.update(&csr_der)?;
        let signature = signer.sign_to_vec()?;
        let mut chain = String::new();
        for cert in &vendor.chain {
            chain.push_str(&String::from_utf8_lossy(&cert.to_pem()?));
        }
        let mut dict = plist::Dictionary::new();
        dict.insert("PushCertCertificateChain".into(), plist::Value::String(chain));
        dict.insert("PushCertRequestCSR".into(), plist::Value::String(B64.encode(&csr_der)));
        dict.insert("PushCertSignature".into(), plist::Value::String(B64.encode(&signature)));
        let mut xml = Vec::new();
        plist::Value::Dictionary(dict).to_writer_xml(&mut xml).map_err(|e| PushRequestError::UnreadableVendorCertificate(e.to_string()))?;
        Ok(B64.encode(xml))
    }
}

/// An MDM vendor's CSR-signing identity: its certificate first, then the chain up to Apple's root.
pub struct VendorSigner {
    pub chain: Vec<X509>,
    pub key: PKey<Private>,
}

impl VendorSigner {
    /// Reads the vendor certificate (PEM, possibly with its chain, or DER), an optional separate
    /// chain file, and the vendor key (PEM). The certificate the key belongs to comes first; the
    /// rest must lead from it to a self-signed root.
    pub fn read(cert: &[u8], chain: Option<&[u8]>, key_pem: &[u8]) -> Result<VendorSigner, PushRequestError> {
        let mut certs = read_certificates(cert)?;
        if let Some(chain) = chain {
            certs.extend(read_certificates(chain)?);
        }
        let key = PKey::private_key_from_pem(key_pem).map_err(|e| PushRequestError::UnreadableVendorKey(reason(&e)))?;
        if key.rsa().is_err() {
            let _ = openssl::error::ErrorStack::get();
            return Err(PushRequestError::VendorKeyNotRsa);
        }
        let Some(position) = certs.iter().position(|c| c.public_key().map(|p| p.public_eq(&key)).unwrap_or(false)) else {
            let _ = openssl::error::ErrorStack::get();
            return Err(PushRequestError::VendorKeyMismatch { subject: subject_line(certs[0].subject_name()) });
        };
        let leaf = certs.remove(position);
        let mut ordered = vec![leaf];
        // Follow issuers through what was given, until a self-signed certificate.
        loop {
            let last = ordered.last().expect("one certificate at least");
            if issued_by(last, last) {
                break;
            }
            let Some(i) = certs.iter().position(|c| issued_by(last, c)) else {
                return Err(PushRequestError::IncompleteChain { subject: subject_line(last.subject_name()) });
            };
            ordered.push(certs.remove(i));
        }
        Ok(VendorSigner { chain: ordered, key })
    }

    /// The vendor certificate's subject, for the audit log and the answer.
    pub fn subject(&self) -> String {
        subject_line(self.chain[0].subject_name())
    }
}

/// True when `issuer` signed `cert`.
fn issued_by(cert: &X509, issuer: &X509) -> bool {
    let ok = cert.issuer_name().try_cmp(issuer.subject_name()).map(|o| o.is_eq()).unwrap_or(false)
        && issuer.public_key().and_then(|k| cert.verify(&k)).unwrap_or(false);
    let _ = openssl::error::ErrorStack::get();
    ok
}

fn read_certificates(bytes: &[u8]) -> Result<Vec<X509>, PushRequestError> {
    let pem = X509::stack_from_pem(bytes).map_err(|e| PushRequestError::UnreadableVendorCertificate(reason(&e)))?;
    if !pem.is_empty() {
        return Ok(pem);
    }
    X509::from_der(bytes)
        .map(|c| vec![c])
        .map_err(|_| PushRequestError::UnreadableVendorCertificate("no PEM CERTIFICATE block and not a DER certificate".into()))
}

fn reason(e: &openssl::error::ErrorStack) -> String {
    e.errors().first().and_then(|err| err.reason().map(str::to_owned)).unwrap_or_else(|| "not a PEM key".into())
}

/// Checks a portal file the way the portal does: the plist's three keys, the CSR's signature by
/// the chain's first certificate, and the chain's links. Returns the CSR. (Tests, and
/// `lanyard push-cert request`'s self-check.)
pub fn verify_request_file(file: &str) -> Result<X509Req, String> {
    let xml = B64.decode(file.trim()).map_err(|_| "the file is not base64".to_owned())?;
    let value = plist::Value::from_reader_xml(xml.as_slice()).map_err(|e| format!("not an XML plist: {e}"))?;
    let dict = value.as_dictionary().ok_or("the plist is not a dictionary")?;
    let get = |k: &str| dict.get(k).and_then(|v| v.as_string()).ok_or(format!("{k} is missing"));
    let csr_der = B64.decode(get("PushCertRequestCSR")?).map_err(|_| "PushCertRequestCSR is not base64")?;
    let csr = X509Req::from_der(&csr_der).map_err(|_| "PushCertRequestCSR is not a CSR")?;
    let chain = X509::stack_from_pem(get("PushCertCertificateChain")?.as_bytes()).map_err(|_| "PushCertCertificateChain is not PEM")?;
    let vendor = chain.first().ok_or("PushCertCertificateChain is empty")?;
    for pair in chain.windows(2) {
        if !issued_by(&pair[0], &pair[1]) {
            return Err(format!("{} did not issue {}", subject_line(pair[1].subject_name()), subject_line(pair[0].subject_name())));
        }
    }
    let signature = B64.decode(get("PushCertSignature")?).map_err(|_| "PushCertSignature is not base64")?;
    let public = vendor.public_key().map_err(|e| e.to_string())?;
    let mut verifier = Verifier::new(MessageDigest::sha256(), &public).map_err(|e| e.to_string())?;
    verifier.update(&csr_der).map_err(|e| e.to_string())?;
    if !verifier.verify(&signature).unwrap_or(false) {
        return Err("PushCertSignature is not the vendor certificate's signature of the CSR".into());
    }
    Ok(csr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::asn1::Asn1Time;
    use openssl::bn::BigNum;
    use openssl::x509::X509Builder;

    fn cert(cn: &str, key: &PKey<Private>, issuer: Option<(&X509, &PKey<Private>)>) -> X509 {
        let mut name = X509NameBuilder::new().unwrap();
        name.append_entry_by_nid(Nid::COMMONNAME, cn).unwrap();
        let name = name.build();
        let mut b = X509Builder::new().unwrap();
        b.set_version(2).unwrap();
        b.set_serial_number(&BigNum::from_u32(7).unwrap().to_asn1_integer().unwrap()).unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_issuer_name(issuer.map(|(c, _)| c.subject_name()).unwrap_or(&name)).unwrap();
        b.set_pubkey(key).unwrap();
        b.set_not_before(&Asn1Time::days_from_now(0).unwrap()).unwrap();
        b.set_not_after(&Asn1Time::days_from_now(365).unwrap()).unwrap();
        b.sign(issuer.map(|(_, k)| k).unwrap_or(key), MessageDigest::sha256()).unwrap();
        b.build()
    }

    fn rsa() -> PKey<Private> {
        PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap()
    }

    #[test]
    fn a_signed_request_carries_the_csr_the_chain_and_a_valid_signature() {
        let (root_key, wwdr_key, vendor_key) = (rsa(), rsa(), rsa());
        let root = cert("Test Apple Root", &root_key, None);
        let wwdr = cert("Test WWDR", &wwdr_key, Some((&root, &root_key)));
        let vendor = cert("MDM Vendor: Test Trust", &vendor_key, Some((&wwdr, &wwdr_key)));
        // The vendor certificate as DER (Apple's download), the chain in another file, out of order.
        let chain_pem = [root.to_pem().unwrap(), wwdr.to_pem().unwrap()].concat();
        let signer =
            VendorSigner::read(&vendor.to_der().unwrap(), Some(&chain_pem), &vendor_key.private_key_to_pem_pkcs8().unwrap()).unwrap();
        assert_eq!(signer.chain.len(), 3);
        let request = PushCertRequest::new("St Mary's").unwrap();
        let file = request.sign(&signer).unwrap();
        let csr = verify_request_file(&file).unwrap();
        assert!(csr.public_key().unwrap().public_eq(&request.key));
        assert!(subject_line(csr.subject_name()).contains("O=St Mary's"));

        // A tampered signature is caught by the same check.
        let xml = B64.decode(&file).unwrap();
        let mut value = plist::Value::from_reader_xml(xml.as_slice()).unwrap();
        value.as_dictionary_mut().unwrap().insert("PushCertSignature".into(), plist::Value::String(B64.encode([1u8; 256])));
        let mut bad = Vec::new();
        value.to_writer_xml(&mut bad).unwrap();
        assert!(verify_request_file(&B64.encode(bad)).err().unwrap().contains("PushCertSignature"));
    }

    #[test]
    fn vendor_files_that_the_portal_would_refuse_are_refused_with_the_reason() {
        let (root_key, wwdr_key, vendor_key) = (rsa(), rsa(), rsa());
        let root = cert("Test Apple Root", &root_key, None);
        let wwdr = cert("Test WWDR", &wwdr_key, Some((&root, &root_key)));
        let vendor = cert("MDM Vendor: Test Trust", &vendor_key, Some((&wwdr, &wwdr_key)));
        let key_pem = vendor_key.private_key_to_pem_pkcs8().unwrap();
        // Missing Apple's intermediate.
        let e = VendorSigner::read(&vendor.to_pem().unwrap(), Some(&root.to_pem().unwrap()), &key_pem).err().unwrap();
        assert!(matches!(e, PushRequestError::IncompleteChain { .. }), "{e}");
        assert!(e.to_string().contains("MDM Vendor: Test Trust"));
        // Someone else's key.
        let e = VendorSigner::read(&vendor.to_pem().unwrap(), None, &rsa().private_key_to_pem_pkcs8().unwrap()).err().unwrap();
        assert!(matches!(e, PushRequestError::VendorKeyMismatch { .. }), "{e}");
        // Not a certificate, not a key.
        assert!(matches!(VendorSigner::read(b"hello", None, &key_pem), Err(PushRequestError::UnreadableVendorCertificate(_))));
        assert!(matches!(VendorSigner::read(&vendor.to_pem().unwrap(), None, b"nope"), Err(PushRequestError::UnreadableVendorKey(_))));
    }

    #[test]
    fn the_request_recognises_the_certificate_issued_for_its_key() {
        let request = PushCertRequest::new("").unwrap();
        let again = PushCertRequest::from_pem(&request.key_pem().unwrap(), request.csr_pem().as_bytes()).unwrap();
        let issued = cert("APSP:test", &request.key, None);
        assert!(again.issued(&issued));
        assert!(!again.issued(&cert("other", &rsa(), None)));
    }
}
