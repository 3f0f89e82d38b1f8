//! The redb implementation of [`LogStore`]: the same database file as the rest of the store.

use redb::{ReadableDatabase, ReadableTable, WriteTransaction};
use roam_identity_core::log::DeviceKeys;
use roam_identity_core::{DeviceId, Did, OpHash, ServerName, UserId, b64};
use serde_json::Value;

use super::error::{StoreError, StoreResult};
use super::logs::{
    AccountRef, EvidenceCap, ExportedOp, LogCommit, LogStore, LogSummary, OpWindowUpdate, Served,
    ServedKind, ServedViews,
};
use super::records::NewAccount;
use super::redb_database::{RedbStore, from_json, insert_account, to_json};
use super::tables as t;

fn summary_from_row(row: t::LogSummaryRow) -> StoreResult<LogSummary> {
    Ok(LogSummary {
        head: OpHash::parse(&row.head).map_err(StoreError::corrupt("log head"))?,
        seq: row.seq,
        servers: row
            .servers
            .iter()
            .map(|s| ServerName::parse(s).map_err(StoreError::corrupt("server name")))
            .collect::<StoreResult<_>>()?,
        user_ids: row
            .user_ids
            .iter()
            .map(|s| UserId::parse(s).map_err(StoreError::corrupt("user ID")))
            .collect::<StoreResult<_>>()?,
        deactivated: row.deactivated,
        updated_at: row.updated_at,
        devices: devices_from_row(row.devices)?,
    })
}

/// The signed-in devices of a summary as stored: `device_id → [ed25519, curve25519]`
/// (unpadded base64), the same in redb and PostgreSQL.
pub(super) type DeviceRows = std::collections::BTreeMap<String, [String; 2]>;

pub(super) fn devices_from_row(
    rows: Option<DeviceRows>,
) -> StoreResult<Option<std::collections::BTreeMap<DeviceId, DeviceKeys>>> {
    rows.map(|d| {
        d.iter()
            .map(|(id, [ed, curve])| {
                let key =
                    |k: &str| b64::decode_array::<32>(k).map_err(StoreError::corrupt("device key"));
                Ok((
                    DeviceId::parse(id).map_err(StoreError::corrupt("device ID"))?,
                    DeviceKeys {
                        ed25519: key(ed)?,
                        curve25519: key(curve)?,
                    },
                ))
            })
            .collect::<StoreResult<_>>()
    })
    .transpose()
}

pub(super) fn devices_to_row(s: &LogSummary) -> Option<DeviceRows> {
    s.devices.as_ref().map(|d| {
        d.iter()
            .map(|(id, k)| {
                (
                    id.to_string(),
                    [b64::encode(&k.ed25519), b64::encode(&k.curve25519)],
                )
            })
            .collect()
    })
}

fn row_from_summary(s: &LogSummary) -> t::LogSummaryRow {
    t::LogSummaryRow {
        head: s.head.to_multibase(),
        seq: s.seq,
        servers: s.servers.iter().map(|x| x.to_string()).collect(),
        user_ids: s.user_ids.iter().map(|x| x.to_string()).collect(),
        deactivated: s.deactivated,
        updated_at: s.updated_at,
        devices: devices_to_row(s),
    }
}

/// What must hold for a commit to apply (the head it was verified against, user IDs free
/// to bind), checked before it writes anything, so a refused commit leaves no trace in a
/// transaction shared with others.
fn check_commit(txn: &WriteTransaction, c: &LogCommit) -> StoreResult<()> {
    let did = c.did.as_str();
    let heads = txn.open_table(t::LOG_HEADS)?;
    let current: Option<OpHash> = match heads.get(did)? {
        Some(v) => Some(
            OpHash::parse(&from_json::<t::LogSummaryRow>(v.value())?.head)
                .map_err(StoreError::corrupt("log head"))?,
        ),
        None => None,
    };
    if current != c.expected_head {
        return Err(StoreError::HeadMoved {
            did: Box::new(c.did.clone()),
        });
    }
    let users = txn.open_table(t::USER_DIDS)?;
    for u in &c.bind {
        if users
            .get(u.as_str())?
            .is_some_and(|bound| bound.value() != did)
        {
            return Err(StoreError::UserInUse(u.clone()));
        }
    }
    Ok(())
}

/// The body of a log commit, inside a caller's transaction.
fn apply_commit(txn: &WriteTransaction, c: &LogCommit) -> StoreResult<()> {
    check_commit(txn, c)?;
    write_commit(txn, c)
}

/// The writes of a checked commit.
fn write_commit(txn: &WriteTransaction, c: &LogCommit) -> StoreResult<()> {
    let did = c.did.as_str();
    let mut heads = txn.open_table(t::LOG_HEADS)?;
    {
        let mut ops = txn.open_table(t::LOG_OPS)?;
        let mut export = txn.open_table(t::OP_EXPORT)?;
        let mut next = export.last()?.map(|(k, _)| k.value() + 1).unwrap_or(1);
        for (hash, op) in &c.new_ops {
            let h = hash.to_multibase();
            if ops.get((did, h.as_str()))?.is_some() {
                continue;
            }
            let text = roam_identity_core::canonical::to_canonical_string(op)
                .map_err(StoreError::corrupt("op"))?;
            ops.insert((did, h.as_str()), text.as_str())?;
            export.insert(next, (did, h.as_str()))?;
            next += 1;
        }
    }
    heads.insert(did, to_json(&row_from_summary(&c.summary))?.as_str())?;
    if !c.new_ops.is_empty() {
        // Devices added or revoked through the log change the bound users' device lists.
        for u in &c.summary.user_ids {
            super::redb_database::bump_key_stream(txn, u.as_str())?;
        }
    }
    put_served(txn, c)?;
    if let Some(atts) = &c.attestations {
        let mut table = txn.open_table(t::ATTESTATIONS)?;
        table.insert(did, to_json(atts)?.as_str())?;
    }
    let mut users = txn.open_table(t::USER_DIDS)?;
    for u in &c.bind {
        users.insert(u.as_str(), did)?;
    }
    for u in &c.unbind {
        let bound_here = users.get(u.as_str())?.is_some_and(|v| v.value() == did);
        if bound_here {
            users.remove(u.as_str())?;
        }
    }
    let mut devices = txn.open_table(t::DEVICES)?;
    for (u, d) in &c.devices {
        let key = (u.as_str(), d.as_str());
        if devices.get(key)?.is_none() {
            let row = t::DeviceRow {
                display_name: None,
                created_at: c.summary.updated_at,
                token_hash: None,
                refresh_hash: None,
                last_seen_ip: None,
                last_seen_ts: None,
            };
            devices.insert(key, to_json(&row)?.as_str())?;
        }
    }
    Ok(())
}

/// Replaces the stored answers of the commit's DID (or drops them and makes it due now).
fn put_served(txn: &WriteTransaction, c: &LogCommit) -> StoreResult<()> {
    let did = c.did.as_str();
    let mut meta = txn.open_table(t::SERVED_META)?;
    let mut due = txn.open_table(t::SERVED_DUE)?;
    let mut bodies = txn.open_table(t::SERVED)?;
    let old: Option<t::ServedMetaRow> = match meta.get(did)? {
        Some(v) => Some(from_json(v.value())?),
        None => None,
    };
    if let Some(old) = old {
        due.remove((old.due_at, did))?;
    }
    // Marked due by `mark_served_due`.
    due.remove((0, did))?;
    let Some(views) = &c.served else {
        meta.remove(did)?;
        for kind in ServedKind::ALL {
            bodies.remove((did, kind.as_str()))?;
        }
        due.insert((0, did), ())?;
        return Ok(());
    };
    let ServedViews {
        generation,
        fresh_until,
        due_at,
        bodies: encoded,
    } = views;
    let row = t::ServedMetaRow {
        head: c.summary.head.to_multibase(),
        generation: *generation,
        fresh_until: *fresh_until,
        due_at: *due_at,
        deactivated: c.summary.deactivated,
    };
    meta.insert(did, to_json(&row)?.as_str())?;
    due.insert((*due_at, did), ())?;
    for (kind, body) in ServedKind::ALL.iter().zip(encoded) {
        bodies.insert((did, kind.as_str()), body.as_slice())?;
    }
    Ok(())
}

/// The stored answer of `did`, inside a read transaction's open tables.
fn served_row(
    meta: &redb::ReadOnlyTable<&'static str, &'static str>,
    bodies: &redb::ReadOnlyTable<(&'static str, &'static str), &'static [u8]>,
    did: Did,
    kind: ServedKind,
) -> StoreResult<Option<Served>> {
    let Some(row) = meta.get(did.as_str())? else {
        return Ok(None);
    };
    let row: t::ServedMetaRow = from_json(row.value())?;
    let Some(body) = bodies.get((did.as_str(), kind.as_str()))? else {
        return Err(StoreError::Dangling {
            what: "served answer",
        });
    };
    Ok(Some(Served {
        head: OpHash::parse(&row.head).map_err(StoreError::corrupt("served head"))?,
        generation: row.generation,
        fresh_until: row.fresh_until,
        deactivated: row.deactivated,
        body: body.value().to_vec(),
        did,
    }))
}

impl LogStore for RedbStore {
    fn log_ops(&self, did: &Did) -> StoreResult<Vec<Value>> {
        let txn = self.db.begin_read()?;
        let ops = txn.open_table(t::LOG_OPS)?;
        let d = did.as_str();
        let mut out = Vec::new();
        for row in ops.range((d, "")..=(d, t::PRINTABLE_END))? {
            let (_, v) = row?;
            out.push(serde_json::from_str(v.value()).map_err(StoreError::corrupt("op"))?);
        }
        Ok(out)
    }

    fn log_summary(&self, did: &Did) -> StoreResult<Option<LogSummary>> {
        let txn = self.db.begin_read()?;
        let heads = txn.open_table(t::LOG_HEADS)?;
        match heads.get(did.as_str())? {
            Some(v) => Ok(Some(summary_from_row(from_json(v.value())?)?)),
            None => Ok(None),
        }
    }

    fn held_dids(&self) -> StoreResult<Vec<Did>> {
        let txn = self.db.begin_read()?;
        let heads = txn.open_table(t::LOG_HEADS)?;
        let mut out = Vec::new();
        for row in heads.iter()? {
            let (k, _) = row?;
            out.push(Did::parse(k.value()).map_err(StoreError::corrupt("DID"))?);
        }
        Ok(out)
    }

    fn did_of_user(&self, user_id: &UserId) -> StoreResult<Option<Did>> {
        let txn = self.db.begin_read()?;
        let users = txn.open_table(t::USER_DIDS)?;
        match users.get(user_id.as_str())? {
            Some(v) => Ok(Some(
                Did::parse(v.value()).map_err(StoreError::corrupt("DID"))?,
            )),
            None => Ok(None),
        }
    }

    fn issued_attestations(&self, did: &Did) -> StoreResult<Vec<Value>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(t::ATTESTATIONS)?;
        match table.get(did.as_str())? {
            Some(v) => from_json(v.value()),
            None => Ok(Vec::new()),
        }
    }

    fn commit_log(&self, commit: LogCommit) -> StoreResult<()> {
        let txn = self.db.begin_write()?;
        apply_commit(&txn, &commit)?;
        txn.commit()?;
        Ok(())
    }

    fn commit_logs(&self, commits: Vec<LogCommit>) -> StoreResult<Vec<StoreResult<()>>> {
        let txn = self.db.begin_write()?;
        let mut out = Vec::with_capacity(commits.len());
        for c in &commits {
            match check_commit(&txn, c) {
                Ok(()) => {
                    write_commit(&txn, c)?;
                    out.push(Ok(()));
                }
                Err(e @ (StoreError::HeadMoved { .. } | StoreError::UserInUse(_))) => {
                    out.push(Err(e))
                }
                Err(e) => return Err(e),
            }
        }
        txn.commit()?;
        Ok(out)
    }

    fn served(
        &self,
        accounts: &[AccountRef],
        kind: ServedKind,
    ) -> StoreResult<Vec<Option<Served>>> {
        let txn = self.db.begin_read()?;
        let users = txn.open_table(t::USER_DIDS)?;
        let meta = txn.open_table(t::SERVED_META)?;
        let bodies = txn.open_table(t::SERVED)?;
        let mut out = Vec::with_capacity(accounts.len());
        for account in accounts {
            let did = match account {
                AccountRef::Did(d) => Some(d.clone()),
                AccountRef::User(u) => match users.get(u.as_str())? {
                    Some(v) => Some(Did::parse(v.value()).map_err(StoreError::corrupt("DID"))?),
                    None => None,
                },
            };
            out.push(match did {
                Some(did) => served_row(&meta, &bodies, did, kind)?,
                None => None,
            });
        }
        Ok(out)
    }

    fn served_due(&self, now: u64, limit: usize) -> StoreResult<Vec<Did>> {
        let txn = self.db.begin_read()?;
        let due = txn.open_table(t::SERVED_DUE)?;
        let mut out = Vec::new();
        for row in due.range((0, "")..=(now, t::PRINTABLE_END))? {
            if out.len() >= limit {
                break;
            }
            let (k, _) = row?;
            out.push(Did::parse(k.value().1).map_err(StoreError::corrupt("DID"))?);
        }
        Ok(out)
    }

    fn mark_served_due(&self, key_id: &str) -> StoreResult<u64> {
        self.write(|txn| {
            let mut meta = txn.open_table(t::META)?;
            if meta
                .get(t::META_SERVED_KEY)?
                .is_some_and(|v| v.value() == key_id.as_bytes())
            {
                return Ok(0);
            }
            meta.insert(t::META_SERVED_KEY, key_id.as_bytes())?;
            let heads = txn.open_table(t::LOG_HEADS)?;
            let served = txn.open_table(t::SERVED_META)?;
            let mut due = txn.open_table(t::SERVED_DUE)?;
            let mut marked = 0;
            for row in heads.iter()? {
                let (k, _) = row?;
                let did = k.value();
                if let Some(v) = served.get(did)? {
                    let old: t::ServedMetaRow = from_json(v.value())?;
                    due.remove((old.due_at, did))?;
                }
                due.insert((0, did), ())?;
                marked += 1;
            }
            Ok(marked)
        })
    }

    fn create_account_with_log(&self, new: NewAccount, commit: LogCommit) -> StoreResult<()> {
        let txn = self.db.begin_write()?;
        insert_account(&txn, new)?;
        apply_commit(&txn, &commit)?;
        txn.commit()?;
        Ok(())
    }

    fn record_fork(
        &self,
        did: &Did,
        ops: &[(OpHash, Value)],
        cap: EvidenceCap,
    ) -> StoreResult<usize> {
        let txn = self.db.begin_write()?;
        let mut kept = 0;
        {
            let mut table = txn.open_table(t::FORK_EVIDENCE)?;
            let d = did.as_str();
            let (mut count, mut bytes) = (0usize, 0usize);
            for row in table.range((d, "")..=(d, t::PRINTABLE_END))? {
                let (_, v) = row?;
                count += 1;
                bytes += v.value().len();
            }
            for (h, op) in ops {
                let text = roam_identity_core::canonical::to_canonical_string(op)
                    .map_err(StoreError::corrupt("op"))?;
                let key = h.to_multibase();
                if table.get((d, key.as_str()))?.is_some() {
                    continue;
                }
                if count + 1 > cap.ops || bytes + text.len() > cap.bytes {
                    break;
                }
                table.insert((d, key.as_str()), text.as_str())?;
                (count, bytes, kept) = (count + 1, bytes + text.len(), kept + 1);
            }
        }
        txn.commit()?;
        Ok(kept)
    }

    fn fork_evidence(&self, did: &Did) -> StoreResult<Vec<Value>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(t::FORK_EVIDENCE)?;
        let d = did.as_str();
        let mut out = Vec::new();
        for row in table.range((d, "")..=(d, t::PRINTABLE_END))? {
            let (_, v) = row?;
            out.push(serde_json::from_str(v.value()).map_err(StoreError::corrupt("op"))?);
        }
        Ok(out)
    }

    fn export_ops(&self, after: u64, limit: usize) -> StoreResult<Vec<ExportedOp>> {
        let txn = self.db.begin_read()?;
        let export = txn.open_table(t::OP_EXPORT)?;
        let ops = txn.open_table(t::LOG_OPS)?;
        let mut out = Vec::new();
        for row in export.range(after.saturating_add(1)..)? {
            if out.len() >= limit {
                break;
            }
            let (k, v) = row?;
            let (did, hash) = v.value();
            let op = ops
                .get((did, hash))?
                .ok_or(StoreError::Dangling { what: "export row" })?;
            out.push(ExportedOp {
                cursor: k.value(),
                did: did.to_owned(),
                op: serde_json::from_str(op.value()).map_err(StoreError::corrupt("op"))?,
            });
        }
        Ok(out)
    }

    fn migration(&self, id: &str) -> StoreResult<Option<Value>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(t::MIGRATIONS)?;
        match table.get(id)? {
            Some(v) => Ok(Some(from_json(v.value())?)),
            None => Ok(None),
        }
    }

    fn migration_of(&self, did: &Did) -> StoreResult<Option<Value>> {
        let txn = self.db.begin_read()?;
        let by_did = txn.open_table(t::MIGRATION_BY_DID)?;
        let Some(id) = by_did.get(did.as_str())? else {
            return Ok(None);
        };
        let table = txn.open_table(t::MIGRATIONS)?;
        match table.get(id.value())? {
            Some(v) => Ok(Some(from_json(v.value())?)),
            None => Ok(None),
        }
    }

    fn update_op_window(&self, did: &Did, update: &mut OpWindowUpdate<'_>) -> StoreResult<()> {
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(t::OP_WINDOWS)?;
            let mut times: Vec<u64> = match table.get(did.as_str())? {
                Some(v) => from_json(v.value())?,
                None => Vec::new(),
            };
            if !update(&mut times) {
                return Ok(());
            }
            if times.is_empty() {
                table.remove(did.as_str())?;
            } else {
                table.insert(did.as_str(), to_json(&times)?.as_str())?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    fn put_migration(&self, id: &str, did: &Did, record: &Value) -> StoreResult<()> {
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(t::MIGRATIONS)?;
            table.insert(id, to_json(record)?.as_str())?;
            let mut by_did = txn.open_table(t::MIGRATION_BY_DID)?;
            by_did.insert(did.as_str(), id)?;
        }
        txn.commit()?;
        Ok(())
    }
}
