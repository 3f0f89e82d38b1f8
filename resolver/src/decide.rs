//! The answer as a function of data (spec §10.4): given what the cache holds, what each source
//! returned (a bundle, unreachable, not found), the time and the TTL, which answer — status,
//! account, servers, head, notices — or which error a resolver gives. No I/O, no clock.
//!
//! This is the model the vectors of `spec/vectors/resolution.json` are checked against, and a
//! conformance runner's entry point ([`run_conformance`]). It follows the network resolver and
//! the cache rule for rule and shares their decisions where they are pure: the failover rule
//! (`network::failover`), merging under the fork rules, the binding check, the
//! never-downgrade rule. What it does not model is transport: the vector lists exactly the
//! sources a resolver asked, in the order it asked them (§10.2 says which and when).
//!
//! Keys: online, a server's keys come from the server itself. In the model, the key document
//! a source carries *for itself* in its own answer stands for that fetch, and the documents in
//! the cached bundle for keys fetched earlier; a carried document for another server must
//! agree with the one known for it (§6), and an attestation counts only when its attester's
//! keys are known that way.

use std::collections::BTreeMap;

use roam_identity_core::bundle::{self, Bundle, BundleError};
use roam_identity_core::log::LogError;
use roam_identity_core::server_keys::ServerKeys;
use roam_identity_core::{Did, Millis, ServerName, UserId};
use serde_json::{Value, json};

use crate::ResolveResult;
use crate::cache::{note_recovered, unreachable_notices, weigh_against};
use crate::error::ResolveError;
use crate::keys::check_agreement;
use crate::merge::{HeadRelation, OpPool};
use crate::network::failover::{Confirmation, FailoverOutcome, failover_answer, key_docs_of};
use crate::network::verify::check_binding;
use crate::network::{AttestationList, Evidence, build_resolution, merged_log};
use crate::resolution::{KnownAccount, Notice, Resolution, ResolveStatus, Source, notice};

/// What is asked about.
#[derive(Debug, Clone, PartialEq)]
pub enum Subject {
    /// A user ID, through its own domain.
    User(UserId),
    /// A DID, through the servers that host it.
    Did(Did),
}

/// The cache's record, if any.
#[derive(Debug, Clone, PartialEq)]
pub struct CachedInput {
    /// When it was verified online.
    pub verified_at: Millis,
    /// The server whose answer it was built from.
    pub source: ServerName,
    /// The evidence stored (a bundle that verified then).
    pub bundle: Bundle,
}

/// The part a source plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The user ID's own domain (`GET /_roam/v1/users/{user_id}`).
    Origin,
    /// One of the account's servers (`GET /_roam/v1/accounts/{did}`, or its `/log`).
    Account,
}

/// What a source returned.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceAnswer {
    /// A bundle (not yet verified).
    Bundle(Value),
    /// Nothing: connection refused, timeout, an error status other than 404.
    Unreachable,
    /// 404: it does not know the subject.
    NotFound,
}

/// One source asked, in the order it was asked.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceInput {
    /// Its server name.
    pub server: ServerName,
    /// Its part.
    pub role: Role,
    /// What it returned.
    pub answer: SourceAnswer,
}

/// Everything the decision depends on.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionInput {
    /// What is asked about.
    pub subject: Subject,
    /// The resolver's time.
    pub now: Millis,
    /// The cache's positive TTL.
    pub ttl_ms: Millis,
    /// The cache's record.
    pub cached: Option<CachedInput>,
    /// The sources asked, in order.
    pub sources: Vec<SourceInput>,
}

/// Why a decision input (the vector form) could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecisionInputError {
    #[error("missing {0:?}")]
    Missing(&'static str),
    #[error("{field:?} is not {expected}")]
    WrongType {
        field: &'static str,
        expected: &'static str,
    },
    #[error("{field:?}: {source}")]
    BadId {
        field: &'static str,
        source: roam_identity_core::IdError,
    },
    #[error("subject: {0}")]
    BadDid(roam_identity_core::DidError),
    #[error("cached bundle: {0}")]
    BadBundle(roam_identity_core::bundle::BundleError),
    #[error("unknown role {0:?}")]
    UnknownRole(Option<String>),
}

fn field<'v>(v: &'v Value, name: &'static str) -> Result<&'v Value, DecisionInputError> {
    v.get(name).ok_or(DecisionInputError::Missing(name))
}

fn int(v: &Value, name: &'static str) -> Result<Millis, DecisionInputError> {
    field(v, name)?
        .as_u64()
        .ok_or(DecisionInputError::WrongType {
            field: name,
            expected: "an integer",
        })
}

fn string<'v>(v: &'v Value, name: &'static str) -> Result<&'v str, DecisionInputError> {
    field(v, name)?
        .as_str()
        .ok_or(DecisionInputError::WrongType {
            field: name,
            expected: "a string",
        })
}

fn server(v: &Value, name: &'static str) -> Result<ServerName, DecisionInputError> {
    ServerName::parse(string(v, name)?).map_err(|source| DecisionInputError::BadId {
        field: name,
        source,
    })
}

impl DecisionInput {
    /// Reads the vector form (`spec/vectors/resolution.json`, `input`).
    pub fn from_value(v: &Value) -> Result<Self, DecisionInputError> {
        let subject = string(v, "subject")?;
        let subject = if subject.starts_with('@') {
            Subject::User(
                UserId::parse(subject).map_err(|source| DecisionInputError::BadId {
                    field: "subject",
                    source,
                })?,
            )
        } else {
            Subject::Did(Did::parse(subject).map_err(DecisionInputError::BadDid)?)
        };
        let cached = match v.get("cached") {
            None | Some(Value::Null) => None,
            Some(c) => Some(CachedInput {
                verified_at: int(c, "verified_at")?,
                source: server(c, "source")?,
                bundle: Bundle::from_value(field(c, "bundle")?)
                    .map_err(DecisionInputError::BadBundle)?,
            }),
        };
        let mut sources = Vec::new();
        let list = field(v, "sources")?
            .as_array()
            .ok_or(DecisionInputError::WrongType {
                field: "sources",
                expected: "an array",
            })?;
        for s in list {
            let role = match field(s, "role")?.as_str() {
                Some("origin") => Role::Origin,
                Some("account") => Role::Account,
                other => return Err(DecisionInputError::UnknownRole(other.map(str::to_owned))),
            };
            let answer = match field(s, "answer")? {
                Value::String(t) if t == "unreachable" => SourceAnswer::Unreachable,
                Value::String(t) if t == "not_found" => SourceAnswer::NotFound,
                a => SourceAnswer::Bundle(field(a, "bundle")?.clone()),
            };
            sources.push(SourceInput {
                server: server(s, "server")?,
                role,
                answer,
            });
        }
        Ok(Self {
            subject,
            now: int(v, "now")?,
            ttl_ms: int(v, "ttl_ms")?,
            cached,
            sources,
        })
    }
}

/// The answer for `input` (spec §10): the same [`Resolution`] or [`ResolveError`] a
/// [`crate::Cached`] over a [`crate::NetworkResolver`] gives when its sources return what
/// `input` says.
pub fn decide(input: &DecisionInput) -> ResolveResult {
    let now = input.now;
    let user = match &input.subject {
        Subject::User(u) => Some(u),
        Subject::Did(_) => None,
    };
    let cached = match &input.cached {
        Some(c) => Some(cached_resolution(c, user)?),
        None => None,
    };
    if let Some(c) = &cached
        && c.fresh_until(input.ttl_ms) > now
    {
        let who = user.cloned().or_else(|| c.user_ids.first().cloned());
        return Ok(relabel(
            c.clone(),
            who,
            ResolveStatus::Cached,
            c.notices.clone(),
        ));
    }
    let model = Model::new(input);
    match &input.subject {
        Subject::User(u) => model.user(u, cached),
        Subject::Did(d) => model.did(d, cached),
    }
}

/// The cached record as the cache holds it: the bundle's answer when it was verified.
fn cached_resolution(c: &CachedInput, user: Option<&UserId>) -> ResolveResult {
    let vb = bundle::verify(&c.bundle, None, c.verified_at)
        .map_err(|e| ResolveError::Invalid(format!("the cached bundle does not verify: {e}")))?;
    let evidence = Evidence {
        bundle: vb,
        wire: c.bundle.clone(),
        warnings: Vec::new(),
        notices: Vec::new(),
    };
    let source = origin(&c.source);
    Ok(build_resolution(
        user,
        evidence,
        ResolveStatus::Verified,
        c.verified_at,
        source,
    ))
}

fn origin(server: &ServerName) -> Source {
    Source::Origin {
        server: server.clone(),
        url: format!("https://{server}/"),
    }
}

fn relabel(
    mut r: Resolution,
    user: Option<UserId>,
    status: ResolveStatus,
    notices: Vec<Notice>,
) -> Resolution {
    r.user_id = user;
    r.status = status;
    r.notices = notices;
    r
}

/// The keys known for each server (see the module docs).
struct Model<'i> {
    input: &'i DecisionInput,
    keys: BTreeMap<ServerName, ServerKeys>,
}

impl<'i> Model<'i> {
    fn new(input: &'i DecisionInput) -> Self {
        let mut keys = BTreeMap::new();
        if let Some(c) = &input.cached
            && let Ok(vb) = bundle::verify(&c.bundle, None, c.verified_at)
        {
            keys.extend(vb.server_keys);
        }
        for s in &input.sources {
            if let SourceAnswer::Bundle(v) = &s.answer
                && let Ok(b) = Bundle::from_value(v)
                && let Ok(vb) = bundle::verify(&b, None, input.now)
                && let Some(k) = vb.server_keys.get(&s.server)
            {
                keys.insert(s.server.clone(), k.clone());
            }
        }
        Self { input, keys }
    }

    /// One source's bundle, verified as the online path does: every signature, carried key
    /// documents agreeing with the keys known, attestations kept only when their attester's
    /// keys are known.
    fn verify_source(
        &self,
        server: &ServerName,
        v: &Value,
        expected: Option<&Did>,
    ) -> Result<Evidence, ResolveError> {
        let now = self.input.now;
        let invalid = ResolveError::Invalid;
        let b = Bundle::from_value(v)
            .map_err(|e| invalid(format!("{server} served a bad bundle: {e}")))?;
        let vb = match bundle::verify(&b, expected, now) {
            Ok(vb) => vb,
            // Both ops are validly signed: the fork rules' verdict, not a bad source.
            Err(BundleError::Log(LogError::Equivocation { a, b })) => {
                return Err(ResolveError::Equivocation { a, b });
            }
            Err(e) => return Err(invalid(format!("{server}'s bundle does not verify: {e}"))),
        };
        for (name, carried) in &vb.server_keys {
            if let Some(known) = self.keys.get(name) {
                check_agreement(known, carried, false).map_err(|e| {
                    invalid(format!("{server}'s bundle carries a key document for {name} that disagrees with {name}'s keys: {e}"))
                })?;
            }
        }
        let mut warnings = Vec::new();
        let mut notices: Vec<Notice> = Vec::new();
        let attestations: AttestationList = b
            .attestations
            .iter()
            .cloned()
            .zip(vb.attestations.iter().cloned())
            .filter(|(_, a)| {
                let known = self.keys.contains_key(&a.server_name);
                if !known {
                    let n = Notice::new(notice::ATTESTATION_UNCHECKED).server(&a.server_name);
                    if !notices.contains(&n) {
                        notices.push(n);
                    }
                    warnings.push(format!(
                        "attestations by {} were not checked: its keys are not known",
                        a.server_name
                    ));
                }
                known
            })
            .collect();
        let mut keys = key_docs_of(&b, &vb);
        keys.retain(|s, _| attestations.iter().any(|(_, a)| &a.server_name == s));
        let mut evidence = Evidence::assemble(
            b.did.clone(),
            vb.log,
            attestations,
            keys,
            server.to_string(),
            now,
            warnings,
        );
        evidence.notices = notices;
        Ok(evidence)
    }

    fn account_sources(&self) -> impl Iterator<Item = &'i SourceInput> {
        self.input
            .sources
            .iter()
            .filter(|s| s.role == Role::Account)
    }

    /// The online path from a first answer: the account sources asked after it are followed
    /// for newer ops (a source whose ops do not verify with the rest is ignored).
    fn follow(&self, first: &ServerName, mut evidence: Evidence) -> Result<Evidence, ResolveError> {
        let now = self.input.now;
        let did = evidence.bundle.log.state.did.clone();
        let mut pool = OpPool::new(did.clone());
        pool.add_source(&evidence.wire.log, now)
            .map_err(|e| ResolveError::Invalid(format!("{first}'s log does not verify: {e}")))?;
        for s in self.account_sources().filter(|s| &s.server != first) {
            let code = match &s.answer {
                SourceAnswer::Unreachable => notice::SERVER_UNREACHABLE,
                SourceAnswer::NotFound => notice::SERVER_NOT_FOUND,
                // Following asks for ops only (`/log`): the bundle's log is what counts.
                SourceAnswer::Bundle(v) => match Bundle::from_value(v) {
                    Ok(b) if b.did == did && pool.add_source(&b.log, now).is_ok() => continue,
                    _ => notice::SOURCE_REJECTED,
                },
            };
            evidence.notices.push(Notice::new(code).server(&s.server));
        }
        let log = merged_log(&pool, now, "the merged log")?;
        let vb = &evidence.bundle;
        let attestations: AttestationList = evidence
            .wire
            .attestations
            .iter()
            .cloned()
            .zip(vb.attestations.iter().cloned())
            .collect();
        let keys = key_docs_of(&evidence.wire, vb);
        let mut out = Evidence::assemble(
            did,
            log,
            attestations,
            keys,
            first.to_string(),
            now,
            evidence.warnings,
        );
        out.notices = evidence.notices;
        Ok(out)
    }

    fn user(&self, user: &UserId, cached: Option<Resolution>) -> ResolveResult {
        let now = self.input.now;
        let domain = user.server_name();
        let answer = self
            .input
            .sources
            .iter()
            .find(|s| s.role == Role::Origin)
            .map_or(&SourceAnswer::Unreachable, |s| &s.answer);
        match answer {
            SourceAnswer::NotFound => Err(ResolveError::NotFound {
                subject: user.to_string(),
                detail: format!("{domain} has no such user"),
            }),
            SourceAnswer::Bundle(v) => {
                let first = self.verify_source(&domain, v, None)?;
                let evidence = self.follow(&domain, first)?;
                check_binding(&evidence.bundle, user, &domain, now)?;
                let fresh = build_resolution(
                    Some(user),
                    evidence,
                    ResolveStatus::Verified,
                    now,
                    origin(&domain),
                );
                Ok(settle(fresh, cached, Some(user), now))
            }
            SourceAnswer::Unreachable => {
                let Some(c) = cached else {
                    return Err(ResolveError::Unreachable {
                        subject: user.to_string(),
                        tried: vec![format!("{domain} could not be reached")],
                    });
                };
                if let Some(answer) = self.failover(user, &c) {
                    return answer.map(|fresh| settle(fresh, Some(c), Some(user), now));
                }
                Ok(stale(c, Some(user)))
            }
        }
    }

    /// §10.2: the account's servers, in the order asked.
    fn failover(&self, user: &UserId, c: &Resolution) -> Option<ResolveResult> {
        let domain = user.server_name();
        let known = KnownAccount::of(c);
        let mut notices = vec![Notice::new(notice::ORIGIN_UNREACHABLE).server(&domain)];
        let mut warnings = vec![format!("origin {domain} not reachable")];
        for s in self.account_sources() {
            let v = match &s.answer {
                SourceAnswer::Unreachable => {
                    notices.push(Notice::new(notice::SERVER_UNREACHABLE).server(&s.server));
                    continue;
                }
                SourceAnswer::NotFound => {
                    notices.push(Notice::new(notice::SERVER_NOT_FOUND).server(&s.server));
                    continue;
                }
                SourceAnswer::Bundle(v) => v,
            };
            let evidence = match self.verify_source(&s.server, v, Some(&known.did)) {
                Ok(ev) => ev,
                Err(e @ ResolveError::Equivocation { .. }) => return Some(Err(e)),
                Err(e) => {
                    notices.push(Notice::new(notice::SOURCE_REJECTED).server(&s.server));
                    warnings.push(e.to_string());
                    continue;
                }
            };
            let confirmation = Confirmation {
                server: s.server.clone(),
                url: format!("https://{}/", s.server),
                evidence,
            };
            match failover_answer(
                user,
                &known,
                None,
                confirmation,
                notices.clone(),
                warnings.clone(),
                self.input.now,
            ) {
                FailoverOutcome::Answer(a) => return Some(*a),
                FailoverOutcome::Rejected(reason) => {
                    notices.push(Notice::new(notice::SOURCE_REJECTED).server(&s.server));
                    warnings.push(reason);
                }
            }
        }
        None
    }

    fn did(&self, did: &Did, cached: Option<Resolution>) -> ResolveResult {
        let now = self.input.now;
        let mut not_found = 0;
        for s in self.account_sources() {
            let v = match &s.answer {
                SourceAnswer::Unreachable => continue,
                SourceAnswer::NotFound => {
                    not_found += 1;
                    continue;
                }
                SourceAnswer::Bundle(v) => v,
            };
            let first = self.verify_source(&s.server, v, Some(did))?;
            let evidence = self.follow(&s.server, first)?;
            let fresh = build_resolution(
                None,
                evidence,
                ResolveStatus::Verified,
                now,
                origin(&s.server),
            );
            return Ok(settle(fresh, cached, None, now));
        }
        match cached {
            Some(c) => Ok(stale(c, None)),
            None if not_found == self.account_sources().count() => Err(ResolveError::NotFound {
                subject: did.to_string(),
                detail: "no server asked knows it".to_owned(),
            }),
            None => Err(ResolveError::Unreachable {
                subject: did.to_string(),
                tried: vec!["no server asked could be reached".to_owned()],
            }),
        }
    }
}

/// The cache's never-downgrade rule ([`crate::Cached`]), on a fresh online answer.
fn settle(
    fresh: Resolution,
    cached: Option<Resolution>,
    user: Option<&UserId>,
    now: Millis,
) -> Resolution {
    if fresh.status != ResolveStatus::Verified {
        return fresh;
    }
    let Some((c, relation)) = weigh_against(&fresh, cached, now) else {
        return fresh;
    };
    match relation {
        HeadRelation::Extends => fresh,
        HeadRelation::Recovered => {
            let mut fresh = fresh;
            note_recovered(&mut fresh, &c.head);
            fresh
        }
        HeadRelation::Missing => {
            let mut notices = fresh.notices.clone();
            let mut n = Notice::new(notice::DOWNGRADE_REFUSED).head(&fresh.head);
            if let Source::Origin { server, .. } = &fresh.source {
                n = n.server(server);
            }
            notices.push(n);
            let who = user.cloned().or_else(|| c.user_ids.first().cloned());
            relabel(c, who, ResolveStatus::Stale, notices)
        }
    }
}

/// Nobody could be reached: the record, `stale`, naming the origin and the account's servers.
fn stale(c: Resolution, user: Option<&UserId>) -> Resolution {
    let notices = unreachable_notices(user, &c.servers);
    let who = user.cloned().or_else(|| c.user_ids.first().cloned());
    relabel(c, who, ResolveStatus::Stale, notices)
}

/// The vector form of an answer: `{"valid": true, "expected": {...}}` or
/// `{"valid": false, "error": {"class", "evidence"?}}` (spec §10.4).
pub fn answer_to_value(answer: &ResolveResult) -> Value {
    match answer {
        Ok(r) => {
            let source = match &r.source {
                Source::Origin { server, .. } => json!(server.as_str()),
                Source::Lan { peers } => json!(peers),
                Source::Credential { from, .. } => json!(from),
            };
            json!({
                "valid": true,
                "expected": {
                    "status": r.status.as_str(),
                    "user_id": r.user_id.as_ref().map(UserId::as_str),
                    "did": r.did.as_str(),
                    "update_key": r.update_key_multikey(),
                    "servers": r.servers.iter().map(ServerName::as_str).collect::<Vec<_>>(),
                    "user_ids": r.user_ids.iter().map(UserId::as_str).collect::<Vec<_>>(),
                    "head": r.head.to_multibase(),
                    "seq": r.seq,
                    "deactivated": r.deactivated,
                    "verified_at": r.verified_at,
                    "source": source,
                    "notices": serde_json::to_value(&r.notices).unwrap_or(Value::Null),
                }
            })
        }
        Err(e) => {
            let mut error = json!({ "class": e.class() });
            if let ResolveError::Equivocation { a, b } = e {
                let mut hashes = [a.hash.to_multibase(), b.hash.to_multibase()];
                hashes.sort();
                error["evidence"] = json!(hashes);
            }
            json!({ "valid": false, "error": error })
        }
    }
}

/// A conformance runner's request for the `resolution` suite:
/// `{"suite": "resolution", "now": N, "input": {...}}` (a top-level `now`, if present,
/// overrides `input.now`) → `{"valid": …, "expected": …}` or `{"valid": false, "error": …}`;
/// a request that cannot be read → `{"error": {"class": "bad_request", "message": …}}`.
pub fn run_conformance(request: &Value) -> Value {
    let Some(input) = request.get("input") else {
        return json!({"error": {"class": "bad_request", "message": "missing \"input\""}});
    };
    let mut input = input.clone();
    if let Some(now) = request.get("now").filter(|n| !n.is_null()) {
        input["now"] = now.clone();
    }
    match DecisionInput::from_value(&input) {
        Ok(i) => answer_to_value(&decide(&i)),
        Err(e) => json!({"error": {"class": "bad_request", "message": e.to_string()}}),
    }
}
