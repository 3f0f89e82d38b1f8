//! The store as async callers use it: one shared handle whose calls run on the blocking
//! pool.

use std::sync::Arc;

use super::accounts::Store;
use super::error::{StoreError, StoreResult};

/// A shared store for async callers: each call runs on the blocking pool, because redb is
/// synchronous and a commit waits for the disk, which must not stall the async workers.
#[derive(Debug, Clone)]
pub struct Db(Arc<dyn Store>);

impl Db {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self(store)
    }

    /// The store itself, for synchronous callers (the admin CLI, tests).
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.0
    }

    /// Runs one store call on the blocking pool.
    pub async fn run<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Store) -> StoreResult<T> + Send + 'static,
    {
        let store = Arc::clone(&self.0);
        tokio::task::spawn_blocking(move || f(store.as_ref()))
            .await
            .map_err(|e| StoreError::Backend {
                context: "store task",
                source: Box::new(e),
            })?
    }
}
