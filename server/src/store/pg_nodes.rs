//! What several nodes on one PostgreSQL database share beyond stored rows: rate-limit
//! buckets (migration 0012: one row per bucket, taken from by `roam_take_token` under a row
//! lock, expired rows deleted now and then) and write announcements for `/sync` long-polls
//! (`NOTIFY roam_writes` after a write, `LISTEN roam_writes` on every node).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};

use super::error::StoreResult;

/// The channel write announcements travel on.
const CHANNEL: &str = "roam_writes";
/// Every this many token takes, a node deletes the buckets that are full again.
const CLEANUP_EVERY: u64 = 1024;
/// How long after a bucket is full again its row may go (so a row just created, full, is
/// never deleted under the node about to take from it).
const CLEANUP_MARGIN_MS: i64 = 60_000;
/// The slowest refill a shared bucket can express (one token in about 30 years).
const MIN_RATE: f64 = 1e-9;

/// Takes a token from the shared bucket (`Err(ms)`: wait that long); every
/// [`CLEANUP_EVERY`]th take also deletes the expired buckets.
pub(super) async fn take_token(
    pool: &PgPool,
    takes: &AtomicU64,
    limiter: &str,
    key: &str,
    per_second: f64,
    burst: u32,
) -> StoreResult<Result<(), u64>> {
    let rate = if per_second.is_finite() {
        per_second.max(MIN_RATE)
    } else {
        f64::from(u32::MAX)
    };
    let wait: i64 = sqlx::query_scalar("SELECT roam_take_token($1, $2, $3, $4)")
        .bind(limiter)
        .bind(key)
        .bind(rate)
        .bind(f64::from(burst))
        .fetch_one(pool)
        .await?;
    if takes
        .fetch_add(1, Ordering::Relaxed)
        .is_multiple_of(CLEANUP_EVERY)
    {
        sqlx::query(
            "DELETE FROM rate_buckets WHERE full_at < \
             (extract(epoch FROM clock_timestamp()) * 1000)::bigint - $1",
        )
        .bind(CLEANUP_MARGIN_MS)
        .execute(pool)
        .await?;
    }
    Ok(if wait <= 0 {
        Ok(())
    } else {
        Err(wait.unsigned_abs())
    })
}

/// Sends one announcement per burst of writes: while a NOTIFY is on its way, further writes
/// only mark that another is needed. Ends when the store (the sender) is dropped.
pub(super) async fn announcer(
    pool: PgPool,
    mut writes: tokio::sync::watch::Receiver<u64>,
    node: String,
) {
    while writes.changed().await.is_ok() {
        writes.borrow_and_update();
        let sent = sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(&node)
            .execute(&pool)
            .await;
        if let Err(e) = sent {
            // The other nodes still see the write at their next periodic re-check.
            tracing::warn!(error = %e, "announcing a write to the other nodes failed");
        }
    }
}

/// Calls `wake` for every write another node announces, and after each reconnection (an
/// announcement may have been missed meanwhile). Uses a connection of its own, outside the
/// pool the requests use. Runs until the store's runtime stops.
pub(super) async fn listener(
    options: PgConnectOptions,
    node: String,
    wake: Arc<dyn Fn() + Send + Sync>,
) {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_lazy_with(options);
    loop {
        if let Err(e) = listen(&pool, &node, wake.as_ref()).await {
            tracing::warn!(error = %e, "listening for other nodes' writes failed; retrying");
            wake();
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

async fn listen(pool: &PgPool, node: &str, wake: &(dyn Fn() + Send + Sync)) -> StoreResult<()> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    loop {
        match listener.try_recv().await? {
            Some(n) if n.payload() == node => {}
            // Another node's write, or a lost connection (reconnected on the next call).
            _ => wake(),
        }
    }
}
