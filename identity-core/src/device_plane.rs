//! Carrying an account's device plane (account data, key backup, cross-signing and device
//! keys) to another homeserver: the request a client signs with the account's update key to
//! hand it to the new server (`POST /_roam/v1/device-plane`). Both sides build and check it
//! here, so the signed bytes are defined once.
//!
//! The request names the DID, the server it is for and when it was made, and is signed as a
//! whole (Matrix signed JSON, entity = the DID, key ID = the update key's, as for ops): a
//! captured request is useless at any other server, and a server refuses one made more than
//! [`MAX_SKEW_MS`] away from its own clock, so it cannot be replayed later to undo a change.
//! The carried objects are the clients' own (encrypted blobs, Matrix-signed keys), so the
//! lenient Matrix number policy applies.

use serde_json::{Value, json};

use crate::canonical::NumberPolicy;
use crate::log::key_id_for;
use crate::signed::{self, SignError};
use crate::{Did, Millis, ServerName, SigningKey, VerifyingKey};

/// The `type` of an import request.
pub const IMPORT_TYPE: &str = "roam.device_plane_import";

/// How far a request's `created_at` may be from the receiving server's clock.
pub const MAX_SKEW_MS: Millis = 5 * 60 * 1000;

/// Why an import request was refused.
#[derive(Debug, thiserror::Error)]
pub enum ImportRequestError {
    #[error("not a device-plane import request: {0}")]
    Format(&'static str),
    #[error("the request is for {0}, not this server")]
    WrongServer(String),
    #[error("the request was made at {created_at}, too far from now ({now})")]
    Expired { created_at: Millis, now: Millis },
    #[error("the request's signature by the account's update key does not verify: {0}")]
    Signature(#[from] SignError),
}

/// The signed request carrying `device_plane` (the object `GET /_roam/v1/device-plane`
/// answers) for `did` to `server`.
/// `bundle` (optional) is the account's bundle as an export file carries it: its
/// attestations let the server bind old user IDs whose server is gone.
pub fn sign_import(
    key: &SigningKey,
    did: &Did,
    server: &ServerName,
    created_at: Millis,
    device_plane: Value,
    bundle: Option<Value>,
) -> Result<Value, SignError> {
    let mut req = json!({
        "type": IMPORT_TYPE,
        "did": did.as_str(),
        "server_name": server.as_str(),
        "created_at": created_at,
        "device_plane": device_plane,
    });
    if let Some(b) = bundle {
        req["bundle"] = b;
    }
    let key_id = key_id_for(&key.verifying_key());
    signed::sign_matrix(&mut req, did.as_str(), &key_id, key)?;
    Ok(req)
}

/// Checks a request for `server` at `now` against the account's current update key;
/// returns the carried device plane.
pub fn verify_import<'a>(
    req: &'a Value,
    did: &Did,
    update_key: &VerifyingKey,
    server: &ServerName,
    now: Millis,
) -> Result<&'a Value, ImportRequestError> {
    if req.get("type").and_then(Value::as_str) != Some(IMPORT_TYPE) {
        return Err(ImportRequestError::Format("type"));
    }
    if req.get("did").and_then(Value::as_str) != Some(did.as_str()) {
        return Err(ImportRequestError::Format("did"));
    }
    let named = req
        .get("server_name")
        .and_then(Value::as_str)
        .ok_or(ImportRequestError::Format("server_name"))?;
    if named != server.as_str() {
        return Err(ImportRequestError::WrongServer(named.to_owned()));
    }
    let created_at = req
        .get("created_at")
        .and_then(Value::as_u64)
        .ok_or(ImportRequestError::Format("created_at"))?;
    if created_at.abs_diff(now) > MAX_SKEW_MS {
        return Err(ImportRequestError::Expired { created_at, now });
    }
    let key_id = key_id_for(update_key);
    signed::verify_with(
        req,
        did.as_str(),
        &key_id,
        update_key,
        NumberPolicy::MatrixLenient,
    )?;
    req.get("device_plane")
        .filter(|v| v.is_object())
        .ok_or(ImportRequestError::Format("device_plane"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bound_to_server_time_and_key() {
        let k = SigningKey::from_bytes(&[9; 32]);
        let did = Did::from_key(&k.verifying_key()).unwrap();
        let b = ServerName::parse("b.test").unwrap();
        let c = ServerName::parse("c.test").unwrap();
        let plane = json!({"account_data": {"m.x": {"n": 1}}});
        let req = sign_import(&k, &did, &b, 1_000_000, plane.clone(), None).unwrap();
        let vk = k.verifying_key();
        assert_eq!(
            verify_import(&req, &did, &vk, &b, 1_000_000).unwrap(),
            &plane
        );
        assert!(matches!(
            verify_import(&req, &did, &vk, &c, 1_000_000),
            Err(ImportRequestError::WrongServer(_))
        ));
        assert!(matches!(
            verify_import(&req, &did, &vk, &b, 1_000_000 + MAX_SKEW_MS + 1),
            Err(ImportRequestError::Expired { .. })
        ));
        let other = SigningKey::from_bytes(&[10; 32]).verifying_key();
        assert!(matches!(
            verify_import(&req, &did, &other, &b, 1_000_000),
            Err(ImportRequestError::Signature(_))
        ));
        let mut tampered = req.clone();
        tampered["device_plane"]["account_data"]["m.x"]["n"] = json!(2);
        assert!(verify_import(&tampered, &did, &vk, &b, 1_000_000).is_err());
    }
}
