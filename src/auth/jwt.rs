//! Session tokens: compact JWTs signed with HMAC-SHA-256 (HS256) and a key kept in `data/`.
//!
//! Only HS256 is accepted (the header is checked, so `alg: none` and algorithm confusion fail).
//! The signature is compared in constant time.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use chrono::{DateTime, Utc};
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::sign::Signer;
use serde::{Deserialize, Serialize};

pub const SESSION_HOURS: i64 = 1;
const HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

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

#[derive(Clone)]
pub struct JwtKey {
    key: Vec<u8>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum JwtError {
    #[error("malformed token")]
    Malformed,
    #[error("token signature does not match")]
    BadSignature,
    #[error("token has expired")]
    Expired,
}

impl JwtKey {
    pub fn new(key: &[u8]) -> JwtKey {
        JwtKey { key: key.to_vec() }
    }

    fn mac(&self, data: &[u8]) -> Vec<u8> {
        let pkey = PKey::hmac(&self.key).expect("HMAC key");
        let mut signer = Signer::new(MessageDigest::sha256(), &pkey).expect("HMAC signer");
        signer.update(data).expect("HMAC update");
        signer.sign_to_vec().expect("HMAC sign")
    }

    /// A MAC with the session key for another purpose (the console's CSRF tokens and idle
    /// stamps), domain-separated from the JWT signatures by `purpose`.
    pub fn derive(&self, purpose: &str, data: &[u8]) -> Vec<u8> {
        let mut input = Vec::with_capacity(purpose.len() + 1 + data.len());
        input.extend_from_slice(b"lanyard-derive:");
        input.extend_from_slice(purpose.as_bytes());
        input.push(0);
        input.extend_from_slice(data);
        self.mac(&input)
    }

    pub fn issue(&self, claims: &Claims) -> String {
        let body = serde_json::to_vec(claims).expect("claims serialise");
        let signing_input = format!("{}.{}", B64.encode(HEADER), B64.encode(body));
        let sig = self.mac(signing_input.as_bytes());
        format!("{signing_input}.{}", B64.encode(sig))
    }

    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<Claims, JwtError> {
        let mut parts = token.split('.');
        let (Some(h), Some(b), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(JwtError::Malformed);
        };
        let header: serde_json::Value =
            serde_json::from_slice(&B64.decode(h).map_err(|_| JwtError::Malformed)?).map_err(|_| JwtError::Malformed)?;
        if header.get("alg").and_then(|a| a.as_str()) != Some("HS256") {
            return Err(JwtError::Malformed);
        }
        let sig = B64.decode(s).map_err(|_| JwtError::Malformed)?;
        let expected = self.mac(format!("{h}.{b}").as_bytes());
        if !super::constant_time_eq(&sig, &expected) {
            return Err(JwtError::BadSignature);
        }
        let claims: Claims = serde_json::from_slice(&B64.decode(b).map_err(|_| JwtError::Malformed)?).map_err(|_| JwtError::Malformed)?;
        if claims.exp <= now.timestamp() {
            return Err(JwtError::Expired);
        }
        Ok(claims)
    }
}

/// Does this bearer token look like a JWT (as opposed to an API token)?
pub fn looks_like_jwt(token: &str) -> bool {
    token.matches('.').count() == 2
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: i64) -> Claims {
        Claims { sub: "id".into(), name: "admin".into(), role: "admin".into(), iat: 0, exp, jti: "j".into(), epoch: 0 }
    }

    #[test]
    fn round_trip_and_rejections() {
        let k = JwtKey::new(&[1u8; 32]);
        let now = Utc::now();
        let t = k.issue(&claims(now.timestamp() + 60));
        assert_eq!(k.verify(&t, now).unwrap().name, "admin");
        assert_eq!(k.verify(&t, now + chrono::Duration::seconds(61)), Err(JwtError::Expired));
        assert_eq!(JwtKey::new(&[2u8; 32]).verify(&t, now), Err(JwtError::BadSignature));
        let mut forged = t.clone();
        forged.replace_range(forged.len() - 3.., "AAA");
        assert!(k.verify(&forged, now).is_err());
        // alg: none is refused.
        let parts: Vec<_> = t.split('.').collect();
        let none = format!("{}.{}.", B64.encode(r#"{"alg":"none"}"#), parts[1]);
        assert_eq!(k.verify(&none, now), Err(JwtError::Malformed));
        assert_eq!(k.verify("garbage", now), Err(JwtError::Malformed));
    }

    /// A token issued before session epochs existed (no `epoch` claim) still reads, as epoch 0.
    #[test]
    fn a_token_without_an_epoch_is_epoch_zero() {
        let k = JwtKey::new(&[1u8; 32]);
        let exp = Utc::now().timestamp() + 60;
        let body = format!(r#"{{"sub":"id","name":"admin","role":"admin","iat":0,"exp":{exp},"jti":"j"}}"#);
        let input = format!("{}.{}", B64.encode(HEADER), B64.encode(body));
        let token = format!("{input}.{}", B64.encode(k.mac(input.as_bytes())));
        assert_eq!(k.verify(&token, Utc::now()).unwrap().epoch, 0);
    }
}
