//! The credential vectors (spec/vectors/credentials.json), deterministic: fixed seeds, fixed
//! times. `cargo run -p roam-vc --example gen-vectors` writes them; tests/vectors.rs checks
//! the committed file equals this output and every vector against roam-vc.

use ed25519_dalek::SigningKey;
use roam_identity_core::attestation::Attestation;
use roam_identity_core::server_keys::ServerKeys;
use roam_identity_core::{Did, KeyId, OpHash, ServerName, UserId};
use roam_vc::{BindingCredential, IdentityStatement, did_web};
use serde_json::{Value, json};
use std::collections::BTreeMap;

pub const PATH: &str = "spec/vectors/credentials.json";
pub const GENERATOR: &str = "cargo run -p roam-vc --example gen-vectors";
pub const NOW: u64 = 1_800_000_000_000;
const DAY: u64 = 86_400_000;

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn server_doc(name: &str, seed: u8) -> Value {
    let keys = ServerKeys {
        server_name: ServerName::parse(name).unwrap(),
        verify_keys: BTreeMap::from([(KeyId::ed25519("a_1").unwrap(), key(seed).verifying_key())]),
        old_verify_keys: BTreeMap::new(),
        valid_until_ts: NOW + 7 * DAY,
    };
    did_web::document(&keys).unwrap()
}

fn binding(server: &str, user: &str, from: u64, until: u64) -> BindingCredential {
    let att = Attestation {
        server_name: ServerName::parse(server).unwrap(),
        user_id: Some(UserId::parse(user).unwrap()),
        did: Did::from_key(&key(1).verifying_key()).unwrap(),
        head: OpHash::from_digest([7; 32]),
        hosting: true,
        issued_at: from,
        valid_until: until,
    };
    BindingCredential::from_attestation(&att).unwrap_or(BindingCredential {
        server: att.server_name,
        user_id: att.user_id.unwrap(),
        did: att.did,
        head: att.head,
        hosting: att.hosting,
        valid_from: from,
        valid_until: until,
    })
}

fn issue(c: &BindingCredential, seed: u8) -> Value {
    c.issue(&KeyId::ed25519("a_1").unwrap(), &key(seed))
        .unwrap()
}

fn ok(name: &str, comment: &str, input: Value) -> Value {
    let expected =
        roam_vc::credential::verify(&input["credential"], input.get("issuer_document"), NOW)
            .unwrap()
            .to_json();
    json!({"name": name, "comment": comment, "valid": true, "input": input, "expected": expected})
}

fn bad(name: &str, comment: &str, input: Value, class: &str) -> Value {
    json!({"name": name, "comment": comment, "valid": false, "input": input, "error": {"class": class}})
}

fn vectors() -> Vec<Value> {
    let a_doc = server_doc("a.example", 10);
    let good = issue(
        &binding("a.example", "@alice:a.example", NOW - DAY, NOW + DAY),
        10,
    );
    let with = |c: &Value, doc: &Value| json!({"credential": c, "issuer_document": doc});
    let mut tampered = good.clone();
    tampered["credentialSubject"]["hosting"] = json!(false);
    let mut late = good.clone();
    late["validUntil"] = json!("2027-02-15T08:00:00Z");
    let expired = issue(
        &binding("a.example", "@alice:a.example", NOW - 8 * DAY, NOW - DAY),
        10,
    );
    let future = issue(
        &binding("a.example", "@alice:a.example", NOW + DAY, NOW + 2 * DAY),
        10,
    );
    let foreign = issue(
        &binding("b.example", "@alice:a.example", NOW - DAY, NOW + DAY),
        11,
    );
    let ported = issue(
        &binding(
            "a.example:8448",
            "@alice:a.example:8448",
            NOW - DAY,
            NOW + DAY,
        ),
        12,
    );
    let mut extra = good.clone();
    extra["credentialSubject"]["admin"] = json!(true);
    let mut bad_value = good.clone();
    bad_value["proof"]["proofValue"] = json!("u0000");
    let statement = IdentityStatement {
        did: Did::from_key(&key(1).verifying_key()).unwrap(),
        user_id: UserId::parse("@alice:a.example").unwrap(),
        created: NOW - DAY,
    };
    let stmt = statement.issue(&key(1)).unwrap();
    let rotated = statement.issue(&key(2)).unwrap();
    let mut stmt_tampered = stmt.clone();
    stmt_tampered["credentialSubject"]["alsoKnownAs"] = json!("matrix:u/mallory:a.example");
    vec![
        ok(
            "binding_valid",
            "a.example's credential for @alice:a.example, checked with a.example's did:web document",
            with(&good, &a_doc),
        ),
        ok(
            "binding_port",
            "a server with a port: did:web:a.example%3A8448",
            with(&ported, &server_doc("a.example:8448", 12)),
        ),
        bad(
            "binding_tampered",
            "hosting changed after signing: the proof no longer verifies",
            with(&tampered, &a_doc),
            "bad_proof",
        ),
        bad(
            "binding_window_stretched",
            "validUntil moved later after signing",
            with(&late, &a_doc),
            "bad_proof",
        ),
        bad(
            "binding_expired",
            "validUntil is before now (the proof itself verifies)",
            with(&expired, &a_doc),
            "expired",
        ),
        bad(
            "binding_not_yet_valid",
            "validFrom is a day after now (more than the 5-minute skew)",
            with(&future, &a_doc),
            "not_yet_valid",
        ),
        bad(
            "binding_wrong_issuer_domain",
            "b.example vouches for a user ID of a.example: only a user ID's own domain may",
            with(&foreign, &server_doc("b.example", 11)),
            "wrong_issuer",
        ),
        bad(
            "binding_wrong_issuer_document",
            "the DID document given is b.example's, not the issuer's",
            with(&good, &server_doc("b.example", 11)),
            "wrong_issuer",
        ),
        bad(
            "binding_other_key",
            "the issuer's document lists another key than the one that signed",
            with(&good, &server_doc("a.example", 13)),
            "bad_proof",
        ),
        bad(
            "binding_unknown_member",
            "a member Roam's credentials do not have",
            with(&extra, &a_doc),
            "malformed",
        ),
        bad(
            "binding_proof_value_not_base58btc",
            "proofValue must be base58btc multibase (z…)",
            with(&bad_value, &a_doc),
            "non_canonical",
        ),
        ok(
            "statement_valid",
            "the account holder's FEP-c390 identity statement, signed by the DID's own key",
            json!({"credential": stmt}),
        ),
        ok(
            "statement_other_signer",
            "signed by another key: the proof verifies, `signer` names that key (whether it is the update key is the account log's to say)",
            json!({"credential": rotated}),
        ),
        bad(
            "statement_tampered",
            "alsoKnownAs changed after signing",
            json!({"credential": stmt_tampered}),
            "bad_proof",
        ),
    ]
}

/// The file.
pub fn file() -> Value {
    json!({
        "description": "Credential vectors (spec/protocol.md §14). Input: `credential` (a binding credential or an identity statement) and, for a binding credential, `issuer_document` (the issuer's did:web document). Valid vectors give what the credential states: type, issuer, did, user_id, hosting, head, valid_from, valid_until (ms), verification_method, signer (Multikey); invalid ones the error class.",
        "generator": GENERATOR,
        "now": NOW,
        "keys": {"note": "Ed25519 seeds: the account key is [1;32], a.example's [10;32], b.example's [11;32], a.example:8448's [12;32], another key [13;32]; the statement_other_signer key [2;32]."},
        "vectors": vectors(),
    })
}
