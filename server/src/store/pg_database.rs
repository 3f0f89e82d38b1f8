//! The PostgreSQL database both halves of the store share when `database_url` names one:
//! the connection pool, its own small runtime, versioned migrations, transactions (all
//! serializable, retried on a serialization failure), error conversions, and the account
//! insert that plain registration and registration with a log both run.
//!
//! The store traits are synchronous (redb is); a call here enters the pool's runtime and
//! waits for the query on the calling thread, which is a blocking-pool thread when it comes
//! through [`super::Db`], so async workers never wait on the database.

use std::borrow::Cow;
use std::future::Future;
use std::time::Duration;

use roam_identity_core::UserId;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool, Row};

use super::error::{StoreError, StoreResult};
use super::records::{NewAccount, NewSession};
use super::redb_database::token_key;

/// The versioned schema, applied in order on start (recorded in `_sqlx_migrations`).
/// A new table is a new file here; existing files never change.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "initial", include_str!("pg/0001_initial.sql")),
    (2, "shared state", include_str!("pg/0002_shared_state.sql")),
    (10, "device plane", include_str!("pg/0010_device_plane.sql")),
    (11, "served answers", include_str!("pg/0011_served.sql")),
    (12, "node state", include_str!("pg/0012_node_state.sql")),
    (
        20,
        "carried device planes",
        include_str!("pg/0020_carry.sql"),
    ),
    (
        21,
        "remote followers",
        include_str!("pg/0021_remote_followers.sql"),
    ),
];

/// How many transaction attempts a serialization failure may cost before giving up.
const MAX_ATTEMPTS: usize = 20;

/// The homeserver store on PostgreSQL: a connection pool shared by every node.
#[derive(Debug)]
pub struct PgStore {
    pub(super) pool: PgPool,
    /// How to reach the database (the write listener opens its own connection).
    options: PgConnectOptions,
    /// This node's name in write announcements (random), so it ignores its own.
    node: String,
    /// Bumped by [`PgStore::announce`]; the announcer task sends a NOTIFY after each bump.
    writes: tokio::sync::watch::Sender<u64>,
    /// Token takes so far (every so many, expired buckets are deleted).
    pub(super) takes: std::sync::atomic::AtomicU64,
    runtime: OwnedRuntime,
}

/// The pool's runtime. It may be dropped on an async worker, where a blocking shutdown
/// panics, so it shuts down in the background.
#[derive(Debug)]
struct OwnedRuntime(Option<tokio::runtime::Runtime>);

impl Drop for OwnedRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// How busy the connection pool is, for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    pub size: u32,
    pub idle: u32,
    pub max: u32,
}

fn backend(context: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |e| StoreError::Backend {
        context,
        source: Box::new(e),
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        backend("postgres")(e)
    }
}

/// True for errors a retried transaction can get past (serialization failure, deadlock).
fn retryable(e: &StoreError) -> bool {
    let StoreError::Backend { source, .. } = e else {
        return false;
    };
    let Some(sqlx::Error::Database(db)) = source.downcast_ref::<sqlx::Error>() else {
        return false;
    };
    matches!(db.code().as_deref(), Some("40001" | "40P01"))
}

fn runtime() -> StoreResult<OwnedRuntime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("roam-pg")
        .enable_all()
        .build()
        .map(|rt| OwnedRuntime(Some(rt)))
        .map_err(|e| StoreError::Backend {
            context: "starting the database runtime",
            source: Box::new(e),
        })
}

/// Runs `fut` on the calling thread with `rt` entered (its reactor and timers serve the
/// pool's sockets). Unlike `Runtime::block_on` this also works on a thread of another
/// runtime (a sync store call from async code, as redb's calls are too).
fn block_in<T>(rt: &OwnedRuntime, fut: impl Future<Output = T>) -> T {
    let _guard = rt.0.as_ref().map(|rt| rt.enter());
    futures::executor::block_on(fut)
}

fn options(url: &str) -> StoreResult<PgConnectOptions> {
    url.parse::<PgConnectOptions>()
        .map_err(backend("parsing database_url"))
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://…`) with a pool of at most
    /// `max_connections`, and applies the migrations this build knows.
    pub fn connect(url: &str, max_connections: u32) -> StoreResult<Self> {
        let opts = options(url)?;
        let runtime = runtime()?;
        let pool = block_in(&runtime, async {
            let pool = PgPoolOptions::new()
                .max_connections(max_connections.max(1))
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(opts.clone())
                .await
                .map_err(backend("connecting to PostgreSQL"))?;
            migrator()
                .run(&pool)
                .await
                .map_err(|e| StoreError::Backend {
                    context: "applying schema migrations",
                    source: Box::new(e),
                })?;
            Ok::<_, StoreError>(pool)
        })?;
        let mut id = [0u8; 8];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut id);
        let node = hex::encode(id);
        let (writes, rx) = tokio::sync::watch::channel(0);
        if let Some(rt) = &runtime.0 {
            rt.spawn(super::pg_nodes::announcer(pool.clone(), rx, node.clone()));
        }
        Ok(Self {
            pool,
            options: opts,
            node,
            writes,
            takes: std::sync::atomic::AtomicU64::new(0),
            runtime,
        })
    }

    /// Creates the database `name` on the server `url` points at (for tests and for
    /// `roam admin migrate-store`); `Ok(false)` when it already exists.
    pub fn create_database(url: &str, name: &str) -> StoreResult<bool> {
        let valid = !name.is_empty()
            && name.len() <= 63
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !valid {
            return Err(StoreError::NotFound("valid database name"));
        }
        block_in(&runtime()?, async {
            let mut conn = options(url)?
                .connect()
                .await
                .map_err(backend("connecting to PostgreSQL"))?;
            let exists = sqlx::query("SELECT 1 FROM pg_database WHERE datname = $1")
                .bind(name)
                .fetch_optional(&mut conn)
                .await?
                .is_some();
            if !exists {
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&mut conn)
                    .await?;
            }
            conn.close().await?;
            Ok(!exists)
        })
    }

    /// Creates a new, empty database on the server `url` names, called `prefix` plus this
    /// process ID, a counter and the clock's nanoseconds (so parallel tests and runs never
    /// share one), and returns its URL. For tests and benchmarks.
    pub fn create_fresh_database(url: &str, prefix: &str) -> StoreResult<String> {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!("{prefix}_{}_{n}_{nanos}", std::process::id());
        Self::create_database(url, &name)?;
        Self::url_with_database(url, &name)
    }

    /// `url` with its database name replaced by `name` (same server, user and options).
    pub fn url_with_database(url: &str, name: &str) -> StoreResult<String> {
        let mut parsed = url::Url::parse(url).map_err(|e| StoreError::Backend {
            context: "parsing database_url",
            source: Box::new(e),
        })?;
        parsed.set_path(&format!("/{name}"));
        Ok(parsed.into())
    }

    /// `url` without its password, for messages and logs.
    pub fn redacted(url: &str) -> String {
        match url::Url::parse(url) {
            Ok(mut u) => {
                if u.password().is_some() {
                    let _ = u.set_password(Some("***"));
                }
                u.into()
            }
            Err(_) => "(unparsable database_url)".into(),
        }
    }

    /// Runs `fut` to completion on the calling thread, with the pool's runtime entered.
    pub(super) fn block<T>(&self, fut: impl Future<Output = StoreResult<T>>) -> StoreResult<T> {
        block_in(&self.runtime, fut)
    }

    /// Runs `f` in one serializable transaction and commits it before returning; a
    /// serialization failure (a concurrent writer touched the same rows) reruns `f` from a
    /// fresh snapshot. Dropping an uncommitted transaction rolls it back.
    pub(super) fn txn<T>(
        &self,
        mut f: impl AsyncFnMut(&mut PgConnection) -> StoreResult<T>,
    ) -> StoreResult<T> {
        self.block(async {
            let mut attempt = 0;
            loop {
                attempt += 1;
                let result = async {
                    let mut tx = self.pool.begin().await?;
                    sqlx::query("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
                        .execute(&mut *tx)
                        .await?;
                    let out = f(&mut *tx).await?;
                    tx.commit().await?;
                    Ok(out)
                }
                .await;
                match result {
                    Err(e) if attempt < MAX_ATTEMPTS && retryable(&e) => {
                        tokio::time::sleep(Duration::from_millis(attempt as u64)).await;
                    }
                    other => return other,
                }
            }
        })
    }

    /// Tells the other nodes a write happened (returns at once; the NOTIFY goes out on the
    /// store's runtime, one per burst of writes).
    pub fn announce(&self) {
        self.writes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Calls `wake` for every write another node announces, for as long as the store lives.
    pub fn listen_for_writes(&self, wake: std::sync::Arc<dyn Fn() + Send + Sync>) {
        if let Some(rt) = &self.runtime.0 {
            rt.spawn(super::pg_nodes::listener(
                self.options.clone(),
                self.node.clone(),
                wake,
            ));
        }
    }

    /// Checks that the database answers (`/health`).
    pub fn ping(&self) -> StoreResult<()> {
        self.block(async {
            sqlx::query("SELECT 1").execute(&self.pool).await?;
            Ok(())
        })
    }

    pub fn pool_stats(&self) -> PoolStats {
        PoolStats {
            size: self.pool.size(),
            idle: self.pool.num_idle() as u32,
            max: self.pool.options().get_max_connections(),
        }
    }
}

fn migrator() -> Migrator {
    let migrations = MIGRATIONS
        .iter()
        .map(|(version, description, sql)| {
            Migration::new(
                *version,
                Cow::Borrowed(*description),
                MigrationType::Simple,
                Cow::Borrowed(*sql),
                false,
            )
        })
        .collect::<Vec<_>>();
    Migrator {
        migrations: Cow::Owned(migrations),
        ..Migrator::DEFAULT
    }
}

/// u64 ↔ bigint: values above `i64::MAX` do not occur (times in ms, counters).
pub(super) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(super) fn to_u64(v: i64) -> StoreResult<u64> {
    u64::try_from(v).map_err(StoreError::corrupt("negative counter"))
}

pub(super) fn opt_u64(v: Option<i64>) -> StoreResult<Option<u64>> {
    v.map(to_u64).transpose()
}

/// Inserts a new account (refusing a taken user ID), consumes the registration token and
/// opens the first session, inside the caller's transaction.
pub(super) async fn insert_account(c: &mut PgConnection, new: &NewAccount) -> StoreResult<()> {
    let account = &new.account;
    let inserted = sqlx::query(
        "INSERT INTO accounts (user_id, password_hash, created_at) VALUES ($1, $2, $3) \
         ON CONFLICT (user_id) DO NOTHING",
    )
    .bind(account.user_id.as_str())
    .bind(account.password_hash.as_deref())
    .bind(to_i64(account.created_at))
    .execute(&mut *c)
    .await?
    .rows_affected();
    if inserted == 0 {
        return Err(StoreError::UserInUse(account.user_id.clone()));
    }
    if let Some(token) = new.registration_token.as_deref() {
        let used = sqlx::query(
            "UPDATE registration_tokens SET completed = completed + 1 WHERE hash = $1 \
             AND (uses_allowed IS NULL OR completed < uses_allowed) \
             AND (expiry_time IS NULL OR $2 < expiry_time)",
        )
        .bind(token_key(token))
        .bind(to_i64(account.created_at))
        .execute(&mut *c)
        .await?
        .rows_affected();
        if used == 0 {
            return Err(StoreError::TokenInvalid);
        }
    }
    if let Some(session) = &new.session {
        put_session(c, &account.user_id, session).await?;
    }
    Ok(())
}

/// Deletes the access and refresh tokens named by a device row's `(token_hash,
/// refresh_hash)`, in the caller's transaction.
pub(super) async fn drop_tokens(
    c: &mut PgConnection,
    row: &sqlx::postgres::PgRow,
) -> StoreResult<()> {
    let token: Option<Vec<u8>> = row.try_get(0)?;
    let refresh: Option<Vec<u8>> = row.try_get(1)?;
    sqlx::query("DELETE FROM access_tokens WHERE hash = $1")
        .bind(token)
        .execute(&mut *c)
        .await?;
    sqlx::query("DELETE FROM refresh_tokens WHERE hash = $1")
        .bind(refresh)
        .execute(&mut *c)
        .await?;
    Ok(())
}

/// Inserts or updates a device row and points a fresh token at it, revoking the old one.
pub(super) async fn put_session(
    c: &mut PgConnection,
    user_id: &UserId,
    s: &NewSession,
) -> StoreResult<()> {
    let (u, d) = (user_id.as_str(), s.device_id.as_str());
    let old = sqlx::query(
        "SELECT token_hash, refresh_hash FROM devices WHERE user_id = $1 AND device_id = $2",
    )
    .bind(u)
    .bind(d)
    .fetch_optional(&mut *c)
    .await?;
    if let Some(old) = old {
        drop_tokens(c, &old).await?;
    }
    sqlx::query(
        "INSERT INTO devices (user_id, device_id, display_name, created_at, token_hash, \
         refresh_hash, last_seen_ip, last_seen_ts) VALUES ($1, $2, $3, $4, $5, $6, $7, $4) \
         ON CONFLICT (user_id, device_id) DO UPDATE SET \
         display_name = COALESCE(excluded.display_name, devices.display_name), \
         token_hash = excluded.token_hash, refresh_hash = excluded.refresh_hash, \
         last_seen_ip = excluded.last_seen_ip, last_seen_ts = excluded.last_seen_ts",
    )
    .bind(u)
    .bind(d)
    .bind(s.display_name.as_deref())
    .bind(to_i64(s.now))
    .bind(s.token_hash.as_slice())
    .bind(s.refresh_hash.as_ref().map(|h| h.as_slice()))
    .bind(s.ip.as_deref())
    .execute(&mut *c)
    .await?;
    if let Some(hash) = &s.refresh_hash {
        sqlx::query("INSERT INTO refresh_tokens (hash, user_id, device_id) VALUES ($1, $2, $3)")
            .bind(hash.as_slice())
            .bind(u)
            .bind(d)
            .execute(&mut *c)
            .await?;
    }
    sqlx::query(
        "INSERT INTO access_tokens (hash, user_id, device_id, expires_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(s.token_hash.as_slice())
    .bind(u)
    .bind(d)
    .bind(s.expires_at.map(to_i64))
    .execute(&mut *c)
    .await?;
    Ok(())
}

/// Appends `user` to the key-change stream and returns the new position. The counter row
/// stays locked until commit, so positions become visible in order.
pub(super) async fn bump_key_stream(c: &mut PgConnection, user: &str) -> StoreResult<u64> {
    let next: i64 = sqlx::query_scalar(
        "UPDATE counters SET value = value + 1 WHERE name = 'key_stream' RETURNING value",
    )
    .fetch_one(&mut *c)
    .await?;
    sqlx::query("INSERT INTO key_changes (position, user_id) VALUES ($1, $2)")
        .bind(next)
        .bind(user)
        .execute(&mut *c)
        .await?;
    to_u64(next)
}
