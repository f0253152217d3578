//! Device signatures checked against certificates already verified once.
//!
//! Every device request carries its identity certificate inside the `Mdm-Signature`, and
//! OpenSSL 3.0 spends most of a full check decoding that certificate (its public key above all:
//! about 100 µs of the 215 µs, see BENCHMARKS.md). A device sends the same certificate for a
//! year, so [`SignerCache`] remembers each certificate that passed the full check
//! ([`verify_detached_der`]: the signature over the body, and the chain to our CA) by the SHA-256
//! of its DER, with its decoded public key and validity period.
//!
//! A request signed with a remembered certificate is then checked without decoding it: the CMS
//! structure is split with [`super::der`], the certificate the signer info names (issuer and
//! serial number) is found among those embedded, looked up by hash, its validity period checked
//! against the clock, and the signature checked with the remembered key over the signed
//! attributes, whose message digest must be the body's. Anything this path does not recognise,
//! and every failure, goes to the full check, which gives the answer and the error. So this
//! path can only accept a signature made over this body with the key of a certificate that the
//! full check accepted.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use openssl::asn1::{Asn1Time, Asn1TimeRef};
use openssl::ec::EcKey;
use openssl::ecdsa::EcdsaSig;
use openssl::pkey::{Id, Public};
use openssl::rsa::{Padding, Rsa};
use openssl::x509::X509;

use super::cms::{SignatureError, chains_to, decode_header, verify_detached_der};
use crate::protocol::der::{self, OCTET_STRING, OID, Reader, SEQUENCE, SET, Tlv, context};

/// How many certificates are remembered: more than the devices of any one school. A full cache
/// forgets an arbitrary entry; that device's next request takes the full check again.
pub const DEFAULT_CAPACITY: usize = 20_000;

/// Who signed a request, and when they say they did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signer {
    /// SHA-256 of the signer certificate's DER.
    pub sha256: [u8; 32],
    /// The CMS signingTime attribute (Unix seconds), when the signature carries one.
    pub signed_at: Option<i64>,
}

/// A certificate that passed the full check.
struct Known {
    key: KnownKey,
    not_before: i64,
    not_after: i64,
}

/// The certificate's public key, held for OpenSSL's key-specific calls (`RSA_public_decrypt`,
/// `ECDSA_do_verify`): OpenSSL 3.0's generic EVP verification looks its algorithms up by name
/// on every call, under locks, which cost more than the arithmetic once both cores are busy.
enum KnownKey {
    Rsa(Rsa<Public>),
    Ec(EcKey<Public>),
    /// Another kind of key: always the full check.
    Other,
}

/// The certificates devices have authenticated with, and how often each path was taken.
pub struct SignerCache {
    known: Mutex<HashMap<[u8; 32], Arc<Known>>>,
    capacity: usize,
    /// Requests checked with a remembered certificate.
    pub hits: AtomicU64,
    /// Requests that took the full check.
    pub misses: AtomicU64,
}

impl Default for SignerCache {
    fn default() -> Self {
        SignerCache::new(DEFAULT_CAPACITY)
    }
}

impl SignerCache {
    pub fn new(capacity: usize) -> Self {
        SignerCache { known: Mutex::new(HashMap::new()), capacity, hits: AtomicU64::new(0), misses: AtomicU64::new(0) }
    }

    /// Checks an `Mdm-Signature` header over `body`: the signature, and that the signer chains
    /// to `ca`. Returns the SHA-256 of the signer certificate's DER.
    ///
    /// Only SHA-1 and SHA-2 digests are accepted (MD5 is refused: SHA-1 stays because older
    /// devices sign with it), and only the shape devices send: a detached SignedData with one
    /// signer whose certificate is embedded.
    pub fn verify(&self, body: &[u8], header_b64: &str, ca: &X509) -> Result<Signer, SignatureError> {
        let der = decode_header(header_b64)?;
        let parts = SignedParts::split(&der)
            .ok_or_else(|| SignatureError::NotCms("not a detached SignedData with one signer and its certificate".into()))?;
        let md = digest_algorithm(parts.digest_algorithm)
            .ok_or_else(|| SignatureError::BadSignature("the digest algorithm is not SHA-1 or SHA-2 (MD5 is refused)".into()))?;
        let signed_at = parts.signed_attributes.and_then(signing_time);
        if let Some(sha256) = self.verify_known(body, &parts, md, unix_now()) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(Signer { sha256, signed_at });
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let cert = verify_detached_der(body, &der, ca)?;
        Ok(Signer { sha256: self.remember(&cert)?, signed_at })
    }

    /// Checks a TLS client certificate (DER) chains to `ca`. Returns its SHA-256, or None if
    /// it is unreadable or not from our CA.
    pub fn verify_client_cert(&self, der: &[u8], ca: &X509) -> Option<[u8; 32]> {
        let sha256 = openssl::sha::sha256(der);
        if self.lookup(&sha256, unix_now()).is_some() {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Some(sha256);
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let cert = X509::from_der(der).ok()?;
        if !chains_to(&cert, ca) {
            return None;
        }
        self.remember(&cert).ok()
    }

    fn remember(&self, cert: &X509) -> Result<[u8; 32], SignatureError> {
        let sha256 = openssl::sha::sha256(&cert.to_der()?);
        let key = cert.public_key()?;
        let key = match key.id() {
            Id::RSA => KnownKey::Rsa(key.rsa()?),
            Id::EC => KnownKey::Ec(key.ec_key()?),
            _ => KnownKey::Other,
        };
        let known = Known { key, not_before: unix(cert.not_before())?, not_after: unix(cert.not_after())? };
        let mut map = self.known.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= self.capacity
            && let Some(victim) = map.keys().next().copied()
        {
            map.remove(&victim);
        }
        map.insert(sha256, Arc::new(known));
        Ok(sha256)
    }

    fn lookup(&self, sha256: &[u8; 32], now: i64) -> Option<Arc<Known>> {
        let known = self.known.lock().unwrap_or_else(|p| p.into_inner()).get(sha256).cloned()?;
        (known.not_before <= now && now <= known.not_after).then_some(known)
    }

    /// The fast path: Some(hash of the signer certificate) only if the signature verifies with
    /// a remembered certificate that is valid at `now`.
    fn verify_known(&self, body: &[u8], parts: &SignedParts, md: Digest, now: i64) -> Option<[u8; 32]> {
        // Only the plain shape OpenSSL accepts too: every listed digest known, the signer's
        // among them, and algorithm parameters absent or NULL. Anything else takes the full
        // check, which gives the verdict (found by tests/parsers_proptest.rs: a mangled
        // digestAlgorithms set or NULL passed here with a warm cache and failed the full check).
        if !plain_algorithms(parts) {
            return None;
        }
        let sha256 = openssl::sha::sha256(parts.signer_cert);
        let known = self.lookup(&sha256, now)?;
        let digest = match parts.signed_attributes {
            Some(attrs) => {
                if md.digest(body).as_slice() != message_digest(attrs)? {
                    return None;
                }
                // The signature covers the attributes encoded as a SET (RFC 5652 §5.4): the
                // same octets with the universal SET tag in place of [0].
                let mut signed = attrs.raw.to_vec();
                signed[0] = SET;
                md.digest(&signed)
            }
            None => md.digest(body),
        };
        let ok = match &known.key {
            KnownKey::Rsa(rsa) if signature_is(parts.signature_algorithm, SignatureKind::Rsa) => {
                // PKCS #1 v1.5 (RFC 8017 §8.2.2): the recovered block must be exactly the
                // DigestInfo we expect, byte for byte.
                let mut recovered = vec![0; rsa.size() as usize];
                let expected = [md.digest_info_prefix(), digest.as_slice()].concat();
                rsa.public_decrypt(parts.signature, &mut recovered, Padding::PKCS1).is_ok_and(|n| recovered[..n] == expected[..])
            }
            KnownKey::Ec(ec) if signature_is(parts.signature_algorithm, SignatureKind::Ecdsa) => {
                EcdsaSig::from_der(parts.signature).and_then(|sig| sig.verify(&digest, ec)).unwrap_or(false)
            }
            _ => return None,
        };
        if !ok {
            // A failed check leaves errors on OpenSSL's per-thread queue; the full check that
            // follows starts clean.
            let _ = openssl::error::ErrorStack::get();
        }
        ok.then_some(sha256)
    }
}

/// The pieces of a detached CMS SignedData with one signer that the fast path needs.
struct SignedParts<'a> {
    signer_cert: &'a [u8],
    /// SignedData's digestAlgorithms: OpenSSL digests the body with each.
    digest_algorithms: Tlv<'a>,
    digest_algorithm: Tlv<'a>,
    signed_attributes: Option<Tlv<'a>>,
    signature_algorithm: Tlv<'a>,
    signature: &'a [u8],
}

const OID_SIGNED_DATA: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x07, 0x02];
const OID_DATA: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x07, 0x01];
const OID_MESSAGE_DIGEST: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x09, 0x04];

impl<'a> SignedParts<'a> {
    fn split(der: &'a [u8]) -> Option<SignedParts<'a>> {
        let mut top = Reader::new(der);
        let content_info = top.expect(SEQUENCE)?;
        let mut ci = content_info.children();
        if ci.expect(OID)?.content != OID_SIGNED_DATA {
            return None;
        }
        let signed_data = ci.expect(context(0))?.children().expect(SEQUENCE)?;
        let mut sd = signed_data.children();
        sd.expect(der::INTEGER)?;
        let digest_algorithms = sd.expect(SET)?;
        let encap = sd.expect(SEQUENCE)?;
        let mut e = encap.children();
        if e.expect(OID)?.content != OID_DATA || !e.is_empty() {
            return None; // not detached: the full check will say so
        }
        let certificates = sd.optional(context(0))?;
        sd.optional(context(1));
        let mut signer_infos = sd.expect(SET)?.children();
        let signer_info = signer_infos.expect(SEQUENCE)?;
        if !signer_infos.is_empty() {
            return None;
        }
        let mut si = signer_info.children();
        si.expect(der::INTEGER)?;
        let mut sid = si.expect(SEQUENCE)?.children();
        let (issuer, serial) = (sid.expect(SEQUENCE)?, sid.expect(der::INTEGER)?);
        let digest_algorithm = si.expect(SEQUENCE)?;
        let signed_attributes = si.optional(context(0));
        let signature_algorithm = si.expect(SEQUENCE)?;
        let signature = si.expect(OCTET_STRING)?.content;
        let mut certs = certificates.children();
        let signer_cert = std::iter::from_fn(|| certs.next_tlv()).find(|c| names(c, issuer, serial))?.raw;
        Some(SignedParts { signer_cert, digest_algorithms, digest_algorithm, signed_attributes, signature_algorithm, signature })
    }
}

/// Whether this certificate has this issuer and serial number (as encoded).
fn names(cert: &Tlv, issuer: Tlv, serial: Tlv) -> bool {
    let check = || -> Option<bool> {
        let mut tbs = cert.children().expect(SEQUENCE)?.children();
        tbs.optional(context(0));
        let cert_serial = tbs.expect(der::INTEGER)?;
        tbs.expect(SEQUENCE)?;
        let cert_issuer = tbs.expect(SEQUENCE)?;
        Some(cert_serial.raw == serial.raw && cert_issuer.raw == issuer.raw)
    };
    cert.tag == SEQUENCE && check().unwrap_or(false)
}

const OID_SIGNING_TIME: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x09, 0x05];

/// The signingTime attribute (RFC 5652 §11.3) as Unix seconds: a UTCTime (years 1950-2049)
/// or a GeneralizedTime, in UTC. None if absent or not in the DER form RFC 5280 requires.
fn signing_time(attrs: Tlv) -> Option<i64> {
    let mut r = attrs.children();
    while let Some(attr) = r.next_tlv() {
        let mut a = attr.children();
        if a.expect(OID)?.content != OID_SIGNING_TIME {
            continue;
        }
        let time = a.expect(SET)?.children().next_tlv()?;
        let text = std::str::from_utf8(time.content).ok()?;
        let full = match (time.tag, text.len()) {
            (0x17, 13) => {
                let yy: u32 = text.get(..2)?.parse().ok()?;
                format!("{}{text}", if yy < 50 { "20" } else { "19" })
            }
            (0x18, 15) => text.to_owned(),
            _ => return None,
        };
        let parsed = chrono::NaiveDateTime::parse_from_str(full.strip_suffix('Z')?, "%Y%m%d%H%M%S").ok()?;
        return Some(parsed.and_utc().timestamp());
    }
    None
}

/// The messageDigest attribute's value.
fn message_digest<'a>(attrs: Tlv<'a>) -> Option<&'a [u8]> {
    let mut r = attrs.children();
    while let Some(attr) = r.next_tlv() {
        let mut a = attr.children();
        if a.expect(OID)?.content == OID_MESSAGE_DIGEST {
            let mut values = a.expect(SET)?.children();
            let value = values.expect(OCTET_STRING)?.content;
            return values.is_empty().then_some(value);
        }
    }
    None
}

fn algorithm_oid<'a>(alg: Tlv<'a>) -> Option<&'a [u8]> {
    Some(alg.children().expect(OID)?.content)
}

/// Whether an AlgorithmIdentifier is exactly an OID, then nothing or a NULL.
fn plain_algorithm(alg: Tlv) -> bool {
    const NULL: u8 = 0x05;
    let mut r = alg.children();
    if r.expect(OID).is_none() {
        return false;
    }
    if !r.is_empty() && !r.next_tlv().is_some_and(|p| p.tag == NULL && p.content.is_empty()) {
        return false;
    }
    alg.tag == SEQUENCE && r.is_empty()
}

/// The algorithms of a signature the fast path may check: the signer's digest and signature
/// algorithms plain, and the digestAlgorithms set a list of plain, known digests that holds the
/// signer's.
fn plain_algorithms(parts: &SignedParts) -> bool {
    if !plain_algorithm(parts.digest_algorithm) || !plain_algorithm(parts.signature_algorithm) {
        return false;
    }
    let signer_digest = algorithm_oid(parts.digest_algorithm);
    let mut listed = parts.digest_algorithms.children();
    let mut names_signer = false;
    while let Some(alg) = listed.next_tlv() {
        if !plain_algorithm(alg) || digest_algorithm(alg).is_none() {
            return false;
        }
        names_signer |= algorithm_oid(alg) == signer_digest;
    }
    listed.is_empty() && names_signer
}

/// The digests CMS signers use, computed with OpenSSL's direct functions (no algorithm lookup).
#[derive(Clone, Copy)]
enum Digest {
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

impl Digest {
    fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            Digest::Sha1 => openssl::sha::sha1(data).to_vec(),
            Digest::Sha256 => openssl::sha::sha256(data).to_vec(),
            Digest::Sha384 => openssl::sha::sha384(data).to_vec(),
            Digest::Sha512 => openssl::sha::sha512(data).to_vec(),
        }
    }

    /// The DER of a PKCS #1 DigestInfo up to the digest itself (RFC 8017 §9.2, note 1).
    fn digest_info_prefix(self) -> &'static [u8] {
        match self {
            Digest::Sha1 => &[0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2B, 0x0E, 0x03, 0x02, 0x1A, 0x05, 0x00, 0x04, 0x14],
            Digest::Sha256 => {
                &[0x30, 0x31, 0x30, 0x0D, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20]
            }
            Digest::Sha384 => {
                &[0x30, 0x41, 0x30, 0x0D, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0x04, 0x30]
            }
            Digest::Sha512 => {
                &[0x30, 0x51, 0x30, 0x0D, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0x04, 0x40]
            }
        }
    }
}

fn digest_algorithm(alg: Tlv) -> Option<Digest> {
    match algorithm_oid(alg)? {
        [0x2B, 0x0E, 0x03, 0x02, 0x1A] => Some(Digest::Sha1),
        [0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, n] => match n {
            1 => Some(Digest::Sha256),
            2 => Some(Digest::Sha384),
            3 => Some(Digest::Sha512),
            _ => None,
        },
        _ => None,
    }
}

enum SignatureKind {
    Rsa,
    Ecdsa,
}

/// PKCS #1 v1.5 for RSA keys and ECDSA for EC keys; anything else (RSA-PSS, say) takes the
/// full check.
fn signature_is(alg: Tlv, kind: SignatureKind) -> bool {
    const RSA: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01];
    const EC_KEY: &[u8] = &[0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x02, 0x01];
    const ECDSA: &[u8] = &[0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x04];
    let Some(oid) = algorithm_oid(alg) else { return false };
    match kind {
        SignatureKind::Rsa => oid.strip_prefix(RSA).is_some_and(|n| matches!(n, [1] | [5] | [11] | [12] | [13])),
        SignatureKind::Ecdsa => oid == EC_KEY || oid.strip_prefix(ECDSA).is_some_and(|n| matches!(n, [1] | [3, 2] | [3, 3] | [3, 4])),
    }
}

fn unix(t: &Asn1TimeRef) -> Result<i64, openssl::error::ErrorStack> {
    let d = Asn1Time::from_unix(0)?.diff(t)?;
    Ok(i64::from(d.days) * 86_400 + i64::from(d.secs))
}

fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD as BASE64;

    use std::process::Command as Process;

    use super::*;
    use crate::protocol::cms::sign_detached;
    use crate::protocol::testutil::{Identity, Leaf, make_ca, make_ec_leaf, make_leaf};

    const BODY: &[u8] = b"<plist><dict><key>Status</key><string>Idle</string></dict></plist>";

    fn header(body: &[u8], id: &Identity) -> String {
        BASE64.encode(sign_detached(body, &id.cert, &id.key).expect("sign"))
    }

    fn counts(c: &SignerCache) -> (u64, u64) {
        (c.hits.load(Ordering::Relaxed), c.misses.load(Ordering::Relaxed))
    }

    /// The same device with each kind of key the fast path handles: RSA (iPads) and P-256.
    fn devices(ca: &Identity) -> [Identity; 2] {
        [make_leaf(ca, "device", Leaf::Device), make_ec_leaf(ca, "device", Leaf::Device)]
    }

    #[test]
    fn second_request_from_a_known_certificate_skips_the_full_check() {
        let ca = make_ca("Lanyard Test CA");
        for device in devices(&ca) {
            second_request_skips_the_full_check(&ca, &device);
        }
    }

    fn second_request_skips_the_full_check(ca: &Identity, device: &Identity) {
        let cache = SignerCache::default();
        let first = cache.verify(BODY, &header(BODY, device), &ca.cert).expect("first");
        assert_eq!(first.sha256, openssl::sha::sha256(&device.cert.to_der().unwrap()));
        assert_eq!(counts(&cache), (0, 1));
        let other = b"<plist><dict><key>Status</key><string>Acknowledged</string></dict></plist>";
        assert_eq!(cache.verify(other, &header(other, device), &ca.cert).expect("second"), first);
        assert_eq!(counts(&cache), (1, 1));
    }

    #[test]
    fn known_certificate_does_not_excuse_a_bad_signature() {
        let ca = make_ca("Lanyard Test CA");
        for device in devices(&ca) {
            bad_signature_is_refused(&ca, &device);
        }
    }

    fn bad_signature_is_refused(ca: &Identity, device: &Identity) {
        let cache = SignerCache::default();
        cache.verify(BODY, &header(BODY, device), &ca.cert).expect("first");

        // The same signature over a changed body.
        let h = header(BODY, device);
        let e = cache.verify(b"<plist>tampered</plist>", &h, &ca.cert).unwrap_err();
        assert!(matches!(e, SignatureError::BadSignature(_)), "{e}");

        // A flipped bit in the signature value (the last bytes of the DER).
        let mut der = sign_detached(BODY, &device.cert, &device.key).expect("sign");
        let n = der.len();
        der[n - 3] ^= 0x01;
        let e = cache.verify(BODY, &BASE64.encode(&der), &ca.cert).unwrap_err();
        assert!(matches!(e, SignatureError::BadSignature(_)), "{e}");
        assert_eq!(counts(&cache).0, 0, "no request may pass the fast path");
    }

    /// Found by tests/parsers_proptest.rs (`signature_mutations_never_verify_as_anyone_else`):
    /// the fast path never read SignedData's digestAlgorithms set nor the parameters of the
    /// algorithm identifiers, so with the certificate remembered it accepted signatures that
    /// OpenSSL refuses ("nested asn1 error", "unknown digest type"): the verdict depended on
    /// the cache. Now each such change goes to the full check, which refuses it.
    #[test]
    fn unsigned_structure_the_full_check_refuses_is_refused_with_a_warm_cache() {
        let ca = make_ca("Lanyard Test CA");
        for device in devices(&ca) {
            let der = sign_detached(BODY, &device.cert, &device.key).expect("sign");
            let cache = SignerCache::default();
            cache.verify(BODY, &BASE64.encode(&der), &ca.cert).expect("genuine");
            let sha256_oid = [0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];
            // The digestAlgorithms set is the first SET: its first AlgorithmIdentifier's tag,
            // the digest's OID, and (for RSA, whose identifiers carry one) the NULLs.
            let set = der.windows(2).position(|w| w[0] == SET).expect("digestAlgorithms");
            let mut changes = vec![(set + 2, 0x00), (set + 2, 0xff), (set + 6, 0x00)];
            for (at, _) in der.windows(sha256_oid.len() + 2).enumerate().filter(|(_, w)| w[..11] == sha256_oid && w[11..] == [0x05, 0x00]) {
                changes.push((at + 11, 0x00));
                changes.push((at + 12, 0x80));
            }
            for (at, byte) in changes {
                let mut bad = der.clone();
                bad[at] = byte;
                let full = verify_detached_der(BODY, &bad, &ca.cert);
                let cached = cache.verify(BODY, &BASE64.encode(&bad), &ca.cert);
                assert!(full.is_ok() || cached.is_err(), "byte {at} set to {byte:#04x}: full {:?}, cached {:?}", full.err(), cached.ok());
            }
        }
    }

    #[test]
    fn certificates_from_another_ca_are_never_remembered() {
        let (ours, theirs) = (make_ca("Lanyard Test CA"), make_ca("Lanyard Test CA"));
        let stranger = make_leaf(&theirs, "stranger", Leaf::Device);
        let cache = SignerCache::default();
        for _ in 0..2 {
            let e = cache.verify(BODY, &header(BODY, &stranger), &ours.cert).unwrap_err();
            assert!(matches!(e, SignatureError::Untrusted { .. }), "{e}");
        }
        assert_eq!(counts(&cache), (0, 2));
        assert!(cache.verify_client_cert(&stranger.cert.to_der().unwrap(), &ours.cert).is_none());
    }

    /// The fast path alone, as `verify` calls it.
    fn known(cache: &SignerCache, body: &[u8], der: &[u8], now: i64) -> Option<[u8; 32]> {
        let parts = SignedParts::split(der)?;
        cache.verify_known(body, &parts, digest_algorithm(parts.digest_algorithm)?, now)
    }

    #[test]
    fn md5_is_refused_and_the_signing_time_is_read() {
        let ca = make_ca("Lanyard Test CA");
        let device = make_leaf(&ca, "device", Leaf::Device);
        let cache = SignerCache::default();
        let signer = cache.verify(BODY, &header(BODY, &device), &ca.cert).expect("sha-256");
        let at = signer.signed_at.expect("OpenSSL adds a signingTime");
        assert!((at - unix_now()).abs() < 60, "{at}");
        // The same signature with MD5: openssl's own check would accept it.
        let md5 = md5_signature(BODY, &device);
        assert!(verify_detached_der(BODY, &md5, &ca.cert).is_ok(), "the full check alone accepts MD5");
        for _ in 0..2 {
            let e = cache.verify(BODY, &BASE64.encode(&md5), &ca.cert).unwrap_err();
            assert!(e.to_string().contains("MD5"), "{e}");
        }
    }

    /// A detached CMS signature over `body` made with an MD5 digest.
    fn md5_signature(body: &[u8], id: &Identity) -> Vec<u8> {
        // rust-openssl cannot choose the digest of a CMS signer; the openssl command can.
        let dir = tempfile::tempdir().expect("tmp");
        let (cert, key, data, out) = (dir.path().join("c.pem"), dir.path().join("k.pem"), dir.path().join("d"), dir.path().join("s.der"));
        std::fs::write(&cert, id.cert.to_pem().unwrap()).unwrap();
        std::fs::write(&key, id.key.private_key_to_pem_pkcs8().unwrap()).unwrap();
        std::fs::write(&data, body).unwrap();
        let ok = Process::new("openssl")
            .args(["cms", "-sign", "-binary", "-md", "md5", "-outform", "DER"])
            .arg("-signer")
            .arg(&cert)
            .arg("-inkey")
            .arg(&key)
            .arg("-in")
            .arg(&data)
            .arg("-out")
            .arg(&out)
            .status()
            .expect("openssl")
            .success();
        assert!(ok, "openssl cms -sign -md md5");
        std::fs::read(out).unwrap()
    }

    #[test]
    fn fast_path_refuses_outside_the_validity_period() {
        let ca = make_ca("Lanyard Test CA");
        let device = make_leaf(&ca, "device", Leaf::Device);
        let cache = SignerCache::default();
        cache.verify(BODY, &header(BODY, &device), &ca.cert).expect("first");
        let der = sign_detached(BODY, &device.cert, &device.key).expect("sign");
        let now = unix_now();
        assert!(known(&cache, BODY, &der, now).is_some());
        assert!(known(&cache, BODY, &der, now + 3 * 365 * 86_400).is_none(), "expired");
        assert!(known(&cache, BODY, &der, now - 3 * 86_400).is_none(), "not yet valid");
    }

    #[test]
    fn indefinite_length_outer_layers_are_read_as_devices_send_them() {
        // Re-encode the outer ContentInfo and SignedData with indefinite lengths, as Apple's
        // encoder does, keeping the signed attributes and certificates as they are.
        let ca = make_ca("Lanyard Test CA");
        let device = make_leaf(&ca, "device", Leaf::Device);
        let cache = SignerCache::default();
        cache.verify(BODY, &header(BODY, &device), &ca.cert).expect("first");
        let der = sign_detached(BODY, &device.cert, &device.key).expect("sign");
        let ci = Reader::new(&der).expect(SEQUENCE).unwrap();
        let mut c = ci.children();
        let oid = c.expect(OID).unwrap();
        let explicit = c.expect(context(0)).unwrap();
        let sd = explicit.children().expect(SEQUENCE).unwrap();
        let mut ber = vec![0x30, 0x80];
        ber.extend(oid.raw);
        ber.extend([0xA0, 0x80, 0x30, 0x80]);
        ber.extend(sd.content);
        ber.extend([0, 0, 0, 0, 0, 0]);
        assert!(known(&cache, BODY, &ber, unix_now()).is_some());
        assert!(known(&cache, b"other", &ber, unix_now()).is_none());
    }

    #[test]
    fn client_certificates_are_remembered_after_the_chain_check() {
        let ca = make_ca("Lanyard Test CA");
        let device = make_leaf(&ca, "device", Leaf::Device);
        let cache = SignerCache::default();
        let der = device.cert.to_der().unwrap();
        assert_eq!(cache.verify_client_cert(&der, &ca.cert), Some(openssl::sha::sha256(&der)));
        assert_eq!(cache.verify_client_cert(&der, &ca.cert), Some(openssl::sha::sha256(&der)));
        assert_eq!(counts(&cache), (1, 1));
        assert!(cache.verify_client_cert(b"not a certificate", &ca.cert).is_none());
    }

    #[test]
    fn a_full_cache_forgets_instead_of_growing() {
        let ca = make_ca("Lanyard Test CA");
        let cache = SignerCache::new(2);
        for i in 0..4 {
            let d = make_leaf(&ca, &format!("device {i}"), Leaf::Device);
            cache.verify(BODY, &header(BODY, &d), &ca.cert).expect("verify");
        }
        assert_eq!(cache.known.lock().unwrap().len(), 2);
    }
}
