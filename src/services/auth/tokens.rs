//! Long-lived API tokens for scripts: shown once, stored as SHA-256.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;

pub const PREFIX: &str = "lny_";

/// A fresh token: `lny_` + 32 random bytes.
pub fn generate() -> String {
    let mut bytes = [0u8; 32];
    openssl::rand::rand_bytes(&mut bytes).expect("the system RNG is available");
    format!("{PREFIX}{}", B64.encode(bytes))
}

/// What the database keeps.
pub fn hash(token: &str) -> String {
    hex::encode(openssl::sha::sha256(token.as_bytes()))
}
