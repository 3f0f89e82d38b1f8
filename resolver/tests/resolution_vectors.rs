//! `spec/vectors/resolution.json` (spec §10.4): the committed file is exactly what the
//! deterministic generator writes, and every vector's answer is what
//! [`roam_resolver::decide`] gives — through the conformance entry point, as a runner for
//! another implementation would ask it.

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

#[test]
fn every_vector_gives_its_answer() {
    let file = committed();
    let vectors = file["vectors"].as_array().unwrap();
    assert!(vectors.len() >= 10);
    for v in vectors {
        let name = v["name"].as_str().unwrap();
        let got = run_conformance(&json!({"suite": "resolution", "input": v["input"]}));
        let want = if v["valid"] == json!(true) {
            json!({"valid": true, "expected": v["expected"]})
        } else {
            json!({"valid": false, "error": v["error"]})
        };
        assert_eq!(
            got,
            want,
            "vector {name}:\n got  {}\n want {}",
            serde_json::to_string_pretty(&got).unwrap(),
            serde_json::to_string_pretty(&want).unwrap()
        );
    }
}

#[test]
fn a_top_level_now_overrides_the_input() {
    let file = committed();
    let v = file["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "cached_within_ttl")
        .unwrap();
    // Eleven minutes later the TTL has passed and nobody was asked: nothing to go on but the
    // cache, so the answer is stale.
    let now = v["input"]["now"].as_u64().unwrap() + 11 * 60 * 1000;
    let got = run_conformance(&json!({"suite": "resolution", "now": now, "input": v["input"]}));
    assert_eq!(got["expected"]["status"], "stale", "{got}");
    let bad = run_conformance(&json!({"suite": "resolution"}));
    assert_eq!(bad["error"]["class"], "bad_request");
}
