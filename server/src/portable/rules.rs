//! The rules of portable accounts, as pure functions: which incoming ops a server accepts
//! ([`merge_ops`]), which attestations it signs for an account ([`attestations_for`]) and
//! the bundle it hands out. Synchronous, no I/O, time as a parameter.

use std::collections::HashSet;

use roam_identity_core::attestation::Attestation;
use roam_identity_core::bundle::Bundle;
use roam_identity_core::log::{self, AccountState, LogError, SignedOp, VerifiedLog};
use roam_identity_core::server_keys::ServerSigningKey;
use roam_identity_core::{Did, Millis, OpHash, ServerName};
use serde_json::Value;

use crate::store::ServedViews;

/// How long attestations this server signs are valid.
pub const ATTESTATION_VALIDITY_MS: Millis = 7 * 24 * 3600 * 1000;
/// Re-issue attestations when less than this is left.
pub const ATTESTATION_REFRESH_MS: Millis = 24 * 3600 * 1000;
/// Most ops one request may carry.
pub const MAX_OPS_PER_REQUEST: usize = roam_identity_core::log::MAX_LOG_OPS;

/// Why incoming ops were refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PortableError {
    /// An op or the resulting log fails verification. `index` is the position in the request.
    #[error("op {}: {message}", index.map_or("?".to_string(), |i| i.to_string()))]
    InvalidOp {
        class: &'static str,
        index: Option<usize>,
        message: String,
    },
    /// The ops fork the log outside the recovery rule.
    #[error("the ops fork the account log (equivocation)")]
    Fork { a: Box<Value>, b: Box<Value> },
    /// The request is not about this DID.
    #[error("op {index} is for {found}, not {expected}")]
    WrongDid {
        index: usize,
        expected: String,
        found: String,
    },
    /// More ops than one request may carry.
    #[error("at most {MAX_OPS_PER_REQUEST} ops per request")]
    TooManyOps,
    /// The stored log no longer verifies (a bug or a corrupted store, never the client's fault).
    #[error("stored log for {0} does not verify: {1}")]
    StoredLogInvalid(String, String),
}

/// What [`merge_ops`] decided.
#[derive(Debug, Clone)]
pub struct MergeOutcome {
    /// The verified log after the merge.
    pub log: VerifiedLog,
    /// Ops that were new to this server, in request order.
    pub accepted: Vec<SignedOp>,
    /// Hashes of ops the server already held.
    pub known: Vec<OpHash>,
}

impl MergeOutcome {
    /// True when nothing new arrived.
    pub fn is_noop(&self) -> bool {
        self.accepted.is_empty()
    }
}

fn invalid(e: &LogError, index: Option<usize>) -> PortableError {
    PortableError::InvalidOp {
        class: e.class(),
        index,
        message: e.to_string(),
    }
}

/// Verifies `held ∪ incoming` as the log of `did` and says which incoming ops are new.
///
/// `held` is what the server stored (it verified when stored); `held` may be empty when the
/// incoming ops start a log. Errors name ops by their position in `incoming`.
pub fn merge_ops(
    held: &[Value],
    incoming: &[Value],
    did: &Did,
    now: Millis,
) -> Result<MergeOutcome, PortableError> {
    if incoming.len() > MAX_OPS_PER_REQUEST {
        return Err(PortableError::TooManyOps);
    }
    let mut held_ops = Vec::with_capacity(held.len());
    for v in held {
        held_ops.push(
            SignedOp::from_value(v.clone())
                .map_err(|e| PortableError::StoredLogInvalid(did.to_string(), e.to_string()))?,
        );
    }
    let held_hashes: HashSet<OpHash> = held_ops.iter().map(|o| o.hash).collect();
    let mut new_ops = Vec::with_capacity(incoming.len());
    for (i, v) in incoming.iter().enumerate() {
        let op = SignedOp::from_value(v.clone()).map_err(|e| invalid(&e, Some(i)))?;
        if &op.op.did != did {
            return Err(PortableError::WrongDid {
                index: i,
                expected: did.to_string(),
                found: op.op.did.to_string(),
            });
        }
        new_ops.push(op);
    }
    let offset = held_ops.len();
    let mut all = held_ops;
    all.extend(new_ops.iter().cloned());
    let verified = log::verify_log(&all, Some(did), now).map_err(|e| match e {
        LogError::Equivocation { a, b } => PortableError::Fork {
            a: Box::new(a.value),
            b: Box::new(b.value),
        },
        e => {
            let index = e.index().and_then(|i| i.checked_sub(offset));
            invalid(&e, index)
        }
    })?;
    let mut accepted = Vec::new();
    let mut known = Vec::new();
    let mut seen = HashSet::new();
    for op in new_ops {
        if held_hashes.contains(&op.hash) {
            known.push(op.hash);
        } else if seen.insert(op.hash) {
            accepted.push(op);
        }
    }
    Ok(MergeOutcome {
        log: verified,
        accepted,
        known,
    })
}

/// True when an op changes what this server attests (the binding or the server list).
pub fn changes_attestations(op: &SignedOp) -> bool {
    use log::Action::*;
    matches!(
        op.op.action,
        Genesis { .. } | Claim { .. } | Release { .. } | Move { .. } | Rotate { .. } | Deactivate
    )
}

/// The attestations `server` signs for an account, given its state: one per claimed user ID
/// of this server (with `hosting` when the server is in the list), or a hosting-only one
/// when the server hosts the account without a user ID of its own. A server that is no
/// longer listed keeps attesting its user IDs with `hosting: false`: that is the forwarding
/// record that lets `@alice:old.example` still lead to the account.
///
/// Only user IDs in `bound_here` (local accounts this server bound to the DID) are attested:
/// a claim op alone never makes a server vouch for one of its names.
pub fn attestations_for(
    state: &AccountState,
    server: &ServerName,
    key: &ServerSigningKey,
    bound_here: &[roam_identity_core::UserId],
    now: Millis,
) -> Vec<Value> {
    if state.deactivated {
        return Vec::new();
    }
    let hosting = state.servers.contains(server);
    let mine: Vec<_> = state
        .user_ids
        .iter()
        .filter(|u| &u.server_name() == server && bound_here.contains(u))
        .collect();
    let make = |user_id: Option<roam_identity_core::UserId>| Attestation {
        server_name: server.clone(),
        user_id,
        did: state.did.clone(),
        head: state.head,
        hosting,
        issued_at: now,
        valid_until: now + ATTESTATION_VALIDITY_MS,
    };
    let mut out = Vec::new();
    if mine.is_empty() {
        if hosting {
            out.extend(make(None).sign(key).ok());
        }
    } else {
        for u in mine {
            out.extend(make(Some(u.clone())).sign(key).ok());
        }
    }
    out
}

/// True when stored attestations need re-issuing: none, about another head, or near expiry.
pub fn attestations_stale(stored: &[Value], state: &AccountState, now: Millis) -> bool {
    if stored.is_empty() {
        return true;
    }
    stored.iter().any(|a| {
        let head = a.get("head").and_then(Value::as_str);
        let until = a.get("valid_until").and_then(Value::as_u64).unwrap_or(0);
        head != Some(state.head.to_multibase().as_str()) || until < now + ATTESTATION_REFRESH_MS
    })
}

/// The answers of a verified log, encoded once for every read until the next change: the
/// bundle (the log, `attestations` and this server's key document `server_keys`), the log
/// ordered by seq, the DID document and the DID resolution result. The DID document names
/// the user IDs the attestations bind (those this server vouches for). They stay true until
/// the first attestation or the key document expires, and are due for re-making before.
pub fn served_views(
    log: &VerifiedLog,
    attestations: Vec<Value>,
    server_keys: Value,
    server: &ServerName,
    now: Millis,
) -> Result<ServedViews, serde_json::Error> {
    use roam_resolver::did_resolution::{AccountView, Representation, resolution_result};
    let state = &log.state;
    let mut ops: Vec<&SignedOp> = log.chain.iter().chain(&log.superseded).collect();
    ops.sort_by_key(|o| (o.op.seq, o.hash));
    let ops: Vec<Value> = ops.into_iter().map(|o| o.value.clone()).collect();
    let parsed: Vec<Attestation> = attestations
        .iter()
        .filter_map(|a| roam_identity_core::attestation::parse(a).ok())
        .collect();
    let key_valid_until = server_keys
        .get("valid_until_ts")
        .and_then(Value::as_u64)
        .unwrap_or(now);
    let fresh_until = parsed
        .iter()
        .map(|a| a.valid_until)
        .fold(key_valid_until, Millis::min);
    let view = AccountView {
        did: state.did.clone(),
        user_ids: state
            .user_ids
            .iter()
            .filter(|u| parsed.iter().any(|a| a.binds(u) && a.is_current(now)))
            .cloned()
            .collect(),
        servers: state.servers.clone(),
        head: state.head,
        created_at: state.created_at,
        updated_at: state.updated_at,
        deactivated: state.deactivated,
    };
    let log_body = serde_json::to_vec(&serde_json::json!({ "ops": &ops }))?;
    let bundle = serde_json::to_vec(&bundle(state, ops, attestations, server_keys, server, now))?;
    let document = serde_json::to_vec(&resolution_result(&view, Representation::Document).1)?;
    let resolution =
        serde_json::to_vec(&resolution_result(&view, Representation::ResolutionResult).1)?;
    let lead = ATTESTATION_REFRESH_MS.min(fresh_until.saturating_sub(now) / 4);
    Ok(ServedViews {
        generation: now,
        fresh_until,
        due_at: fresh_until.saturating_sub(lead),
        bodies: [bundle, log_body, document, resolution],
    })
}

/// Assembles the bundle this server hands out for an account.
pub fn bundle(
    state: &AccountState,
    ops: Vec<Value>,
    attestations: Vec<Value>,
    server_keys: Value,
    server: &ServerName,
    now: Millis,
) -> Value {
    Bundle {
        did: state.did.clone(),
        log: ops,
        attestations,
        server_keys: vec![server_keys],
        fetched_at: now,
        source: server.to_string(),
    }
    .to_value()
}

#[cfg(test)]
mod tests {
    use super::*;
    use roam_identity_core::log::{Action, genesis_op, next_op};
    use roam_identity_core::{KeyCommitment, KeyId, SigningKey, UserId};

    const NOW: Millis = 1_800_000_000_000;

    fn genesis() -> (SigningKey, SigningKey, SignedOp) {
        let k0 = SigningKey::from_bytes(&[1; 32]);
        let k1 = SigningKey::from_bytes(&[2; 32]);
        let g = genesis_op(
            &k0.verifying_key(),
            KeyCommitment::to_key(&k1.verifying_key()),
            UserId::parse("@alice:a.example").unwrap(),
            vec![ServerName::parse("a.example").unwrap()],
            NOW - 10_000,
        )
        .unwrap()
        .sign(&k0);
        (k0, k1, g)
    }

    #[test]
    fn merge_is_idempotent_and_refuses_forks() {
        let (k0, k1, g) = genesis();
        let did = g.op.did.clone();
        let out = merge_ops(&[], std::slice::from_ref(&g.value), &did, NOW).unwrap();
        assert_eq!(out.accepted.len(), 1);
        let held = vec![g.value.clone()];
        let again = merge_ops(&held, std::slice::from_ref(&g.value), &did, NOW).unwrap();
        assert!(again.is_noop());
        assert_eq!(again.known, vec![g.hash]);
        let st = out.log.state;
        let a = next_op(
            &st,
            NOW - 5000,
            Action::Move {
                servers: vec![ServerName::parse("b.example").unwrap()],
            },
        )
        .sign(&k0);
        let b = next_op(
            &st,
            NOW - 5000,
            Action::Move {
                servers: vec![ServerName::parse("c.example").unwrap()],
            },
        )
        .sign(&k0);
        let held = vec![g.value.clone(), a.value.clone()];
        match merge_ops(&held, std::slice::from_ref(&b.value), &did, NOW) {
            Err(PortableError::Fork { .. }) => {}
            other => panic!("{other:?}"),
        }
        // A recovery rotate forking from genesis is accepted and supersedes `a`.
        let r = next_op(
            &st,
            NOW - 4000,
            Action::Rotate {
                update_key: k1.verifying_key(),
                next_key: KeyCommitment::to_key(&k0.verifying_key()),
            },
        )
        .sign(&k1);
        let out = merge_ops(&held, std::slice::from_ref(&r.value), &did, NOW).unwrap();
        assert_eq!(out.log.state.head, r.hash);
        assert_eq!(out.log.superseded.len(), 1);
        // A bad op names its position in the request.
        let mut bad = a.value.clone();
        bad["servers"] = serde_json::json!(["x.example"]);
        match merge_ops(std::slice::from_ref(&g.value), &[bad], &did, NOW) {
            Err(PortableError::InvalidOp {
                class: "bad_signature",
                index: Some(0),
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn attestations_follow_the_log() {
        let (_, _, g) = genesis();
        let st = merge_ops(&[], std::slice::from_ref(&g.value), &g.op.did, NOW)
            .unwrap()
            .log
            .state;
        let key = ServerSigningKey {
            key_id: KeyId::ed25519("a_1").unwrap(),
            key: SigningKey::from_bytes(&[7; 32]),
        };
        let a = ServerName::parse("a.example").unwrap();
        let alice = UserId::parse("@alice:a.example").unwrap();
        // A claimed user ID that no local account bound is not attested: only hosting is.
        let unbound = attestations_for(&st, &a, &key, &[], NOW);
        assert_eq!(unbound.len(), 1);
        assert!(unbound[0].get("user_id").is_none());
        assert_eq!(unbound[0]["hosting"], true);
        let atts = attestations_for(&st, &a, &key, std::slice::from_ref(&alice), NOW);
        assert_eq!(atts.len(), 1);
        assert_eq!(atts[0]["user_id"], "@alice:a.example");
        assert_eq!(atts[0]["hosting"], true);
        let c = ServerName::parse("c.example").unwrap();
        assert!(attestations_for(&st, &c, &key, &[alice], NOW).is_empty());
        assert!(!attestations_stale(&atts, &st, NOW));
        assert!(attestations_stale(
            &atts,
            &st,
            NOW + ATTESTATION_VALIDITY_MS
        ));
    }
}
