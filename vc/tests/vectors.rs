//! spec/vectors/credentials.json: the committed file is the generator's output, and every
//! vector gives its verdict through roam-vc.

#[path = "support/gen.rs"]
mod generator;

use serde_json::Value;

fn committed() -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(generator::PATH);
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

#[test]
fn committed_vectors_match_the_generator() {
    assert_eq!(
        committed(),
        generator::file(),
        "stale: run `{}`",
        generator::GENERATOR
    );
}

#[test]
fn every_vector_gives_its_verdict() {
    let file = committed();
    let now = file["now"].as_u64().unwrap();
    for v in file["vectors"].as_array().unwrap() {
        let input = &v["input"];
        let got =
            roam_vc::credential::verify(&input["credential"], input.get("issuer_document"), now);
        match (v["valid"].as_bool().unwrap(), got) {
            (true, Ok(ok)) => assert_eq!(ok.to_json(), v["expected"], "{}", v["name"]),
            (false, Err(e)) => assert_eq!(e.class(), v["error"]["class"], "{}: {e}", v["name"]),
            (want, got) => panic!("{}: wanted valid={want}, got {got:?}", v["name"]),
        }
    }
}
