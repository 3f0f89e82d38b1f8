//! Offline verification of what a user or an auditor holds — an account log, a bundle or an
//! exported account file — into a report: the account state, each user ID's binding and each
//! server's hosting attestation, or the error class, the op at fault and the evidence.
//!
//! The conformance runner's answers ([`crate::conformance`]) use the same state and bundle
//! shapes, so `roam verify` and the vectors cannot disagree.

use roam_identity_core::bundle::{self, Attested, Bundle, BundleError, VerifiedBundle};
use roam_identity_core::log::{self, LogError, VerifiedLog};
use roam_identity_core::{Millis, UserId, b64, canonical, did};
use serde_json::{Map, Value, json};

use crate::export::EXPORT_TYPE;

/// What a file turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A JSON array of signed ops, or `{"ops": [...]}` (the `/log` answer).
    Log,
    /// A `roam.bundle`: log, attestations and key documents.
    Bundle,
    /// A `roam.account-export` file (its bundle is what is verified).
    Export,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Log => "log",
            Kind::Bundle => "bundle",
            Kind::Export => "export",
        }
    }
}

/// Why a file did not verify.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("not strict JSON ({class}): {source}", class = .source.class())]
    Json { source: canonical::CanonicalError },
    #[error(
        "not a log, bundle or account export: expected a JSON array of ops, {{\"ops\": [...]}}, \
         a bundle (\"log\" and \"attestations\") or {{\"type\": \"{EXPORT_TYPE}\"}}"
    )]
    UnknownKind,
    #[error("the log does not verify ({class}): {source}", class = .source.class())]
    Log { source: LogError },
    #[error("the {kind} does not verify ({class}): {source}", kind = .kind.name(), class = .source.class())]
    Bundle { kind: Kind, source: BundleError },
}

impl VerifyError {
    /// The protocol error class (`spec/protocol.md` §11), or `malformed`/`unknown_kind`.
    pub fn class(&self) -> &'static str {
        match self {
            VerifyError::Json { source } => source.class(),
            VerifyError::UnknownKind => "unknown_kind",
            VerifyError::Log { source } => source.class(),
            VerifyError::Bundle { source, .. } => source.class(),
        }
    }

    /// The error as JSON: class, message, and the op index and fork evidence when known.
    pub fn to_json(&self) -> Value {
        let mut out = json!({"class": self.class(), "message": self.to_string()});
        let log_error = match self {
            VerifyError::Log { source } => Some(source),
            VerifyError::Bundle {
                source: BundleError::Log(source),
                ..
            } => Some(source),
            _ => None,
        };
        if let Some(e) = log_error {
            out["index"] = json!(e.index());
            if let Some(ev) = evidence(e) {
                out["evidence"] = ev;
            }
        }
        out
    }
}

/// The two ops of an equivocation, by hash (sorted), as the vectors write them.
pub(crate) fn evidence(e: &LogError) -> Option<Value> {
    let LogError::Equivocation { a, b } = e else {
        return None;
    };
    let mut pair = vec![a.hash.to_string(), b.hash.to_string()];
    pair.sort();
    Some(json!(pair))
}

/// A verified file: what it was and what it proves at `now`.
#[derive(Debug)]
pub struct Report {
    pub kind: Kind,
    pub now: Millis,
    pub log: VerifiedLog,
    /// Present for bundles and exports.
    pub bundle: Option<VerifiedBundle>,
}

/// Reads `bytes` (strict JSON), works out what it is and verifies it at `now`.
pub fn verify_document(bytes: &[u8], now: Millis) -> Result<Report, VerifyError> {
    let value = canonical::parse_strict(bytes).map_err(|source| VerifyError::Json { source })?;
    let (kind, bundle_value) = match classify(&value)? {
        Classified::Ops(ops) => {
            let log =
                log::verify_values(ops, None, now).map_err(|source| VerifyError::Log { source })?;
            return Ok(Report {
                kind: Kind::Log,
                now,
                log,
                bundle: None,
            });
        }
        Classified::Bundle(kind, b) => (kind, b),
    };
    let verified = Bundle::from_value(bundle_value)
        .and_then(|b| bundle::verify(&b, None, now))
        .map_err(|source| VerifyError::Bundle { kind, source })?;
    Ok(Report {
        kind,
        now,
        log: verified.log.clone(),
        bundle: Some(verified),
    })
}

enum Classified<'a> {
    Ops(&'a [Value]),
    Bundle(Kind, &'a Value),
}

fn classify(value: &Value) -> Result<Classified<'_>, VerifyError> {
    if let Some(ops) = value.as_array() {
        return Ok(Classified::Ops(ops));
    }
    let obj = value.as_object().ok_or(VerifyError::UnknownKind)?;
    if obj.get("type").and_then(Value::as_str) == Some(EXPORT_TYPE) {
        let b = obj.get("bundle").ok_or(VerifyError::UnknownKind)?;
        return Ok(Classified::Bundle(Kind::Export, b));
    }
    if obj.contains_key("log") && obj.contains_key("attestations") {
        return Ok(Classified::Bundle(Kind::Bundle, value));
    }
    match obj.get("ops").and_then(Value::as_array) {
        Some(ops) => Ok(Classified::Ops(ops)),
        None => Err(VerifyError::UnknownKind),
    }
}

impl Report {
    /// The whole report as JSON: kind, state, and for bundles the bindings and hosting.
    pub fn to_json(&self) -> Value {
        let mut out = json!({
            "kind": self.kind.name(),
            "valid": true,
            "now": self.now,
            "state": state_json(&self.log),
        });
        if let Some(b) = &self.bundle {
            let state = &b.log.state;
            out["bindings"] = attested_map(&state.user_ids, |u| b.binding(u, self.now));
            out["hosting"] = attested_map(&state.servers, |s| b.hosting(s, self.now));
            out["fetched_at"] = json!(b.fetched_at);
            out["source"] = json!(b.source);
        }
        out
    }
}

/// The account state in the vectors' shape (`spec/vectors/account-log.json` `expected`).
pub fn state_json(v: &VerifiedLog) -> Value {
    let s = &v.state;
    let devices: Map<String, Value> = s
        .devices
        .iter()
        .map(|(k, d)| {
            let keys = json!({"ed25519": b64::encode(&d.ed25519), "curve25519": b64::encode(&d.curve25519)});
            (k.to_string(), keys)
        })
        .collect();
    let mut superseded: Vec<String> = v.superseded.iter().map(|o| o.hash.to_string()).collect();
    superseded.sort();
    json!({
        "did": s.did.as_str(),
        "head": s.head.to_string(),
        "seq": s.seq,
        "update_key": did::encode_multikey(&s.update_key),
        "next_key": s.next_key.to_string(),
        "user_ids": s.user_ids.iter().map(UserId::as_str).collect::<Vec<_>>(),
        "servers": s.servers.iter().map(|x| x.as_str()).collect::<Vec<_>>(),
        "devices": devices,
        "created_at": s.created_at,
        "updated_at": s.updated_at,
        "deactivated": s.deactivated,
        "superseded": superseded,
    })
}

fn attested_json(a: Attested) -> Value {
    match a {
        Attested::Current { valid_until } => {
            json!({"status": "current", "valid_until": valid_until})
        }
        Attested::Expired { valid_until } => {
            json!({"status": "expired", "valid_until": valid_until})
        }
        Attested::Missing => json!({"status": "missing"}),
    }
}

/// `{name: {"status", "valid_until"?}}` for each item, judged by `attested`.
fn attested_map<T: std::fmt::Display>(items: &[T], attested: impl Fn(&T) -> Attested) -> Value {
    let map: Map<String, Value> = items
        .iter()
        .map(|x| (x.to_string(), attested_json(attested(x))))
        .collect();
    Value::Object(map)
}

/// The bundle suite's `expected`: bound, expired and unattested user IDs, and the servers
/// whose hosting attestation is current.
pub(crate) fn bundle_summary(b: &VerifiedBundle, now: Millis) -> Value {
    let (mut bound, mut expired, mut unattested) = (vec![], vec![], vec![]);
    for u in &b.log.state.user_ids {
        match b.binding(u, now) {
            Attested::Current { .. } => bound.push(u.to_string()),
            Attested::Expired { .. } => expired.push(u.to_string()),
            Attested::Missing => unattested.push(u.to_string()),
        }
    }
    let hosting: Vec<String> = b
        .log
        .state
        .servers
        .iter()
        .filter(|s| matches!(b.hosting(s, now), Attested::Current { .. }))
        .map(|s| s.to_string())
        .collect();
    json!({
        "head": b.log.state.head.to_string(),
        "bound": bound,
        "expired": expired,
        "unattested": unattested,
        "hosting": hosting,
        "deactivated": b.log.state.deactivated,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_documents_and_bad_json_are_classified() {
        let e = verify_document(b"{\"a\":1}", 0).unwrap_err();
        assert_eq!(e.class(), "unknown_kind");
        let e = verify_document(b"{\"a\":1,\"a\":2}", 0).unwrap_err();
        assert_eq!(e.class(), "duplicate_key");
        let e = verify_document(b"[]", 0).unwrap_err();
        assert_eq!(e.class(), "empty");
    }
}
