//! The network resolver: discovery, keys, bundle fetch, verification, following the
//! account's servers, and the LAN fallback when the origin cannot be reached.
//!
//! It keeps no answers between calls (that is [`crate::Cached`]'s job); it only remembers
//! server keys, discovery results and which servers host which DID, which are hints, not
//! answers.
//!
//! # The steps
//!
//! The code follows DESIGN.md's resolution steps, a named method each:
//!
//! 1. discover the server ([`Discovery`]) and fetch the bundle (`fetch_user_bundle`, or each
//!    of `did_candidates` for a DID) — here;
//! 2. verify the log, the attestations with keys fetched from each attester
//!    (`fetch_attester_keys`, `check_carried_keys`, `verify_attestations`) and, for a user
//!    ID, the binding both ways (`check_binding`) — in `verify`;
//! 3. follow the log's primary, then its backups, for newer ops (`follow_servers`, in
//!    `verify`), and merge every source with the fork rules (`merged_log`, here);
//! 4. answer (`build_resolution`, here), or, when the user ID's own domain cannot be reached
//!    and the caller verified the account earlier, ask the account's servers (`failover`,
//!    spec §10.2) — in `failover`; when nothing online could be reached, ask the LAN peers
//!    (`lan_resolve`: `ask_lan_peers` → `check_lan_answers` → `merge_lan_bundles`) — in
//!    `lan_fallback`.
//!
//! # Offline mode
//!
//! With [`ResolverConfig::offline`] it goes straight to the LAN path: no discovery and no
//! origin, primary, backup or key fetch, whatever the log or the caller names. LAN bundles are
//! verified exactly as when the origin is down (carried key documents checked against keys
//! cached earlier); the answer is `lan`, or `unreachable` ("offline: no LAN peer answered").
//! Two locks keep it off the network: the one entry point (`resolve`) never takes the online
//! path, and the [`SafeClient`] refuses every target but a LAN peer (redirects included).

mod bulk;
pub(crate) mod failover;
mod lan_fallback;
pub(crate) mod verify;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use futures::future::BoxFuture;
use roam_identity_core::attestation::Attestation;
use roam_identity_core::bundle::{Attested, Bundle, VerifiedBundle};
use roam_identity_core::log::{LogError, VerifiedLog};
use roam_identity_core::server_keys::ServerKeys;
use roam_identity_core::{Did, Millis, ServerName, UserId};
use serde_json::Value;
use url::Url;

use crate::clock::Clock;
use crate::config::ResolverConfig;
use crate::discovery::{Discovery, endpoint};
use crate::error::ResolveError;
use crate::http::{FetchError, SafeClient};
use crate::keys::{KeyCache, KeyFetchError};
use crate::lan::LanPeers;
use crate::merge::{OpPool, all_op_values};
use crate::resolution::{KnownAccount, Notice, Resolution, ResolveStatus, Source};
use crate::{ResolveResult, Resolver};

use verify::{OnlineFailure, check_binding, invalid};

/// Resolves over HTTP. Cheap to clone; clones share caches of keys and hints.
#[derive(Debug, Clone)]
pub struct NetworkResolver {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: ResolverConfig,
    client: SafeClient,
    discovery: Discovery,
    keys: KeyCache,
    clock: Arc<dyn Clock>,
    lan: LanPeers,
    did_hints: Mutex<HashMap<Did, Vec<ServerName>>>,
}

/// What is being resolved.
#[derive(Debug, Clone, Copy)]
enum Subject<'a> {
    User(&'a UserId),
    Did(&'a Did),
}

impl Subject<'_> {
    fn describe(&self) -> String {
        match self {
            Subject::User(u) => u.to_string(),
            Subject::Did(d) => d.to_string(),
        }
    }

    fn path(&self) -> [&str; 4] {
        match self {
            Subject::User(u) => ["_roam", "v1", "users", u.as_str()],
            Subject::Did(d) => ["_roam", "v1", "accounts", d.as_str()],
        }
    }

    fn user(&self) -> Option<&UserId> {
        match self {
            Subject::User(u) => Some(u),
            Subject::Did(_) => None,
        }
    }

    fn did(&self) -> Option<&Did> {
        match self {
            Subject::Did(d) => Some(d),
            Subject::User(_) => None,
        }
    }

    /// "Nothing reachable", with what was tried.
    fn unreachable(&self, tried: Vec<String>) -> ResolveError {
        ResolveError::Unreachable {
            subject: self.describe(),
            tried,
        }
    }
}

/// Verified evidence, in both forms (checked and wire), with what to warn about; the
/// subject-specific checks come after.
pub(crate) struct Evidence {
    pub(crate) bundle: VerifiedBundle,
    pub(crate) wire: Bundle,
    pub(crate) warnings: Vec<String>,
    pub(crate) notices: Vec<Notice>,
}

/// Verified attestations with their wire values, in the order the bundle carried them.
pub(crate) type AttestationList = Vec<(Value, Attestation)>;

/// Verified key documents by server, with their wire values.
pub(crate) type KeyDocs = BTreeMap<ServerName, (ServerKeys, Value)>;

impl Evidence {
    /// Puts a verified log, attestations and key documents together as a [`VerifiedBundle`]
    /// and the [`Bundle`] that re-verifies anywhere.
    pub(crate) fn assemble(
        did: Did,
        log: VerifiedLog,
        attestations: AttestationList,
        keys: KeyDocs,
        source: String,
        now: Millis,
        warnings: Vec<String>,
    ) -> Self {
        let wire = Bundle {
            did,
            log: all_op_values(&log),
            attestations: attestations.iter().map(|(v, _)| v.clone()).collect(),
            server_keys: keys.values().map(|(_, doc)| doc.clone()).collect(),
            fetched_at: now,
            source: source.clone(),
        };
        let bundle = VerifiedBundle {
            log,
            attestations: attestations.into_iter().map(|(_, a)| a).collect(),
            server_keys: keys.into_iter().map(|(s, (k, _))| (s, k)).collect(),
            fetched_at: now,
            source,
        };
        Self {
            bundle,
            wire,
            warnings,
            notices: Vec::new(),
        }
    }
}

impl NetworkResolver {
    /// A resolver with this configuration and clock.
    pub fn new(config: ResolverConfig, clock: Arc<dyn Clock>) -> Result<Self, FetchError> {
        let client = SafeClient::new(&config)?;
        let lan = LanPeers::new(client.policy().clone());
        for p in &config.lan_peers {
            lan.add(p.clone());
        }
        Ok(Self {
            inner: Arc::new(Inner {
                discovery: Discovery::new(config.overrides.clone(), config.discovery_ttl_ms),
                config,
                client,
                keys: KeyCache::new(),
                clock,
                lan,
                did_hints: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// True when this resolver asks LAN peers only ([`ResolverConfig::offline`]).
    pub fn is_offline(&self) -> bool {
        self.inner.config.offline
    }

    /// The LAN peers asked when the origin is unreachable (add mDNS-discovered ones here).
    pub fn lan_peers(&self) -> &LanPeers {
        &self.inner.lan
    }

    /// Server keys fetched so far.
    pub fn key_cache(&self) -> &KeyCache {
        &self.inner.keys
    }

    /// The guarded HTTP client.
    pub fn client(&self) -> &SafeClient {
        &self.inner.client
    }

    /// Fetches (or reuses) `server`'s keys from the server itself. Offline, only keys fetched
    /// earlier (and still fresh) are returned; nothing is fetched.
    pub async fn server_keys(&self, server: &ServerName) -> Result<ServerKeys, KeyFetchError> {
        self.online_keys(server, self.inner.clock.now_ms())
            .await
            .map(|(k, _)| k)
    }

    /// The base URL of `server` (discovery, or an override).
    async fn discover(&self, server: &ServerName, now: Millis) -> Url {
        self.inner
            .discovery
            .base_url(&self.inner.client, server, now)
            .await
    }

    fn remember_servers(&self, did: &Did, servers: &[ServerName]) {
        let mut hints = self
            .inner
            .did_hints
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let entry = hints.entry(did.clone()).or_default();
        for s in servers {
            if !entry.contains(s) {
                entry.push(s.clone());
            }
        }
    }

    /// The one entry point: offline, LAN peers only; otherwise online, with the LAN as the
    /// fallback.
    async fn resolve(
        &self,
        subject: Subject<'_>,
        hints: &[ServerName],
        known: Option<&KnownAccount>,
    ) -> ResolveResult {
        let now = self.inner.clock.now_ms();
        if self.is_offline() {
            return self.offline_resolve(subject, now).await;
        }
        match subject {
            Subject::User(user) => self.resolve_user_online(user, known, now).await,
            Subject::Did(did) => self.resolve_did_online(did, hints, now).await,
        }
    }

    /// A user ID, through its own domain: discover, fetch, verify and follow, check the
    /// binding both ways, answer. When the domain cannot be reached and the account is
    /// `known`, its servers are asked (`failover`, spec §10.2); then the LAN peers.
    async fn resolve_user_online(
        &self,
        user: &UserId,
        known: Option<&KnownAccount>,
        now: Millis,
    ) -> ResolveResult {
        let domain = user.server_name();
        let base = self.discover(&domain, now).await;
        let url = endpoint(&base, &Subject::User(user).path());
        let fetched = self.fetch_user_bundle(user, &domain, &url).await;
        self.answer_user(user, known, now, (&base, &url), fetched)
            .await
    }

    /// The rest of [`Self::resolve_user_online`] once the origin's bundle was fetched (alone
    /// or in a bulk query): verify, check the binding, answer; fail over when unreachable.
    async fn answer_user(
        &self,
        user: &UserId,
        known: Option<&KnownAccount>,
        now: Millis,
        (base, url): (&Url, &Url),
        fetched: Result<Value, OnlineFailure>,
    ) -> ResolveResult {
        let subject = Subject::User(user);
        let domain = user.server_name();
        let verified = match fetched {
            Ok(value) => self.verify_online(&domain, url, &value, None, now).await,
            Err(failure) => Err(failure),
        };
        let evidence = match verified {
            Ok(e) => e,
            Err(OnlineFailure::Resolve(e)) => return Err(e),
            Err(OnlineFailure::Unreachable(reason)) => {
                let mut tried = vec![reason];
                let Some(known) = known else {
                    return self.lan_then_failover(user, now, tried).await;
                };
                if let Some(answer) = self.failover(user, known, &mut tried, now).await {
                    return answer;
                }
                return self.lan_resolve(subject, now, tried).await;
            }
        };
        check_binding(&evidence.bundle, user, &domain, now)?;
        let mut servers = evidence.bundle.log.state.servers.clone();
        servers.push(domain.clone());
        self.remember_servers(&evidence.bundle.log.state.did, &servers);
        Ok(build_resolution(
            Some(user),
            evidence,
            ResolveStatus::Verified,
            now,
            origin_source(&domain, base),
        ))
    }

    /// `GET /_roam/v1/users/{user_id}` from the user ID's own server: a 404 is `not_found`,
    /// a body that is not JSON is `invalid`, anything else is unreachable (the LAN is next).
    async fn fetch_user_bundle(
        &self,
        user: &UserId,
        domain: &ServerName,
        url: &Url,
    ) -> Result<Value, OnlineFailure> {
        self.inner
            .client
            .get_json_revalidated(url)
            .await
            .map_err(|e| match e {
                e if e.is_not_found() => OnlineFailure::Resolve(ResolveError::NotFound {
                    subject: user.to_string(),
                    detail: format!("{domain} has no such user"),
                }),
                FetchError::Json { url, reason } => {
                    invalid(format!("{url} answered with invalid JSON: {reason}"))
                }
                e => OnlineFailure::Unreachable(e.to_string()),
            })
    }

    /// A DID, from the first candidate server that serves a bundle for it; when none can be
    /// reached, the LAN peers.
    async fn resolve_did_online(
        &self,
        did: &Did,
        hints: &[ServerName],
        now: Millis,
    ) -> ResolveResult {
        let subject = Subject::Did(did);
        let mut tried = Vec::new();
        let mut not_found = Vec::new();
        for server in &self.did_candidates(did, hints) {
            let base = self.discover(server, now).await;
            let url = endpoint(&base, &subject.path());
            let value = match self.inner.client.get_json_revalidated(&url).await {
                Ok(v) => v,
                Err(e) if e.is_not_found() => {
                    not_found.push(server.to_string());
                    continue;
                }
                Err(e) => {
                    tried.push(e.to_string());
                    continue;
                }
            };
            match self
                .verify_online(server, &url, &value, Some(did), now)
                .await
            {
                Ok(evidence) => {
                    self.remember_servers(did, &evidence.bundle.log.state.servers);
                    let source = origin_source(server, &base);
                    let status = ResolveStatus::Verified;
                    return Ok(build_resolution(None, evidence, status, now, source));
                }
                Err(OnlineFailure::Resolve(e)) => return Err(e),
                Err(OnlineFailure::Unreachable(reason)) => tried.push(reason),
            }
        }
        self.did_not_served(did, tried, not_found, now).await
    }

    /// The servers to ask for a DID: the caller's hints, then servers learned from earlier
    /// answers, then configured ones.
    fn did_candidates(&self, did: &Did, hints: &[ServerName]) -> Vec<ServerName> {
        let mut candidates: Vec<ServerName> = hints.to_vec();
        let learned = self
            .inner
            .did_hints
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(did)
            .cloned()
            .unwrap_or_default();
        for s in learned
            .into_iter()
            .chain(self.inner.config.did_servers.iter().cloned())
        {
            if !candidates.contains(&s) {
                candidates.push(s);
            }
        }
        candidates
    }

    /// No candidate served the DID: `not_found` when every server answered and no LAN peer is
    /// known, otherwise the LAN peers are asked.
    async fn did_not_served(
        &self,
        did: &Did,
        mut tried: Vec<String>,
        not_found: Vec<String>,
        now: Millis,
    ) -> ResolveResult {
        if tried.is_empty() && self.inner.lan.is_empty() {
            let detail = if not_found.is_empty() {
                "no server is known to host it (pass a server hint)".to_owned()
            } else {
                format!("not known to {}", not_found.join(", "))
            };
            return Err(ResolveError::NotFound {
                subject: did.to_string(),
                detail,
            });
        }
        tried.extend(not_found.iter().map(|s| format!("{s} does not know it")));
        self.lan_resolve(Subject::Did(did), now, tried).await
    }
}

/// The merged log under the fork rules: a recovery rotate settles a fork, any other fork is
/// equivocation; `what` names the log in the error.
pub(crate) fn merged_log(
    pool: &OpPool,
    now: Millis,
    what: &str,
) -> Result<VerifiedLog, ResolveError> {
    pool.verify(now).map_err(|e| match e {
        LogError::Equivocation { a, b } => ResolveError::Equivocation { a, b },
        other => ResolveError::Invalid(format!("{what} does not verify: {other}")),
    })
}

fn binding_confirmed_at(vb: &VerifiedBundle, user: &UserId) -> Option<Millis> {
    vb.attestations
        .iter()
        .filter(|a| a.binds(user))
        .map(|a| a.issued_at)
        .max()
}

fn origin_source(server: &ServerName, base: &Url) -> Source {
    Source::Origin {
        server: server.clone(),
        url: base.to_string(),
    }
}

/// The answer: the account's state now, which user IDs are bound (offline, an expired
/// attestation still says what was once confirmed), and how fresh it is.
pub(crate) fn build_resolution(
    user: Option<&UserId>,
    evidence: Evidence,
    status: ResolveStatus,
    now: Millis,
    source: Source,
) -> Resolution {
    let vb = &evidence.bundle;
    let st = &vb.log.state;
    let user_ids: Vec<UserId> = match status {
        ResolveStatus::Lan | ResolveStatus::Stale => st
            .user_ids
            .iter()
            .filter(|u| vb.binding(u, now) != Attested::Missing)
            .cloned()
            .collect(),
        _ => vb.bound_user_ids(now),
    };
    let last_confirmed = match user {
        Some(u) => binding_confirmed_at(vb, u),
        None => vb.last_confirmed(),
    };
    Resolution {
        user_id: user.cloned().or_else(|| user_ids.first().cloned()),
        did: st.did.clone(),
        update_key: st.update_key,
        servers: st.servers.clone(),
        devices: st.devices.clone(),
        user_ids,
        head: st.head,
        seq: st.seq,
        created_at: st.created_at,
        updated_at: st.updated_at,
        deactivated: st.deactivated,
        status,
        verified_at: now,
        last_confirmed,
        source,
        warnings: evidence.warnings,
        notices: evidence.notices,
        bundle: Arc::new(evidence.wire),
    }
}

impl Resolver for NetworkResolver {
    fn resolve_user<'a>(&'a self, user_id: &'a UserId) -> BoxFuture<'a, ResolveResult> {
        self.resolve(Subject::User(user_id), &[], None).boxed()
    }

    fn resolve_user_known<'a>(
        &'a self,
        user_id: &'a UserId,
        known: Option<&'a KnownAccount>,
    ) -> BoxFuture<'a, ResolveResult> {
        self.resolve(Subject::User(user_id), &[], known).boxed()
    }

    fn resolve_did_via<'a>(
        &'a self,
        did: &'a Did,
        hints: &'a [ServerName],
    ) -> BoxFuture<'a, ResolveResult> {
        self.resolve(Subject::Did(did), hints, None).boxed()
    }

    fn resolve_users<'a>(&'a self, users: &'a [UserId]) -> BoxFuture<'a, Vec<ResolveResult>> {
        NetworkResolver::resolve_users(self, users).boxed()
    }

    fn is_offline(&self) -> bool {
        NetworkResolver::is_offline(self)
    }
}
