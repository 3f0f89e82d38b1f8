//! Bindings as W3C credentials, end to end (spec §14): a running server's did:web document
//! agrees with its Matrix key document; the credential it issues verifies with roam-vc, with
//! `roam verify` (issuer document fetched over HTTP, binding checked against the account log)
//! and with an independent Data Integrity implementation (Digital Bazaar's eddsa-jcs-2022
//! cryptosuite under Node, installed by .ci/setup-node.sh); tampering, expiry and a wrong
//! issuer are refused with their class.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use roam_identity_core::{b64, did};
use serde_json::{Value, json};

const USER: &str = "@alice:roam.test";

fn roam(bin: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(bin)
        .args(args)
        .env_remove("ROAM_DATA_DIR")
        .output()
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

/// Runs the independent verifier; fails the test with a clear message when Node or the
/// package is missing (never skips).
fn node_verify(credential: &Path, did_document: &Path) -> (bool, String) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("vc-verify");
    assert!(
        dir.join("node_modules/@digitalbazaar/eddsa-jcs-2022-cryptosuite")
            .is_dir(),
        "the independent verifier is not installed: run `bash .ci/setup-node.sh` (scripts/test.sh does)"
    );
    let out = Command::new("node")
        .arg(dir.join("verify.mjs"))
        .args([credential, did_document])
        .output()
        .unwrap_or_else(|e| panic!("cannot run `node` ({e}): install Node.js (.ci/setup-node.sh)"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn write(dir: &Path, name: &str, v: &Value) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, serde_json::to_vec_pretty(v).unwrap()).unwrap();
    p
}

async fn server_with_alice(dir: &Path) -> (TestServer, Owner) {
    let server = start(dir, |_| {}).await;
    let owner = Owner::new(41, USER, &[SERVER_NAME]);
    let body = json!({
        "username": "alice",
        "auth": {"type": "m.login.dummy"},
        "org.roam.genesis": owner.ops[0].value,
        "inhibit_login": true,
    });
    let (s, r) = server
        .client()
        .post("/_matrix/client/v3/register", body)
        .await;
    assert_eq!(s, 200, "{r}");
    (server, owner)
}

#[tokio::test]
async fn did_web_document_lists_the_matrix_keys() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _) = server_with_alice(dir.path()).await;
    let c = server.client();
    let (s, doc) = c.get("/.well-known/did.json").await;
    assert_eq!(s, 200, "{doc}");
    let (_, keys) = c.get("/_matrix/key/v2/server").await;
    assert_eq!(doc["id"], "did:web:roam.test");
    let verify_keys = keys["verify_keys"].as_object().unwrap();
    let methods = doc["verificationMethod"].as_array().unwrap();
    assert_eq!(methods.len(), verify_keys.len());
    for (key_id, k) in verify_keys {
        let raw: [u8; 32] = b64::decode_array(k["key"].as_str().unwrap()).unwrap();
        let key = did::ed25519_key_strict(&raw).unwrap();
        let id = format!("did:web:roam.test#{key_id}");
        let vm = methods
            .iter()
            .find(|m| m["id"] == id.as_str())
            .expect("key listed");
        assert_eq!(vm["type"], "Multikey");
        assert_eq!(vm["controller"], "did:web:roam.test");
        assert_eq!(vm["publicKeyMultibase"], did::encode_multikey(&key));
        assert!(
            doc["assertionMethod"]
                .as_array()
                .unwrap()
                .contains(&json!(id))
        );
    }
    server.stop().await;
}

// Multi-threaded: the `roam` subprocesses block this thread while the server answers them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credential_verifies_here_with_roam_verify_and_independently() {
    let dir = tempfile::tempdir().unwrap();
    let (server, owner) = server_with_alice(dir.path()).await;
    let c = server.client();
    let (s, doc) = c.get("/.well-known/did.json").await;
    assert_eq!(s, 200);
    let (s, cred) = c
        .get(&format!("/_roam/v1/users/{}/credential", enc(USER)))
        .await;
    assert_eq!(s, 200, "{cred}");
    assert_eq!(cred["issuer"], "did:web:roam.test");
    assert_eq!(cred["proof"]["cryptosuite"], "eddsa-jcs-2022");

    // roam-vc
    let v = roam_vc::credential::verify(&cred, Some(&doc), now()).unwrap();
    assert_eq!(v.did.as_str(), owner.did());
    assert_eq!(v.user_id.as_str(), USER);
    assert_eq!(v.hosting, Some(true));
    let mut tampered = cred.clone();
    tampered["credentialSubject"]["hosting"] = json!(false);
    let err = roam_vc::credential::verify(&tampered, Some(&doc), now()).unwrap_err();
    assert_eq!(err.class(), "bad_proof");
    let later = v.valid_until.unwrap() + 1;
    let err = roam_vc::credential::verify(&cred, Some(&doc), later).unwrap_err();
    assert_eq!(err.class(), "expired");

    // The independent verifier.
    let files = tempfile::tempdir().unwrap();
    let cred_file = write(files.path(), "credential.json", &cred);
    let doc_file = write(files.path(), "did.json", &doc);
    let tampered_file = write(files.path(), "tampered.json", &tampered);
    let (ok, out) = node_verify(&cred_file, &doc_file);
    assert!(
        ok,
        "the independent verifier refused Roam's credential: {out}"
    );
    let (ok, out) = node_verify(&tampered_file, &doc_file);
    assert!(
        !ok,
        "the independent verifier accepted a tampered credential: {out}"
    );

    // `roam verify`: the issuer's document and the account log over HTTP.
    let bin = roam_bin();
    let over = format!("roam.test={}", server.base);
    let cred_path = cred_file.to_str().unwrap();
    let base_args = [
        "--federation-override",
        &over,
        "--allow-private-fetch",
        "verify",
    ];
    let (ok, out, err) = roam(&bin, &[&base_args[..], &[cred_path]].concat());
    assert!(ok, "roam verify refused the credential: {out} {err}");
    assert!(
        out.contains(&format!(
            "valid credential (RoamIdentityBinding): {} is {USER}",
            owner.did()
        )),
        "{out}"
    );
    let (ok, out, err) = roam(
        &bin,
        &[&base_args[..], &[tampered_file.to_str().unwrap(), "--json"]].concat(),
    );
    assert!(!ok);
    assert!(
        out.contains("\"bad_proof\"") && err.contains("altered"),
        "{out} {err}"
    );
    let later = later.to_string();
    let (ok, _, err) = roam(
        &bin,
        &[&base_args[..], &[cred_path, "--now", &later]].concat(),
    );
    assert!(!ok && err.contains("expired"), "{err}");

    // The account holder's own identity statement, checked against the log on the server.
    let statement = roam_vc::IdentityStatement {
        did: roam_identity_core::Did::parse(&owner.did()).unwrap(),
        user_id: roam_identity_core::UserId::parse(USER).unwrap(),
        created: now(),
    }
    .issue(&owner.update)
    .unwrap();
    let st_file = write(files.path(), "statement.json", &statement);
    let (ok, out, err) = roam(
        &bin,
        &[&base_args[..], &[st_file.to_str().unwrap()]].concat(),
    );
    assert!(ok, "{out} {err}");
    assert!(out.contains("VerifiableIdentityStatement"), "{out}");
    let stranger = roam_vc::IdentityStatement {
        did: roam_identity_core::Did::parse(&owner.did()).unwrap(),
        user_id: roam_identity_core::UserId::parse(USER).unwrap(),
        created: now(),
    }
    .issue(&ed25519_dalek::SigningKey::from_bytes(&[9; 32]))
    .unwrap();
    let st_file = write(files.path(), "stranger.json", &stranger);
    let (ok, _, err) = roam(
        &bin,
        &[&base_args[..], &[st_file.to_str().unwrap()]].concat(),
    );
    assert!(!ok && err.contains("update key"), "{err}");

    // No credential for a user ID without a portable identity; bad IDs are refused.
    let (s, e) = c
        .get(&format!(
            "/_roam/v1/users/{}/credential",
            enc("@bob:roam.test")
        ))
        .await;
    assert_err(&(s, e), 404, "M_NOT_FOUND");
    let (s, e) = c.get("/_roam/v1/users/bob/credential").await;
    assert_err(&(s, e), 400, "M_INVALID_PARAM");
    server.stop().await;
}
