//! The PostgreSQL implementation of [`DevicePlaneStore`]: the same rows and rules as the
//! redb one (`redb_device_plane.rs`), each method one serializable transaction. The stream
//! counters are rows of `counters`, locked by the transaction that moves them until it
//! commits, so positions become visible in order.

use std::collections::HashMap;

use roam_identity_core::{DeviceId, ServerName, UserId};
use serde_json::Value;
use sqlx::{PgConnection, Row};

use super::device_plane::{
    DevicePlaneStore, MAX_ACCOUNT_DATA_TYPES, MAX_FILTERS, MAX_INBOX, MAX_REMOTE_FOLLOWERS,
    MAX_TRACKED, Profile, SyncPositions, ToDeviceMessage, TxnKey,
};
use super::error::{StoreError, StoreResult};
use super::pg_database::{PgStore, bump_key_stream, to_i64, to_u64};
use super::redb_database::{from_json, to_json};

fn parse_user(s: &str) -> StoreResult<UserId> {
    UserId::parse(s).map_err(StoreError::corrupt("user ID"))
}

/// Takes `n` message stream positions; returns the first.
async fn take_message_positions(c: &mut PgConnection, n: usize) -> StoreResult<u64> {
    let last: i64 = sqlx::query_scalar(
        "UPDATE counters SET value = value + $1 WHERE name = 'message_stream' RETURNING value",
    )
    .bind(i64::try_from(n).unwrap_or(i64::MAX))
    .fetch_one(&mut *c)
    .await?;
    Ok(to_u64(last)? + 1 - n as u64)
}

/// How many rows `sql` (a `SELECT 1 … LIMIT $3` over one user's rows) finds, up to the cap.
async fn count_capped(
    c: &mut PgConnection,
    sql: &str,
    u: &str,
    second: &str,
    cap: usize,
) -> StoreResult<usize> {
    let n: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM ({sql}) capped"))
        .bind(u)
        .bind(second)
        .bind(to_i64(cap as u64))
        .fetch_one(&mut *c)
        .await?;
    Ok(usize::try_from(n).unwrap_or(usize::MAX))
}

/// Deletes a device's undelivered messages (the device is gone).
pub(super) async fn drop_inbox(c: &mut PgConnection, u: &str, d: &str) -> StoreResult<()> {
    sqlx::query("DELETE FROM to_device WHERE user_id = $1 AND device_id = $2")
        .bind(u)
        .bind(d)
        .execute(&mut *c)
        .await?;
    Ok(())
}

const INBOX_ROWS: &str = "SELECT 1 FROM to_device WHERE user_id = $1 AND device_id = $2 LIMIT $3";

/// The body of `send_to_device`: the transaction ID first, then every inbox's cap, then
/// the messages with consecutive positions in the order given.
async fn send_in(
    c: &mut PgConnection,
    txn: &TxnKey,
    messages: &[ToDeviceMessage],
) -> StoreResult<bool> {
    let fresh = sqlx::query(
        "INSERT INTO to_device_txns (sender, device_id, txn_id, created_at) \
         VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
    )
    .bind(txn.sender.as_str())
    .bind(txn.device_id.as_str())
    .bind(&txn.txn_id)
    .bind(to_i64(crate::clock::now_ms()))
    .execute(&mut *c)
    .await?
    .rows_affected();
    if fresh == 0 {
        return Ok(false);
    }
    if messages.is_empty() {
        return Ok(true);
    }
    let mut held: HashMap<(&str, &str), usize> = HashMap::new();
    for m in messages {
        let key = (m.user_id.as_str(), m.device_id.as_str());
        let n = match held.get(&key) {
            Some(n) => *n,
            None => count_capped(c, INBOX_ROWS, key.0, key.1, MAX_INBOX).await?,
        };
        if n >= MAX_INBOX {
            return Err(StoreError::CapReached("undelivered to-device messages"));
        }
        held.insert(key, n + 1);
    }
    let first = take_message_positions(c, messages.len()).await?;
    let (mut users, mut devices, mut positions, mut events) = (vec![], vec![], vec![], vec![]);
    for (i, m) in messages.iter().enumerate() {
        users.push(m.user_id.as_str());
        devices.push(m.device_id.as_str());
        positions.push(to_i64(first + i as u64));
        events.push(to_json(&m.event)?);
    }
    sqlx::query(
        "INSERT INTO to_device (user_id, device_id, position, event) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[])",
    )
    .bind(&users)
    .bind(&devices)
    .bind(&positions)
    .bind(&events)
    .execute(&mut *c)
    .await?;
    Ok(true)
}

pub(super) async fn put_account_data_in(
    c: &mut PgConnection,
    u: &str,
    kind: &str,
    content: &Value,
) -> StoreResult<u64> {
    let known = sqlx::query("SELECT 1 FROM account_data WHERE user_id = $1 AND kind = $2")
        .bind(u)
        .bind(kind)
        .fetch_optional(&mut *c)
        .await?
        .is_some();
    let rows = "SELECT 1 FROM account_data WHERE user_id = $1 AND kind >= $2 LIMIT $3";
    if !known
        && count_capped(c, rows, u, "", MAX_ACCOUNT_DATA_TYPES).await? >= MAX_ACCOUNT_DATA_TYPES
    {
        return Err(StoreError::CapReached("account data types"));
    }
    let pos = take_message_positions(c, 1).await?;
    sqlx::query(
        "INSERT INTO account_data (user_id, kind, position, content) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (user_id, kind) DO UPDATE SET position = excluded.position, \
         content = excluded.content",
    )
    .bind(u)
    .bind(kind)
    .bind(to_i64(pos))
    .bind(to_json(content)?)
    .execute(&mut *c)
    .await?;
    Ok(pos)
}

async fn put_filter_in(c: &mut PgConnection, u: &str, filter: &Value) -> StoreResult<String> {
    let rows = "SELECT 1 FROM filters WHERE user_id = $1 AND filter_id >= $2 LIMIT $3";
    let n = count_capped(c, rows, u, "", MAX_FILTERS).await?;
    if n >= MAX_FILTERS {
        return Err(StoreError::CapReached("filters"));
    }
    // IDs are the count so far, zero-padded so that they sort in creation order.
    let id = format!("{n:04}");
    sqlx::query("INSERT INTO filters (user_id, filter_id, filter) VALUES ($1, $2, $3)")
        .bind(u)
        .bind(&id)
        .bind(to_json(filter)?)
        .execute(&mut *c)
        .await?;
    Ok(id)
}

async fn track_in(c: &mut PgConnection, user_id: &UserId, users: &[UserId]) -> StoreResult<()> {
    let me = user_id.as_str();
    let mut new = Vec::new();
    for u in users.iter().filter(|u| *u != user_id) {
        let known = sqlx::query("SELECT 1 FROM tracked_users WHERE user_id = $1 AND tracked = $2")
            .bind(me)
            .bind(u.as_str())
            .fetch_optional(&mut *c)
            .await?
            .is_some();
        if !known {
            new.push(u.as_str());
        }
    }
    if new.is_empty() {
        return Ok(());
    }
    let cap = MAX_TRACKED.saturating_sub(new.len()).max(1);
    let rows = "SELECT 1 FROM tracked_users WHERE user_id = $1 AND tracked >= $2 LIMIT $3";
    if count_capped(c, rows, me, "", cap).await? >= cap {
        return Err(StoreError::CapReached("tracked users"));
    }
    sqlx::query(
        "INSERT INTO tracked_users (user_id, tracked) SELECT $1, t FROM UNNEST($2::text[]) t \
         ON CONFLICT DO NOTHING",
    )
    .bind(me)
    .bind(&new)
    .execute(&mut *c)
    .await?;
    Ok(())
}

impl DevicePlaneStore for PgStore {
    fn sync_positions(&self) -> StoreResult<SyncPositions> {
        self.block(async {
            let rows = sqlx::query(
                "SELECT name, value FROM counters WHERE name IN ('key_stream', 'message_stream')",
            )
            .fetch_all(&self.pool)
            .await?;
            let mut out = SyncPositions::default();
            for row in rows {
                let value = to_u64(row.try_get(1)?)?;
                match row.try_get::<&str, _>(0)? {
                    "key_stream" => out.keys = value,
                    _ => out.messages = value,
                }
            }
            Ok(out)
        })
    }

    fn send_to_device(&self, txn: &TxnKey, messages: Vec<ToDeviceMessage>) -> StoreResult<bool> {
        self.txn(async |c| send_in(c, txn, &messages).await)
    }

    fn take_to_device(
        &self,
        user_id: &UserId,
        device_id: &DeviceId,
        since: u64,
        limit: usize,
    ) -> StoreResult<Vec<(u64, Value)>> {
        let (u, d) = (user_id.as_str(), device_id.as_str());
        self.txn(async |c| {
            // Delivered before, and the client came back with a later token: it has them.
            sqlx::query(
                "DELETE FROM to_device WHERE user_id = $1 AND device_id = $2 AND position <= $3",
            )
            .bind(u)
            .bind(d)
            .bind(to_i64(since))
            .execute(&mut *c)
            .await?;
            let rows = sqlx::query(
                "SELECT position, event FROM to_device WHERE user_id = $1 AND device_id = $2 \
                 AND position > $3 ORDER BY position LIMIT $4",
            )
            .bind(u)
            .bind(d)
            .bind(to_i64(since))
            .bind(to_i64(limit.max(1) as u64))
            .fetch_all(&mut *c)
            .await?;
            rows.iter()
                .map(|row| Ok((to_u64(row.try_get(0)?)?, from_json(row.try_get(1)?)?)))
                .collect()
        })
    }

    fn put_account_data(&self, user_id: &UserId, kind: &str, content: Value) -> StoreResult<u64> {
        self.txn(async |c| put_account_data_in(c, user_id.as_str(), kind, &content).await)
    }

    fn account_data(&self, user_id: &UserId, kind: &str) -> StoreResult<Option<Value>> {
        self.block(async {
            let text: Option<String> = sqlx::query_scalar(
                "SELECT content FROM account_data WHERE user_id = $1 AND kind = $2",
            )
            .bind(user_id.as_str())
            .bind(kind)
            .fetch_optional(&self.pool)
            .await?;
            text.map(|t| from_json(&t)).transpose()
        })
    }

    fn account_data_since(
        &self,
        user_id: &UserId,
        since: u64,
    ) -> StoreResult<Vec<(String, Value)>> {
        self.block(async {
            let rows = sqlx::query(
                "SELECT kind, content FROM account_data WHERE user_id = $1 AND position > $2 \
                 ORDER BY kind",
            )
            .bind(user_id.as_str())
            .bind(to_i64(since))
            .fetch_all(&self.pool)
            .await?;
            rows.iter()
                .map(|row| Ok((row.try_get(0)?, from_json(row.try_get(1)?)?)))
                .collect()
        })
    }

    fn put_filter(&self, user_id: &UserId, filter: Value) -> StoreResult<String> {
        self.txn(async |c| put_filter_in(c, user_id.as_str(), &filter).await)
    }

    fn filter(&self, user_id: &UserId, filter_id: &str) -> StoreResult<Option<Value>> {
        self.block(async {
            let text: Option<String> = sqlx::query_scalar(
                "SELECT filter FROM filters WHERE user_id = $1 AND filter_id = $2",
            )
            .bind(user_id.as_str())
            .bind(filter_id)
            .fetch_optional(&self.pool)
            .await?;
            text.map(|t| from_json(&t)).transpose()
        })
    }

    fn profile(&self, user_id: &UserId) -> StoreResult<Profile> {
        self.block(async {
            let row =
                sqlx::query("SELECT displayname, avatar_url FROM profiles WHERE user_id = $1")
                    .bind(user_id.as_str())
                    .fetch_optional(&self.pool)
                    .await?;
            match row {
                Some(row) => Ok(Profile {
                    displayname: row.try_get(0)?,
                    avatar_url: row.try_get(1)?,
                }),
                None => Ok(Profile::default()),
            }
        })
    }

    fn set_profile(&self, user_id: &UserId, profile: Profile) -> StoreResult<()> {
        self.txn(async |c| {
            sqlx::query(
                "INSERT INTO profiles (user_id, displayname, avatar_url) VALUES ($1, $2, $3) \
                 ON CONFLICT (user_id) DO UPDATE SET displayname = excluded.displayname, \
                 avatar_url = excluded.avatar_url",
            )
            .bind(user_id.as_str())
            .bind(profile.displayname.as_deref())
            .bind(profile.avatar_url.as_deref())
            .execute(&mut *c)
            .await?;
            Ok(())
        })
    }

    fn mark_keys_changed(&self, user_id: &UserId) -> StoreResult<u64> {
        self.txn(async |c| bump_key_stream(c, user_id.as_str()).await)
    }

    fn track_users(&self, user_id: &UserId, users: &[UserId]) -> StoreResult<()> {
        self.txn(async |c| track_in(c, user_id, users).await)
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
        self.block(async {
            let users: Vec<String> = sqlx::query_scalar(
                "SELECT DISTINCT k.user_id FROM key_changes k WHERE k.position > $2 \
                 AND k.position <= $3 AND (k.user_id = $1 OR EXISTS (SELECT 1 FROM \
                 tracked_users t WHERE t.user_id = $1 AND t.tracked = k.user_id)) \
                 ORDER BY k.user_id",
            )
            .bind(user_id.as_str())
            .bind(to_i64(from))
            .bind(to_i64(to))
            .fetch_all(&self.pool)
            .await?;
            users.iter().map(|u| parse_user(u)).collect()
        })
    }

    fn add_remote_follower(&self, server: &ServerName, users: &[UserId]) -> StoreResult<()> {
        if users.is_empty() {
            return Ok(());
        }
        let users: Vec<&str> = users.iter().map(UserId::as_str).collect();
        // Most queries come from servers already remembered: a read, no write transaction.
        let known: i64 = self.block(async {
            Ok(sqlx::query_scalar(
                "SELECT count(*) FROM remote_followers \
                 WHERE user_id = ANY($1::text[]) AND server_name = $2",
            )
            .bind(&users)
            .bind(server.as_str())
            .fetch_one(&self.pool)
            .await?)
        })?;
        if to_u64(known)? as usize == users.len() {
            return Ok(());
        }
        self.txn(async |c| {
            // Each new (user, server) pair, for users followed by fewer than the cap.
            sqlx::query(
                "INSERT INTO remote_followers (user_id, server_name) \
                 SELECT u, $2 FROM UNNEST($1::text[]) u \
                 WHERE (SELECT count(*) FROM (SELECT 1 FROM remote_followers f \
                        WHERE f.user_id = u LIMIT $3) capped) < $3 \
                 ON CONFLICT DO NOTHING",
            )
            .bind(&users)
            .bind(server.as_str())
            .bind(to_i64(MAX_REMOTE_FOLLOWERS as u64))
            .execute(&mut *c)
            .await?;
            Ok(())
        })
    }

    fn remote_followers(&self, user_id: &UserId) -> StoreResult<Vec<ServerName>> {
        self.block(async {
            let names: Vec<String> = sqlx::query_scalar(
                "SELECT server_name FROM remote_followers WHERE user_id = $1 ORDER BY server_name",
            )
            .bind(user_id.as_str())
            .fetch_all(&self.pool)
            .await?;
            names
                .iter()
                .map(|n| ServerName::parse(n).map_err(StoreError::corrupt("server name")))
                .collect()
        })
    }
}
