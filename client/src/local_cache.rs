//! Keeping the local resolver cache current after the user's own changes.
//!
//! `roam resolve` answers from a redb cache (roam-resolver's [`Cached`]) while an answer is
//! younger than its TTL, so right after a move, a rotate or a revoked device it would show the
//! account as it was. After such a change the client therefore resolves its own DID again
//! through the same cached resolver with a TTL of zero: the network resolver fetches and
//! verifies the bundle and the log from the servers as for anyone else, and the cache stores
//! the answer by its own rules (verified answers only, never a downgrade, a recovery rotate
//! noted). Nothing the client merely believes about itself is written: no trust-on-write.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use roam_identity_core::{Did, ServerName};
use roam_resolver::{
    CacheError, CachePolicy, CacheStore, Cached, FetchError, NetworkResolver, Resolution,
    ResolveError, ResolveStatus, Resolver, ResolverConfig, SystemClock,
};

/// The cache file inside a cache directory (the one `roam resolve --cache DIR` uses).
pub const CACHE_FILE: &str = "resolver.redb";

/// The cache file of the cache directory `dir`.
pub fn cache_file(dir: &Path) -> PathBuf {
    dir.join(CACHE_FILE)
}

/// Why the cache was not brought up to date.
#[derive(Debug, thiserror::Error)]
pub enum CacheUpdateError {
    /// The cache file could not be created or opened (another `roam` may hold it).
    #[error("cannot open the resolver cache {path}: {source}")]
    Open { path: String, source: CacheError },
    /// The cache directory could not be created.
    #[error("cannot create the resolver cache directory {path}: {source}")]
    CreateDir {
        path: String,
        source: std::io::Error,
    },
    /// The resolver could not be set up.
    #[error("cannot set up the resolver: {0}")]
    Setup(#[from] FetchError),
    /// Resolution failed: the change is not visible (yet) to a resolver.
    #[error("the account does not resolve: {0}")]
    Resolve(#[from] ResolveError),
    /// The answer was not freshly verified, so the cache kept what it had.
    #[error("the resolver answered {status}, not verified ({}); the cache keeps its earlier answer", warnings.join("; "))]
    NotVerified {
        status: &'static str,
        warnings: Vec<String>,
    },
}

/// Resolves `did` online (asking `servers` first) through the cache in `cache_file` with a
/// TTL of zero, so the verified answer replaces what the cache held. Returns that answer.
pub async fn refresh(
    cache_file: &Path,
    config: ResolverConfig,
    did: &Did,
    servers: &[ServerName],
) -> Result<Resolution, CacheUpdateError> {
    let store = open(cache_file)?;
    let clock = Arc::new(SystemClock);
    let network = NetworkResolver::new(config, clock.clone())?;
    let policy = CachePolicy {
        positive_ttl_ms: 0,
        ..CachePolicy::default()
    };
    let resolver = Cached::new(network, store, clock, policy);
    let answer = resolver.resolve_did_via(did, servers).await?;
    if answer.status != ResolveStatus::Verified {
        return Err(CacheUpdateError::NotVerified {
            status: answer.status.as_str(),
            warnings: answer.warnings,
        });
    }
    Ok(answer)
}

fn open(cache_file: &Path) -> Result<CacheStore, CacheUpdateError> {
    if let Some(dir) = cache_file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| CacheUpdateError::CreateDir {
            path: dir.display().to_string(),
            source,
        })?;
    }
    CacheStore::open(cache_file).map_err(|source| CacheUpdateError::Open {
        path: cache_file.display().to_string(),
        source,
    })
}
