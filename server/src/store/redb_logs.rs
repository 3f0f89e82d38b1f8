//! The redb implementation of [`LogStore`]: the same database file as the rest of the store.

use redb::{ReadableDatabase, ReadableTable, WriteTransaction};
use roam_identity_core::{Did, OpHash, ServerName, UserId};
use serde_json::Value;

use super::error::{StoreError, StoreResult};
use super::logs::{EvidenceCap, ExportedOp, LogCommit, LogStore, LogSummary, OpWindowUpdate};
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
    }
}

/// The body of a log commit, inside a caller's transaction.
fn apply_commit(txn: &WriteTransaction, c: &LogCommit) -> StoreResult<()> {
    let did = c.did.as_str();
    let mut heads = txn.open_table(t::LOG_HEADS)?;
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
    if let Some(atts) = &c.attestations {
        let mut table = txn.open_table(t::ATTESTATIONS)?;
        table.insert(did, to_json(atts)?.as_str())?;
    }
    let mut users = txn.open_table(t::USER_DIDS)?;
    for u in &c.bind {
        let taken = users
            .get(u.as_str())?
            .is_some_and(|bound| bound.value() != did);
        if taken {
            return Err(StoreError::UserInUse(u.clone()));
        }
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
