//! Test helpers for the protocol module: finding the shared folder (fixtures, Apple's schema and
//! `validate_plist.py`), running the validator on what the module produces, and making
//! throwaway certificate authorities and identities with openssl.

use std::path::{Path, PathBuf};
use std::process::Command as Process;

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::extension::{BasicConstraints, ExtendedKeyUsage, KeyUsage};
use openssl::x509::{X509, X509NameBuilder};

/// The shared folder: `$LANYARD_SHARED_DIR`, else the first `shared/` beside `CARGO_MANIFEST_DIR`
/// or one of its ancestors that holds `tools/validate_plist.py` (`/work/shared` both for the
/// main crate at `/work/main` and for a scratch crate deeper under `/work`).
pub(crate) fn shared_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("LANYARD_SHARED_DIR") {
        return PathBuf::from(dir);
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    for dir in manifest.ancestors() {
        for candidate in [dir.join("shared"), dir.join("../shared")] {
            if candidate.join("tools/validate_plist.py").is_file() {
                return candidate;
            }
        }
    }
    panic!("no shared/tools/validate_plist.py above {}; set LANYARD_SHARED_DIR", manifest.display());
}

/// A fixture from `shared/fixtures/nanomdm/`.
pub(crate) fn fixture(name: &str) -> Vec<u8> {
    let path = shared_dir().join("fixtures/nanomdm").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Runs `validate_plist.py MODE FILE` on `bytes` and returns (success, combined output).
pub(crate) fn run_validator(mode: &str, bytes: &[u8], ext: &str) -> (bool, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join(format!("subject.{ext}"));
    std::fs::write(&file, bytes).expect("write subject");
    let script = shared_dir().join("tools/validate_plist.py");
    let out = Process::new("python3").arg(&script).arg(mode).arg(&file).output().expect("run python3 validate_plist.py");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// Asserts that `validate_plist.py MODE` accepts `bytes`, showing its output otherwise.
pub(crate) fn validate(mode: &str, bytes: &[u8], ext: &str) {
    let (ok, text) = run_validator(mode, bytes, ext);
    assert!(ok, "validate_plist.py {mode} rejected:\n{text}\n{}", String::from_utf8_lossy(bytes));
}

/// A throwaway certificate and its key.
pub(crate) struct Identity {
    pub cert: X509,
    pub key: PKey<Private>,
}

fn builder(cn: &str, key: &PKey<Private>) -> openssl::x509::X509Builder {
    let mut name = X509NameBuilder::new().expect("name");
    name.append_entry_by_text("CN", cn).expect("CN");
    let name = name.build();
    let mut b = X509::builder().expect("builder");
    b.set_version(2).expect("version");
    let mut serial = BigNum::new().expect("bn");
    serial.rand(64, MsbOption::MAYBE_ZERO, false).expect("rand");
    b.set_serial_number(&serial.to_asn1_integer().expect("serial")).expect("serial");
    b.set_subject_name(&name).expect("subject");
    b.set_pubkey(key).expect("pubkey");
    b.set_not_before(&Asn1Time::days_from_now(0).expect("time")).expect("not before");
    b.set_not_after(&Asn1Time::days_from_now(30).expect("time")).expect("not after");
    b
}

fn rsa_key() -> PKey<Private> {
    PKey::from_rsa(Rsa::generate(2048).expect("rsa")).expect("pkey")
}

/// A self-signed CA.
pub(crate) fn make_ca(cn: &str) -> Identity {
    let key = rsa_key();
    let mut b = builder(cn, &key);
    // Issuer = subject for a self-signed certificate.
    let mut subject = X509NameBuilder::new().expect("name");
    subject.append_entry_by_text("CN", cn).expect("CN");
    b.set_issuer_name(&subject.build()).expect("issuer");
    b.append_extension(BasicConstraints::new().critical().ca().build().expect("bc")).expect("bc");
    b.append_extension(KeyUsage::new().critical().key_cert_sign().crl_sign().build().expect("ku")).expect("ku");
    b.sign(&key, MessageDigest::sha256()).expect("sign");
    Identity { cert: b.build(), key }
}

/// What a leaf certificate is for.
pub(crate) enum Leaf {
    /// A device identity as Lanyard's SCEP server issues it: clientAuth EKU.
    Device,
    /// A profile-signing identity: digitalSignature, no EKU.
    Signer,
    /// An intermediate certificate authority.
    Intermediate,
}

/// A certificate issued by `ca`, with an RSA 2048 key as iPads make from the SCEP payload.
pub(crate) fn make_leaf(ca: &Identity, cn: &str, kind: Leaf) -> Identity {
    make_leaf_with_key(ca, cn, kind, rsa_key())
}

/// A certificate issued by `ca` for a P-256 key (what `lanyard bench`'s simulated devices use).
pub(crate) fn make_ec_leaf(ca: &Identity, cn: &str, kind: Leaf) -> Identity {
    let group = openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1).expect("group");
    make_leaf_with_key(ca, cn, kind, PKey::from_ec_key(openssl::ec::EcKey::generate(&group).expect("ec")).expect("pkey"))
}

fn make_leaf_with_key(ca: &Identity, cn: &str, kind: Leaf, key: PKey<Private>) -> Identity {
    let mut b = builder(cn, &key);
    b.set_issuer_name(ca.cert.subject_name()).expect("issuer");
    let mut bc = BasicConstraints::new();
    let mut ku = KeyUsage::new();
    ku.critical();
    match kind {
        Leaf::Device => ku.digital_signature().key_encipherment(),
        Leaf::Signer => ku.digital_signature(),
        Leaf::Intermediate => {
            bc.critical().ca();
            ku.key_cert_sign().crl_sign()
        }
    };
    b.append_extension(bc.build().expect("bc")).expect("bc");
    b.append_extension(ku.build().expect("ku")).expect("ku");
    if matches!(kind, Leaf::Device) {
        b.append_extension(ExtendedKeyUsage::new().client_auth().build().expect("eku")).expect("eku");
    }
    b.sign(&ca.key, MessageDigest::sha256()).expect("sign");
    Identity { cert: b.build(), key }
}
