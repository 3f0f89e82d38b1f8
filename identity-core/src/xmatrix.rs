//! Matrix server-server request authentication: the `Authorization: X-Matrix …` header and
//! the JSON object its signature covers (Matrix server-server API, "Request
//! Authentication"): `{"method", "uri", "origin", "destination", "content"?}` signed by the
//! origin server's key, where `uri` is the path with its query string.

use ed25519_dalek::SigningKey;
use serde_json::{Value, json};

use crate::ids::{KeyId, ServerName};
use crate::signed::{self, SignError};

/// The parameters of one `X-Matrix` authorization header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XMatrix {
    pub origin: ServerName,
    pub destination: Option<ServerName>,
    pub key: KeyId,
    /// Unpadded base64 signature.
    pub sig: String,
}

/// Why an `Authorization` header is not a usable `X-Matrix` one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XMatrixError {
    #[error("not an X-Matrix authorization header")]
    NotXMatrix,
    #[error("malformed X-Matrix header: {0}")]
    Malformed(String),
}

/// The object the origin signs for a request.
pub fn request_object(
    method: &str,
    uri: &str,
    origin: &ServerName,
    destination: &ServerName,
    content: Option<&Value>,
) -> Value {
    let mut obj = json!({
        "method": method,
        "uri": uri,
        "origin": origin.as_str(),
        "destination": destination.as_str(),
    });
    if let Some(c) = content {
        obj["content"] = c.clone();
    }
    obj
}

/// Signs a request as `origin` and returns the header value.
pub fn sign_request(
    object: &Value,
    origin: &ServerName,
    destination: &ServerName,
    key_id: &KeyId,
    key: &SigningKey,
) -> Result<String, SignError> {
    let mut signed_obj = object.clone();
    signed::sign_matrix(&mut signed_obj, origin.as_str(), key_id, key)?;
    let sig = signed_obj["signatures"][origin.as_str()][key_id.as_str()]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    Ok(format!(
        "X-Matrix origin=\"{}\",destination=\"{}\",key=\"{}\",sig=\"{}\"",
        origin.as_str(),
        destination.as_str(),
        key_id.as_str(),
        sig
    ))
}

/// The request object with the header's signature in place, ready for
/// `ServerKeys::verify_object` of the origin's keys.
pub fn signed_object(object: &Value, x: &XMatrix) -> Value {
    let mut obj = object.clone();
    obj["signatures"] = json!({x.origin.as_str(): {x.key.as_str(): x.sig}});
    obj
}

/// Parses `X-Matrix origin=…,destination=…,key="…",sig="…"` (values quoted or not).
pub fn parse_header(value: &str) -> Result<XMatrix, XMatrixError> {
    let rest = value
        .strip_prefix("X-Matrix ")
        .ok_or(XMatrixError::NotXMatrix)?;
    let bad = |m: &str| XMatrixError::Malformed(m.to_owned());
    let (mut origin, mut destination, mut key, mut sig) = (None, None, None, None);
    for part in rest.split(',') {
        let (name, raw) = part
            .trim()
            .split_once('=')
            .ok_or_else(|| bad("a parameter without '='"))?;
        let v = raw
            .strip_prefix('"')
            .and_then(|r| r.strip_suffix('"'))
            .unwrap_or(raw);
        if v.contains(['"', '\\']) {
            return Err(bad("escaped or unbalanced quotes"));
        }
        match name.to_ascii_lowercase().as_str() {
            "origin" => origin = Some(v.to_owned()),
            "destination" => destination = Some(v.to_owned()),
            "key" => key = Some(v.to_owned()),
            "sig" => sig = Some(v.to_owned()),
            _ => {}
        }
    }
    let origin = ServerName::parse(&origin.ok_or_else(|| bad("no origin"))?)
        .map_err(|e| bad(&format!("origin: {e}")))?;
    let destination = destination
        .map(|d| ServerName::parse(&d).map_err(|e| bad(&format!("destination: {e}"))))
        .transpose()?;
    let key =
        KeyId::parse(&key.ok_or_else(|| bad("no key"))?).map_err(|e| bad(&format!("key: {e}")))?;
    let sig = sig.ok_or_else(|| bad("no sig"))?;
    Ok(XMatrix {
        origin,
        destination,
        key,
        sig,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_request_parses_back_and_verifies() {
        let key = SigningKey::from_bytes(&[9; 32]);
        let (a, b) = (
            ServerName::parse("a.example").unwrap(),
            ServerName::parse("b.example:8448").unwrap(),
        );
        let key_id = KeyId::parse("ed25519:k1").unwrap();
        let obj = request_object("POST", "/x?y=1", &a, &b, Some(&json!({"n": 1})));
        let header = sign_request(&obj, &a, &b, &key_id, &key).unwrap();
        let x = parse_header(&header).unwrap();
        assert_eq!(
            (x.origin.clone(), x.destination.clone()),
            (a.clone(), Some(b))
        );
        let signed_obj = signed_object(&obj, &x);
        signed::verify(&signed_obj, a.as_str(), &key_id, &key.verifying_key()).unwrap();
        let mut tampered = signed_obj;
        tampered["uri"] = json!("/x?y=2");
        assert!(signed::verify(&tampered, a.as_str(), &key_id, &key.verifying_key()).is_err());
    }

    #[test]
    fn malformed_headers_are_refused() {
        assert_eq!(parse_header("Bearer x"), Err(XMatrixError::NotXMatrix));
        for h in [
            "X-Matrix origin=a.example",
            "X-Matrix key=\"ed25519:k\",sig=\"s\"",
            "X-Matrix origin=\"a..b\",key=\"ed25519:k\",sig=\"s\"",
            "X-Matrix origin=\"a.example\",key=\"nokey\",sig=\"s\"",
            "X-Matrix origin=\"a.ex\\\"ample\",key=\"ed25519:k\",sig=\"s\"",
        ] {
            assert!(
                matches!(parse_header(h), Err(XMatrixError::Malformed(_))),
                "{h}"
            );
        }
    }
}
