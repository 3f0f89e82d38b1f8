//! Short-lived state several nodes share, on PostgreSQL (`shared_state`): UIA sessions and
//! key-login challenges. Each call is one serializable transaction, so caps hold across
//! nodes and a single-use entry is taken by one node only.

use roam_identity_core::Millis;
use serde_json::Value;
use sqlx::PgConnection;

use super::error::StoreResult;
use super::pg_database::{to_i64, to_u64};
use super::records::{SharedCaps, SharedEntry};
use super::redb_database::{from_json, to_json};

/// Deletes expired entries (of every kind).
async fn purge(c: &mut PgConnection, now: Millis) -> StoreResult<()> {
    sqlx::query("DELETE FROM shared_state WHERE expires_at <= $1")
        .bind(to_i64(now))
        .execute(&mut *c)
        .await?;
    Ok(())
}

pub(super) async fn put(c: &mut PgConnection, e: &SharedEntry) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO shared_state (kind, id, value, expires_at, owner, client) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (kind, id) DO UPDATE SET \
         value = excluded.value, expires_at = excluded.expires_at, owner = excluded.owner, \
         client = excluded.client",
    )
    .bind(e.kind)
    .bind(&e.id)
    .bind(to_json(&e.value)?)
    .bind(to_i64(e.expires_at))
    .bind(&e.owner)
    .bind(&e.client)
    .execute(&mut *c)
    .await?;
    Ok(())
}

pub(super) async fn insert_capped(
    c: &mut PgConnection,
    e: &SharedEntry,
    caps: SharedCaps,
    now: Millis,
) -> StoreResult<bool> {
    purge(c, now).await?;
    let count = async |c: &mut PgConnection, sql: &str| -> StoreResult<usize> {
        let n: i64 = sqlx::query_scalar(sql)
            .bind(e.kind)
            .bind(&e.client)
            .bind(&e.owner)
            .fetch_one(&mut *c)
            .await?;
        Ok(usize::try_from(to_u64(n)?).unwrap_or(usize::MAX))
    };
    let mine = count(
        c,
        "SELECT count(*) FROM shared_state WHERE kind = $1 AND client = $2 AND owner = $3",
    )
    .await?;
    let from_client = count(
        c,
        "SELECT count(*) FROM shared_state WHERE kind = $1 AND client = $2 AND $3 = $3",
    )
    .await?;
    let total = count(
        c,
        "SELECT count(*) FROM shared_state WHERE kind = $1 AND $2 = $2 AND $3 = $3",
    )
    .await?;
    if mine >= caps.per_owner_client {
        // Retire this (owner, client) pair's oldest entry.
        sqlx::query(
            "DELETE FROM shared_state WHERE (kind, id) = (SELECT kind, id FROM shared_state \
             WHERE kind = $1 AND client = $2 AND owner = $3 ORDER BY expires_at, id LIMIT 1)",
        )
        .bind(e.kind)
        .bind(&e.client)
        .bind(&e.owner)
        .execute(&mut *c)
        .await?;
    } else if from_client >= caps.per_client || total >= caps.total {
        return Ok(false);
    }
    put(c, e).await?;
    Ok(true)
}

pub(super) async fn get(
    c: &mut PgConnection,
    kind: &str,
    id: &str,
    now: Millis,
) -> StoreResult<Option<Value>> {
    let text: Option<String> = sqlx::query_scalar(
        "SELECT value FROM shared_state WHERE kind = $1 AND id = $2 AND expires_at > $3",
    )
    .bind(kind)
    .bind(id)
    .bind(to_i64(now))
    .fetch_optional(&mut *c)
    .await?;
    text.map(|t| from_json(&t)).transpose()
}

pub(super) async fn take(
    c: &mut PgConnection,
    kind: &str,
    id: &str,
    now: Millis,
) -> StoreResult<Option<Value>> {
    let row: Option<(String, i64)> = sqlx::query_as(
        "DELETE FROM shared_state WHERE kind = $1 AND id = $2 RETURNING value, expires_at",
    )
    .bind(kind)
    .bind(id)
    .fetch_optional(&mut *c)
    .await?;
    match row {
        Some((text, expires_at)) if to_u64(expires_at)? > now => Ok(Some(from_json(&text)?)),
        _ => Ok(None),
    }
}
