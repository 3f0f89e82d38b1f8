//! `did:web` for homeservers: `did:web:<server_name>` (a port written `%3A`, did:web's rule),
//! resolved at `https://<server_name>/.well-known/did.json`. The document lists the server's
//! current Matrix signing keys, the ones `/_matrix/key/v2/server` lists in `verify_keys`, as
//! Multikey verification methods named `did:web:…#ed25519:VERSION`, each usable for
//! assertions. Retired keys are left out: a credential is only as good as the keys the server
//! stands behind now.

use ed25519_dalek::VerifyingKey;
use roam_identity_core::did::{decode_multikey, encode_multikey};
use roam_identity_core::server_keys::ServerKeys;
use roam_identity_core::{KeyId, ServerName};
use serde_json::{Value, json};

use crate::error::VcError;

/// The DID method prefix.
pub const PREFIX: &str = "did:web:";
/// Where a did:web document is served, below the server's base URL.
pub const WELL_KNOWN_PATH: &str = "/.well-known/did.json";
/// The contexts of the document.
pub const CONTEXTS: [&str; 2] = [
    "https://www.w3.org/ns/did/v1",
    "https://w3id.org/security/multikey/v1",
];

/// `did:web:a.example`, `did:web:a.example%3A8448`. IPv6 literals have no did:web form.
pub fn did_of(server: &ServerName) -> Result<String, VcError> {
    if server.host().starts_with('[') {
        return Err(VcError::malformed(format!(
            "{server} is an IPv6 literal, which did:web cannot name"
        )));
    }
    Ok(match server.port() {
        Some(port) => format!("{PREFIX}{}%3A{port}", server.host()),
        None => format!("{PREFIX}{}", server.host()),
    })
}

/// The server a homeserver's did:web names; only the canonical spelling (no path, the port as
/// `%3A`) is accepted.
pub fn server_of(did: &str) -> Result<ServerName, VcError> {
    let bad = || VcError::malformed(format!("{did:?} is not a homeserver's did:web"));
    let rest = did.strip_prefix(PREFIX).ok_or_else(bad)?;
    let server = ServerName::parse(&rest.replacen("%3A", ":", 1)).map_err(|_| bad())?;
    if did_of(&server).ok().as_deref() != Some(did) {
        return Err(bad());
    }
    Ok(server)
}

/// The verification method ID of a server key: `did:web:a.example#ed25519:a_1`.
pub fn method_id(did: &str, key_id: &KeyId) -> String {
    format!("{did}#{key_id}")
}

/// The DID document of a server, from its verified key document.
pub fn document(keys: &ServerKeys) -> Result<Value, VcError> {
    let did = did_of(&keys.server_name)?;
    let methods: Vec<Value> = keys
        .verify_keys
        .iter()
        .map(|(id, key)| {
            json!({
                "id": method_id(&did, id),
                "type": "Multikey",
                "controller": did,
                "publicKeyMultibase": encode_multikey(key),
            })
        })
        .collect();
    let ids: Vec<String> = keys
        .verify_keys
        .keys()
        .map(|id| method_id(&did, id))
        .collect();
    Ok(json!({
        "@context": CONTEXTS,
        "id": did,
        "verificationMethod": methods,
        "assertionMethod": ids,
    }))
}

/// The key of `method` in `doc`, the DID document of `did`: the document must be `did`'s, and
/// the method one of its assertion methods with a strict Ed25519 Multikey.
pub fn assertion_key(doc: &Value, did: &str, method: &str) -> Result<VerifyingKey, VcError> {
    let doc_id = doc.get("id").and_then(Value::as_str);
    if doc_id != Some(did) {
        return Err(VcError::WrongIssuer(format!(
            "the DID document is {}'s, not {did}'s",
            doc_id.unwrap_or("nobody")
        )));
    }
    let listed = doc
        .get("assertionMethod")
        .and_then(Value::as_array)
        .is_some_and(|a| a.iter().any(|m| m.as_str() == Some(method)));
    if !method.starts_with(&format!("{did}#")) || !listed {
        return Err(VcError::UnknownKey(method.to_owned()));
    }
    let vm = doc
        .get("verificationMethod")
        .and_then(Value::as_array)
        .and_then(|a| a.iter().find(|m| m["id"].as_str() == Some(method)))
        .ok_or_else(|| VcError::UnknownKey(method.to_owned()))?;
    if vm["type"] != "Multikey" || vm["controller"].as_str() != Some(did) {
        return Err(VcError::UnknownKey(format!(
            "{method} is not a Multikey controlled by {did}"
        )));
    }
    let multibase = vm["publicKeyMultibase"].as_str().unwrap_or_default();
    Ok(decode_multikey(multibase)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_servers_with_the_port_rule() {
        let s = ServerName::parse("a.example:8448").unwrap();
        assert_eq!(did_of(&s).unwrap(), "did:web:a.example%3A8448");
        assert_eq!(server_of("did:web:a.example%3A8448").unwrap(), s);
        let s = ServerName::parse("127.0.0.1").unwrap();
        assert_eq!(did_of(&s).unwrap(), "did:web:127.0.0.1");
        assert!(did_of(&ServerName::parse("[::1]:80").unwrap()).is_err());
        for bad in [
            "did:web:a.example:8448",
            "did:web:a.example%3a8448",
            "did:web:a.example:users:alice",
            "did:key:z6Mk",
            "did:web:",
        ] {
            assert!(server_of(bad).is_err(), "{bad}");
        }
    }
}
