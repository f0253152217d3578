//! Session tokens: the one-hour JWTs an operator gets by logging in, signed with HMAC-SHA-256
//! (HS256) and the key kept in `data/jwt.key`.
//!
//! The token format and its checks are the `jsonwebtoken` crate's: [`SessionKey::verify`] accepts
//! HS256 only, so `alg: none`, another HMAC (HS384, HS512) and algorithm confusion (an RS256 or
//! ES256 header over the HMAC key) are all refused before the signature is looked at.
//!
//! **The crypto under it.** jsonwebtoken 12 signs through a process-wide `CryptoProvider` and
//! ships two: `rust_crypto` (which brings RSA, P-256, P-384 and Ed25519 crates along with the
//! HMAC) and `aws_lc_rs` (a C and cmake build of AWS-LC, minutes on a 2-core machine). Lanyard
//! needs one algorithm and already links OpenSSL for its PKI, so the crate is used with no
//! default features and no backend feature, and `OPENSSL_HS256` below is installed in their place: it
//! computes HMAC-SHA-256 with OpenSSL, compares signatures in constant time (`CRYPTO_memcmp`) and
//! refuses every other algorithm (it is never asked for one: the algorithm check comes first).
//!
//! **Expiry** is checked here rather than by the crate, for two reasons: against Lanyard's clock
//! ([`crate::clock`], which tests move on) instead of the system's, and with no leeway (the
//! crate's default allows 60 seconds): a token is refused from its `exp` second on, as before
//! the crate was used. Tokens issued before (header `{"alg":"HS256","typ":"JWT"}`, the same
//! claims) still verify, since the signature covers the same bytes either way.
//!
//! The same key also MACs the console's CSRF tokens and idle stamps ([`SessionKey::derive`]).

use std::sync::Once;

use chrono::{DateTime, Utc};
use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::signature::{Error as SignatureError, Signer as _};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, EncodingKey, Header, Validation};
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::sign::Signer;
use serde::{Deserialize, Serialize};

pub const SESSION_HOURS: i64 = 1;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Claims {
    /// Operator id.
    pub sub: String,
    pub name: String,
    pub role: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
    /// The operator's session epoch when this was issued: once it has moved on (password
    /// reset, disabled, role changed), the token is refused. Tokens from before epochs existed
    /// carry none and count as epoch 0.
    #[serde(default)]
    pub epoch: i64,
}

/// The session key (`data/jwt.key`): signs and checks session tokens.
#[derive(Clone)]
pub struct SessionKey {
    key: Vec<u8>,
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

/// Why a session token was refused (each becomes a 401 naming it).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TokenError {
    /// Not a JWT, not HS256, or claims that are not ours.
    #[error("malformed token")]
    Malformed,
    #[error("token signature does not match")]
    BadSignature,
    #[error("token has expired")]
    Expired,
}

#[derive(Debug, thiserror::Error)]
#[error("the session key (data/jwt.key) is empty")]
pub struct EmptyKey;

impl SessionKey {
    pub fn new(key: &[u8]) -> Result<SessionKey, EmptyKey> {
        install_provider();
        let encoding = EncodingKey::from_secret(key).map_err(|_| EmptyKey)?;
        let decoding = DecodingKey::from_secret(key).map_err(|_| EmptyKey)?;
        let mut validation = Validation::new(Algorithm::HS256);
        // `exp` must be there (the claims need it anyway); it is compared in `verify`.
        validation.validate_exp = false;
        validation.leeway = 0;
        Ok(SessionKey { key: key.to_vec(), encoding, decoding, validation })
    }

    /// A MAC with the session key for another purpose (the console's CSRF tokens and idle
    /// stamps), domain-separated from the JWT signatures by `purpose`.
    pub fn derive(&self, purpose: &str, data: &[u8]) -> Vec<u8> {
        let mut input = Vec::with_capacity(purpose.len() + 1 + data.len());
        input.extend_from_slice(b"lanyard-derive:");
        input.extend_from_slice(purpose.as_bytes());
        input.push(0);
        input.extend_from_slice(data);
        hmac_sha256(&self.key, &input).expect("HMAC-SHA-256")
    }

    pub fn issue(&self, claims: &Claims) -> String {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding).expect("HS256 signs")
    }

    /// Check the signature (HS256 only) and that the token has not expired at `now`.
    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<Claims, TokenError> {
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| match e.kind() {
                ErrorKind::InvalidSignature => TokenError::BadSignature,
                _ => TokenError::Malformed,
            })?
            .claims;
        if claims.exp <= now.timestamp() {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

/// Does this bearer token look like a JWT (as opposed to an API token)?
pub fn looks_like_jwt(token: &str) -> bool {
    token.matches('.').count() == 2
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Result<Vec<u8>, openssl::error::ErrorStack> {
    let pkey = PKey::hmac(key)?;
    let mut signer = Signer::new(MessageDigest::sha256(), &pkey)?;
    signer.update(data)?;
    signer.sign_to_vec()
}

/// jsonwebtoken's crypto, by OpenSSL, for HS256 alone (see the module doc).
static OPENSSL_HS256: CryptoProvider = CryptoProvider {
    signer_factory: hs256_signer,
    verifier_factory: hs256_verifier,
    // For JWKs, which Lanyard does not use: these panic if ever called.
    key_utils: KeyUtils::new_unimplemented(),
};

/// Make `OPENSSL_HS256` jsonwebtoken's provider (once per process; [`SessionKey::new`] does).
fn install_provider() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let installed =
            OPENSSL_HS256.install_default().is_ok() || CryptoProvider::try_get_default().is_some_and(|p| std::ptr::eq(p, &OPENSSL_HS256));
        assert!(installed, "another jsonwebtoken CryptoProvider was installed before Lanyard's");
    });
}

struct Hs256(Vec<u8>);

fn hs256(alg: &Algorithm, family: AlgorithmFamily, key: &[u8]) -> jsonwebtoken::errors::Result<Hs256> {
    if *alg != Algorithm::HS256 {
        return Err(ErrorKind::UnsupportedAlgorithm.into());
    }
    if family != AlgorithmFamily::Hmac || key.is_empty() {
        return Err(ErrorKind::InvalidKeyFormat.into());
    }
    Ok(Hs256(key.to_vec()))
}

fn hs256_signer(alg: &Algorithm, key: &EncodingKey) -> jsonwebtoken::errors::Result<Box<dyn JwtSigner>> {
    Ok(Box::new(hs256(alg, key.family(), key.as_bytes())?))
}

fn hs256_verifier(alg: &Algorithm, key: &DecodingKey) -> jsonwebtoken::errors::Result<Box<dyn JwtVerifier>> {
    Ok(Box::new(hs256(alg, key.family(), key.try_get_as_bytes()?)?))
}

impl jsonwebtoken::signature::Signer<Vec<u8>> for Hs256 {
    fn try_sign(&self, msg: &[u8]) -> Result<Vec<u8>, SignatureError> {
        hmac_sha256(&self.0, msg).map_err(SignatureError::from_source)
    }
}

impl JwtSigner for Hs256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::HS256
    }
}

impl jsonwebtoken::signature::Verifier<Vec<u8>> for Hs256 {
    fn verify(&self, msg: &[u8], signature: &Vec<u8>) -> Result<(), SignatureError> {
        let expected = self.try_sign(msg)?;
        if super::constant_time_eq(signature, &expected) { Ok(()) } else { Err(SignatureError::new()) }
    }
}

impl JwtVerifier for Hs256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::HS256
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;

    use super::*;

    /// The header the hand-written implementation wrote before the crate was used.
    const OLD_HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

    fn claims(exp: i64) -> Claims {
        Claims { sub: "id".into(), name: "admin".into(), role: "admin".into(), iat: 0, exp, jti: "j".into(), epoch: 0 }
    }

    fn key() -> SessionKey {
        SessionKey::new(&[1u8; 32]).unwrap()
    }

    /// A token made by hand: `header` and `body` as given, signed with HMAC over `digest`.
    fn hand_made(header: &str, body: &str, digest: MessageDigest, key: &[u8]) -> String {
        let input = format!("{}.{}", B64.encode(header), B64.encode(body));
        let pkey = PKey::hmac(key).unwrap();
        let mut signer = Signer::new(digest, &pkey).unwrap();
        signer.update(input.as_bytes()).unwrap();
        format!("{input}.{}", B64.encode(signer.sign_to_vec().unwrap()))
    }

    fn body(exp: i64) -> String {
        serde_json::to_string(&claims(exp)).unwrap()
    }

    #[test]
    fn round_trip_and_rejections() {
        let k = key();
        let now = Utc::now();
        let t = k.issue(&claims(now.timestamp() + 60));
        assert_eq!(k.verify(&t, now).unwrap().name, "admin");
        assert_eq!(k.verify(&t, now + chrono::Duration::seconds(61)), Err(TokenError::Expired));
        assert_eq!(SessionKey::new(&[2u8; 32]).unwrap().verify(&t, now), Err(TokenError::BadSignature));
        let mut forged = t.clone();
        forged.replace_range(forged.len() - 3.., "AAA");
        assert!(k.verify(&forged, now).is_err());
        // alg: none is refused.
        let parts: Vec<_> = t.split('.').collect();
        let none = format!("{}.{}.", B64.encode(r#"{"alg":"none"}"#), parts[1]);
        assert_eq!(k.verify(&none, now), Err(TokenError::Malformed));
        assert_eq!(k.verify("garbage", now), Err(TokenError::Malformed));
    }

    /// A token issued before session epochs existed (no `epoch` claim) still reads, as epoch 0.
    #[test]
    fn a_token_without_an_epoch_is_epoch_zero() {
        let k = key();
        let exp = Utc::now().timestamp() + 60;
        let body = format!(r#"{{"sub":"id","name":"admin","role":"admin","iat":0,"exp":{exp},"jti":"j"}}"#);
        let token = hand_made(OLD_HEADER, &body, MessageDigest::sha256(), &[1u8; 32]);
        assert_eq!(k.verify(&token, Utc::now()).unwrap().epoch, 0);
    }

    /// A token as the hand-written implementation made it (its header, its bytes) still verifies.
    #[test]
    fn a_token_from_before_the_crate_still_verifies() {
        let now = Utc::now();
        let token = hand_made(OLD_HEADER, &body(now.timestamp() + 60), MessageDigest::sha256(), &[1u8; 32]);
        assert_eq!(key().verify(&token, now), Ok(claims(now.timestamp() + 60)));
    }

    /// Expired from the `exp` second on, with no leeway, by the clock given (not the system's).
    #[test]
    fn expiry_has_no_leeway_and_uses_the_given_clock() {
        let k = key();
        let exp = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let t = k.issue(&claims(exp.timestamp()));
        assert!(k.verify(&t, exp - chrono::Duration::seconds(1)).is_ok());
        assert_eq!(k.verify(&t, exp), Err(TokenError::Expired));
        assert_eq!(k.verify(&t, exp + chrono::Duration::seconds(1)), Err(TokenError::Expired));
        // Long past by the system's clock, fine by the one given.
        assert!(k.verify(&k.issue(&claims(1000)), DateTime::from_timestamp(999, 0).unwrap()).is_ok());
    }

    /// Only HS256: another HMAC with the same key, or an asymmetric algorithm's header over the
    /// HMAC key (algorithm confusion), is refused however well it is signed.
    #[test]
    fn only_hs256_is_accepted() {
        let k = key();
        let now = Utc::now();
        let b = body(now.timestamp() + 60);
        for (alg, digest) in [
            ("HS384", MessageDigest::sha384()),
            ("HS512", MessageDigest::sha512()),
            ("RS256", MessageDigest::sha256()),
            ("ES256", MessageDigest::sha256()),
            ("PS256", MessageDigest::sha256()),
            ("EdDSA", MessageDigest::sha256()),
        ] {
            let t = hand_made(&format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#), &b, digest, &[1u8; 32]);
            assert_eq!(k.verify(&t, now), Err(TokenError::Malformed), "{alg}");
        }
        for header in [r#"{"alg":"none","typ":"JWT"}"#, r#"{"alg":"hs256"}"#, r#"{"typ":"JWT"}"#, "{}", "[]"] {
            let t = hand_made(header, &b, MessageDigest::sha256(), &[1u8; 32]);
            assert_eq!(k.verify(&t, now), Err(TokenError::Malformed), "{header}");
        }
        // alg: none with an empty signature, with or without the last dot.
        let unsigned = format!("{}.{}", B64.encode(r#"{"alg":"none"}"#), B64.encode(&b));
        assert_eq!(k.verify(&format!("{unsigned}."), now), Err(TokenError::Malformed));
        assert_eq!(k.verify(&unsigned, now), Err(TokenError::Malformed));
    }

    /// A changed claim breaks the signature; claims that are not ours are malformed.
    #[test]
    fn tampered_and_foreign_claims() {
        let k = key();
        let now = Utc::now();
        let t = k.issue(&claims(now.timestamp() + 60));
        let parts: Vec<_> = t.split('.').collect();
        let mut raised = claims(now.timestamp() + 60);
        raised.role = "admin2".into();
        let swapped = format!("{}.{}.{}", parts[0], B64.encode(serde_json::to_vec(&raised).unwrap()), parts[2]);
        assert_eq!(k.verify(&swapped, now), Err(TokenError::BadSignature));
        // Well signed, but no exp / not our claims.
        let no_exp =
            hand_made(OLD_HEADER, r#"{"sub":"id","name":"a","role":"admin","iat":0,"jti":"j"}"#, MessageDigest::sha256(), &[1u8; 32]);
        assert_eq!(k.verify(&no_exp, now), Err(TokenError::Malformed));
        let not_json = hand_made(OLD_HEADER, "not json", MessageDigest::sha256(), &[1u8; 32]);
        assert_eq!(k.verify(&not_json, now), Err(TokenError::Malformed));
        assert_eq!(k.verify("a.b.c", now), Err(TokenError::Malformed));
        assert_eq!(k.verify("..", now), Err(TokenError::Malformed));
    }

    /// The provider signs and checks HS256 only, and the signature is the plain HMAC-SHA-256.
    #[test]
    fn the_openssl_provider_is_hs256_only() {
        let e = EncodingKey::from_secret(&[1u8; 32]).unwrap();
        let d = DecodingKey::from_secret(&[1u8; 32]).unwrap();
        for alg in [Algorithm::HS384, Algorithm::HS512, Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA] {
            assert!(hs256_signer(&alg, &e).is_err(), "{alg:?}");
            assert!(hs256_verifier(&alg, &d).is_err(), "{alg:?}");
        }
        let s = hs256_signer(&Algorithm::HS256, &e).unwrap();
        let mac = s.try_sign(b"msg").unwrap();
        assert_eq!(mac, hmac_sha256(&[1u8; 32], b"msg").unwrap());
        let v = hs256_verifier(&Algorithm::HS256, &d).unwrap();
        assert!(v.verify(b"msg", &mac).is_ok());
        assert!(v.verify(b"msh", &mac).is_err());
        assert!(v.verify(b"msg", &mac[..31].to_vec()).is_err());
        assert!(SessionKey::new(&[]).is_err());
    }

    /// `derive` is the same MAC as before the crate (console cookies made before stay good).
    #[test]
    fn derive_is_unchanged() {
        let k = key();
        let mut input = b"lanyard-derive:ui-csrf\0".to_vec();
        input.extend_from_slice(b"jti");
        assert_eq!(k.derive("ui-csrf", b"jti"), hmac_sha256(&[1u8; 32], &input).unwrap());
        assert_ne!(k.derive("ui-csrf", b"jti"), k.derive("ui-idle", b"jti"));
    }
}
