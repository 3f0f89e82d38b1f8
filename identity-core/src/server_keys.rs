//! Homeserver signing keys in the Matrix `GET /_matrix/key/v2/server` format.
//!
//! A key document is self-signed: every key in `verify_keys` must sign it. A current key is
//! good for objects issued up to `valid_until_ts`; an old key (`old_verify_keys`) for objects
//! issued before its `expired_ts`. Time is always passed in.

use std::collections::BTreeMap;

use ed25519_dalek::{SigningKey, VerifyingKey};
use serde_json::{Map, Value, json};

use crate::Millis;
use crate::b64;
use crate::canonical;
use crate::ids::{KeyId, ServerName};
use crate::signed::{self, SignError};

/// Why a server key document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServerKeyError {
    #[error("server key document is malformed: {0}")]
    Malformed(String),
    #[error("server key document is for {found}, expected {expected}")]
    WrongServer { expected: String, found: String },
    #[error("server key document has no current keys")]
    NoKeys,
    #[error("server key document signature: {0}")]
    Signature(#[from] SignError),
}

impl ServerKeyError {
    /// The stable error class used in spec/protocol.md and the vectors.
    pub fn class(&self) -> &'static str {
        match self {
            ServerKeyError::Malformed(_) => "malformed",
            ServerKeyError::WrongServer { .. } => "wrong_server",
            ServerKeyError::NoKeys => "no_keys",
            ServerKeyError::Signature(e) => e.class(),
        }
    }
}

/// A server's key, for signing (held by the server only).
#[derive(Debug, Clone)]
pub struct ServerSigningKey {
    /// `ed25519:VERSION`.
    pub key_id: KeyId,
    /// The secret key.
    pub key: SigningKey,
}

/// A retired key still listed so old signatures keep verifying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OldKey {
    /// The public key.
    pub key: VerifyingKey,
    /// Objects issued at or after this time must not be signed by it.
    pub expired_ts: Millis,
}

/// Builds and signs a key document. `current` signs it; `old` keys are listed only.
pub fn build(
    server_name: &ServerName,
    current: &ServerSigningKey,
    old: &BTreeMap<KeyId, OldKey>,
    valid_until_ts: Millis,
) -> Result<Value, SignError> {
    let mut old_keys = Map::new();
    for (id, k) in old {
        old_keys.insert(
            id.to_string(),
            json!({"key": b64::encode(k.key.as_bytes()), "expired_ts": k.expired_ts}),
        );
    }
    let mut doc = json!({
        "server_name": server_name.as_str(),
        "verify_keys": {
            current.key_id.as_str(): {"key": b64::encode(current.key.verifying_key().as_bytes())}
        },
        "old_verify_keys": old_keys,
        "valid_until_ts": valid_until_ts,
    });
    signed::sign(
        &mut doc,
        server_name.as_str(),
        &current.key_id,
        &current.key,
    )?;
    Ok(doc)
}

/// A key document whose self-signatures checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerKeys {
    /// Whose keys these are.
    pub server_name: ServerName,
    /// Current keys.
    pub verify_keys: BTreeMap<KeyId, VerifyingKey>,
    /// Retired keys.
    pub old_verify_keys: BTreeMap<KeyId, OldKey>,
    /// Current keys are good for objects issued up to this time.
    pub valid_until_ts: Millis,
}

impl ServerKeys {
    /// The key `key_id` if it may have signed an object issued at `issued_at`.
    pub fn key_valid_at(&self, key_id: &KeyId, issued_at: Millis) -> Option<VerifyingKey> {
        if let Some(k) = self.verify_keys.get(key_id) {
            return (issued_at <= self.valid_until_ts).then_some(*k);
        }
        self.old_verify_keys
            .get(key_id)
            .and_then(|o| (issued_at < o.expired_ts).then_some(o.key))
    }

    /// True when the document itself is past its `valid_until_ts` and should be refetched.
    pub fn is_expired(&self, now: Millis) -> bool {
        now > self.valid_until_ts
    }

    /// Verifies `obj` as signed by this server with a key valid at `issued_at`: at least one
    /// signature of the server must verify, and none of the listed ones may be forged.
    pub fn verify_object(&self, obj: &Value, issued_at: Millis) -> Result<KeyId, SignError> {
        let entity = self.server_name.as_str();
        let mut verified = None;
        for id in signed::key_ids_of(obj, entity) {
            let Ok(key_id) = KeyId::parse(&id) else {
                continue;
            };
            if let Some(key) = self.key_valid_at(&key_id, issued_at) {
                signed::verify(obj, entity, &key_id, &key)?;
                verified.get_or_insert(key_id);
            }
        }
        verified.ok_or_else(|| SignError::MissingSignature {
            entity: entity.to_owned(),
            key_id: "a key valid at the object's issue time".to_owned(),
        })
    }
}

fn parse_key(v: &Value, what: &str) -> Result<VerifyingKey, ServerKeyError> {
    let text = v
        .get("key")
        .and_then(Value::as_str)
        .ok_or_else(|| ServerKeyError::Malformed(format!("{what}: missing key")))?;
    let bytes = b64::decode_array::<32>(text)
        .map_err(|e| ServerKeyError::Malformed(format!("{what}: {e}")))?;
    crate::did::ed25519_key_strict(&bytes)
        .map_err(|e| ServerKeyError::Malformed(format!("{what}: {e}")))
}

/// Verifies a key document as served by `expected` (its self-signatures; not its freshness,
/// which [`ServerKeys::is_expired`] reports, since offline verification of old bundles is
/// legitimate).
pub fn verify(doc: &Value, expected: &ServerName) -> Result<ServerKeys, ServerKeyError> {
    let malformed = |m: &str| ServerKeyError::Malformed(m.to_owned());
    // Numbers as §2.1, anywhere in the document (as for attestations).
    canonical::check_numbers(doc).map_err(|e| ServerKeyError::Malformed(e.to_string()))?;
    let name = doc
        .get("server_name")
        .and_then(Value::as_str)
        .ok_or_else(|| malformed("missing server_name"))?;
    if name != expected.as_str() {
        return Err(ServerKeyError::WrongServer {
            expected: expected.to_string(),
            found: name.to_owned(),
        });
    }
    let valid_until_ts = doc
        .get("valid_until_ts")
        .and_then(Value::as_u64)
        .ok_or_else(|| malformed("missing valid_until_ts"))?;
    let mut verify_keys = BTreeMap::new();
    let current = doc
        .get("verify_keys")
        .and_then(Value::as_object)
        .ok_or_else(|| malformed("verify_keys must be an object"))?;
    for (id, v) in current {
        let key_id = KeyId::parse(id).map_err(|e| ServerKeyError::Malformed(e.to_string()))?;
        // Other algorithms cannot be checked here; they are ignored, not trusted.
        if key_id.algorithm() != "ed25519" {
            continue;
        }
        verify_keys.insert(key_id, parse_key(v, id)?);
    }
    if verify_keys.is_empty() {
        return Err(ServerKeyError::NoKeys);
    }
    let mut old_verify_keys = BTreeMap::new();
    let old = match doc.get("old_verify_keys") {
        None => None,
        Some(Value::Object(m)) => Some(m),
        Some(_) => return Err(malformed("old_verify_keys must be an object")),
    };
    if let Some(m) = old {
        for (id, v) in m {
            let key_id = KeyId::parse(id).map_err(|e| ServerKeyError::Malformed(e.to_string()))?;
            if key_id.algorithm() != "ed25519" {
                continue;
            }
            let expired_ts = v
                .get("expired_ts")
                .and_then(Value::as_u64)
                .ok_or_else(|| ServerKeyError::Malformed(format!("{id}: missing expired_ts")))?;
            old_verify_keys.insert(
                key_id,
                OldKey {
                    key: parse_key(v, id)?,
                    expired_ts,
                },
            );
        }
    }
    for (id, key) in &verify_keys {
        signed::verify(doc, expected.as_str(), id, key)?;
    }
    Ok(ServerKeys {
        server_name: expected.clone(),
        verify_keys,
        old_verify_keys,
        valid_until_ts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8, v: &str) -> ServerSigningKey {
        ServerSigningKey {
            key_id: KeyId::ed25519(v).unwrap(),
            key: SigningKey::from_bytes(&[seed; 32]),
        }
    }

    #[test]
    fn build_and_verify_with_old_keys() {
        let name = ServerName::parse("a.example").unwrap();
        let cur = key(1, "b");
        let old = key(2, "a");
        let mut olds = BTreeMap::new();
        olds.insert(
            old.key_id.clone(),
            OldKey {
                key: old.key.verifying_key(),
                expired_ts: 1000,
            },
        );
        let doc = build(&name, &cur, &olds, 5000).unwrap();
        let keys = verify(&doc, &name).unwrap();
        assert_eq!(
            keys.key_valid_at(&cur.key_id, 5000),
            Some(cur.key.verifying_key())
        );
        assert_eq!(keys.key_valid_at(&cur.key_id, 5001), None);
        assert_eq!(
            keys.key_valid_at(&old.key_id, 999),
            Some(old.key.verifying_key())
        );
        assert_eq!(keys.key_valid_at(&old.key_id, 1000), None);
        assert!(keys.is_expired(5001));
        let other = ServerName::parse("b.example").unwrap();
        assert!(matches!(
            verify(&doc, &other),
            Err(ServerKeyError::WrongServer { .. })
        ));
        let mut tampered = doc.clone();
        tampered["valid_until_ts"] = 9_999_999.into();
        assert!(matches!(
            verify(&tampered, &name),
            Err(ServerKeyError::Signature(_))
        ));
    }
}
