//! Answers to the conformance runner (`spec/conformance/run.py`, contract in
//! `spec/vectors/README.md`): one request `{"suite", "now", "input"}` in, one answer
//! `{"valid": true, "expected": …}` or `{"valid": false, "error": {"class", …}}` out. Each
//! suite maps to one function, built on the same identity-core calls every Roam component
//! uses, so `roam verify --conformance` answers exactly what Roam does.

use roam_identity_core::attestation::{self, Attestation};
use roam_identity_core::bundle::{self, Bundle, BundleError};
use roam_identity_core::log::{self, LogError, SignedOp, VerifiedLog};
use roam_identity_core::server_keys::{self, ServerKeys};
use roam_identity_core::{Did, Millis, ServerName, UserId, b64, canonical};
use serde_json::{Map, Value, json};

use crate::verify::{bundle_summary, evidence, state_json};

/// Why a request could not be answered at all (as opposed to a vector whose answer is an
/// error class).
#[derive(Debug, thiserror::Error)]
pub enum ConformanceError {
    #[error("the request is not JSON: {0}")]
    NotJson(#[from] serde_json::Error),
    #[error("the request has no {0}")]
    Missing(&'static str),
    #[error("unknown suite {0:?}")]
    UnknownSuite(String),
}

/// The suites this implementation answers (the vector files' names).
pub const SUITES: &[&str] = &[
    "account-log",
    "attestations",
    "bundles",
    "canonical-json",
    "did-key",
    "key-documents",
    "resolution",
    "server-names",
];

/// Answers one request.
pub fn answer(request: &[u8]) -> Result<Value, ConformanceError> {
    let req: Value = serde_json::from_slice(request)?;
    let suite = req["suite"]
        .as_str()
        .ok_or(ConformanceError::Missing("suite"))?;
    let input = req.get("input").ok_or(ConformanceError::Missing("input"))?;
    let now = req["now"].as_u64();
    let need_now = || now.ok_or(ConformanceError::Missing("now"));
    Ok(match suite {
        "account-log" => answer_log(input, need_now()?),
        "attestations" => answer_attestation(input, need_now()?),
        "bundles" => answer_bundle(input, need_now()?),
        "canonical-json" => answer_canonical(input),
        "did-key" => answer_did(input),
        "key-documents" => answer_key_document(input),
        "server-names" => answer_server_name(input),
        "credentials" => answer_credential(input, need_now()?),
        // §10: the resolver's own decision function answers (cached state, what each source
        // returned, now, TTL → status, servers, notices).
        "resolution" => roam_resolver::decide::run_conformance(&req),
        other => return Err(ConformanceError::UnknownSuite(other.to_owned())),
    })
}

fn valid(expected: Value) -> Value {
    json!({"valid": true, "expected": expected})
}

fn invalid(class: &str) -> Value {
    json!({"valid": false, "error": {"class": class}})
}

fn log_error_json(e: &LogError) -> Value {
    let mut out = json!({"class": e.class()});
    if let Some(i) = e.index() {
        out["index"] = json!(i);
    }
    if let Some(ev) = evidence(e) {
        out["evidence"] = ev;
    }
    out
}

/// `ops` (JSON values), `ops_raw` (JSON texts, counted, then parsed strictly one by one) or
/// `ops_repeat` (`{"op", "times"}`: one op many times, for the size caps).
/// §14: a credential, with its issuer's did:web document for a binding credential.
fn answer_credential(input: &Value, now: Millis) -> Value {
    let credential = input.get("credential").unwrap_or(&Value::Null);
    match roam_vc::credential::verify(credential, input.get("issuer_document"), now) {
        Ok(v) => valid(v.to_json()),
        Err(e) => invalid(e.class()),
    }
}

fn answer_log(input: &Value, now: Millis) -> Value {
    match run_log(input, now) {
        Ok(v) => valid(state_json(&v)),
        Err(e) => json!({"valid": false, "error": log_error_json(&e)}),
    }
}

fn run_log(input: &Value, now: Millis) -> Result<VerifiedLog, LogError> {
    if let Some(ops) = input.get("ops").and_then(Value::as_array) {
        return log::verify_values(ops, None, now);
    }
    if let Some(raw) = input.get("ops_raw").and_then(Value::as_array) {
        // §5.3: the count comes before any op is parsed.
        if raw.len() > log::MAX_LOG_OPS {
            return Err(LogError::LogTooLarge { count: raw.len() });
        }
        let mut ops = Vec::with_capacity(raw.len());
        for (i, text) in raw.iter().enumerate() {
            let text = text.as_str().unwrap_or_default();
            ops.push(SignedOp::from_json(text.as_bytes()).map_err(|e| log::reindex(e, i))?);
        }
        return log::verify_log(&ops, None, now);
    }
    let rep = &input["ops_repeat"];
    let times = rep["times"].as_u64().unwrap_or(0) as usize;
    log::verify_values(&vec![rep["op"].clone(); times], None, now)
}

fn answer_bundle(input: &Value, now: Millis) -> Value {
    match Bundle::from_value(input).and_then(|b| bundle::verify(&b, None, now)) {
        Ok(b) => valid(bundle_summary(&b, now)),
        Err(e) => {
            let mut err = json!({"class": e.class()});
            if let BundleError::Log(le) = &e {
                err = log_error_json(le);
                err["class"] = json!(e.class());
            }
            json!({"valid": false, "error": err})
        }
    }
}

fn answer_did(input: &Value) -> Value {
    match Did::parse(input.as_str().unwrap_or_default()) {
        Ok(d) => valid(json!({
            "public_key_hex": d.verifying_key().as_bytes().iter().map(|b| format!("{b:02x}")).collect::<String>(),
            "x25519_multikey": d.x25519_multikey(),
        })),
        Err(e) => invalid(e.class()),
    }
}

fn answer_canonical(input: &Value) -> Value {
    let text = input.as_str().unwrap_or_default();
    match canonical::parse_strict_str(text).and_then(|v| canonical::to_canonical_string(&v)) {
        Ok(s) => valid(json!(s)),
        Err(e) => invalid(e.class()),
    }
}

fn answer_server_name(input: &Value) -> Value {
    match ServerName::parse(input.as_str().unwrap_or_default()) {
        Ok(n) => {
            valid(json!({"host": n.host(), "port": n.port(), "ip_literal": n.is_ip_literal()}))
        }
        Err(e) => invalid(e.class()),
    }
}

/// `{"server_name", "document"}`: the document verified as that server's.
fn answer_key_document(input: &Value) -> Value {
    let Some(server) = input["server_name"]
        .as_str()
        .and_then(|s| ServerName::parse(s).ok())
    else {
        return invalid("malformed");
    };
    match server_keys::verify(&input["document"], &server) {
        Ok(k) => valid(key_document_json(&k)),
        Err(e) => invalid(e.class()),
    }
}

fn key_document_json(k: &ServerKeys) -> Value {
    let current: Map<String, Value> = k
        .verify_keys
        .iter()
        .map(|(id, key)| (id.to_string(), json!(b64::encode(key.as_bytes()))))
        .collect();
    let old: Map<String, Value> = k
        .old_verify_keys
        .iter()
        .map(|(id, o)| {
            let v = json!({"key": b64::encode(o.key.as_bytes()), "expired_ts": o.expired_ts});
            (id.to_string(), v)
        })
        .collect();
    json!({"verify_keys": current, "old_verify_keys": old, "valid_until_ts": k.valid_until_ts})
}

/// `{"attestation", "server_keys"}`: the key document first (against its own server name;
/// any failure is `server_keys`), then the attestation with those keys.
fn answer_attestation(input: &Value, now: Millis) -> Value {
    let doc = &input["server_keys"];
    let keys = doc["server_name"]
        .as_str()
        .and_then(|s| ServerName::parse(s).ok())
        .and_then(|s| server_keys::verify(doc, &s).ok());
    let Some(keys) = keys else {
        return invalid("server_keys");
    };
    match attestation::verify(&input["attestation"], &keys, now) {
        Ok(a) => valid(attestation_json(&a, now)),
        Err(e) => invalid(e.class()),
    }
}

fn attestation_json(a: &Attestation, now: Millis) -> Value {
    json!({
        "server_name": a.server_name.as_str(),
        "user_id": a.user_id.as_ref().map(UserId::as_str),
        "did": a.did.as_str(),
        "head": a.head.to_string(),
        "hosting": a.hosting,
        "issued_at": a.issued_at,
        "valid_until": a.valid_until,
        "current": a.is_current(now),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_checked() {
        assert!(matches!(
            answer(b"{\"suite\":\"nope\",\"input\":1}"),
            Err(ConformanceError::UnknownSuite(_))
        ));
        assert!(matches!(
            answer(b"{\"suite\":\"account-log\",\"input\":{}}"),
            Err(ConformanceError::Missing("now"))
        ));
        let a = answer(br#"{"suite":"canonical-json","input":"{\"b\":1,\"a\":2}"}"#).unwrap();
        assert_eq!(a, json!({"valid": true, "expected": "{\"a\":2,\"b\":1}"}));
    }
}
