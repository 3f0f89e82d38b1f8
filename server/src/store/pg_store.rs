//! The PostgreSQL implementation of [`Store`]: the same rows and rules as the redb one
//! (`redb_store.rs`), each method one serializable transaction committed before it returns.

use std::collections::{BTreeMap, BTreeSet};

use roam_identity_core::{DeviceId, Millis, UserId};
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};

use super::accounts::Store;
use super::error::{StoreError, StoreResult};
use super::pg_database::{
    PgStore, PoolStats, bump_key_stream, drop_tokens, insert_account, opt_u64, put_session, to_i64,
    to_u64,
};
use super::pg_shared;
use super::records::{
    Account, CrossSigningKind, Device, KeySignature, KeysUpload, NewAccount, NewSession,
    OldServerKey, OneTimeKey, RefreshedTokens, RegistrationToken, ServerKeyRecord, SharedCaps,
    SharedEntry, SigningSnapshot, TokenOwner,
};
use super::redb_database::{from_json, to_json, token_key};

fn parse_user(s: &str) -> StoreResult<UserId> {
    UserId::parse(s).map_err(StoreError::corrupt("user ID"))
}

fn parse_device(s: &str) -> StoreResult<DeviceId> {
    DeviceId::parse(s).map_err(StoreError::corrupt("device ID"))
}

const DEVICE_COLUMNS: &str =
    "user_id, device_id, display_name, created_at, last_seen_ip, last_seen_ts";

fn device_from_row(row: &PgRow) -> StoreResult<Device> {
    Ok(Device {
        user_id: parse_user(row.try_get("user_id")?)?,
        device_id: parse_device(row.try_get("device_id")?)?,
        display_name: row.try_get("display_name")?,
        created_at: to_u64(row.try_get("created_at")?)?,
        last_seen_ip: row.try_get("last_seen_ip")?,
        last_seen_ts: opt_u64(row.try_get("last_seen_ts")?)?,
    })
}

/// The algorithm part of a key ID (`signed_curve25519:AAAAAQ` → `signed_curve25519`).
fn algorithm_of(key_id: &str) -> &str {
    key_id.split_once(':').map_or(key_id, |(a, _)| a)
}

async fn exec(c: &mut PgConnection, sql: &str, u: &str, d: &str) -> StoreResult<u64> {
    Ok(sqlx::query(sql)
        .bind(u)
        .bind(d)
        .execute(&mut *c)
        .await?
        .rows_affected())
}

/// Removes a device with its tokens, keys and the signatures made on it.
async fn remove_device(c: &mut PgConnection, u: &str, d: &str) -> StoreResult<()> {
    let row = sqlx::query(
        "DELETE FROM devices WHERE user_id = $1 AND device_id = $2 \
         RETURNING token_hash, refresh_hash",
    )
    .bind(u)
    .bind(d)
    .fetch_optional(&mut *c)
    .await?;
    let Some(row) = row else { return Ok(()) };
    drop_tokens(c, &row).await?;
    let had_keys = exec(
        c,
        "DELETE FROM device_keys WHERE user_id = $1 AND device_id = $2",
        u,
        d,
    )
    .await?
        > 0;
    exec(
        c,
        "DELETE FROM one_time_keys WHERE user_id = $1 AND device_id = $2",
        u,
        d,
    )
    .await?;
    exec(
        c,
        "DELETE FROM fallback_keys WHERE user_id = $1 AND device_id = $2",
        u,
        d,
    )
    .await?;
    exec(
        c,
        "DELETE FROM key_signatures WHERE target_user = $1 AND target_key = $2",
        u,
        d,
    )
    .await?;
    super::pg_device_plane::drop_inbox(c, u, d).await?;
    if had_keys {
        bump_key_stream(c, u).await?;
    }
    Ok(())
}

async fn device_ids(c: &mut PgConnection, u: &str) -> StoreResult<Vec<String>> {
    Ok(
        sqlx::query_scalar("SELECT device_id FROM devices WHERE user_id = $1 ORDER BY device_id")
            .bind(u)
            .fetch_all(&mut *c)
            .await?,
    )
}

async fn count_otks(c: &mut PgConnection, u: &str, d: &str) -> StoreResult<BTreeMap<String, u64>> {
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT key_id FROM one_time_keys WHERE user_id = $1 AND device_id = $2",
    )
    .bind(u)
    .bind(d)
    .fetch_all(&mut *c)
    .await?;
    let mut counts = BTreeMap::new();
    for id in &ids {
        *counts.entry(algorithm_of(id).to_owned()).or_insert(0) += 1;
    }
    Ok(counts)
}

/// One user's cross-signing keys, in the caller's transaction.
pub(super) async fn cross_signing_in(
    c: &mut PgConnection,
    user_id: &UserId,
) -> StoreResult<BTreeMap<CrossSigningKind, Value>> {
    let rows = sqlx::query("SELECT kind, key FROM cross_signing_keys WHERE user_id = $1")
        .bind(user_id.as_str())
        .fetch_all(&mut *c)
        .await?;
    let mut out = BTreeMap::new();
    for row in rows {
        let kind: &str = row.try_get(0)?;
        let kind = CrossSigningKind::ALL
            .into_iter()
            .find(|k| k.as_str() == kind)
            .ok_or(StoreError::Dangling {
                what: "cross-signing kind",
            })?;
        out.insert(kind, from_json(row.try_get(1)?)?);
    }
    Ok(out)
}

/// What checking a signature upload reads, in the caller's transaction.
async fn snapshot_in(
    c: &mut PgConnection,
    me: &UserId,
    others: &[UserId],
) -> StoreResult<SigningSnapshot> {
    let rows = sqlx::query(
        "SELECT k.device_id, k.keys FROM device_keys k JOIN devices d \
         ON d.user_id = k.user_id AND d.device_id = k.device_id \
         WHERE k.user_id = $1 ORDER BY k.device_id",
    )
    .bind(me.as_str())
    .fetch_all(&mut *c)
    .await?;
    let mut my_devices = Vec::new();
    for row in rows {
        my_devices.push((parse_device(row.try_get(0)?)?, from_json(row.try_get(1)?)?));
    }
    let mut theirs = BTreeMap::new();
    for other in others {
        theirs.insert(other.to_string(), cross_signing_in(c, other).await?);
    }
    Ok(SigningSnapshot {
        mine: cross_signing_in(c, me).await?,
        my_devices,
        others: theirs,
    })
}

/// Stores signatures and marks the targets' key lists as changed.
pub(super) async fn insert_signatures(
    c: &mut PgConnection,
    signatures: &[KeySignature],
) -> StoreResult<()> {
    let mut touched = BTreeSet::new();
    for s in signatures {
        sqlx::query(
            "INSERT INTO key_signatures (target_user, target_key, signer_user, signer_key_id, \
             signature) VALUES ($1, $2, $3, $4, $5) ON CONFLICT \
             (target_user, target_key, signer_user, signer_key_id) \
             DO UPDATE SET signature = excluded.signature",
        )
        .bind(s.target_user.as_str())
        .bind(&s.target_key)
        .bind(s.signer_user.as_str())
        .bind(&s.signer_key_id)
        .bind(&s.signature)
        .execute(&mut *c)
        .await?;
        touched.insert(s.target_user.as_str().to_owned());
    }
    for user in touched {
        bump_key_stream(c, &user).await?;
    }
    Ok(())
}

fn token_from_row(row: &PgRow) -> StoreResult<RegistrationToken> {
    let hash: String = row.try_get("hash")?;
    let uses: Option<i64> = row.try_get("uses_allowed")?;
    let completed: i64 = row.try_get("completed")?;
    Ok(RegistrationToken {
        token: hash.get(..8).unwrap_or(&hash).to_owned(),
        uses_allowed: uses.map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
        completed: u32::try_from(completed).unwrap_or(u32::MAX),
        expiry_time: opt_u64(row.try_get("expiry_time")?)?,
        created_at: to_u64(row.try_get("created_at")?)?,
    })
}

/// Stores uploaded one-time keys: the same key again is harmless (a retried request), a
/// different key under a known ID is refused.
async fn insert_otks(
    c: &mut PgConnection,
    u: &str,
    d: &str,
    keys: &[OneTimeKey],
) -> StoreResult<()> {
    for k in keys {
        let text = to_json(&k.key)?;
        let existing: Option<String> = sqlx::query_scalar(
            "SELECT key FROM one_time_keys WHERE user_id = $1 AND device_id = $2 AND key_id = $3",
        )
        .bind(u)
        .bind(d)
        .bind(&k.key_id)
        .fetch_optional(&mut *c)
        .await?;
        match existing {
            Some(old) if old == text => {}
            Some(_) => {
                return Err(StoreError::KeyConflict {
                    key_id: k.key_id.clone(),
                });
            }
            None => {
                sqlx::query(
                    "INSERT INTO one_time_keys (user_id, device_id, key_id, key) \
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(u)
                .bind(d)
                .bind(&k.key_id)
                .bind(&text)
                .execute(&mut *c)
                .await?;
            }
        }
    }
    Ok(())
}

async fn upload_keys_in(
    c: &mut PgConnection,
    u: &str,
    d: &str,
    upload: &KeysUpload,
) -> StoreResult<BTreeMap<String, u64>> {
    let known = sqlx::query("SELECT 1 FROM devices WHERE user_id = $1 AND device_id = $2")
        .bind(u)
        .bind(d)
        .fetch_optional(&mut *c)
        .await?;
    if known.is_none() {
        return Err(StoreError::NotFound("device"));
    }
    if let Some(keys) = &upload.device_keys {
        let text = to_json(keys)?;
        let changed = sqlx::query(
            "INSERT INTO device_keys (user_id, device_id, keys) VALUES ($1, $2, $3) \
             ON CONFLICT (user_id, device_id) DO UPDATE SET keys = excluded.keys \
             WHERE device_keys.keys <> excluded.keys",
        )
        .bind(u)
        .bind(d)
        .bind(&text)
        .execute(&mut *c)
        .await?
        .rows_affected();
        if changed > 0 {
            bump_key_stream(c, u).await?;
        }
    }
    insert_otks(c, u, d, &upload.one_time_keys).await?;
    for k in &upload.fallback_keys {
        sqlx::query(
            "INSERT INTO fallback_keys (user_id, device_id, algorithm, key_id, key, used) \
             VALUES ($1, $2, $3, $4, $5, false) ON CONFLICT (user_id, device_id, algorithm) \
             DO UPDATE SET key_id = excluded.key_id, key = excluded.key, used = false",
        )
        .bind(u)
        .bind(d)
        .bind(algorithm_of(&k.key_id))
        .bind(&k.key_id)
        .bind(to_json(&k.key)?)
        .execute(&mut *c)
        .await?;
    }
    count_otks(c, u, d).await
}

async fn claim_key_in(
    c: &mut PgConnection,
    u: &str,
    d: &str,
    algorithm: &str,
) -> StoreResult<Option<OneTimeKey>> {
    // ';' is the character after ':', so this range is exactly "algorithm:*".
    let first = sqlx::query(
        "DELETE FROM one_time_keys WHERE (user_id, device_id, key_id) = \
         (SELECT user_id, device_id, key_id FROM one_time_keys WHERE user_id = $1 \
          AND device_id = $2 AND key_id >= $3 AND key_id < $4 ORDER BY key_id LIMIT 1) \
         RETURNING key_id, key",
    )
    .bind(u)
    .bind(d)
    .bind(format!("{algorithm}:"))
    .bind(format!("{algorithm};"))
    .fetch_optional(&mut *c)
    .await?;
    if let Some(row) = first {
        return Ok(Some(OneTimeKey {
            key_id: row.try_get(0)?,
            key: from_json(row.try_get(1)?)?,
        }));
    }
    let fallback = sqlx::query(
        "UPDATE fallback_keys SET used = true WHERE user_id = $1 AND device_id = $2 \
         AND algorithm = $3 RETURNING key_id, key",
    )
    .bind(u)
    .bind(d)
    .bind(algorithm)
    .fetch_optional(&mut *c)
    .await?;
    fallback
        .map(|row| {
            Ok(OneTimeKey {
                key_id: row.try_get(0)?,
                key: from_json(row.try_get(1)?)?,
            })
        })
        .transpose()
}

/// Writes cross-signing keys of `u` as given (no checks), in the caller's transaction.
pub(super) async fn write_cross_signing<'a>(
    c: &mut PgConnection,
    u: &str,
    keys: impl IntoIterator<Item = (&'a CrossSigningKind, &'a Value)>,
) -> StoreResult<()> {
    for (kind, key) in keys {
        sqlx::query(
            "INSERT INTO cross_signing_keys (user_id, kind, key) VALUES ($1, $2, $3) \
             ON CONFLICT (user_id, kind) DO UPDATE SET key = excluded.key",
        )
        .bind(u)
        .bind(kind.as_str())
        .bind(to_json(key)?)
        .execute(&mut *c)
        .await?;
    }
    Ok(())
}

async fn put_cross_signing_in(
    c: &mut PgConnection,
    user_id: &UserId,
    keys: &[(CrossSigningKind, Value)],
    expected: &BTreeMap<CrossSigningKind, Value>,
) -> StoreResult<bool> {
    if cross_signing_in(c, user_id).await? != *expected {
        // Changed since the caller checked (and maybe authorised) the upload.
        return Ok(false);
    }
    let u = user_id.as_str();
    write_cross_signing(c, u, keys.iter().map(|(k, v)| (k, v))).await?;
    if keys.iter().any(|(k, _)| *k == CrossSigningKind::Master) {
        // Signatures made by or on the old identity no longer describe the new one.
        exec(
            c,
            "DELETE FROM key_signatures WHERE target_user = $1 OR signer_user = $2",
            u,
            u,
        )
        .await?;
    }
    bump_key_stream(c, u).await?;
    Ok(true)
}

async fn server_key_in(
    c: &mut PgConnection,
    candidate: &ServerKeyRecord,
) -> StoreResult<ServerKeyRecord> {
    sqlx::query(
        "INSERT INTO server_key (id, version, seed, created_at) VALUES (1, $1, $2, $3) \
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(&candidate.version)
    .bind(candidate.seed.as_slice())
    .bind(to_i64(candidate.created_at))
    .execute(&mut *c)
    .await?;
    let row = sqlx::query("SELECT version, seed, created_at FROM server_key WHERE id = 1")
        .fetch_one(&mut *c)
        .await?;
    let seed: Vec<u8> = row.try_get(1)?;
    Ok(ServerKeyRecord {
        version: row.try_get(0)?,
        seed: <[u8; 32]>::try_from(seed.as_slice())
            .map_err(StoreError::corrupt("server key seed"))?,
        created_at: to_u64(row.try_get(2)?)?,
    })
}

async fn revoke_token_in(c: &mut PgConnection, token_or_id: &str) -> StoreResult<()> {
    let exact = sqlx::query("DELETE FROM registration_tokens WHERE hash = $1")
        .bind(token_key(token_or_id))
        .execute(&mut *c)
        .await?
        .rows_affected();
    if exact > 0 {
        return Ok(());
    }
    // An ID from `registration_tokens` (a prefix of the hash) names one token.
    let id = token_or_id.to_ascii_lowercase();
    if id.len() < 8 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(StoreError::NotFound("registration token"));
    }
    let matches: Vec<String> =
        sqlx::query_scalar("SELECT hash FROM registration_tokens WHERE starts_with(hash, $1)")
            .bind(&id)
            .fetch_all(&mut *c)
            .await?;
    match matches.as_slice() {
        [key] => {
            sqlx::query("DELETE FROM registration_tokens WHERE hash = $1")
                .bind(key)
                .execute(&mut *c)
                .await?;
            Ok(())
        }
        _ => Err(StoreError::NotFound("registration token")),
    }
}

async fn refresh_in(
    c: &mut PgConnection,
    refresh_hash: &[u8; 32],
    new: &RefreshedTokens,
) -> StoreResult<Option<TokenOwner>> {
    let row =
        sqlx::query("DELETE FROM refresh_tokens WHERE hash = $1 RETURNING user_id, device_id")
            .bind(refresh_hash.as_slice())
            .fetch_optional(&mut *c)
            .await?;
    let Some(row) = row else { return Ok(None) };
    let user_id = parse_user(row.try_get(0)?)?;
    let device_id = parse_device(row.try_get(1)?)?;
    if !device_ids(c, user_id.as_str())
        .await?
        .iter()
        .any(|d| d == device_id.as_str())
    {
        return Ok(None);
    }
    let session = NewSession {
        device_id: device_id.clone(),
        display_name: None,
        token_hash: new.token_hash,
        expires_at: new.expires_at,
        refresh_hash: Some(new.refresh_hash),
        ip: None,
        now: new.now,
    };
    put_session(c, &user_id, &session).await?;
    Ok(Some(TokenOwner {
        user_id,
        device_id,
        expires_at: new.expires_at,
    }))
}

/// Deactivates an account: no password, no devices, no profile, no account data, no key
/// backups (the user ID stays taken).
async fn deactivate_in(c: &mut PgConnection, u: &str) -> StoreResult<()> {
    let updated = sqlx::query(
        "UPDATE accounts SET password_hash = NULL, deactivated = true WHERE user_id = $1",
    )
    .bind(u)
    .execute(&mut *c)
    .await?
    .rows_affected();
    if updated == 0 {
        return Err(StoreError::NotFound("account"));
    }
    for d in device_ids(c, u).await? {
        remove_device(c, u, &d).await?;
    }
    // What the user stored for their devices goes with them.
    for table in ["profiles", "account_data", "backup_keys", "backup_versions"] {
        sqlx::query(&format!("DELETE FROM {table} WHERE user_id = $1"))
            .bind(u)
            .execute(&mut *c)
            .await?;
    }
    Ok(())
}

impl Store for PgStore {
    fn server_key_or_insert(&self, candidate: ServerKeyRecord) -> StoreResult<ServerKeyRecord> {
        self.txn(async |c| server_key_in(c, &candidate).await)
    }

    fn old_server_keys(&self) -> StoreResult<Vec<OldServerKey>> {
        self.txn(async |c| {
            let rows = sqlx::query("SELECT version, public_key, expired_ts FROM old_server_keys")
                .fetch_all(&mut *c)
                .await?;
            let mut out = Vec::new();
            for row in rows {
                let key: Vec<u8> = row.try_get(1)?;
                out.push(OldServerKey {
                    version: row.try_get(0)?,
                    public_key: <[u8; 32]>::try_from(key.as_slice())
                        .map_err(StoreError::corrupt("old server key"))?,
                    expired_ts: to_u64(row.try_get(2)?)?,
                });
            }
            Ok(out)
        })
    }

    fn create_account(&self, new: NewAccount) -> StoreResult<()> {
        self.txn(async |c| insert_account(c, &new).await)
    }

    fn account(&self, user_id: &UserId) -> StoreResult<Option<Account>> {
        self.block(async {
            let row = sqlx::query(
                "SELECT password_hash, created_at, deactivated FROM accounts \
                     WHERE user_id = $1",
            )
            .bind(user_id.as_str())
            .fetch_optional(&self.pool)
            .await?;
            row.map(|row| {
                Ok(Account {
                    user_id: user_id.clone(),
                    password_hash: row.try_get(0)?,
                    created_at: to_u64(row.try_get(1)?)?,
                    deactivated: row.try_get(2)?,
                })
            })
            .transpose()
        })
    }

    fn create_session(&self, user_id: &UserId, session: NewSession) -> StoreResult<()> {
        self.txn(async |c| {
            let deactivated: Option<bool> =
                sqlx::query_scalar("SELECT deactivated FROM accounts WHERE user_id = $1")
                    .bind(user_id.as_str())
                    .fetch_optional(&mut *c)
                    .await?;
            match deactivated {
                None => Err(StoreError::NotFound("account")),
                Some(true) => Err(StoreError::Deactivated),
                Some(false) => put_session(c, user_id, &session).await,
            }
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
        self.txn(async |c| {
            let updated = sqlx::query("UPDATE accounts SET password_hash = $2 WHERE user_id = $1")
                .bind(u)
                .bind(&hash)
                .execute(&mut *c)
                .await?
                .rows_affected();
            if updated == 0 {
                return Err(StoreError::NotFound("account"));
            }
            if logout_devices {
                for d in device_ids(c, u).await? {
                    if keep.is_none_or(|k| k.as_str() != d) {
                        remove_device(c, u, &d).await?;
                    }
                }
            }
            Ok(())
        })
    }

    fn deactivate_account(&self, user_id: &UserId) -> StoreResult<()> {
        self.txn(async |c| deactivate_in(c, user_id.as_str()).await)
    }

    fn token_owner(&self, token_hash: &[u8; 32]) -> StoreResult<Option<TokenOwner>> {
        self.block(async {
            let row = sqlx::query(
                "SELECT user_id, device_id, expires_at FROM access_tokens WHERE hash = $1",
            )
            .bind(token_hash.as_slice())
            .fetch_optional(&self.pool)
            .await?;
            row.map(|row| {
                Ok(TokenOwner {
                    user_id: parse_user(row.try_get(0)?)?,
                    device_id: parse_device(row.try_get(1)?)?,
                    expires_at: opt_u64(row.try_get(2)?)?,
                })
            })
            .transpose()
        })
    }

    fn refresh_session(
        &self,
        refresh_hash: &[u8; 32],
        new: RefreshedTokens,
    ) -> StoreResult<Option<TokenOwner>> {
        self.txn(async |c| refresh_in(c, refresh_hash, &new).await)
    }

    fn delete_devices(&self, user_id: &UserId, devices: &[DeviceId]) -> StoreResult<()> {
        self.txn(async |c| {
            for d in devices {
                remove_device(c, user_id.as_str(), d.as_str()).await?;
            }
            Ok(())
        })
    }

    fn delete_all_devices(&self, user_id: &UserId) -> StoreResult<()> {
        self.txn(async |c| {
            for d in device_ids(c, user_id.as_str()).await? {
                remove_device(c, user_id.as_str(), &d).await?;
            }
            Ok(())
        })
    }

    fn devices(&self, user_id: &UserId) -> StoreResult<Vec<Device>> {
        self.block(async {
            let rows = sqlx::query(&format!(
                "SELECT {DEVICE_COLUMNS} FROM devices WHERE user_id = $1 ORDER BY device_id"
            ))
            .bind(user_id.as_str())
            .fetch_all(&self.pool)
            .await?;
            rows.iter().map(device_from_row).collect()
        })
    }

    fn device(&self, user_id: &UserId, device_id: &DeviceId) -> StoreResult<Option<Device>> {
        self.block(async {
            let row = sqlx::query(&format!(
                "SELECT {DEVICE_COLUMNS} FROM devices WHERE user_id = $1 AND device_id = $2"
            ))
            .bind(user_id.as_str())
            .bind(device_id.as_str())
            .fetch_optional(&self.pool)
            .await?;
            row.as_ref().map(device_from_row).transpose()
        })
    }

    fn set_device_display_name(
        &self,
        user_id: &UserId,
        device_id: &DeviceId,
        name: Option<String>,
    ) -> StoreResult<()> {
        let (u, d) = (user_id.as_str(), device_id.as_str());
        self.txn(async |c| {
            let updated = sqlx::query(
                "UPDATE devices SET display_name = $3 WHERE user_id = $1 AND device_id = $2",
            )
            .bind(u)
            .bind(d)
            .bind(name.as_deref())
            .execute(&mut *c)
            .await?
            .rows_affected();
            if updated == 0 {
                return Err(StoreError::NotFound("device"));
            }
            // The display name is part of what /keys/query returns.
            let has_keys =
                sqlx::query("SELECT 1 FROM device_keys WHERE user_id = $1 AND device_id = $2")
                    .bind(u)
                    .bind(d)
                    .fetch_optional(&mut *c)
                    .await?
                    .is_some();
            if has_keys {
                bump_key_stream(c, u).await?;
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
        self.txn(async |c| upload_keys_in(c, u, d, &upload).await)
    }

    fn one_time_key_counts(
        &self,
        user_id: &UserId,
        device_id: &DeviceId,
    ) -> StoreResult<BTreeMap<String, u64>> {
        self.txn(async |c| count_otks(c, user_id.as_str(), device_id.as_str()).await)
    }

    fn device_keys(
        &self,
        user_id: &UserId,
        only: &[DeviceId],
    ) -> StoreResult<Vec<(Device, Value)>> {
        let only: Vec<&str> = only.iter().map(|d| d.as_str()).collect();
        self.block(async {
            let rows = sqlx::query(
                "SELECT d.user_id, d.device_id, d.display_name, d.created_at, d.last_seen_ip, \
                 d.last_seen_ts, k.keys FROM device_keys k JOIN devices d \
                 ON d.user_id = k.user_id AND d.device_id = k.device_id \
                 WHERE k.user_id = $1 AND (cardinality($2::text[]) = 0 OR k.device_id = ANY($2)) \
                 ORDER BY k.device_id",
            )
            .bind(user_id.as_str())
            .bind(&only)
            .fetch_all(&self.pool)
            .await?;
            rows.iter()
                .map(|row| Ok((device_from_row(row)?, from_json(row.try_get("keys")?)?)))
                .collect()
        })
    }

    fn claim_key(
        &self,
        user_id: &UserId,
        device_id: &DeviceId,
        algorithm: &str,
    ) -> StoreResult<Option<OneTimeKey>> {
        self.txn(async |c| claim_key_in(c, user_id.as_str(), device_id.as_str(), algorithm).await)
    }

    fn unused_fallback_key_types(
        &self,
        user_id: &UserId,
        device_id: &DeviceId,
    ) -> StoreResult<Vec<String>> {
        self.block(async {
            Ok(sqlx::query_scalar(
                "SELECT algorithm FROM fallback_keys WHERE user_id = $1 AND device_id = $2 \
                 AND NOT used ORDER BY algorithm",
            )
            .bind(user_id.as_str())
            .bind(device_id.as_str())
            .fetch_all(&self.pool)
            .await?)
        })
    }

    fn cross_signing_keys(
        &self,
        user_id: &UserId,
    ) -> StoreResult<BTreeMap<CrossSigningKind, Value>> {
        self.txn(async |c| cross_signing_in(c, user_id).await)
    }

    fn put_cross_signing_keys(
        &self,
        user_id: &UserId,
        keys: Vec<(CrossSigningKind, Value)>,
        expected: &BTreeMap<CrossSigningKind, Value>,
        _now: Millis,
    ) -> StoreResult<bool> {
        self.txn(async |c| put_cross_signing_in(c, user_id, &keys, expected).await)
    }

    fn signing_snapshot(&self, me: &UserId, others: &[UserId]) -> StoreResult<SigningSnapshot> {
        self.txn(async |c| snapshot_in(c, me, others).await)
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
        self.txn(async |c| {
            if snapshot_in(c, &me, others).await? != *expected {
                return Ok(false);
            }
            insert_signatures(c, &signatures).await?;
            Ok(true)
        })
    }

    fn add_key_signatures(&self, signatures: Vec<KeySignature>, _now: Millis) -> StoreResult<()> {
        self.txn(async |c| insert_signatures(c, &signatures).await)
    }

    fn key_signatures(&self, target_user: &UserId) -> StoreResult<Vec<KeySignature>> {
        self.block(async {
            let rows = sqlx::query(
                "SELECT target_key, signer_user, signer_key_id, signature FROM key_signatures \
                 WHERE target_user = $1 ORDER BY target_key, signer_user, signer_key_id",
            )
            .bind(target_user.as_str())
            .fetch_all(&self.pool)
            .await?;
            rows.iter()
                .map(|row| {
                    Ok(KeySignature {
                        target_user: target_user.clone(),
                        target_key: row.try_get(0)?,
                        signer_user: parse_user(row.try_get(1)?)?,
                        signer_key_id: row.try_get(2)?,
                        signature: row.try_get(3)?,
                    })
                })
                .collect()
        })
    }

    fn key_change_position(&self) -> StoreResult<u64> {
        self.block(async {
            let v: i64 = sqlx::query_scalar("SELECT value FROM counters WHERE name = 'key_stream'")
                .fetch_one(&self.pool)
                .await?;
            to_u64(v)
        })
    }

    fn key_changes(&self, from: u64, to: u64) -> StoreResult<Vec<UserId>> {
        if to <= from {
            return Ok(Vec::new());
        }
        self.block(async {
            let users: Vec<String> = sqlx::query_scalar(
                "SELECT DISTINCT user_id FROM key_changes WHERE position > $1 AND position <= $2 \
                 ORDER BY user_id",
            )
            .bind(to_i64(from))
            .bind(to_i64(to))
            .fetch_all(&self.pool)
            .await?;
            users.iter().map(|u| parse_user(u)).collect()
        })
    }

    fn create_registration_token(&self, token: RegistrationToken) -> StoreResult<()> {
        self.txn(async |c| {
            let inserted = sqlx::query(
                "INSERT INTO registration_tokens (hash, uses_allowed, completed, expiry_time, \
                 created_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (hash) DO NOTHING",
            )
            .bind(token_key(&token.token))
            .bind(token.uses_allowed.map(i64::from))
            .bind(i64::from(token.completed))
            .bind(token.expiry_time.map(to_i64))
            .bind(to_i64(token.created_at))
            .execute(&mut *c)
            .await?
            .rows_affected();
            if inserted == 0 {
                return Err(StoreError::TokenExists);
            }
            Ok(())
        })
    }

    fn registration_tokens(&self) -> StoreResult<Vec<RegistrationToken>> {
        self.block(async {
            let rows = sqlx::query("SELECT * FROM registration_tokens ORDER BY hash")
                .fetch_all(&self.pool)
                .await?;
            rows.iter().map(token_from_row).collect()
        })
    }

    fn registration_token(&self, token: &str) -> StoreResult<Option<RegistrationToken>> {
        self.block(async {
            let row = sqlx::query("SELECT * FROM registration_tokens WHERE hash = $1")
                .bind(token_key(token))
                .fetch_optional(&self.pool)
                .await?;
            row.as_ref().map(token_from_row).transpose()
        })
    }

    fn revoke_registration_token(&self, token_or_id: &str) -> StoreResult<()> {
        self.txn(async |c| revoke_token_in(c, token_or_id).await)
    }

    fn ping(&self) -> StoreResult<()> {
        PgStore::ping(self)
    }

    fn pool_stats(&self) -> Option<PoolStats> {
        Some(PgStore::pool_stats(self))
    }

    fn is_shared(&self) -> bool {
        true
    }

    fn shared_put(&self, entry: SharedEntry) -> StoreResult<()> {
        self.txn(async |c| pg_shared::put(c, &entry).await)
    }

    fn shared_insert_capped(
        &self,
        entry: SharedEntry,
        caps: SharedCaps,
        now: Millis,
    ) -> StoreResult<bool> {
        self.txn(async |c| pg_shared::insert_capped(c, &entry, caps, now).await)
    }

    fn shared_get(&self, kind: &str, id: &str, now: Millis) -> StoreResult<Option<Value>> {
        self.txn(async |c| pg_shared::get(c, kind, id, now).await)
    }

    fn shared_take(&self, kind: &str, id: &str, now: Millis) -> StoreResult<Option<Value>> {
        self.txn(async |c| pg_shared::take(c, kind, id, now).await)
    }

    fn shared_take_token(
        &self,
        limiter: &str,
        key: &str,
        per_second: f64,
        burst: u32,
    ) -> StoreResult<Result<(), u64>> {
        self.block(super::pg_nodes::take_token(
            &self.pool,
            &self.takes,
            limiter,
            key,
            per_second,
            burst,
        ))
    }

    fn announce_write(&self) {
        self.announce();
    }

    fn on_remote_writes(&self, wake: std::sync::Arc<dyn Fn() + Send + Sync>) {
        self.listen_for_writes(wake);
    }
}
