//! The PostgreSQL implementation of [`CarryStore`]: the same rows and rules as the redb one
//! (`redb_carry.rs`), each method one serializable transaction.

use roam_identity_core::{DeviceId, Did, Millis, UserId};
use sqlx::{PgConnection, Row};

use super::carry::{
    CarriedBackup, CarriedDevice, CarriedUser, CarryStore, DevicePlane, ImportOutcome,
    MAX_CARRIED_BACKUP_KEYS,
};
use super::error::{StoreError, StoreResult};
use super::key_backup::BackupVersion;
use super::pg_database::{PgStore, bump_key_stream, to_i64};
use super::pg_device_plane::put_account_data_in;
use super::pg_key_backup::{
    VERSION_COLUMNS, create_in, current, save_counts, store_keys, version_from_row,
};
use super::pg_store::{cross_signing_in, insert_signatures, write_cross_signing};
use super::records::{KeySignature, OneTimeKey};
use super::redb_database::{from_json, to_json};

fn parse_user(s: &str) -> StoreResult<UserId> {
    UserId::parse(s).map_err(StoreError::corrupt("user ID"))
}

fn parse_device(s: &str) -> StoreResult<DeviceId> {
    DeviceId::parse(s).map_err(StoreError::corrupt("device ID"))
}

/// One device's unclaimed one-time keys and unused fallback keys.
async fn device_spare_keys(
    c: &mut PgConnection,
    u: &str,
    d: &str,
) -> StoreResult<(Vec<OneTimeKey>, Vec<OneTimeKey>)> {
    let mut otks = Vec::new();
    for row in sqlx::query(
        "SELECT key_id, key FROM one_time_keys WHERE user_id = $1 AND device_id = $2 \
         ORDER BY key_id",
    )
    .bind(u)
    .bind(d)
    .fetch_all(&mut *c)
    .await?
    {
        otks.push(OneTimeKey {
            key_id: row.try_get(0)?,
            key: from_json(row.try_get(1)?)?,
        });
    }
    let mut fallbacks = Vec::new();
    for row in sqlx::query(
        "SELECT key_id, key FROM fallback_keys WHERE user_id = $1 AND device_id = $2 \
         AND NOT used ORDER BY algorithm",
    )
    .bind(u)
    .bind(d)
    .fetch_all(&mut *c)
    .await?
    {
        fallbacks.push(OneTimeKey {
            key_id: row.try_get(0)?,
            key: from_json(row.try_get(1)?)?,
        });
    }
    Ok((otks, fallbacks))
}

/// Everything held for one user ID's keys.
async fn read_user(c: &mut PgConnection, user: &UserId) -> StoreResult<CarriedUser> {
    let u = user.as_str();
    let rows = sqlx::query(
        "SELECT d.device_id, d.display_name, k.keys FROM devices d JOIN device_keys k \
         ON k.user_id = d.user_id AND k.device_id = d.device_id \
         WHERE d.user_id = $1 ORDER BY d.device_id",
    )
    .bind(u)
    .fetch_all(&mut *c)
    .await?;
    let mut devices = Vec::new();
    for row in rows {
        let d: String = row.try_get(0)?;
        let (one_time_keys, fallback_keys) = device_spare_keys(c, u, &d).await?;
        devices.push(CarriedDevice {
            device_id: parse_device(&d)?,
            display_name: row.try_get(1)?,
            keys: from_json(row.try_get(2)?)?,
            one_time_keys,
            fallback_keys,
        });
    }
    let mut signatures = Vec::new();
    for row in sqlx::query(
        "SELECT target_key, signer_key_id, signature FROM key_signatures \
         WHERE target_user = $1 AND signer_user = $1 \
         ORDER BY target_key, signer_key_id",
    )
    .bind(u)
    .fetch_all(&mut *c)
    .await?
    {
        signatures.push(KeySignature {
            target_user: user.clone(),
            target_key: row.try_get(0)?,
            signer_user: user.clone(),
            signer_key_id: row.try_get(1)?,
            signature: row.try_get(2)?,
        });
    }
    Ok(CarriedUser {
        user_id: user.clone(),
        cross_signing: cross_signing_in(c, user).await?,
        devices,
        signatures,
    })
}

/// The current backup version with its keys.
async fn read_backup(c: &mut PgConnection, u: &str) -> StoreResult<Option<CarriedBackup>> {
    let Some(v) = current(c, u).await? else {
        return Ok(None);
    };
    if v.count > MAX_CARRIED_BACKUP_KEYS as u64 {
        return Err(StoreError::CapReached("backed-up keys to carry"));
    }
    let mut keys = Vec::new();
    for row in sqlx::query(
        "SELECT room_id, session_id, data FROM backup_keys WHERE user_id = $1 AND version = $2 \
         ORDER BY room_id, session_id",
    )
    .bind(u)
    .bind(to_i64(v.version))
    .fetch_all(&mut *c)
    .await?
    {
        keys.push((
            row.try_get(0)?,
            row.try_get(1)?,
            from_json(row.try_get(2)?)?,
        ));
    }
    Ok(Some(CarriedBackup {
        algorithm: v.algorithm,
        auth_data: v.auth_data,
        keys,
    }))
}

/// Stores one device's keys (the device created without a session where missing).
async fn write_device(
    c: &mut PgConnection,
    u: &str,
    dev: &CarriedDevice,
    now: Millis,
) -> StoreResult<()> {
    let d = dev.device_id.as_str();
    sqlx::query(
        "INSERT INTO devices (user_id, device_id, display_name, created_at) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (user_id, device_id) DO NOTHING",
    )
    .bind(u)
    .bind(d)
    .bind(&dev.display_name)
    .bind(to_i64(now))
    .execute(&mut *c)
    .await?;
    sqlx::query(
        "INSERT INTO device_keys (user_id, device_id, keys) VALUES ($1, $2, $3) \
         ON CONFLICT (user_id, device_id) DO UPDATE SET keys = excluded.keys",
    )
    .bind(u)
    .bind(d)
    .bind(to_json(&dev.keys)?)
    .execute(&mut *c)
    .await?;
    for k in &dev.one_time_keys {
        sqlx::query(
            "INSERT INTO one_time_keys (user_id, device_id, key_id, key) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (user_id, device_id, key_id) DO NOTHING",
        )
        .bind(u)
        .bind(d)
        .bind(&k.key_id)
        .bind(to_json(&k.key)?)
        .execute(&mut *c)
        .await?;
    }
    for k in &dev.fallback_keys {
        let algorithm = k.key_id.split_once(':').map_or(k.key_id.as_str(), |p| p.0);
        sqlx::query(
            "INSERT INTO fallback_keys (user_id, device_id, algorithm, key_id, key, used) \
             VALUES ($1, $2, $3, $4, $5, false) ON CONFLICT (user_id, device_id, algorithm) \
             DO UPDATE SET key_id = excluded.key_id, key = excluded.key, used = false",
        )
        .bind(u)
        .bind(d)
        .bind(algorithm)
        .bind(&k.key_id)
        .bind(to_json(&k.key)?)
        .execute(&mut *c)
        .await?;
    }
    Ok(())
}

/// Stores one user ID's keys.
async fn write_user(c: &mut PgConnection, user: &CarriedUser, now: Millis) -> StoreResult<()> {
    let u = user.user_id.as_str();
    for dev in &user.devices {
        write_device(c, u, dev, now).await?;
    }
    write_cross_signing(c, u, &user.cross_signing).await?;
    insert_signatures(c, &user.signatures).await?;
    bump_key_stream(c, u).await?;
    Ok(())
}

/// Puts the keys into the live version with the same algorithm and `auth_data`, else into a
/// new current version; returns the version and how many keys were new.
async fn write_backup(c: &mut PgConnection, u: &str, b: &CarriedBackup) -> StoreResult<(u64, u64)> {
    let rows = sqlx::query(&format!(
        "SELECT {VERSION_COLUMNS} FROM backup_versions WHERE user_id = $1 AND NOT deleted \
         ORDER BY version"
    ))
    .bind(u)
    .fetch_all(&mut *c)
    .await?;
    let mut same: Option<BackupVersion> = None;
    for row in &rows {
        let v = version_from_row(row)?;
        if v.algorithm == b.algorithm && v.auth_data == b.auth_data {
            same = Some(v);
        }
    }
    let mut v = match same {
        Some(v) => v,
        None => {
            let version = create_in(c, u, &b.algorithm, &to_json(&b.auth_data)?).await?;
            BackupVersion {
                version,
                algorithm: b.algorithm.clone(),
                auth_data: b.auth_data.clone(),
                etag: 0,
                count: 0,
            }
        }
    };
    let (added, changed) = store_keys(c, u, v.version, &b.keys).await?;
    v.count += added;
    if changed {
        v.etag += 1;
    }
    save_counts(c, u, &v).await?;
    Ok((v.version, added))
}

async fn device_plane_in(
    c: &mut PgConnection,
    account: &UserId,
    did: Option<&Did>,
) -> StoreResult<DevicePlane> {
    let u = account.as_str();
    let mut account_data = Vec::new();
    for row in
        sqlx::query("SELECT kind, content FROM account_data WHERE user_id = $1 ORDER BY kind")
            .bind(u)
            .fetch_all(&mut *c)
            .await?
    {
        account_data.push((row.try_get(0)?, from_json(row.try_get(1)?)?));
    }
    let mut users = vec![read_user(c, account).await?];
    if let Some(did) = did {
        let carried: Vec<String> = sqlx::query_scalar(
            "SELECT user_id FROM carried_users WHERE did = $1 AND user_id <> $2 ORDER BY user_id",
        )
        .bind(did.as_str())
        .bind(u)
        .fetch_all(&mut *c)
        .await?;
        for other in carried {
            users.push(read_user(c, &parse_user(&other)?).await?);
        }
    }
    Ok(DevicePlane {
        account_data,
        backup: read_backup(c, u).await?,
        users,
    })
}

async fn import_in(
    c: &mut PgConnection,
    account: &UserId,
    did: &Did,
    plane: &DevicePlane,
    now: Millis,
) -> StoreResult<ImportOutcome> {
    let u = account.as_str();
    for (kind, content) in &plane.account_data {
        put_account_data_in(c, u, kind, content).await?;
    }
    let mut out = ImportOutcome {
        account_data: plane.account_data.len(),
        ..ImportOutcome::default()
    };
    if let Some(b) = &plane.backup {
        let (version, added) = write_backup(c, u, b).await?;
        out.backup_version = Some(version);
        out.backup_keys_added = added;
    }
    for user in &plane.users {
        if user.user_id != *account {
            sqlx::query(
                "INSERT INTO carried_users (user_id, did) VALUES ($1, $2) \
                 ON CONFLICT (user_id) DO UPDATE SET did = excluded.did",
            )
            .bind(user.user_id.as_str())
            .bind(did.as_str())
            .execute(&mut *c)
            .await?;
        }
        write_user(c, user, now).await?;
        out.devices += user.devices.len();
        out.users.push(user.user_id.clone());
    }
    Ok(out)
}

impl CarryStore for PgStore {
    fn device_plane(&self, account: &UserId, did: Option<&Did>) -> StoreResult<DevicePlane> {
        self.txn(async |c| device_plane_in(c, account, did).await)
    }

    fn import_device_plane(
        &self,
        account: &UserId,
        did: &Did,
        plane: DevicePlane,
        now: Millis,
    ) -> StoreResult<ImportOutcome> {
        self.txn(async |c| import_in(c, account, did, &plane, now).await)
    }

    fn carried_did(&self, user_id: &UserId) -> StoreResult<Option<Did>> {
        self.block(async {
            let did: Option<String> =
                sqlx::query_scalar("SELECT did FROM carried_users WHERE user_id = $1")
                    .bind(user_id.as_str())
                    .fetch_optional(&self.pool)
                    .await?;
            did.map(|d| Did::parse(&d).map_err(StoreError::corrupt("DID")))
                .transpose()
        })
    }
}
