//! Carrying an account's device plane between homeservers (spec/api.md, "Device plane
//! export and import"): `GET /_roam/v1/device-plane` answers the caller's own device plane
//! as one object; `POST /_roam/v1/device-plane` takes one in, signed by the account's update
//! key for this server (`roam_identity_core::device_plane`).
//!
//! The server moves client-made objects as they are: encrypted account data and backups it
//! cannot read, and keys the client signed. It checks only what it can: the request's
//! signature against the verified log it holds, that every carried user ID is the account's
//! (claimed by its log; one of another server must resolve to this DID, so a log that merely
//! claims someone else's user ID cannot inject keys for it), and that the keys are signed as
//! Matrix requires. Keys of another server's user ID are served for it from then on
//! ([`answers_for`]), so peers reach the account through its old user ID.

use std::collections::BTreeMap;

use roam_identity_core::canonical::NumberPolicy;
use roam_identity_core::device_plane::{ImportRequestError, verify_import};
use roam_identity_core::{DeviceId, Did, KeyId, ServerName, UserId, VerifyingKey, b64};
use roam_identity_core::{bundle, signed};
use serde_json::{Map, Value, json};

use super::service::Portable;
use crate::clock::now_ms;
use crate::error::AppError;
use crate::store::carry::{
    CarriedBackup, CarriedDevice, CarriedUser, DevicePlane, ImportOutcome, MAX_CARRIED_DEVICES,
    MAX_CARRIED_USERS,
};
use crate::store::{CrossSigningKind, KeySignature, OneTimeKey, Store, StoreResult};

/// The `type` of an exported device plane.
pub const DEVICE_PLANE_TYPE: &str = "roam.device_plane";

/// Whether this server answers key queries and claims for `user`: one of its own, or a user
/// ID of another server carried here for an account it hosts.
pub fn answers_for(s: &dyn Store, own: &ServerName, user: &UserId) -> StoreResult<bool> {
    Ok(user.server_name() == *own || s.carried_did(user)?.is_some())
}

/// Where to-device messages for `user` are delivered here: the user itself when it is
/// local; for a carried user ID, the local account of its DID (messages keep their device
/// IDs, which travel with the account log).
pub fn inbox_of(s: &dyn Store, own: &ServerName, user: &UserId) -> StoreResult<Option<UserId>> {
    if user.server_name() == *own {
        return Ok(Some(user.clone()));
    }
    let Some(did) = s.carried_did(user)? else {
        return Ok(None);
    };
    let Some(summary) = s.log_summary(&did)? else {
        return Ok(None);
    };
    for u in summary.user_ids.iter().filter(|u| u.server_name() == *own) {
        if s.did_of_user(u)?.as_ref() == Some(&did) {
            return Ok(Some(u.clone()));
        }
    }
    Ok(None)
}

fn bad(msg: impl Into<String>) -> AppError {
    AppError::BadJson(msg.into())
}

fn ed25519(text: &str) -> Option<VerifyingKey> {
    VerifyingKey::from_bytes(&b64::decode_array::<32>(text).ok()?).ok()
}

/// The single public key of a cross-signing key object, with its key ID.
fn cross_signing_key(obj: &Value) -> Option<(KeyId, VerifyingKey)> {
    let keys = obj.get("keys")?.as_object()?;
    if keys.len() != 1 {
        return None;
    }
    let (id, public) = keys.iter().next()?;
    let public = public.as_str()?;
    (id == &format!("ed25519:{public}")).then_some(())?;
    Some((KeyId::parse(id).ok()?, ed25519(public)?))
}

fn verify(obj: &Value, user: &UserId, key_id: &KeyId, key: &VerifyingKey) -> bool {
    signed::verify_with(obj, user.as_str(), key_id, key, NumberPolicy::MatrixLenient).is_ok()
}

// --- the wire object ---

fn key_map(keys: &[OneTimeKey]) -> Value {
    Value::Object(
        keys.iter()
            .map(|k| (k.key_id.clone(), k.key.clone()))
            .collect(),
    )
}

fn user_to_wire(u: &CarriedUser) -> Value {
    let mut out = Map::new();
    for (kind, key) in &u.cross_signing {
        out.insert(format!("{}_key", kind.as_str()), key.clone());
    }
    let devices: Map<String, Value> = u
        .devices
        .iter()
        .map(|d| {
            let v = json!({"display_name": d.display_name, "keys": d.keys,
                "one_time_keys": key_map(&d.one_time_keys),
                "fallback_keys": key_map(&d.fallback_keys)});
            (d.device_id.to_string(), v)
        })
        .collect();
    out.insert("devices".into(), Value::Object(devices));
    let mut sigs: BTreeMap<&str, Map<String, Value>> = BTreeMap::new();
    for s in &u.signatures {
        sigs.entry(&s.target_key)
            .or_default()
            .insert(s.signer_key_id.clone(), json!(s.signature));
    }
    out.insert("signatures".into(), json!(sigs));
    Value::Object(out)
}

/// The exported object (spec/api.md).
pub fn plane_to_wire(p: &DevicePlane) -> Value {
    let account_data: Map<String, Value> = p.account_data.iter().cloned().collect();
    let key_backup = p.backup.as_ref().map(|b| {
        let mut rooms: BTreeMap<&str, Map<String, Value>> = BTreeMap::new();
        for (room, session, data) in &b.keys {
            rooms
                .entry(room)
                .or_default()
                .insert(session.clone(), data.clone());
        }
        let rooms: Map<String, Value> = rooms
            .into_iter()
            .map(|(r, s)| (r.to_owned(), json!({"sessions": s})))
            .collect();
        json!({"algorithm": b.algorithm, "auth_data": b.auth_data, "rooms": rooms})
    });
    let users: Map<String, Value> = p
        .users
        .iter()
        .map(|u| (u.user_id.to_string(), user_to_wire(u)))
        .collect();
    json!({"type": DEVICE_PLANE_TYPE, "version": 1, "account_data": account_data,
           "key_backup": key_backup, "users": users})
}

fn object<'a>(v: &'a Value, what: &str) -> Result<&'a Map<String, Value>, AppError> {
    v.as_object()
        .ok_or_else(|| bad(format!("{what} must be an object")))
}

fn keys_from_wire(v: Option<&Value>, what: &str) -> Result<Vec<OneTimeKey>, AppError> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(Vec::new());
    };
    Ok(object(v, what)?
        .iter()
        .map(|(id, key)| OneTimeKey {
            key_id: id.clone(),
            key: key.clone(),
        })
        .collect())
}

fn backup_from_wire(v: &Value) -> Result<Option<CarriedBackup>, AppError> {
    if v.is_null() {
        return Ok(None);
    }
    let algorithm = v["algorithm"]
        .as_str()
        .ok_or_else(|| bad("key_backup.algorithm must be a string"))?;
    let auth_data = v["auth_data"].clone();
    object(&auth_data, "key_backup.auth_data")?;
    let mut keys = Vec::new();
    for (room, r) in object(&v["rooms"], "key_backup.rooms")? {
        for (session, data) in object(&r["sessions"], "key_backup.rooms.*.sessions")? {
            object(data, "a backed-up key")?;
            keys.push((room.clone(), session.clone(), data.clone()));
        }
    }
    Ok(Some(CarriedBackup {
        algorithm: algorithm.to_owned(),
        auth_data,
        keys,
    }))
}

/// Checks one carried cross-signing key of `user`.
fn check_cross_signing(
    key: &Value,
    kind: CrossSigningKind,
    user: &UserId,
) -> Result<(KeyId, VerifyingKey), AppError> {
    let name = kind.as_str();
    let usage_ok = key["usage"]
        .as_array()
        .is_some_and(|u| u.iter().any(|x| x.as_str() == Some(name)));
    if key["user_id"].as_str() != Some(user.as_str()) || !usage_ok {
        return Err(AppError::InvalidParam(format!(
            "{user}'s {name}_key must name {user} and the usage {name}"
        )));
    }
    cross_signing_key(key)
        .ok_or_else(|| AppError::InvalidParam(format!("{user}'s {name}_key is malformed")))
}

fn cross_signing_from_wire(
    v: &Map<String, Value>,
    user: &UserId,
) -> Result<BTreeMap<CrossSigningKind, Value>, AppError> {
    let mut out = BTreeMap::new();
    let mut master = None;
    for kind in CrossSigningKind::ALL {
        let Some(key) = v
            .get(&format!("{}_key", kind.as_str()))
            .filter(|k| !k.is_null())
        else {
            continue;
        };
        let checked = check_cross_signing(key, kind, user)?;
        if kind == CrossSigningKind::Master {
            master = Some(checked);
        }
        out.insert(kind, key.clone());
    }
    for (kind, key) in &out {
        let signed = master
            .as_ref()
            .is_some_and(|(id, k)| *kind == CrossSigningKind::Master || verify(key, user, id, k));
        if !signed {
            return Err(AppError::InvalidSignature(format!(
                "{user}'s {}_key is not signed by its master key",
                kind.as_str()
            )));
        }
    }
    Ok(out)
}

fn device_from_wire(id: &str, v: &Value, user: &UserId) -> Result<CarriedDevice, AppError> {
    let device_id = DeviceId::parse(id)
        .map_err(|e| AppError::InvalidParam(format!("Invalid device ID {id:?}: {e}")))?;
    let keys = v["keys"].clone();
    let named = keys["user_id"].as_str() == Some(user.as_str()) && keys["device_id"] == id;
    let key = keys["keys"][format!("ed25519:{id}")]
        .as_str()
        .and_then(ed25519);
    let key_id = KeyId::ed25519(id).map_err(|e| AppError::InvalidParam(e.to_string()))?;
    match key {
        Some(k) if named && verify(&keys, user, &key_id, &k) => {
            let one_time_keys = keys_from_wire(v.get("one_time_keys"), "one_time_keys")?;
            let fallback_keys = keys_from_wire(v.get("fallback_keys"), "fallback_keys")?;
            for otk in one_time_keys.iter().chain(&fallback_keys) {
                if otk.key.get("signatures").is_some() && !verify(&otk.key, user, &key_id, &k) {
                    return Err(AppError::InvalidSignature(format!(
                        "{user}'s {id} key {} is not signed by the device",
                        otk.key_id
                    )));
                }
            }
            Ok(CarriedDevice {
                device_id,
                display_name: v["display_name"].as_str().map(str::to_owned),
                keys,
                one_time_keys,
                fallback_keys,
            })
        }
        _ => Err(AppError::InvalidSignature(format!(
            "{user}'s device {id}: the keys must name it and be signed by its ed25519 key"
        ))),
    }
}

/// The owner's signatures that verify: devices by the self-signing key, the master key by
/// a device. Others (made by keys replaced since) are left behind.
fn signatures_from_wire(u: &CarriedUser, sigs: &Value) -> Vec<KeySignature> {
    let ssk = u
        .cross_signing
        .get(&CrossSigningKind::SelfSigning)
        .and_then(cross_signing_key);
    let master = u.cross_signing.get(&CrossSigningKind::Master);
    let master_public = master.and_then(cross_signing_key).map(|(id, _)| id);
    let mut out = Vec::new();
    for (target, by_key) in sigs.as_object().into_iter().flatten() {
        for (key_id, sig) in by_key.as_object().into_iter().flatten() {
            let Some(sig) = sig.as_str() else { continue };
            let (obj, signer) = if let Some(d) = u
                .devices
                .iter()
                .find(|d| d.device_id.as_str() == target.as_str())
            {
                (&d.keys, ssk.clone().filter(|(id, _)| id.as_str() == key_id))
            } else if master_public
                .as_ref()
                .is_some_and(|m| m.version() == target)
            {
                let device = u.devices.iter().find_map(|d| {
                    let id = KeyId::ed25519(d.device_id.as_str()).ok()?;
                    let k = d.keys["keys"][id.as_str()].as_str().and_then(ed25519)?;
                    (id.as_str() == key_id).then_some((id, k))
                });
                (master.unwrap_or(&Value::Null), device)
            } else {
                continue;
            };
            let Some((id, key)) = signer else { continue };
            let mut candidate = obj.clone();
            candidate["signatures"] = json!({ u.user_id.as_str(): { key_id: sig } });
            if verify(&candidate, &u.user_id, &id, &key) {
                out.push(KeySignature {
                    target_user: u.user_id.clone(),
                    target_key: target.clone(),
                    signer_user: u.user_id.clone(),
                    signer_key_id: key_id.clone(),
                    signature: sig.to_owned(),
                });
            }
        }
    }
    out
}

fn user_from_wire(user: &UserId, v: &Value) -> Result<CarriedUser, AppError> {
    let map = object(v, "users.*")?;
    let devices = map.get("devices").map_or(Ok(Vec::new()), |d| {
        let d = object(d, "devices")?;
        if d.len() > MAX_CARRIED_DEVICES {
            return Err(AppError::TooLarge(format!(
                "At most {MAX_CARRIED_DEVICES} devices per user ID"
            )));
        }
        d.iter()
            .map(|(id, dv)| device_from_wire(id, dv, user))
            .collect()
    })?;
    let mut u = CarriedUser {
        user_id: user.clone(),
        cross_signing: cross_signing_from_wire(map, user)?,
        devices,
        signatures: Vec::new(),
    };
    u.signatures = signatures_from_wire(&u, map.get("signatures").unwrap_or(&Value::Null));
    Ok(u)
}

/// Reads an exported object, checking every key's signatures.
pub fn plane_from_wire(v: &Value) -> Result<DevicePlane, AppError> {
    if v["type"].as_str() != Some(DEVICE_PLANE_TYPE) || v["version"].as_u64() != Some(1) {
        return Err(bad(
            "device_plane must be a roam.device_plane object, version 1",
        ));
    }
    let account_data = match v.get("account_data").filter(|a| !a.is_null()) {
        Some(a) => object(a, "account_data")?
            .iter()
            .map(|(k, c)| Ok((k.clone(), object(c, "account data")?.clone().into())))
            .collect::<Result<Vec<(String, Value)>, AppError>>()?,
        None => Vec::new(),
    };
    let users = match v.get("users").filter(|u| !u.is_null()) {
        Some(u) => object(u, "users")?,
        None => &Map::new(),
    };
    if users.len() > MAX_CARRIED_USERS {
        return Err(AppError::TooLarge(format!(
            "At most {MAX_CARRIED_USERS} user IDs"
        )));
    }
    let users = users
        .iter()
        .map(|(id, u)| {
            let user = UserId::parse(id)
                .map_err(|e| AppError::InvalidParam(format!("Invalid user ID {id:?}: {e}")))?;
            user_from_wire(&user, u)
        })
        .collect::<Result<_, _>>()?;
    Ok(DevicePlane {
        account_data,
        backup: backup_from_wire(v.get("key_backup").unwrap_or(&Value::Null))?,
        users,
    })
}

/// The request's optional `bundle` (the account's, as an export file carries it), verified:
/// its attestations bind old user IDs when their server is gone and cannot be asked.
fn carried_bundle(req: &Value, did: &Did) -> Result<Option<bundle::VerifiedBundle>, AppError> {
    let Some(raw) = req.get("bundle").filter(|b| !b.is_null()) else {
        return Ok(None);
    };
    let b = bundle::Bundle::from_value(raw)
        .map_err(|e| AppError::InvalidParam(format!("bundle: {e}")))?;
    bundle::verify(&b, Some(did), now_ms())
        .map(Some)
        .map_err(|e| AppError::InvalidParam(format!("bundle does not verify: {e}")))
}

/// Why a carried user ID was left out of an import.
fn refused_user(user: &UserId, why: String) -> Value {
    json!({"user_id": user.as_str(), "reason": why})
}

impl Portable {
    /// `GET /_roam/v1/device-plane`: the caller's device plane.
    pub async fn export_device_plane(&self, user: &UserId) -> Result<Value, AppError> {
        let u = user.clone();
        let plane = self
            .db
            .run(move |s| {
                let did = s.did_of_user(&u)?;
                s.device_plane(&u, did.as_ref())
            })
            .await
            .map_err(|e| match e {
                crate::store::StoreError::CapReached(what) => AppError::TooLarge(format!(
                    "Too many {what}: export the backup with a Matrix client instead"
                )),
                e => e.into(),
            })?;
        Ok(plane_to_wire(&plane))
    }

    /// `POST /_roam/v1/device-plane`: checks the request against the held log (signed by
    /// the current update key, for this server, recent), then imports into the account's
    /// local user. User IDs that are not the account's are left out and listed.
    pub async fn import_device_plane(&self, req: Value) -> Result<Value, AppError> {
        let did = req["did"]
            .as_str()
            .ok_or_else(|| AppError::MissingParam("Missing param: did".into()))
            .and_then(|d| Did::parse(d).map_err(|e| AppError::InvalidParam(format!("did: {e}"))))?;
        let Some((_, log)) = self.held_log(&did).await? else {
            return Err(AppError::NotFound(format!("{did} is not hosted here")));
        };
        let st = &log.state;
        if st.deactivated || !st.servers.contains(&self.server) {
            return Err(AppError::Forbidden(format!("{did} is not hosted here")));
        }
        let account = self
            .bound_here(st)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| AppError::Forbidden(format!("{did} has no account here")))?;
        let wire = verify_import(&req, &did, &st.update_key, &self.server, now_ms()).map_err(
            |e| match e {
                ImportRequestError::Format(_) => AppError::BadJson(e.to_string()),
                ImportRequestError::WrongServer(_) => AppError::InvalidParam(e.to_string()),
                _ => AppError::Forbidden(e.to_string()),
            },
        )?;
        let mut plane = plane_from_wire(wire)?;
        let bundle = carried_bundle(&req, &did)?;
        let mut refused = Vec::new();
        let mut kept = Vec::new();
        for u in std::mem::take(&mut plane.users) {
            let from_bundle = bundle.as_ref().is_some_and(|b| {
                !matches!(b.binding(&u.user_id, now_ms()), bundle::Attested::Missing)
            });
            let belongs = if from_bundle {
                Ok(())
            } else {
                self.belongs(&u.user_id, &account, &did, &st.user_ids).await
            };
            match belongs.and_then(|()| {
                if st.user_ids.contains(&u.user_id) || u.user_id == account {
                    Ok(())
                } else {
                    Err("the account log does not claim it".into())
                }
            }) {
                Ok(()) => kept.push(u),
                Err(why) => refused.push(refused_user(&u.user_id, why)),
            }
        }
        plane.users = kept;
        let (a, d) = (account.clone(), did.clone());
        let out: ImportOutcome = self
            .db
            .run(move |s| s.import_device_plane(&a, &d, plane, now_ms()))
            .await?;
        Ok(json!({
            "user_id": account.as_str(),
            "account_data": out.account_data,
            "backup_version": out.backup_version.map(|v| v.to_string()),
            "backup_keys_added": out.backup_keys_added,
            "users": out.users.iter().map(UserId::as_str).collect::<Vec<_>>(),
            "devices": out.devices,
            "refused": refused,
        }))
    }

    /// Whether keys naming `user` may be stored for the account: its local user here, or a
    /// user ID of another server the log claims and the resolver binds to this DID.
    async fn belongs(
        &self,
        user: &UserId,
        account: &UserId,
        did: &Did,
        claimed: &[UserId],
    ) -> Result<(), String> {
        if user == account {
            return Ok(());
        }
        if !claimed.contains(user) {
            return Err("the account log does not claim it".into());
        }
        if user.server_name() == self.server {
            return Err("a user ID of this server that is not the account's".into());
        }
        match self.federation.resolve_user(user).await {
            Ok(r) if r.did == *did => Ok(()),
            Ok(r) => Err(format!("it resolves to another account ({})", r.did)),
            Err(e) => Err(format!("it cannot be resolved now ({e})")),
        }
    }
}
