//! Test helpers: finding `../shared` and `profiles/`, running Apple's schema validator, and a
//! throwaway signing identity.
//!
//! Paths are found from `CARGO_MANIFEST_DIR` so the tests run the same from the crate and from
//! a scratch crate that includes this module by path; `LANYARD_SHARED_DIR` and
//! `LANYARD_PROFILES_DIR` override them.

use std::path::{Path, PathBuf};
use std::process::Command;

use openssl::asn1::Asn1Time;
use openssl::bn::BigNum;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::{X509, X509NameBuilder};

const VALIDATOR: &str = "tools/validate_plist.py";

/// The directory holding `shared/`, found by walking up from the manifest directory.
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .find(|dir| dir.join("shared").join(VALIDATOR).is_file())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| panic!("no shared/{VALIDATOR} above {}", env!("CARGO_MANIFEST_DIR")))
}

/// `../shared`: Apple's schema and the validator.
pub fn shared_dir() -> PathBuf {
    match std::env::var_os("LANYARD_SHARED_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => workspace_root().join("shared"),
    }
}

/// The crate's `profiles/` directory: beside `src/` when run from the crate itself, else
/// `main/profiles` under the directory holding `shared/`.
pub fn profiles_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("LANYARD_PROFILES_DIR") {
        return PathBuf::from(dir);
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    if manifest.join("src/profiles/mod.rs").is_file() {
        return manifest.join("profiles");
    }
    workspace_root().join("main").join("profiles")
}

/// Runs `validate_plist.py [--os OS] profile` on `bytes`: `Ok(output)` when it passes,
/// `Err(output)` when it does not.
pub fn validate(bytes: &[u8], os: Option<&str>) -> Result<String, String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("profile.mobileconfig");
    std::fs::write(&file, bytes).expect("write profile");
    let mut cmd = Command::new("python3");
    cmd.arg(shared_dir().join(VALIDATOR));
    if let Some(os) = os {
        cmd.args(["--os", os]);
    }
    let out = cmd.arg("profile").arg(&file).output().expect("run python3");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if out.status.success() { Ok(text) } else { Err(text) }
}

/// A self-signed RSA certificate and its key, with no extended key usage (so `openssl smime`
/// accepts it as a signer).
pub fn self_signed(common_name: &str) -> (X509, PKey<Private>) {
    let key = PKey::from_rsa(Rsa::generate(2048).expect("rsa")).expect("pkey");
    let mut name = X509NameBuilder::new().expect("name");
    name.append_entry_by_text("CN", common_name).expect("cn");
    let name = name.build();
    let mut cert = X509::builder().expect("builder");
    cert.set_version(2).expect("version");
    let serial = BigNum::from_u32(1).and_then(|n| n.to_asn1_integer()).expect("serial");
    cert.set_serial_number(&serial).expect("serial");
    cert.set_subject_name(&name).expect("subject");
    cert.set_issuer_name(&name).expect("issuer");
    cert.set_pubkey(&key).expect("pubkey");
    cert.set_not_before(&Asn1Time::days_from_now(0).expect("time")).expect("not before");
    cert.set_not_after(&Asn1Time::days_from_now(365).expect("time")).expect("not after");
    cert.sign(&key, MessageDigest::sha256()).expect("sign");
    (cert.build(), key)
}
