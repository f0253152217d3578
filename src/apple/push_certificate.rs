//! The school's MDM push certificate.
//!
//! Apple's Push Certificates Portal issues it (after the school uploads a CSR signed by its MDM
//! vendor, or by itself for a self-hosted server). It is a TLS client certificate for APNs whose
//! subject carries the push topic in its `UID` attribute (OID 0.9.2342.19200300.100.1.1), e.g.
//! `UID=com.apple.mgmt.External.e0bd1eac-…, CN=APSP:e0bd1eac-…, C=US`. Devices enrolled with
//! that topic can only be woken with this certificate (or its renewal, which keeps the topic).
//!
//! [`PushCertificate`] is read from a PEM pair (certificate + private key) or from a `.p12`
//! export. Import refuses anything that is not an MDM push certificate or whose key does not
//! match, with distinct errors; an expired certificate still imports so that the caller can show
//! its expiry and the renewal steps.

use std::fmt;
use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use openssl::asn1::{Asn1Time, Asn1TimeRef};
use openssl::error::ErrorStack;
use openssl::nid::Nid;
use openssl::pkcs12::Pkcs12;
use openssl::pkey::{PKey, Private};
use openssl::x509::{X509, X509NameRef};

/// Every MDM push topic starts with this.
pub const MDM_TOPIC_PREFIX: &str = "com.apple.mgmt.";

/// Why a push certificate was refused.
#[derive(Debug, thiserror::Error)]
pub enum PushCertError {
    /// The certificate bytes are not a PEM (or DER) X.509 certificate.
    #[error("could not read the push certificate: {0}")]
    UnreadableCertificate(String),
    /// The key bytes are not a PEM private key.
    #[error("could not read the private key: {0}")]
    UnreadableKey(String),
    /// The `.p12` bytes are not a PKCS#12 file, or use an algorithm OpenSSL cannot decrypt.
    #[error("could not read the .p12 file: {0}")]
    UnreadableP12(String),
    /// The `.p12` password is wrong.
    #[error("wrong password for the .p12 file")]
    WrongPassword,
    /// The `.p12` file holds no certificate.
    #[error("the .p12 file holds no certificate")]
    MissingCertificate,
    /// The `.p12` file holds no private key.
    #[error("the .p12 file holds no private key")]
    MissingKey,
    /// The certificate's subject has no `UID` attribute: it is not an MDM push certificate.
    #[error("not an MDM push certificate: its subject ({subject}) has no UID (push topic)")]
    NoTopic {
        /// The certificate's subject, for the error message.
        subject: String,
    },
    /// The subject's `UID` does not start with `com.apple.mgmt.`: it is some other APNs
    /// certificate (an app's, for instance), not an MDM push certificate.
    #[error("not an MDM push certificate: its topic {topic:?} does not start with \"com.apple.mgmt.\"")]
    NotMdmTopic {
        /// The `UID` found in the subject.
        topic: String,
    },
    /// The private key is not the one the certificate was issued for.
    #[error("the private key does not match the push certificate")]
    KeyMismatch,
    /// OpenSSL failed while reading or writing an otherwise valid certificate.
    #[error("OpenSSL error: {0}")]
    Openssl(#[from] ErrorStack),
}

impl PushCertError {
    /// True when the file is readable but is not an MDM push certificate.
    pub fn is_not_mdm_certificate(&self) -> bool {
        matches!(self, Self::NoTopic { .. } | Self::NotMdmTopic { .. })
    }
}

/// An MDM push certificate with its private key, ready to authenticate to APNs.
#[derive(Clone)]
pub struct PushCertificate {
    /// The certificate Apple issued.
    pub cert: X509,
    /// Its private key.
    pub key: PKey<Private>,
    /// The push topic: the subject's `UID`, `com.apple.mgmt.…`.
    pub topic: String,
    /// The subject, one-line (`UID=…, CN=APSP:…, C=US`).
    pub subject: String,
    /// End of validity.
    pub not_after: DateTime<Utc>,
    /// Start of validity.
    pub not_before: DateTime<Utc>,
}

impl fmt::Debug for PushCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PushCertificate")
            .field("topic", &self.topic)
            .field("subject", &self.subject)
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl PushCertificate {
    /// Reads a PEM certificate and its PEM private key.
    ///
    /// `cert_pem` may hold a chain (the push certificate and Apple's intermediate, in any order)
    /// and may even be the same combined file as `key_pem`: the certificate whose public key
    /// matches the private key is taken. A DER certificate is accepted too.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<PushCertificate, PushCertError> {
        let certs = read_certificates(cert_pem)?;
        let key = PKey::private_key_from_pem(key_pem).map_err(|e| PushCertError::UnreadableKey(first_error(&e)))?;
        Self::from_candidates(certs, key)
    }

    /// Reads a `.p12` (PKCS#12) export, such as Keychain Access produces.
    ///
    /// Both modern (AES, PBKDF2) and legacy (RC2/3DES) encryption are read: OpenSSL 3's legacy
    /// provider is loaded on first use when it is available.
    pub fn from_p12(der: &[u8], password: &str) -> Result<PushCertificate, PushCertError> {
        load_legacy_provider();
        let p12 = Pkcs12::from_der(der).map_err(|e| PushCertError::UnreadableP12(first_error(&e)))?;
        let parsed = p12
            .parse2(password)
            .map_err(|e| if is_mac_failure(&e) { PushCertError::WrongPassword } else { PushCertError::UnreadableP12(first_error(&e)) })?;
        let key = parsed.pkey.ok_or(PushCertError::MissingKey)?;
        let mut certs: Vec<X509> = parsed.cert.into_iter().collect();
        if let Some(chain) = parsed.ca {
            certs.extend(chain);
        }
        if certs.is_empty() {
            return Err(PushCertError::MissingCertificate);
        }
        Self::from_candidates(certs, key)
    }

    /// Builds a push certificate from an already-parsed certificate and key, with the same
    /// checks as [`PushCertificate::from_pem`].
    pub fn from_x509(cert: X509, key: PKey<Private>) -> Result<PushCertificate, PushCertError> {
        Self::from_candidates(vec![cert], key)
    }

    fn from_candidates(certs: Vec<X509>, key: PKey<Private>) -> Result<PushCertificate, PushCertError> {
        let position = certs.iter().position(|c| c.public_key().map(|public| public.public_eq(&key)).unwrap_or(false));
        // Comparing keys of different types leaves errors on OpenSSL's thread-local queue,
        // where a later TLS operation on this thread would find them: drain it.
        let _ = ErrorStack::get();
        let key_matches = position.is_some();
        let Some(cert) = certs.into_iter().nth(position.unwrap_or(0)) else {
            return Err(PushCertError::UnreadableCertificate("no certificate found".to_owned()));
        };
        // Say "not an MDM push certificate" before "wrong key": it is the more basic mistake.
        let topic = topic_of(&cert)?;
        if !key_matches {
            return Err(PushCertError::KeyMismatch);
        }
        Ok(PushCertificate {
            subject: subject_line(cert.subject_name()),
            not_after: asn1_to_utc(cert.not_after())?,
            not_before: asn1_to_utc(cert.not_before())?,
            topic,
            cert,
            key,
        })
    }

    /// Whole days until expiry (negative once expired; truncated toward zero).
    pub fn days_left(&self, now: DateTime<Utc>) -> i64 {
        (self.not_after - now).num_days()
    }

    /// True when `now` is past the end of validity.
    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        now > self.not_after
    }

    /// The certificate and the private key (PKCS#8), both PEM, for storing.
    pub fn to_pem_pair(&self) -> (Vec<u8>, Vec<u8>) {
        // Serialising an in-memory certificate or key only fails when OpenSSL cannot allocate.
        let cert = self.cert.to_pem().expect("OpenSSL could not serialise a parsed certificate");
        let key = self.key.private_key_to_pem_pkcs8().expect("OpenSSL could not serialise a parsed private key");
        (cert, key)
    }

    /// A `.p12` export (modern encryption) protected by `password`.
    pub fn to_p12(&self, password: &str) -> Result<Vec<u8>, PushCertError> {
        let p12 = Pkcs12::builder().name(&self.topic).pkey(&self.key).cert(&self.cert).build2(password)?;
        Ok(p12.to_der()?)
    }
}

/// The push topic of a certificate: its subject's `UID`, which must start with
/// `com.apple.mgmt.`.
pub fn topic_of(cert: &X509) -> Result<String, PushCertError> {
    let subject = cert.subject_name();
    let Some(entry) = subject.entries_by_nid(Nid::USERID).next() else {
        return Err(PushCertError::NoTopic { subject: subject_line(subject) });
    };
    let topic = entry.data().to_string().map(|s| s.trim().to_owned()).map_err(|e| PushCertError::UnreadableCertificate(first_error(&e)))?;
    if topic.len() <= MDM_TOPIC_PREFIX.len() || !topic.starts_with(MDM_TOPIC_PREFIX) {
        return Err(PushCertError::NotMdmTopic { topic });
    }
    Ok(topic)
}

/// Every certificate in `bytes`: PEM blocks, else one DER certificate.
pub fn read_certificates(bytes: &[u8]) -> Result<Vec<X509>, PushCertError> {
    let pem = X509::stack_from_pem(bytes).map_err(|e| PushCertError::UnreadableCertificate(first_error(&e)))?;
    if !pem.is_empty() {
        return Ok(pem);
    }
    X509::from_der(bytes)
        .map(|c| vec![c])
        .map_err(|_| PushCertError::UnreadableCertificate("no PEM CERTIFICATE block and not a DER certificate".to_owned()))
}

/// `UID=…, CN=…, C=US`, in the subject's order.
pub(crate) fn subject_line(name: &X509NameRef) -> String {
    name.entries()
        .map(|entry| {
            let field = entry.object().nid().short_name().unwrap_or("?");
            let value = entry.data().to_string().unwrap_or_else(|_| "?".to_owned());
            format!("{field}={value}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// An ASN.1 time as a UTC instant.
fn asn1_to_utc(time: &Asn1TimeRef) -> Result<DateTime<Utc>, ErrorStack> {
    let epoch = Asn1Time::from_unix(0)?;
    let diff = epoch.diff(time)?;
    let secs = i64::from(diff.days) * 86_400 + i64::from(diff.secs);
    Ok(DateTime::from_timestamp(secs, 0).unwrap_or(DateTime::<Utc>::MIN_UTC))
}

/// The first OpenSSL error's reason, for messages a person reads.
fn first_error(e: &ErrorStack) -> String {
    e.errors()
        .first()
        .map(|err| err.reason().map(str::to_owned).unwrap_or_else(|| err.to_string()))
        .unwrap_or_else(|| "unknown OpenSSL error".to_owned())
}

/// A PKCS#12 MAC check failure: the password is wrong.
fn is_mac_failure(e: &ErrorStack) -> bool {
    e.errors().iter().any(|err| err.reason().is_some_and(|r| r.contains("mac verify failure")))
}

/// Loads OpenSSL 3's "legacy" provider (RC2, 3DES-based `.p12` files, as older macOS Keychain
/// exports use) together with the "default" one, once per process. Failure is ignored: the
/// legacy provider is optional, and modern `.p12` files read without it.
#[doc(hidden)]
pub fn load_legacy_provider() {
    static PROVIDERS: OnceLock<Vec<openssl::provider::Provider>> = OnceLock::new();
    PROVIDERS.get_or_init(|| {
        // Loading a provider explicitly turns off the implicit "default" one: load both.
        ["default", "legacy"]
            .into_iter()
            .filter_map(|name| match openssl::provider::Provider::load(None, name) {
                Ok(provider) => Some(provider),
                Err(e) => {
                    tracing::debug!(provider = name, error = %e, "OpenSSL provider not loaded");
                    None
                }
            })
            .collect()
    });
}
