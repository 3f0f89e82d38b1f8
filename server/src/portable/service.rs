//! The async glue between HTTP handlers, the store and the portable-account decisions of
//! [`super`]: read the held log, verify the union, decide attestations and bindings, commit
//! once, forward to the other servers.

use std::collections::BTreeSet;

use roam_identity_core::log::{AccountState, SignedOp, VerifiedLog};
use roam_identity_core::server_keys::ServerSigningKey;
use roam_identity_core::{Did, Millis, OpHash, ServerName, UserId};
use serde_json::Value;

use super::{PortableError, attestations_for, attestations_stale, changes_attestations, merge_ops};
use crate::error::AppError;
use crate::metrics::Metrics;
use crate::state::{AppState, now_ms};
use crate::store::{LogCommit, LogSummary, StoreError};

/// The outcome of applying ops.
#[derive(Debug, Clone)]
pub struct Applied {
    /// The verified log after the change.
    pub log: VerifiedLog,
    /// Ops new to this server.
    pub accepted: Vec<OpHash>,
    /// Ops it already held.
    pub known: Vec<OpHash>,
    /// The attestations it now stands behind for the DID.
    pub attestations: Vec<Value>,
}

impl Applied {
    /// The JSON answer of `POST /_roam/v1/accounts/{did}/ops`.
    pub fn to_json(&self) -> Value {
        let st = &self.log.state;
        serde_json::json!({
            "did": st.did.as_str(),
            "head": st.head.to_multibase(),
            "seq": st.seq,
            "accepted": self.accepted.iter().map(|h| h.to_multibase()).collect::<Vec<_>>(),
            "known": self.known.iter().map(|h| h.to_multibase()).collect::<Vec<_>>(),
            "attestations": self.attestations,
        })
    }
}

/// Maps a refusal of ops to its Matrix/Roam error.
pub fn op_error(e: PortableError) -> AppError {
    match e {
        PortableError::InvalidOp {
            class,
            index,
            message,
        } => AppError::RoamInvalidOp {
            class,
            index,
            message,
        },
        PortableError::Fork { a, b } => AppError::RoamFork {
            evidence: vec![*a, *b],
        },
        e @ PortableError::WrongDid { .. } => {
            let index = match &e {
                PortableError::WrongDid { index, .. } => Some(*index),
                _ => None,
            };
            AppError::RoamInvalidOp {
                class: "wrong_did",
                index,
                message: e.to_string(),
            }
        }
        e @ PortableError::TooManyOps => AppError::TooLarge(e.to_string()),
        e @ PortableError::StoredLogInvalid(..) => AppError::Internal(e.to_string()),
    }
}

/// The server's signing key in identity-core's form.
pub fn signing_key(state: &AppState) -> ServerSigningKey {
    let k = state.server_key();
    ServerSigningKey {
        key_id: k.key_id.clone(),
        key: k.signing_key.clone(),
    }
}

/// The stored summary of a verified state.
pub fn summary_of(st: &AccountState) -> LogSummary {
    LogSummary {
        head: st.head,
        seq: st.seq,
        servers: st.servers.clone(),
        user_ids: st.user_ids.clone(),
        deactivated: st.deactivated,
        updated_at: st.updated_at,
    }
}

/// The local user IDs of `server` claimed by `st` that this server bound to its DID.
pub async fn bound_here(state: &AppState, st: &AccountState) -> Result<Vec<UserId>, AppError> {
    let server = state.config().server_name.clone();
    let did = st.did.clone();
    let local: Vec<UserId> = st
        .user_ids
        .iter()
        .filter(|u| u.server_name() == server)
        .cloned()
        .collect();
    state
        .db(move |s| {
            let mut out = Vec::new();
            for u in local {
                if s.did_of_user(&u)?.as_ref() == Some(&did) {
                    out.push(u);
                }
            }
            Ok(out)
        })
        .await
}

/// Reads and verifies the held log of `did`.
pub async fn held_log(
    state: &AppState,
    did: &Did,
) -> Result<Option<(Vec<Value>, VerifiedLog)>, AppError> {
    let d = did.clone();
    let ops = state.db(move |s| s.log_ops(&d)).await?;
    if ops.is_empty() {
        return Ok(None);
    }
    let log = roam_identity_core::log::verify_values(&ops, Some(did), now_ms())
        .map_err(|e| AppError::Internal(format!("stored log of {did} does not verify: {e}")))?;
    Ok(Some((ops, log)))
}

/// Applies signed ops from anyone: authorised by their signatures alone (see spec/api.md,
/// `POST /_roam/v1/accounts/{did}/ops`).
pub async fn apply_ops(
    state: &AppState,
    did: &Did,
    incoming: Vec<Value>,
) -> Result<Applied, AppError> {
    let lock = state.portable().lock_for(did);
    let _guard = lock.lock().await;
    let now = now_ms();
    let d = did.clone();
    let (held, summary) = state
        .db(move |s| Ok((s.log_ops(&d)?, s.log_summary(&d)?)))
        .await?;
    let outcome = match merge_ops(&held, &incoming, did, now) {
        Err(PortableError::Fork { a, b }) => {
            // Keep what was offered as evidence; the log itself is untouched.
            let evidence: Vec<(OpHash, Value)> = incoming
                .iter()
                .filter_map(|v| SignedOp::from_value(v.clone()).ok())
                .map(|o| (o.hash, o.value))
                .collect();
            let d = did.clone();
            state.db(move |s| s.record_fork(&d, &evidence)).await?;
            tracing::warn!(%did, "refused ops that fork the log");
            Metrics::add(&state.metrics().forks_refused, 1);
            return Err(op_error(PortableError::Fork { a, b }));
        }
        Err(e) => {
            Metrics::add(&state.metrics().ops_refused, 1);
            return Err(op_error(e));
        }
        Ok(o) => o,
    };
    let server = state.config().server_name.clone();
    if held.is_empty() && !outcome.log.state.servers.contains(&server) {
        return Err(AppError::Forbidden(format!(
            "{server} does not hold this account's log and the log does not name {server} as a server"
        )));
    }
    let d = did.clone();
    let stored_atts = state.db(move |s| s.issued_attestations(&d)).await?;
    if outcome.is_noop() {
        return Ok(Applied {
            log: outcome.log,
            accepted: Vec::new(),
            known: outcome.known,
            attestations: stored_atts,
        });
    }
    state
        .portable()
        .op_limits
        .admit_ops(did.as_str(), &outcome.accepted, now)
        .map_err(|retry_after_ms| AppError::LimitExceeded { retry_after_ms })?;

    let st = outcome.log.state.clone();
    let bound = bound_here(state, &st).await?;
    let released: Vec<UserId> = summary
        .as_ref()
        .map(|s| s.user_ids.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|u| u.server_name() == server && !st.user_ids.contains(u))
        .collect();
    let refresh = outcome.accepted.iter().any(changes_attestations)
        || attestations_stale(&stored_atts, &st, now);
    let attestations = if refresh {
        attestations_for(&st, &server, &signing_key(state), &bound, now)
    } else {
        stored_atts
    };
    let commit = LogCommit {
        did: did.clone(),
        expected_head: summary.as_ref().map(|s| s.head),
        new_ops: outcome
            .accepted
            .iter()
            .map(|o| (o.hash, o.value.clone()))
            .collect(),
        summary: summary_of(&st),
        attestations: refresh.then(|| attestations.clone()),
        bind: Vec::new(),
        unbind: released,
        devices: Vec::new(),
    };
    state.db(move |s| s.commit_log(commit)).await?;
    tracing::info!(%did, accepted = outcome.accepted.len(), head = %st.head, "stored account ops");
    Metrics::add(&state.metrics().ops_accepted, outcome.accepted.len() as u64);

    let mut targets: BTreeSet<ServerName> = st.servers.iter().cloned().collect();
    if let Some(s) = &summary {
        targets.extend(s.servers.iter().cloned());
    }
    targets.remove(&server);
    let all_ops: Vec<Value> = held
        .into_iter()
        .chain(outcome.accepted.iter().map(|o| o.value.clone()))
        .collect();
    spawn_forward(state, did, all_ops, targets.into_iter().collect());

    Ok(Applied {
        accepted: outcome.accepted.iter().map(|o| o.hash).collect(),
        known: outcome.known,
        log: outcome.log,
        attestations,
    })
}

/// Sends the whole held log to `targets` in the background (best effort): receivers dedupe
/// by hash, so the full log is what lets a server that held nothing start holding it.
pub fn spawn_forward(state: &AppState, did: &Did, ops: Vec<Value>, targets: Vec<ServerName>) {
    if targets.is_empty() {
        return;
    }
    let fed = state.portable().federation.clone();
    let did = did.clone();
    tokio::spawn(async move {
        for t in targets {
            match fed.push_ops(&t, &did, ops.clone()).await {
                Ok(()) => tracing::info!(%did, target = %t, "forwarded account ops"),
                Err(e) => {
                    tracing::warn!(%did, target = %t, error = %e, "could not forward account ops")
                }
            }
        }
    });
}

/// The bundle for `did`, re-issuing attestations first if they are stale.
pub async fn bundle_for(state: &AppState, did: &Did) -> Result<Value, AppError> {
    let Some((ops, log)) = held_log(state, did).await? else {
        return Err(AppError::NotFound(format!("No account log for {did}")));
    };
    let now = now_ms();
    let d = did.clone();
    let mut atts = state.db(move |s| s.issued_attestations(&d)).await?;
    if attestations_stale(&atts, &log.state, now) {
        atts = refresh_attestations(state, &log, now).await?;
    }
    let keys = crate::routes::server_key_document(state, now)?;
    Ok(super::bundle(
        &log.state,
        ops,
        atts,
        keys,
        &state.config().server_name,
        now,
    ))
}

/// Re-signs the attestations of a held log and stores them.
pub async fn refresh_attestations(
    state: &AppState,
    log: &VerifiedLog,
    now: Millis,
) -> Result<Vec<Value>, AppError> {
    let lock = state.portable().lock_for(&log.state.did);
    let _guard = lock.lock().await;
    let bound = bound_here(state, &log.state).await?;
    let atts = attestations_for(
        &log.state,
        &state.config().server_name,
        &signing_key(state),
        &bound,
        now,
    );
    let commit = LogCommit {
        did: log.state.did.clone(),
        expected_head: Some(log.state.head),
        new_ops: Vec::new(),
        summary: summary_of(&log.state),
        attestations: Some(atts.clone()),
        bind: Vec::new(),
        unbind: Vec::new(),
        devices: Vec::new(),
    };
    state
        .db(move |s| match s.commit_log(commit) {
            // The log moved on meanwhile: the next reader refreshes against the new head.
            Err(StoreError::Conflict(_)) => Ok(()),
            other => other,
        })
        .await?;
    Ok(atts)
}

/// Why a key login or key UIA stage failed, in words for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyAuthError {
    /// The user has no portable identity here, or sent a wrong or replayed proof.
    Forbidden(String),
    /// The account lives elsewhere now.
    Moved(Vec<String>),
    /// The account's log is deactivated.
    Deactivated,
}

impl From<KeyAuthError> for AppError {
    fn from(e: KeyAuthError) -> Self {
        match e {
            KeyAuthError::Forbidden(m) => AppError::Forbidden(m),
            KeyAuthError::Moved(servers) => AppError::RoamMoved { servers },
            KeyAuthError::Deactivated => AppError::RoamDeactivated,
        }
    }
}

/// Where a local account's DID lives now: `Err(Moved)` when this server is no longer in
/// its server list, `Err(Deactivated)` when its log is; `Ok(None)` for accounts without a
/// DID, `Ok(Some(log))` for accounts hosted here.
pub async fn hosted_log(
    state: &AppState,
    user_id: &UserId,
) -> Result<Result<Option<VerifiedLog>, KeyAuthError>, AppError> {
    let u = user_id.clone();
    let Some(did) = state.db(move |s| s.did_of_user(&u)).await? else {
        return Ok(Ok(None));
    };
    let Some((_, log)) = held_log(state, &did).await? else {
        return Ok(Ok(None));
    };
    if log.state.deactivated {
        return Ok(Err(KeyAuthError::Deactivated));
    }
    if !log.state.servers.contains(&state.config().server_name) {
        return Ok(Err(KeyAuthError::Moved(
            log.state.servers.iter().map(|s| s.to_string()).collect(),
        )));
    }
    Ok(Ok(Some(log)))
}

/// Checks an `m.login.roam.key` proof (`challenge`, `signature`) for `user_id`, against the
/// update key of the account's current log. The challenge is consumed either way.
pub async fn check_key_proof(
    state: &AppState,
    user_id: &UserId,
    proof: &Value,
) -> Result<(), AppError> {
    let field = |name: &str| {
        proof
            .get(name)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| AppError::MissingParam(format!("Missing param: {name}")))
    };
    let (challenge, signature) = (field("challenge")?, field("signature")?);
    let log = match hosted_log(state, user_id).await? {
        Ok(Some(log)) => log,
        other => {
            state.portable().challenges.discard(&challenge);
            return Err(match other {
                Err(e) => e.into(),
                _ => AppError::Forbidden("Invalid username or key signature".into()),
            });
        }
    };
    state
        .portable()
        .challenges
        .redeem(
            &challenge,
            user_id,
            &state.config().server_name,
            &signature,
            &log.state.update_key,
            now_ms(),
        )
        .map_err(|e| AppError::Forbidden(format!("Key login failed: {e}")))?;
    Metrics::add(&state.metrics().key_logins, 1);
    Ok(())
}

/// How [`bind_account`] finds the local account of the user ID it binds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountMode {
    /// The account exists and is the caller's (adopting a DID); it is not bound yet.
    Existing,
    /// Create the account when it does not exist (migration); an existing account must
    /// already be bound to this DID.
    CreateIfMissing,
}

/// Verifies `incoming` with the held log of `did`, then stores the log, binds `user_id`
/// (when given) and re-issues attestations for every user ID bound here, in one
/// transaction. The log must name this server, be active, and claim `user_id`.
pub async fn bind_account(
    state: &AppState,
    did: &Did,
    incoming: &[Value],
    user_id: Option<&UserId>,
    mode: AccountMode,
) -> Result<VerifiedLog, AppError> {
    let lock = state.portable().lock_for(did);
    let _guard = lock.lock().await;
    let now = now_ms();
    let d = did.clone();
    let (held, summary) = state
        .db(move |s| Ok((s.log_ops(&d)?, s.log_summary(&d)?)))
        .await?;
    let merged = merge_ops(&held, incoming, did, now).map_err(op_error)?;
    let st = &merged.log.state;
    let server = state.config().server_name.clone();
    if !st.servers.contains(&server) {
        return Err(AppError::Forbidden(format!(
            "The account log does not name {server} as a server; sign a `move` that lists it first"
        )));
    }
    if st.deactivated {
        return Err(AppError::RoamDeactivated);
    }
    if let Some(u) = user_id
        && !st.user_ids.contains(u)
    {
        return Err(AppError::Forbidden(format!(
            "The account log does not claim {u}; sign a `claim` for it first"
        )));
    }
    state
        .portable()
        .op_limits
        .admit_ops(did.as_str(), &merged.accepted, now)
        .map_err(|retry_after_ms| AppError::LimitExceeded { retry_after_ms })?;
    // Every user ID bound here keeps its attestation; the new one joins them.
    let mut bound = bound_here(state, st).await?;
    if let Some(u) = user_id
        && !bound.contains(u)
    {
        bound.push(u.clone());
    }
    let attestations = attestations_for(st, &server, &signing_key(state), &bound, now);
    let commit = LogCommit {
        did: did.clone(),
        expected_head: summary.as_ref().map(|s| s.head),
        new_ops: merged
            .accepted
            .iter()
            .map(|o| (o.hash, o.value.clone()))
            .collect(),
        summary: summary_of(st),
        attestations: Some(attestations),
        bind: user_id.into_iter().cloned().collect(),
        unbind: Vec::new(),
        devices: user_id
            .into_iter()
            .flat_map(|u| st.devices.keys().map(move |d| (u.clone(), d.clone())))
            .collect(),
    };
    let accepted = merged.accepted.len() as u64;
    match (user_id.cloned(), mode) {
        (None, _) | (Some(_), AccountMode::Existing) => {
            state.db(move |s| s.commit_log(commit)).await?;
        }
        (Some(user_id), AccountMode::CreateIfMissing) => {
            let u = user_id.clone();
            let existing = state
                .db(move |s| Ok((s.account(&u)?.is_some(), s.did_of_user(&u)?)))
                .await?;
            match existing {
                (true, Some(d)) if &d == did => state.db(move |s| s.commit_log(commit)).await?,
                (true, _) => return Err(AppError::UserInUse),
                (false, _) => {
                    let account = crate::store::Account {
                        user_id,
                        password_hash: None,
                        created_at: now,
                    };
                    state
                        .db(move |s| s.create_account_with_log(account, None, None, commit))
                        .await?
                }
            }
        }
    }
    Metrics::add(&state.metrics().ops_accepted, accepted);
    Ok(merged.log)
}
