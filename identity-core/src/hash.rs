//! sha2-256 multihashes written as base58btc multibase (`zQm…`).
//!
//! Two uses, two types so they cannot be confused: [`OpHash`] names an account-log operation
//! (the hash of its canonical bytes, signatures included) and [`KeyCommitment`] commits to the
//! next update key (the hash of its 32 raw public-key bytes).

use sha2::{Digest, Sha256};

/// The multicodec code of sha2-256.
pub const SHA2_256: u64 = 0x12;

/// Why a multihash string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashError {
    #[error("multihash must be base58btc multibase (start with 'z')")]
    NotBase58btc,
    #[error("multihash is not valid base58btc")]
    BadBase58,
    #[error("not a valid multihash: {0}")]
    BadMultihash(String),
    #[error("multihash uses code {0:#x}; only sha2-256 (0x12) is accepted")]
    WrongCode(u64),
    #[error("multihash is not in canonical form")]
    NonCanonical,
}

/// Wraps a sha2-256 digest as multihash bytes (`0x12 0x20 ‖ digest`).
pub fn sha256_multihash(data: &[u8]) -> Vec<u8> {
    let digest: [u8; 32] = Sha256::digest(data).into();
    multihash::Multihash::<64>::wrap(SHA2_256, &digest)
        .map(|m| m.to_bytes())
        .unwrap_or_default()
}

fn encode_digest(digest: &[u8; 32]) -> String {
    let mut bytes = Vec::with_capacity(34);
    bytes.extend_from_slice(&[SHA2_256 as u8, 32]);
    bytes.extend_from_slice(digest);
    format!("z{}", bs58::encode(bytes).into_string())
}

fn parse_digest(s: &str) -> Result<[u8; 32], HashError> {
    if s.len() > 64 {
        return Err(HashError::NonCanonical);
    }
    let body = s.strip_prefix('z').ok_or(HashError::NotBase58btc)?;
    let bytes = bs58::decode(body)
        .into_vec()
        .map_err(|_| HashError::BadBase58)?;
    let mh = multihash::Multihash::<64>::from_bytes(&bytes)
        .map_err(|e| HashError::BadMultihash(e.to_string()))?;
    if mh.code() != SHA2_256 {
        return Err(HashError::WrongCode(mh.code()));
    }
    let digest: [u8; 32] = mh
        .digest()
        .try_into()
        .map_err(|_| HashError::BadMultihash("sha2-256 digest must be 32 bytes".into()))?;
    if encode_digest(&digest) != s {
        return Err(HashError::NonCanonical);
    }
    Ok(digest)
}

macro_rules! digest_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name([u8; 32]);

        impl $name {
            /// Parses the `z…` multibase form; only the canonical encoding is accepted.
            pub fn parse(s: &str) -> Result<Self, HashError> {
                parse_digest(s).map(Self)
            }
            /// The raw sha2-256 digest.
            pub fn digest(&self) -> &[u8; 32] {
                &self.0
            }
            /// Builds from a raw digest.
            pub fn from_digest(d: [u8; 32]) -> Self {
                Self(d)
            }
            /// The `z…` text form.
            pub fn to_multibase(&self) -> String {
                encode_digest(&self.0)
            }
        }
        text_form!($name, HashError, to_multibase);
    };
}

digest_type!(
    /// The hash of an account-log operation: sha2-256 of its canonical JSON bytes (signatures
    /// included, `unsigned` excluded).
    OpHash
);
digest_type!(
    /// A pre-rotation commitment: sha2-256 of the next update key's 32 raw public-key bytes.
    KeyCommitment
);

impl OpHash {
    /// Hashes canonical bytes.
    pub fn of_canonical_bytes(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }
}

impl KeyCommitment {
    /// Commits to an Ed25519 public key.
    pub fn to_key(key: &ed25519_dalek::VerifyingKey) -> Self {
        Self(Sha256::digest(key.as_bytes()).into())
    }
    /// True when `key` is the committed key.
    pub fn matches(&self, key: &ed25519_dalek::VerifyingKey) -> bool {
        *self == Self::to_key(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_strictness() {
        let h = OpHash::of_canonical_bytes(b"multihash");
        let s = h.to_multibase();
        assert!(s.starts_with("zQm"), "{s}");
        assert_eq!(OpHash::parse(&s).unwrap(), h);
        assert_eq!(OpHash::parse(&s[1..]), Err(HashError::NotBase58btc));
        assert_eq!(OpHash::parse("z0OIl"), Err(HashError::BadBase58));
        // sha1 multihash (0x11) is refused.
        let sha1 = format!(
            "z{}",
            bs58::encode(
                [0x11u8, 20]
                    .iter()
                    .chain([0u8; 20].iter())
                    .copied()
                    .collect::<Vec<_>>()
            )
            .into_string()
        );
        assert_eq!(OpHash::parse(&sha1), Err(HashError::WrongCode(0x11)));
        // Leading-zero padding of base58 is not canonical.
        assert!(OpHash::parse(&format!("z1{}", &s[1..])).is_err());
    }
}
