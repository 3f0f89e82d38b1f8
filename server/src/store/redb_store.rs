//! The redb implementation of [`Store`]: one file in the data directory.
//!
//! Each method is one transaction. Reads use a read transaction (a consistent snapshot);
//! writes use one write transaction that is committed (with redb's default immediate
//! durability) before the method returns.

use std::collections::BTreeMap;

use redb::{ReadableTable, WriteTransaction};
use roam_identity_core::{DeviceId, Millis, UserId, b64};
use serde_json::Value;

use super::accounts::Store;
use super::error::{StoreError, StoreResult};
use super::records::{
    Account, CrossSigningKind, Device, KeySignature, KeysUpload, NewAccount, NewSession,
    OldServerKey, OneTimeKey, RefreshedTokens, RegistrationToken, ServerKeyRecord, SigningSnapshot,
    TokenOwner,
};
use super::redb_database::{
    RedbStore, bump_key_stream, decode_u64, from_json, insert_account, put_session, to_json,
    token_key,
};
use super::tables::{self as t, PRINTABLE_END};

fn parse_user(s: &str) -> StoreResult<UserId> {
    UserId::parse(s).map_err(StoreError::corrupt("user ID"))
}

fn parse_device(s: &str) -> StoreResult<DeviceId> {
    DeviceId::parse(s).map_err(StoreError::corrupt("device ID"))
}

fn device_from_row(user_id: &UserId, device_id: &str, row: t::DeviceRow) -> StoreResult<Device> {
    Ok(Device {
        user_id: user_id.clone(),
        device_id: parse_device(device_id)?,
        display_name: row.display_name,
        created_at: row.created_at,
        last_seen_ip: row.last_seen_ip,
        last_seen_ts: row.last_seen_ts,
    })
}

/// Changes one stored account row; `NotFound` when there is none.
fn update_account(
    txn: &WriteTransaction,
    user: &str,
    change: impl FnOnce(&mut t::AccountRow),
) -> StoreResult<()> {
    let mut accounts = txn.open_table(t::ACCOUNTS)?;
    let mut row: t::AccountRow = match accounts.get(user)? {
        Some(v) => from_json(v.value())?,
        None => return Err(StoreError::NotFound("account")),
    };
    change(&mut row);
    accounts.insert(user, to_json(&row)?.as_str())?;
    Ok(())
}

/// Removes a device with its token, keys and the signatures made on it.
fn remove_device(txn: &WriteTransaction, user: &str, device: &str) -> StoreResult<()> {
    let row: Option<t::DeviceRow> = txn
        .open_table(t::DEVICES)?
        .remove((user, device))?
        .map(|v| from_json(v.value()))
        .transpose()?;
    let Some(row) = row else { return Ok(()) };
    if let Some(hash) = row.token_hash {
        let hash = hex::decode(&hash).map_err(StoreError::corrupt("token hash"))?;
        txn.open_table(t::ACCESS_TOKENS)?.remove(hash.as_slice())?;
    }
    if let Some(hash) = row.refresh_hash {
        let hash = hex::decode(&hash).map_err(StoreError::corrupt("token hash"))?;
        txn.open_table(t::REFRESH_TOKENS)?.remove(hash.as_slice())?;
    }
    let had_keys = txn
        .open_table(t::DEVICE_KEYS)?
        .remove((user, device))?
        .is_some();
    txn.open_table(t::ONE_TIME_KEYS)?
        .retain_in((user, device, "")..(user, device, PRINTABLE_END), |_, _| {
            false
        })?;
    txn.open_table(t::FALLBACK_KEYS)?
        .retain_in((user, device, "")..(user, device, PRINTABLE_END), |_, _| {
            false
        })?;
    txn.open_table(t::KEY_SIGNATURES)?.retain_in(
        (user, device, "", "")..(user, device, PRINTABLE_END, ""),
        |_, _| false,
    )?;
    super::redb_device_plane::drop_inbox(txn, user, device)?;
    if had_keys {
        bump_key_stream(txn, user)?;
    }
    Ok(())
}

fn device_ids(txn: &WriteTransaction, user: &str) -> StoreResult<Vec<String>> {
    let devices = txn.open_table(t::DEVICES)?;
    let mut out = Vec::new();
    for entry in devices.range((user, "")..(user, PRINTABLE_END))? {
        let (k, _) = entry?;
        out.push(k.value().1.to_owned());
    }
    Ok(out)
}

fn count_otks(
    txn_table: &impl ReadableTable<(&'static str, &'static str, &'static str), &'static str>,
    user: &str,
    device: &str,
) -> StoreResult<BTreeMap<String, u64>> {
    let mut counts = BTreeMap::new();
    for entry in txn_table.range((user, device, "")..(user, device, PRINTABLE_END))? {
        let (k, _) = entry?;
        let key_id = k.value().2;
        let algorithm = key_id.split_once(':').map_or(key_id, |(a, _)| a);
        *counts.entry(algorithm.to_owned()).or_insert(0) += 1;
    }
    Ok(counts)
}

impl Store for RedbStore {
    fn server_key_or_insert(&self, candidate: ServerKeyRecord) -> StoreResult<ServerKeyRecord> {
        self.write(|txn| {
            let mut meta = txn.open_table(t::META)?;
            if let Some(v) = meta.get(t::META_SERVER_KEY)? {
                let text =
                    std::str::from_utf8(v.value()).map_err(StoreError::corrupt("server key"))?;
                let row: t::ServerKeyRow = from_json(text)?;
                let seed = b64::decode_array::<32>(&row.seed)
                    .map_err(StoreError::corrupt("server key seed"))?;
                return Ok(ServerKeyRecord {
                    version: row.version,
                    seed,
                    created_at: row.created_at,
                });
            }
            let row = t::ServerKeyRow {
                version: candidate.version.clone(),
                seed: b64::encode(&candidate.seed),
                created_at: candidate.created_at,
            };
            meta.insert(t::META_SERVER_KEY, to_json(&row)?.as_bytes())?;
            Ok(candidate)
        })
    }

    fn old_server_keys(&self) -> StoreResult<Vec<OldServerKey>> {
        self.read(|txn| {
            let table = txn.open_table(t::OLD_SERVER_KEYS)?;
            let mut out = Vec::new();
            for entry in table.iter()? {
                let (k, v) = entry?;
                let row: t::OldServerKeyRow = from_json(v.value())?;
                out.push(OldServerKey {
                    version: k.value().to_owned(),
                    public_key: b64::decode_array::<32>(&row.public_key)
                        .map_err(StoreError::corrupt("old server key"))?,
                    expired_ts: row.expired_ts,
                });
            }
            Ok(out)
        })
    }

    fn create_account(&self, new: NewAccount) -> StoreResult<()> {
        self.write(|txn| insert_account(txn, new))
    }

    fn account(&self, user_id: &UserId) -> StoreResult<Option<Account>> {
        self.read(|txn| {
            let accounts = txn.open_table(t::ACCOUNTS)?;
            let Some(v) = accounts.get(user_id.as_str())? else {
                return Ok(None);
            };
            let row: t::AccountRow = from_json(v.value())?;
            Ok(Some(Account {
                user_id: user_id.clone(),
                password_hash: row.password_hash,
                created_at: row.created_at,
                deactivated: row.deactivated,
            }))
        })
    }

    fn create_session(&self, user_id: &UserId, session: NewSession) -> StoreResult<()> {
        self.write(|txn| {
            let row: t::AccountRow = match txn.open_table(t::ACCOUNTS)?.get(user_id.as_str())? {
                Some(v) => from_json(v.value())?,
                None => return Err(StoreError::NotFound("account")),
            };
            if row.deactivated {
                return Err(StoreError::Deactivated);
            }
            put_session(txn, user_id, session)
        })
    }

    fn set_password(
        &self,
        user_id: &UserId,
        hash: String,
        keep: Option<&DeviceId>,
        logout_devices: bool,
    ) -> StoreResult<()> {
        let u = user_id.as_str();
        self.write(|txn| {
            update_account(txn, u, |row| row.password_hash = Some(hash))?;
            if logout_devices {
                for d in device_ids(txn, u)? {
                    if keep.is_none_or(|k| k.as_str() != d) {
                        remove_device(txn, u, &d)?;
                    }
                }
            }
            Ok(())
        })
    }

    fn deactivate_account(&self, user_id: &UserId) -> StoreResult<()> {
        let u = user_id.as_str();
        self.write(|txn| {
            update_account(txn, u, |row| {
                row.password_hash = None;
                row.deactivated = true;
            })?;
            for d in device_ids(txn, u)? {
                remove_device(txn, u, &d)?;
            }
            txn.open_table(t::PROFILES)?.remove(u)?;
            // What the user stored for their devices goes with them.
            txn.open_table(t::ACCOUNT_DATA)?
                .retain_in((u, "")..(u, PRINTABLE_END), |_, _| false)?;
            txn.open_table(t::BACKUP_KEYS)?
                .retain_in((u, 0, "", "")..=(u, u64::MAX, PRINTABLE_END, ""), |_, _| {
                    false
                })?;
            txn.open_table(t::BACKUP_VERSIONS)?
                .retain_in((u, 0)..=(u, u64::MAX), |_, _| false)?;
            Ok(())
        })
    }

    fn token_owner(&self, token_hash: &[u8; 32]) -> StoreResult<Option<TokenOwner>> {
        self.read(|txn| {
            let tokens = txn.open_table(t::ACCESS_TOKENS)?;
            let Some(v) = tokens.get(token_hash.as_slice())? else {
                return Ok(None);
            };
            let row: t::TokenRow = from_json(v.value())?;
            Ok(Some(TokenOwner {
                user_id: parse_user(&row.user_id)?,
                device_id: parse_device(&row.device_id)?,
                expires_at: row.expires_at,
            }))
        })
    }

    fn refresh_session(
        &self,
        refresh_hash: &[u8; 32],
        new: RefreshedTokens,
    ) -> StoreResult<Option<TokenOwner>> {
        self.write(|txn| {
            let Some(row) = txn
                .open_table(t::REFRESH_TOKENS)?
                .remove(refresh_hash.as_slice())?
                .map(|v| from_json::<t::TokenRow>(v.value()))
                .transpose()?
            else {
                return Ok(None);
            };
            let (user_id, device_id) = (parse_user(&row.user_id)?, parse_device(&row.device_id)?);
            let session = NewSession {
                device_id: device_id.clone(),
                display_name: None,
                token_hash: new.token_hash,
                expires_at: new.expires_at,
                refresh_hash: Some(new.refresh_hash),
                ip: None,
                now: new.now,
            };
            if !device_ids(txn, user_id.as_str())?.contains(&row.device_id) {
                return Ok(None);
            }
            put_session(txn, &user_id, session)?;
            Ok(Some(TokenOwner {
                user_id,
                device_id,
                expires_at: new.expires_at,
            }))
        })
    }

    fn delete_devices(&self, user_id: &UserId, devices: &[DeviceId]) -> StoreResult<()> {
        self.write(|txn| {
            for d in devices {
                remove_device(txn, user_id.as_str(), d.as_str())?;
            }
            Ok(())
        })
    }

    fn delete_all_devices(&self, user_id: &UserId) -> StoreResult<()> {
        self.write(|txn| {
            for d in device_ids(txn, user_id.as_str())? {
                remove_device(txn, user_id.as_str(), &d)?;
            }
            Ok(())
        })
    }

    fn devices(&self, user_id: &UserId) -> StoreResult<Vec<Device>> {
        self.read(|txn| {
            let devices = txn.open_table(t::DEVICES)?;
            let u = user_id.as_str();
            let mut out = Vec::new();
            for entry in devices.range((u, "")..(u, PRINTABLE_END))? {
                let (k, v) = entry?;
                out.push(device_from_row(
                    user_id,
                    k.value().1,
                    from_json(v.value())?,
                )?);
            }
            Ok(out)
        })
    }

    fn device(&self, user_id: &UserId, device_id: &DeviceId) -> StoreResult<Option<Device>> {
        self.read(|txn| {
            let devices = txn.open_table(t::DEVICES)?;
            let Some(v) = devices.get((user_id.as_str(), device_id.as_str()))? else {
                return Ok(None);
            };
            Ok(Some(device_from_row(
                user_id,
                device_id.as_str(),
                from_json(v.value())?,
            )?))
        })
    }

    fn set_device_display_name(
        &self,
        user_id: &UserId,
        device_id: &DeviceId,
        name: Option<String>,
    ) -> StoreResult<()> {
        self.write(|txn| {
            let mut devices = txn.open_table(t::DEVICES)?;
            let key = (user_id.as_str(), device_id.as_str());
            let mut row: t::DeviceRow = match devices.get(key)? {
                Some(v) => from_json(v.value())?,
                None => return Err(StoreError::NotFound("device")),
            };
            row.display_name = name;
            devices.insert(key, to_json(&row)?.as_str())?;
            // The display name is part of what /keys/query returns.
            if txn.open_table(t::DEVICE_KEYS)?.get(key)?.is_some() {
                bump_key_stream(txn, user_id.as_str())?;
            }
            Ok(())
        })
    }

    fn upload_keys(
        &self,
        user_id: &UserId,
        device_id: &DeviceId,
        upload: KeysUpload,
        _now: Millis,
    ) -> StoreResult<BTreeMap<String, u64>> {
        let (u, d) = (user_id.as_str(), device_id.as_str());
        self.write(|txn| {
            if txn.open_table(t::DEVICES)?.get((u, d))?.is_none() {
                return Err(StoreError::NotFound("device"));
            }
            if let Some(keys) = &upload.device_keys {
                let text = to_json(keys)?;
                let mut table = txn.open_table(t::DEVICE_KEYS)?;
                let changed = table.get((u, d))?.is_none_or(|old| old.value() != text);
                if changed {
                    table.insert((u, d), text.as_str())?;
                    drop(table);
                    bump_key_stream(txn, u)?;
                }
            }
            let mut otks = txn.open_table(t::ONE_TIME_KEYS)?;
            for k in &upload.one_time_keys {
                let text = to_json(&k.key)?;
                let existing = otks
                    .get((u, d, k.key_id.as_str()))?
                    .map(|v| v.value().to_owned());
                match existing {
                    // Re-uploading the same key is harmless (a retried request); a different key
                    // under the same ID would silently change what a peer may have claimed.
                    Some(old) if old == text => {}
                    Some(_) => {
                        return Err(StoreError::KeyConflict {
                            key_id: k.key_id.clone(),
                        });
                    }
                    None => {
                        otks.insert((u, d, k.key_id.as_str()), text.as_str())?;
                    }
                }
            }
            let mut fallbacks = txn.open_table(t::FALLBACK_KEYS)?;
            for k in upload.fallback_keys {
                let algorithm = k
                    .key_id
                    .split_once(':')
                    .map_or(k.key_id.as_str(), |(a, _)| a)
                    .to_owned();
                let row = t::FallbackKeyRow {
                    key_id: k.key_id,
                    key: k.key,
                    used: false,
                };
                fallbacks.insert((u, d, algorithm.as_str()), to_json(&row)?.as_str())?;
            }
            count_otks(&otks, u, d)
        })
    }

    fn one_time_key_counts(
        &self,
        user_id: &UserId,
        device_id: &DeviceId,
    ) -> StoreResult<BTreeMap<String, u64>> {
        self.read(|txn| {
            count_otks(
                &txn.open_table(t::ONE_TIME_KEYS)?,
                user_id.as_str(),
                device_id.as_str(),
            )
        })
    }

    fn device_keys(
        &self,
        user_id: &UserId,
        only: &[DeviceId],
    ) -> StoreResult<Vec<(Device, Value)>> {
        self.read(|txn| {
            let keys = txn.open_table(t::DEVICE_KEYS)?;
            let devices = txn.open_table(t::DEVICES)?;
            let u = user_id.as_str();
            let mut out = Vec::new();
            let mut push = |device: &str, json: &str| -> StoreResult<()> {
                let Some(row) = devices.get((u, device))? else {
                    return Ok(());
                };
                let dev = device_from_row(user_id, device, from_json(row.value())?)?;
                out.push((dev, from_json(json)?));
                Ok(())
            };
            if only.is_empty() {
                for entry in keys.range((u, "")..(u, PRINTABLE_END))? {
                    let (k, v) = entry?;
                    push(k.value().1, v.value())?;
                }
            } else {
                for d in only {
                    if let Some(v) = keys.get((u, d.as_str()))? {
                        push(d.as_str(), v.value())?;
                    }
                }
            }
            Ok(out)
        })
    }

    fn claim_key(
        &self,
        user_id: &UserId,
        device_id: &DeviceId,
        algorithm: &str,
    ) -> StoreResult<Option<OneTimeKey>> {
        let (u, d) = (user_id.as_str(), device_id.as_str());
        let lo = format!("{algorithm}:");
        // ';' is the character after ':', so this range is exactly "algorithm:*".
        let hi = format!("{algorithm};");
        self.write(|txn| {
            let mut otks = txn.open_table(t::ONE_TIME_KEYS)?;
            let first = otks
                .range((u, d, lo.as_str())..(u, d, hi.as_str()))?
                .next()
                .transpose()?
                .map(|(k, v)| (k.value().2.to_owned(), v.value().to_owned()));
            if let Some((key_id, text)) = first {
                otks.remove((u, d, key_id.as_str()))?;
                return Ok(Some(OneTimeKey {
                    key_id,
                    key: from_json(&text)?,
                }));
            }
            let mut fallbacks = txn.open_table(t::FALLBACK_KEYS)?;
            let row: Option<t::FallbackKeyRow> = fallbacks
                .get((u, d, algorithm))?
                .map(|v| from_json(v.value()))
                .transpose()?;
            match row {
                Some(mut row) => {
                    let key = OneTimeKey {
                        key_id: row.key_id.clone(),
                        key: row.key.clone(),
                    };
                    if !row.used {
                        row.used = true;
                        fallbacks.insert((u, d, algorithm), to_json(&row)?.as_str())?;
                    }
                    Ok(Some(key))
                }
                None => Ok(None),
            }
        })
    }

    fn unused_fallback_key_types(
        &self,
        user_id: &UserId,
        device_id: &DeviceId,
    ) -> StoreResult<Vec<String>> {
        self.read(|txn| {
            let table = txn.open_table(t::FALLBACK_KEYS)?;
            let (u, d) = (user_id.as_str(), device_id.as_str());
            let mut out = Vec::new();
            for entry in table.range((u, d, "")..(u, d, PRINTABLE_END))? {
                let (k, v) = entry?;
                let row: t::FallbackKeyRow = from_json(v.value())?;
                if !row.used {
                    out.push(k.value().2.to_owned());
                }
            }
            Ok(out)
        })
    }

    fn cross_signing_keys(
        &self,
        user_id: &UserId,
    ) -> StoreResult<BTreeMap<CrossSigningKind, Value>> {
        self.read(|txn| cross_signing_in(&txn.open_table(t::CROSS_SIGNING_KEYS)?, user_id))
    }

    fn put_cross_signing_keys(
        &self,
        user_id: &UserId,
        keys: Vec<(CrossSigningKind, Value)>,
        expected: &BTreeMap<CrossSigningKind, Value>,
        _now: Millis,
    ) -> StoreResult<bool> {
        self.write(|txn| {
            let u = user_id.as_str();
            {
                let mut table = txn.open_table(t::CROSS_SIGNING_KEYS)?;
                if cross_signing_in(&table, user_id)? != *expected {
                    // Changed since the caller checked (and maybe authorised) the upload.
                    return Ok(false);
                }
                let replaces_master = keys.iter().any(|(k, _)| *k == CrossSigningKind::Master);
                for (kind, key) in &keys {
                    table.insert((u, kind.as_str()), to_json(key)?.as_str())?;
                }
                if replaces_master {
                    // Signatures made by or on the old identity no longer describe the new one.
                    drop(table);
                    let mut sigs = txn.open_table(t::KEY_SIGNATURES)?;
                    sigs.retain(|(target, _, signer, _), _| target != u && signer != u)?;
                }
            }
            bump_key_stream(txn, u)?;
            Ok(true)
        })
    }

    fn signing_snapshot(&self, me: &UserId, others: &[UserId]) -> StoreResult<SigningSnapshot> {
        self.read(|txn| {
            snapshot_in(
                &txn.open_table(t::CROSS_SIGNING_KEYS)?,
                &txn.open_table(t::DEVICE_KEYS)?,
                &txn.open_table(t::DEVICES)?,
                me,
                others,
            )
        })
    }

    fn add_key_signatures_if(
        &self,
        signatures: Vec<KeySignature>,
        expected: &SigningSnapshot,
        others: &[UserId],
        _now: Millis,
    ) -> StoreResult<bool> {
        let Some(me) = signatures.first().map(|s| s.signer_user.clone()) else {
            return Ok(true);
        };
        let txn = self.db.begin_write()?;
        let current = snapshot_in(
            &txn.open_table(t::CROSS_SIGNING_KEYS)?,
            &txn.open_table(t::DEVICE_KEYS)?,
            &txn.open_table(t::DEVICES)?,
            &me,
            others,
        )?;
        if current != *expected {
            return Ok(false);
        }
        insert_signatures(&txn, &signatures)?;
        txn.commit()?;
        Ok(true)
    }

    fn add_key_signatures(&self, signatures: Vec<KeySignature>, _now: Millis) -> StoreResult<()> {
        self.write(|txn| insert_signatures(txn, &signatures))
    }

    fn key_signatures(&self, target_user: &UserId) -> StoreResult<Vec<KeySignature>> {
        self.read(|txn| {
            let table = txn.open_table(t::KEY_SIGNATURES)?;
            let u = target_user.as_str();
            let mut out = Vec::new();
            // Cross-signing key IDs are base64 and device IDs printable ASCII: all below 0x7F.
            for entry in table.range((u, "", "", "")..(u, PRINTABLE_END, "", ""))? {
                let (k, v) = entry?;
                let (_, target_key, signer_user, signer_key_id) = k.value();
                out.push(KeySignature {
                    target_user: target_user.clone(),
                    target_key: target_key.to_owned(),
                    signer_user: parse_user(signer_user)?,
                    signer_key_id: signer_key_id.to_owned(),
                    signature: v.value().to_owned(),
                });
            }
            Ok(out)
        })
    }

    fn key_change_position(&self) -> StoreResult<u64> {
        self.read(|txn| {
            let meta = txn.open_table(t::META)?;
            meta.get(t::META_KEY_STREAM)?
                .map(|v| decode_u64(v.value()))
                .transpose()
                .map(|v| v.unwrap_or(0))
        })
    }

    fn key_changes(&self, from: u64, to: u64) -> StoreResult<Vec<UserId>> {
        if to <= from {
            return Ok(Vec::new());
        }
        self.read(|txn| {
            let table = txn.open_table(t::KEY_CHANGES)?;
            let mut users = std::collections::BTreeSet::new();
            for entry in table.range(from + 1..=to)? {
                let (_, v) = entry?;
                users.insert(v.value().to_owned());
            }
            users.iter().map(|u| parse_user(u)).collect()
        })
    }

    fn create_registration_token(&self, token: RegistrationToken) -> StoreResult<()> {
        let key = token_key(&token.token);
        self.write(|txn| {
            let mut table = txn.open_table(t::REGISTRATION_TOKENS)?;
            if table.get(key.as_str())?.is_some() {
                return Err(StoreError::TokenExists);
            }
            let row = t::RegistrationTokenRow {
                uses_allowed: token.uses_allowed,
                completed: token.completed,
                expiry_time: token.expiry_time,
                created_at: token.created_at,
            };
            table.insert(key.as_str(), to_json(&row)?.as_str())?;
            Ok(())
        })
    }

    fn registration_tokens(&self) -> StoreResult<Vec<RegistrationToken>> {
        self.read(|txn| {
            let table = txn.open_table(t::REGISTRATION_TOKENS)?;
            let mut out = Vec::new();
            for entry in table.iter()? {
                let (k, v) = entry?;
                out.push(token_from_row(token_id(k.value()), from_json(v.value())?));
            }
            Ok(out)
        })
    }

    fn registration_token(&self, token: &str) -> StoreResult<Option<RegistrationToken>> {
        let key = token_key(token);
        self.read(|txn| {
            let table = txn.open_table(t::REGISTRATION_TOKENS)?;
            let row = table
                .get(key.as_str())?
                .map(|v| from_json(v.value()))
                .transpose()?;
            Ok(row.map(|row| token_from_row(token_id(&key), row)))
        })
    }

    fn revoke_registration_token(&self, token_or_id: &str) -> StoreResult<()> {
        self.write(|txn| {
            let mut table = txn.open_table(t::REGISTRATION_TOKENS)?;
            if table.remove(token_key(token_or_id).as_str())?.is_some() {
                return Ok(());
            }
            // An ID from `registration_tokens` (a prefix of the hash) names one token.
            let id = token_or_id.to_ascii_lowercase();
            let is_id = id.len() >= 8 && id.bytes().all(|b| b.is_ascii_hexdigit());
            let mut matches = Vec::new();
            if is_id {
                for entry in table.range(id.as_str()..)? {
                    let (k, _) = entry?;
                    if !k.value().starts_with(&id) {
                        break;
                    }
                    matches.push(k.value().to_owned());
                }
            }
            match matches.as_slice() {
                [key] => {
                    table.remove(key.as_str())?;
                    Ok(())
                }
                _ => Err(StoreError::NotFound("registration token")),
            }
        })
    }
}

/// The ID a stored token is listed under: the first eight hex digits of its hash.
fn token_id(key: &str) -> &str {
    key.get(..8).unwrap_or(key)
}

/// Stores signatures and marks the targets' key lists as changed, in the caller's
/// transaction.
pub(super) fn insert_signatures(
    txn: &WriteTransaction,
    signatures: &[KeySignature],
) -> StoreResult<()> {
    let mut touched = std::collections::BTreeSet::new();
    {
        let mut table = txn.open_table(t::KEY_SIGNATURES)?;
        for s in signatures {
            table.insert(
                (
                    s.target_user.as_str(),
                    s.target_key.as_str(),
                    s.signer_user.as_str(),
                    s.signer_key_id.as_str(),
                ),
                s.signature.as_str(),
            )?;
            touched.insert(s.target_user.as_str().to_owned());
        }
    }
    for user in touched {
        bump_key_stream(txn, &user)?;
    }
    Ok(())
}

/// What checking a signature upload reads, from the caller's transaction.
fn snapshot_in(
    cs: &impl ReadableTable<(&'static str, &'static str), &'static str>,
    keys: &impl ReadableTable<(&'static str, &'static str), &'static str>,
    devices: &impl ReadableTable<(&'static str, &'static str), &'static str>,
    me: &UserId,
    others: &[UserId],
) -> StoreResult<SigningSnapshot> {
    let u = me.as_str();
    let mut my_devices = Vec::new();
    for entry in keys.range((u, "")..(u, PRINTABLE_END))? {
        let (k, v) = entry?;
        let device = k.value().1;
        if devices.get((u, device))?.is_some() {
            my_devices.push((parse_device(device)?, from_json(v.value())?));
        }
    }
    let mut theirs = BTreeMap::new();
    for other in others {
        theirs.insert(other.to_string(), cross_signing_in(cs, other)?);
    }
    Ok(SigningSnapshot {
        mine: cross_signing_in(cs, me)?,
        my_devices,
        others: theirs,
    })
}

/// One user's cross-signing keys, read from `table` (in the caller's transaction).
pub(super) fn cross_signing_in(
    table: &impl ReadableTable<(&'static str, &'static str), &'static str>,
    user_id: &UserId,
) -> StoreResult<BTreeMap<CrossSigningKind, Value>> {
    let mut out = BTreeMap::new();
    for kind in CrossSigningKind::ALL {
        if let Some(v) = table.get((user_id.as_str(), kind.as_str()))? {
            out.insert(kind, from_json(v.value())?);
        }
    }
    Ok(out)
}

fn token_from_row(token: &str, row: t::RegistrationTokenRow) -> RegistrationToken {
    RegistrationToken {
        token: token.to_owned(),
        uses_allowed: row.uses_allowed,
        completed: row.completed,
        expiry_time: row.expiry_time,
        created_at: row.created_at,
    }
}
