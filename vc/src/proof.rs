//! `eddsa-jcs-2022` Data Integrity proofs (W3C VC Data Integrity EdDSA Cryptosuites v1.0 §3.3).
//!
//! What is signed: SHA-256 of the JCS bytes of the proof options (the proof without
//! `proofValue`, carrying the document's `@context`) followed by SHA-256 of the JCS bytes of
//! the document without `proof`; the Ed25519 signature is written as base58btc multibase.
//! Proofs written here carry no `@context` (see [`sign`]); one that does must repeat the
//! document's exactly.
//! Verification takes the key from a caller-supplied lookup, so where keys come from (a did:web
//! document, a did:key) is decided by the credential rules, not here.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use roam_identity_core::Millis;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::error::VcError;
use crate::jcs;
use crate::time;

/// The Data Integrity proof type.
pub const PROOF_TYPE: &str = "DataIntegrityProof";
/// The cryptosuite this crate writes and checks.
pub const CRYPTOSUITE: &str = "eddsa-jcs-2022";
/// The only proof purpose Roam's credentials use.
pub const ASSERTION_METHOD: &str = "assertionMethod";

/// What a verified proof said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProofInfo {
    /// The verification method URL that signed.
    pub verification_method: String,
    /// The proof's `created` time.
    pub created: Millis,
}

/// Adds an `eddsa-jcs-2022` proof by `key` (named `verification_method`) to `document`.
pub fn sign(
    document: &Value,
    verification_method: &str,
    created: Millis,
    key: &SigningKey,
) -> Result<Value, VcError> {
    let mut options = json!({
        "type": PROOF_TYPE,
        "cryptosuite": CRYPTOSUITE,
        "created": time::format(created),
        "verificationMethod": verification_method,
        "proofPurpose": ASSERTION_METHOD,
    });
    // No `@context` in the proof: the document's own `@context`, inline terms included, is
    // covered by the document hash. (A proof `@context` holding the inline object is refused by
    // verifiers that compare context entries by identity, such as Digital Bazaar's.)
    let data = hash_data(&options, document)?;
    let signature = key.sign(&data);
    options["proofValue"] = json!(format!(
        "z{}",
        bs58::encode(signature.to_bytes()).into_string()
    ));
    let mut secured = document.clone();
    secured["proof"] = options;
    Ok(secured)
}

/// Verifies the single `eddsa-jcs-2022` proof of `secured` with the key `key_of` gives for its
/// verification method.
pub fn verify(
    secured: &Value,
    key_of: impl FnOnce(&str) -> Result<VerifyingKey, VcError>,
) -> Result<ProofInfo, VcError> {
    let obj = secured
        .as_object()
        .ok_or_else(|| VcError::malformed("not an object"))?;
    let proof = obj
        .get("proof")
        .and_then(Value::as_object)
        .ok_or_else(|| VcError::malformed("no proof object (one proof expected)"))?;
    let options = proof_options(proof)?;
    let mut unsecured: Map<String, Value> = obj.clone();
    unsecured.remove("proof");
    if let Some(ctx) = options.get("@context")
        && unsecured.get("@context") != Some(ctx)
    {
        return Err(VcError::malformed(
            "proof @context differs from the document's",
        ));
    }
    let vm = options["verificationMethod"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let created = time::parse(options["created"].as_str().unwrap_or_default())?;
    let signature = decode_proof_value(proof.get("proofValue"))?;
    let data = hash_data(&Value::Object(options), &Value::Object(unsecured))?;
    let key = key_of(&vm)?;
    key.verify_strict(&data, &signature)
        .map_err(|_| VcError::BadProof)?;
    Ok(ProofInfo {
        verification_method: vm,
        created,
    })
}

/// The proof without `proofValue`, with its members checked.
fn proof_options(proof: &Map<String, Value>) -> Result<Map<String, Value>, VcError> {
    const MEMBERS: &[&str] = &[
        "type",
        "cryptosuite",
        "created",
        "verificationMethod",
        "proofPurpose",
        "proofValue",
        "@context",
    ];
    if let Some(k) = proof.keys().find(|k| !MEMBERS.contains(&k.as_str())) {
        return Err(VcError::malformed(format!("unexpected proof member {k:?}")));
    }
    let expect = |k: &str, v: &str| {
        (proof.get(k).and_then(Value::as_str) == Some(v))
            .then_some(())
            .ok_or_else(|| VcError::malformed(format!("proof {k} must be {v:?}")))
    };
    expect("type", PROOF_TYPE)?;
    expect("cryptosuite", CRYPTOSUITE)?;
    expect("proofPurpose", ASSERTION_METHOD)?;
    for k in ["created", "verificationMethod"] {
        if !proof.get(k).is_some_and(Value::is_string) {
            return Err(VcError::malformed(format!("proof {k} must be a string")));
        }
    }
    let mut options = proof.clone();
    options.remove("proofValue");
    Ok(options)
}

fn decode_proof_value(v: Option<&Value>) -> Result<Signature, VcError> {
    let s = v
        .and_then(Value::as_str)
        .ok_or_else(|| VcError::malformed("proof has no proofValue string"))?;
    let body = s.strip_prefix('z').ok_or(VcError::NonCanonical)?;
    let bytes = bs58::decode(body)
        .into_vec()
        .map_err(|_| VcError::NonCanonical)?;
    let raw: [u8; 64] = bytes.try_into().map_err(|_| VcError::NonCanonical)?;
    // base58 has one spelling per byte string except for leading '1's, which re-encoding checks.
    if bs58::encode(raw).into_string() != body {
        return Err(VcError::NonCanonical);
    }
    Ok(Signature::from_bytes(&raw))
}

/// SHA-256(JCS(options)) ‖ SHA-256(JCS(document)): the bytes the Ed25519 key signs.
fn hash_data(options: &Value, document: &Value) -> Result<Vec<u8>, VcError> {
    let mut data = Sha256::digest(jcs::canonicalize(options)?).to_vec();
    data.extend_from_slice(&Sha256::digest(jcs::canonicalize(document)?));
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[7; 32])
    }

    #[test]
    fn signs_and_verifies_and_refuses_changes() {
        let doc = json!({"@context": ["https://www.w3.org/ns/credentials/v2"], "a": "b"});
        let secured = sign(&doc, "did:example:1#k", 1_800_000_000_000, &key()).unwrap();
        let vk = key().verifying_key();
        let info = verify(&secured, |vm| {
            assert_eq!(vm, "did:example:1#k");
            Ok(vk)
        })
        .unwrap();
        assert_eq!(info.created, 1_800_000_000_000);

        let mut changed = secured.clone();
        changed["a"] = json!("c");
        assert_eq!(verify(&changed, |_| Ok(vk)).unwrap_err(), VcError::BadProof);
        let mut changed = secured.clone();
        changed["proof"]["created"] = json!("2027-01-15T08:00:01Z");
        assert_eq!(verify(&changed, |_| Ok(vk)).unwrap_err(), VcError::BadProof);
        let mut changed = secured;
        changed["proof"]["proofValue"] = json!("u1234");
        assert_eq!(
            verify(&changed, |_| Ok(vk)).unwrap_err(),
            VcError::NonCanonical
        );
    }
}
