//! `did:key` for Ed25519, parsed strictly, and its DID document.
//!
//! A DID is `did:key:z` + base58btc(0xed 0x01 ‖ 32-byte public key). Parsing decodes, checks
//! the multicodec prefix, the length and that the bytes are a valid, non-weak curve point,
//! then re-encodes and compares, so every accepted string is the one canonical spelling of
//! its key. Malformed input gives an error, never a panic.

use ed25519_dalek::VerifyingKey;
use serde_json::{Value, json};

/// Multicodec varint prefix of an Ed25519 public key (0xed).
pub const ED25519_PUB_PREFIX: [u8; 2] = [0xed, 0x01];
/// Multicodec varint prefix of an X25519 public key (0xec).
pub const X25519_PUB_PREFIX: [u8; 2] = [0xec, 0x01];
/// The longest text we try to decode; a canonical Ed25519 did:key is 56 characters.
const MAX_DID_LEN: usize = 128;

/// Why a DID or multikey was refused. The names follow DID Resolution error classes where
/// one applies (`invalidDid`, `methodNotSupported`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DidError {
    #[error("not a DID (expected did:key:z…)")]
    NotADid,
    #[error("DID method {0:?} is not supported; only did:key is")]
    MethodNotSupported(String),
    #[error("did:key value must be base58btc multibase (start with 'z')")]
    NotBase58btc,
    #[error("did:key value is not valid base58btc")]
    BadBase58,
    #[error("did:key is not an Ed25519 key (multicodec prefix must be 0xed01)")]
    NotEd25519,
    #[error("Ed25519 key must be 32 bytes, got {0}")]
    WrongLength(usize),
    #[error("Ed25519 public key is not a valid curve point")]
    InvalidPoint,
    #[error("Ed25519 public key is a weak (small-order) point")]
    WeakKey,
    #[error("did:key is not in canonical form")]
    NonCanonical,
    #[error("DID is too long")]
    TooLong,
}

impl DidError {
    /// The stable error class used in spec/protocol.md and the vectors.
    pub fn class(&self) -> &'static str {
        match self {
            DidError::NotADid => "not_a_did",
            DidError::MethodNotSupported(_) => "method_not_supported",
            DidError::NotBase58btc => "not_base58btc",
            DidError::BadBase58 => "bad_base58",
            DidError::NotEd25519 => "not_ed25519",
            DidError::WrongLength(_) => "wrong_length",
            DidError::InvalidPoint => "invalid_point",
            DidError::WeakKey => "weak_key",
            DidError::NonCanonical => "non_canonical",
            DidError::TooLong => "too_long",
        }
    }

    /// The DID Resolution error code for this error.
    pub fn resolution_error(&self) -> &'static str {
        match self {
            DidError::MethodNotSupported(_) => "methodNotSupported",
            _ => "invalidDid",
        }
    }
}

/// Encodes an Ed25519 public key as a multibase Multikey (`z6Mk…`).
pub fn encode_multikey(key: &VerifyingKey) -> String {
    let mut bytes = Vec::with_capacity(34);
    bytes.extend_from_slice(&ED25519_PUB_PREFIX);
    bytes.extend_from_slice(key.as_bytes());
    format!("z{}", bs58::encode(bytes).into_string())
}

/// Encodes an X25519 public key as a multibase Multikey (`z6LS…`).
pub fn encode_x25519_multikey(key: &[u8; 32]) -> String {
    let mut bytes = Vec::with_capacity(34);
    bytes.extend_from_slice(&X25519_PUB_PREFIX);
    bytes.extend_from_slice(key);
    format!("z{}", bs58::encode(bytes).into_string())
}

/// Reads 32 raw bytes as an Ed25519 public key, refusing invalid, non-canonical and weak
/// points. Every public key that enters Roam from outside goes through here.
pub fn ed25519_key_strict(raw: &[u8; 32]) -> Result<VerifyingKey, DidError> {
    let key = VerifyingKey::from_bytes(raw).map_err(|_| DidError::InvalidPoint)?;
    // Decompression accepts y coordinates >= p; such a second spelling of a point must not
    // name "another" key.
    if key.to_edwards().compress().to_bytes() != *raw {
        return Err(DidError::NonCanonical);
    }
    if key.is_weak() {
        return Err(DidError::WeakKey);
    }
    Ok(key)
}

/// Decodes a `z6Mk…` Ed25519 Multikey strictly (see the module docs).
pub fn decode_multikey(s: &str) -> Result<VerifyingKey, DidError> {
    if s.len() > MAX_DID_LEN {
        return Err(DidError::TooLong);
    }
    let body = s.strip_prefix('z').ok_or(DidError::NotBase58btc)?;
    let bytes = bs58::decode(body)
        .into_vec()
        .map_err(|_| DidError::BadBase58)?;
    let raw = bytes
        .strip_prefix(&ED25519_PUB_PREFIX)
        .ok_or(DidError::NotEd25519)?;
    let raw: [u8; 32] = raw
        .try_into()
        .map_err(|_| DidError::WrongLength(raw.len()))?;
    let key = ed25519_key_strict(&raw)?;
    if encode_multikey(&key) != s {
        return Err(DidError::NonCanonical);
    }
    Ok(key)
}

/// An Ed25519 `did:key`, canonical by construction.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Did {
    text: String,
    key: VerifyingKey,
}

impl PartialOrd for Did {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Did {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.text.cmp(&other.text)
    }
}

impl Did {
    /// Parses a `did:key:z6Mk…` string strictly.
    pub fn parse(s: &str) -> Result<Self, DidError> {
        if s.len() > MAX_DID_LEN {
            return Err(DidError::TooLong);
        }
        let rest = s.strip_prefix("did:").ok_or(DidError::NotADid)?;
        let (method, id) = rest.split_once(':').ok_or(DidError::NotADid)?;
        if method != "key" {
            if method.is_empty()
                || !method
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            {
                return Err(DidError::NotADid);
            }
            return Err(DidError::MethodNotSupported(method.to_owned()));
        }
        let key = decode_multikey(id)?;
        Ok(Self {
            text: s.to_owned(),
            key,
        })
    }

    /// A DID from text whose multikey part was already decoded strictly into `key` (the
    /// log parser's memo): `text` must be exactly `did:key:` + `encode_multikey(key)`.
    pub(crate) fn from_checked(text: &str, key: VerifyingKey) -> Self {
        debug_assert_eq!(text, format!("did:key:{}", encode_multikey(&key)));
        Self {
            text: text.to_owned(),
            key,
        }
    }

    /// The DID of an Ed25519 public key. Fails only for weak keys.
    pub fn from_key(key: &VerifyingKey) -> Result<Self, DidError> {
        if key.is_weak() {
            return Err(DidError::WeakKey);
        }
        Ok(Self {
            text: format!("did:key:{}", encode_multikey(key)),
            key: *key,
        })
    }

    /// The DID as text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The Ed25519 key the DID names.
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.key
    }

    /// The method-specific identifier, `z6Mk…` (also the Multikey of the key).
    pub fn fingerprint(&self) -> &str {
        &self.text["did:key:".len()..]
    }

    /// The X25519 public key derived from the Ed25519 key (birational map to Montgomery form).
    pub fn x25519_key(&self) -> [u8; 32] {
        self.key.to_montgomery().to_bytes()
    }

    /// The X25519 key as a `z6LS…` Multikey.
    pub fn x25519_multikey(&self) -> String {
        encode_x25519_multikey(&self.x25519_key())
    }

    /// The verification method ID of the Ed25519 key: `did:key:z6Mk…#z6Mk…`.
    pub fn verification_method_id(&self) -> String {
        format!("{}#{}", self.text, self.fingerprint())
    }

    /// The key-agreement method ID: `did:key:z6Mk…#z6LS…`.
    pub fn key_agreement_id(&self) -> String {
        format!("{}#{}", self.text, self.x25519_multikey())
    }

    /// The DID document in the Multikey style of the did:key spec.
    pub fn document(&self) -> Value {
        let vm = self.verification_method_id();
        let ka = self.key_agreement_id();
        json!({
            "@context": [
                "https://www.w3.org/ns/did/v1",
                "https://w3id.org/security/multikey/v1"
            ],
            "id": self.text,
            "verificationMethod": [
                {
                    "id": vm,
                    "type": "Multikey",
                    "controller": self.text,
                    "publicKeyMultibase": self.fingerprint(),
                },
                {
                    "id": ka,
                    "type": "Multikey",
                    "controller": self.text,
                    "publicKeyMultibase": self.x25519_multikey(),
                }
            ],
            "authentication": [vm],
            "assertionMethod": [vm],
            "capabilityInvocation": [vm],
            "capabilityDelegation": [vm],
            "keyAgreement": [ka],
        })
    }
}

text_form!(Did, DidError, as_str);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_input_never_panics() {
        for s in [
            "",
            "did:",
            "did:key",
            "did:key:",
            "did:key:z",
            "did:key:z6Mk",
            "did:key:6Mk",
            "did:key:z0OIl",
            "did:web:example.com",
            "did:KEY:z6Mk",
            "did::x",
            "did:key:z6LShs9GGnqk85isEBzzshkuVWrVKsRp24GnDuHk8QWkARMW",
        ] {
            assert!(Did::parse(s).is_err(), "{s}");
        }
        assert_eq!(
            Did::parse("did:web:example.com"),
            Err(DidError::MethodNotSupported("web".into()))
        );
        assert_eq!(
            Did::parse("did:key:z6LShs9GGnqk85isEBzzshkuVWrVKsRp24GnDuHk8QWkARMW"),
            Err(DidError::NotEd25519)
        );
    }

    #[test]
    fn rejects_non_canonical_and_weak() {
        let d = Did::parse("did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp").unwrap();
        // A leading '1' in base58 adds a zero byte: same key bytes after the prefix check
        // fails, so it must not be accepted as the same DID.
        assert!(Did::parse("did:key:z16MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp").is_err());
        // The identity point (small order) is weak.
        let mut weak = [0u8; 32];
        weak[0] = 1;
        let k = VerifyingKey::from_bytes(&weak).unwrap();
        assert_eq!(Did::from_key(&k), Err(DidError::WeakKey));
        let text = format!("did:key:{}", encode_multikey(&k));
        assert_eq!(Did::parse(&text), Err(DidError::WeakKey));
        assert_eq!(Did::from_key(d.verifying_key()).unwrap(), d);
    }
}
