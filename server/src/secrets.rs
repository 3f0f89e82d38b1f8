//! Passwords, access tokens and generated identifiers.
//!
//! Passwords are hashed with argon2id (the crate's defaults: 19 MiB, 2 passes). Access tokens
//! are 256 random bits; only their sha256 is stored and looked up, so the store never holds a
//! usable token and a lookup never compares secret bytes.

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};

/// The longest password accepted, as Synapse: hashing is the expensive part of a request.
pub const MAX_PASSWORD_BYTES: usize = 512;

/// Why hashing failed (the OS random source or a parameter problem; never the user's input).
#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct HashError(String);

/// Hashes a password to an argon2id PHC string. CPU-heavy: call off the async threads.
pub fn hash_password(password: &str) -> Result<String, HashError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| HashError(e.to_string()))
}

/// True when `password` matches the PHC string. CPU-heavy: call off the async threads.
pub fn verify_password(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// A fresh access token and the hash to store.
pub fn new_access_token() -> (String, [u8; 32]) {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    let token = format!("roam_{}", hex::encode(bytes));
    let hash = token_hash(&token);
    (token, hash)
}

/// A fresh refresh token and the hash to store (single use: rotated on every refresh).
pub fn new_refresh_token() -> (String, [u8; 32]) {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    let token = format!("roamr_{}", hex::encode(bytes));
    let hash = token_hash(&token);
    (token, hash)
}

/// The stored form of an access or refresh token.
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// `len` random characters from `alphabet`.
pub fn random_string(alphabet: &[u8], len: usize) -> String {
    // Rejection sampling keeps the distribution uniform for any alphabet size.
    let limit = 256 - 256 % alphabet.len();
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        OsRng.fill_bytes(&mut buf);
        for &b in &buf {
            if (b as usize) < limit && out.len() < len {
                out.push(alphabet[b as usize % alphabet.len()] as char);
            }
        }
    }
    out
}

/// A device ID like Synapse's: ten upper-case letters.
pub fn new_device_id() -> String {
    random_string(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", 10)
}

/// An opaque identifier (UIA sessions, registration tokens).
pub fn new_opaque_id(len: usize) -> String {
    random_string(
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
        len,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_roundtrip() {
        let phc = hash_password("correct horse").unwrap();
        assert!(phc.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &phc));
        assert!(!verify_password("wrong", &phc));
        assert!(!verify_password("correct horse", "not a phc string"));
    }

    #[test]
    fn tokens_are_random_and_hashed() {
        let (a, ha) = new_access_token();
        let (b, hb) = new_access_token();
        assert_ne!(a, b);
        assert_ne!(ha, hb);
        assert_eq!(token_hash(&a), ha);
        assert_eq!(a.len(), 5 + 64);
        let d = new_device_id();
        assert_eq!(d.len(), 10);
        assert!(d.bytes().all(|c| c.is_ascii_uppercase()));
    }
}
