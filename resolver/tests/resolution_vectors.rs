//! `spec/vectors/resolution.json` (spec §10.4): the committed file is exactly what the
//! deterministic generator writes, and every vector's answer is what
//! [`roam_resolver::decide`] gives — through the conformance entry point, as a runner for
//! another implementation would ask it — and what the real `Cached<NetworkResolver>` gives
//! when test servers return what the vector says (so the model and the resolver agree).

#[path = "support/attest.rs"]
mod attest;
#[path = "support/resolution_vectors.rs"]
mod generator;

use roam_resolver::decide::run_conformance;
use serde_json::{Value, json};

fn committed() -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(generator::PATH);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap()
}

#[test]
fn committed_vectors_match_the_generator() {
    assert_eq!(
        committed(),
        generator::generate(),
        "{} is stale: run `{}`",
        generator::PATH,
        generator::GENERATOR
    );
}

/// The committed vector named `name`.
fn vector(name: &str) -> Value {
    let file = committed();
    let v = file["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == name);
    v.unwrap().clone()
}

/// `got` is the vector's answer: `{"valid": true, "expected"}` or `{"valid": false, "error"}`.
fn assert_gives_answer(v: &Value, got: &Value) {
    let name = v["name"].as_str().unwrap();
    let want = if v["valid"] == json!(true) {
        json!({"valid": true, "expected": v["expected"]})
    } else {
        json!({"valid": false, "error": v["error"]})
    };
    assert_eq!(
        got,
        &want,
        "vector {name}:\n got  {}\n want {}",
        serde_json::to_string_pretty(got).unwrap(),
        serde_json::to_string_pretty(&want).unwrap()
    );
}

#[test]
fn every_vector_gives_its_answer() {
    let file = committed();
    let vectors = file["vectors"].as_array().unwrap();
    assert!(vectors.len() >= 10);
    for v in vectors {
        let got = run_conformance(&json!({"suite": "resolution", "input": v["input"]}));
        assert_gives_answer(v, &got);
    }
}

#[test]
fn a_top_level_now_overrides_the_input() {
    let v = &vector("cached_within_ttl");
    // Eleven minutes later the TTL has passed and nobody was asked: nothing to go on but the
    // cache, so the answer is stale.
    let now = v["input"]["now"].as_u64().unwrap() + 11 * 60 * 1000;
    let got = run_conformance(&json!({"suite": "resolution", "now": now, "input": v["input"]}));
    assert_eq!(got["expected"]["status"], "stale", "{got}");
    let bad = run_conformance(&json!({"suite": "resolution"}));
    assert_eq!(bad["error"]["class"], "bad_request");
}

mod support;

use roam_identity_core::{Did, Millis, ServerName, UserId};
use roam_resolver::decide::{DecisionInput, answer_to_value, decide};
use roam_resolver::{CachePolicy, CacheStore, ManualClock, ResolveStatus, Resolver};
use support::{Origin, cached_with, dead_url, resolver_with};

/// Seeds of the generator's servers (`Server::new`): the test origins sign with the same keys.
fn seed_of(server: &str) -> u8 {
    match server {
        "a.test" => 1,
        "b.test" => 2,
        "c.test" => 3,
        other => panic!("no seed for {other}"),
    }
}

/// Replays one vector against the real resolver: test origins serve what the vector's sources
/// returned, the cache holds its record, the clock reads its `now`.
async fn replay(input: &Value) -> Value {
    let parsed = DecisionInput::from_value(input).unwrap();
    let now: Millis = parsed.now;
    let mut origins = Vec::new();
    let mut dead = Vec::new();
    for s in input["sources"].as_array().unwrap() {
        let server = s["server"].as_str().unwrap();
        let answer = &s["answer"];
        if answer == "unreachable" {
            dead.push((ServerName::parse(server).unwrap(), dead_url().await));
            continue;
        }
        let o = Origin::start(server, seed_of(server)).await;
        if let Some(bundle) = answer.get("bundle") {
            let did = Did::parse(bundle["did"].as_str().unwrap()).unwrap();
            if s["role"] == "origin" {
                let subject = UserId::parse(input["subject"].as_str().unwrap()).unwrap();
                o.publish_user(&subject, bundle.clone());
            } else {
                o.publish_account(&did, bundle.clone());
                o.publish_log(&did, bundle["log"].as_array().unwrap().clone());
            }
        }
        origins.push(o);
    }
    let clock = ManualClock::new(now);
    let refs: Vec<&Origin> = origins.iter().collect();
    let network = resolver_with(&refs, &clock, |c| {
        for (name, url) in dead {
            c.overrides.insert(name, url);
        }
    });
    let store = CacheStore::in_memory().unwrap();
    if let Some(c) = &parsed.cached {
        // The record the cache holds: the answer the cached bundle gave when it was verified.
        let mut at_then = parsed.clone();
        at_then.now = c.verified_at;
        at_then.sources.clear();
        let mut record = decide(&at_then).unwrap();
        record.status = ResolveStatus::Verified;
        store.put(&record).await.unwrap();
    }
    let policy = CachePolicy {
        positive_ttl_ms: parsed.ttl_ms,
        negative_ttl_ms: 1000,
    };
    let cached = cached_with(network, &store, &clock, policy);
    let answer = match &parsed.subject {
        roam_resolver::decide::Subject::User(u) => cached.resolve_user(u).await,
        // The servers the vector lists are the ones the caller names (hints), in order.
        roam_resolver::decide::Subject::Did(d) => {
            let hints: Vec<ServerName> = parsed.sources.iter().map(|s| s.server.clone()).collect();
            cached.resolve_did_via(d, &hints).await
        }
    };
    for mut o in origins {
        o.stop().await;
    }
    answer_to_value(&answer)
}

/// The model and the resolver agree: every vector's answer is what `Cached<NetworkResolver>`
/// gives when real (test) servers return what the vector says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_resolver_gives_every_vector_answer() {
    let file = committed();
    for v in file["vectors"].as_array().unwrap() {
        let got = replay(&v["input"]).await;
        assert_gives_answer(v, &got);
    }
}

/// A failover answer is repeated as `cached` only while the attestation its binding rests on
/// holds (§10.3), whatever the TTL.
#[test]
fn a_failover_answer_is_fresh_only_while_its_binding_attestation_holds() {
    let v = &vector("failover_by_user_id");
    let r = decide(&DecisionInput::from_value(&v["input"]).unwrap()).unwrap();
    let until = v["expected"]["notices"][2]["until"].as_u64().unwrap();
    assert_eq!(r.fresh_until(u64::MAX / 2), until);
    assert_eq!(r.fresh_until(1000), r.verified_at + 1000);
}
