//! The network resolver: discovery, keys, bundle fetch, verification, following the
//! account's servers, and the LAN fallback when the origin cannot be reached.
//!
//! It keeps no answers between calls (that is [`crate::Cached`]'s job); it only remembers
//! server keys, discovery results and which servers host which DID, which are hints, not
//! answers.
//!
//! # The steps
//!
//! The code follows DESIGN.md's resolution steps, one method each:
//!
//! 1. discover the server ([`Discovery`]) and fetch the bundle (`fetch_user_bundle`, or each
//!    candidate of `did_candidates` for a DID);
//! 2. verify the log, the attestations with keys fetched from each attester
//!    (`fetch_attester_keys`, `check_carried_keys`, `verify_attestations`) and, for a user
//!    ID, the binding both ways (`check_binding`);
//! 3. follow the log's primary, then its backups, for newer ops (`follow_servers`), and merge
//!    every source with the fork rules (`merged_log`);
//! 4. answer (`build_resolution`), or, when nothing online could be reached, ask the LAN
//!    peers (`lan_resolve`: `ask_lan_peers` → `check_lan_answers` → `merge_lan_bundles`).
//!
//! # Offline mode
//!
//! With [`ResolverConfig::offline`] it goes straight to the LAN path: no discovery and no
//! origin, primary, backup or key fetch, whatever the log or the caller names. LAN bundles are
//! verified exactly as when the origin is down (carried key documents checked against keys
//! cached earlier); the answer is `lan`, or `unreachable` ("offline: no LAN peer answered").
//! Two locks keep it off the network: the one entry point (`resolve`) never takes the online
//! path, and the [`SafeClient`] refuses every target but a LAN peer (redirects included).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use futures::future::{BoxFuture, join_all};
use roam_identity_core::attestation::{self, Attestation};
use roam_identity_core::bundle::{self, Attested, Bundle, VerifiedBundle};
use roam_identity_core::log::{Action, LogError, VerifiedLog};
use roam_identity_core::server_keys::{self, ServerKeys};
use roam_identity_core::{Did, Millis, ServerName, UserId};
use serde_json::Value;
use url::Url;

use crate::clock::{Clock, rfc3339};
use crate::config::{OFFLINE_WARNING, ResolverConfig};
use crate::discovery::{Discovery, endpoint};
use crate::error::ResolveError;
use crate::http::{FetchError, SafeClient};
use crate::keys::{KeyCache, KeyFetchError, check_agreement};
use crate::lan::LanPeers;
use crate::merge::{OpPool, all_op_values};
use crate::resolution::{Resolution, ResolveStatus, Source};
use crate::{ResolveResult, Resolver};

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
struct Evidence {
    bundle: VerifiedBundle,
    wire: Bundle,
    warnings: Vec<String>,
}

/// Verified attestations with their wire values, in the order the bundle carried them.
type AttestationList = Vec<(Value, Attestation)>;

/// Verified key documents by server, with their wire values.
type KeyDocs = BTreeMap<ServerName, (ServerKeys, Value)>;

impl Evidence {
    /// Puts a verified log, attestations and key documents together as a [`VerifiedBundle`]
    /// and the [`Bundle`] that re-verifies anywhere.
    fn assemble(
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
        }
    }
}

/// Whether asking a server for newer ops worked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Asked {
    Answered,
    Failed,
}

/// Why online verification stopped.
enum OnlineFailure {
    /// A definite answer (invalid evidence, equivocation).
    Resolve(ResolveError),
    /// Something needed could not be fetched.
    Unreachable(String),
}

fn invalid(message: String) -> OnlineFailure {
    OnlineFailure::Resolve(ResolveError::Invalid(message))
}

/// What the LAN peers that were accepted said, merged.
struct LanEvidence {
    pool: OpPool,
    attestations: AttestationList,
    key_docs: KeyDocs,
    peers: Vec<String>,
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

    async fn online_keys(
        &self,
        server: &ServerName,
        now: Millis,
    ) -> Result<(ServerKeys, Value), KeyFetchError> {
        let inner = &self.inner;
        if let Some(hit) = inner.keys.fresh(server, now, inner.config.max_key_cache_ms) {
            return Ok(hit);
        }
        if inner.config.offline {
            return Err(KeyFetchError::Offline {
                server: server.clone(),
            });
        }
        let base = self.discover(server, now).await;
        let url = endpoint(&base, &["_matrix", "key", "v2", "server"]);
        let doc = inner
            .client
            .get_json(&url)
            .await
            .map_err(|source| KeyFetchError::Fetch {
                server: server.clone(),
                source,
            })?;
        let keys = server_keys::verify(&doc, server).map_err(|source| KeyFetchError::Invalid {
            server: server.clone(),
            source,
        })?;
        if keys.is_expired(now) {
            return Err(KeyFetchError::Expired {
                server: server.clone(),
                valid_until: keys.valid_until_ts,
            });
        }
        inner.keys.insert(keys.clone(), doc.clone(), now);
        Ok((keys, doc))
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
    async fn resolve(&self, subject: Subject<'_>, hints: &[ServerName]) -> ResolveResult {
        let now = self.inner.clock.now_ms();
        if self.is_offline() {
            return self.offline_resolve(subject, now).await;
        }
        match subject {
            Subject::User(user) => self.resolve_user_online(user, now).await,
            Subject::Did(did) => self.resolve_did_online(did, hints, now).await,
        }
    }

    /// A user ID, through its own domain: discover, fetch, verify and follow, check the
    /// binding both ways, answer.
    async fn resolve_user_online(&self, user: &UserId, now: Millis) -> ResolveResult {
        let subject = Subject::User(user);
        let domain = user.server_name();
        let base = self.discover(&domain, now).await;
        let url = endpoint(&base, &subject.path());
        let verified = match self.fetch_user_bundle(user, &domain, &url).await {
            Ok(value) => self.verify_online(&domain, &url, &value, None, now).await,
            Err(failure) => Err(failure),
        };
        let evidence = match verified {
            Ok(e) => e,
            Err(OnlineFailure::Resolve(e)) => return Err(e),
            Err(OnlineFailure::Unreachable(reason)) => {
                return self.lan_resolve(subject, now, vec![reason]).await;
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
            origin_source(&domain, &base),
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
        self.inner.client.get_json(url).await.map_err(|e| match e {
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
            let value = match self.inner.client.get_json(&url).await {
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

    /// Verifies a bundle fetched online from `server` (log, attestations with each
    /// attester's own keys, carried key documents), then follows the account's servers for
    /// newer ops and merges them with the fork rules.
    async fn verify_online(
        &self,
        server: &ServerName,
        url: &Url,
        value: &Value,
        expected: Option<&Did>,
        now: Millis,
    ) -> Result<Evidence, OnlineFailure> {
        let b = parse_bundle(server, value, expected)?;
        let mut pool = OpPool::new(b.did.clone());
        pool.add_source(&b.log, now)
            .map_err(|e| invalid(format!("{server}'s log does not verify: {e}")))?;
        let parsed = parse_attestations(server, &b)?;
        let mut warnings = Vec::new();
        let mut keys = self
            .fetch_attester_keys(server, &parsed, now, &mut warnings)
            .await?;
        self.check_carried_keys(server, &b.server_keys, &keys)?;
        let attestations = verify_attestations(server, parsed, &keys, now)?;
        self.follow_servers(server, &b.did, &mut pool, now, &mut warnings)
            .await;
        let log = merged_log(&pool, now, "the merged log").map_err(OnlineFailure::Resolve)?;
        // Only the key documents an attestation was verified with travel with the bundle.
        let used: HashSet<ServerName> = attestations
            .iter()
            .map(|(_, a)| a.server_name.clone())
            .collect();
        keys.retain(|s, _| used.contains(s));
        let source = url.to_string();
        Ok(Evidence::assemble(
            b.did,
            log,
            attestations,
            keys,
            source,
            now,
            warnings,
        ))
    }

    /// Fetches the keys of every attesting server from the server itself. Failing to get the
    /// keys of `server` (which just answered) means nothing can be confirmed: unreachable.
    /// Other attesters' failures leave their attestations unchecked, with a warning.
    async fn fetch_attester_keys(
        &self,
        server: &ServerName,
        parsed: &[(&Value, Attestation)],
        now: Millis,
        warnings: &mut Vec<String>,
    ) -> Result<KeyDocs, OnlineFailure> {
        let mut attesters: Vec<ServerName> =
            parsed.iter().map(|(_, a)| a.server_name.clone()).collect();
        attesters.sort();
        attesters.dedup();
        let fetched = join_all(attesters.iter().map(|s| self.online_keys(s, now))).await;
        let mut keys = KeyDocs::new();
        for (s, r) in attesters.iter().zip(fetched) {
            match r {
                Ok(k) => {
                    keys.insert(s.clone(), k);
                }
                Err(e) if s == server => return Err(OnlineFailure::Unreachable(e.to_string())),
                Err(e) => warnings.push(format!("attestations by {s} were not checked: {e}")),
            }
        }
        Ok(keys)
    }

    /// Carried key documents must verify and agree with what the servers themselves publish
    /// (strictly for keys fetched just now, leniently for keys cached earlier).
    fn check_carried_keys(
        &self,
        server: &ServerName,
        docs: &[Value],
        keys: &KeyDocs,
    ) -> Result<(), OnlineFailure> {
        for doc in docs {
            let (name, carried) = parse_carried_keys(server, doc)?;
            let (known, strict) = match keys.get(&name) {
                Some((k, _)) => (Some(k.clone()), true),
                None => (self.inner.keys.known(&name), false),
            };
            if let Some(known) = known {
                check_agreement(&known, &carried, strict).map_err(|e| {
                    invalid(format!(
                        "{server}'s bundle carries a key document for {name} that disagrees with {name}'s published keys: {e}"
                    ))
                })?;
            }
        }
        Ok(())
    }

    /// Follows the log's servers: the primary first, backups when it fails, again whenever
    /// newer ops name a new primary. What fails becomes a warning; `origin` already answered.
    async fn follow_servers(
        &self,
        origin: &ServerName,
        did: &Did,
        pool: &mut OpPool,
        now: Millis,
        warnings: &mut Vec<String>,
    ) {
        let mut asked = HashMap::from([(origin.clone(), Asked::Answered)]);
        let budget =
            self.inner.config.max_follow_rounds * (roam_identity_core::log::MAX_SERVERS + 1);
        for _ in 0..budget {
            let (candidates, since) = servers_to_follow(pool, now);
            let next = candidates
                .iter()
                .find(|s| asked.get(*s) != Some(&Asked::Failed))
                .cloned();
            let Some(next) = next else {
                warnings.push(format!(
                    "none of the account's servers ({}) could be asked for newer operations; newer operations may exist",
                    candidates.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
                ));
                break;
            };
            if asked.get(&next) == Some(&Asked::Answered) {
                break;
            }
            match self.merge_newer_from(&next, did, since, pool, now).await {
                Ok(()) => {
                    asked.insert(next, Asked::Answered);
                }
                Err(w) => {
                    warnings.push(w);
                    asked.insert(next, Asked::Failed);
                }
            }
        }
    }

    /// Asks `server` for ops from `since` on and adds them to `pool`; the error is the
    /// warning to give.
    async fn merge_newer_from(
        &self,
        server: &ServerName,
        did: &Did,
        since: u64,
        pool: &mut OpPool,
        now: Millis,
    ) -> Result<(), String> {
        let ops = self.fetch_newer(server, did, since, now).await?;
        pool.add_source(&ops, now).map(drop).map_err(|e| {
            format!(
                "{server} served operations that do not verify with the rest of the log ({e}); ignored"
            )
        })
    }

    /// `GET /_roam/v1/accounts/{did}/log?since=SEQ` from `server`.
    async fn fetch_newer(
        &self,
        server: &ServerName,
        did: &Did,
        since: u64,
        now: Millis,
    ) -> Result<Vec<Value>, String> {
        if self.is_offline() {
            return Err(format!(
                "offline: {server} was not asked for newer operations (the resolver is offline)"
            ));
        }
        let base = self.discover(server, now).await;
        let mut url = endpoint(&base, &["_roam", "v1", "accounts", did.as_str(), "log"]);
        url.set_query(Some(&format!("since={since}")));
        let v = self.inner.client.get_json(&url).await.map_err(|e| {
            if e.is_not_found() {
                format!("{server} does not know the account ({e})")
            } else {
                format!("{server} could not be asked for newer operations: {e}")
            }
        })?;
        v.get("ops")
            .and_then(Value::as_array)
            .cloned()
            .ok_or_else(|| format!("{server} answered {url} without an \"ops\" array; ignored"))
    }

    /// Offline: LAN peers only, and the answer says nobody else was asked.
    async fn offline_resolve(&self, subject: Subject<'_>, now: Millis) -> ResolveResult {
        let none_known = self.inner.lan.is_empty();
        match self.lan_resolve(subject, now, Vec::new()).await {
            Ok(mut r) => {
                r.warnings.insert(0, OFFLINE_WARNING.to_owned());
                Ok(r)
            }
            Err(ResolveError::Unreachable { subject, tried }) => {
                let first = if none_known {
                    "offline: no LAN peer answered (none is known: list one or discover them with mDNS); no server is asked when offline"
                } else {
                    "offline: no LAN peer answered; no server is asked when offline"
                };
                let mut all = vec![first.to_owned()];
                all.extend(tried);
                Err(ResolveError::Unreachable {
                    subject,
                    tried: all,
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Asks LAN peers for bundles when the origin cannot be reached; every bundle is verified
    /// with the keys it carries, cross-checked against keys cached earlier, and the accepted
    /// ones are merged with the fork rules. `tried` says why the origin was not used.
    async fn lan_resolve(
        &self,
        subject: Subject<'_>,
        now: Millis,
        mut tried: Vec<String>,
    ) -> ResolveResult {
        let peers = self.inner.lan.list();
        if peers.is_empty() {
            return Err(subject.unreachable(tried));
        }
        let answers = self.ask_lan_peers(subject, &peers).await;
        let mut warnings: Vec<String> = tried
            .iter()
            .map(|t| format!("origin not reachable: {t}"))
            .collect();
        let accepted = self.check_lan_answers(answers, subject, now, &mut tried, &mut warnings);
        if accepted.is_empty() {
            tried.extend(warnings.into_iter().filter(|w| w.starts_with("LAN peer")));
            return Err(subject.unreachable(tried));
        }
        let did = choose_lan_did(subject, &accepted);
        let merged = merge_lan_bundles(accepted, &did, subject, now, &mut warnings);
        let log = merged_log(&merged.pool, now, "the LAN peers' merged log")?;
        let source = merged.peers.join(", ");
        let evidence = Evidence::assemble(
            did.clone(),
            log,
            merged.attestations,
            merged.key_docs,
            source,
            now,
            warnings,
        );
        if let Subject::User(u) = subject
            && evidence.bundle.binding(u, now) == Attested::Missing
        {
            return Err(ResolveError::Unbound {
                user_id: u.clone(),
                did: Box::new(did),
                reason: "the LAN peers' merged log no longer claims it".to_owned(),
            });
        }
        let source = Source::Lan {
            peers: merged.peers,
        };
        let status = ResolveStatus::Lan;
        Ok(build_resolution(
            subject.user(),
            evidence,
            status,
            now,
            source,
        ))
    }

    /// Every LAN peer at once, for the subject's bundle.
    async fn ask_lan_peers(
        &self,
        subject: Subject<'_>,
        peers: &[Url],
    ) -> Vec<(Url, Result<Value, FetchError>)> {
        let path = subject.path();
        join_all(peers.iter().map(|p| {
            let url = endpoint(p, &path);
            async move { (p.clone(), self.inner.client.get_json(&url).await) }
        }))
        .await
    }

    /// Keeps the peers' bundles that verify; a rejected bundle becomes a warning, a peer that
    /// does not know the subject or cannot be reached goes into `tried`.
    fn check_lan_answers(
        &self,
        answers: Vec<(Url, Result<Value, FetchError>)>,
        subject: Subject<'_>,
        now: Millis,
        tried: &mut Vec<String>,
        warnings: &mut Vec<String>,
    ) -> Vec<(Url, Bundle, VerifiedBundle)> {
        let mut accepted = Vec::new();
        for (peer, answer) in answers {
            match answer {
                Ok(v) => match self.check_lan_bundle(&v, subject, now) {
                    Ok((b, vb)) => accepted.push((peer, b, vb)),
                    Err(reason) => warnings.push(format!(
                        "LAN peer {peer} served a bundle that was rejected: {reason}"
                    )),
                },
                Err(e) if e.is_not_found() => {
                    tried.push(format!("LAN peer {peer} does not know it"))
                }
                Err(e) => tried.push(format!("LAN peer {peer}: {e}")),
            }
        }
        accepted
    }

    /// Verifies one LAN peer's bundle: all signatures with the keys it carries, the carried
    /// keys against keys cached earlier, and that it is about the subject.
    fn check_lan_bundle(
        &self,
        v: &Value,
        subject: Subject<'_>,
        now: Millis,
    ) -> Result<(Bundle, VerifiedBundle), String> {
        let b = Bundle::from_value(v).map_err(|e| e.to_string())?;
        let vb = bundle::verify(&b, subject.did(), now).map_err(|e| e.to_string())?;
        for (name, carried) in &vb.server_keys {
            if let Some(known) = self.inner.keys.known(name) {
                check_agreement(&known, carried, false).map_err(|e| {
                    format!("its key document for {name} disagrees with keys fetched from {name} earlier: {e}")
                })?;
            }
        }
        // bundle::verify keeps attestations in order, so they line up with the wire values.
        for (v, a) in b.attestations.iter().zip(vb.attestations.iter()) {
            if let Some(known) = self.inner.keys.known(&a.server_name) {
                attestation::verify(v, &known, now).map_err(|e| {
                    format!(
                        "an attestation by {} does not verify with keys fetched from {} earlier: {e}",
                        a.server_name, a.server_name
                    )
                })?;
            }
        }
        if let Some(u) = subject.user()
            && vb.binding(u, now) == Attested::Missing
        {
            return Err(format!("it does not bind {u} to {}", b.did));
        }
        Ok((b, vb))
    }
}

/// Parses a bundle fetched online and checks it is about the DID asked for, if any.
fn parse_bundle(
    server: &ServerName,
    value: &Value,
    expected: Option<&Did>,
) -> Result<Bundle, OnlineFailure> {
    let b = Bundle::from_value(value)
        .map_err(|e| invalid(format!("{server} served a malformed bundle: {e}")))?;
    if let Some(d) = expected
        && d != &b.did
    {
        return Err(invalid(format!(
            "{server} served a bundle for {}, not {d}",
            b.did
        )));
    }
    Ok(b)
}

/// Parses every attestation a bundle carries; each must be about the bundle's DID.
fn parse_attestations<'b>(
    server: &ServerName,
    b: &'b Bundle,
) -> Result<Vec<(&'b Value, Attestation)>, OnlineFailure> {
    let mut parsed = Vec::with_capacity(b.attestations.len());
    for (i, v) in b.attestations.iter().enumerate() {
        let a = attestation::parse(v).map_err(|e| {
            invalid(format!(
                "{server}'s bundle: attestation {i} is malformed: {e}"
            ))
        })?;
        if a.did != b.did {
            return Err(invalid(format!(
                "{server}'s bundle: attestation {i} is about {}, not {}",
                a.did, b.did
            )));
        }
        parsed.push((v, a));
    }
    Ok(parsed)
}

/// A key document carried in `server`'s bundle: the server it names, and its keys if it is
/// self-signed correctly.
fn parse_carried_keys(
    server: &ServerName,
    doc: &Value,
) -> Result<(ServerName, ServerKeys), OnlineFailure> {
    let name = doc
        .get("server_name")
        .and_then(Value::as_str)
        .and_then(|s| ServerName::parse(s).ok())
        .ok_or_else(|| {
            invalid(format!(
                "{server}'s bundle carries a key document without a valid server_name"
            ))
        })?;
    let carried = server_keys::verify(doc, &name).map_err(|e| {
        invalid(format!(
            "{server}'s bundle carries a key document for {name} that does not verify: {e}"
        ))
    })?;
    Ok((name, carried))
}

/// Verifies each attestation with its attester's published keys; attestations whose keys
/// could not be fetched are left out (a warning already says so).
fn verify_attestations(
    server: &ServerName,
    parsed: Vec<(&Value, Attestation)>,
    keys: &KeyDocs,
    now: Millis,
) -> Result<AttestationList, OnlineFailure> {
    let mut attestations = AttestationList::new();
    for (v, a) in parsed {
        let Some((k, _)) = keys.get(&a.server_name) else {
            continue;
        };
        let verified = attestation::verify(v, k, now).map_err(|e| {
            invalid(format!(
                "{server}'s bundle: an attestation by {} does not verify with {}'s published keys: {e}",
                a.server_name, a.server_name
            ))
        })?;
        attestations.push((v.clone(), verified));
    }
    Ok(attestations)
}

/// The user ID's own domain must attest the binding now, and the log must claim the user ID.
fn check_binding(
    vb: &VerifiedBundle,
    user: &UserId,
    domain: &ServerName,
    now: Millis,
) -> Result<(), ResolveError> {
    let unbound = |reason: String| ResolveError::Unbound {
        user_id: user.clone(),
        did: Box::new(vb.log.state.did.clone()),
        reason,
    };
    match vb.binding(user, now) {
        Attested::Current { .. } => Ok(()),
        Attested::Expired { valid_until } => Err(unbound(format!(
            "{domain}'s attestation of the binding expired at {}",
            rfc3339(valid_until)
        ))),
        Attested::Missing if vb.log.state.user_ids.contains(user) => Err(unbound(format!(
            "{domain} does not attest that {user} belongs to this account"
        ))),
        Attested::Missing => Err(unbound(format!("the account's log does not claim {user}"))),
    }
}

/// The merged log under the fork rules: a recovery rotate settles a fork, any other fork is
/// equivocation; `what` names the log in the error.
fn merged_log(pool: &OpPool, now: Millis, what: &str) -> Result<VerifiedLog, ResolveError> {
    pool.verify(now).map_err(|e| match e {
        LogError::Equivocation { a, b } => ResolveError::Equivocation { a, b },
        other => ResolveError::Invalid(format!("{what} does not verify: {other}")),
    })
}

/// The servers to ask for newer ops and the seq to ask from: the log's servers from its
/// current key epoch on; with forked evidence, every server the ops name, from the start
/// (any of them may hold the settling rotate).
fn servers_to_follow(pool: &OpPool, now: Millis) -> (Vec<ServerName>, u64) {
    match pool.verify(now) {
        Ok(log) => (log.state.servers.clone(), epoch_start_seq(&log) + 1),
        Err(_) => (servers_named(pool), 0),
    }
}

/// Seq of the op that starts the chain's current key epoch (its last genesis or rotate): a
/// recovery rotate can fork from any op after it, so newer evidence has a greater seq.
fn epoch_start_seq(log: &VerifiedLog) -> u64 {
    log.chain
        .iter()
        .rev()
        .find(|o| o.op.action.is_key_event())
        .map_or(0, |o| o.op.seq)
}

/// Every server named by a genesis or move op held, latest first.
fn servers_named(pool: &OpPool) -> Vec<ServerName> {
    let mut ops: Vec<_> = pool.ops().iter().collect();
    ops.sort_by_key(|o| std::cmp::Reverse(o.op.seq));
    let mut out: Vec<ServerName> = Vec::new();
    for o in ops {
        if let Action::Genesis { servers, .. } | Action::Move { servers } = &o.op.action {
            for s in servers {
                if !out.contains(s) {
                    out.push(s.clone());
                }
            }
        }
    }
    out
}

/// Peers may disagree on which DID a user ID names (an old binding); the one whose binding
/// was confirmed most recently wins, the others are named.
fn choose_lan_did(subject: Subject<'_>, accepted: &[(Url, Bundle, VerifiedBundle)]) -> Did {
    match subject {
        Subject::Did(d) => d.clone(),
        Subject::User(u) => accepted
            .iter()
            .max_by_key(|(_, _, vb)| binding_confirmed_at(vb, u))
            .map(|(_, b, _)| b.did.clone())
            .unwrap_or_else(|| unreachable!("accepted is not empty")),
    }
}

/// The union of the accepted peers' evidence about `did`: their ops (a peer whose log does
/// not verify with the others' is dropped and named), attestations and key documents.
fn merge_lan_bundles(
    accepted: Vec<(Url, Bundle, VerifiedBundle)>,
    did: &Did,
    subject: Subject<'_>,
    now: Millis,
    warnings: &mut Vec<String>,
) -> LanEvidence {
    let mut merged = LanEvidence {
        pool: OpPool::new(did.clone()),
        attestations: AttestationList::new(),
        key_docs: KeyDocs::new(),
        peers: Vec::new(),
    };
    for (peer, b, vb) in accepted {
        if &b.did != did {
            warnings.push(format!(
                "LAN peer {peer} names another account ({}) for {}; ignored",
                b.did,
                subject.describe()
            ));
            continue;
        }
        if let Err(e) = merged.pool.add_source(&b.log, now) {
            warnings.push(format!(
                "LAN peer {peer}'s log does not verify with the other peers' ({e}); ignored"
            ));
            continue;
        }
        merged.add_attestations_and_keys(&b, &vb);
        merged.peers.push(peer.to_string());
    }
    merged
}

impl LanEvidence {
    /// Adds a peer's verified attestations (once each) and the key documents they were
    /// verified with (the first seen per server).
    fn add_attestations_and_keys(&mut self, b: &Bundle, vb: &VerifiedBundle) {
        for (v, a) in b.attestations.iter().zip(vb.attestations.iter()) {
            if !self.attestations.iter().any(|(w, _)| w == v) {
                self.attestations.push((v.clone(), a.clone()));
            }
        }
        for doc in &b.server_keys {
            if let Some(name) = doc.get("server_name").and_then(Value::as_str)
                && let Some(k) = vb
                    .server_keys
                    .values()
                    .find(|k| k.server_name.as_str() == name)
            {
                self.key_docs
                    .entry(k.server_name.clone())
                    .or_insert_with(|| (k.clone(), doc.clone()));
            }
        }
    }
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
fn build_resolution(
    user: Option<&UserId>,
    evidence: Evidence,
    status: ResolveStatus,
    now: Millis,
    source: Source,
) -> Resolution {
    let vb = &evidence.bundle;
    let st = &vb.log.state;
    let user_ids: Vec<UserId> = match status {
        ResolveStatus::Lan => st
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
        bundle: Arc::new(evidence.wire),
    }
}

impl Resolver for NetworkResolver {
    fn resolve_user<'a>(&'a self, user_id: &'a UserId) -> BoxFuture<'a, ResolveResult> {
        self.resolve(Subject::User(user_id), &[]).boxed()
    }

    fn resolve_did_via<'a>(
        &'a self,
        did: &'a Did,
        hints: &'a [ServerName],
    ) -> BoxFuture<'a, ResolveResult> {
        self.resolve(Subject::Did(did), hints).boxed()
    }

    fn is_offline(&self) -> bool {
        NetworkResolver::is_offline(self)
    }
}
