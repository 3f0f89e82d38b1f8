//! The composition root: [`AppState`] is assembled here and only here, in `main` (or a
//! test), from the configuration, the store and the federation client, and handed to the
//! router. Services below it get the narrow context they need, never the state itself.

use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::config::ServerConfig;
use crate::error::AppError;
use crate::metrics::Metrics;
use crate::portable::federation::{Federation, NoFederation};
use crate::portable::service::Portable;
use crate::ratelimit::RateLimiter;
use crate::remote_keys::RemoteKeys;
use crate::server_key::{ServerKey, ServerSigner};
use crate::store::{Db, Store, StoreResult};
use crate::uia::UiaSessions;

pub use crate::clock::now_ms;
pub use crate::server_key::ServerKeyError as StateError;

/// Per-purpose rate limiters.
#[derive(Debug)]
pub struct Limiters {
    pub register_per_ip: RateLimiter,
    pub login_per_ip: RateLimiter,
    pub login_per_account: RateLimiter,
    pub challenge_per_ip: RateLimiter,
    /// Every write (not GET, HEAD or OPTIONS) under `/_matrix/client` and `/_roam/v1`, per
    /// client address; applied by the router to all of them.
    pub write_per_ip: RateLimiter,
    /// Password checks through user-interactive authentication, per client address; the
    /// router applies it to the routes that run them, and a UIA stage may call it too.
    pub uia_per_ip: RateLimiter,
}

#[derive(Debug)]
struct Inner {
    config: ServerConfig,
    db: Db,
    signer: Arc<ServerSigner>,
    uia: UiaSessions,
    limiters: Limiters,
    portable: Portable,
    metrics: Arc<Metrics>,
    request_permits: Arc<Semaphore>,
    remote_keys: RemoteKeys,
    /// Bumped after every write (here, or announced by another node sharing the store), so
    /// `/sync` long-polls look again.
    sync_wake: Arc<tokio::sync::watch::Sender<u64>>,
}

/// Cheap to clone: everything lives behind one `Arc`.
#[derive(Debug, Clone)]
pub struct AppState(Arc<Inner>);

impl AppState {
    /// Loads the server key (creating it on first start) and assembles the state.
    pub fn new(config: ServerConfig, store: Arc<dyn Store>) -> Result<Self, StateError> {
        Self::with_federation(config, store, Arc::new(NoFederation))
    }

    /// [`AppState::new`] with the client used to reach other homeservers.
    pub fn with_federation(
        config: ServerConfig,
        store: Arc<dyn Store>,
        federation: Arc<dyn Federation>,
    ) -> Result<Self, StateError> {
        let key = ServerKey::load_or_create(store.as_ref())?;
        let signer = Arc::new(ServerSigner::new(&config, key));
        let db = Db::new(store);
        let metrics = Arc::new(Metrics::default());
        let remote_keys = RemoteKeys::new(
            Arc::clone(&federation),
            signer.key().clone(),
            config.server_name.clone(),
        );
        let portable = Portable::new(
            &config,
            db.clone(),
            Arc::clone(&signer),
            Arc::clone(&metrics),
            federation,
        );
        let limits = config.rate_limits;
        let uia = UiaSessions::for_store(db.store());
        let limiter = |limit, name| RateLimiter::for_store(limit, name, &db);
        let limiters = Limiters {
            register_per_ip: limiter(limits.register_per_ip, "register_per_ip"),
            login_per_ip: limiter(limits.login_per_ip, "login_per_ip"),
            login_per_account: limiter(limits.login_per_account, "login_per_account"),
            challenge_per_ip: limiter(limits.challenge_per_ip, "challenge_per_ip"),
            write_per_ip: limiter(limits.write_per_ip, "write_per_ip"),
            uia_per_ip: limiter(limits.uia_per_ip, "uia_per_ip"),
        };
        // Another node's write wakes this node's `/sync` long-polls too.
        let sync_wake = Arc::new(tokio::sync::watch::Sender::new(0u64));
        let wake = Arc::clone(&sync_wake);
        db.store().on_remote_writes(Arc::new(move || {
            wake.send_modify(|n| *n = n.wrapping_add(1))
        }));
        Ok(Self(Arc::new(Inner {
            limiters,
            request_permits: Arc::new(Semaphore::new(
                config
                    .edge
                    .max_concurrent_requests
                    .clamp(1, Semaphore::MAX_PERMITS),
            )),
            config,
            db,
            signer,
            uia,
            portable,
            metrics,
            sync_wake,
            remote_keys,
        })))
    }

    pub fn config(&self) -> &ServerConfig {
        &self.0.config
    }

    pub fn server_key(&self) -> &ServerKey {
        self.0.signer.key()
    }

    /// The server's name, key and key-document validity: what it signs with.
    pub fn signer(&self) -> &ServerSigner {
        &self.0.signer
    }

    pub fn uia(&self) -> &UiaSessions {
        &self.0.uia
    }

    /// Prometheus counters.
    pub fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }

    /// The portable-account service: bundles, ops, binding, migration, key login.
    pub fn portable(&self) -> &Portable {
        &self.0.portable
    }

    pub fn limiters(&self) -> &Limiters {
        &self.0.limiters
    }

    /// One permit per request being handled (`edge.max_concurrent_requests` in all).
    /// Device keys and to-device messages across servers.
    pub fn remote_keys(&self) -> &RemoteKeys {
        &self.0.remote_keys
    }

    /// Wakes `/sync` long-polls: something was written. Those of this process at once;
    /// those of other nodes sharing the store through the store's announcement.
    pub fn wake_sync(&self) {
        self.0.sync_wake.send_modify(|n| *n = n.wrapping_add(1));
        self.0.db.store().announce_write();
    }

    /// What a `/sync` long-poll waits on (see [`AppState::wake_sync`]).
    pub fn sync_wakes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.0.sync_wake.subscribe()
    }

    pub fn request_permits(&self) -> &Arc<Semaphore> {
        &self.0.request_permits
    }

    /// The store, for synchronous callers (the admin CLI, tests).
    pub fn store(&self) -> &Arc<dyn Store> {
        self.0.db.store()
    }

    /// Runs one store call on the blocking pool (see [`Db::run`]), failing as an
    /// [`AppError`].
    pub async fn db<T, F>(&self, f: F) -> Result<T, AppError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Store) -> StoreResult<T> + Send + 'static,
    {
        Ok(self.0.db.run(f).await?)
    }
}
