//! Online, steps 2 and 3: verifying what one server served (the log, each attestation with
//! its attester's own keys, the key documents it carries, the binding), then following the
//! account's primary and backups for newer ops. Merging them is [`super::merged_log`].

use std::collections::{HashMap, HashSet};

use futures::future::join_all;
use roam_identity_core::attestation::{self, Attestation};
use roam_identity_core::bundle::{Attested, Bundle, VerifiedBundle};
use roam_identity_core::log::{Action, VerifiedLog};
use roam_identity_core::server_keys::{self, ServerKeys};
use roam_identity_core::{Did, Millis, ServerName, UserId};
use serde_json::Value;
use url::Url;

use super::{AttestationList, Evidence, KeyDocs, NetworkResolver, merged_log};
use crate::clock::rfc3339;
use crate::discovery::endpoint;
use crate::error::ResolveError;
use crate::keys::{KeyFetchError, check_agreement};
use crate::merge::OpPool;
use crate::resolution::{Notice, notice};

/// Whether asking a server for newer ops worked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Asked {
    Answered,
    Failed,
}

/// Why online verification stopped.
pub(super) enum OnlineFailure {
    /// A definite answer (invalid evidence, equivocation).
    Resolve(ResolveError),
    /// Something needed could not be fetched.
    Unreachable(String),
}

pub(super) fn invalid(message: String) -> OnlineFailure {
    OnlineFailure::Resolve(ResolveError::Invalid(message))
}

impl NetworkResolver {
    /// `server`'s keys, from the server itself (or fetched earlier and still fresh); never
    /// fetched offline.
    pub(super) async fn online_keys(
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
            .get_json_revalidated(&url)
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

    /// Verifies a bundle fetched online from `server` (log, attestations with each
    /// attester's own keys, carried key documents), then follows the account's servers for
    /// newer ops and merges them with the fork rules.
    pub(super) async fn verify_online(
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
        let mut notices = Vec::new();
        let mut keys = self
            .fetch_attester_keys(server, &parsed, now, &mut warnings, &mut notices)
            .await?;
        self.check_carried_keys(server, &b.server_keys, &keys)?;
        let attestations = verify_attestations(server, parsed, &keys, now)?;
        self.follow_servers(server, &b.did, &mut pool, now, &mut warnings, &mut notices)
            .await;
        let log = merged_log(&pool, now, "the merged log").map_err(OnlineFailure::Resolve)?;
        // Only the key documents an attestation was verified with travel with the bundle.
        let used: HashSet<ServerName> = attestations
            .iter()
            .map(|(_, a)| a.server_name.clone())
            .collect();
        keys.retain(|s, _| used.contains(s));
        let source = url.to_string();
        let mut evidence =
            Evidence::assemble(b.did, log, attestations, keys, source, now, warnings);
        evidence.notices = notices;
        Ok(evidence)
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
        notices: &mut Vec<Notice>,
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
                Err(e) => {
                    notices.push(Notice::new(notice::ATTESTATION_UNCHECKED).server(s));
                    warnings.push(format!("attestations by {s} were not checked: {e}"));
                }
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
        notices: &mut Vec<Notice>,
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
                Err((code, w)) => {
                    notices.push(Notice::new(code).server(&next));
                    warnings.push(w);
                    asked.insert(next, Asked::Failed);
                }
            }
        }
    }

    /// Asks `server` for ops from `since` on and adds them to `pool`; the error is the
    /// notice code and the warning to give.
    async fn merge_newer_from(
        &self,
        server: &ServerName,
        did: &Did,
        since: u64,
        pool: &mut OpPool,
        now: Millis,
    ) -> Result<(), (&'static str, String)> {
        let ops = self.fetch_newer(server, did, since, now).await?;
        pool.add_source(&ops, now).map(drop).map_err(|e| {
            (
                notice::SOURCE_REJECTED,
                format!(
                    "{server} served operations that do not verify with the rest of the log ({e}); ignored"
                ),
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
    ) -> Result<Vec<Value>, (&'static str, String)> {
        if self.is_offline() {
            return Err((
                notice::OFFLINE,
                format!(
                    "offline: {server} was not asked for newer operations (the resolver is offline)"
                ),
            ));
        }
        let base = self.discover(server, now).await;
        let mut url = endpoint(&base, &["_roam", "v1", "accounts", did.as_str(), "log"]);
        url.set_query(Some(&format!("since={since}")));
        let v = self
            .inner
            .client
            .get_json_revalidated(&url)
            .await
            .map_err(|e| {
                if e.is_not_found() {
                    (
                        notice::SERVER_NOT_FOUND,
                        format!("{server} does not know the account ({e})"),
                    )
                } else {
                    (
                        notice::SERVER_UNREACHABLE,
                        format!("{server} could not be asked for newer operations: {e}"),
                    )
                }
            })?;
        v.get("ops")
            .and_then(Value::as_array)
            .cloned()
            .ok_or_else(|| {
                (
                    notice::SOURCE_REJECTED,
                    format!("{server} answered {url} without an \"ops\" array; ignored"),
                )
            })
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
pub(crate) fn check_binding(
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
