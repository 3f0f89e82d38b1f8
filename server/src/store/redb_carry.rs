//! The redb implementation of [`CarryStore`].

use redb::{ReadTransaction, ReadableTable, WriteTransaction};
use roam_identity_core::{DeviceId, Did, Millis, UserId};
use serde_json::Value;

use super::carry::{
    CarriedBackup, CarriedDevice, CarriedUser, CarryStore, DevicePlane, ImportOutcome,
    MAX_CARRIED_BACKUP_KEYS,
};
use super::device_plane::MAX_ACCOUNT_DATA_TYPES;
use super::error::{StoreError, StoreResult};
use super::records::{KeySignature, OneTimeKey};
use super::redb_database::{RedbStore, bump_key_stream, from_json, to_json};
use super::redb_device_plane::next_message_pos;
use super::redb_key_backup::{current, store_keys};
use super::redb_store::{cross_signing_in, insert_signatures};
use super::tables::{self as t, PRINTABLE_END};

fn corrupt_user(s: &str) -> StoreResult<UserId> {
    UserId::parse(s).map_err(StoreError::corrupt("user ID"))
}

fn corrupt_device(s: &str) -> StoreResult<DeviceId> {
    DeviceId::parse(s).map_err(StoreError::corrupt("device ID"))
}

/// One device's unclaimed one-time keys and unused fallback keys.
fn device_spare_keys(
    txn: &ReadTransaction,
    u: &str,
    d: &str,
) -> StoreResult<(Vec<OneTimeKey>, Vec<OneTimeKey>)> {
    let mut otks = Vec::new();
    for row in txn
        .open_table(t::ONE_TIME_KEYS)?
        .range((u, d, "")..(u, d, PRINTABLE_END))?
    {
        let (k, v) = row?;
        otks.push(OneTimeKey {
            key_id: k.value().2.to_owned(),
            key: from_json(v.value())?,
        });
    }
    let mut fallbacks = Vec::new();
    for row in txn
        .open_table(t::FALLBACK_KEYS)?
        .range((u, d, "")..(u, d, PRINTABLE_END))?
    {
        let fb: t::FallbackKeyRow = from_json(row?.1.value())?;
        if !fb.used {
            fallbacks.push(OneTimeKey {
                key_id: fb.key_id,
                key: fb.key,
            });
        }
    }
    Ok((otks, fallbacks))
}

/// Everything held for one user ID's keys.
fn read_user(txn: &ReadTransaction, user: &UserId) -> StoreResult<CarriedUser> {
    let u = user.as_str();
    let device_keys = txn.open_table(t::DEVICE_KEYS)?;
    let mut devices = Vec::new();
    for row in txn
        .open_table(t::DEVICES)?
        .range((u, "")..(u, PRINTABLE_END))?
    {
        let (k, v) = row?;
        let d = k.value().1;
        let Some(keys) = device_keys.get((u, d))? else {
            continue;
        };
        let dev: t::DeviceRow = from_json(v.value())?;
        let (one_time_keys, fallback_keys) = device_spare_keys(txn, u, d)?;
        devices.push(CarriedDevice {
            device_id: corrupt_device(d)?,
            display_name: dev.display_name,
            keys: from_json(keys.value())?,
            one_time_keys,
            fallback_keys,
        });
    }
    let mut signatures = Vec::new();
    for row in txn
        .open_table(t::KEY_SIGNATURES)?
        .range((u, "", "", "")..(u, PRINTABLE_END, "", ""))?
    {
        let (k, v) = row?;
        let (_, target_key, signer, key_id) = k.value();
        if signer == u {
            signatures.push(KeySignature {
                target_user: user.clone(),
                target_key: target_key.to_owned(),
                signer_user: user.clone(),
                signer_key_id: key_id.to_owned(),
                signature: v.value().to_owned(),
            });
        }
    }
    Ok(CarriedUser {
        user_id: user.clone(),
        cross_signing: cross_signing_in(&txn.open_table(t::CROSS_SIGNING_KEYS)?, user)?,
        devices,
        signatures,
    })
}

/// The current backup version with its keys.
fn read_backup(txn: &ReadTransaction, u: &str) -> StoreResult<Option<CarriedBackup>> {
    let Some((version, row)) = current(&txn.open_table(t::BACKUP_VERSIONS)?, u)? else {
        return Ok(None);
    };
    if row.count > MAX_CARRIED_BACKUP_KEYS as u64 {
        return Err(StoreError::CapReached("backed-up keys to carry"));
    }
    let mut keys = Vec::new();
    for row in txn
        .open_table(t::BACKUP_KEYS)?
        .range((u, version, "", "")..(u, version, PRINTABLE_END, ""))?
    {
        let (k, v) = row?;
        let (_, _, room, session) = k.value();
        keys.push((room.to_owned(), session.to_owned(), from_json(v.value())?));
    }
    Ok(Some(CarriedBackup {
        algorithm: row.algorithm,
        auth_data: row.auth_data,
        keys,
    }))
}

/// Stores one user ID's keys (devices created without a session where missing).
fn write_user(txn: &WriteTransaction, user: &CarriedUser, now: Millis) -> StoreResult<()> {
    let u = user.user_id.as_str();
    {
        let mut devices = txn.open_table(t::DEVICES)?;
        let mut keys = txn.open_table(t::DEVICE_KEYS)?;
        let mut otks = txn.open_table(t::ONE_TIME_KEYS)?;
        let mut fallbacks = txn.open_table(t::FALLBACK_KEYS)?;
        for dev in &user.devices {
            let d = dev.device_id.as_str();
            if devices.get((u, d))?.is_none() {
                let row = t::DeviceRow {
                    display_name: dev.display_name.clone(),
                    created_at: now,
                    token_hash: None,
                    refresh_hash: None,
                    last_seen_ip: None,
                    last_seen_ts: None,
                };
                devices.insert((u, d), to_json(&row)?.as_str())?;
            }
            keys.insert((u, d), to_json(&dev.keys)?.as_str())?;
            for k in &dev.one_time_keys {
                if otks.get((u, d, k.key_id.as_str()))?.is_none() {
                    otks.insert((u, d, k.key_id.as_str()), to_json(&k.key)?.as_str())?;
                }
            }
            for k in &dev.fallback_keys {
                let algorithm = k.key_id.split_once(':').map_or(k.key_id.as_str(), |p| p.0);
                let row = t::FallbackKeyRow {
                    key_id: k.key_id.clone(),
                    key: k.key.clone(),
                    used: false,
                };
                fallbacks.insert((u, d, algorithm), to_json(&row)?.as_str())?;
            }
        }
        let mut cs = txn.open_table(t::CROSS_SIGNING_KEYS)?;
        for (kind, key) in &user.cross_signing {
            cs.insert((u, kind.as_str()), to_json(key)?.as_str())?;
        }
    }
    insert_signatures(txn, &user.signatures)?;
    bump_key_stream(txn, u)?;
    Ok(())
}

/// Sets account data types (within the per-user cap); returns how many.
fn write_account_data(
    txn: &WriteTransaction,
    u: &str,
    data: &[(String, Value)],
) -> StoreResult<usize> {
    let mut table = txn.open_table(t::ACCOUNT_DATA)?;
    for (kind, content) in data {
        if table.get((u, kind.as_str()))?.is_none() {
            let held = table.range((u, "")..(u, PRINTABLE_END))?.count();
            if held >= MAX_ACCOUNT_DATA_TYPES {
                return Err(StoreError::CapReached("account data types"));
            }
        }
        let pos = next_message_pos(txn)?;
        let row = t::AccountDataRow {
            pos,
            content: content.clone(),
        };
        table.insert((u, kind.as_str()), to_json(&row)?.as_str())?;
    }
    Ok(data.len())
}

/// Puts the keys into the live version with the same algorithm and `auth_data`, else into a
/// new current version; returns the version and how many keys were new.
fn write_backup(txn: &WriteTransaction, u: &str, b: &CarriedBackup) -> StoreResult<(u64, u64)> {
    let mut table = txn.open_table(t::BACKUP_VERSIONS)?;
    let mut same = None;
    let mut newest = 0;
    for row in table.range((u, 0)..=(u, u64::MAX))? {
        let (k, v) = row?;
        let r: t::BackupVersionRow = from_json(v.value())?;
        newest = k.value().1;
        if !r.deleted && r.algorithm == b.algorithm && r.auth_data == b.auth_data {
            same = Some((newest, r));
        }
    }
    let (version, mut row) = match same {
        Some(found) => found,
        None => (
            newest + 1,
            t::BackupVersionRow {
                algorithm: b.algorithm.clone(),
                auth_data: b.auth_data.clone(),
                etag: 0,
                count: 0,
                deleted: false,
            },
        ),
    };
    let (added, changed) = store_keys(txn, u, version, &b.keys)?;
    row.count += added;
    if changed {
        row.etag += 1;
    }
    table.insert((u, version), to_json(&row)?.as_str())?;
    Ok((version, added))
}

impl CarryStore for RedbStore {
    fn device_plane(&self, account: &UserId, did: Option<&Did>) -> StoreResult<DevicePlane> {
        let u = account.as_str();
        self.read(|txn| {
            let mut account_data = Vec::new();
            for row in txn
                .open_table(t::ACCOUNT_DATA)?
                .range((u, "")..(u, PRINTABLE_END))?
            {
                let (k, v) = row?;
                let r: t::AccountDataRow = from_json(v.value())?;
                account_data.push((k.value().1.to_owned(), r.content));
            }
            let mut users = vec![read_user(txn, account)?];
            if let Some(did) = did {
                for row in txn.open_table(t::CARRIED_USERS)?.iter()? {
                    let (k, v) = row?;
                    if v.value() == did.as_str() && k.value() != u {
                        users.push(read_user(txn, &corrupt_user(k.value())?)?);
                    }
                }
            }
            Ok(DevicePlane {
                account_data,
                backup: read_backup(txn, u)?,
                users,
            })
        })
    }

    fn import_device_plane(
        &self,
        account: &UserId,
        did: &Did,
        plane: DevicePlane,
        now: Millis,
    ) -> StoreResult<ImportOutcome> {
        let u = account.as_str();
        self.write(|txn| {
            let mut out = ImportOutcome {
                account_data: write_account_data(txn, u, &plane.account_data)?,
                ..ImportOutcome::default()
            };
            if let Some(b) = &plane.backup {
                let (version, added) = write_backup(txn, u, b)?;
                out.backup_version = Some(version);
                out.backup_keys_added = added;
            }
            for user in &plane.users {
                if user.user_id != *account {
                    txn.open_table(t::CARRIED_USERS)?
                        .insert(user.user_id.as_str(), did.as_str())?;
                }
                write_user(txn, user, now)?;
                out.devices += user.devices.len();
                out.users.push(user.user_id.clone());
            }
            Ok(out)
        })
    }

    fn carried_did(&self, user_id: &UserId) -> StoreResult<Option<Did>> {
        self.read(|txn| {
            txn.open_table(t::CARRIED_USERS)?
                .get(user_id.as_str())?
                .map(|v| Did::parse(v.value()).map_err(StoreError::corrupt("DID")))
                .transpose()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{CrossSigningKind, KeyBackupStore, Store};
    use serde_json::json;

    #[test]
    fn a_device_plane_round_trips_and_a_repeat_changes_nothing() {
        let store = RedbStore::in_memory().unwrap();
        let me = UserId::parse("@a:b.test").unwrap();
        let old = UserId::parse("@a:a.test").unwrap();
        let did = Did::parse("did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK").unwrap();
        let plane = DevicePlane {
            account_data: vec![("m.secret_storage.default_key".into(), json!({"key": "k"}))],
            backup: Some(CarriedBackup {
                algorithm: "m.megolm_backup.v1.curve25519-aes-sha2".into(),
                auth_data: json!({"public_key": "p"}),
                keys: vec![(
                    "!r:a.test".into(),
                    "s1".into(),
                    json!({"first_message_index": 0, "session_data": {"c": 1}}),
                )],
            }),
            users: vec![CarriedUser {
                user_id: old.clone(),
                cross_signing: [(CrossSigningKind::Master, json!({"user_id": "@a:a.test"}))].into(),
                devices: vec![CarriedDevice {
                    device_id: DeviceId::parse("DEV").unwrap(),
                    display_name: Some("phone".into()),
                    keys: json!({"user_id": "@a:a.test", "device_id": "DEV"}),
                    one_time_keys: vec![OneTimeKey {
                        key_id: "signed_curve25519:AAAA".into(),
                        key: json!({"key": "x"}),
                    }],
                    fallback_keys: vec![],
                }],
                signatures: vec![],
            }],
        };
        let out = store
            .import_device_plane(&me, &did, plane.clone(), 1)
            .unwrap();
        assert_eq!((out.backup_version, out.backup_keys_added), (Some(1), 1));
        let again = store
            .import_device_plane(&me, &did, plane.clone(), 2)
            .unwrap();
        assert_eq!(
            (again.backup_version, again.backup_keys_added),
            (Some(1), 0)
        );
        assert_eq!(store.carried_did(&old).unwrap(), Some(did.clone()));
        assert_eq!(store.carried_did(&me).unwrap(), None);
        let back = store.device_plane(&me, Some(&did)).unwrap();
        assert_eq!(back.account_data, plane.account_data);
        assert_eq!(back.backup, plane.backup);
        assert_eq!(back.users[1], plane.users[0]);
        assert_eq!(store.backup_version(&me, None).unwrap().unwrap().count, 1);
        assert_eq!(store.device_keys(&old, &[]).unwrap().len(), 1);
    }
}
