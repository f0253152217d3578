//! Throwaway certificates for tests and benchmarks — never for production use.
//!
//! [`test_push_certificate`] makes a certificate "of the same shape" as an Apple MDM push
//! certificate (subject `UID=<topic>, CN=APSP:<uuid>, C=US`, RSA 2048, TLS client
//! authentication), issued by a fresh throwaway CA, so that [`lanyard::apple::ApnsClient`] can be
//! exercised against [`crate::apns::MockApns`] (which is told to trust that CA). The other
//! helpers make the mock's own CA and server certificate.

use std::net::IpAddr;

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName, SubjectKeyIdentifier,
};
use openssl::x509::{X509, X509Builder, X509Name, X509NameBuilder};

const DAY: i64 = 86_400;

/// A push certificate shaped like Apple's for `topic`, expiring `not_after_days` from now
/// (negative: already expired), with its private key, and the throwaway CA certificate and key
/// that issued it. For tests and benchmarks only.
///
/// The subject is `UID=<topic>, CN=APSP:<last dot-separated part of topic>, C=US`. Any topic is
/// accepted, so tests can also make non-MDM certificates.
///
/// # Panics
///
/// When OpenSSL fails to generate a key or sign (out of memory); use
/// [`try_test_push_certificate`] to get the error instead.
pub fn test_push_certificate(topic: &str, not_after_days: i64) -> (X509, PKey<Private>, X509, PKey<Private>) {
    try_test_push_certificate(topic, not_after_days).unwrap_or_else(|e| panic!("could not make a test push certificate: {e}"))
}

/// [`test_push_certificate`], returning OpenSSL's error instead of panicking.
pub fn try_test_push_certificate(topic: &str, not_after_days: i64) -> Result<(X509, PKey<Private>, X509, PKey<Private>), ErrorStack> {
    let ca_key = PKey::from_rsa(Rsa::generate(2048)?)?;
    let ca = self_signed_ca("Lanyard Test Push CA", &ca_key)?;
    let (cert, key) = issue_test_push_certificate(&ca, &ca_key, topic, not_after_days)?;
    Ok((cert, key, ca, ca_key))
}

/// A push certificate from an existing issuer, as Apple's CA issues a renewal: same issuer,
/// new key, the topic you choose.
pub fn issue_test_push_certificate(
    ca: &X509,
    ca_key: &PKey<Private>,
    topic: &str,
    not_after_days: i64,
) -> Result<(X509, PKey<Private>), ErrorStack> {
    let key = PKey::from_rsa(Rsa::generate(2048)?)?;
    let cert = push_certificate_for_key(ca, ca_key, &key, topic, not_after_days)?;
    Ok((cert, key))
}

/// A push certificate shaped like Apple's for someone else's public key (a CSR's), as Apple's
/// Push Certificates Portal issues one.
pub fn push_certificate_for_key<T: openssl::pkey::HasPublic>(
    ca: &X509,
    ca_key: &PKey<Private>,
    key: &openssl::pkey::PKeyRef<T>,
    topic: &str,
    not_after_days: i64,
) -> Result<X509, ErrorStack> {
    let uuid = topic.rsplit('.').next().unwrap_or(topic);
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_nid(Nid::USERID, topic)?;
    name.append_entry_by_nid(Nid::COMMONNAME, &format!("APSP:{uuid}"))?;
    name.append_entry_by_nid(Nid::COUNTRYNAME, "US")?;
    let name = name.build();

    // Apple's push certificates last a year; keep that length but never start in the future.
    let now = unix_now();
    let not_after = now + not_after_days * DAY;
    let not_before = (not_after - 365 * DAY).min(now - 3600);

    let mut b = leaf_builder(&name, key, ca, not_before, not_after)?;
    b.append_extension(KeyUsage::new().critical().digital_signature().key_encipherment().build()?)?;
    b.append_extension(ExtendedKeyUsage::new().client_auth().build()?)?;
    let ctx = b.x509v3_context(Some(ca), None);
    let aki = AuthorityKeyIdentifier::new().keyid(false).build(&ctx)?;
    b.append_extension(aki)?;
    b.sign(ca_key, MessageDigest::sha256())?;
    Ok(b.build())
}

/// A throwaway CA (EC P-256, valid from yesterday for ten years).
pub fn test_ca(common_name: &str) -> Result<(X509, PKey<Private>), ErrorStack> {
    let key = ec_key()?;
    let ca = self_signed_ca(common_name, &key)?;
    Ok((ca, key))
}

/// A TLS server certificate (EC P-256) for `ip` and `localhost`, issued by `ca`.
pub fn test_server_certificate(ca: &X509, ca_key: &PKey<Private>, ip: IpAddr) -> Result<(X509, PKey<Private>), ErrorStack> {
    let key = ec_key()?;
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_nid(Nid::COMMONNAME, &ip.to_string())?;
    let name = name.build();
    let now = unix_now();
    let mut b = leaf_builder(&name, &key, ca, now - DAY, now + 3650 * DAY)?;
    b.append_extension(KeyUsage::new().critical().digital_signature().key_agreement().build()?)?;
    b.append_extension(ExtendedKeyUsage::new().server_auth().build()?)?;
    let ctx = b.x509v3_context(Some(ca), None);
    let san = SubjectAlternativeName::new().ip(&ip.to_string()).dns("localhost").build(&ctx)?;
    b.append_extension(san)?;
    b.sign(ca_key, MessageDigest::sha256())?;
    Ok((b.build(), key))
}

fn ec_key() -> Result<PKey<Private>, ErrorStack> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    PKey::from_ec_key(EcKey::generate(&group)?)
}

fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn serial() -> Result<openssl::asn1::Asn1Integer, ErrorStack> {
    let mut bn = BigNum::new()?;
    bn.rand(127, MsbOption::MAYBE_ZERO, false)?;
    bn.to_asn1_integer()
}

pub(crate) fn self_signed_ca(common_name: &str, key: &PKey<Private>) -> Result<X509, ErrorStack> {
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_nid(Nid::COMMONNAME, common_name)?;
    name.append_entry_by_nid(Nid::ORGANIZATIONNAME, "Lanyard tests")?;
    name.append_entry_by_nid(Nid::COUNTRYNAME, "US")?;
    let name = name.build();
    let now = unix_now();
    let mut b = X509Builder::new()?;
    b.set_version(2)?;
    b.set_serial_number(&*serial()?)?;
    b.set_subject_name(&name)?;
    b.set_issuer_name(&name)?;
    b.set_pubkey(key)?;
    b.set_not_before(&*Asn1Time::from_unix(now - DAY)?)?;
    b.set_not_after(&*Asn1Time::from_unix(now + 3650 * DAY)?)?;
    b.append_extension(BasicConstraints::new().critical().ca().build()?)?;
    b.append_extension(KeyUsage::new().critical().key_cert_sign().crl_sign().build()?)?;
    let ski = SubjectKeyIdentifier::new().build(&b.x509v3_context(None, None))?;
    b.append_extension(ski)?;
    b.sign(key, MessageDigest::sha256())?;
    Ok(b.build())
}

/// Common part of an end-entity certificate issued by `ca` (not yet signed).
fn leaf_builder<T: openssl::pkey::HasPublic>(
    name: &X509Name,
    key: &openssl::pkey::PKeyRef<T>,
    ca: &X509,
    not_before: i64,
    not_after: i64,
) -> Result<X509Builder, ErrorStack> {
    let mut b = X509Builder::new()?;
    b.set_version(2)?;
    b.set_serial_number(&*serial()?)?;
    b.set_subject_name(name)?;
    b.set_issuer_name(ca.subject_name())?;
    b.set_pubkey(key)?;
    b.set_not_before(&*Asn1Time::from_unix(not_before)?)?;
    b.set_not_after(&*Asn1Time::from_unix(not_after)?)?;
    b.append_extension(BasicConstraints::new().critical().build()?)?;
    let ski = SubjectKeyIdentifier::new().build(&b.x509v3_context(Some(ca), None))?;
    b.append_extension(ski)?;
    Ok(b)
}

/// A file under the shared folder's `fixtures/`: `$LANYARD_SHARED_DIR`, else the first
/// `shared/` beside `CARGO_MANIFEST_DIR` or one of its ancestors.
pub fn shared_fixture(relative: &str) -> Vec<u8> {
    use std::path::{Path, PathBuf};
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(dir) = std::env::var_os("LANYARD_SHARED_DIR") {
        candidates.push(PathBuf::from(dir));
    }
    for dir in Path::new(env!("CARGO_MANIFEST_DIR")).ancestors() {
        candidates.push(dir.join("shared"));
        candidates.push(dir.join("../shared"));
    }
    for dir in candidates {
        let path = dir.join("fixtures").join(relative);
        if path.is_file() {
            return std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
    }
    panic!("fixture {relative} not found under any shared/ folder; set LANYARD_SHARED_DIR");
}

/// One push identity shared by the tests (RSA key generation is not free).
pub struct Fixture {
    pub push: lanyard::apple::push_certificate::PushCertificate,
    pub ca: X509,
}

pub fn fixture() -> &'static Fixture {
    use std::sync::OnceLock;
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let topic = format!("com.apple.mgmt.External.{}", uuid::Uuid::new_v4());
        let (cert, key, ca, _) = test_push_certificate(&topic, 365);
        let push = lanyard::apple::push_certificate::PushCertificate::from_x509(cert, key).expect("fixture imports");
        Fixture { push, ca }
    })
}
