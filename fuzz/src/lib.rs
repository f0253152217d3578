//! What the fuzz targets share: the fixed keys and messages they check against (made once with
//! the `openssl` command, see `fixtures/README`), and the checks that hold for every input.
//!
//! Every target's rule is the same as the property tests' (`tests/parsers_proptest.rs`): any
//! input is refused or accepted without a panic, a stack overflow or a large allocation, and
//! whatever is accepted means what the input says (what the plist crate reads from the same
//! bytes, what the signer signed).

use std::io::Cursor;
use std::sync::OnceLock;

use openssl::pkey::{PKey, Private};
use openssl::x509::X509;
use plist::{Dictionary, Value};

/// The CA the targets trust (test-only key, committed on purpose).
pub const CA_PEM: &[u8] = include_bytes!("../fixtures/ca.pem");
pub const CA_KEY_PEM: &[u8] = include_bytes!("../fixtures/ca-test-key.pem");
/// A device identity issued by that CA, and its key.
pub const DEVICE_PEM: &[u8] = include_bytes!("../fixtures/device.pem");
pub const DEVICE_KEY_PEM: &[u8] = include_bytes!("../fixtures/device-test-key.pem");
/// A command report, and the device's detached CMS signature over it (its `Mdm-Signature`).
pub const SIGNED_BODY: &[u8] = include_bytes!("../fixtures/connect-body.plist");
pub const SIGNATURE_DER: &[u8] = include_bytes!("../fixtures/connect-body.sig.der");

pub struct Fixtures {
    pub ca: X509,
    pub ca_key: PKey<Private>,
    pub device: X509,
    pub device_key: PKey<Private>,
}

pub fn fixtures() -> &'static Fixtures {
    static F: OnceLock<Fixtures> = OnceLock::new();
    F.get_or_init(|| Fixtures {
        ca: X509::from_pem(CA_PEM).expect("fixture CA"),
        ca_key: PKey::private_key_from_pem(CA_KEY_PEM).expect("fixture CA key"),
        device: X509::from_pem(DEVICE_PEM).expect("fixture device"),
        device_key: PKey::private_key_from_pem(DEVICE_KEY_PEM).expect("fixture device key"),
    })
}

/// What the plist crate itself reads from `body` (the same format choice as Lanyard's), when
/// its root is a dictionary.
pub fn plist_crate_reads(body: &[u8]) -> Option<Dictionary> {
    let value =
        if body.starts_with(b"bplist") { Value::from_reader(Cursor::new(body)).ok()? } else { Value::from_reader_xml(body).ok()? };
    value.into_dictionary()
}

/// Compared through Debug, where NaN equals NaN.
pub fn same(a: &Dictionary, b: &Dictionary) -> bool {
    format!("{a:?}") == format!("{b:?}")
}

/// Every plist parser a device reaches, with the agreement check: a command report Lanyard
/// accepts is the dictionary the plist crate reads.
pub fn check_plist(body: &[u8]) {
    let _ = lanyard::protocol::checkin::parse(body);
    if let Ok(report) = lanyard::protocol::report::parse(body) {
        let theirs = plist_crate_reads(body);
        assert!(theirs.as_ref().is_some_and(|t| same(t, &report.raw)), "Lanyard read {:?}, the plist crate {theirs:?}", report.raw);
        let _ = report.to_json();
        let _ = report.device_information();
        let _ = report.security_info();
        let _ = report.error_summary();
    }
    let _ = lanyard::services::profiles::inspect(body);
}
