//! The redb implementation of [`DevicePlaneStore`].

use std::collections::BTreeSet;

use redb::{ReadableTable, WriteTransaction};
use roam_identity_core::{DeviceId, ServerName, UserId};
use serde_json::Value;

use super::device_plane::{
    DevicePlaneStore, MAX_ACCOUNT_DATA_TYPES, MAX_FILTERS, MAX_INBOX, MAX_REMOTE_FOLLOWERS,
    MAX_TRACKED, Profile, SyncPositions, ToDeviceMessage, TxnKey,
};
use super::error::{StoreError, StoreResult};
use super::redb_database::{RedbStore, decode_u64, from_json, to_json};
use super::tables::{self as t, PRINTABLE_END};

fn parse_user(s: &str) -> StoreResult<UserId> {
    UserId::parse(s).map_err(StoreError::corrupt("user ID"))
}

fn meta_u64(txn: &redb::ReadTransaction, name: &str) -> StoreResult<u64> {
    txn.open_table(t::META)?
        .get(name)?
        .map(|v| decode_u64(v.value()))
        .transpose()
        .map(|v| v.unwrap_or(0))
}

/// Takes the next message stream position.
pub(super) fn next_message_pos(txn: &WriteTransaction) -> StoreResult<u64> {
    let mut meta = txn.open_table(t::META)?;
    let current = meta
        .get(t::META_MESSAGE_STREAM)?
        .map(|v| decode_u64(v.value()))
        .transpose()?
        .unwrap_or(0);
    let next = current + 1;
    meta.insert(t::META_MESSAGE_STREAM, next.to_be_bytes().as_slice())?;
    Ok(next)
}

/// Deletes a device's undelivered messages (the device is gone).
pub(super) fn drop_inbox(txn: &WriteTransaction, user: &str, device: &str) -> StoreResult<()> {
    txn.open_table(t::TO_DEVICE)?
        .retain_in((user, device, 0)..=(user, device, u64::MAX), |_, _| false)?;
    Ok(())
}

/// Counts rows of a `(user, …)` range up to `cap`: whether one more fits.
fn fits<I: Iterator>(rows: I, cap: usize) -> bool {
    rows.take(cap).count() < cap
}

impl DevicePlaneStore for RedbStore {
    fn sync_positions(&self) -> StoreResult<SyncPositions> {
        self.read(|txn| {
            Ok(SyncPositions {
                keys: meta_u64(txn, t::META_KEY_STREAM)?,
                messages: meta_u64(txn, t::META_MESSAGE_STREAM)?,
            })
        })
    }

    fn send_to_device(&self, txn: &TxnKey, messages: Vec<ToDeviceMessage>) -> StoreResult<bool> {
        self.write(|w| {
            let key = (
                txn.sender.as_str(),
                txn.device_id.as_str(),
                txn.txn_id.as_str(),
            );
            let mut txns = w.open_table(t::TO_DEVICE_TXNS)?;
            if txns.get(key)?.is_some() {
                return Ok(false);
            }
            txns.insert(key, crate::clock::now_ms())?;
            let mut inbox = w.open_table(t::TO_DEVICE)?;
            for m in &messages {
                let (u, d) = (m.user_id.as_str(), m.device_id.as_str());
                if !fits(inbox.range((u, d, 0)..=(u, d, u64::MAX))?, MAX_INBOX) {
                    return Err(StoreError::CapReached("undelivered to-device messages"));
                }
                let pos = next_message_pos(w)?;
                inbox.insert((u, d, pos), to_json(&m.event)?.as_str())?;
            }
            Ok(true)
        })
    }

    fn take_to_device(
        &self,
        user_id: &UserId,
        device_id: &DeviceId,
        since: u64,
        limit: usize,
    ) -> StoreResult<Vec<(u64, Value)>> {
        let (u, d) = (user_id.as_str(), device_id.as_str());
        let acked = self.read(|txn| {
            let inbox = txn.open_table(t::TO_DEVICE)?;
            Ok(inbox.range((u, d, 0)..=(u, d, since))?.next().is_some())
        })?;
        if acked {
            // Delivered before, and the client came back with a later token: it has them.
            self.write(|txn| {
                txn.open_table(t::TO_DEVICE)?
                    .retain_in((u, d, 0)..=(u, d, since), |_, _| false)?;
                Ok(())
            })?;
        }
        self.read(|txn| {
            let inbox = txn.open_table(t::TO_DEVICE)?;
            let mut out = Vec::new();
            for row in inbox.range((u, d, since.saturating_add(1))..=(u, d, u64::MAX))? {
                let (k, v) = row?;
                out.push((k.value().2, from_json(v.value())?));
                if out.len() >= limit {
                    break;
                }
            }
            Ok(out)
        })
    }

    fn put_account_data(&self, user_id: &UserId, kind: &str, content: Value) -> StoreResult<u64> {
        self.write(|txn| {
            let u = user_id.as_str();
            let mut table = txn.open_table(t::ACCOUNT_DATA)?;
            let known = table.get((u, kind))?.is_some();
            if !known
                && !fits(
                    table.range((u, "")..(u, PRINTABLE_END))?,
                    MAX_ACCOUNT_DATA_TYPES,
                )
            {
                return Err(StoreError::CapReached("account data types"));
            }
            let pos = next_message_pos(txn)?;
            let row = t::AccountDataRow { pos, content };
            table.insert((u, kind), to_json(&row)?.as_str())?;
            Ok(pos)
        })
    }

    fn account_data(&self, user_id: &UserId, kind: &str) -> StoreResult<Option<Value>> {
        self.read(|txn| {
            let table = txn.open_table(t::ACCOUNT_DATA)?;
            let row = table.get((user_id.as_str(), kind))?;
            row.map(|v| from_json::<t::AccountDataRow>(v.value()).map(|r| r.content))
                .transpose()
        })
    }

    fn account_data_since(
        &self,
        user_id: &UserId,
        since: u64,
    ) -> StoreResult<Vec<(String, Value)>> {
        self.read(|txn| {
            let table = txn.open_table(t::ACCOUNT_DATA)?;
            let u = user_id.as_str();
            let mut out = Vec::new();
            for row in table.range((u, "")..(u, PRINTABLE_END))? {
                let (k, v) = row?;
                let row: t::AccountDataRow = from_json(v.value())?;
                if row.pos > since {
                    out.push((k.value().1.to_owned(), row.content));
                }
            }
            Ok(out)
        })
    }

    fn put_filter(&self, user_id: &UserId, filter: Value) -> StoreResult<String> {
        self.write(|txn| {
            let u = user_id.as_str();
            let mut table = txn.open_table(t::FILTERS)?;
            if !fits(table.range((u, "")..(u, PRINTABLE_END))?, MAX_FILTERS) {
                return Err(StoreError::CapReached("filters"));
            }
            // IDs are the count so far, zero-padded so that they sort in creation order.
            let id = format!("{:04}", table.range((u, "")..(u, PRINTABLE_END))?.count());
            table.insert((u, id.as_str()), to_json(&filter)?.as_str())?;
            Ok(id)
        })
    }

    fn filter(&self, user_id: &UserId, filter_id: &str) -> StoreResult<Option<Value>> {
        self.read(|txn| {
            let table = txn.open_table(t::FILTERS)?;
            let row = table.get((user_id.as_str(), filter_id))?;
            row.map(|v| from_json(v.value())).transpose()
        })
    }

    fn profile(&self, user_id: &UserId) -> StoreResult<Profile> {
        self.read(|txn| {
            let table = txn.open_table(t::PROFILES)?;
            let row: t::ProfileRow = match table.get(user_id.as_str())? {
                Some(v) => from_json(v.value())?,
                None => t::ProfileRow::default(),
            };
            Ok(Profile {
                displayname: row.displayname,
                avatar_url: row.avatar_url,
            })
        })
    }

    fn set_profile(&self, user_id: &UserId, profile: Profile) -> StoreResult<()> {
        let row = t::ProfileRow {
            displayname: profile.displayname,
            avatar_url: profile.avatar_url,
        };
        self.write(|txn| {
            txn.open_table(t::PROFILES)?
                .insert(user_id.as_str(), to_json(&row)?.as_str())?;
            Ok(())
        })
    }

    fn mark_keys_changed(&self, user_id: &UserId) -> StoreResult<u64> {
        self.write(|txn| super::redb_database::bump_key_stream(txn, user_id.as_str()))
    }

    fn track_users(&self, user_id: &UserId, users: &[UserId]) -> StoreResult<()> {
        let me = user_id.as_str();
        let new: Vec<&UserId> = self.read(|txn| {
            let table = txn.open_table(t::TRACKED_USERS)?;
            let mut new = Vec::new();
            for u in users.iter().filter(|u| *u != user_id) {
                if table.get((me, u.as_str()))?.is_none() {
                    new.push(u);
                }
            }
            Ok(new)
        })?;
        if new.is_empty() {
            return Ok(());
        }
        self.write(|txn| {
            let mut table = txn.open_table(t::TRACKED_USERS)?;
            // The users followed so far plus the new ones must stay within the cap.
            let had = table
                .range((me, "")..(me, PRINTABLE_END))?
                .take(MAX_TRACKED + 1)
                .count();
            if had + new.len() > MAX_TRACKED {
                return Err(StoreError::CapReached("tracked users"));
            }
            for u in new {
                table.insert((me, u.as_str()), ())?;
            }
            Ok(())
        })
    }

    fn device_list_changes(
        &self,
        user_id: &UserId,
        from: u64,
        to: u64,
    ) -> StoreResult<Vec<UserId>> {
        if to <= from {
            return Ok(Vec::new());
        }
        self.read(|txn| {
            let changes = txn.open_table(t::KEY_CHANGES)?;
            let tracked = txn.open_table(t::TRACKED_USERS)?;
            let me = user_id.as_str();
            let mut users = BTreeSet::new();
            for row in changes.range(from + 1..=to)? {
                let (_, v) = row?;
                let u = v.value();
                if u == me || tracked.get((me, u))?.is_some() {
                    users.insert(u.to_owned());
                }
            }
            users.iter().map(|u| parse_user(u)).collect()
        })
    }

    fn add_remote_follower(&self, server: &ServerName, users: &[UserId]) -> StoreResult<()> {
        let known = self.read(|txn| {
            let table = txn.open_table(t::REMOTE_FOLLOWERS)?;
            users
                .iter()
                .map(|u| Ok(table.get((u.as_str(), server.as_str()))?.is_some()))
                .collect::<StoreResult<Vec<bool>>>()
        })?;
        if known.iter().all(|k| *k) {
            return Ok(());
        }
        self.write(|txn| {
            let mut table = txn.open_table(t::REMOTE_FOLLOWERS)?;
            for u in users {
                let user = u.as_str();
                if table.get((user, server.as_str()))?.is_some() {
                    continue;
                }
                let followers = table
                    .range((user, "")..(user, PRINTABLE_END))?
                    .take(MAX_REMOTE_FOLLOWERS)
                    .count();
                if followers < MAX_REMOTE_FOLLOWERS {
                    table.insert((user, server.as_str()), ())?;
                }
            }
            Ok(())
        })
    }

    fn remote_followers(&self, user_id: &UserId) -> StoreResult<Vec<ServerName>> {
        self.read(|txn| {
            let table = txn.open_table(t::REMOTE_FOLLOWERS)?;
            let me = user_id.as_str();
            let mut out = Vec::new();
            for row in table.range((me, "")..(me, PRINTABLE_END))? {
                let (k, _) = row?;
                let name = k.value().1;
                out.push(ServerName::parse(name).map_err(StoreError::corrupt("server name"))?);
            }
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user(s: &str) -> UserId {
        UserId::parse(&format!("@{s}:t.example")).unwrap()
    }

    #[test]
    fn tracking_more_users_than_the_cap_in_one_call_is_refused() {
        let store = RedbStore::in_memory().unwrap();
        let me = user("me");
        let many: Vec<UserId> = (0..=MAX_TRACKED).map(|i| user(&format!("u{i}"))).collect();
        assert!(matches!(
            store.track_users(&me, &many),
            Err(StoreError::CapReached(_))
        ));
        store.track_users(&me, &many[..10]).unwrap();
        assert_eq!(store.device_list_changes(&me, 0, 0).unwrap(), vec![]);
    }

    #[test]
    fn to_device_is_idempotent_per_txn_and_deleted_after_ack() {
        let store = RedbStore::in_memory().unwrap();
        let (a, b) = (user("a"), user("b"));
        let dev = DeviceId::parse("BDEV").unwrap();
        let txn = TxnKey {
            sender: a.clone(),
            device_id: DeviceId::parse("ADEV").unwrap(),
            txn_id: "t1".into(),
        };
        let msg = ToDeviceMessage {
            user_id: b.clone(),
            device_id: dev.clone(),
            event: json!({"sender": a.as_str(), "type": "m.x", "content": {}}),
        };
        assert!(store.send_to_device(&txn, vec![msg.clone()]).unwrap());
        assert!(!store.send_to_device(&txn, vec![msg]).unwrap());
        let got = store.take_to_device(&b, &dev, 0, 100).unwrap();
        assert_eq!(got.len(), 1);
        let pos = got[0].0;
        // Not acknowledged yet: delivered again.
        assert_eq!(store.take_to_device(&b, &dev, 0, 100).unwrap().len(), 1);
        assert!(store.take_to_device(&b, &dev, pos, 100).unwrap().is_empty());
        assert!(store.take_to_device(&b, &dev, 0, 100).unwrap().is_empty());
        assert_eq!(store.sync_positions().unwrap().messages, pos);
    }
}
