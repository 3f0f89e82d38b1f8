//! Resolver configuration: overrides, safety limits, LAN peers and cache lifetimes.
//!
//! Defaults are safe for the open internet (no private addresses, small bodies, short
//! timeouts); tests and private deployments loosen them explicitly.

use std::collections::BTreeMap;
use std::time::Duration;

use roam_identity_core::{Millis, ServerName};
use url::Url;

/// How the network resolver fetches.
#[derive(Debug, Clone)]
pub struct ResolverConfig {
    /// Server name → base URL (`a.test` → `http://127.0.0.1:8081`), bypassing discovery. An
    /// override target is trusted explicitly: it may be a private or loopback address.
    pub overrides: BTreeMap<ServerName, Url>,
    /// Allow fetches to loopback, private, link-local, multicast and unspecified addresses.
    /// Off by default: a resolver that follows names chosen by strangers must not become a
    /// way into the network it runs in (SSRF).
    pub allow_private: bool,
    /// Whole-request timeout (connect, headers and body).
    pub request_timeout: Duration,
    /// TCP/TLS connect timeout.
    pub connect_timeout: Duration,
    /// Largest response body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Most redirects followed per request; every hop is checked again.
    pub max_redirects: usize,
    /// Most requests in flight to one origin (scheme, host, port).
    pub per_origin_concurrency: usize,
    /// LAN peers to ask when the origin cannot be reached (base URLs of resolver nodes).
    /// Listed peers are trusted as fetch targets like overrides; their bundles are not.
    pub lan_peers: Vec<Url>,
    /// Servers to ask for a DID when neither the caller nor earlier answers name one.
    pub did_servers: Vec<ServerName>,
    /// Longest time a fetched server key document is reused, whatever its `valid_until_ts`.
    pub max_key_cache_ms: Millis,
    /// How long a `.well-known/matrix/server` answer is reused.
    pub discovery_ttl_ms: Millis,
    /// Rounds of "follow the log's primary" before giving up (each may reveal a newer move).
    pub max_follow_rounds: usize,
    /// Offline mode: ask no server at all — no discovery, no origin, primary, backup or key
    /// fetch — only LAN peers (listed in [`Self::lan_peers`] or added later, e.g. by mDNS).
    /// The HTTP client itself refuses every other target, redirects included. Answers are
    /// `lan` (or, through [`crate::Cached`], `cached`/`stale`), never `verified`.
    pub offline: bool,
}

/// The warning every offline answer carries first: nobody but the cache and LAN peers was
/// asked, so "cannot be reached" in the explanation means "was not asked".
pub const OFFLINE_WARNING: &str = "offline: no server was asked (the resolver is offline)";

impl Default for ResolverConfig {
    fn default() -> Self {
        Self {
            overrides: BTreeMap::new(),
            allow_private: false,
            request_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            max_body_bytes: 1024 * 1024,
            max_redirects: 3,
            per_origin_concurrency: 8,
            lan_peers: Vec::new(),
            did_servers: Vec::new(),
            max_key_cache_ms: 24 * 3600 * 1000,
            discovery_ttl_ms: 3600 * 1000,
            max_follow_rounds: 4,
            offline: false,
        }
    }
}

impl ResolverConfig {
    /// Adds an override (builder style).
    pub fn with_override(mut self, server: ServerName, base: Url) -> Self {
        self.overrides.insert(server, base);
        self
    }
}

/// How long the cache trusts its answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CachePolicy {
    /// A verified answer is served as `cached` for this long after it was verified.
    pub positive_ttl_ms: Millis,
    /// `not_found` and `unbound` answers are repeated for this long.
    pub negative_ttl_ms: Millis,
}

impl Default for CachePolicy {
    fn default() -> Self {
        Self {
            positive_ttl_ms: 10 * 60 * 1000,
            negative_ttl_ms: 30 * 1000,
        }
    }
}
