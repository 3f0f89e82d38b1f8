//! Roam's resolver: turns `@alice:a.example` or a `did:key` into a verified answer — the
//! account's DID, the key that controls it now, the servers that host it now — and says
//! exactly how fresh that answer is.
//!
//! # The key design choice: evidence, not trust
//!
//! Nothing a server says is believed because of who said it. Every source — the user ID's own
//! domain, the account's current primary, a backup, a cache, a LAN peer — hands over *signed
//! evidence*: account ops signed by the account's keys, attestations signed by servers, key
//! documents. The resolver gathers the evidence from every source it can reach, drops any
//! source whose evidence does not verify (naming it in the warnings), takes the union of the
//! ops, and lets identity-core's fork rules choose the chain: a recovery rotate wins, any
//! other fork is reported as equivocation with both signed ops. Because of that, the same
//! verification code serves the online path, the cache and the LAN path, and the only thing
//! that differs between them is what can be said about *freshness* — which is what
//! [`ResolveStatus`] (`verified`, `cached`, `stale`, `lan`) records and
//! [`Resolution::explanation`] puts into words.
//!
//! One asymmetry is deliberate. Key documents are self-signed, so anyone can mint one "for
//! b.example". Online, attestations are verified only with keys fetched from the attesting
//! server itself ([`keys`]), and a bundle carrying a key document that disagrees with them is
//! refused. Offline, carried key documents are all there is: they are used (and checked
//! against any keys cached earlier), and the answer is labelled `lan`, never `verified`.
//!
//! "Offline" is also a mode you can ask for: [`ResolverConfig::offline`] makes the resolver
//! answer from the cache and LAN peers only, contacting no server at all (`roam resolve
//! --offline`). It is the same LAN path, taken first instead of after a failure.
//!
//! # Code map
//!
//! - [`Resolver`]: the trait; [`NetworkResolver`] ([`network`]) does the network work,
//!   [`Cached`] ([`cache`]) wraps any resolver with a redb cache, TTLs, stale answers and the
//!   never-downgrade rule. [`Resolver::is_offline`] says whether it runs in offline mode.
//! - Offline mode ([`ResolverConfig::offline`]): [`NetworkResolver`] skips discovery, origin,
//!   primary, backup and key fetches and asks LAN peers only (answer `lan`, or `unreachable`
//!   with "offline: no LAN peer answered"); [`Cached`] answers `cached` within the TTL and
//!   `stale` past it (first warning [`OFFLINE_WARNING`]) unless a LAN peer proves a newer head,
//!   and the [`SafeClient`] refuses every target but a LAN peer (see [`http::AddressPolicy`]).
//! - [`http`]: the only way bytes come in — SSRF guard after DNS and on every redirect,
//!   timeouts, size caps, per-origin concurrency. [`discovery`]: `.well-known` and overrides.
//! - [`merge`]: the union of ops from many sources. [`keys`]: server keys and the carried-key
//!   check.
//! - [`lan`]: the LAN peers asked, mDNS announce/browse, and (feature `lan-server`, the only
//!   part that links axum) serving the verified cache to peers: `lan_router`, `serve`.
//! - [`did_resolution`]: pure W3C DID Resolution shapes for the homeserver's
//!   `/1.0/identifiers/{did}`.
//! - Failover by user ID (spec §10.2): [`Cached`] passes what it verified earlier
//!   ([`KnownAccount`]) to [`Resolver::resolve_user_known`]; when the user ID's own domain is
//!   down, [`NetworkResolver`] asks the account's servers (primary first, then backups) and
//!   counts the origin's attestation verified earlier while it is unexpired: `verified`, with
//!   [`Notice`]s saying who confirmed the log, when, and until when the binding holds;
//!   `stale` once that attestation has expired.
//! - [`decide`]: the answer as a pure function of the cached record, what each source
//!   returned, now and the TTL — the model `spec/vectors/resolution.json` is checked against
//!   (and replayed through the real resolver), and a conformance runner's entry point
//!   ([`decide::run_conformance`]).
//!
//! # Wire contract with homeservers
//!
//! - Discovery: `GET https://{server_name}/.well-known/matrix/server` →
//!   `{"m.server": "host[:port]"}`; otherwise the name itself (port 8448 if none). An override
//!   map bypasses discovery.
//! - `GET {base}/_roam/v1/users/{user_id}` (percent-encoded) → 200 a `roam.bundle` | 404
//!   `{"errcode":"M_NOT_FOUND","error":…}`. A server the account moved away from still answers
//!   with the bundle (its log's `servers` then point elsewhere).
//! - `GET {base}/_roam/v1/accounts/{did}` → 200 bundle | 404.
//! - `GET {base}/_roam/v1/accounts/{did}/log?since=SEQ` → 200 `{"ops":[…]}`: every op held
//!   with `seq >= since`, all branches.
//! - `GET {base}/_matrix/key/v2/server` → Matrix key document.
//!
//! # Invariants
//!
//! - A [`Resolution`] only exists for evidence that verified; its `bundle` re-verifies with
//!   `roam_identity_core::bundle::verify` anywhere.
//! - The cache never replaces a head with one whose log does not contain it (unless a valid
//!   recovery rotate superseded it).
//! - No fetch reaches a non-public address unless `allow_private` is set or the target was
//!   trusted explicitly (an override target or a LAN peer the user named). A peer learned by
//!   mDNS is trusted only if `lan::acceptable_peer` accepts its address (on a subnet of this
//!   host's interfaces; never loopback, link-local, multicast or unspecified unless
//!   `allow_private`), and only while it is announced.
//! - Offline, no fetch reaches anything but a LAN peer (listed in the configuration or added
//!   to [`NetworkResolver::lan_peers`], e.g. by mDNS) — not an override target, not a server
//!   the log or an attestation names, not a redirect target. The entry points never take the
//!   online path and the client checks every request and redirect hop, so either lock alone
//!   would hold. An offline answer is never `verified`, and no positive answer learned
//!   offline is stored in the cache.

pub mod cache;
pub mod clock;
pub mod config;
pub mod decide;
pub mod did_resolution;
pub mod discovery;
pub mod error;
pub mod http;
pub mod keys;
pub mod lan;
pub mod merge;
pub mod network;
pub mod resolution;

use std::sync::Arc;

use futures::future::BoxFuture;
use roam_identity_core::{Did, ServerName, UserId};

pub use cache::{CacheError, CacheStore, Cached};
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{CachePolicy, OFFLINE_WARNING, ResolverConfig};
pub use error::{ResolveError, ResolveErrorWire};
pub use http::{FetchError, SafeClient};
pub use lan::LanPeers;
#[cfg(feature = "lan-server")]
pub use lan::{lan_router, serve};
pub use network::NetworkResolver;
pub use resolution::{KnownAccount, Notice, Resolution, ResolutionWire, ResolveStatus, Source};

/// What a resolution returns.
pub type ResolveResult = Result<Resolution, ResolveError>;

/// Resolves user IDs and DIDs. Futures are boxed so that `Arc<dyn Resolver>` works: the
/// homeserver holds one in its state without knowing whether it is cached.
pub trait Resolver: Send + Sync {
    /// Resolves a user ID through its own domain.
    fn resolve_user<'a>(&'a self, user_id: &'a UserId) -> BoxFuture<'a, ResolveResult>;

    /// Resolves a user ID when the caller already knows (from its cache) the account it was
    /// bound to: if the user ID's own domain cannot be reached, the account's servers are
    /// asked and the origin's attestation carried in `known` is checked (spec §10.2).
    /// Resolvers that cannot use it keep the default, which ignores `known`.
    fn resolve_user_known<'a>(
        &'a self,
        user_id: &'a UserId,
        known: Option<&'a KnownAccount>,
    ) -> BoxFuture<'a, ResolveResult> {
        let _ = known;
        self.resolve_user(user_id)
    }

    /// Resolves several user IDs, answering in the same order. The default asks one by one;
    /// the network resolver asks the names of one server in one bulk query
    /// (`POST /_roam/v1/query`), and [`Cached`] answers what it can from the cache and asks
    /// the rest together.
    fn resolve_users<'a>(&'a self, users: &'a [UserId]) -> BoxFuture<'a, Vec<ResolveResult>> {
        Box::pin(async move {
            let mut out = Vec::with_capacity(users.len());
            for u in users {
                out.push(self.resolve_user(u).await);
            }
            out
        })
    }

    /// Resolves a DID, asking `hints` first (servers the caller already associates with it),
    /// then servers learned from earlier answers and configured ones.
    fn resolve_did_via<'a>(
        &'a self,
        did: &'a Did,
        hints: &'a [ServerName],
    ) -> BoxFuture<'a, ResolveResult>;

    /// Resolves a DID with no hints.
    fn resolve_did<'a>(&'a self, did: &'a Did) -> BoxFuture<'a, ResolveResult> {
        self.resolve_did_via(did, &[])
    }

    /// True when this resolver asks no server, only LAN peers ([`ResolverConfig::offline`]).
    /// [`Cached`] reads it to word its stale answers; resolvers that are never offline keep
    /// the default.
    fn is_offline(&self) -> bool {
        false
    }
}

impl<R: Resolver + ?Sized> Resolver for Arc<R> {
    fn resolve_user<'a>(&'a self, user_id: &'a UserId) -> BoxFuture<'a, ResolveResult> {
        (**self).resolve_user(user_id)
    }

    fn resolve_user_known<'a>(
        &'a self,
        user_id: &'a UserId,
        known: Option<&'a KnownAccount>,
    ) -> BoxFuture<'a, ResolveResult> {
        (**self).resolve_user_known(user_id, known)
    }

    fn resolve_did_via<'a>(
        &'a self,
        did: &'a Did,
        hints: &'a [ServerName],
    ) -> BoxFuture<'a, ResolveResult> {
        (**self).resolve_did_via(did, hints)
    }

    fn resolve_users<'a>(&'a self, users: &'a [UserId]) -> BoxFuture<'a, Vec<ResolveResult>> {
        (**self).resolve_users(users)
    }

    fn is_offline(&self) -> bool {
        (**self).is_offline()
    }
}
