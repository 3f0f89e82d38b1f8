//! `roam-ssi-verify CREDENTIAL.json DID_DOCUMENT.json`: verifies a credential with ssi (the
//! `eddsa-jcs-2022` suite on ssi's framework, or ssi's own `eddsa-rdfc-2022`, as the proof
//! says), offline: the issuer's DID document is the one given. Prints
//! `{"verified": true|false, "error": "..."}` (the shape of `tests/vc-verify/verify.mjs`) and
//! exits 0 when verified, 1 when not, 2 on a usage error.

use std::process::ExitCode;

use roam_vc_ssi::{Resolver, verify_jcs, verify_rdfc};
use serde_json::{Value, json};

fn read(path: &str) -> Result<(String, Value), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let value = serde_json::from_str(&text).map_err(|e| format!("{path} is not JSON: {e}"))?;
    Ok((text, value))
}

async fn run(credential: &str, document: &str) -> Result<(), String> {
    let (text, value) = read(credential)?;
    let (_, doc) = read(document)?;
    let resolver = Resolver::with_document(&doc)?;
    match value["proof"]["cryptosuite"].as_str() {
        Some("eddsa-rdfc-2022") => verify_rdfc(&text, resolver, None).await,
        _ => verify_jcs(&text, resolver, None).await,
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [credential, document] = args.as_slice() else {
        eprintln!("usage: roam-ssi-verify CREDENTIAL.json DID_DOCUMENT.json");
        return ExitCode::from(2);
    };
    let (verified, error) = match run(credential, document).await {
        Ok(()) => (true, Value::Null),
        Err(e) => (false, json!(e)),
    };
    println!("{}", json!({"verified": verified, "error": error}));
    if verified {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
