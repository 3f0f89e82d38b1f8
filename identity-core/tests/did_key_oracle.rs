//! An independent did:key implementation (the `did-key` crate) as an oracle: for every valid
//! did:key in our vectors and for keys from fixed seeds, its DID document names the same
//! verification method, the same key bytes and the same X25519 key agreement key as ours.
//! Only valid inputs are given to it (it panics on some invalid ones); it is a dev-dependency
//! and never in the trust path.

mod support;

use did_key::{CONFIG_LD_PUBLIC, DIDCore, KeyFormat};
use roam_identity_core::{Did, SigningKey, did};
use serde_json::Value;

fn oracle_agrees(ours: &Did) {
    let theirs = did_key::resolve(ours.as_str())
        .unwrap_or_else(|e| panic!("{ours}: the oracle refused a DID we accept: {e:?}"));
    let doc = theirs.get_did_document(CONFIG_LD_PUBLIC);
    assert_eq!(doc.id, ours.as_str());
    let [ed, x] = &doc.verification_method[..] else {
        panic!(
            "{ours}: expected two verification methods, got {:?}",
            doc.verification_method
        )
    };
    assert_eq!(ed.id, ours.verification_method_id(), "{ours}");
    assert_eq!(x.id, ours.key_agreement_id(), "{ours}");
    let raw = |k: &Option<KeyFormat>| match k {
        Some(KeyFormat::Base58(b)) => bs58::decode(b).into_vec().unwrap(),
        other => panic!("{ours}: unexpected key format {other:?}"),
    };
    assert_eq!(
        raw(&ed.public_key),
        ours.verifying_key().as_bytes(),
        "{ours}: ed25519 key"
    );
    assert_eq!(raw(&x.public_key), ours.x25519_key(), "{ours}: x25519 key");
    assert_eq!(
        doc.authentication,
        Some(vec![ours.verification_method_id()])
    );
    assert_eq!(doc.key_agreement, Some(vec![ours.key_agreement_id()]));
    // Our document says the same in Multikey form.
    let mine = ours.document();
    let vm = &mine["verificationMethod"];
    assert_eq!(vm[0]["id"], Value::from(ed.id.clone()));
    assert_eq!(vm[1]["id"], Value::from(x.id.clone()));
    assert_eq!(
        vm[1]["publicKeyMultibase"],
        Value::from(ours.x25519_multikey())
    );
}

#[test]
fn the_oracle_agrees_on_every_valid_vector() {
    let file = support::load("spec/vectors/did-key.json");
    let mut checked = 0;
    for v in support::vectors(&file) {
        if v["valid"] == true {
            oracle_agrees(&Did::parse(v["input"].as_str().unwrap()).unwrap());
            checked += 1;
        }
    }
    assert!(checked >= 3, "only {checked} valid did:key vectors");
}

#[test]
fn the_oracle_agrees_on_keys_from_fixed_seeds() {
    for seed in 0u8..64 {
        let key = SigningKey::from_bytes(&[seed.wrapping_mul(37).wrapping_add(1); 32]);
        let ours = Did::from_key(&key.verifying_key()).unwrap();
        assert_eq!(
            ours.as_str(),
            format!("did:key:{}", did::encode_multikey(&key.verifying_key()))
        );
        oracle_agrees(&ours);
    }
}
