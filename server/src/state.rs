//! Shared state of a running server, built once in `main` (or a test) and passed to the router.

use std::sync::Arc;

use ed25519_dalek::SigningKey;
use rand_core::OsRng;
use roam_identity_core::{KeyId, Millis};

use crate::config::ServerConfig;
use crate::error::AppError;
use crate::ratelimit::RateLimiter;
use crate::secrets;
use crate::store::{OldServerKey, ServerKeyRecord, Store, StoreError, StoreResult};
use crate::uia::UiaSessions;

/// The server's signing key with its ID.
#[derive(Debug, Clone)]
pub struct ServerKey {
    pub key_id: KeyId,
    pub signing_key: SigningKey,
    pub old: Vec<OldServerKey>,
}

/// Why the state could not be built.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored server key version {0:?} is not a valid key ID")]
    BadKeyVersion(String),
}

/// Per-purpose rate limiters.
#[derive(Debug)]
pub struct Limiters {
    pub register_per_ip: RateLimiter,
    pub login_per_ip: RateLimiter,
    pub login_per_account: RateLimiter,
    pub challenge_per_ip: RateLimiter,
}

#[derive(Debug)]
struct Inner {
    config: ServerConfig,
    store: Arc<dyn Store>,
    server_key: ServerKey,
    uia: UiaSessions,
    limiters: Limiters,
    portable: crate::portable::PortableState,
    metrics: crate::metrics::Metrics,
}

/// Cheap to clone: everything lives behind one `Arc`.
#[derive(Debug, Clone)]
pub struct AppState(Arc<Inner>);

impl AppState {
    /// Loads the server key (creating it on first start) and assembles the state.
    pub fn new(config: ServerConfig, store: Arc<dyn Store>) -> Result<Self, StateError> {
        Self::with_federation(
            config,
            store,
            Arc::new(crate::portable::federation::NoFederation),
        )
    }

    /// [`AppState::new`] with the client used to reach other homeservers.
    pub fn with_federation(
        config: ServerConfig,
        store: Arc<dyn Store>,
        federation: Arc<dyn crate::portable::federation::Federation>,
    ) -> Result<Self, StateError> {
        let candidate = ServerKeyRecord {
            version: format!("a_{}", secrets::new_opaque_id(4)),
            seed: SigningKey::generate(&mut OsRng).to_bytes(),
            created_at: now_ms(),
        };
        let record = store.server_key_or_insert(candidate)?;
        let key_id = KeyId::ed25519(&record.version)
            .map_err(|_| StateError::BadKeyVersion(record.version.clone()))?;
        let server_key = ServerKey {
            key_id,
            signing_key: SigningKey::from_bytes(&record.seed),
            old: store.old_server_keys()?,
        };
        let limits = config.rate_limits;
        let op_limits = config.op_limits;
        Ok(Self(Arc::new(Inner {
            limiters: Limiters {
                register_per_ip: RateLimiter::new(limits.register_per_ip),
                login_per_ip: RateLimiter::new(limits.login_per_ip),
                login_per_account: RateLimiter::new(limits.login_per_account),
                challenge_per_ip: RateLimiter::new(limits.challenge_per_ip),
            },
            config,
            store,
            server_key,
            uia: UiaSessions::default(),
            portable: crate::portable::PortableState::new(op_limits, federation),
            metrics: crate::metrics::Metrics::default(),
        })))
    }

    pub fn config(&self) -> &ServerConfig {
        &self.0.config
    }

    pub fn server_key(&self) -> &ServerKey {
        &self.0.server_key
    }

    pub fn uia(&self) -> &UiaSessions {
        &self.0.uia
    }

    /// Prometheus counters.
    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.0.metrics
    }

    /// Portable-account state: login challenges, op limits, federation, per-DID locks.
    pub fn portable(&self) -> &crate::portable::PortableState {
        &self.0.portable
    }

    pub fn limiters(&self) -> &Limiters {
        &self.0.limiters
    }

    /// The store, for synchronous callers (the admin CLI, tests).
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.0.store
    }

    /// Runs one store call on the blocking pool: redb is synchronous and a commit waits for
    /// the disk, which must not stall the async workers.
    pub async fn db<T, F>(&self, f: F) -> Result<T, AppError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Store) -> StoreResult<T> + Send + 'static,
    {
        let store = Arc::clone(&self.0.store);
        tokio::task::spawn_blocking(move || f(store.as_ref()))
            .await
            .map_err(|e| AppError::Internal(format!("store task failed: {e}")))?
            .map_err(AppError::from)
    }
}

/// Wall-clock milliseconds since the Unix epoch.
pub fn now_ms() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or(0)
}
