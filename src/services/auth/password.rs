//! Password hashing (argon2id) and generation.

use std::sync::OnceLock;

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

use crate::error::{Error, Result};

/// Hash on a blocking thread: argon2id is deliberately slow.
pub async fn hash(password: String) -> Result<String> {
    tokio::task::spawn_blocking(move || hash_blocking(&password)).await.map_err(Error::internal)?
}

pub fn hash_blocking(password: &str) -> Result<String> {
    #[cfg(test)]
    work::count(&work::HASHES);
    Argon2::default().hash_password(password.as_bytes()).map(|h| h.to_string()).map_err(|e| Error::internal(anyhow::anyhow!("{e}")))
}

/// The hash a login for an unknown username is checked against: made once per process, with
/// the parameters of every real hash, so that checking it costs what checking a real one does.
/// `setup::prepare` makes it at start-up, so that not even the first such login takes longer.
pub fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let mut secret = [0u8; 32];
        // The password nobody can know; should the RNG fail, a fixed one no one can type.
        if openssl::rand::rand_bytes(&mut secret).is_err() {
            secret = [0xff; 32];
        }
        hash_blocking(&hex::encode(secret)).unwrap_or_default()
    })
}

/// Verify on a blocking thread. A missing hash (unknown username) is checked against
/// [`dummy_hash`] instead, so that a wrong username takes as long as a wrong password.
pub async fn verify(password: String, stored: Option<String>) -> bool {
    tokio::task::spawn_blocking(move || verify_blocking(&password, stored.as_deref())).await.unwrap_or(false)
}

/// [`verify`] on the caller's thread: exactly one argon2id verification, whether or not there
/// is a stored hash.
pub fn verify_blocking(password: &str, stored: Option<&str>) -> bool {
    let exists = stored.is_some();
    let stored = stored.unwrap_or_else(|| dummy_hash());
    #[cfg(test)]
    work::count(&work::VERIFIES);
    let ok =
        PasswordHash::new(stored).map(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok()).unwrap_or(false);
    ok && exists
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

/// How many argon2id operations this thread did (tests only).
#[cfg(test)]
mod work {
    use std::cell::Cell;
    use std::thread::LocalKey;

    thread_local! {
        pub static HASHES: Cell<u32> = const { Cell::new(0) };
        pub static VERIFIES: Cell<u32> = const { Cell::new(0) };
    }

    pub fn count(c: &'static LocalKey<Cell<u32>>) {
        c.with(|n| n.set(n.get() + 1));
    }

    pub fn read(c: &'static LocalKey<Cell<u32>>) -> u32 {
        c.with(Cell::get)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An unknown username costs one verification against the dummy hash, as a known one
    /// costs one against its own: no extra hashing (which made it take twice as long).
    #[test]
    fn an_unknown_user_costs_what_a_known_one_does() {
        let real = hash_blocking("the right password").unwrap();
        dummy_hash();
        let (h0, v0) = (work::read(&work::HASHES), work::read(&work::VERIFIES));
        assert!(!verify_blocking("a wrong password", Some(&real)));
        let (h1, v1) = (work::read(&work::HASHES), work::read(&work::VERIFIES));
        assert!(!verify_blocking("a wrong password", None));
        assert!(!verify_blocking("", None));
        let (h2, v2) = (work::read(&work::HASHES), work::read(&work::VERIFIES));
        assert_eq!((h1 - h0, v1 - v0), (0, 1), "a known user: one verification");
        assert_eq!((h2 - h1, v2 - v1), (0, 2), "an unknown user: one verification each, and no hashing");
        assert!(verify_blocking("the right password", Some(&real)));
    }

    /// The dummy hash is made once, with the same algorithm and parameters as a real one.
    #[test]
    fn the_dummy_hash_is_made_once_like_a_real_one() {
        assert!(std::ptr::eq(dummy_hash(), dummy_hash()));
        let real = hash_blocking("some password").unwrap();
        let params = |h: &str| {
            let p = PasswordHash::new(h).unwrap();
            (p.algorithm.to_string(), p.version, p.params.to_string())
        };
        assert_eq!(params(dummy_hash()), params(&real));
    }
}
