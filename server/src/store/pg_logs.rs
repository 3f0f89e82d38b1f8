//! The PostgreSQL implementation of [`LogStore`]. The "commit fails if the head moved" rule
//! holds across nodes: the head row is read and written in one serializable transaction,
//! so of two concurrent commits on one DID the second is rerun, sees the moved head and
//! fails with [`StoreError::HeadMoved`]. A group commit runs each change under its own
//! savepoint, so a refused change leaves no trace in the batch's transaction.

use roam_identity_core::{Did, OpHash, ServerName, UserId};
use serde_json::Value;
use sqlx::{PgConnection, Row};

use super::error::{StoreError, StoreResult};
use super::logs::{
    AccountRef, EvidenceCap, ExportedOp, LogCommit, LogStore, LogSummary, OpWindowUpdate, Served,
    ServedKind,
};
use super::pg_database::{PgStore, insert_account, to_i64, to_u64};
use super::pg_served::{due_in, mark_due_in, put_served, served_in};
use super::records::NewAccount;
use super::redb_database::{from_json, to_json};
use super::redb_logs::{devices_from_row, devices_to_row};

fn canonical(op: &Value) -> StoreResult<String> {
    roam_identity_core::canonical::to_canonical_string(op).map_err(StoreError::corrupt("op"))
}

fn parse_op(text: &str) -> StoreResult<Value> {
    serde_json::from_str(text).map_err(StoreError::corrupt("op"))
}

fn summary_from_row(row: &sqlx::postgres::PgRow) -> StoreResult<LogSummary> {
    let head: String = row.try_get("head")?;
    let servers: Vec<String> = row.try_get("servers")?;
    let user_ids: Vec<String> = row.try_get("user_ids")?;
    Ok(LogSummary {
        head: OpHash::parse(&head).map_err(StoreError::corrupt("log head"))?,
        seq: to_u64(row.try_get("seq")?)?,
        servers: servers
            .iter()
            .map(|s| ServerName::parse(s).map_err(StoreError::corrupt("server name")))
            .collect::<StoreResult<_>>()?,
        user_ids: user_ids
            .iter()
            .map(|s| UserId::parse(s).map_err(StoreError::corrupt("user ID")))
            .collect::<StoreResult<_>>()?,
        deactivated: row.try_get("deactivated")?,
        updated_at: to_u64(row.try_get("updated_at")?)?,
        devices: {
            let text: Option<String> = row.try_get("devices")?;
            devices_from_row(text.as_deref().map(from_json).transpose()?)?
        },
    })
}

/// Checks the head and writes the new summary.
async fn move_head(c: &mut PgConnection, commit: &LogCommit) -> StoreResult<()> {
    let did = commit.did.as_str();
    let current: Option<String> =
        sqlx::query_scalar("SELECT head FROM log_heads WHERE did = $1 FOR UPDATE")
            .bind(did)
            .fetch_optional(&mut *c)
            .await?;
    let current = current
        .map(|h| OpHash::parse(&h).map_err(StoreError::corrupt("log head")))
        .transpose()?;
    if current != commit.expected_head {
        return Err(StoreError::HeadMoved {
            did: Box::new(commit.did.clone()),
        });
    }
    let s = &commit.summary;
    let servers: Vec<String> = s.servers.iter().map(|x| x.to_string()).collect();
    let users: Vec<String> = s.user_ids.iter().map(|x| x.to_string()).collect();
    sqlx::query(
        "INSERT INTO log_heads (did, head, seq, servers, user_ids, deactivated, updated_at, \
         devices) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (did) DO UPDATE SET \
         head = excluded.head, seq = excluded.seq, servers = excluded.servers, \
         user_ids = excluded.user_ids, deactivated = excluded.deactivated, \
         updated_at = excluded.updated_at, devices = excluded.devices",
    )
    .bind(did)
    .bind(s.head.to_multibase())
    .bind(to_i64(s.seq))
    .bind(&servers)
    .bind(&users)
    .bind(s.deactivated)
    .bind(to_i64(s.updated_at))
    .bind(devices_to_row(s).map(|d| to_json(&d)).transpose()?)
    .execute(&mut *c)
    .await?;
    Ok(())
}

/// Appends the commit's new ops to the log and the export stream.
async fn append_ops(c: &mut PgConnection, commit: &LogCommit) -> StoreResult<()> {
    let did = commit.did.as_str();
    for (hash, op) in &commit.new_ops {
        let h = hash.to_multibase();
        let inserted = sqlx::query(
            "INSERT INTO log_ops (did, hash, op) VALUES ($1, $2, $3) \
             ON CONFLICT (did, hash) DO NOTHING",
        )
        .bind(did)
        .bind(&h)
        .bind(canonical(op)?)
        .execute(&mut *c)
        .await?
        .rows_affected();
        if inserted == 0 {
            continue;
        }
        // The counter row stays locked until commit: cursors become visible in order.
        let cursor: i64 = sqlx::query_scalar(
            "UPDATE counters SET value = value + 1 WHERE name = 'op_export' RETURNING value",
        )
        .fetch_one(&mut *c)
        .await?;
        sqlx::query("INSERT INTO op_export (cursor, did, hash) VALUES ($1, $2, $3)")
            .bind(cursor)
            .bind(did)
            .bind(&h)
            .execute(&mut *c)
            .await?;
    }
    Ok(())
}

/// Binds and unbinds local user IDs; a user ID bound to another DID is refused.
async fn bind_users(c: &mut PgConnection, commit: &LogCommit) -> StoreResult<()> {
    let did = commit.did.as_str();
    for u in &commit.bind {
        let bound = sqlx::query(
            "INSERT INTO user_dids (user_id, did) VALUES ($1, $2) ON CONFLICT (user_id) \
             DO UPDATE SET did = excluded.did WHERE user_dids.did = excluded.did",
        )
        .bind(u.as_str())
        .bind(did)
        .execute(&mut *c)
        .await?
        .rows_affected();
        if bound == 0 {
            return Err(StoreError::UserInUse(u.clone()));
        }
    }
    for u in &commit.unbind {
        sqlx::query("DELETE FROM user_dids WHERE user_id = $1 AND did = $2")
            .bind(u.as_str())
            .bind(did)
            .execute(&mut *c)
            .await?;
    }
    Ok(())
}

/// The body of a log commit, inside the caller's transaction.
async fn apply_commit(c: &mut PgConnection, commit: &LogCommit) -> StoreResult<()> {
    move_head(c, commit).await?;
    append_ops(c, commit).await?;
    if !commit.new_ops.is_empty() {
        // Devices added or revoked through the log change the bound users' device lists.
        for u in &commit.summary.user_ids {
            super::pg_database::bump_key_stream(c, u.as_str()).await?;
        }
    }
    if let Some(atts) = &commit.attestations {
        sqlx::query(
            "INSERT INTO attestations (did, attestations) VALUES ($1, $2) \
             ON CONFLICT (did) DO UPDATE SET attestations = excluded.attestations",
        )
        .bind(commit.did.as_str())
        .bind(to_json(atts)?)
        .execute(&mut *c)
        .await?;
    }
    bind_users(c, commit).await?;
    put_served(c, commit).await?;
    for (u, d) in &commit.devices {
        sqlx::query(
            "INSERT INTO devices (user_id, device_id, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (user_id, device_id) DO NOTHING",
        )
        .bind(u.as_str())
        .bind(d.as_str())
        .bind(to_i64(commit.summary.updated_at))
        .execute(&mut *c)
        .await?;
    }
    Ok(())
}

/// The changes of a group commit in one transaction, each under a savepoint: a change
/// refused for a moved head or a taken user ID is rolled back alone and reported; any other
/// error fails the whole batch.
async fn apply_commits(
    c: &mut PgConnection,
    commits: &[LogCommit],
) -> StoreResult<Vec<StoreResult<()>>> {
    let mut out = Vec::with_capacity(commits.len());
    for commit in commits {
        sqlx::query("SAVEPOINT log_commit").execute(&mut *c).await?;
        match apply_commit(c, commit).await {
            Ok(()) => {
                sqlx::query("RELEASE SAVEPOINT log_commit")
                    .execute(&mut *c)
                    .await?;
                out.push(Ok(()));
            }
            Err(e @ (StoreError::HeadMoved { .. } | StoreError::UserInUse(_))) => {
                sqlx::query("ROLLBACK TO SAVEPOINT log_commit")
                    .execute(&mut *c)
                    .await?;
                out.push(Err(e));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

async fn record_fork_in(
    c: &mut PgConnection,
    did: &str,
    ops: &[(OpHash, Value)],
    cap: EvidenceCap,
) -> StoreResult<usize> {
    let row = sqlx::query(
        "SELECT count(*), COALESCE(sum(octet_length(op)), 0)::bigint FROM fork_evidence \
         WHERE did = $1",
    )
    .bind(did)
    .fetch_one(&mut *c)
    .await?;
    let count: i64 = row.try_get(0)?;
    let bytes: i64 = row.try_get(1)?;
    let (mut count, mut bytes, mut kept) = (count as usize, bytes as usize, 0);
    for (h, op) in ops {
        let text = canonical(op)?;
        let key = h.to_multibase();
        let known = sqlx::query("SELECT 1 FROM fork_evidence WHERE did = $1 AND hash = $2")
            .bind(did)
            .bind(&key)
            .fetch_optional(&mut *c)
            .await?
            .is_some();
        if known {
            continue;
        }
        if count + 1 > cap.ops || bytes + text.len() > cap.bytes {
            break;
        }
        sqlx::query("INSERT INTO fork_evidence (did, hash, op) VALUES ($1, $2, $3)")
            .bind(did)
            .bind(&key)
            .bind(&text)
            .execute(&mut *c)
            .await?;
        (count, bytes, kept) = (count + 1, bytes + text.len(), kept + 1);
    }
    Ok(kept)
}

async fn update_window_in(
    c: &mut PgConnection,
    did: &str,
    update: &mut OpWindowUpdate<'_>,
) -> StoreResult<()> {
    let stored: Option<Vec<i64>> =
        sqlx::query_scalar("SELECT times FROM op_windows WHERE did = $1")
            .bind(did)
            .fetch_optional(&mut *c)
            .await?;
    let mut times = stored
        .unwrap_or_default()
        .into_iter()
        .map(to_u64)
        .collect::<StoreResult<Vec<_>>>()?;
    if !update(&mut times) {
        return Ok(());
    }
    if times.is_empty() {
        sqlx::query("DELETE FROM op_windows WHERE did = $1")
            .bind(did)
            .execute(&mut *c)
            .await?;
    } else {
        let times: Vec<i64> = times.into_iter().map(to_i64).collect();
        sqlx::query(
            "INSERT INTO op_windows (did, times) VALUES ($1, $2) \
             ON CONFLICT (did) DO UPDATE SET times = excluded.times",
        )
        .bind(did)
        .bind(&times)
        .execute(&mut *c)
        .await?;
    }
    Ok(())
}

async fn export_in(c: &mut PgConnection, after: u64, limit: usize) -> StoreResult<Vec<ExportedOp>> {
    let rows = sqlx::query(
        "SELECT e.cursor, e.did, o.op FROM op_export e LEFT JOIN log_ops o \
         ON o.did = e.did AND o.hash = e.hash WHERE e.cursor > $1 ORDER BY e.cursor LIMIT $2",
    )
    .bind(to_i64(after))
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(&mut *c)
    .await?;
    rows.iter()
        .map(|row| {
            let op: Option<String> = row.try_get(2)?;
            let op = op.ok_or(StoreError::Dangling { what: "export row" })?;
            Ok(ExportedOp {
                cursor: to_u64(row.try_get(0)?)?,
                did: row.try_get(1)?,
                op: parse_op(&op)?,
            })
        })
        .collect()
}

impl LogStore for PgStore {
    fn log_ops(&self, did: &Did) -> StoreResult<Vec<Value>> {
        self.block(async {
            let ops: Vec<String> =
                sqlx::query_scalar("SELECT op FROM log_ops WHERE did = $1 ORDER BY hash")
                    .bind(did.as_str())
                    .fetch_all(&self.pool)
                    .await?;
            ops.iter().map(|o| parse_op(o)).collect()
        })
    }

    fn log_summary(&self, did: &Did) -> StoreResult<Option<LogSummary>> {
        self.block(async {
            let row = sqlx::query("SELECT * FROM log_heads WHERE did = $1")
                .bind(did.as_str())
                .fetch_optional(&self.pool)
                .await?;
            row.as_ref().map(summary_from_row).transpose()
        })
    }

    fn held_dids(&self) -> StoreResult<Vec<Did>> {
        self.block(async {
            let dids: Vec<String> = sqlx::query_scalar("SELECT did FROM log_heads ORDER BY did")
                .fetch_all(&self.pool)
                .await?;
            dids.iter()
                .map(|d| Did::parse(d).map_err(StoreError::corrupt("DID")))
                .collect()
        })
    }

    fn did_of_user(&self, user_id: &UserId) -> StoreResult<Option<Did>> {
        self.block(async {
            let did: Option<String> =
                sqlx::query_scalar("SELECT did FROM user_dids WHERE user_id = $1")
                    .bind(user_id.as_str())
                    .fetch_optional(&self.pool)
                    .await?;
            did.map(|d| Did::parse(&d).map_err(StoreError::corrupt("DID")))
                .transpose()
        })
    }

    fn issued_attestations(&self, did: &Did) -> StoreResult<Vec<Value>> {
        self.block(async {
            let text: Option<String> =
                sqlx::query_scalar("SELECT attestations FROM attestations WHERE did = $1")
                    .bind(did.as_str())
                    .fetch_optional(&self.pool)
                    .await?;
            text.map_or(Ok(Vec::new()), |t| from_json(&t))
        })
    }

    fn commit_log(&self, commit: LogCommit) -> StoreResult<()> {
        self.txn(async |c| apply_commit(c, &commit).await)
    }

    fn commit_logs(&self, commits: Vec<LogCommit>) -> StoreResult<Vec<StoreResult<()>>> {
        self.txn(async |c| apply_commits(c, &commits).await)
    }

    fn served(
        &self,
        accounts: &[AccountRef],
        kind: ServedKind,
    ) -> StoreResult<Vec<Option<Served>>> {
        self.txn(async |c| served_in(c, accounts, kind).await)
    }

    fn served_due(&self, now: u64, limit: usize) -> StoreResult<Vec<Did>> {
        self.txn(async |c| due_in(c, now, limit).await)
    }

    fn mark_served_due(&self, key_id: &str) -> StoreResult<u64> {
        self.txn(async |c| mark_due_in(c, key_id).await)
    }

    fn create_account_with_log(&self, new: NewAccount, commit: LogCommit) -> StoreResult<()> {
        self.txn(async |c| {
            insert_account(c, &new).await?;
            apply_commit(c, &commit).await
        })
    }

    fn record_fork(
        &self,
        did: &Did,
        ops: &[(OpHash, Value)],
        cap: EvidenceCap,
    ) -> StoreResult<usize> {
        self.txn(async |c| record_fork_in(c, did.as_str(), ops, cap).await)
    }

    fn fork_evidence(&self, did: &Did) -> StoreResult<Vec<Value>> {
        self.block(async {
            let ops: Vec<String> =
                sqlx::query_scalar("SELECT op FROM fork_evidence WHERE did = $1 ORDER BY hash")
                    .bind(did.as_str())
                    .fetch_all(&self.pool)
                    .await?;
            ops.iter().map(|o| parse_op(o)).collect()
        })
    }

    fn export_ops(&self, after: u64, limit: usize) -> StoreResult<Vec<ExportedOp>> {
        self.txn(async |c| export_in(c, after, limit).await)
    }

    fn migration(&self, id: &str) -> StoreResult<Option<Value>> {
        self.block(async {
            let text: Option<String> =
                sqlx::query_scalar("SELECT record FROM migrations WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
            text.map(|t| from_json(&t)).transpose()
        })
    }

    fn migration_of(&self, did: &Did) -> StoreResult<Option<Value>> {
        self.block(async {
            let text: Option<String> = sqlx::query_scalar(
                "SELECT m.record FROM migration_by_did b JOIN migrations m ON m.id = b.id \
                 WHERE b.did = $1",
            )
            .bind(did.as_str())
            .fetch_optional(&self.pool)
            .await?;
            text.map(|t| from_json(&t)).transpose()
        })
    }

    fn put_migration(&self, id: &str, did: &Did, record: &Value) -> StoreResult<()> {
        let text = to_json(record)?;
        self.txn(async |c| {
            sqlx::query(
                "INSERT INTO migrations (id, record) VALUES ($1, $2) \
                 ON CONFLICT (id) DO UPDATE SET record = excluded.record",
            )
            .bind(id)
            .bind(&text)
            .execute(&mut *c)
            .await?;
            sqlx::query(
                "INSERT INTO migration_by_did (did, id) VALUES ($1, $2) \
                 ON CONFLICT (did) DO UPDATE SET id = excluded.id",
            )
            .bind(did.as_str())
            .bind(id)
            .execute(&mut *c)
            .await?;
            Ok(())
        })
    }

    fn update_op_window(&self, did: &Did, update: &mut OpWindowUpdate<'_>) -> StoreResult<()> {
        self.txn(async |c| update_window_in(c, did.as_str(), update).await)
    }
}
