//! The PostgreSQL implementation of [`KeyBackupStore`]: the same rows and rules as the redb
//! one (`redb_key_backup.rs`), each method one serializable transaction. A version's etag
//! and key count live in its row, changed with its keys.

use std::collections::BTreeMap;

use roam_identity_core::UserId;
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};

use super::error::{StoreError, StoreResult};
use super::key_backup::{
    BackupKey, BackupScope, BackupVersion, KeyBackupStore, MAX_BACKUP_KEYS, replaces_backup_key,
};
use super::pg_database::{PgStore, to_i64, to_u64};
use super::redb_database::{from_json, to_json};

pub(super) const VERSION_COLUMNS: &str = "version, algorithm, auth_data, etag, count";

pub(super) fn version_from_row(row: &PgRow) -> StoreResult<BackupVersion> {
    Ok(BackupVersion {
        version: to_u64(row.try_get("version")?)?,
        algorithm: row.try_get("algorithm")?,
        auth_data: from_json(row.try_get("auth_data")?)?,
        etag: to_u64(row.try_get("etag")?)?,
        count: to_u64(row.try_get("count")?)?,
    })
}

/// A live (not deleted) version; `NotFound` otherwise.
async fn live(c: &mut PgConnection, u: &str, version: u64) -> StoreResult<BackupVersion> {
    let row = sqlx::query(&format!(
        "SELECT {VERSION_COLUMNS} FROM backup_versions WHERE user_id = $1 AND version = $2 \
         AND NOT deleted"
    ))
    .bind(u)
    .bind(to_i64(version))
    .fetch_optional(&mut *c)
    .await?;
    match row {
        Some(row) => version_from_row(&row),
        None => Err(StoreError::NotFound("backup version")),
    }
}

/// The current version: the newest one not deleted.
pub(super) async fn current(c: &mut PgConnection, u: &str) -> StoreResult<Option<BackupVersion>> {
    let row = sqlx::query(&format!(
        "SELECT {VERSION_COLUMNS} FROM backup_versions WHERE user_id = $1 AND NOT deleted \
         ORDER BY version DESC LIMIT 1"
    ))
    .bind(u)
    .fetch_optional(&mut *c)
    .await?;
    row.as_ref().map(version_from_row).transpose()
}

/// Writes a version's etag and count.
pub(super) async fn save_counts(
    c: &mut PgConnection,
    u: &str,
    v: &BackupVersion,
) -> StoreResult<()> {
    sqlx::query(
        "UPDATE backup_versions SET etag = $3, count = $4 WHERE user_id = $1 AND version = $2",
    )
    .bind(u)
    .bind(to_i64(v.version))
    .bind(to_i64(v.etag))
    .bind(to_i64(v.count))
    .execute(&mut *c)
    .await?;
    Ok(())
}

/// The condition on `(room_id, session_id)` of a scope, with its parameters from `$3`.
fn scope_filter(scope: &BackupScope) -> (&'static str, Vec<&str>) {
    match scope {
        BackupScope::All => ("", vec![]),
        BackupScope::Room(r) => (" AND room_id = $3", vec![r.as_str()]),
        BackupScope::Session(r, s) => (
            " AND room_id = $3 AND session_id = $4",
            vec![r.as_str(), s.as_str()],
        ),
    }
}

/// Removes the keys of `scope`; returns how many there were.
async fn remove_keys(
    c: &mut PgConnection,
    u: &str,
    version: u64,
    scope: &BackupScope,
) -> StoreResult<u64> {
    let (filter, params) = scope_filter(scope);
    let sql = format!("DELETE FROM backup_keys WHERE user_id = $1 AND version = $2{filter}");
    let mut q = sqlx::query(&sql).bind(u).bind(to_i64(version));
    for p in params {
        q = q.bind(p);
    }
    Ok(q.execute(&mut *c).await?.rows_affected())
}

/// Stores the keys that replace what is stored, in upload order (a later duplicate in one
/// upload competes with the earlier one); returns how many new ones were added and whether
/// anything changed.
pub(super) async fn store_keys(
    c: &mut PgConnection,
    u: &str,
    version: u64,
    new: &[BackupKey],
) -> StoreResult<(u64, bool)> {
    let rooms: Vec<&str> = new.iter().map(|k| k.0.as_str()).collect();
    let sessions: Vec<&str> = new.iter().map(|k| k.1.as_str()).collect();
    let rows = sqlx::query(
        "SELECT room_id, session_id, data FROM backup_keys WHERE user_id = $1 AND version = $2 \
         AND (room_id, session_id) IN (SELECT * FROM UNNEST($3::text[], $4::text[]))",
    )
    .bind(u)
    .bind(to_i64(version))
    .bind(&rooms)
    .bind(&sessions)
    .fetch_all(&mut *c)
    .await?;
    let mut stored: BTreeMap<(String, String), Value> = BTreeMap::new();
    for row in &rows {
        stored.insert(
            (row.try_get(0)?, row.try_get(1)?),
            from_json(row.try_get(2)?)?,
        );
    }
    let mut written: BTreeMap<(&str, &str), &Value> = BTreeMap::new();
    let mut added = 0;
    for (room, session, data) in new {
        let key = (room.as_str(), session.as_str());
        let old = match written.get(&key) {
            Some(v) => Some(*v),
            None => stored.get(&(room.clone(), session.clone())),
        };
        if old.is_some_and(|o| !replaces_backup_key(data, o)) {
            continue;
        }
        added += u64::from(old.is_none());
        written.insert(key, data);
    }
    if written.is_empty() {
        return Ok((added, false));
    }
    let (mut rooms, mut sessions, mut data) = (vec![], vec![], vec![]);
    for ((room, session), value) in &written {
        rooms.push(*room);
        sessions.push(*session);
        data.push(to_json(*value)?);
    }
    sqlx::query(
        "INSERT INTO backup_keys (user_id, version, room_id, session_id, data) \
         SELECT $1, $2, * FROM UNNEST($3::text[], $4::text[], $5::text[]) \
         ON CONFLICT (user_id, version, room_id, session_id) DO UPDATE SET data = excluded.data",
    )
    .bind(u)
    .bind(to_i64(version))
    .bind(&rooms)
    .bind(&sessions)
    .bind(&data)
    .execute(&mut *c)
    .await?;
    Ok((added, true))
}

pub(super) async fn create_in(
    c: &mut PgConnection,
    u: &str,
    algorithm: &str,
    auth: &str,
) -> StoreResult<u64> {
    let last: Option<i64> =
        sqlx::query_scalar("SELECT max(version) FROM backup_versions WHERE user_id = $1")
            .bind(u)
            .fetch_one(&mut *c)
            .await?;
    let next = last.map(to_u64).transpose()?.unwrap_or(0) + 1;
    sqlx::query(
        "INSERT INTO backup_versions (user_id, version, algorithm, auth_data, etag, count, \
         deleted) VALUES ($1, $2, $3, $4, 0, 0, false)",
    )
    .bind(u)
    .bind(to_i64(next))
    .bind(algorithm)
    .bind(auth)
    .execute(&mut *c)
    .await?;
    Ok(next)
}

async fn put_keys_in(
    c: &mut PgConnection,
    u: &str,
    version: u64,
    keys: &[BackupKey],
) -> StoreResult<BackupVersion> {
    let Some(mut now) = current(c, u).await? else {
        return Err(StoreError::NotFound("backup version"));
    };
    if now.version != version {
        return Err(StoreError::WrongBackupVersion {
            current: Some(now.version),
        });
    }
    if now.count + keys.len() as u64 > MAX_BACKUP_KEYS {
        return Err(StoreError::CapReached("keys in one backup version"));
    }
    let (added, changed) = store_keys(c, u, version, keys).await?;
    now.count += added;
    if changed {
        now.etag += 1;
    }
    save_counts(c, u, &now).await?;
    Ok(now)
}

async fn backup_keys_in(
    c: &mut PgConnection,
    u: &str,
    version: u64,
    scope: &BackupScope,
) -> StoreResult<Vec<BackupKey>> {
    live(c, u, version).await?;
    let (filter, params) = scope_filter(scope);
    let sql = format!(
        "SELECT room_id, session_id, data FROM backup_keys WHERE user_id = $1 AND version = $2\
         {filter} ORDER BY room_id, session_id"
    );
    let mut q = sqlx::query(&sql).bind(u).bind(to_i64(version));
    for p in params {
        q = q.bind(p);
    }
    let rows = q.fetch_all(&mut *c).await?;
    rows.iter()
        .map(|row| {
            Ok((
                row.try_get(0)?,
                row.try_get(1)?,
                from_json(row.try_get(2)?)?,
            ))
        })
        .collect()
}

impl KeyBackupStore for PgStore {
    fn create_backup_version(
        &self,
        user_id: &UserId,
        algorithm: String,
        auth_data: Value,
    ) -> StoreResult<u64> {
        let auth = to_json(&auth_data)?;
        self.txn(async |c| create_in(c, user_id.as_str(), &algorithm, &auth).await)
    }

    fn backup_version(
        &self,
        user_id: &UserId,
        version: Option<u64>,
    ) -> StoreResult<Option<BackupVersion>> {
        let u = user_id.as_str();
        self.txn(async |c| match version {
            None => current(c, u).await,
            Some(v) => match live(c, u, v).await {
                Ok(row) => Ok(Some(row)),
                Err(StoreError::NotFound(_)) => Ok(None),
                Err(e) => Err(e),
            },
        })
    }

    fn update_backup_version(
        &self,
        user_id: &UserId,
        version: u64,
        auth_data: Value,
    ) -> StoreResult<()> {
        let auth = to_json(&auth_data)?;
        self.txn(async |c| {
            let updated = sqlx::query(
                "UPDATE backup_versions SET auth_data = $3 WHERE user_id = $1 AND version = $2 \
                 AND NOT deleted",
            )
            .bind(user_id.as_str())
            .bind(to_i64(version))
            .bind(&auth)
            .execute(&mut *c)
            .await?
            .rows_affected();
            if updated == 0 {
                return Err(StoreError::NotFound("backup version"));
            }
            Ok(())
        })
    }

    fn delete_backup_version(&self, user_id: &UserId, version: u64) -> StoreResult<()> {
        let u = user_id.as_str();
        self.txn(async |c| {
            live(c, u, version).await?;
            remove_keys(c, u, version, &BackupScope::All).await?;
            // The row stays (deleted) so that the number is not reused.
            sqlx::query(
                "UPDATE backup_versions SET deleted = true, count = 0, auth_data = 'null' \
                 WHERE user_id = $1 AND version = $2",
            )
            .bind(u)
            .bind(to_i64(version))
            .execute(&mut *c)
            .await?;
            Ok(())
        })
    }

    fn put_backup_keys(
        &self,
        user_id: &UserId,
        version: u64,
        keys: Vec<BackupKey>,
    ) -> StoreResult<BackupVersion> {
        self.txn(async |c| put_keys_in(c, user_id.as_str(), version, &keys).await)
    }

    fn backup_keys(
        &self,
        user_id: &UserId,
        version: u64,
        scope: &BackupScope,
    ) -> StoreResult<Vec<BackupKey>> {
        self.txn(async |c| backup_keys_in(c, user_id.as_str(), version, scope).await)
    }

    fn delete_backup_keys(
        &self,
        user_id: &UserId,
        version: u64,
        scope: &BackupScope,
    ) -> StoreResult<BackupVersion> {
        let u = user_id.as_str();
        self.txn(async |c| {
            let mut row = live(c, u, version).await?;
            let removed = remove_keys(c, u, version, scope).await?;
            if removed > 0 {
                row.count = row.count.saturating_sub(removed);
                row.etag += 1;
                save_counts(c, u, &row).await?;
            }
            Ok(row)
        })
    }
}
