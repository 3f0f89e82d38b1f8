//! The portable account file: everything needed to carry an account to another machine or
//! server, verifiable offline.
//!
//! ```json
//! {"type": "roam.account-export", "version": 1, "did": "did:key:…", "exported_at": ms,
//!  "bundle": {roam.bundle: every op known, attestations, key documents},
//!  "devices": [{"device_id", "ed25519", "curve25519"}],
//!  "device_plane"?: {roam.device_plane: account data, key backup, cross-signing and
//!                    device keys, as the account's homeserver handed them out},
//!  "keystore"?: {the encrypted keystore file, only with --include-secrets}}
//! ```
//!
//! The bundle is the protocol's own object, so an import verifies it with identity-core like
//! any other bundle. Secrets travel only inside the keystore file, which stays encrypted
//! under the passphrase; the device plane holds what Matrix clients encrypted or signed
//! (secret storage, backed-up room keys), so it carries no plaintext secret either.

use std::collections::{BTreeMap, HashSet};

use roam_identity_core::bundle::{self, Bundle, BundleError, VerifiedBundle};
use roam_identity_core::log::SignedOp;
use roam_identity_core::{Did, Millis, b64};
use serde_json::{Value, json};

/// The `type` of an export file.
pub const EXPORT_TYPE: &str = "roam.account-export";

/// Why an export file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("not a Roam account export: {0}")]
    Format(String),
    #[error("the exported bundle does not verify ({class}): {source}")]
    Bundle {
        class: &'static str,
        source: BundleError,
    },
}

impl From<BundleError> for ExportError {
    fn from(source: BundleError) -> Self {
        ExportError::Bundle {
            class: source.class(),
            source,
        }
    }
}

/// Assembles a bundle from the client's own ops and the bundles servers handed out: the
/// union of the ops, every attestation and one key document per server. Server bundles that
/// do not verify are left out (returned as warnings).
pub fn assemble(
    did: &Did,
    own_ops: &[Value],
    server_bundles: &[(String, Value)],
    now: Millis,
) -> (Bundle, Vec<String>) {
    let mut warnings = Vec::new();
    let mut ops = Vec::new();
    let mut seen = HashSet::new();
    let mut add_op = |v: &Value, ops: &mut Vec<Value>| {
        if let Ok(o) = SignedOp::from_value(v.clone())
            && seen.insert(o.hash)
        {
            ops.push(v.clone());
        }
    };
    for v in own_ops {
        add_op(v, &mut ops);
    }
    let mut attestations = Vec::new();
    let mut keys: BTreeMap<String, Value> = BTreeMap::new();
    for (server, raw) in server_bundles {
        let checked =
            Bundle::from_value(raw).and_then(|b| bundle::verify(&b, Some(did), now).map(|_| b));
        match checked {
            Ok(b) => {
                for v in &b.log {
                    add_op(v, &mut ops);
                }
                attestations.extend(b.attestations.iter().cloned());
                for k in b.server_keys {
                    if let Some(name) = k.get("server_name").and_then(Value::as_str) {
                        keys.entry(name.to_owned()).or_insert(k.clone());
                    }
                }
            }
            Err(e) => warnings.push(format!("{server}'s bundle was left out: {e}")),
        }
    }
    attestations.truncate(64);
    (
        Bundle {
            did: did.clone(),
            log: ops,
            attestations,
            server_keys: keys.into_values().take(64).collect(),
            fetched_at: now,
            source: "roam export".into(),
        },
        warnings,
    )
}

/// The export file object.
pub fn to_file(
    bundle: &Bundle,
    verified: &VerifiedBundle,
    keystore: Option<Value>,
    device_plane: Option<Value>,
    now: Millis,
) -> Value {
    let devices: Vec<Value> = verified
        .log
        .state
        .devices
        .iter()
        .map(|(id, k)| {
            json!({
                "device_id": id.as_str(),
                "ed25519": b64::encode(&k.ed25519),
                "curve25519": b64::encode(&k.curve25519),
            })
        })
        .collect();
    let mut v = json!({
        "type": EXPORT_TYPE,
        "version": 1,
        "did": bundle.did.as_str(),
        "exported_at": now,
        "bundle": bundle.to_value(),
        "devices": devices,
    });
    if let Some(k) = keystore {
        v["keystore"] = k;
    }
    if let Some(p) = device_plane {
        v["device_plane"] = p;
    }
    v
}

/// A parsed and verified export file.
#[derive(Debug)]
pub struct Imported {
    pub bundle: Bundle,
    pub verified: VerifiedBundle,
    pub keystore: Option<Value>,
    /// The device plane, when the export carries one.
    pub device_plane: Option<Value>,
}

/// Reads an export file and verifies its bundle at `now`.
pub fn from_file(v: &Value, now: Millis) -> Result<Imported, ExportError> {
    let bad = |m: &str| ExportError::Format(m.to_owned());
    if v.get("type").and_then(Value::as_str) != Some(EXPORT_TYPE) {
        return Err(bad("type must be roam.account-export"));
    }
    if v.get("version").and_then(Value::as_u64) != Some(1) {
        return Err(bad("only version 1 is understood"));
    }
    let raw = v.get("bundle").ok_or_else(|| bad("no bundle"))?;
    let b = Bundle::from_value(raw)?;
    if v.get("did").and_then(Value::as_str) != Some(b.did.as_str()) {
        return Err(bad("did does not match the bundle's"));
    }
    let verified = bundle::verify(&b, Some(&b.did), now)?;
    let device_plane = v.get("device_plane").filter(|p| !p.is_null()).cloned();
    if device_plane
        .as_ref()
        .is_some_and(|p| p.get("type").and_then(Value::as_str) != Some("roam.device_plane"))
    {
        return Err(bad("device_plane must be a roam.device_plane object"));
    }
    Ok(Imported {
        bundle: b,
        verified,
        keystore: v.get("keystore").cloned(),
        device_plane,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account;
    use roam_identity_core::{ServerName, UserId};

    #[test]
    fn round_trip_and_tamper() {
        let (mut ks, _) = account::new_account().unwrap();
        account::sign_genesis(
            &mut ks,
            UserId::parse("@alice:a.test").unwrap(),
            vec![ServerName::parse("a.test").unwrap()],
        )
        .unwrap();
        let did = ks.did().unwrap();
        let now = account::now_ms() + 1000;
        let (b, warnings) = assemble(
            &did,
            &ks.public.ops,
            &[("x.test".into(), json!({"type": "nope"}))],
            now,
        );
        assert_eq!(warnings.len(), 1);
        let verified = bundle::verify(&b, Some(&did), now).unwrap();
        let file = to_file(&b, &verified, None, None, now);
        let back = from_file(&file, now).unwrap();
        assert_eq!(back.verified.log.state.did, did);
        let mut bad = file.clone();
        bad["bundle"]["log"][0]["user_id"] = json!("@mallory:a.test");
        assert!(matches!(
            from_file(&bad, now),
            Err(ExportError::Bundle { .. })
        ));
        let mut other = file;
        other["type"] = json!("x");
        assert!(matches!(
            from_file(&other, now),
            Err(ExportError::Format(_))
        ));
    }
}
