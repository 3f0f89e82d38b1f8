//! Checks every vector in spec/vectors/*.json (Roam's own formats) against the implementation,
//! and that the committed files are exactly what the deterministic generator produces.

mod support;

use roam_identity_core::attestation::{self, AttestationError};
use roam_identity_core::bundle::{self, Attested, Bundle, BundleError};
use roam_identity_core::canonical::CanonicalError;
use roam_identity_core::log::{self, LogError, SignedOp};
use roam_identity_core::server_keys::{self, ServerKeyError, ServerKeys};
use roam_identity_core::{Did, DidError, IdError, ServerName, UserId, b64, canonical, did};
use serde_json::{Value, json};
use support::{expect_error, generator, load, vectors};

#[test]
fn committed_vectors_match_the_generator() {
    for (path, generated) in generator::all() {
        assert_eq!(
            load(path),
            generated,
            "{path} is stale: run `{}`",
            generator::GENERATOR
        );
    }
}

fn run_log(input: &Value, now: u64) -> Result<log::VerifiedLog, log::LogError> {
    if let Some(ops) = input.get("ops") {
        return log::verify_values(ops.as_array().unwrap(), None, now);
    }
    if let Some(raw) = input.get("ops_raw") {
        // §5.3: the count comes before any op is parsed.
        let count = raw.as_array().unwrap().len();
        if count > log::MAX_LOG_OPS {
            return Err(LogError::LogTooLarge { count });
        }
        let mut ops = Vec::new();
        for (i, text) in raw.as_array().unwrap().iter().enumerate() {
            let op = SignedOp::from_json(text.as_str().unwrap().as_bytes())
                .map_err(|e| log::reindex(e, i))?;
            ops.push(op);
        }
        return log::verify_log(&ops, None, now);
    }
    let rep = &input["ops_repeat"];
    let ops = vec![rep["op"].clone(); rep["times"].as_u64().unwrap() as usize];
    log::verify_values(&ops, None, now)
}

fn state_json(v: &log::VerifiedLog) -> Value {
    let s = &v.state;
    json!({
        "did": s.did.as_str(),
        "update_key": did::encode_multikey(&s.update_key),
        "next_key": s.next_key.to_string(),
        "user_ids": s.user_ids.iter().map(UserId::as_str).collect::<Vec<_>>(),
        "servers": s.servers.iter().map(|x| x.as_str()).collect::<Vec<_>>(),
        "devices": s.devices.iter().map(|(k, d)| (k.to_string(), json!({"ed25519": b64::encode(&d.ed25519), "curve25519": b64::encode(&d.curve25519)}))).collect::<serde_json::Map<_, _>>(),
        "head": s.head.to_string(),
        "seq": s.seq,
        "created_at": s.created_at,
        "updated_at": s.updated_at,
        "deactivated": s.deactivated,
        "superseded": v.superseded.iter().map(|o| o.hash.to_string()).collect::<Vec<_>>(),
    })
}

#[test]
fn account_log_vectors() {
    let file = load("spec/vectors/account-log.json");
    let now = file["now"].as_u64().unwrap();
    let mut classes = std::collections::BTreeSet::new();
    for v in vectors(&file) {
        let name = v["name"].as_str().unwrap();
        let result = run_log(&v["input"], now);
        // Single and batch signature checking must accept exactly the same logs.
        if let Some(ops) = v["input"].get("ops").and_then(Value::as_array) {
            let parsed: Result<Vec<SignedOp>, _> =
                ops.iter().cloned().map(SignedOp::from_value).collect();
            if let Ok(parsed) = parsed {
                let single = log::verify_log_with(&parsed, None, now, log::SignatureCheck::Single);
                assert_eq!(single.is_ok(), result.is_ok(), "{name}: single vs batch");
                if let (Err(a), Err(b)) = (&single, &result) {
                    assert_eq!(a.class(), b.class(), "{name}: single vs batch");
                }
            }
        }
        if v["valid"].as_bool().unwrap() {
            let got = result.unwrap_or_else(|e| panic!("{name}: expected valid, got {e}"));
            let mut got = state_json(&got);
            let mut want = v["expected"].clone();
            // Superseded ops are a set.
            for x in [&mut got, &mut want] {
                x["superseded"]
                    .as_array_mut()
                    .unwrap()
                    .sort_by(|a, b| a.as_str().cmp(&b.as_str()));
            }
            assert_eq!(got, want, "{name}");
        } else {
            let err = expect_error(v, result, LogError::class);
            let want = &v["error"];
            if let Some(i) = want.get("index") {
                assert_eq!(
                    err.index(),
                    Some(i.as_u64().unwrap() as usize),
                    "{name}: {err}"
                );
            }
            if let Some(ev) = want.get("evidence") {
                let LogError::Equivocation { a, b } = &err else {
                    panic!("{name}")
                };
                let mut pair = vec![a.hash.to_string(), b.hash.to_string()];
                pair.sort();
                assert_eq!(json!(pair), *ev, "{name}");
            }
            classes.insert(err.class());
        }
    }
    // Every log error class a log can produce is covered by at least one vector.
    for class in [
        "malformed",
        "unknown_action",
        "unknown_field",
        "non_canonical",
        "float",
        "integer_range",
        "duplicate_key",
        "op_too_large",
        "log_too_large",
        "too_many",
        "wrong_did",
        "empty",
        "bad_genesis",
        "unknown_prev",
        "seq_gap",
        "time_reversed",
        "from_future",
        "after_deactivate",
        "wrong_signer",
        "commitment_mismatch",
        "genesis_key_mismatch",
        "bad_signature",
        "equivocation",
        "already_claimed",
        "not_claimed",
        "device_exists",
        "unknown_device",
    ] {
        assert!(classes.contains(class), "no vector for error class {class}");
    }
}

#[test]
fn bundle_vectors() {
    let file = load("spec/vectors/bundles.json");
    let now = file["now"].as_u64().unwrap();
    for v in vectors(&file) {
        let name = v["name"].as_str().unwrap();
        let result = Bundle::from_value(&v["input"]).and_then(|b| bundle::verify(&b, None, now));
        if v["valid"].as_bool().unwrap() {
            let vb = result.unwrap_or_else(|e| panic!("{name}: {e}"));
            let want = &v["expected"];
            assert_eq!(
                vb.log.state.head.to_string(),
                want["head"].as_str().unwrap(),
                "{name}"
            );
            assert_eq!(
                json!(vb.log.state.deactivated),
                want["deactivated"],
                "{name}"
            );
            let (mut bound, mut expired, mut missing) = (vec![], vec![], vec![]);
            for u in &vb.log.state.user_ids {
                match vb.binding(u, now) {
                    Attested::Current { .. } => bound.push(u.to_string()),
                    Attested::Expired { .. } => expired.push(u.to_string()),
                    Attested::Missing => missing.push(u.to_string()),
                }
            }
            assert_eq!(json!(bound), want["bound"], "{name}");
            assert_eq!(json!(expired), want["expired"], "{name}");
            assert_eq!(json!(missing), want["unattested"], "{name}");
            let hosting: Vec<String> = vb
                .log
                .state
                .servers
                .iter()
                .filter(|s| matches!(vb.hosting(s, now), Attested::Current { .. }))
                .map(|s| s.to_string())
                .collect();
            assert_eq!(json!(hosting), want["hosting"], "{name}");
        } else {
            expect_error(v, result, BundleError::class);
        }
    }
}

#[test]
fn did_vectors() {
    let file = load("spec/vectors/did-key.json");
    for v in vectors(&file) {
        let name = v["name"].as_str().unwrap();
        let result = Did::parse(v["input"].as_str().unwrap());
        if v["valid"].as_bool().unwrap() {
            let d = result.unwrap_or_else(|e| panic!("{name}: {e}"));
            let pk: String = d
                .verifying_key()
                .as_bytes()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            assert_eq!(
                pk,
                v["expected"]["public_key_hex"].as_str().unwrap(),
                "{name}"
            );
            assert_eq!(
                d.x25519_multikey(),
                v["expected"]["x25519_multikey"].as_str().unwrap(),
                "{name}"
            );
            assert_eq!(d.as_str(), v["input"].as_str().unwrap());
        } else {
            expect_error(v, result, DidError::class);
        }
    }
}

#[test]
fn canonical_vectors() {
    let file = load("spec/vectors/canonical-json.json");
    for v in vectors(&file) {
        let name = v["name"].as_str().unwrap();
        let result = canonical::parse_strict_str(v["input"].as_str().unwrap())
            .and_then(|x| canonical::to_canonical_string(&x));
        if v["valid"].as_bool().unwrap() {
            assert_eq!(result.unwrap(), v["expected"].as_str().unwrap(), "{name}");
        } else {
            expect_error(v, result, CanonicalError::class);
        }
    }
}

#[test]
fn server_name_vectors() {
    let file = load("spec/vectors/server-names.json");
    for v in vectors(&file) {
        let name = v["name"].as_str().unwrap();
        let result = ServerName::parse(v["input"].as_str().unwrap());
        if v["valid"].as_bool().unwrap() {
            let n = result.unwrap_or_else(|e| panic!("{name}: {e}"));
            let got = json!({"host": n.host(), "port": n.port(), "ip_literal": n.is_ip_literal()});
            assert_eq!(got, v["expected"], "{name}");
        } else {
            expect_error(v, result, IdError::class);
        }
    }
}

#[test]
fn key_document_vectors() {
    let file = load("spec/vectors/key-documents.json");
    for v in vectors(&file) {
        let name = v["name"].as_str().unwrap();
        let expected_server =
            ServerName::parse(v["input"]["server_name"].as_str().unwrap()).unwrap();
        let result = server_keys::verify(&v["input"]["document"], &expected_server);
        if v["valid"].as_bool().unwrap() {
            let k = result.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(key_document_json(&k), v["expected"], "{name}");
        } else {
            expect_error(v, result, ServerKeyError::class);
        }
    }
}

fn key_document_json(k: &ServerKeys) -> Value {
    json!({
        "verify_keys": k.verify_keys.iter().map(|(id, key)| (id.to_string(), json!(b64::encode(key.as_bytes())))).collect::<serde_json::Map<_, _>>(),
        "old_verify_keys": k.old_verify_keys.iter().map(|(id, o)| (id.to_string(), json!({"key": b64::encode(o.key.as_bytes()), "expired_ts": o.expired_ts}))).collect::<serde_json::Map<_, _>>(),
        "valid_until_ts": k.valid_until_ts,
    })
}

/// What the attestations suite answers: the key document first, then the attestation.
#[derive(Debug)]
enum AttestationFailure {
    ServerKeys,
    Attestation(AttestationError),
}

fn attestation_class(e: &AttestationFailure) -> &'static str {
    match e {
        AttestationFailure::ServerKeys => "server_keys",
        AttestationFailure::Attestation(e) => e.class(),
    }
}

impl std::fmt::Display for AttestationFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

#[test]
fn attestation_vectors() {
    let file = load("spec/vectors/attestations.json");
    let now = file["now"].as_u64().unwrap();
    for v in vectors(&file) {
        let name = v["name"].as_str().unwrap();
        let doc = &v["input"]["server_keys"];
        let result = doc["server_name"]
            .as_str()
            .and_then(|s| ServerName::parse(s).ok())
            .and_then(|s| server_keys::verify(doc, &s).ok())
            .ok_or(AttestationFailure::ServerKeys)
            .and_then(|keys| {
                attestation::verify(&v["input"]["attestation"], &keys, now)
                    .map_err(AttestationFailure::Attestation)
            });
        if v["valid"].as_bool().unwrap() {
            let a = result.unwrap_or_else(|e| panic!("{name}: {e}"));
            let got = json!({
                "server_name": a.server_name.as_str(), "user_id": a.user_id.as_ref().map(UserId::as_str),
                "did": a.did.as_str(), "head": a.head.to_string(), "hosting": a.hosting,
                "issued_at": a.issued_at, "valid_until": a.valid_until, "current": a.is_current(now)});
            assert_eq!(got, v["expected"], "{name}");
        } else {
            expect_error(v, result, attestation_class);
        }
    }
}

#[test]
fn at_least_forty_vectors() {
    let total: usize = generator::all().iter().map(|(_, v)| vectors(v).len()).sum();
    assert!(total >= 40, "{total}");
}
