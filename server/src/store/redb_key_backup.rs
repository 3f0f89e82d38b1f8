//! The redb implementation of [`KeyBackupStore`].

use redb::{ReadableTable, WriteTransaction};
use roam_identity_core::UserId;
use serde_json::Value;

use super::error::{StoreError, StoreResult};
use super::key_backup::{
    BackupKey, BackupScope, BackupVersion, KeyBackupStore, MAX_BACKUP_KEYS, replaces_backup_key,
};
use super::redb_database::{RedbStore, from_json, to_json};
use super::tables::{self as t, PRINTABLE_END};

fn version_of(version: u64, row: t::BackupVersionRow) -> BackupVersion {
    BackupVersion {
        version,
        algorithm: row.algorithm,
        auth_data: row.auth_data,
        etag: row.etag,
        count: row.count,
    }
}

/// The stored row of a live (not deleted) version.
fn live_row<T: ReadableTable<(&'static str, u64), &'static str>>(
    table: &T,
    user: &str,
    version: u64,
) -> StoreResult<t::BackupVersionRow> {
    match table.get((user, version))? {
        Some(v) => {
            let row: t::BackupVersionRow = from_json(v.value())?;
            if row.deleted {
                Err(StoreError::NotFound("backup version"))
            } else {
                Ok(row)
            }
        }
        None => Err(StoreError::NotFound("backup version")),
    }
}

/// The current version: the newest one not deleted.
pub(super) fn current<T: ReadableTable<(&'static str, u64), &'static str>>(
    table: &T,
    user: &str,
) -> StoreResult<Option<(u64, t::BackupVersionRow)>> {
    for row in table.range((user, 0)..=(user, u64::MAX))?.rev() {
        let (k, v) = row?;
        let row: t::BackupVersionRow = from_json(v.value())?;
        if !row.deleted {
            return Ok(Some((k.value().1, row)));
        }
    }
    Ok(None)
}

/// The key range of a scope: `(room, session)` bounds.
fn bounds(scope: &BackupScope) -> ((&str, &str), (&str, &str)) {
    match scope {
        BackupScope::All => (("", ""), (PRINTABLE_END, "")),
        BackupScope::Room(r) => ((r, ""), (r, PRINTABLE_END)),
        BackupScope::Session(r, s) => ((r, s), (r, s)),
    }
}

/// Removes the keys of `scope`; returns how many there were.
fn remove_keys(
    txn: &WriteTransaction,
    user: &str,
    version: u64,
    scope: &BackupScope,
) -> StoreResult<u64> {
    let mut keys = txn.open_table(t::BACKUP_KEYS)?;
    let ((r0, s0), (r1, s1)) = bounds(scope);
    let mut removed = 0;
    if let BackupScope::Session(..) = scope {
        removed += u64::from(keys.remove((user, version, r0, s0))?.is_some());
    } else {
        keys.retain_in((user, version, r0, s0)..(user, version, r1, s1), |_, _| {
            removed += 1;
            false
        })?;
    }
    Ok(removed)
}

/// Stores the keys that replace what is stored; returns how many new ones were added.
pub(super) fn store_keys(
    txn: &WriteTransaction,
    user: &str,
    version: u64,
    new: &[BackupKey],
) -> StoreResult<(u64, bool)> {
    let mut keys = txn.open_table(t::BACKUP_KEYS)?;
    let (mut added, mut changed) = (0, false);
    for (room, session, data) in new {
        let key = (user, version, room.as_str(), session.as_str());
        let old: Option<Value> = keys.get(key)?.map(|v| from_json(v.value())).transpose()?;
        if old.as_ref().is_some_and(|o| !replaces_backup_key(data, o)) {
            continue;
        }
        added += u64::from(old.is_none());
        changed = true;
        keys.insert(key, to_json(data)?.as_str())?;
    }
    Ok((added, changed))
}

impl KeyBackupStore for RedbStore {
    fn create_backup_version(
        &self,
        user_id: &UserId,
        algorithm: String,
        auth_data: Value,
    ) -> StoreResult<u64> {
        let u = user_id.as_str();
        self.write(|txn| {
            let mut table = txn.open_table(t::BACKUP_VERSIONS)?;
            let next = match table.range((u, 0)..=(u, u64::MAX))?.next_back() {
                Some(row) => row?.0.value().1 + 1,
                None => 1,
            };
            let row = t::BackupVersionRow {
                algorithm,
                auth_data,
                etag: 0,
                count: 0,
                deleted: false,
            };
            table.insert((u, next), to_json(&row)?.as_str())?;
            Ok(next)
        })
    }

    fn backup_version(
        &self,
        user_id: &UserId,
        version: Option<u64>,
    ) -> StoreResult<Option<BackupVersion>> {
        let u = user_id.as_str();
        self.read(|txn| {
            let table = txn.open_table(t::BACKUP_VERSIONS)?;
            match version {
                None => Ok(current(&table, u)?.map(|(v, row)| version_of(v, row))),
                Some(v) => match live_row(&table, u, v) {
                    Ok(row) => Ok(Some(version_of(v, row))),
                    Err(StoreError::NotFound(_)) => Ok(None),
                    Err(e) => Err(e),
                },
            }
        })
    }

    fn update_backup_version(
        &self,
        user_id: &UserId,
        version: u64,
        auth_data: Value,
    ) -> StoreResult<()> {
        let u = user_id.as_str();
        self.write(|txn| {
            let mut table = txn.open_table(t::BACKUP_VERSIONS)?;
            let mut row = live_row(&table, u, version)?;
            row.auth_data = auth_data;
            table.insert((u, version), to_json(&row)?.as_str())?;
            Ok(())
        })
    }

    fn delete_backup_version(&self, user_id: &UserId, version: u64) -> StoreResult<()> {
        let u = user_id.as_str();
        self.write(|txn| {
            let mut table = txn.open_table(t::BACKUP_VERSIONS)?;
            let mut row = live_row(&table, u, version)?;
            remove_keys(txn, u, version, &BackupScope::All)?;
            row.deleted = true;
            row.count = 0;
            row.auth_data = Value::Null;
            table.insert((u, version), to_json(&row)?.as_str())?;
            Ok(())
        })
    }

    fn put_backup_keys(
        &self,
        user_id: &UserId,
        version: u64,
        keys: Vec<BackupKey>,
    ) -> StoreResult<BackupVersion> {
        let u = user_id.as_str();
        self.write(|txn| {
            let mut table = txn.open_table(t::BACKUP_VERSIONS)?;
            let Some((now, mut row)) = current(&table, u)? else {
                return Err(StoreError::NotFound("backup version"));
            };
            if now != version {
                return Err(StoreError::WrongBackupVersion { current: Some(now) });
            }
            if row.count + keys.len() as u64 > MAX_BACKUP_KEYS {
                return Err(StoreError::CapReached("keys in one backup version"));
            }
            let (added, changed) = store_keys(txn, u, version, &keys)?;
            row.count += added;
            if changed {
                row.etag += 1;
            }
            table.insert((u, version), to_json(&row)?.as_str())?;
            Ok(version_of(version, row))
        })
    }

    fn backup_keys(
        &self,
        user_id: &UserId,
        version: u64,
        scope: &BackupScope,
    ) -> StoreResult<Vec<BackupKey>> {
        let u = user_id.as_str();
        self.read(|txn| {
            live_row(&txn.open_table(t::BACKUP_VERSIONS)?, u, version)?;
            let keys = txn.open_table(t::BACKUP_KEYS)?;
            let ((r0, s0), (r1, s1)) = bounds(scope);
            let mut out = Vec::new();
            for row in keys.range((u, version, r0, s0)..=(u, version, r1, s1))? {
                let (k, v) = row?;
                let (_, _, room, session) = k.value();
                out.push((room.to_owned(), session.to_owned(), from_json(v.value())?));
            }
            Ok(out)
        })
    }

    fn delete_backup_keys(
        &self,
        user_id: &UserId,
        version: u64,
        scope: &BackupScope,
    ) -> StoreResult<BackupVersion> {
        let u = user_id.as_str();
        self.write(|txn| {
            let mut table = txn.open_table(t::BACKUP_VERSIONS)?;
            let mut row = live_row(&table, u, version)?;
            let removed = remove_keys(txn, u, version, scope)?;
            if removed > 0 {
                row.count = row.count.saturating_sub(removed);
                row.etag += 1;
            }
            table.insert((u, version), to_json(&row)?.as_str())?;
            Ok(version_of(version, row))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(index: u64, verified: bool) -> Value {
        json!({"first_message_index": index, "forwarded_count": 0, "is_verified": verified, "session_data": {"c": index}})
    }

    #[test]
    fn backup_keys_keep_the_better_one_and_count() {
        let store = RedbStore::in_memory().unwrap();
        let u = UserId::parse("@a:t.example").unwrap();
        let v = store
            .create_backup_version(
                &u,
                "m.megolm_backup.v1.curve25519-aes-sha2".into(),
                json!({}),
            )
            .unwrap();
        let put = |data: Value| {
            store
                .put_backup_keys(&u, v, vec![("!r:t".into(), "s1".into(), data)])
                .unwrap()
        };
        let first = put(key(5, false));
        assert_eq!((first.count, first.etag), (1, 1));
        // Worse (later index): kept out, etag unchanged.
        assert_eq!(put(key(9, false)).etag, 1);
        // Better (earlier index), then verified beats unverified.
        assert_eq!(put(key(2, false)).etag, 2);
        let last = put(key(7, true));
        assert_eq!((last.count, last.etag), (1, 3));
        let got = store.backup_keys(&u, v, &BackupScope::All).unwrap();
        assert_eq!(got[0].2, key(7, true));
        // A new version is current; the old one refuses uploads.
        let v2 = store
            .create_backup_version(
                &u,
                "m.megolm_backup.v1.curve25519-aes-sha2".into(),
                json!({}),
            )
            .unwrap();
        assert!(matches!(
            store.put_backup_keys(&u, v, vec![]),
            Err(StoreError::WrongBackupVersion { current: Some(c) }) if c == v2
        ));
        store.delete_backup_version(&u, v2).unwrap();
        assert_eq!(store.backup_version(&u, None).unwrap().unwrap().version, v);
        // Numbers are not reused.
        let v3 = store
            .create_backup_version(
                &u,
                "m.megolm_backup.v1.curve25519-aes-sha2".into(),
                json!({}),
            )
            .unwrap();
        assert_eq!(v3, v2 + 1);
    }
}
