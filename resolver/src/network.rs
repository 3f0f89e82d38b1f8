//! The network resolver: discovery, keys, bundle fetch, verification, following the
//! account's servers, and the LAN fallback when the origin cannot be reached.
//!
//! It keeps no answers between calls (that is [`crate::Cached`]'s job); it only remembers
//! server keys, discovery results and which servers host which DID, which are hints, not
//! answers.
//!
//! # Offline mode
//!
//! With [`ResolverConfig::offline`] it goes straight to the LAN path: no discovery and no
//! origin, primary, backup or key fetch, whatever the log or the caller names. LAN bundles are
//! verified exactly as when the origin is down (carried key documents checked against keys
//! cached earlier); the answer is `lan`, or `unreachable` ("offline: no LAN peer answered").
//! Two locks keep it off the network: the entry points never take the online path, and the
//! [`SafeClient`] refuses every target but a LAN peer (redirects included).

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
use crate::keys::{KeyCache, check_agreement};
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
}

/// Evidence verified online, before the subject-specific checks.
struct Online {
    bundle: VerifiedBundle,
    wire: Bundle,
    warnings: Vec<String>,
}

/// Whether asking a server for newer ops worked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Asked {
    Answered,
    Failed,
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
    pub async fn server_keys(&self, server: &ServerName) -> Result<ServerKeys, String> {
        self.online_keys(server, self.inner.clock.now_ms())
            .await
            .map(|(k, _)| k)
    }

    async fn online_keys(
        &self,
        server: &ServerName,
        now: Millis,
    ) -> Result<(ServerKeys, Value), String> {
        let inner = &self.inner;
        if let Some(hit) = inner.keys.fresh(server, now, inner.config.max_key_cache_ms) {
            return Ok(hit);
        }
        if inner.config.offline {
            return Err(format!(
                "offline: {server}'s keys were not fetched (the resolver is offline)"
            ));
        }
        let base = inner.discovery.base_url(&inner.client, server, now).await;
        let url = endpoint(&base, &["_matrix", "key", "v2", "server"]);
        let doc = inner
            .client
            .get_json(&url)
            .await
            .map_err(|e| format!("cannot fetch {server}'s keys: {e}"))?;
        let keys = server_keys::verify(&doc, server)
            .map_err(|e| format!("{server}'s key document does not verify: {e}"))?;
        if keys.is_expired(now) {
            return Err(format!(
                "{server}'s key document expired at {}",
                rfc3339(keys.valid_until_ts)
            ));
        }
        inner.keys.insert(keys.clone(), doc.clone(), now);
        Ok((keys, doc))
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

    async fn resolve_user_impl(&self, user: &UserId) -> ResolveResult {
        let now = self.inner.clock.now_ms();
        if self.is_offline() {
            return self.offline_resolve(Subject::User(user), now).await;
        }
        let domain = user.server_name();
        let base = self
            .inner
            .discovery
            .base_url(&self.inner.client, &domain, now)
            .await;
        let url = endpoint(&base, &Subject::User(user).path());
        let value = match self.inner.client.get_json(&url).await {
            Ok(v) => v,
            Err(e) if e.is_not_found() => {
                return Err(ResolveError::NotFound {
                    subject: user.to_string(),
                    detail: format!("{domain} has no such user"),
                });
            }
            Err(FetchError::Json { url, reason }) => {
                return Err(ResolveError::Invalid(format!(
                    "{url} answered with invalid JSON: {reason}"
                )));
            }
            Err(e) => {
                let tried = vec![e.to_string()];
                return self.lan_resolve(Subject::User(user), now, tried).await;
            }
        };
        let online = match self.verify_online(&domain, &url, &value, None, now).await {
            Ok(o) => o,
            Err(OnlineFailure::Resolve(e)) => return Err(e),
            Err(OnlineFailure::Unreachable(reason)) => {
                return self
                    .lan_resolve(Subject::User(user), now, vec![reason])
                    .await;
            }
        };
        let vb = &online.bundle;
        let did = vb.log.state.did.clone();
        match vb.binding(user, now) {
            Attested::Current { .. } => {}
            Attested::Expired { valid_until } => {
                return Err(ResolveError::Unbound {
                    user_id: user.clone(),
                    did: Box::new(did),
                    reason: format!(
                        "{domain}'s attestation of the binding expired at {}",
                        rfc3339(valid_until)
                    ),
                });
            }
            Attested::Missing => {
                let reason = if vb.log.state.user_ids.contains(user) {
                    format!("{domain} does not attest that {user} belongs to this account")
                } else {
                    format!("the account's log does not claim {user}")
                };
                return Err(ResolveError::Unbound {
                    user_id: user.clone(),
                    did: Box::new(did),
                    reason,
                });
            }
        }
        let mut servers = vb.log.state.servers.clone();
        servers.push(domain.clone());
        self.remember_servers(&did, &servers);
        Ok(build_resolution(
            Some(user),
            online,
            ResolveStatus::Verified,
            now,
            Source::Origin {
                server: domain,
                url: base.to_string(),
            },
        ))
    }

    async fn resolve_did_impl(&self, did: &Did, hints: &[ServerName]) -> ResolveResult {
        let now = self.inner.clock.now_ms();
        if self.is_offline() {
            return self.offline_resolve(Subject::Did(did), now).await;
        }
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
        let mut tried = Vec::new();
        let mut not_found = Vec::new();
        for server in &candidates {
            let base = self
                .inner
                .discovery
                .base_url(&self.inner.client, server, now)
                .await;
            let url = endpoint(&base, &Subject::Did(did).path());
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
                Ok(online) => {
                    self.remember_servers(did, &online.bundle.log.state.servers);
                    return Ok(build_resolution(
                        None,
                        online,
                        ResolveStatus::Verified,
                        now,
                        Source::Origin {
                            server: server.clone(),
                            url: base.to_string(),
                        },
                    ));
                }
                Err(OnlineFailure::Resolve(e)) => return Err(e),
                Err(OnlineFailure::Unreachable(reason)) => tried.push(reason),
            }
        }
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

    /// Verifies a bundle fetched online from `server`, then follows the account's servers for
    /// newer ops.
    async fn verify_online(
        &self,
        server: &ServerName,
        url: &Url,
        value: &Value,
        expected: Option<&Did>,
        now: Millis,
    ) -> Result<Online, OnlineFailure> {
        let invalid = |m: String| OnlineFailure::Resolve(ResolveError::Invalid(m));
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
        let mut warnings = Vec::new();
        let mut pool = OpPool::new(b.did.clone());
        pool.add_source(&b.log, now)
            .map_err(|e| invalid(format!("{server}'s log does not verify: {e}")))?;

        // Attestations: each verified with keys fetched from the attesting server itself.
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
        let attesters: Vec<ServerName> = {
            let mut s: Vec<ServerName> =
                parsed.iter().map(|(_, a)| a.server_name.clone()).collect();
            s.sort();
            s.dedup();
            s
        };
        let fetched = join_all(attesters.iter().map(|s| self.online_keys(s, now))).await;
        let mut keys: BTreeMap<ServerName, (ServerKeys, Value)> = BTreeMap::new();
        for (s, r) in attesters.iter().zip(fetched) {
            match r {
                Ok(k) => {
                    keys.insert(s.clone(), k);
                }
                // The user ID's own domain just answered, so failing to get its keys means
                // nothing can be confirmed: that is "unreachable", not a partial answer.
                Err(e) if s == server => return Err(OnlineFailure::Unreachable(e)),
                Err(e) => warnings.push(format!("attestations by {s} were not checked: {e}")),
            }
        }
        // Carried key documents must agree with what the servers themselves publish.
        for doc in &b.server_keys {
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
        let mut attestations: Vec<(Value, Attestation)> = Vec::new();
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

        // Follow the log's servers: the primary first, backups when it fails, again whenever
        // newer ops name a new primary.
        let mut asked: HashMap<ServerName, Asked> = HashMap::new();
        asked.insert(server.clone(), Asked::Answered);
        let budget =
            self.inner.config.max_follow_rounds * (roam_identity_core::log::MAX_SERVERS + 1);
        for _ in 0..budget {
            let (candidates, since) = match pool.verify(now) {
                Ok(log) => (log.state.servers.clone(), epoch_start_seq(&log) + 1),
                // Forked evidence: any server the ops name may hold the settling rotate.
                Err(_) => (servers_named(&pool), 0),
            };
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
            let outcome = self.fetch_newer(&next, &b.did, since, now).await;
            match outcome.and_then(|ops| {
                pool.add_source(&ops, now)
                    .map_err(|e| format!("{next} served operations that do not verify with the rest of the log ({e}); ignored"))
            }) {
                Ok(_) => {
                    asked.insert(next, Asked::Answered);
                }
                Err(w) => {
                    warnings.push(w);
                    asked.insert(next, Asked::Failed);
                }
            }
        }

        let log = pool.verify(now).map_err(|e| match e {
            LogError::Equivocation { a, b } => {
                OnlineFailure::Resolve(ResolveError::Equivocation { a, b })
            }
            other => invalid(format!("the merged log does not verify: {other}")),
        })?;
        let used: HashSet<&ServerName> = attestations.iter().map(|(_, a)| &a.server_name).collect();
        let server_keys: BTreeMap<ServerName, ServerKeys> = keys
            .iter()
            .filter(|(s, _)| used.contains(s))
            .map(|(s, (k, _))| (s.clone(), k.clone()))
            .collect();
        let wire = Bundle {
            did: b.did.clone(),
            log: all_op_values(&log),
            attestations: attestations.iter().map(|(v, _)| v.clone()).collect(),
            server_keys: keys
                .iter()
                .filter(|(s, _)| used.contains(s))
                .map(|(_, (_, doc))| doc.clone())
                .collect(),
            fetched_at: now,
            source: url.to_string(),
        };
        Ok(Online {
            bundle: VerifiedBundle {
                log,
                attestations: attestations.into_iter().map(|(_, a)| a).collect(),
                server_keys,
                fetched_at: now,
                source: url.to_string(),
            },
            wire,
            warnings,
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
        let base = self
            .inner
            .discovery
            .base_url(&self.inner.client, server, now)
            .await;
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
    /// with the keys it carries, cross-checked against keys cached earlier.
    async fn lan_resolve(
        &self,
        subject: Subject<'_>,
        now: Millis,
        mut tried: Vec<String>,
    ) -> ResolveResult {
        let peers = self.inner.lan.list();
        if peers.is_empty() {
            return Err(ResolveError::Unreachable {
                subject: subject.describe(),
                tried,
            });
        }
        let path = subject.path();
        let answers = join_all(peers.iter().map(|p| {
            let url = endpoint(p, &path);
            async move { (p.clone(), self.inner.client.get_json(&url).await) }
        }))
        .await;
        let mut warnings: Vec<String> = tried
            .iter()
            .map(|t| format!("origin not reachable: {t}"))
            .collect();
        let mut accepted: Vec<(Url, Bundle, VerifiedBundle)> = Vec::new();
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
        if accepted.is_empty() {
            tried.extend(warnings.into_iter().filter(|w| w.starts_with("LAN peer")));
            return Err(ResolveError::Unreachable {
                subject: subject.describe(),
                tried,
            });
        }
        // Peers may disagree on which DID a user ID names (an old binding); the one whose
        // binding was confirmed most recently wins, the others are named.
        let chosen_did = match subject {
            Subject::Did(d) => d.clone(),
            Subject::User(u) => accepted
                .iter()
                .max_by_key(|(_, _, vb)| binding_confirmed_at(vb, u))
                .map(|(_, b, _)| b.did.clone())
                .unwrap_or_else(|| unreachable!("accepted is not empty")),
        };
        let mut pool = OpPool::new(chosen_did.clone());
        let mut used_peers = Vec::new();
        let mut attestations: Vec<(Value, Attestation)> = Vec::new();
        let mut key_docs: BTreeMap<ServerName, (ServerKeys, Value)> = BTreeMap::new();
        for (peer, b, vb) in accepted {
            if b.did != chosen_did {
                warnings.push(format!(
                    "LAN peer {peer} names another account ({}) for {}; ignored",
                    b.did,
                    subject.describe()
                ));
                continue;
            }
            if let Err(e) = pool.add_source(&b.log, now) {
                warnings.push(format!(
                    "LAN peer {peer}'s log does not verify with the other peers' ({e}); ignored"
                ));
                continue;
            }
            for (v, a) in b.attestations.iter().zip(vb.attestations.iter()) {
                if !attestations.iter().any(|(w, _)| w == v) {
                    attestations.push((v.clone(), a.clone()));
                }
            }
            for doc in &b.server_keys {
                if let Some(name) = doc.get("server_name").and_then(Value::as_str)
                    && let Some(k) = vb
                        .server_keys
                        .values()
                        .find(|k| k.server_name.as_str() == name)
                {
                    key_docs
                        .entry(k.server_name.clone())
                        .or_insert_with(|| (k.clone(), doc.clone()));
                }
            }
            used_peers.push(peer.to_string());
        }
        let log = pool.verify(now).map_err(|e| match e {
            LogError::Equivocation { a, b } => ResolveError::Equivocation { a, b },
            other => ResolveError::Invalid(format!(
                "the LAN peers' merged log does not verify: {other}"
            )),
        })?;
        let vb = VerifiedBundle {
            log,
            attestations: attestations.iter().map(|(_, a)| a.clone()).collect(),
            server_keys: key_docs
                .iter()
                .map(|(s, (k, _))| (s.clone(), k.clone()))
                .collect(),
            fetched_at: now,
            source: used_peers.join(", "),
        };
        if let Subject::User(u) = subject
            && vb.binding(u, now) == Attested::Missing
        {
            return Err(ResolveError::Unbound {
                user_id: u.clone(),
                did: Box::new(chosen_did),
                reason: "the LAN peers' merged log no longer claims it".to_owned(),
            });
        }
        let wire = Bundle {
            did: chosen_did,
            log: all_op_values(&vb.log),
            attestations: attestations.into_iter().map(|(v, _)| v).collect(),
            server_keys: key_docs.into_values().map(|(_, d)| d).collect(),
            fetched_at: now,
            source: vb.source.clone(),
        };
        let user = match subject {
            Subject::User(u) => Some(u),
            Subject::Did(_) => None,
        };
        Ok(build_resolution(
            user,
            Online {
                bundle: vb,
                wire,
                warnings,
            },
            ResolveStatus::Lan,
            now,
            Source::Lan { peers: used_peers },
        ))
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
        let expected = match subject {
            Subject::Did(d) => Some(d),
            Subject::User(_) => None,
        };
        let vb = bundle::verify(&b, expected, now).map_err(|e| e.to_string())?;
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
        if let Subject::User(u) = subject
            && vb.binding(u, now) == Attested::Missing
        {
            return Err(format!("it does not bind {u} to {}", b.did));
        }
        Ok((b, vb))
    }
}

/// Why online verification stopped.
enum OnlineFailure {
    /// A definite answer (invalid evidence, equivocation).
    Resolve(ResolveError),
    /// Something needed could not be fetched.
    Unreachable(String),
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

fn binding_confirmed_at(vb: &VerifiedBundle, user: &UserId) -> Option<Millis> {
    vb.attestations
        .iter()
        .filter(|a| a.binds(user))
        .map(|a| a.issued_at)
        .max()
}

fn build_resolution(
    user: Option<&UserId>,
    online: Online,
    status: ResolveStatus,
    now: Millis,
    source: Source,
) -> Resolution {
    let vb = &online.bundle;
    let st = &vb.log.state;
    let user_ids: Vec<UserId> = match status {
        // Offline, an expired attestation still says what was once confirmed.
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
        warnings: online.warnings,
        bundle: Arc::new(online.wire),
    }
}

impl Resolver for NetworkResolver {
    fn resolve_user<'a>(&'a self, user_id: &'a UserId) -> BoxFuture<'a, ResolveResult> {
        self.resolve_user_impl(user_id).boxed()
    }

    fn resolve_did_via<'a>(
        &'a self,
        did: &'a Did,
        hints: &'a [ServerName],
    ) -> BoxFuture<'a, ResolveResult> {
        self.resolve_did_impl(did, hints).boxed()
    }

    fn is_offline(&self) -> bool {
        NetworkResolver::is_offline(self)
    }
}
