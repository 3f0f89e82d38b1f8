//! The one read–verify–commit path of account logs, for signed ops from anyone
//! ([`Portable::apply_ops`]) and for binding a local account to a DID
//! ([`Portable::bind_account`]): under the DID's writer lock, read the held log, verify the
//! union with the incoming ops, check what the intent requires, admit the new ops, decide
//! attestations and bindings, commit once, then forward.

use std::collections::BTreeSet;

use roam_identity_core::log::{AccountState, SignedOp, VerifiedLog};
use roam_identity_core::{Did, Millis, OpHash, ServerName, UserId};
use serde_json::Value;

use super::rules::{
    MergeOutcome, PortableError, attestations_for, attestations_stale, changes_attestations,
    merge_ops,
};
use super::service::{Portable, summary_of};
use crate::clock::now_ms;
use crate::error::AppError;
use crate::metrics::Metrics;
use crate::store::{Account, EvidenceCap, LogCommit, LogSummary, NewAccount};

/// The most fork evidence kept per DID.
pub const EVIDENCE_CAP: EvidenceCap = EvidenceCap {
    ops: 64,
    bytes: 256 * 1024,
};

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

/// How [`Portable::bind_account`] finds the local account of the user ID it binds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountMode {
    /// The account exists and is the caller's (adopting a DID); it is not bound yet.
    Existing,
    /// Create the account when it does not exist (migration); an existing account must
    /// already be bound to this DID.
    CreateIfMissing,
}

/// Why ops are being committed: decides the checks, the attestations and the bindings.
#[derive(Debug, Clone, Copy)]
enum Intent<'a> {
    /// Signed ops from anyone, authorised by their signatures alone.
    Ops,
    /// Binding a local account (when given) to the DID: adoption or migration.
    Bind {
        user_id: Option<&'a UserId>,
        mode: AccountMode,
        /// The registration token a new account consumes (registration policy `token`).
        token: Option<&'a str>,
    },
}

/// What this server held of a DID when the writer lock was taken.
struct Held {
    ops: Vec<Value>,
    summary: Option<LogSummary>,
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
        e @ PortableError::WrongDid { index, .. } => AppError::RoamInvalidOp {
            class: "wrong_did",
            index: Some(index),
            message: e.to_string(),
        },
        e @ PortableError::TooManyOps => AppError::TooLarge(e.to_string()),
        e @ PortableError::StoredLogInvalid(..) => AppError::Internal(e.to_string()),
    }
}

impl Portable {
    /// Applies signed ops from anyone: authorised by their signatures alone (see spec/api.md,
    /// `POST /_roam/v1/accounts/{did}/ops`).
    pub async fn apply_ops(&self, did: &Did, incoming: Vec<Value>) -> Result<Applied, AppError> {
        self.read_verify_commit(did, &incoming, Intent::Ops).await
    }

    /// Verifies `incoming` with the held log of `did`, then stores the log, binds `user_id`
    /// (when given) and re-issues attestations for every user ID bound here, in one
    /// transaction. The log must name this server, be active, and claim `user_id`. A new
    /// account consumes `token` (checked by the caller) in the same transaction.
    pub async fn bind_account(
        &self,
        did: &Did,
        incoming: &[Value],
        user_id: Option<&UserId>,
        mode: AccountMode,
        token: Option<&str>,
    ) -> Result<VerifiedLog, AppError> {
        let intent = Intent::Bind {
            user_id,
            mode,
            token,
        };
        Ok(self.read_verify_commit(did, incoming, intent).await?.log)
    }

    /// The one path: read → verify → check → admit → decide → commit → forward.
    async fn read_verify_commit(
        &self,
        did: &Did,
        incoming: &[Value],
        intent: Intent<'_>,
    ) -> Result<Applied, AppError> {
        let _guard = self.locks.lock(did).await;
        let now = now_ms();
        let held = self.read_held(did).await?;
        let merged = self.verify(did, &held, incoming, intent, now).await?;
        self.check(&held, &merged.log.state, intent)?;
        // Signed ops keep the attestations already issued unless they change something; a
        // request that brings nothing new is answered with them, and nothing is written.
        let stored = match intent {
            Intent::Ops => Some(self.issued_attestations(did).await?),
            Intent::Bind { .. } => None,
        };
        if let Some(stored) = &stored
            && merged.is_noop()
        {
            return Ok(Applied {
                log: merged.log,
                accepted: Vec::new(),
                known: merged.known,
                attestations: stored.clone(),
            });
        }
        self.admit(did, &held, &merged, intent, now).await?;
        let (commit, attestations) = self
            .decide(did, &held, &merged, intent, stored, now)
            .await?;
        self.commit(commit, intent, now).await?;
        let st = &merged.log.state;
        tracing::info!(%did, accepted = merged.accepted.len(), head = %st.head, "stored account ops");
        Metrics::add(&self.metrics.ops_accepted, merged.accepted.len() as u64);
        if let Intent::Ops = intent {
            self.forward_after_commit(did, held, &merged);
        }
        Ok(Applied {
            accepted: merged.accepted.iter().map(|o| o.hash).collect(),
            known: merged.known,
            log: merged.log,
            attestations,
        })
    }

    /// The per-DID op limit, by arrival: signed ops from anyone count once the DID is
    /// held (the first import of a DID is bounded per client address by the handler, and
    /// a binding by the registration gate or the account's own login).
    async fn admit(
        &self,
        did: &Did,
        held: &Held,
        merged: &MergeOutcome,
        intent: Intent<'_>,
        now: Millis,
    ) -> Result<(), AppError> {
        if !matches!(intent, Intent::Ops) || held.summary.is_none() {
            return Ok(());
        }
        self.op_limits
            .admit(&self.db, did, merged.accepted.len(), now)
            .await?
            .map_err(|retry_after_ms| AppError::LimitExceeded { retry_after_ms })
    }

    async fn read_held(&self, did: &Did) -> Result<Held, AppError> {
        let d = did.clone();
        let (ops, summary) = self
            .db
            .run(move |s| Ok((s.log_ops(&d)?, s.log_summary(&d)?)))
            .await?;
        Ok(Held { ops, summary })
    }

    async fn issued_attestations(&self, did: &Did) -> Result<Vec<Value>, AppError> {
        let d = did.clone();
        Ok(self.db.run(move |s| s.issued_attestations(&d)).await?)
    }

    /// Verifies the union of held and incoming ops. Signed ops from anyone that are refused
    /// are counted, and a fork is kept as evidence (the log itself is untouched).
    async fn verify(
        &self,
        did: &Did,
        held: &Held,
        incoming: &[Value],
        intent: Intent<'_>,
        now: Millis,
    ) -> Result<MergeOutcome, AppError> {
        Metrics::add(&self.metrics.log_verifications, 1);
        let refusal = match merge_ops(&held.ops, incoming, did, now) {
            Ok(merged) => return Ok(merged),
            Err(e) => e,
        };
        if let Intent::Ops = intent {
            self.record_refusal(did, held, incoming, &refusal).await?;
        }
        Err(op_error(refusal))
    }

    /// Counts a refusal; a fork of a log held here is kept as evidence, within
    /// [`EVIDENCE_CAP`] per DID (forks of logs not held here are only counted).
    async fn record_refusal(
        &self,
        did: &Did,
        held: &Held,
        incoming: &[Value],
        refusal: &PortableError,
    ) -> Result<(), AppError> {
        if !matches!(refusal, PortableError::Fork { .. }) || held.summary.is_none() {
            Metrics::add(&self.metrics.ops_refused, 1);
            return Ok(());
        }
        let evidence: Vec<(OpHash, Value)> = incoming
            .iter()
            .filter_map(|v| SignedOp::from_value(v.clone()).ok())
            .map(|o| (o.hash, o.value))
            .collect();
        let d = did.clone();
        self.db
            .run(move |s| s.record_fork(&d, &evidence, EVIDENCE_CAP))
            .await?;
        tracing::warn!(%did, "refused ops that fork the log");
        Metrics::add(&self.metrics.forks_refused, 1);
        Ok(())
    }

    /// What the intent requires of the verified log.
    fn check(&self, held: &Held, st: &AccountState, intent: Intent<'_>) -> Result<(), AppError> {
        let server = &self.server;
        match intent {
            Intent::Ops if held.ops.is_empty() && !st.servers.contains(server) => {
                Err(AppError::Forbidden(format!(
                    "{server} does not hold this account's log and the log does not name {server} as a server"
                )))
            }
            Intent::Ops => Ok(()),
            Intent::Bind { .. } if !st.servers.contains(server) => {
                Err(AppError::Forbidden(format!(
                    "The account log does not name {server} as a server; sign a `move` that lists it first"
                )))
            }
            Intent::Bind { .. } if st.deactivated => Err(AppError::RoamDeactivated),
            Intent::Bind {
                user_id: Some(u), ..
            } if !st.user_ids.contains(u) => Err(AppError::Forbidden(format!(
                "The account log does not claim {u}; sign a `claim` for it first"
            ))),
            Intent::Bind { .. } => Ok(()),
        }
    }

    /// The commit and the attestations it stands behind. Signed ops re-sign only when they
    /// change what is attested (or the stored ones are stale) and release user IDs the log
    /// dropped; a binding always re-signs, for every user ID bound here plus the new one.
    async fn decide(
        &self,
        did: &Did,
        held: &Held,
        merged: &MergeOutcome,
        intent: Intent<'_>,
        stored: Option<Vec<Value>>,
        now: Millis,
    ) -> Result<(LogCommit, Vec<Value>), AppError> {
        let st = &merged.log.state;
        let mut bound = self.bound_here(st).await?;
        let user_id = match intent {
            Intent::Bind { user_id, .. } => user_id,
            Intent::Ops => None,
        };
        if let Some(u) = user_id.filter(|u| !bound.contains(u)) {
            bound.push(u.clone());
        }
        let refresh = match &stored {
            Some(stored) => {
                merged.accepted.iter().any(changes_attestations)
                    || attestations_stale(stored, st, now)
            }
            None => true,
        };
        let attestations = match stored {
            Some(stored) if !refresh => stored,
            _ => attestations_for(st, &self.server, &self.signer.signing_key(), &bound, now),
        };
        let commit = LogCommit {
            did: did.clone(),
            expected_head: held.summary.as_ref().map(|s| s.head),
            new_ops: merged
                .accepted
                .iter()
                .map(|o| (o.hash, o.value.clone()))
                .collect(),
            summary: summary_of(st),
            attestations: refresh.then(|| attestations.clone()),
            bind: user_id.into_iter().cloned().collect(),
            unbind: self.released(held, st, intent),
            devices: user_id
                .into_iter()
                .flat_map(|u| st.devices.keys().map(move |d| (u.clone(), d.clone())))
                .collect(),
            served: Some(self.views(&merged.log, attestations.clone(), now)?),
        };
        Ok((commit, attestations))
    }

    /// Local user IDs the held log claimed and the new one no longer does.
    fn released(&self, held: &Held, st: &AccountState, intent: Intent<'_>) -> Vec<UserId> {
        let (Intent::Ops, Some(summary)) = (intent, &held.summary) else {
            return Vec::new();
        };
        summary
            .user_ids
            .iter()
            .filter(|u| u.server_name() == self.server && !st.user_ids.contains(u))
            .cloned()
            .collect()
    }

    /// Writes the commit; a migration creates the local account with it when missing.
    async fn commit(
        &self,
        commit: LogCommit,
        intent: Intent<'_>,
        now: Millis,
    ) -> Result<(), AppError> {
        let Intent::Bind {
            user_id: Some(user_id),
            mode: AccountMode::CreateIfMissing,
            token,
        } = intent
        else {
            return Ok(self.group.commit(&self.db, commit).await?);
        };
        let u = user_id.clone();
        let existing = self
            .db
            .run(move |s| Ok((s.account(&u)?.is_some(), s.did_of_user(&u)?)))
            .await?;
        match existing {
            (true, Some(d)) if d == commit.did => self.group.commit(&self.db, commit).await?,
            (true, _) => return Err(AppError::UserInUse),
            (false, _) => {
                let new = NewAccount {
                    account: Account {
                        user_id: user_id.clone(),
                        password_hash: None,
                        created_at: now,
                        deactivated: false,
                    },
                    session: None,
                    registration_token: token.map(str::to_owned),
                };
                self.db
                    .run(move |s| s.create_account_with_log(new, commit))
                    .await?
            }
        }
        Ok(())
    }

    /// Forwards the whole held log (with the new ops) to every server the log names now or
    /// named before, except this one.
    fn forward_after_commit(&self, did: &Did, held: Held, merged: &MergeOutcome) {
        let mut targets: BTreeSet<ServerName> = merged.log.state.servers.iter().cloned().collect();
        if let Some(s) = &held.summary {
            targets.extend(s.servers.iter().cloned());
        }
        targets.remove(&self.server);
        let all_ops: Vec<Value> = held
            .ops
            .into_iter()
            .chain(merged.accepted.iter().map(|o| o.value.clone()))
            .collect();
        self.spawn_forward(did, all_ops, targets.into_iter().collect());
    }

    /// Sends the whole held log to `targets` in the background (best effort): receivers
    /// dedupe by hash, so the full log is what lets a server that held nothing start
    /// holding it.
    pub fn spawn_forward(&self, did: &Did, ops: Vec<Value>, targets: Vec<ServerName>) {
        if targets.is_empty() {
            return;
        }
        let fed = self.federation.clone();
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
}
