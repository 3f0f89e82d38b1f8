//! The verify-on-write answers on PostgreSQL (migration 0011): the same semantics as the
//! redb tables `served`, `served_meta` and `served_due` (`redb_logs.rs`). Every node reads
//! the answers another node stored; the background re-issue of any node picks up due DIDs.

use roam_identity_core::{Did, OpHash};
use sqlx::{PgConnection, Row};

use super::error::{StoreError, StoreResult};
use super::logs::{AccountRef, LogCommit, Served, ServedKind, ServedViews};
use super::pg_database::{to_i64, to_u64};

/// Replaces the stored answers of the commit's DID (or drops them and makes it due now),
/// inside the commit's transaction.
pub(super) async fn put_served(c: &mut PgConnection, commit: &LogCommit) -> StoreResult<()> {
    let did = commit.did.as_str();
    let Some(views) = &commit.served else {
        sqlx::query("DELETE FROM served_meta WHERE did = $1")
            .bind(did)
            .execute(&mut *c)
            .await?;
        sqlx::query("DELETE FROM served WHERE did = $1")
            .bind(did)
            .execute(&mut *c)
            .await?;
        return set_due(c, did, 0).await;
    };
    let ServedViews {
        generation,
        fresh_until,
        due_at,
        bodies,
    } = views;
    sqlx::query(
        "INSERT INTO served_meta (did, head, generation, fresh_until, due_at, deactivated) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (did) DO UPDATE SET head = excluded.head, \
         generation = excluded.generation, fresh_until = excluded.fresh_until, \
         due_at = excluded.due_at, deactivated = excluded.deactivated",
    )
    .bind(did)
    .bind(commit.summary.head.to_multibase())
    .bind(to_i64(*generation))
    .bind(to_i64(*fresh_until))
    .bind(to_i64(*due_at))
    .bind(commit.summary.deactivated)
    .execute(&mut *c)
    .await?;
    let kinds: Vec<&str> = ServedKind::ALL.iter().map(|k| k.as_str()).collect();
    let bodies: Vec<&[u8]> = bodies.iter().map(Vec::as_slice).collect();
    sqlx::query(
        "INSERT INTO served (did, kind, body) SELECT $1, k, b FROM unnest($2::text[], \
         $3::bytea[]) AS t(k, b) ON CONFLICT (did, kind) DO UPDATE SET body = excluded.body",
    )
    .bind(did)
    .bind(&kinds)
    .bind(&bodies)
    .execute(&mut *c)
    .await?;
    set_due(c, did, *due_at).await
}

async fn set_due(c: &mut PgConnection, did: &str, due_at: u64) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO served_due (did, due_at) VALUES ($1, $2) \
         ON CONFLICT (did) DO UPDATE SET due_at = excluded.due_at",
    )
    .bind(did)
    .bind(to_i64(due_at))
    .execute(&mut *c)
    .await?;
    Ok(())
}

/// The stored answers of kind `kind` for each account, in order, in the caller's
/// transaction.
pub(super) async fn served_in(
    c: &mut PgConnection,
    accounts: &[AccountRef],
    kind: ServedKind,
) -> StoreResult<Vec<Option<Served>>> {
    let mut out = Vec::with_capacity(accounts.len());
    for account in accounts {
        let row = match account {
            AccountRef::Did(d) => {
                sqlx::query(
                    "SELECT m.did, m.head, m.generation, m.fresh_until, m.deactivated, s.body \
                     FROM served_meta m LEFT JOIN served s ON s.did = m.did AND s.kind = $2 \
                     WHERE m.did = $1",
                )
                .bind(d.as_str())
                .bind(kind.as_str())
                .fetch_optional(&mut *c)
                .await?
            }
            AccountRef::User(u) => {
                sqlx::query(
                    "SELECT m.did, m.head, m.generation, m.fresh_until, m.deactivated, s.body \
                     FROM user_dids u JOIN served_meta m ON m.did = u.did \
                     LEFT JOIN served s ON s.did = m.did AND s.kind = $2 WHERE u.user_id = $1",
                )
                .bind(u.as_str())
                .bind(kind.as_str())
                .fetch_optional(&mut *c)
                .await?
            }
        };
        out.push(row.as_ref().map(served_from_row).transpose()?);
    }
    Ok(out)
}

fn served_from_row(row: &sqlx::postgres::PgRow) -> StoreResult<Served> {
    let did: String = row.try_get(0)?;
    let head: String = row.try_get(1)?;
    let body: Option<Vec<u8>> = row.try_get(5)?;
    Ok(Served {
        did: Did::parse(&did).map_err(StoreError::corrupt("DID"))?,
        head: OpHash::parse(&head).map_err(StoreError::corrupt("served head"))?,
        generation: to_u64(row.try_get(2)?)?,
        fresh_until: to_u64(row.try_get(3)?)?,
        deactivated: row.try_get(4)?,
        body: body.ok_or(StoreError::Dangling {
            what: "served answer",
        })?,
    })
}

/// Held DIDs due at `now`, most overdue first.
pub(super) async fn due_in(c: &mut PgConnection, now: u64, limit: usize) -> StoreResult<Vec<Did>> {
    let dids: Vec<String> = sqlx::query_scalar(
        "SELECT did FROM served_due WHERE due_at <= $1 ORDER BY due_at, did LIMIT $2",
    )
    .bind(to_i64(now))
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(&mut *c)
    .await?;
    dids.iter()
        .map(|d| Did::parse(d).map_err(StoreError::corrupt("DID")))
        .collect()
}

/// Makes every held DID due now unless the answers were made with `key_id`.
pub(super) async fn mark_due_in(c: &mut PgConnection, key_id: &str) -> StoreResult<u64> {
    let changed = sqlx::query(
        "INSERT INTO store_meta (name, value) VALUES ('served_key', $1) ON CONFLICT (name) \
         DO UPDATE SET value = excluded.value WHERE store_meta.value <> excluded.value",
    )
    .bind(key_id)
    .execute(&mut *c)
    .await?
    .rows_affected();
    if changed == 0 {
        return Ok(0);
    }
    let marked = sqlx::query(
        "INSERT INTO served_due (did, due_at) SELECT did, 0 FROM log_heads \
         ON CONFLICT (did) DO UPDATE SET due_at = 0",
    )
    .execute(&mut *c)
    .await?
    .rows_affected();
    Ok(marked)
}
