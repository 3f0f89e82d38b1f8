//! Failover by user ID (spec §10.2): the user ID's own domain cannot be reached, but the
//! caller (the cache) verified the account earlier. The account's servers, primary first,
//! are asked for `/_roam/v1/accounts/{did}`; the first whose evidence verifies (with its own
//! keys, followed for newer ops) is merged with the evidence verified earlier under the fork
//! rules, and the binding is judged by the origin's attestation verified earlier — still
//! counted while unexpired. The answer says who confirmed the log, when, and until when the
//! binding holds ([`notice`] codes).
//!
//! [`failover_answer`] is the decision, pure: the network path here and the vector model
//! ([`crate::decide`]) both call it.

use roam_identity_core::attestation::Attestation;
use roam_identity_core::bundle::{self, Bundle, VerifiedBundle};
use roam_identity_core::log::VerifiedLog;
use roam_identity_core::server_keys::ServerKeys;
use roam_identity_core::{Millis, ServerName, UserId};
use serde_json::Value;
use url::Url;

use super::verify::OnlineFailure;
use super::{AttestationList, Evidence, KeyDocs, NetworkResolver, build_resolution, merged_log};
use crate::ResolveResult;
use crate::clock::rfc3339;
use crate::discovery::endpoint;
use crate::error::ResolveError;
use crate::keys::check_agreement;
use crate::merge::{HeadRelation, OpPool, relation_to};
use crate::resolution::{KnownAccount, Notice, Resolution, ResolveStatus, Source, notice};

/// What one account server answered, verified on its own.
pub(crate) struct Confirmation {
    /// The server that answered.
    pub server: ServerName,
    /// Its base URL (the answer's `source`).
    pub url: String,
    /// Its evidence (online: verified with its own keys and followed for newer ops).
    pub evidence: Evidence,
}

/// The decision about one confirmation.
pub(crate) enum FailoverOutcome {
    /// A definite answer (`verified`, `stale`, or `unbound`, `equivocation`, `invalid`).
    Answer(Box<ResolveResult>),
    /// This server's evidence cannot be used (the reason); the next server is asked.
    Rejected(String),
}

fn fail(e: ResolveError) -> FailoverOutcome {
    FailoverOutcome::Answer(Box::new(Err(e)))
}

/// The key documents of a verified bundle with their wire values, by server.
pub(crate) fn key_docs_of(wire: &Bundle, vb: &VerifiedBundle) -> KeyDocs {
    let mut out = KeyDocs::new();
    for doc in &wire.server_keys {
        if let Some(k) = doc
            .get("server_name")
            .and_then(Value::as_str)
            .and_then(|n| {
                vb.server_keys
                    .values()
                    .find(|k| k.server_name.as_str() == n)
            })
        {
            out.entry(k.server_name.clone())
                .or_insert_with(|| (k.clone(), doc.clone()));
        }
    }
    out
}

/// The §10.2 rule. `known` is what was verified earlier (its key documents were fetched from
/// the attesting servers themselves); `origin_keys` are the origin's keys this resolver still
/// remembers, if any, which the carried ones must agree with. `notices` and `warnings` say
/// what was tried before (the origin, servers that failed).
pub(crate) fn failover_answer(
    user: &UserId,
    known: &KnownAccount,
    origin_keys: Option<&ServerKeys>,
    confirmation: Confirmation,
    notices: Vec<Notice>,
    warnings: Vec<String>,
    now: Millis,
) -> FailoverOutcome {
    match decide_failover(
        user,
        known,
        origin_keys,
        confirmation,
        Said { notices, warnings },
        now,
    ) {
        Ok(r) => FailoverOutcome::Answer(Box::new(Ok(r))),
        Err(outcome) => outcome,
    }
}

/// What the answer says so far: notices for programs, warnings for people.
struct Said {
    notices: Vec<Notice>,
    warnings: Vec<String>,
}

impl Said {
    /// A server whose answer is not used: its notice (`code`), a warning for people, and
    /// the reason in `tried`.
    fn passed_over(
        &mut self,
        tried: &mut Vec<String>,
        code: &'static str,
        server: &ServerName,
        warning: String,
        reason: String,
    ) {
        self.notices.push(Notice::new(code).server(server));
        self.warnings.push(warning);
        tried.push(reason);
    }
}

/// The steps of §10.2's failover, in the spec's order: what was verified earlier still
/// verifies and agrees with the origin's keys; the origin's attestation binds `user`; the
/// merged log still claims `user` (else `unbound`; a fork is `equivocation`); the server
/// confirmed the merged head (else `downgrade_refused`); the attestation is unexpired (else
/// `binding_expired`). `verified` only when both hold, `stale` otherwise.
fn decide_failover(
    user: &UserId,
    known: &KnownAccount,
    origin_keys: Option<&ServerKeys>,
    confirmation: Confirmation,
    mut said: Said,
    now: Millis,
) -> Result<Resolution, FailoverOutcome> {
    let Confirmation {
        server,
        url,
        evidence,
    } = confirmation;
    let (earlier, earlier_keys) = earlier_evidence(user, known, origin_keys, now)?;
    let (origin_atts, binding) = origin_binding(user, known, &earlier, now)?;
    let log = merge_with_earlier(known, &server, &evidence, now)?;
    still_claimed(user, known, &server, &log)?;
    let downgrade = !confirms_head(&mut said, &server, &evidence, &log, now);
    note_recovery(&mut said, &log, &earlier);
    let bound_now = note_binding(&mut said, user, &binding, now);
    let status = if bound_now && !downgrade {
        ResolveStatus::Verified
    } else {
        ResolveStatus::Stale
    };
    let domain = user.server_name();
    let (attestations, keys) = with_origin_evidence(&evidence, origin_atts, &earlier_keys, &domain);
    say_followed(&mut said, &domain, evidence.warnings, evidence.notices);
    let assembled = Evidence::assemble(
        known.did.clone(),
        log,
        attestations,
        keys,
        url.clone(),
        now,
        said.warnings,
    );
    let source = Source::Origin { server, url };
    let mut r = build_resolution(Some(user), assembled, status, now, source);
    r.last_confirmed = Some(binding.issued_at);
    r.notices = said.notices;
    if status == ResolveStatus::Stale {
        r.verified_at = known.verified_at;
    }
    Ok(r)
}

/// What was verified earlier must still verify, and the origin's key document it carries
/// must agree with the origin's keys this resolver still remembers.
fn earlier_evidence(
    user: &UserId,
    known: &KnownAccount,
    origin_keys: Option<&ServerKeys>,
    now: Millis,
) -> Result<(VerifiedBundle, KeyDocs), FailoverOutcome> {
    let domain = user.server_name();
    let earlier = bundle::verify(&known.bundle, Some(&known.did), now).map_err(|e| {
        fail(ResolveError::Invalid(format!(
            "the evidence verified earlier for {user} no longer verifies: {e}"
        )))
    })?;
    let earlier_keys = key_docs_of(&known.bundle, &earlier);
    if let (Some(k), Some((carried, _))) = (origin_keys, earlier_keys.get(&domain))
        && let Err(e) = check_agreement(k, carried, false)
    {
        return Err(fail(ResolveError::Invalid(format!(
            "the key document of {domain} verified earlier disagrees with {domain}'s keys: {e}"
        ))));
    }
    Ok((earlier, earlier_keys))
}

/// The origin's attestations of the binding, verified earlier with its own keys, and the one
/// the binding is judged by: the current one lasting longest, else the latest to expire.
fn origin_binding(
    user: &UserId,
    known: &KnownAccount,
    earlier: &VerifiedBundle,
    now: Millis,
) -> Result<(AttestationList, Attestation), FailoverOutcome> {
    let domain = user.server_name();
    let origin_atts: AttestationList = known
        .bundle
        .attestations
        .iter()
        .zip(earlier.attestations.iter())
        .filter(|(_, a)| a.server_name == domain && a.binds(user))
        .map(|(v, a)| (v.clone(), a.clone()))
        .collect();
    let current = origin_atts
        .iter()
        .filter(|(_, a)| a.is_current(now))
        .max_by_key(|(_, a)| a.valid_until);
    let latest = origin_atts.iter().max_by_key(|(_, a)| a.valid_until);
    let Some((_, latest)) = latest else {
        return Err(FailoverOutcome::Rejected(format!(
            "no attestation by {domain} binding {user} was verified earlier"
        )));
    };
    let binding = current.map(|(_, a)| a).unwrap_or(latest).clone();
    Ok((origin_atts, binding))
}

/// The union of what was verified earlier and what the server confirmed, under the fork
/// rules (a fork neither rule settles is `equivocation`).
fn merge_with_earlier(
    known: &KnownAccount,
    server: &ServerName,
    evidence: &Evidence,
    now: Millis,
) -> Result<VerifiedLog, FailoverOutcome> {
    let mut pool = OpPool::new(known.did.clone());
    if let Err(e) = pool.add_source(&known.bundle.log, now) {
        return Err(fail(ResolveError::Invalid(format!(
            "the log verified earlier no longer verifies: {e}"
        ))));
    }
    if let Err(e) = pool.add_source(&evidence.wire.log, now) {
        return Err(FailoverOutcome::Rejected(format!(
            "{server}'s log does not verify with the log verified earlier ({e})"
        )));
    }
    merged_log(&pool, now, "the merged log").map_err(fail)
}

/// The merged log no longer claims `user`: `unbound`.
fn still_claimed(
    user: &UserId,
    known: &KnownAccount,
    server: &ServerName,
    log: &VerifiedLog,
) -> Result<(), FailoverOutcome> {
    if log.state.user_ids.contains(user) {
        return Ok(());
    }
    Err(fail(ResolveError::Unbound {
        user_id: user.clone(),
        did: Box::new(known.did.clone()),
        reason: format!("the account's log, as confirmed by {server}, no longer claims it"),
    }))
}

/// Whether the server's log contains the merged head: `log_confirmed` if so, else the server
/// is behind and the downgrade is refused (`downgrade_refused`).
fn confirms_head(
    said: &mut Said,
    server: &ServerName,
    evidence: &Evidence,
    log: &VerifiedLog,
    now: Millis,
) -> bool {
    let served_head = evidence.bundle.log.state.head;
    let confirmed = evidence.bundle.log.contains(&log.state.head);
    if confirmed {
        said.notices.push(
            Notice::new(notice::LOG_CONFIRMED)
                .server(server)
                .at(now)
                .head(&log.state.head),
        );
        said.warnings.push(format!(
            "the log (head {}) was confirmed by {server} at {}",
            log.state.head,
            rfc3339(now)
        ));
    } else {
        said.notices.push(
            Notice::new(notice::DOWNGRADE_REFUSED)
                .server(server)
                .head(&served_head),
        );
        said.warnings.push(format!(
            "refused a downgrade: {server} served head {served_head}, older than the head verified earlier; keeping {}",
            log.state.head
        ));
    }
    confirmed
}

/// A recovery rotate that superseded the head verified earlier is said (`recovered`).
fn note_recovery(said: &mut Said, log: &VerifiedLog, earlier: &VerifiedBundle) {
    let earlier_head = earlier.log.state.head;
    if relation_to(log, &earlier_head) == HeadRelation::Recovered {
        said.notices
            .push(Notice::new(notice::RECOVERED).head(&earlier_head));
        said.warnings.push(format!(
            "a recovery rotate superseded the head verified earlier ({earlier_head}); the owner's recovery key took over"
        ));
    }
}

/// Whether the origin's attestation is unexpired: the binding rests on it
/// (`binding_from_attestation`), or it has expired (`binding_expired`).
fn note_binding(said: &mut Said, user: &UserId, binding: &Attestation, now: Millis) -> bool {
    let domain = user.server_name();
    let bound_now = binding.is_current(now);
    if bound_now {
        said.notices.push(
            Notice::new(notice::BINDING_FROM_ATTESTATION)
                .server(&domain)
                .at(binding.issued_at)
                .until(binding.valid_until),
        );
        said.warnings.push(format!(
            "the binding of {user} rests on {domain}'s attestation issued at {} and valid until {}, verified earlier; {domain} could not confirm it now",
            rfc3339(binding.issued_at),
            rfc3339(binding.valid_until)
        ));
    } else {
        said.notices.push(
            Notice::new(notice::BINDING_EXPIRED)
                .server(&domain)
                .until(binding.valid_until),
        );
        said.warnings.push(format!(
            "{domain}'s attestation of {user} expired at {}; the binding is not confirmed now",
            rfc3339(binding.valid_until)
        ));
    }
    bound_now
}

/// The answer's evidence: the server's attestations and key documents, plus the origin's
/// attestations and key document verified earlier, so it re-verifies anywhere.
fn with_origin_evidence(
    evidence: &Evidence,
    origin_atts: AttestationList,
    earlier_keys: &KeyDocs,
    domain: &ServerName,
) -> (AttestationList, KeyDocs) {
    let mut attestations: AttestationList = evidence
        .wire
        .attestations
        .iter()
        .cloned()
        .zip(evidence.bundle.attestations.iter().cloned())
        .collect();
    for (v, a) in origin_atts {
        if !attestations.iter().any(|(w, _)| w == &v) {
            attestations.push((v, a));
        }
    }
    let mut keys = key_docs_of(&evidence.wire, &evidence.bundle);
    if let Some(doc) = earlier_keys.get(domain) {
        keys.entry(domain.clone()).or_insert_with(|| doc.clone());
    }
    (attestations, keys)
}

/// What following the account's servers found, except the origin's failure (said first)
/// and what was already said about a server asked before.
fn say_followed(said: &mut Said, domain: &ServerName, warnings: Vec<String>, notices: Vec<Notice>) {
    said.warnings.extend(warnings);
    for n in notices {
        if n.server.as_ref() != Some(domain) && !said.notices.contains(&n) {
            said.notices.push(n);
        }
    }
}

impl NetworkResolver {
    /// The origin is down and nothing was verified earlier: LAN peers may name the account;
    /// then its servers are asked too (spec §10.2). The binding still rests on key documents
    /// a LAN peer carried, so the answer stays `lan` — with the log the server confirmed
    /// (`log_confirmed`). Equivocation and a released user ID found that way are answers too.
    pub(super) async fn lan_then_failover(
        &self,
        user: &UserId,
        now: Millis,
        tried: Vec<String>,
    ) -> ResolveResult {
        let lan = self
            .lan_resolve(super::Subject::User(user), now, tried.clone())
            .await?;
        let known = KnownAccount::of(&lan);
        let mut tried = tried;
        match self.failover(user, &known, &mut tried, now).await {
            Some(Ok(mut r)) => {
                r.status = ResolveStatus::Lan;
                r.verified_at = now;
                r.source = lan.source.clone();
                r.warnings.insert(
                    0,
                    format!(
                        "the account was learned from LAN peers: the binding rests on key documents they carried, not on keys fetched from {}",
                        user.server_name()
                    ),
                );
                Ok(r)
            }
            Some(Err(e @ (ResolveError::Equivocation { .. } | ResolveError::Unbound { .. }))) => {
                Err(e)
            }
            Some(Err(_)) | None => Ok(lan),
        }
    }

    /// Asks the account's servers (primary first, then backups; the origin is skipped: it was
    /// just found unreachable) until one's evidence settles the answer. `None` when none
    /// could; `tried` then lists why.
    pub(super) async fn failover(
        &self,
        user: &UserId,
        known: &KnownAccount,
        tried: &mut Vec<String>,
        now: Millis,
    ) -> Option<ResolveResult> {
        let domain = user.server_name();
        let mut said = Said {
            notices: vec![Notice::new(notice::ORIGIN_UNREACHABLE).server(&domain)],
            warnings: tried
                .iter()
                .map(|t| format!("origin {domain} not reachable: {t}"))
                .collect(),
        };
        for server in known.servers.iter().filter(|s| **s != domain) {
            let confirmation = match self
                .ask_account_server(server, known, &mut said, tried, now)
                .await
            {
                Ok(Some(c)) => c,
                Ok(None) => continue,
                Err(e) => return Some(Err(e)),
            };
            let origin_keys = self.inner.keys.known(&domain);
            match failover_answer(
                user,
                known,
                origin_keys.as_ref(),
                confirmation,
                said.notices.clone(),
                said.warnings.clone(),
                now,
            ) {
                FailoverOutcome::Answer(answer) => {
                    if let Ok(r) = answer.as_ref() {
                        self.remember_servers(&r.did, &r.servers);
                    }
                    return Some(*answer);
                }
                FailoverOutcome::Rejected(reason) => said.passed_over(
                    tried,
                    notice::SOURCE_REJECTED,
                    server,
                    format!("{server}'s answer was not used: {reason}"),
                    reason,
                ),
            }
        }
        None
    }

    /// Asks one account server for the account (`GET /_roam/v1/accounts/{did}`) and verifies
    /// its evidence with its own keys, followed for newer ops. `None` when the server is
    /// unreachable, does not know the account or its evidence does not verify (said, and the
    /// next server is asked); an equivocation found on the way is the answer.
    async fn ask_account_server(
        &self,
        server: &ServerName,
        known: &KnownAccount,
        said: &mut Said,
        tried: &mut Vec<String>,
        now: Millis,
    ) -> Result<Option<Confirmation>, ResolveError> {
        let path = ["_roam", "v1", "accounts", known.did.as_str()];
        let base: Url = self.discover(server, now).await;
        let url = endpoint(&base, &path);
        let value = match self.inner.client.get_json_revalidated(&url).await {
            Ok(v) => v,
            Err(e) if e.is_not_found() => {
                said.passed_over(
                    tried,
                    notice::SERVER_NOT_FOUND,
                    server,
                    format!("{server} does not know the account"),
                    format!("{server} does not know {}", known.did),
                );
                return Ok(None);
            }
            Err(e) => {
                said.passed_over(
                    tried,
                    notice::SERVER_UNREACHABLE,
                    server,
                    format!("{server} not reachable: {e}"),
                    e.to_string(),
                );
                return Ok(None);
            }
        };
        let evidence = match self
            .verify_online(server, &url, &value, Some(&known.did), now)
            .await
        {
            Ok(ev) => ev,
            Err(OnlineFailure::Resolve(e @ ResolveError::Equivocation { .. })) => return Err(e),
            Err(OnlineFailure::Resolve(e)) => {
                said.passed_over(
                    tried,
                    notice::SOURCE_REJECTED,
                    server,
                    format!("{server}'s answer was rejected: {e}"),
                    e.to_string(),
                );
                return Ok(None);
            }
            Err(OnlineFailure::Unreachable(reason)) => {
                said.passed_over(
                    tried,
                    notice::SERVER_UNREACHABLE,
                    server,
                    format!("{server} not reachable: {reason}"),
                    reason,
                );
                return Ok(None);
            }
        };
        Ok(Some(Confirmation {
            server: server.clone(),
            url: base.to_string(),
            evidence,
        }))
    }
}
