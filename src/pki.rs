//! Lanyard's own certificate authority and the keys it keeps in the data directory.
//!
//! On first start we make the device CA (RSA-2048, ten years: SCEP envelopes are RSA key
//! transport, so the CA must be RSA), a TLS server certificate for the configured host name, a
//! profile-signing identity, a FileVault-escrow identity, the JWT key and the key that seals
//! secrets at rest. Later starts load them. Private keys are written 0600 into a 0700 directory,
//! atomically (temp file + rename).
//!
//! Which library does what:
//! * **rcgen** writes these certificates (the CA's, TLS, profile-signing, escrow): subject,
//!   validity, serial, extensions, and the DER of the whole thing. It is built without a crypto
//!   backend: [`OpensslSigner`] implements its `SigningKey` over an OpenSSL key, so the CA key in
//!   `ca.key` signs (an existing installation's CA is loaded, never remade).
//! * **OpenSSL** makes the keys (RSA-2048, P-256), reads and writes the PEM files, signs the
//!   certificates' TBS bytes, computes key identifiers (SHA-1 of the public key, as before), and
//!   checks the loaded pairs and the TLS certificate. It also does everything that is not making
//!   a certificate: the AES-GCM [`Sealer`], CMS (SCEP envelopes, profile signing, escrow
//!   decryption), TLS itself, and the device identities SCEP issues (`crate::services::enrollment::identity`,
//!   which says why).
//! * An operator's own TLS certificate in the certs directory ([`operator_tls`]) is only checked
//!   here (OpenSSL), never written.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use openssl::asn1::{Asn1Integer, Asn1Time};
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{Id, PKey, Private};
use openssl::rsa::Rsa;
use openssl::symm::{Cipher, decrypt_aead, encrypt_aead};
use openssl::x509::{X509, X509NameRef};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, DnValue, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod,
    KeyUsagePurpose, PublicKeyData, SanType, SerialNumber, SignatureAlgorithm, SigningKey,
};

pub const CA_FILE: &str = "ca.pem";
const CA_KEY: &str = "ca.key";
pub const TLS_CERT_FILE: &str = "tls.pem";
const TLS_KEY: &str = "tls.key";
const SIGNING_CERT: &str = "signing.pem";
const SIGNING_KEY: &str = "signing.key";
const ESCROW_CERT: &str = "escrow.pem";
const ESCROW_KEY: &str = "escrow.key";
const JWT_KEY: &str = "jwt.key";
const SEAL_KEY: &str = "seal.key";

/// Everything cryptographic that lives in the data directory.
pub struct Pki {
    pub ca_cert: X509,
    pub ca_key: PKey<Private>,
    pub ca_pem: Vec<u8>,
    pub tls_cert_path: PathBuf,
    pub tls_key_path: PathBuf,
    /// The TLS certificate served is the operator's, from the certs directory ([`operator_tls`]),
    /// not the one our CA made (which is then not sent as part of its chain).
    pub tls_from_certs_dir: bool,
    pub signing_cert: X509,
    pub signing_key: PKey<Private>,
    /// FileVault recovery keys are encrypted to this certificate by Macs (it is filled into the
    /// escrow payload of profiles as they are sent); only Lanyard holds its key.
    pub escrow_cert: X509,
    pub escrow_key: PKey<Private>,
    pub jwt_key: Vec<u8>,
    pub sealer: Sealer,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki").field("tls_cert_path", &self.tls_cert_path).finish_non_exhaustive()
    }
}

impl Pki {
    /// Load the data directory's keys and certificates, creating whatever is missing.
    /// Returns the names of the files it created, for the start-up log.
    pub fn load_or_create(data_dir: &Path, hostname: &str, organization: &str) -> Result<(Pki, Vec<String>)> {
        ensure_private_dir(data_dir)?;
        let mut created = Vec::new();

        let (ca_cert, ca_key) = match load_pair(data_dir, CA_FILE, CA_KEY)? {
            Some(pair) => pair,
            None => {
                let key = PKey::from_rsa(Rsa::generate(2048)?)?;
                let cert = make_ca(&key, &format!("{organization} Lanyard Device CA"))?;
                write_pair(data_dir, CA_FILE, CA_KEY, &cert, &key)?;
                created.push(CA_FILE.to_owned());
                (cert, key)
            }
        };

        let tls_ok = match load_pair(data_dir, TLS_CERT_FILE, TLS_KEY)? {
            Some((cert, _)) => tls_cert_fits(&cert, hostname, &ca_cert)?,
            None => false,
        };
        if !tls_ok {
            let key = PKey::from_ec_key(EcKey::generate(&*EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?)?)?;
            let cert = make_leaf(&key, hostname, &ca_cert, &ca_key, Leaf::TlsServer { hostname })?;
            write_pair(data_dir, TLS_CERT_FILE, TLS_KEY, &cert, &key)?;
            created.push(TLS_CERT_FILE.to_owned());
        }

        let (signing_cert, signing_key) = match load_pair(data_dir, SIGNING_CERT, SIGNING_KEY)? {
            Some(pair) => pair,
            None => {
                let key = PKey::from_rsa(Rsa::generate(2048)?)?;
                let cn = format!("{organization} Lanyard Profile Signing");
                let cert = make_leaf(&key, &cn, &ca_cert, &ca_key, Leaf::ProfileSigning)?;
                write_pair(data_dir, SIGNING_CERT, SIGNING_KEY, &cert, &key)?;
                created.push(SIGNING_CERT.to_owned());
                (cert, key)
            }
        };

        let (escrow_cert, escrow_key) = match load_pair(data_dir, ESCROW_CERT, ESCROW_KEY)? {
            Some(pair) => pair,
            None => {
                // RSA: Macs encrypt the recovery key with CMS key transport.
                let key = PKey::from_rsa(Rsa::generate(2048)?)?;
                let cn = format!("{organization} Lanyard FileVault Escrow");
                let cert = make_leaf(&key, &cn, &ca_cert, &ca_key, Leaf::Escrow)?;
                write_pair(data_dir, ESCROW_CERT, ESCROW_KEY, &cert, &key)?;
                created.push(ESCROW_CERT.to_owned());
                (cert, key)
            }
        };

        let jwt_key = load_or_make_secret(data_dir, JWT_KEY, &mut created)?;
        let seal_key = load_or_make_secret(data_dir, SEAL_KEY, &mut created)?;
        let ca_pem = ca_cert.to_pem()?;
        Ok((
            Pki {
                ca_cert,
                ca_key,
                ca_pem,
                tls_cert_path: data_dir.join(TLS_CERT_FILE),
                tls_key_path: data_dir.join(TLS_KEY),
                tls_from_certs_dir: false,
                signing_cert,
                signing_key,
                escrow_cert,
                escrow_key,
                jwt_key,
                sealer: Sealer::new(&seal_key)?,
            },
            created,
        ))
    }
}

/// An operator's TLS certificate chain and key in the certs directory, to serve instead of the one
/// our CA made.
#[derive(Debug)]
pub struct OperatorTls {
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    /// The leaf certificate (the first in `tls.pem`).
    pub cert: X509,
}

/// `certs_dir/tls.pem` and `tls.key` if both are there: `None` if neither is, an error naming the
/// problem if only one is, if they do not parse, if the key is not the certificate's, or if the
/// certificate has expired.
pub fn operator_tls(certs_dir: &Path) -> Result<Option<OperatorTls>, crate::config::ConfigError> {
    let (cert_path, key_path) = (certs_dir.join(TLS_CERT_FILE), certs_dir.join(TLS_KEY));
    let bad = |msg: String| crate::config::ConfigError(format!("certs_dir: {msg}"));
    match (cert_path.exists(), key_path.exists()) {
        (false, false) => return Ok(None),
        (true, false) => {
            return Err(bad(format!("{} is there but {} is not: give both, or neither", cert_path.display(), key_path.display())));
        }
        (false, true) => {
            return Err(bad(format!("{} is there but {} is not: give both, or neither", key_path.display(), cert_path.display())));
        }
        (true, true) => {}
    }
    let read = |p: &Path| fs::read(p).map_err(|e| bad(format!("cannot read {}: {e}", p.display())));
    let chain = X509::stack_from_pem(&read(&cert_path)?).unwrap_or_default();
    let cert = chain.into_iter().next().ok_or_else(|| bad(format!("{} holds no PEM certificate", cert_path.display())))?;
    let key = PKey::private_key_from_pem(&read(&key_path)?)
        .map_err(|_| bad(format!("{} is not a PEM private key (without a passphrase)", key_path.display())))?;
    if !cert.public_key().is_ok_and(|public| public.public_eq(&key)) {
        return Err(bad(format!("{} is not the key of the certificate in {}", key_path.display(), cert_path.display())));
    }
    let now = Asn1Time::days_from_now(0).map_err(|e| bad(e.to_string()))?;
    if cert.not_after() < now {
        return Err(bad(format!("the certificate in {} expired on {}", cert_path.display(), cert.not_after())));
    }
    if cert.not_before() > now {
        return Err(bad(format!("the certificate in {} is not valid until {}", cert_path.display(), cert.not_before())));
    }
    Ok(Some(OperatorTls { cert_path, key_path, cert }))
}

/// Seals small secrets at rest (unlock tokens, bootstrap tokens, escrowed keys) with AES-256-GCM.
#[derive(Clone)]
pub struct Sealer {
    key: [u8; 32],
}

const SEAL_VERSION: u8 = 1;

impl Sealer {
    pub fn new(key: &[u8]) -> Result<Sealer> {
        let key: [u8; 32] = key.try_into().map_err(|_| anyhow!("seal key must be 32 bytes"))?;
        Ok(Sealer { key })
    }

    /// `version || nonce(12) || tag(16) || ciphertext`.
    pub fn seal(&self, plaintext: &[u8]) -> Result<Vec<u8>> {
        let mut nonce = [0u8; 12];
        openssl::rand::rand_bytes(&mut nonce)?;
        let mut tag = [0u8; 16];
        let ct = encrypt_aead(Cipher::aes_256_gcm(), &self.key, Some(&nonce), &[SEAL_VERSION], plaintext, &mut tag)?;
        let mut out = Vec::with_capacity(1 + 12 + 16 + ct.len());
        out.push(SEAL_VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&tag);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>> {
        if sealed.len() < 29 || sealed[0] != SEAL_VERSION {
            return Err(anyhow!("sealed value is malformed"));
        }
        let (nonce, rest) = sealed[1..].split_at(12);
        let (tag, ct) = rest.split_at(16);
        decrypt_aead(Cipher::aes_256_gcm(), &self.key, Some(nonce), &[SEAL_VERSION], ct, tag)
            .map_err(|_| anyhow!("sealed value does not open with this data directory's seal.key"))
    }
}

/// Create `dir` if needed and make sure only its owner can enter it.
pub fn ensure_private_dir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).with_context(|| format!("cannot set permissions on {}", dir.display()))?;
    Ok(())
}

/// Write a file atomically with the given mode (0600 for anything secret).
pub fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::set_permissions(&tmp, fs::Permissions::from_mode(mode))?;
    fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

fn load_pair(dir: &Path, cert_name: &str, key_name: &str) -> Result<Option<(X509, PKey<Private>)>> {
    let (cp, kp) = (dir.join(cert_name), dir.join(key_name));
    if !cp.exists() || !kp.exists() {
        return Ok(None);
    }
    let cert = X509::from_pem(&fs::read(&cp)?).with_context(|| format!("{} is not a PEM certificate", cp.display()))?;
    let key = PKey::private_key_from_pem(&fs::read(&kp)?).with_context(|| format!("{} is not a PEM private key", kp.display()))?;
    if !cert.public_key()?.public_eq(&key) {
        return Err(anyhow!("{} does not match {}", cp.display(), kp.display()));
    }
    Ok(Some((cert, key)))
}

fn write_pair(dir: &Path, cert_name: &str, key_name: &str, cert: &X509, key: &PKey<Private>) -> Result<()> {
    write_file(&dir.join(key_name), &key.private_key_to_pem_pkcs8()?, 0o600)?;
    write_file(&dir.join(cert_name), &cert.to_pem()?, 0o644)
}

fn load_or_make_secret(dir: &Path, name: &str, created: &mut Vec<String>) -> Result<Vec<u8>> {
    let path = dir.join(name);
    if path.exists() {
        let hex_text = fs::read_to_string(&path)?;
        return hex::decode(hex_text.trim()).with_context(|| format!("{} is not hex", path.display()));
    }
    let mut key = vec![0u8; 32];
    openssl::rand::rand_bytes(&mut key)?;
    write_file(&path, hex::encode(&key).as_bytes(), 0o600)?;
    created.push(name.to_owned());
    Ok(key)
}

/// A random positive serial of 127 bits.
pub fn random_serial() -> Result<Asn1Integer> {
    let mut bn = BigNum::new()?;
    bn.rand(127, MsbOption::MAYBE_ZERO, false)?;
    bn.add_word(1)?;
    Ok(bn.to_asn1_integer()?)
}

/// An OpenSSL private key as rcgen's signer (and the public key it certifies): SHA-256 with
/// RSA (PKCS#1 v1.5) or ECDSA on P-256, the two kinds of key Lanyard makes.
pub struct OpensslSigner<'a> {
    key: &'a PKey<Private>,
    /// The subjectPublicKey BIT STRING's contents (the key without its algorithm).
    public_key: Vec<u8>,
    algorithm: &'static SignatureAlgorithm,
}

impl<'a> OpensslSigner<'a> {
    pub fn new(key: &'a PKey<Private>) -> Result<Self> {
        let algorithm = match key.id() {
            Id::RSA => &rcgen::PKCS_RSA_SHA256,
            Id::EC if key.ec_key()?.group().curve_name() == Some(Nid::X9_62_PRIME256V1) => &rcgen::PKCS_ECDSA_P256_SHA256,
            other => return Err(anyhow!("cannot sign certificates with a {other:?} key")),
        };
        let spki = key.public_key_to_der()?;
        let public_key = spki_public_key(&spki).ok_or_else(|| anyhow!("OpenSSL wrote an unreadable SubjectPublicKeyInfo"))?.to_vec();
        Ok(OpensslSigner { key, public_key, algorithm })
    }

    /// RFC 5280's key identifier (method 1): SHA-1 of the subjectPublicKey bits, as OpenSSL's
    /// `subjectKeyIdentifier = hash` computes it.
    pub fn key_id(&self) -> Vec<u8> {
        openssl::sha::sha1(&self.public_key).to_vec()
    }
}

impl PublicKeyData for OpensslSigner<'_> {
    fn der_bytes(&self) -> &[u8] {
        &self.public_key
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        self.algorithm
    }
}

impl SigningKey for OpensslSigner<'_> {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        let sign = || -> Result<Vec<u8>, openssl::error::ErrorStack> {
            let mut signer = openssl::sign::Signer::new(MessageDigest::sha256(), self.key)?;
            signer.update(msg)?;
            signer.sign_to_vec()
        };
        sign().map_err(|_| rcgen::Error::RemoteKeyError)
    }
}

/// The subjectPublicKey bits of a DER SubjectPublicKeyInfo (without the unused-bits octet).
fn spki_public_key(spki: &[u8]) -> Option<&[u8]> {
    use crate::protocol::der::{Reader, SEQUENCE};
    let outer = Reader::new(spki).expect(SEQUENCE)?;
    let mut fields = outer.children();
    fields.expect(SEQUENCE)?;
    let bits = fields.expect(0x03)?;
    match bits.content.split_first() {
        Some((0, key)) if fields.is_empty() => Some(key),
        _ => None,
    }
}

/// An OpenSSL name as rcgen's, entry by entry with the same string types, so that the
/// certificates the CA signs name it exactly as its own certificate does.
fn rcgen_name(name: &X509NameRef) -> Result<DistinguishedName> {
    let mut dn = DistinguishedName::new();
    let mut seen = Vec::new();
    for entry in name.entries() {
        let oid = dotted_oid(entry.object());
        let arcs: Vec<u64> = oid.split('.').map(str::parse).collect::<Result<_, _>>().map_err(|_| anyhow!("name attribute {oid}"))?;
        let ty = DnType::from_oid(&arcs);
        if seen.contains(&ty) {
            return Err(anyhow!("the CA's name repeats {oid}, which Lanyard cannot copy"));
        }
        let data = entry.data();
        let text = || std::str::from_utf8(data.as_slice()).map_err(|_| anyhow!("name attribute {oid} is not text"));
        // SAFETY: `data` is a live ASN1_STRING borrowed from `name`.
        let string_type = unsafe { openssl_sys::ASN1_STRING_type(foreign_types::ForeignTypeRef::as_ptr(data)) };
        let value = match string_type {
            openssl_sys::V_ASN1_UTF8STRING => DnValue::Utf8String(text()?.to_owned()),
            openssl_sys::V_ASN1_PRINTABLESTRING => DnValue::PrintableString(text()?.try_into()?),
            openssl_sys::V_ASN1_IA5STRING => DnValue::Ia5String(text()?.try_into()?),
            openssl_sys::V_ASN1_T61STRING => DnValue::TeletexString(text()?.try_into()?),
            openssl_sys::V_ASN1_BMPSTRING => DnValue::BmpString(rcgen::string::BmpString::from_utf16be(data.as_slice().to_vec())?),
            other => return Err(anyhow!("name attribute {oid} has ASN.1 string type {other}")),
        };
        dn.push(ty.clone(), value);
        seen.push(ty);
    }
    Ok(dn)
}

/// An OID in dotted form (`2.5.4.3`, never the short name OpenSSL's Display prefers).
fn dotted_oid(obj: &openssl::asn1::Asn1ObjectRef) -> String {
    let mut buf = [0u8; 128];
    // SAFETY: OBJ_obj2txt writes at most buf.len() bytes, NUL-terminated, from a live object.
    let n = unsafe {
        openssl_sys::OBJ_obj2txt(buf.as_mut_ptr().cast(), buf.len() as libc::c_int, foreign_types::ForeignTypeRef::as_ptr(obj), 1)
    };
    let n = usize::try_from(n).unwrap_or(0).min(buf.len() - 1);
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// 127 random bits (OpenSSL's generator), as rcgen's serial.
fn rcgen_serial() -> Result<SerialNumber> {
    Ok(SerialNumber::from_slice(&random_serial()?.to_bn()?.to_vec()))
}

/// Valid from now for `days` days.
fn validity(params: &mut CertificateParams, days: i64) -> Result<()> {
    let now = time::OffsetDateTime::from_unix_timestamp(chrono::Utc::now().timestamp()).map_err(|e| anyhow!("the clock: {e}"))?;
    params.not_before = now;
    params.not_after = now + time::Duration::days(days);
    Ok(())
}

fn common_name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

fn make_ca(key: &PKey<Private>, cn: &str) -> Result<X509> {
    let signer = OpensslSigner::new(key)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = common_name(cn);
    params.serial_number = Some(rcgen_serial()?);
    validity(&mut params, 3650)?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    params.key_identifier_method = KeyIdMethod::PreSpecified(signer.key_id());
    let cert = params.self_signed(&signer)?;
    Ok(X509::from_der(cert.der())?)
}

enum Leaf<'a> {
    TlsServer { hostname: &'a str },
    ProfileSigning,
    Escrow,
}

fn make_leaf(key: &PKey<Private>, cn: &str, ca: &X509, ca_key: &PKey<Private>, kind: Leaf<'_>) -> Result<X509> {
    let subject = OpensslSigner::new(key)?;
    let ca_signer = OpensslSigner::new(ca_key)?;
    // The authority key identifier is the CA certificate's own subjectKeyIdentifier.
    let ca_key_id = ca.subject_key_id().map(|id| id.as_slice().to_vec()).unwrap_or_else(|| ca_signer.key_id());
    let mut ca_params = CertificateParams::default();
    ca_params.distinguished_name = rcgen_name(ca.subject_name())?;
    ca_params.key_identifier_method = KeyIdMethod::PreSpecified(ca_key_id);
    let issuer = Issuer::new(ca_params, ca_signer);

    let mut params = CertificateParams::default();
    params.distinguished_name = common_name(cn);
    params.serial_number = Some(rcgen_serial()?);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_identifier_method = KeyIdMethod::PreSpecified(subject.key_id());
    params.use_authority_key_identifier_extension = true;
    match kind {
        Leaf::TlsServer { hostname } => {
            // Apple clients refuse TLS server certificates valid for more than 825 days.
            validity(&mut params, 825)?;
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyAgreement];
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            for h in sans(hostname) {
                params.subject_alt_names.push(match h.parse::<std::net::IpAddr>() {
                    Ok(ip) => SanType::IpAddress(ip),
                    Err(_) => SanType::DnsName(h.try_into()?),
                });
            }
        }
        Leaf::ProfileSigning => {
            validity(&mut params, 3650)?;
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::CodeSigning, ExtendedKeyUsagePurpose::EmailProtection];
        }
        Leaf::Escrow => {
            validity(&mut params, 3650)?;
            params.key_usages = vec![KeyUsagePurpose::KeyEncipherment, KeyUsagePurpose::DataEncipherment];
        }
    }
    let cert = params.signed_by(&subject, &issuer)?;
    Ok(X509::from_der(cert.der())?)
}

/// The names the TLS certificate must cover.
fn sans(hostname: &str) -> Vec<String> {
    let mut v = vec![hostname.to_owned()];
    for extra in ["localhost", "127.0.0.1", "::1"] {
        if !v.iter().any(|h| h == extra) {
            v.push(extra.to_owned());
        }
    }
    v
}

/// A TLS certificate is reused if our CA signed it, it covers the host name and has 30+ days left.
fn tls_cert_fits(cert: &X509, hostname: &str, ca: &X509) -> Result<bool> {
    if !cert.verify(&*ca.public_key()?)? {
        return Ok(false);
    }
    if cert.not_after() < Asn1Time::days_from_now(30)? {
        return Ok(false);
    }
    let names: Vec<String> =
        cert.subject_alt_names().map(|sans| sans.iter().filter_map(|n| n.dnsname().map(str::to_owned)).collect()).unwrap_or_default();
    Ok(names.iter().any(|n| n.eq_ignore_ascii_case(hostname)) || hostname.parse::<std::net::IpAddr>().is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn creates_once_with_private_modes_and_reuses() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let (pki, created) = Pki::load_or_create(&data, "mdm.school.test", "Test School").unwrap();
        assert!(created.contains(&CA_FILE.to_string()));
        assert_eq!(fs::metadata(&data).unwrap().mode() & 0o777, 0o700);
        for key in [CA_KEY, TLS_KEY, SIGNING_KEY, ESCROW_KEY, JWT_KEY, SEAL_KEY] {
            assert_eq!(fs::metadata(data.join(key)).unwrap().mode() & 0o777, 0o600, "{key}");
        }
        let tls = X509::from_pem(&fs::read(data.join(TLS_CERT_FILE)).unwrap()).unwrap();
        assert!(tls.verify(&pki.ca_cert.public_key().unwrap()).unwrap());
        let dns: Vec<_> = tls.subject_alt_names().unwrap().iter().filter_map(|n| n.dnsname().map(str::to_owned)).collect();
        assert!(dns.contains(&"mdm.school.test".to_string()) && dns.contains(&"localhost".to_string()));
        // The CA's key identifier is SHA-1 of its public key (as OpenSSL's `hash`), and every
        // certificate it made names it as the authority.
        let ca_ski = pki.ca_cert.subject_key_id().unwrap().as_slice().to_vec();
        assert_eq!(ca_ski, OpensslSigner::new(&pki.ca_key).unwrap().key_id());
        for cert in [&tls, &pki.signing_cert, &pki.escrow_cert] {
            assert!(cert.verify(&pki.ca_cert.public_key().unwrap()).unwrap());
            assert_eq!(cert.authority_key_id().unwrap().as_slice(), ca_ski.as_slice());
            assert_eq!(cert.issuer_name().to_der().unwrap(), pki.ca_cert.subject_name().to_der().unwrap());
            assert!(cert.serial_number().to_bn().unwrap().num_bits() <= 127);
        }
        assert!(pki.escrow_cert.public_key().unwrap().public_eq(&pki.escrow_key));
        let (again, created2) = Pki::load_or_create(&data, "mdm.school.test", "Test School").unwrap();
        assert!(created2.is_empty(), "second start created {created2:?}");
        assert_eq!(again.ca_pem, pki.ca_pem);
        // A new host name gets a new TLS certificate from the same CA.
        let (_, created3) = Pki::load_or_create(&data, "other.school.test", "Test School").unwrap();
        assert_eq!(created3, vec![TLS_CERT_FILE.to_string()]);
    }

    #[test]
    fn sealer_round_trips_and_detects_tampering() {
        let s = Sealer::new(&[7u8; 32]).unwrap();
        let sealed = s.seal(b"unlock token").unwrap();
        assert_eq!(s.open(&sealed).unwrap(), b"unlock token");
        let mut bad = sealed.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(s.open(&bad).is_err());
        assert!(Sealer::new(&[8u8; 32]).unwrap().open(&sealed).is_err());
    }
}

/// An ASN.1 time as a UTC timestamp.
pub fn asn1_to_utc(t: &openssl::asn1::Asn1TimeRef) -> Result<chrono::DateTime<chrono::Utc>> {
    let epoch = Asn1Time::from_unix(0)?;
    let diff = epoch.diff(t)?;
    let secs = i64::from(diff.days) * 86_400 + i64::from(diff.secs);
    chrono::DateTime::from_timestamp(secs, 0).ok_or_else(|| anyhow!("certificate time out of range"))
}
