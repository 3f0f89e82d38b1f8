//! ssi verifies Roam's credentials: every credential vector (spec/vectors/credentials.json,
//! made by roam-vc) gets ssi's verdict, credentials issued here by roam-vc verify, tampered,
//! expired and not-yet-valid ones are refused; ssi adds an `eddsa-rdfc-2022` proof to Roam's
//! credential and checks it; what ssi signs with `eddsa-jcs-2022` roam-vc accepts. And this
//! build graph is the one the issue is about: serde_json's `arbitrary_precision` is on here.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use ed25519_dalek::SigningKey;
use roam_identity_core::attestation::Attestation;
use roam_identity_core::server_keys::ServerKeys;
use roam_identity_core::{Did, KeyId, OpHash, ServerName, UserId};
use roam_vc::{BindingCredential, IdentityStatement, did_web};
use roam_vc_ssi::{Resolver, sign_jcs, sign_rdfc, verify_jcs, verify_rdfc};
use serde_json::{Value, json};

const DAY: u64 = 86_400_000;

fn vectors() -> Value {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../spec/vectors/credentials.json");
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

fn at(ms: u64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms as i64).unwrap()
}

fn resolver(doc: Option<&Value>) -> Resolver {
    match doc {
        Some(d) => Resolver::with_document(d).unwrap(),
        None => Resolver::default(),
    }
}

/// ssi's verdict on a vector, when it differs from "valid iff roam-vc says valid": the
/// rules that are Roam's own, not Data Integrity's.
fn ssi_differs(name: &str) -> bool {
    // b.example signed, with its own did:web key, a credential about a user ID of a.example:
    // cryptographically sound; that only a user ID's own domain may vouch for it is §14's
    // rule, which ssi does not know.
    name == "binding_wrong_issuer_domain"
}

#[tokio::test]
async fn ssi_gives_every_credential_vector_its_verdict() {
    let file = vectors();
    let now = at(file["now"].as_u64().unwrap());
    let mut seen = 0;
    for v in file["vectors"].as_array().unwrap() {
        let name = v["name"].as_str().unwrap();
        let input = &v["input"];
        let credential = input["credential"].to_string();
        let got = verify_jcs(
            &credential,
            resolver(input.get("issuer_document")),
            Some(now),
        )
        .await;
        let want_valid = v["valid"].as_bool().unwrap() != ssi_differs(name);
        assert_eq!(
            got.is_ok(),
            want_valid,
            "{name}: roam-vc says {}, ssi says {got:?}",
            v.get("error").unwrap_or(&json!("valid"))
        );
        seen += 1;
    }
    assert_eq!(seen, 14, "a vector was added: decide ssi's verdict on it");
}

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn server_doc(name: &str, seed: u8, now: u64) -> Value {
    let keys = ServerKeys {
        server_name: ServerName::parse(name).unwrap(),
        verify_keys: BTreeMap::from([(KeyId::ed25519("k1").unwrap(), key(seed).verifying_key())]),
        old_verify_keys: BTreeMap::new(),
        valid_until_ts: now + 7 * DAY,
    };
    did_web::document(&keys).unwrap()
}

fn binding(from: u64, until: u64) -> BindingCredential {
    BindingCredential::from_attestation(&Attestation {
        server_name: ServerName::parse("chat.example").unwrap(),
        user_id: Some(UserId::parse("@carol:chat.example").unwrap()),
        did: Did::from_key(&key(3).verifying_key()).unwrap(),
        head: OpHash::from_digest([9; 32]),
        hosting: true,
        issued_at: from,
        valid_until: until,
    })
    .unwrap()
}

fn now_ms() -> u64 {
    Utc::now().timestamp_millis() as u64
}

#[tokio::test]
async fn a_credential_issued_by_roam_verifies_and_changes_are_refused() {
    let now = now_ms();
    let doc = server_doc("chat.example", 20, now);
    let issued = binding(now - DAY, now + DAY)
        .issue(&KeyId::ed25519("k1").unwrap(), &key(20))
        .unwrap();
    // With the clock (no date given), as a verifier would.
    verify_jcs(&issued.to_string(), resolver(Some(&doc)), None)
        .await
        .unwrap();

    for (what, path, value) in [
        ("hosting", "/credentialSubject/hosting", json!(false)),
        (
            "user ID",
            "/credentialSubject/matrixUserId",
            json!("@mallory:chat.example"),
        ),
        ("window", "/validUntil", json!("2099-01-01T00:00:00Z")),
        (
            "proof time",
            "/proof/created",
            json!("2001-01-01T00:00:00Z"),
        ),
    ] {
        let mut changed = issued.clone();
        *changed.pointer_mut(path).unwrap() = value;
        let got = verify_jcs(&changed.to_string(), resolver(Some(&doc)), None).await;
        assert!(
            got.is_err(),
            "ssi accepted a credential whose {what} changed"
        );
    }

    let other = server_doc("chat.example", 21, now);
    let got = verify_jcs(&issued.to_string(), resolver(Some(&other)), None).await;
    assert!(
        got.is_err(),
        "ssi accepted a signature by a key the document does not list"
    );
    let unknown = server_doc("elsewhere.example", 20, now);
    let got = verify_jcs(&issued.to_string(), resolver(Some(&unknown)), None).await;
    assert!(
        got.is_err(),
        "ssi resolved an issuer it has no document for"
    );
}

#[tokio::test]
async fn expired_and_future_credentials_are_refused_by_ssi() {
    let now = now_ms();
    let doc = server_doc("chat.example", 20, now);
    let k = KeyId::ed25519("k1").unwrap();
    let expired = binding(now - 8 * DAY, now - DAY)
        .issue(&k, &key(20))
        .unwrap();
    let err = verify_jcs(&expired.to_string(), resolver(Some(&doc)), None)
        .await
        .unwrap_err();
    assert!(err.starts_with("invalid"), "{err}");
    // The same credential verifies at a time inside its window: the refusal was the window.
    verify_jcs(
        &expired.to_string(),
        resolver(Some(&doc)),
        Some(at(now - 2 * DAY)),
    )
    .await
    .unwrap();
    let future = binding(now + DAY, now + 2 * DAY)
        .issue(&k, &key(20))
        .unwrap();
    let err = verify_jcs(&future.to_string(), resolver(Some(&doc)), None)
        .await
        .unwrap_err();
    assert!(err.starts_with("invalid"), "{err}");
}

#[tokio::test]
async fn an_identity_statement_verifies_through_ssi_did_key() {
    let statement = IdentityStatement {
        did: Did::from_key(&key(3).verifying_key()).unwrap(),
        user_id: UserId::parse("@carol:chat.example").unwrap(),
        created: now_ms() - DAY,
    }
    .issue(&key(3))
    .unwrap();
    verify_jcs(&statement.to_string(), Resolver::default(), None)
        .await
        .unwrap();
    let mut changed = statement;
    changed["credentialSubject"]["alsoKnownAs"] = json!("matrix:u/mallory:chat.example");
    let got = verify_jcs(&changed.to_string(), Resolver::default(), None).await;
    assert!(got.is_err(), "ssi accepted a changed identity statement");
}

#[tokio::test]
async fn ssi_proves_roam_credentials_with_eddsa_rdfc_2022() {
    let now = now_ms();
    let doc = server_doc("chat.example", 20, now);
    let unsigned = binding(now - DAY, now + DAY).to_value().unwrap();
    let method = did_web::method_id("did:web:chat.example", &KeyId::ed25519("k1").unwrap());
    let signed = sign_rdfc(&unsigned, &method, &key(20), resolver(Some(&doc)))
        .await
        .unwrap();
    assert_eq!(signed["proof"]["cryptosuite"], "eddsa-rdfc-2022");
    verify_rdfc(&signed.to_string(), resolver(Some(&doc)), None)
        .await
        .unwrap();
    let mut changed = signed.clone();
    changed["credentialSubject"]["hosting"] = json!(false);
    let got = verify_rdfc(&changed.to_string(), resolver(Some(&doc)), None).await;
    assert!(
        got.is_err(),
        "ssi accepted a changed rdfc-proved credential"
    );
    // roam-vc checks eddsa-jcs-2022 only, and says so rather than misreading the proof.
    let err = roam_vc::credential::verify(&signed, Some(&doc), now).unwrap_err();
    assert_eq!(err.class(), "malformed", "{err}");
}

#[tokio::test]
async fn roam_vc_accepts_what_ssi_signs_with_eddsa_jcs_2022() {
    let now = now_ms();
    let doc = server_doc("chat.example", 20, now);
    let unsigned = binding(now - DAY, now + DAY).to_value().unwrap();
    let method = did_web::method_id("did:web:chat.example", &KeyId::ed25519("k1").unwrap());
    let signed = sign_jcs(&unsigned, &method, &key(20), resolver(Some(&doc)))
        .await
        .unwrap();
    verify_jcs(&signed.to_string(), resolver(Some(&doc)), None)
        .await
        .unwrap();
    let ok = roam_vc::credential::verify(&signed, Some(&doc), now).unwrap();
    assert_eq!(ok.to_json()["user_id"], "@carol:chat.example");
}

/// The point of this graph: ssi turned serde_json's `arbitrary_precision` on, so the other
/// tests here (identity-core's and roam-vc's own, compiled in this graph) ran with it.
#[test]
fn this_graph_has_serde_json_arbitrary_precision() {
    // Without the feature the number becomes the f64 0.1; with it, the text is kept.
    let v: Value = serde_json::from_str("0.1000000000000000000001").unwrap();
    assert_eq!(
        v.to_string(),
        "0.1000000000000000000001",
        "arbitrary_precision is off: this graph no longer tests what ssi turns on"
    );
}
