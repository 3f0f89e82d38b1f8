//! Matrix signed JSON: the one signing scheme Roam uses.
//!
//! What is signed: the canonical JSON of the object with its `signatures` and `unsigned`
//! members removed. Signatures live under `"signatures": {ENTITY: {"ed25519:KEYID": b64}}`;
//! ENTITY is the DID for account operations and the server name for server-signed objects.
//! Signing bytes are defined here and nowhere else. Verification uses `verify_strict` and
//! refuses weak public keys and non-canonical base64.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde_json::{Map, Value};

use crate::b64::{self, B64Error};
use crate::canonical::{self, CanonicalError, NumberPolicy};
use crate::ids::KeyId;

/// Why signing or verification failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    #[error("only JSON objects can be signed")]
    NotAnObject,
    #[error(transparent)]
    Canonical(#[from] CanonicalError),
    #[error("`signatures` must be an object of objects of strings")]
    MalformedSignatures,
    #[error("no signature by {entity} with key {key_id}")]
    MissingSignature { entity: String, key_id: String },
    #[error("signature by {entity} with key {key_id} is not valid base64: {source}")]
    SignatureEncoding {
        entity: String,
        key_id: String,
        source: B64Error,
    },
    #[error("key algorithm {0:?} is not supported; only ed25519 is")]
    UnsupportedAlgorithm(String),
    #[error("public key is weak (small order)")]
    WeakKey,
    #[error("signature by {entity} with key {key_id} does not verify")]
    BadSignature { entity: String, key_id: String },
}

impl SignError {
    /// The stable error class used in spec/protocol.md and the vectors.
    pub fn class(&self) -> &'static str {
        match self {
            SignError::NotAnObject | SignError::MalformedSignatures => "malformed",
            SignError::Canonical(e) => e.class(),
            SignError::MissingSignature { .. } => "missing_signature",
            SignError::SignatureEncoding { .. } => "non_canonical",
            SignError::UnsupportedAlgorithm(_) => "malformed",
            SignError::WeakKey => "weak_key",
            SignError::BadSignature { .. } => "bad_signature",
        }
    }
}

/// The bytes that are signed: canonical JSON without `signatures` and `unsigned`.
pub fn signing_bytes(obj: &Value) -> Result<Vec<u8>, SignError> {
    signing_bytes_with(obj, NumberPolicy::Strict)
}

/// [`signing_bytes`] with an explicit number policy (lenient only for foreign Matrix objects).
pub fn signing_bytes_with(obj: &Value, policy: NumberPolicy) -> Result<Vec<u8>, SignError> {
    let map = obj.as_object().ok_or(SignError::NotAnObject)?;
    let stripped: Map<String, Value> = map
        .iter()
        .filter(|(k, _)| k.as_str() != "signatures" && k.as_str() != "unsigned")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Ok(canonical::encode(&Value::Object(stripped), policy)?)
}

/// Signs `obj` in place, adding `signatures[entity][key_id]` and keeping other signatures.
pub fn sign(
    obj: &mut Value,
    entity: &str,
    key_id: &KeyId,
    key: &SigningKey,
) -> Result<(), SignError> {
    sign_with(obj, entity, key_id, key, NumberPolicy::Strict)
}

/// Signs with a lenient number policy (foreign Matrix objects, the spec's vectors).
pub fn sign_matrix(
    obj: &mut Value,
    entity: &str,
    key_id: &KeyId,
    key: &SigningKey,
) -> Result<(), SignError> {
    sign_with(obj, entity, key_id, key, NumberPolicy::MatrixLenient)
}

fn sign_with(
    obj: &mut Value,
    entity: &str,
    key_id: &KeyId,
    key: &SigningKey,
    policy: NumberPolicy,
) -> Result<(), SignError> {
    check_algorithm(key_id)?;
    let bytes = signing_bytes_with(obj, policy)?;
    let sig = key.sign(&bytes);
    insert_signature(obj, entity, key_id, &sig)
}

fn insert_signature(
    obj: &mut Value,
    entity: &str,
    key_id: &KeyId,
    sig: &Signature,
) -> Result<(), SignError> {
    let map = obj.as_object_mut().ok_or(SignError::NotAnObject)?;
    let sigs = map
        .entry("signatures")
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
        .ok_or(SignError::MalformedSignatures)?;
    let by_entity = sigs
        .entry(entity.to_owned())
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
        .ok_or(SignError::MalformedSignatures)?;
    by_entity.insert(
        key_id.as_str().to_owned(),
        Value::String(b64::encode(&sig.to_bytes())),
    );
    Ok(())
}

fn check_algorithm(key_id: &KeyId) -> Result<(), SignError> {
    if key_id.algorithm() != "ed25519" {
        return Err(SignError::UnsupportedAlgorithm(
            key_id.algorithm().to_owned(),
        ));
    }
    Ok(())
}

/// The signature `signatures[entity][key_id]`, decoded strictly.
pub fn signature_of(obj: &Value, entity: &str, key_id: &KeyId) -> Result<Signature, SignError> {
    let missing = || SignError::MissingSignature {
        entity: entity.to_owned(),
        key_id: key_id.to_string(),
    };
    let sigs = match obj.get("signatures") {
        None => return Err(missing()),
        Some(Value::Object(m)) => m,
        Some(_) => return Err(SignError::MalformedSignatures),
    };
    let by_entity = match sigs.get(entity) {
        None => return Err(missing()),
        Some(Value::Object(m)) => m,
        Some(_) => return Err(SignError::MalformedSignatures),
    };
    let text = match by_entity.get(key_id.as_str()) {
        None => return Err(missing()),
        Some(Value::String(s)) => s,
        Some(_) => return Err(SignError::MalformedSignatures),
    };
    let bytes = b64::decode_array::<64>(text).map_err(|source| SignError::SignatureEncoding {
        entity: entity.to_owned(),
        key_id: key_id.to_string(),
        source,
    })?;
    Ok(Signature::from_bytes(&bytes))
}

/// The key IDs an entity signed with, in order.
pub fn key_ids_of(obj: &Value, entity: &str) -> Vec<String> {
    obj.get("signatures")
        .and_then(|s| s.get(entity))
        .and_then(Value::as_object)
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

/// Verifies `signatures[entity][key_id]` over `obj` with `key`.
pub fn verify(
    obj: &Value,
    entity: &str,
    key_id: &KeyId,
    key: &VerifyingKey,
) -> Result<(), SignError> {
    verify_with(obj, entity, key_id, key, NumberPolicy::Strict)
}

/// [`verify`] with an explicit number policy.
pub fn verify_with(
    obj: &Value,
    entity: &str,
    key_id: &KeyId,
    key: &VerifyingKey,
    policy: NumberPolicy,
) -> Result<(), SignError> {
    check_algorithm(key_id)?;
    if key.is_weak() {
        return Err(SignError::WeakKey);
    }
    let sig = signature_of(obj, entity, key_id)?;
    let bytes = signing_bytes_with(obj, policy)?;
    key.verify_strict(&bytes, &sig)
        .map_err(|_| SignError::BadSignature {
            entity: entity.to_owned(),
            key_id: key_id.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sign_then_verify_and_tamper() {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let kid = KeyId::parse("ed25519:1").unwrap();
        let mut obj = json!({"a": 1, "unsigned": {"age": 5}});
        sign(&mut obj, "example.org", &kid, &key).unwrap();
        verify(&obj, "example.org", &kid, &key.verifying_key()).unwrap();
        // `unsigned` is not covered.
        obj["unsigned"]["age"] = json!(6);
        verify(&obj, "example.org", &kid, &key.verifying_key()).unwrap();
        obj["a"] = json!(2);
        assert!(matches!(
            verify(&obj, "example.org", &kid, &key.verifying_key()),
            Err(SignError::BadSignature { .. })
        ));
        assert!(matches!(
            verify(&obj, "other.org", &kid, &key.verifying_key()),
            Err(SignError::MissingSignature { .. })
        ));
    }

    #[test]
    fn padded_signature_is_refused() {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let kid = KeyId::parse("ed25519:1").unwrap();
        let mut obj = json!({"a": 1});
        sign(&mut obj, "e", &kid, &key).unwrap();
        let s = obj["signatures"]["e"]["ed25519:1"]
            .as_str()
            .unwrap()
            .to_owned();
        obj["signatures"]["e"]["ed25519:1"] = json!(format!("{s}=="));
        assert!(matches!(
            verify(&obj, "e", &kid, &key.verifying_key()),
            Err(SignError::SignatureEncoding { .. })
        ));
    }
}
