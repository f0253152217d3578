//! Password hashing (argon2id) and generation.

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

use crate::error::{Error, Result};

/// Hash on a blocking thread: argon2id is deliberately slow.
pub async fn hash(password: String) -> Result<String> {
    tokio::task::spawn_blocking(move || hash_blocking(&password)).await.map_err(Error::internal)?
}

pub fn hash_blocking(password: &str) -> Result<String> {
    Argon2::default().hash_password(password.as_bytes()).map(|h| h.to_string()).map_err(|e| Error::internal(anyhow::anyhow!("{e}")))
}

/// Verify on a blocking thread. A missing hash still costs one verification, so that a wrong
/// username takes as long as a wrong password.
pub async fn verify(password: String, stored: Option<String>) -> bool {
    tokio::task::spawn_blocking(move || {
        let exists = stored.is_some();
        let stored = stored.unwrap_or_else(|| hash_blocking("no such operator").unwrap_or_default());
        let ok = PasswordHash::new(&stored)
            .map(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
            .unwrap_or(false);
        ok && exists
    })
    .await
    .unwrap_or(false)
}

/// A password policy small enough to explain in one error message.
pub fn check_strength(password: &str) -> Result<()> {
    if password.chars().count() < 12 {
        return Err(Error::unprocessable("password", "must be at least 12 characters"));
    }
    Ok(())
}

/// A generated password: 20 characters from an alphabet without look-alikes.
pub fn generate() -> String {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut bytes = [0u8; 20];
    openssl::rand::rand_bytes(&mut bytes).expect("the system RNG is available");
    bytes.iter().map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char).collect()
}
