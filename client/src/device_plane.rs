//! Carrying the account's device plane (account data such as secret storage, the key
//! backup, cross-signing and device keys) to another homeserver.
//!
//! The old server hands it out to the account's own session (`GET /_roam/v1/device-plane`);
//! the new server takes it in when the request is signed by the account's update key for that
//! server (`POST /_roam/v1/device-plane`, `roam_identity_core::device_plane`). Everything
//! carried is what Matrix clients made — encrypted blobs and signed keys — and moves
//! unchanged: neither server nor this client sees a secret. Keys name a user ID inside
//! their signed content, so after a migration the new server keeps them under the old user
//! ID (peers still reach the account through it); cross-signing under the new user ID needs
//! the master key, which only the user's Matrix clients (or the secret-storage recovery key,
//! [`crate::secret_storage`]) hold.

use roam_identity_core::device_plane::sign_import;
use roam_identity_core::{ServerName, UserId};
use serde_json::Value;

use crate::account;
use crate::homeserver::{Homeserver, HomeserverError};
use crate::keystore::Keystore;
use crate::secret_storage;

/// Why carrying the device plane failed.
#[derive(Debug, thiserror::Error)]
pub enum DevicePlaneError {
    #[error(transparent)]
    Homeserver(#[from] HomeserverError),
    #[error(transparent)]
    Keystore(#[from] crate::keystore::KeystoreError),
    #[error("cannot sign the device plane: {0}")]
    Sign(#[from] roam_identity_core::signed::SignError),
    #[error("not a device plane: {0}")]
    Format(&'static str),
    #[error(transparent)]
    SecretStorage(#[from] crate::secret_storage::SecretStorageError),
}

/// Fetches the account's device plane from `hs` (authenticated with the account's session).
pub async fn fetch(hs: &Homeserver) -> Result<Value, DevicePlaneError> {
    let v = hs.device_plane().await?;
    if v.get("type").and_then(Value::as_str) != Some("roam.device_plane") {
        return Err(DevicePlaneError::Format(
            "the server's answer is not a device plane",
        ));
    }
    Ok(v)
}

/// Hands `plane` to `hs` (named `server`), signed with the keystore's update key. `bundle`
/// (an export file's) lets the server bind old user IDs whose server is gone. The server's
/// answer says what it stored.
pub async fn import(
    hs: &Homeserver,
    ks: &Keystore,
    server: &ServerName,
    plane: &Value,
    bundle: Option<Value>,
) -> Result<Value, DevicePlaneError> {
    let did = ks.did()?;
    let req = sign_import(
        &ks.update_key(),
        &did,
        server,
        account::now_ms(),
        plane.clone(),
        bundle,
    )?;
    Ok(hs.import_device_plane(&req).await?)
}

/// Re-signs the account's cross-signing identity for `user` (its user ID on `hs`, where the
/// session belongs) with the same master key, opened from secret storage with `recovery_key`
/// on this machine: the cross-signing keys for `user` and the master key's signature on the
/// current backup's `auth_data`. The carried master key (under an old user ID) must be the
/// one the recovery key opens. Returns what was done, in words.
pub async fn cross_sign(
    hs: &Homeserver,
    user: &UserId,
    recovery_key: &[u8; 32],
) -> Result<String, DevicePlaneError> {
    let plane = fetch(hs).await?;
    let carried = plane["users"]
        .as_object()
        .into_iter()
        .flatten()
        .find_map(|(_, u)| u.get("master_key"))
        .ok_or(DevicePlaneError::Format(
            "no cross-signing keys were carried to re-sign",
        ))?;
    let secrets = secret_storage::open_cross_signing(&plane["account_data"], recovery_key)?;
    let upload = secret_storage::resign_for(&secrets, carried, user)?;
    hs.upload_cross_signing(&upload).await?;
    let master = carried["keys"]
        .as_object()
        .and_then(|k| k.values().next())
        .and_then(Value::as_str)
        .unwrap_or("?")
        .to_owned();
    let mut done = format!("cross-signing keys of {user} signed by the same master key {master}");
    if let Some(b) = hs.backup_version().await? {
        let (Some(version), Some(algorithm)) = (b["version"].as_str(), b["algorithm"].as_str())
        else {
            return Ok(done);
        };
        let auth_data = secret_storage::sign_backup(&secrets, &b["auth_data"], user)?;
        hs.update_backup_auth_data(version, algorithm, &auth_data)
            .await?;
        done.push_str(&format!(", and key backup version {version} signed by it"));
    }
    Ok(done)
}

/// What a device plane holds, in words.
pub fn describe(plane: &Value) -> String {
    let count = |v: &Value| v.as_object().map_or(0, |m| m.len());
    let mut parts = vec![format!(
        "{} account data type(s)",
        count(&plane["account_data"])
    )];
    if let Some(b) = plane["key_backup"].as_object() {
        let keys: usize = b
            .get("rooms")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .map(|(_, r)| count(&r["sessions"]))
            .sum();
        parts.push(format!("a key backup with {keys} key(s)"));
    }
    for (user, u) in plane["users"].as_object().into_iter().flatten() {
        let cs = if u.get("master_key").is_some() {
            "cross-signing keys and "
        } else {
            ""
        };
        parts.push(format!("{cs}{} device(s) of {user}", count(&u["devices"])));
    }
    parts.join(", ")
}

/// What the new server said it stored, in words.
pub fn describe_outcome(out: &Value) -> String {
    let mut s = format!(
        "{} took {} account data type(s), {} new backed-up key(s){}, keys of {}",
        out["user_id"].as_str().unwrap_or("the account"),
        out["account_data"],
        out["backup_keys_added"],
        out["backup_version"]
            .as_str()
            .map(|v| format!(" (backup version {v})"))
            .unwrap_or_default(),
        out["users"]
            .as_array()
            .map(|u| {
                u.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "no user ID".into()),
    );
    for r in out["refused"].as_array().into_iter().flatten() {
        s.push_str(&format!(
            "; left out {}: {}",
            r["user_id"].as_str().unwrap_or("?"),
            r["reason"].as_str().unwrap_or("?")
        ));
    }
    s
}

/// The user IDs whose cross-signing keys a plane carries.
pub fn cross_signed_users(plane: &Value) -> Vec<UserId> {
    plane["users"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, u)| u.get("master_key").is_some())
        .filter_map(|(id, _)| UserId::parse(id).ok())
        .collect()
}
