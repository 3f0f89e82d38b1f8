//! End-to-end encryption keys: device keys, one-time and fallback keys, cross-signing keys
//! and the signatures users make on them.
//!
//! Uploaded objects are checked before they are stored: device keys must name the uploading
//! device and carry a valid self-signature; signed one-time keys must be signed by the
//! device; cross-signing keys must belong to the uploader, and the sub-keys must be signed by
//! the master key. What `/keys/query` returns is therefore verifiable by any client.

use std::collections::{BTreeMap, HashMap};

use axum::Json;
use axum::extract::State;
use roam_identity_core::canonical::NumberPolicy;
use roam_identity_core::signed::{self, SignError};
use roam_identity_core::{DeviceId, KeyId, ServerName, UserId, VerifyingKey, b64};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::devices::require_password_uia_for;
use crate::clock::now_ms;
use crate::error::AppError;
use crate::extract::{Authenticated, MatrixJson, QueryParams};
use crate::portable::carry::answers_for;
use crate::state::AppState;
use crate::store::{
    CrossSigningKind, KeySignature, KeysUpload, OneTimeKey, SigningSnapshot, Store, StoreError,
    StoreResult,
};
use crate::uia::Purpose;

/// Most one-time keys accepted in one upload (clients send ~50).
const MAX_ONE_TIME_KEYS_PER_UPLOAD: usize = 1000;

fn invalid(msg: impl Into<String>) -> AppError {
    AppError::InvalidParam(msg.into())
}

/// Decodes an unpadded base64 Ed25519 public key.
fn ed25519_key(text: &str) -> Option<VerifyingKey> {
    let bytes = b64::decode_array::<32>(text).ok()?;
    VerifyingKey::from_bytes(&bytes).ok()
}

/// Verifies `signatures[user][key_id]` on a client-made object. Client libraries produce
/// Matrix canonical JSON, so the lenient number policy of foreign Matrix objects applies.
fn verify_signature(
    obj: &Value,
    user: &UserId,
    key_id: &KeyId,
    key: &VerifyingKey,
) -> Result<(), SignError> {
    signed::verify_with(obj, user.as_str(), key_id, key, NumberPolicy::MatrixLenient)
}

/// The device's own Ed25519 key from its device keys object.
fn device_ed25519(keys: &Value, device_id: &DeviceId) -> Option<VerifyingKey> {
    keys.get("keys")?
        .get(format!("ed25519:{device_id}"))?
        .as_str()
        .and_then(ed25519_key)
}

fn check_device_keys(keys: &Value, auth: &Authenticated) -> Result<VerifyingKey, AppError> {
    let obj = keys
        .as_object()
        .ok_or_else(|| AppError::BadJson("device_keys must be an object".into()))?;
    if obj.get("user_id").and_then(Value::as_str) != Some(auth.user_id.as_str()) {
        return Err(invalid(
            "User ID in device_keys does not match the access token's user",
        ));
    }
    if obj.get("device_id").and_then(Value::as_str) != Some(auth.device_id.as_str()) {
        return Err(invalid(
            "Device ID in device_keys does not match the access token's device",
        ));
    }
    let algorithms_ok = obj
        .get("algorithms")
        .and_then(Value::as_array)
        .is_some_and(|a| a.iter().all(Value::is_string));
    if !algorithms_ok {
        return Err(AppError::BadJson(
            "device_keys.algorithms must be a list of strings".into(),
        ));
    }
    let key_map = obj
        .get("keys")
        .and_then(Value::as_object)
        .ok_or_else(|| AppError::BadJson("device_keys.keys must be an object".into()))?;
    for (id, value) in key_map {
        KeyId::parse(id).map_err(|e| invalid(format!("device_keys.keys: {e}")))?;
        if !value.is_string() {
            return Err(AppError::BadJson(format!(
                "device_keys.keys[{id:?}] must be a string"
            )));
        }
    }
    let key = device_ed25519(keys, &auth.device_id).ok_or_else(|| {
        invalid(format!(
            "device_keys must include a valid ed25519:{} key",
            auth.device_id
        ))
    })?;
    let key_id = KeyId::ed25519(auth.device_id.as_str()).map_err(|e| invalid(e.to_string()))?;
    verify_signature(keys, &auth.user_id, &key_id, &key)
        .map_err(|e| AppError::InvalidSignature(format!("device_keys self-signature: {e}")))?;
    Ok(key)
}

/// Checks a map of one-time or fallback keys; signed keys must verify with `device_key`.
fn check_one_time_keys(
    map: &Value,
    auth: &Authenticated,
    device_key: Option<&VerifyingKey>,
    what: &str,
) -> Result<Vec<OneTimeKey>, AppError> {
    let map = map
        .as_object()
        .ok_or_else(|| AppError::BadJson(format!("{what} must be an object")))?;
    if map.len() > MAX_ONE_TIME_KEYS_PER_UPLOAD {
        return Err(AppError::TooLarge(format!(
            "At most {MAX_ONE_TIME_KEYS_PER_UPLOAD} {what} per upload"
        )));
    }
    let device_key_id =
        KeyId::ed25519(auth.device_id.as_str()).map_err(|e| invalid(e.to_string()))?;
    let mut out = Vec::with_capacity(map.len());
    for (id, key) in map {
        KeyId::parse(id).map_err(|e| invalid(format!("{what}: {e}")))?;
        match key {
            Value::String(_) => {}
            Value::Object(o) => {
                if !o.get("key").is_some_and(Value::is_string) {
                    return Err(AppError::BadJson(format!(
                        "{what}[{id:?}].key must be a string"
                    )));
                }
                if let Some(dk) = device_key.filter(|_| o.contains_key("signatures")) {
                    verify_signature(key, &auth.user_id, &device_key_id, dk)
                        .map_err(|e| AppError::InvalidSignature(format!("{what}[{id:?}]: {e}")))?;
                }
            }
            _ => {
                return Err(AppError::BadJson(format!(
                    "{what}[{id:?}] must be a string or an object"
                )));
            }
        }
        out.push(OneTimeKey {
            key_id: id.clone(),
            key: key.clone(),
        });
    }
    Ok(out)
}

#[derive(Debug, Deserialize)]
pub struct UploadBody {
    device_keys: Option<Value>,
    one_time_keys: Option<Value>,
    fallback_keys: Option<Value>,
    #[serde(rename = "org.matrix.msc2732.fallback_keys")]
    unstable_fallback_keys: Option<Value>,
}

/// `POST /keys/upload`.
pub async fn upload(
    State(state): State<AppState>,
    auth: Authenticated,
    MatrixJson(body): MatrixJson<UploadBody>,
) -> Result<Json<Value>, AppError> {
    let mut upload = KeysUpload::default();
    let mut device_key = None;
    if let Some(keys) = body.device_keys.filter(|v| !v.is_null()) {
        device_key = Some(check_device_keys(&keys, &auth)?);
        upload.device_keys = Some(keys);
    }
    let needs_device_key = body.one_time_keys.is_some()
        || body.fallback_keys.is_some()
        || body.unstable_fallback_keys.is_some();
    if device_key.is_none() && needs_device_key {
        let (u, d) = (auth.user_id.clone(), auth.device_id.clone());
        let stored = state
            .db(move |s| s.device_keys(&u, std::slice::from_ref(&d)))
            .await?;
        device_key = stored
            .first()
            .and_then(|(_, keys)| device_ed25519(keys, &auth.device_id));
    }
    if let Some(otks) = body.one_time_keys.filter(|v| !v.is_null()) {
        upload.one_time_keys =
            check_one_time_keys(&otks, &auth, device_key.as_ref(), "one_time_keys")?;
    }
    // The stable name wins when a client sends both.
    if let Some(fallback) = body
        .fallback_keys
        .or(body.unstable_fallback_keys)
        .filter(|v| !v.is_null())
    {
        let keys = check_one_time_keys(&fallback, &auth, device_key.as_ref(), "fallback_keys")?;
        let mut algorithms = std::collections::HashSet::new();
        for k in &keys {
            let algorithm = k
                .key_id
                .split_once(':')
                .map_or(k.key_id.as_str(), |(a, _)| a);
            if !algorithms.insert(algorithm.to_owned()) {
                return Err(invalid(format!(
                    "More than one fallback key for {algorithm}"
                )));
            }
        }
        upload.fallback_keys = keys;
    }
    let (u, d) = (auth.user_id.clone(), auth.device_id.clone());
    let counts = state
        .db(move |s| s.upload_keys(&u, &d, upload, now_ms()))
        .await?;
    let mut counts: Map<String, Value> = counts.into_iter().map(|(k, v)| (k, json!(v))).collect();
    // Clients read this count to decide whether to upload more; Synapse always includes it.
    counts.entry("signed_curve25519").or_insert(json!(0));
    Ok(Json(json!({"one_time_key_counts": counts})))
}

/// Adds stored signatures by the key's owner and by `requester` (a local user; none for a
/// server-server query) into `obj`.
fn merge_signatures(
    obj: &mut Value,
    target_key: &str,
    owner: &UserId,
    requester: Option<&UserId>,
    sigs: &[KeySignature],
) {
    for s in sigs.iter().filter(|s| s.target_key == target_key) {
        if s.signer_user != *owner && Some(&s.signer_user) != requester {
            continue;
        }
        let Some(map) = obj.as_object_mut() else {
            return;
        };
        let all = map.entry("signatures").or_insert_with(|| json!({}));
        let Some(all) = all.as_object_mut() else {
            return;
        };
        let by_user = all
            .entry(s.signer_user.as_str().to_owned())
            .or_insert_with(|| json!({}));
        if let Some(by_user) = by_user.as_object_mut() {
            by_user.insert(s.signer_key_id.clone(), json!(s.signature));
        }
    }
}

/// The `unsigned` field of a portable user's device keys in query answers: whether the
/// account key signed this device (with these keys) into the account log. A device of a
/// portable account without it was not added by the account's owner.
pub const IN_ACCOUNT_LOG: &str = "io.roam.in_account_log";

/// The devices the account log signs in, for a user of a portable account held here (its
/// local user ID, or one carried here); `None` for other users.
fn log_devices(
    s: &dyn Store,
    user: &UserId,
) -> StoreResult<Option<BTreeMap<DeviceId, roam_identity_core::log::DeviceKeys>>> {
    let did = match s.did_of_user(user)? {
        Some(d) => Some(d),
        None => s.carried_did(user)?,
    };
    let Some(did) = did else { return Ok(None) };
    Ok(s.log_summary(&did)?.and_then(|summary| summary.devices))
}

/// The public key text of a cross-signing key (its single `keys` value).
fn cross_signing_public(key: &Value) -> Option<&str> {
    let keys = key.get("keys")?.as_object()?;
    if keys.len() != 1 {
        return None;
    }
    keys.values().next()?.as_str()
}

#[derive(Debug, Deserialize)]
pub struct QueryBody {
    device_keys: Option<Value>,
}

/// A required request field that must be a JSON object.
pub(super) fn required_object(
    v: Option<Value>,
    name: &str,
) -> Result<Map<String, Value>, AppError> {
    match v.ok_or_else(|| AppError::MissingParam(format!("Missing param: {name}")))? {
        Value::Object(map) => Ok(map),
        _ => Err(AppError::BadJson(format!("{name} must be an object"))),
    }
}

/// A `{user_id: …}` request map, each user's entry read by `entry`.
pub(super) fn per_user<T>(
    map: &Map<String, Value>,
    entry: impl Fn(&str, &Value) -> Result<T, AppError>,
) -> Result<Vec<(UserId, T)>, AppError> {
    map.iter()
        .map(|(user, v)| {
            let user_id = UserId::parse(user)
                .map_err(|e| invalid(format!("Invalid user ID {user:?}: {e}")))?;
            Ok((user_id, entry(user, v)?))
        })
        .collect()
}

/// The users of this server, and the others (asked of their servers over federation).
type Split<T> = (Vec<(UserId, T)>, Vec<(UserId, T)>);

/// Splits the users this server answers for (its own, and user IDs of other servers carried
/// here by a migration) from the others.
async fn split_users<T: Send + 'static>(
    state: &AppState,
    wanted: Vec<(UserId, T)>,
) -> Result<Split<T>, AppError> {
    let own = state.config().server_name.clone();
    state
        .db(move |s| {
            let (mut local, mut remote) = (Vec::new(), Vec::new());
            for (user, v) in wanted {
                if answers_for(s, &own, &user)? {
                    local.push((user, v));
                } else {
                    remote.push((user, v));
                }
            }
            Ok((local, remote))
        })
        .await
}

/// `POST /keys/query`. Users of other servers are asked of the server that hosts them now
/// (server-server, signed); a server that cannot be reached is listed under `failures`.
pub async fn query(
    State(state): State<AppState>,
    auth: Authenticated,
    MatrixJson(body): MatrixJson<QueryBody>,
) -> Result<Json<Value>, AppError> {
    let requested = required_object(body.device_keys, "device_keys")?;
    let wanted = per_user(&requested, query_entry)?;
    let requester = auth.user_id.clone();
    let queried: Vec<UserId> = wanted.iter().map(|(u, _)| u.clone()).collect();
    let (local, remote) = split_users(&state, wanted).await?;
    let remote = state.remote_keys().query(remote).await;
    let result = state
        .db(move |s| {
            let mut answer = QueryAnswer::default();
            for (user, devices) in local {
                answer.add_user(s, &user, &devices, Some(&requester))?;
            }
            answer.device_keys.extend(remote.device_keys);
            answer.master.extend(remote.master_keys);
            answer.self_signing.extend(remote.self_signing_keys);
            answer.failures.extend(remote.failures);
            // The requester now follows these users' device lists (`/sync`).
            match s.track_users(&requester, &queried) {
                Err(StoreError::CapReached(_)) => {
                    tracing::debug!(%requester, "tracked users at their cap");
                }
                other => other?,
            }
            Ok(answer.into_json())
        })
        .await?;
    Ok(Json(result))
}

/// The answer of `/keys/query`, filled user by user.
#[derive(Default)]
pub(super) struct QueryAnswer {
    pub(super) device_keys: Map<String, Value>,
    pub(super) master: Map<String, Value>,
    pub(super) self_signing: Map<String, Value>,
    user_signing: Map<String, Value>,
    failures: Map<String, Value>,
}

impl QueryAnswer {
    /// Adds one local user's device keys and cross-signing keys, with the signatures the
    /// requester may see.
    pub(super) fn add_user(
        &mut self,
        s: &dyn Store,
        user: &UserId,
        devices: &[DeviceId],
        requester: Option<&UserId>,
    ) -> StoreResult<()> {
        let sigs = s.key_signatures(user)?;
        let in_log = log_devices(s, user)?;
        let mut per_device = Map::new();
        for (device, mut keys) in s.device_keys(user, devices)? {
            merge_signatures(&mut keys, device.device_id.as_str(), user, requester, &sigs);
            let signed_in = in_log.as_ref().map(|log| {
                let key = device_ed25519(&keys, &device.device_id).map(|k| k.to_bytes());
                log.get(&device.device_id)
                    .is_some_and(|k| Some(k.ed25519) == key)
            });
            if let Some(obj) = keys.as_object_mut() {
                let unsigned = obj.entry("unsigned").or_insert_with(|| json!({}));
                if let Some(unsigned) = unsigned.as_object_mut() {
                    unsigned.insert("device_display_name".into(), json!(device.display_name));
                    if let Some(signed_in) = signed_in {
                        unsigned.insert(IN_ACCOUNT_LOG.into(), json!(signed_in));
                    }
                }
            }
            per_device.insert(device.device_id.to_string(), keys);
        }
        self.device_keys
            .insert(user.to_string(), Value::Object(per_device));
        for (kind, mut key) in s.cross_signing_keys(user)? {
            if let Some(public) = cross_signing_public(&key).map(str::to_owned) {
                merge_signatures(&mut key, &public, user, requester, &sigs);
            }
            let map = match kind {
                CrossSigningKind::Master => &mut self.master,
                CrossSigningKind::SelfSigning => &mut self.self_signing,
                // A user-signing key is private to its owner.
                CrossSigningKind::UserSigning if Some(user) == requester => &mut self.user_signing,
                CrossSigningKind::UserSigning => continue,
            };
            map.insert(user.to_string(), key);
        }
        Ok(())
    }

    fn into_json(self) -> Value {
        json!({
            "device_keys": self.device_keys,
            "master_keys": self.master,
            "self_signing_keys": self.self_signing,
            "user_signing_keys": self.user_signing,
            "failures": self.failures,
        })
    }
}

#[derive(Debug, Deserialize)]
pub struct ClaimBody {
    one_time_keys: Option<Value>,
}

/// `POST /keys/claim`.
pub async fn claim(
    State(state): State<AppState>,
    _auth: Authenticated,
    MatrixJson(body): MatrixJson<ClaimBody>,
) -> Result<Json<Value>, AppError> {
    let requested = required_object(body.one_time_keys, "one_time_keys")?;
    let wanted = per_user(&requested, claim_entry)?;
    let (local, remote) = split_users(&state, wanted).await?;
    let (remote_keys, failures) = state.remote_keys().claim(remote).await;
    let mut keys = state.db(move |s| claim_local(s, local)).await?;
    keys.extend(remote_keys);
    Ok(Json(json!({"one_time_keys": keys, "failures": failures})))
}

/// Claims one-time keys of local users: `{user: {device: {key_id: key}}}`.
pub(super) fn claim_local(
    s: &dyn Store,
    wanted: Vec<(UserId, Vec<(DeviceId, String)>)>,
) -> StoreResult<Map<String, Value>> {
    let mut keys = Map::new();
    for (user, devices) in wanted {
        let mut per_device = Map::new();
        for (device, algorithm) in devices {
            if let Some(k) = s.claim_key(&user, &device, &algorithm)? {
                per_device.insert(device.to_string(), json!({ k.key_id: k.key }));
            }
        }
        if !per_device.is_empty() {
            keys.insert(user.to_string(), Value::Object(per_device));
        }
    }
    Ok(keys)
}

/// One user's `[device_id, …]` entry of a key query (empty: every device).
pub(super) fn query_entry(user: &str, devices: &Value) -> Result<Vec<DeviceId>, AppError> {
    devices
        .as_array()
        .ok_or_else(|| AppError::BadJson(format!("device_keys[{user:?}] must be a list")))?
        .iter()
        .map(|d| d.as_str().and_then(|s| DeviceId::parse(s).ok()))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| {
            invalid(format!(
                "device_keys[{user:?}] must be a list of device IDs"
            ))
        })
}

/// One user's `{device_id: algorithm}` entry of a claim.
pub(super) fn claim_entry(
    user: &str,
    devices: &Value,
) -> Result<Vec<(DeviceId, String)>, AppError> {
    let devices = devices
        .as_object()
        .ok_or_else(|| AppError::BadJson(format!("one_time_keys[{user:?}] must be an object")))?;
    let mut list = Vec::new();
    for (device, algorithm) in devices {
        let device = DeviceId::parse(device)
            .map_err(|e| invalid(format!("Invalid device ID {device:?}: {e}")))?;
        let algorithm = algorithm
            .as_str()
            .filter(|a| !a.is_empty() && !a.contains(':'))
            .ok_or_else(|| invalid("Key algorithm must be a string without ':'"))?;
        list.push((device, algorithm.to_owned()));
    }
    Ok(list)
}

/// `GET /keys/changes?from=&to=`. Positions are this server's key-change stream positions;
/// Roam has no `/sync`, so the tokens are plain integers.
pub async fn changes(
    State(state): State<AppState>,
    _auth: Authenticated,
    query: QueryParams,
) -> Result<Json<Value>, AppError> {
    let parse = |name: &str| -> Result<u64, AppError> {
        super::sync::SyncToken::key_position(query.require(name)?)
            .map_err(|_| invalid(format!("Invalid stream token {name:?}")))
    };
    let from = parse("from")?;
    let to = match query.get("to") {
        Some(_) => parse("to")?,
        None => u64::MAX,
    };
    let changed = state.db(move |s| s.key_changes(from, to)).await?;
    Ok(Json(json!({"changed": changed, "left": []})))
}

/// Checks one uploaded cross-signing key and returns its public key.
fn check_cross_signing_key(
    key: &Value,
    kind: CrossSigningKind,
    user: &UserId,
) -> Result<VerifyingKey, AppError> {
    let name = kind.as_str();
    let obj = key
        .as_object()
        .ok_or_else(|| AppError::BadJson(format!("{name}_key must be an object")))?;
    if obj.get("user_id").and_then(Value::as_str) != Some(user.as_str()) {
        return Err(invalid(format!(
            "{name}_key: user_id does not match the access token's user"
        )));
    }
    let usage_ok = obj
        .get("usage")
        .and_then(Value::as_array)
        .is_some_and(|u| u.iter().any(|x| x.as_str() == Some(name)));
    if !usage_ok {
        return Err(invalid(format!("{name}_key: usage must include {name:?}")));
    }
    let keys = obj
        .get("keys")
        .and_then(Value::as_object)
        .filter(|k| k.len() == 1)
        .ok_or_else(|| invalid(format!("{name}_key: keys must hold exactly one key")))?;
    let (id, public) = keys
        .iter()
        .next()
        .ok_or_else(|| invalid(format!("{name}_key: no key")))?;
    let public = public
        .as_str()
        .ok_or_else(|| invalid(format!("{name}_key: key must be a string")))?;
    if id != &format!("ed25519:{public}") {
        return Err(invalid(format!(
            "{name}_key: key ID must be ed25519:<public key>"
        )));
    }
    ed25519_key(public)
        .ok_or_else(|| invalid(format!("{name}_key: not a valid ed25519 public key")))
}

#[derive(Debug, Deserialize)]
pub struct DeviceSigningBody {
    master_key: Option<Value>,
    self_signing_key: Option<Value>,
    user_signing_key: Option<Value>,
    auth: Option<Value>,
}

/// `POST /keys/device_signing/upload`. The first upload needs no UIA; replacing existing keys
/// needs the password, and re-uploading identical keys is a no-op (as in Synapse). The store
/// writes only if the keys are still those checked here, so two uploads racing cannot
/// replace keys without UIA: the loser checks again against what the winner stored.
pub async fn device_signing_upload(
    State(state): State<AppState>,
    auth: Authenticated,
    MatrixJson(body): MatrixJson<DeviceSigningBody>,
) -> Result<Json<Value>, AppError> {
    let mut authorised = false;
    for _ in 0..4 {
        let u = auth.user_id.clone();
        let existing = state.db(move |s| s.cross_signing_keys(&u)).await?;
        let Some(uploads) = checked_uploads(&body, &auth.user_id, &existing)? else {
            return Ok(Json(json!({})));
        };
        if !existing.is_empty() && !authorised {
            let purpose = Purpose::CrossSigning(auth.user_id.clone());
            require_password_uia_for(&state, &auth, body.auth.as_ref(), purpose).await?;
            authorised = true;
        }
        let user = auth.user_id.clone();
        let stored = state
            .db(move |s| s.put_cross_signing_keys(&user, uploads, &existing, now_ms()))
            .await?;
        if stored {
            return Ok(Json(json!({})));
        }
    }
    Err(AppError::LimitExceeded {
        retry_after_ms: 1000,
    })
}

/// The keys of an upload, checked against the stored ones: `None` when there is nothing to
/// do (no keys, or the same keys again).
fn checked_uploads(
    body: &DeviceSigningBody,
    user: &UserId,
    existing: &BTreeMap<CrossSigningKind, Value>,
) -> Result<Option<Vec<(CrossSigningKind, Value)>>, AppError> {
    let mut uploads: Vec<(CrossSigningKind, Value)> = Vec::new();
    for (kind, key) in [
        (CrossSigningKind::Master, &body.master_key),
        (CrossSigningKind::SelfSigning, &body.self_signing_key),
        (CrossSigningKind::UserSigning, &body.user_signing_key),
    ] {
        if let Some(key) = key.as_ref().filter(|k| !k.is_null()) {
            check_cross_signing_key(key, kind, user)?;
            uploads.push((kind, key.clone()));
        }
    }
    if uploads.is_empty() {
        return Ok(None);
    }
    let master = uploads
        .iter()
        .find(|(k, _)| *k == CrossSigningKind::Master)
        .map(|(_, v)| v)
        .or_else(|| existing.get(&CrossSigningKind::Master))
        .ok_or_else(|| AppError::MissingParam("Must provide master cross-signing key".into()))?;
    let master_public = cross_signing_public(master)
        .ok_or_else(|| invalid("master key is malformed"))?
        .to_owned();
    let master_key = ed25519_key(&master_public)
        .ok_or_else(|| invalid("master key is not a valid ed25519 key"))?;
    let master_key_id = KeyId::ed25519(&master_public).map_err(|e| invalid(e.to_string()))?;
    for (kind, key) in &uploads {
        if *kind != CrossSigningKind::Master {
            verify_signature(key, user, &master_key_id, &master_key).map_err(|e| {
                AppError::InvalidSignature(format!(
                    "{}_key must be signed by the master key: {e}",
                    kind.as_str()
                ))
            })?;
        }
    }
    let unchanged = uploads
        .iter()
        .all(|(kind, key)| existing.get(kind) == Some(key));
    Ok((!unchanged).then_some(uploads))
}

/// `POST /keys/signatures/upload`. Each signature is checked on its own; the ones that fail
/// are listed under `failures` and the rest are stored.
pub async fn signatures_upload(
    State(state): State<AppState>,
    auth: Authenticated,
    MatrixJson(body): MatrixJson<Map<String, Value>>,
) -> Result<Json<Value>, AppError> {
    let me = auth.user_id.clone();
    let own_server = state.config().server_name.clone();
    let result = state
        .db(move |s| {
            // Checked against one snapshot and stored only if it still holds; a key that
            // changed meanwhile means checking again.
            for _ in 0..4 {
                if let Some(answer) = sign_once(s, &body, &me, &own_server)? {
                    return Ok(Some(answer));
                }
            }
            Ok(None)
        })
        .await?;
    result.map(Json).ok_or(AppError::LimitExceeded {
        retry_after_ms: 1000,
    })
}

/// One attempt at a signature upload: `None` when the keys changed between the check and
/// the write.
fn sign_once(
    s: &dyn Store,
    body: &Map<String, Value>,
    me: &UserId,
    own_server: &ServerName,
) -> StoreResult<Option<Value>> {
    let others: Vec<UserId> = body
        .keys()
        .filter_map(|u| UserId::parse(u).ok())
        .filter(|u| u != me && u.server_name() == *own_server)
        .collect();
    let signer = Signer::load(s, me.clone(), own_server.clone(), &others)?;
    let mut accepted = Vec::new();
    let mut failures: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    for (user, keys) in body {
        let Some(keys) = keys.as_object() else {
            let e = AppError::BadJson("Expected an object of keys".into());
            failures
                .entry(user.clone())
                .or_default()
                .insert("*".into(), e.failure_entry());
            continue;
        };
        for (target_key, signed_obj) in keys {
            match signer.check(user, target_key, signed_obj) {
                Ok(sigs) => accepted.extend(sigs),
                Err(e) => {
                    failures
                        .entry(user.clone())
                        .or_default()
                        .insert(target_key.clone(), e.failure_entry());
                }
            }
        }
    }
    if !accepted.is_empty()
        && !s.add_key_signatures_if(accepted, &signer.snapshot, &others, now_ms())?
    {
        return Ok(None);
    }
    Ok(Some(json!({"failures": failures})))
}

/// The uploader's side of a signature upload: who signs, and the keys that may sign what,
/// from one read transaction (so the checks see one consistent state of the keys).
struct Signer {
    me: UserId,
    own_server: ServerName,
    my_devices: HashMap<String, Value>,
    mine: BTreeMap<CrossSigningKind, Value>,
    self_signing: Option<(KeyId, VerifyingKey)>,
    user_signing: Option<(KeyId, VerifyingKey)>,
    /// Other local users' cross-signing keys, by user ID.
    others: BTreeMap<String, BTreeMap<CrossSigningKind, Value>>,
    /// What was read, to store the signatures only if it still holds.
    snapshot: SigningSnapshot,
}

/// The stored object a signature is made on, and the keys allowed to make it.
type Target = (Value, Vec<(KeyId, VerifyingKey)>);

impl Signer {
    fn load(
        store: &dyn Store,
        me: UserId,
        own_server: ServerName,
        others: &[UserId],
    ) -> StoreResult<Self> {
        let snapshot = store.signing_snapshot(&me, others)?;
        let kept = snapshot.clone();
        let mine = snapshot.mine;
        let my_key = |kind| -> Option<(KeyId, VerifyingKey)> {
            let public = cross_signing_public(mine.get(&kind)?)?;
            Some((KeyId::ed25519(public).ok()?, ed25519_key(public)?))
        };
        let self_signing = my_key(CrossSigningKind::SelfSigning);
        let user_signing = my_key(CrossSigningKind::UserSigning);
        let my_devices = snapshot
            .my_devices
            .into_iter()
            .map(|(d, k)| (d.to_string(), k))
            .collect();
        Ok(Self {
            snapshot: kept,
            others: snapshot.others,
            me,
            own_server,
            my_devices,
            mine,
            self_signing,
            user_signing,
        })
    }

    /// Validates the signatures in one uploaded object and returns them ready to store.
    fn check(
        &self,
        user: &str,
        target_key: &str,
        signed_obj: &Value,
    ) -> Result<Vec<KeySignature>, AppError> {
        let target_user = UserId::parse(user)
            .map_err(|e| AppError::InvalidParam(format!("Invalid user ID: {e}")))?;
        if target_user.server_name() != self.own_server {
            return Err(AppError::Unsupported(
                "Signing keys of remote users is not supported".into(),
            ));
        }
        let my_sigs = signed_obj
            .get("signatures")
            .and_then(|v| v.get(self.me.as_str()))
            .and_then(Value::as_object)
            .ok_or_else(|| AppError::InvalidSignature("No signatures by the uploader".into()))?;
        // The stored object is what gets signed: the client's copy only supplies signatures.
        let (stored, signers) = if target_user == self.me {
            self.own_target(target_key)?
        } else {
            self.others_master(&target_user, target_key)?
        };
        let mut out = Vec::new();
        for (key_id, key) in signers {
            let Some(sig) = my_sigs.get(key_id.as_str()).and_then(Value::as_str) else {
                continue;
            };
            let mut candidate = stored.clone();
            if let Some(obj) = candidate.as_object_mut() {
                obj.insert(
                    "signatures".into(),
                    json!({ self.me.as_str(): { key_id.as_str(): sig } }),
                );
            }
            verify_signature(&candidate, &self.me, &key_id, &key)
                .map_err(|e| AppError::InvalidSignature(e.to_string()))?;
            out.push(KeySignature {
                target_user: target_user.clone(),
                target_key: target_key.to_owned(),
                signer_user: self.me.clone(),
                signer_key_id: key_id.to_string(),
                signature: sig.to_owned(),
            });
        }
        if out.is_empty() {
            return Err(AppError::InvalidSignature(
                "No signature by a key that may sign this object".into(),
            ));
        }
        Ok(out)
    }

    /// One of my devices (signed by my self-signing key), or my master key (signed by one
    /// of my devices).
    fn own_target(&self, target_key: &str) -> Result<Target, AppError> {
        if let Some(device_keys) = self.my_devices.get(target_key) {
            let ssk = self
                .self_signing
                .clone()
                .ok_or_else(|| AppError::InvalidSignature("No self-signing key uploaded".into()))?;
            return Ok((device_keys.clone(), vec![ssk]));
        }
        let master = self.mine.get(&CrossSigningKind::Master);
        if master.and_then(cross_signing_public) != Some(target_key) {
            return Err(AppError::NotFound("Unknown device or key".into()));
        }
        let devices = self
            .my_devices
            .iter()
            .filter_map(|(id, keys)| {
                let device = DeviceId::parse(id).ok()?;
                Some((KeyId::ed25519(id).ok()?, device_ed25519(keys, &device)?))
            })
            .collect();
        Ok((master.cloned().unwrap_or(Value::Null), devices))
    }

    /// Another user's master key, signed by my user-signing key.
    fn others_master(&self, target_user: &UserId, target_key: &str) -> Result<Target, AppError> {
        let usk = self
            .user_signing
            .clone()
            .ok_or_else(|| AppError::InvalidSignature("No user-signing key uploaded".into()))?;
        let master = self
            .others
            .get(target_user.as_str())
            .and_then(|theirs| theirs.get(&CrossSigningKind::Master))
            .filter(|m| cross_signing_public(m) == Some(target_key))
            .cloned()
            .ok_or_else(|| AppError::NotFound("Unknown key".into()))?;
        Ok((master, vec![usk]))
    }
}
