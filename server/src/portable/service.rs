//! The portable-account service: what the HTTP handlers ask of portable accounts, over the
//! narrow context it needs (the store, the server key, counters, federation, challenges, op
//! limits, per-DID writer locks). Built once by the state and reached through
//! `state.portable()`; the read–verify–commit path itself is in `commit.rs`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use roam_identity_core::log::{AccountState, VerifiedLog};
use roam_identity_core::{Did, Millis, ServerName, UserId, attestation};
use roam_vc::BindingCredential;
use serde_json::Value;

use super::challenge::{ChallengeError, Challenges};
use super::federation::Federation;
use super::group::GroupCommit;
use super::oprate::OpRateLimiter;
use super::rules::{self, attestations_for, attestations_stale};
use crate::clock::now_ms;
use crate::config::ServerConfig;
use crate::error::AppError;
use crate::metrics::Metrics;
use crate::server_key::ServerSigner;
use crate::store::{
    AccountRef, Db, LogCommit, LogSummary, NewAccount, Served, ServedKind, ServedViews, StoreError,
};

/// How often the background task looks for stored answers that are due.
pub const REFRESH_EVERY: std::time::Duration = std::time::Duration::from_secs(30);
/// How many DIDs' answers it re-makes per store read.
const REFRESH_BATCH: usize = 64;

/// One writer per DID at a time, so concurrent requests cannot interleave a
/// read–verify–commit (the store's head check is the durable guard behind it).
#[derive(Debug, Default)]
pub(super) struct DidLocks(Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>);

impl DidLocks {
    /// Waits for and takes the writer lock of one DID.
    pub(super) async fn lock(&self, did: &Did) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
            if map.len() > 10_000 {
                map.retain(|_, l| Arc::strong_count(l) > 1);
            }
            map.entry(did.to_string()).or_default().clone()
        };
        lock.lock_owned().await
    }
}

/// The portable-account service.
#[derive(Debug)]
pub struct Portable {
    pub(super) db: Db,
    pub(super) server: ServerName,
    pub(super) signer: Arc<ServerSigner>,
    pub(super) metrics: Arc<Metrics>,
    /// Server-to-server fetching and forwarding.
    pub federation: Arc<dyn Federation>,
    /// Outstanding key-login challenges.
    pub challenges: Challenges,
    pub(super) op_limits: OpRateLimiter,
    pub(super) locks: DidLocks,
    /// Log changes from concurrent writers, committed together.
    pub(super) group: GroupCommit,
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

/// The stored summary of a verified state.
pub fn summary_of(st: &AccountState) -> LogSummary {
    LogSummary {
        head: st.head,
        seq: st.seq,
        servers: st.servers.clone(),
        user_ids: st.user_ids.clone(),
        deactivated: st.deactivated,
        updated_at: st.updated_at,
        devices: Some(st.devices.clone()),
    }
}

impl Portable {
    pub fn new(
        config: &ServerConfig,
        db: Db,
        signer: Arc<ServerSigner>,
        metrics: Arc<Metrics>,
        federation: Arc<dyn Federation>,
    ) -> Self {
        Self {
            challenges: Challenges::for_store(db.store()),
            db,
            server: config.server_name.clone(),
            signer,
            metrics,
            federation,
            op_limits: OpRateLimiter::new(config.op_limits),
            locks: DidLocks::default(),
            group: GroupCommit::default(),
        }
    }

    /// The local user IDs of this server claimed by `st` that this server bound to its DID.
    pub async fn bound_here(&self, st: &AccountState) -> Result<Vec<UserId>, AppError> {
        let did = st.did.clone();
        let local: Vec<UserId> = st
            .user_ids
            .iter()
            .filter(|u| u.server_name() == self.server)
            .cloned()
            .collect();
        let bound = self
            .db
            .run(move |s| {
                let mut out = Vec::new();
                for u in local {
                    if s.did_of_user(&u)?.as_ref() == Some(&did) {
                        out.push(u);
                    }
                }
                Ok(out)
            })
            .await?;
        Ok(bound)
    }

    /// Reads and verifies the held log of `did` (a write-path step: reads never call it).
    pub async fn held_log(&self, did: &Did) -> Result<Option<(Vec<Value>, VerifiedLog)>, AppError> {
        let d = did.clone();
        let ops = self.db.run(move |s| s.log_ops(&d)).await?;
        if ops.is_empty() {
            return Ok(None);
        }
        Metrics::add(&self.metrics.log_verifications, 1);
        let log = roam_identity_core::log::verify_values(&ops, Some(did), now_ms())
            .map_err(|e| AppError::Internal(format!("stored log of {did} does not verify: {e}")))?;
        Ok(Some((ops, log)))
    }

    /// The binding of a local user ID as a W3C credential: the current attestation that binds
    /// it (as stored on the write path; a read verifies nothing), restated and signed with
    /// the server key (roam-vc).
    pub async fn credential_for(&self, user: &UserId) -> Result<Value, AppError> {
        let not_bound =
            || AppError::NotFound(format!("{user} has no portable identity on this server"));
        let u = user.clone();
        let did = self
            .db
            .run(move |s| s.did_of_user(&u))
            .await?
            .ok_or_else(not_bound)?;
        let d = did.clone();
        let mut atts = self.db.run(move |s| s.issued_attestations(&d)).await?;
        if atts.is_empty() {
            // A log stored by an older version: its answers are made once, on the write path.
            if !self.remake_served(&did, now_ms()).await? {
                return Err(not_bound());
            }
            let d = did.clone();
            atts = self.db.run(move |s| s.issued_attestations(&d)).await?;
        }
        let credential = atts
            .iter()
            .filter_map(|a| attestation::parse(a).ok())
            .find_map(|a| BindingCredential::from_attestation(&a).filter(|c| &c.user_id == user))
            .ok_or_else(not_bound)?;
        credential
            .issue(&self.signer.key().key_id, &self.signer.key().signing_key)
            .map_err(|e| AppError::NotFound(format!("no credential: {e}")))
    }

    /// The answers encoded for `log` with `attestations`, signed with today's key document.
    pub(super) fn views(
        &self,
        log: &VerifiedLog,
        attestations: Vec<Value>,
        now: Millis,
    ) -> Result<ServedViews, AppError> {
        let keys = self.signer.key_document(now)?;
        rules::served_views(log, attestations, keys, &self.server, now).map_err(|e| {
            AppError::Internal(format!("encoding the answers of {}: {e}", log.state.did))
        })
    }

    /// The stored answers of kind `kind` for `accounts`, in order: bytes made on the write
    /// path, so a read verifies nothing. An account whose log is held but has no answers
    /// stored (a log stored by an older version) has them made once, through the write path.
    pub async fn served(
        &self,
        accounts: Vec<AccountRef>,
        kind: ServedKind,
    ) -> Result<Vec<Option<Served>>, AppError> {
        let refs = accounts.clone();
        let mut found = self.db.run(move |s| s.served(&refs, kind)).await?;
        for (slot, account) in found.iter_mut().zip(accounts) {
            if slot.is_some() {
                continue;
            }
            let did = match account {
                AccountRef::Did(d) => d,
                AccountRef::User(u) => match self.db.run(move |s| s.did_of_user(&u)).await? {
                    Some(d) => d,
                    None => continue,
                },
            };
            // Unless another read or the background task made them while this one waited.
            if self
                .remake_served_unless_made_since(&did, 0, now_ms())
                .await?
            {
                let refs = vec![AccountRef::Did(did)];
                *slot = self
                    .db
                    .run(move |s| s.served(&refs, kind))
                    .await?
                    .pop()
                    .flatten();
            }
        }
        Ok(found)
    }

    /// Re-makes the stored answers of a held log (write path: verifies the log, re-issues
    /// the attestations when they are stale, signs a fresh key document). False when the
    /// log is not held. `now` is when (attestations and the key document count from it).
    pub async fn remake_served(&self, did: &Did, now: Millis) -> Result<bool, AppError> {
        let _guard = self.locks.lock(did).await;
        self.remake_served_locked(did, now).await
    }

    /// [`Self::remake_served`], unless answers made after `since` are stored by the time
    /// the DID's lock is taken (another caller made them while this one waited): so answers a
    /// read found missing, or a due log, are made once. True when answers are stored.
    async fn remake_served_unless_made_since(
        &self,
        did: &Did,
        since: Millis,
        now: Millis,
    ) -> Result<bool, AppError> {
        let _guard = self.locks.lock(did).await;
        let refs = vec![AccountRef::Did(did.clone())];
        // Every kind is stored by one commit: one kind says when they were made.
        let stored = self
            .db
            .run(move |s| s.served(&refs, ServedKind::Bundle))
            .await?
            .pop()
            .flatten();
        if stored.is_some_and(|s| s.generation > since) {
            return Ok(true);
        }
        self.remake_served_locked(did, now).await
    }

    async fn remake_served_locked(&self, did: &Did, now: Millis) -> Result<bool, AppError> {
        let Some((_, log)) = self.held_log(did).await? else {
            return Ok(false);
        };
        let d = did.clone();
        let stored = self.db.run(move |s| s.issued_attestations(&d)).await?;
        let stale = attestations_stale(&stored, &log.state, now);
        let atts = if stale {
            let bound = self.bound_here(&log.state).await?;
            attestations_for(
                &log.state,
                &self.server,
                &self.signer.signing_key(),
                &bound,
                now,
            )
        } else {
            stored
        };
        let commit = LogCommit {
            did: log.state.did.clone(),
            expected_head: Some(log.state.head),
            new_ops: Vec::new(),
            summary: summary_of(&log.state),
            attestations: stale.then(|| atts.clone()),
            bind: Vec::new(),
            unbind: Vec::new(),
            devices: Vec::new(),
            served: Some(self.views(&log, atts, now)?),
        };
        match self.group.commit(&self.db, commit).await {
            // The log moved on meanwhile; that commit stored its own answers.
            Err(StoreError::HeadMoved { .. }) => {}
            other => other?,
        }
        Ok(true)
    }

    /// The background task that keeps stored answers fresh: first marks every log due if
    /// the answers were made with another server key, then re-makes due answers (re-issuing
    /// attestations before they expire) every [`REFRESH_EVERY`], until `stop` turns true.
    pub async fn keep_answers_fresh(&self, mut stop: tokio::sync::watch::Receiver<bool>) {
        match self.schedule_for_key().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                accounts = n,
                "re-making stored answers for a new server key"
            ),
            Err(e) => tracing::warn!(error = %e, "could not schedule stored answers"),
        }
        loop {
            while !*stop.borrow() {
                match self.refresh_due(now_ms(), REFRESH_BATCH).await {
                    Ok(n) if n == REFRESH_BATCH => continue,
                    Ok(_) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "re-making stored answers failed");
                        break;
                    }
                }
            }
            tokio::select! {
                _ = stop.changed() => return,
                () = tokio::time::sleep(REFRESH_EVERY) => {}
            }
        }
    }

    /// Records the server key that makes stored answers from now on, and marks every held
    /// log due if its answers were made with another key (or none is recorded); returns how
    /// many. [`Self::keep_answers_fresh`] starts with it; a tool that fills a store without
    /// running the server (the bulk loader) calls it first, so the answers it stores count as
    /// made with this key.
    pub async fn schedule_for_key(&self) -> Result<u64, AppError> {
        let key_id = self.signer.key().key_id.as_str().to_owned();
        Ok(self.db.run(move |s| s.mark_served_due(&key_id)).await?)
    }

    /// Re-makes the answers of up to `limit` DIDs that are due at `now`; returns how many.
    pub async fn refresh_due(&self, now: Millis, limit: usize) -> Result<usize, AppError> {
        let due = self.db.run(move |s| s.served_due(now, limit)).await?;
        let mut done = 0;
        for did in due {
            // A read may have made them since the due list was read.
            if !self.remake_served_unless_made_since(&did, now, now).await? {
                tracing::warn!(%did, "answers due for a log that is not held");
            }
            done += 1;
        }
        Ok(done)
    }

    /// Creates a registered account together with the log its genesis op starts, bound to
    /// `new.account.user_id`, in one transaction.
    pub async fn create_with_genesis(
        &self,
        new: NewAccount,
        log: &VerifiedLog,
    ) -> Result<(), AppError> {
        let st = &log.state;
        let user_id = new.account.user_id.clone();
        let attestations = attestations_for(
            st,
            &self.server,
            &self.signer.signing_key(),
            std::slice::from_ref(&user_id),
            new.account.created_at,
        );
        let commit = LogCommit {
            did: st.did.clone(),
            expected_head: None,
            new_ops: log
                .chain
                .iter()
                .map(|o| (o.hash, o.value.clone()))
                .collect(),
            summary: summary_of(st),
            attestations: Some(attestations.clone()),
            bind: vec![user_id],
            unbind: Vec::new(),
            devices: Vec::new(),
            served: Some(self.views(log, attestations, new.account.created_at)?),
        };
        self.db
            .run(move |s| s.create_account_with_log(new, commit))
            .await?;
        Ok(())
    }

    /// Where a local account's DID lives now: `Err(Moved)` when this server is no longer in
    /// its server list, `Err(Deactivated)` when its log is; `Ok(None)` for accounts without
    /// a DID, `Ok(Some(log))` for accounts hosted here.
    pub async fn hosted_log(
        &self,
        user_id: &UserId,
    ) -> Result<Result<Option<VerifiedLog>, KeyAuthError>, AppError> {
        let u = user_id.clone();
        let Some(did) = self.db.run(move |s| s.did_of_user(&u)).await? else {
            return Ok(Ok(None));
        };
        let Some((_, log)) = self.held_log(&did).await? else {
            return Ok(Ok(None));
        };
        if log.state.deactivated {
            return Ok(Err(KeyAuthError::Deactivated));
        }
        if !log.state.servers.contains(&self.server) {
            return Ok(Err(KeyAuthError::Moved(
                log.state.servers.iter().map(|s| s.to_string()).collect(),
            )));
        }
        Ok(Ok(Some(log)))
    }

    /// Checks an `m.login.roam.key` proof (`challenge`, `signature`) for `user_id`, against
    /// the update key of the account's current log. The challenge is consumed either way.
    pub async fn check_key_proof(&self, user_id: &UserId, proof: &Value) -> Result<(), AppError> {
        let field = |name: &str| {
            proof
                .get(name)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| AppError::MissingParam(format!("Missing param: {name}")))
        };
        let (challenge, signature) = (field("challenge")?, field("signature")?);
        let log = match self.hosted_log(user_id).await? {
            Ok(Some(log)) => log,
            other => {
                self.challenges.discard(&challenge, now_ms());
                return Err(match other {
                    Err(e) => e.into(),
                    _ => AppError::Forbidden("Invalid username or key signature".into()),
                });
            }
        };
        self.challenges
            .redeem(
                &challenge,
                user_id,
                &self.server,
                &signature,
                &log.state.update_key,
                now_ms(),
            )
            .map_err(|e| match e {
                ChallengeError::Store(message) => AppError::Internal(message),
                e => AppError::Forbidden(format!("Key login failed: {e}")),
            })?;
        Metrics::add(&self.metrics.key_logins, 1);
        Ok(())
    }
}
