//! The cache: verified answers in redb, wrapped around any resolver as [`Cached<R>`].
//!
//! Positive answers are served as `cached` within their TTL, negative ones (`not_found`,
//! `unbound`) are repeated briefly, and past the TTL an unreachable origin yields `stale`.
//! A cached head is never replaced by an older one: the new verified log must contain it, or
//! have superseded it by a valid recovery rotate; otherwise the cached answer is kept.
//!
//! Past the TTL, the record goes to the inner resolver ([`KnownAccount`], via
//! [`Resolver::resolve_user_known`]; for a DID, its servers as hints): when the user ID's own
//! domain is down, the account's servers are asked before anything is called `stale`
//! (spec §10.2).
//!
//! Offline (the inner resolver [`Resolver::is_offline`]), the same rules apply with the inner
//! resolver asking LAN peers only: within the TTL the answer is `cached`; past it the LAN
//! peers are asked and the answer is `stale` (first warning [`OFFLINE_WARNING`]: no server
//! was asked) unless a peer proves a strictly newer head (`lan`, not stored); with nothing
//! cached the LAN answer (or `unreachable`) is returned as is.

use std::path::Path;
use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use redb::backends::InMemoryBackend;
use redb::{Database, ReadableDatabase, TableDefinition};
use roam_identity_core::bundle::Bundle;
use roam_identity_core::log;
use roam_identity_core::{Did, Millis, OpHash, ServerName, UserId};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::clock::{Clock, rfc3339};
use crate::config::{CachePolicy, OFFLINE_WARNING};
use crate::error::ResolveError;
use crate::merge::{HeadRelation, relation_to};
use crate::resolution::{
    KnownAccount, Notice, Resolution, ResolutionWire, ResolveStatus, Source, notice,
};
use crate::{ResolveResult, Resolver};

/// DID → stored account record (JSON: the resolution and its bundle).
const ACCOUNTS: TableDefinition<&str, &[u8]> = TableDefinition::new("accounts");
/// User ID → DID, for user IDs bound when the record was verified.
const USERS: TableDefinition<&str, &str> = TableDefinition::new("users");
/// `user:@a:b` or `did:key:…` → stored negative answer (JSON).
const NEGATIVE: TableDefinition<&str, &[u8]> = TableDefinition::new("negative");

/// Why the cache could not read or write.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cache storage: {0}")]
    Storage(#[from] redb::Error),
    #[error("cache record for {key} is unreadable: {reason}")]
    Record { key: String, reason: String },
    #[error("cache task failed: {0}")]
    Task(String),
}

fn storage<E: Into<redb::Error>>(e: E) -> CacheError {
    CacheError::Storage(e.into())
}

#[derive(Serialize, Deserialize)]
struct StoredAccount {
    resolution: ResolutionWire,
    bundle: Value,
}

#[derive(Serialize, Deserialize)]
struct StoredNegative {
    class: String,
    subject: String,
    detail: String,
    #[serde(default)]
    user_id: Option<UserId>,
    #[serde(default)]
    did: Option<Box<Did>>,
    expires_at: Millis,
}

impl StoredNegative {
    /// The record of a negative answer (`not_found`, `unbound`); other errors are never
    /// stored.
    fn of(e: &ResolveError, expires_at: Millis) -> Option<Self> {
        match e {
            ResolveError::NotFound { subject, detail } => Some(StoredNegative {
                class: "not_found".into(),
                subject: subject.clone(),
                detail: detail.clone(),
                user_id: None,
                did: None,
                expires_at,
            }),
            ResolveError::Unbound {
                user_id,
                did,
                reason,
            } => Some(StoredNegative {
                class: "unbound".into(),
                subject: user_id.to_string(),
                detail: reason.clone(),
                user_id: Some(user_id.clone()),
                did: Some(did.clone()),
                expires_at,
            }),
            _ => None,
        }
    }
}

/// The redb file holding verified answers. Cheap to clone; the LAN router serves from it.
#[derive(Debug, Clone)]
pub struct CacheStore {
    db: Arc<Database>,
    /// Decoded answers in memory, in front of redb: a hit costs a map lookup instead of a
    /// blocking-pool hop, a JSON decode and several point decompressions. It mirrors what
    /// redb holds (filled on read and on `put`, dropped with a user's positive mapping), and
    /// it is per process, as the redb file is.
    memo: Arc<std::sync::Mutex<Memo>>,
}

/// The in-memory mirror of [`CacheStore`]'s positive entries.
#[derive(Debug, Default)]
struct Memo {
    accounts: std::collections::HashMap<String, Resolution>,
    users: std::collections::HashMap<String, String>,
}

/// Most accounts kept decoded in memory; beyond it the mirror starts over (redb keeps all).
const MEMO_MAX: usize = 10_000;

impl Memo {
    fn insert(&mut self, res: &Resolution) {
        if self.accounts.len() >= MEMO_MAX {
            self.accounts.clear();
            self.users.clear();
        }
        let did = res.did.to_string();
        for u in &res.user_ids {
            self.users.insert(u.to_string(), did.clone());
        }
        self.accounts.insert(did, res.clone());
    }
}

impl CacheStore {
    /// Opens (or creates) the cache file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, CacheError> {
        Self::init(Database::create(path).map_err(storage)?)
    }

    /// A cache in memory (tests, benchmarks, short-lived tools).
    pub fn in_memory() -> Result<Self, CacheError> {
        let db = Database::builder()
            .create_with_backend(InMemoryBackend::new())
            .map_err(storage)?;
        Self::init(db)
    }

    fn init(db: Database) -> Result<Self, CacheError> {
        let tx = db.begin_write().map_err(storage)?;
        tx.open_table(ACCOUNTS).map_err(storage)?;
        tx.open_table(USERS).map_err(storage)?;
        tx.open_table(NEGATIVE).map_err(storage)?;
        tx.commit().map_err(storage)?;
        Ok(Self {
            db: Arc::new(db),
            memo: Arc::default(),
        })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, CacheError> + Send + 'static,
    ) -> Result<T, CacheError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|e| CacheError::Task(e.to_string()))?
    }

    /// The stored bundle (wire JSON) of the account `user` was bound to.
    pub async fn bundle_for_user(&self, user: &UserId) -> Result<Option<Value>, CacheError> {
        Ok(self.record_for_user(user).await?.map(|r| r.bundle))
    }

    /// The stored bundle (wire JSON) of `did`.
    pub async fn bundle_for_did(&self, did: &Did) -> Result<Option<Value>, CacheError> {
        Ok(self.record_for_did(did).await?.map(|r| r.bundle))
    }

    /// The decoded answer held in memory for the account `user` was bound to, if any: no
    /// I/O. A positive answer held here means no negative one is stored for `user` (storing
    /// a negative answer drops the user's mapping; storing a positive one clears negatives).
    fn memo_for_user(&self, user: &UserId) -> Option<Resolution> {
        let memo = self.memo.lock().unwrap_or_else(|p| p.into_inner());
        memo.users
            .get(user.as_str())
            .and_then(|d| memo.accounts.get(d))
            .cloned()
    }

    /// The stored resolution of the account `user` was bound to.
    pub async fn resolution_for_user(
        &self,
        user: &UserId,
    ) -> Result<Option<Resolution>, CacheError> {
        {
            let memo = self.memo.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(r) = memo
                .users
                .get(user.as_str())
                .and_then(|d| memo.accounts.get(d))
            {
                return Ok(Some(r.clone()));
            }
        }
        let found = self.record_for_user(user).await?.map(decode).transpose()?;
        if let Some(r) = &found {
            let mut memo = self.memo.lock().unwrap_or_else(|p| p.into_inner());
            memo.insert(r);
            // The stored mapping says `user` leads here even if the answer no longer lists it.
            memo.users.insert(user.to_string(), r.did.to_string());
        }
        Ok(found)
    }

    /// The stored resolution of `did`.
    pub async fn resolution_for_did(&self, did: &Did) -> Result<Option<Resolution>, CacheError> {
        if let Some(r) = self
            .memo
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .accounts
            .get(did.as_str())
        {
            return Ok(Some(r.clone()));
        }
        let found = self.record_for_did(did).await?.map(decode).transpose()?;
        if let Some(r) = &found {
            self.memo
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(r);
        }
        Ok(found)
    }

    async fn record_for_user(&self, user: &UserId) -> Result<Option<StoredAccount>, CacheError> {
        let key = user.to_string();
        self.blocking(move |db| {
            let tx = db.begin_read().map_err(storage)?;
            let users = tx.open_table(USERS).map_err(storage)?;
            let Some(did) = users.get(key.as_str()).map_err(storage)? else {
                return Ok(None);
            };
            let did = did.value().to_owned();
            read_account(&tx, &did)
        })
        .await
    }

    async fn record_for_did(&self, did: &Did) -> Result<Option<StoredAccount>, CacheError> {
        let key = did.to_string();
        self.blocking(move |db| {
            let tx = db.begin_read().map_err(storage)?;
            read_account(&tx, &key)
        })
        .await
    }

    /// Stores a verified answer: the account record, its bound user IDs, and clears negative
    /// answers about them — in one write transaction.
    pub async fn put(&self, res: &Resolution) -> Result<(), CacheError> {
        let did = res.did.to_string();
        let record = serde_json::to_vec(&StoredAccount {
            resolution: res.to_wire(),
            bundle: res.bundle.to_value(),
        })
        .map_err(|e| CacheError::Record {
            key: did.clone(),
            reason: e.to_string(),
        })?;
        let users: Vec<String> = res.user_ids.iter().map(ToString::to_string).collect();
        self.blocking(move |db| {
            let tx = db.begin_write().map_err(storage)?;
            {
                let mut accounts = tx.open_table(ACCOUNTS).map_err(storage)?;
                accounts
                    .insert(did.as_str(), record.as_slice())
                    .map_err(storage)?;
                let mut table = tx.open_table(USERS).map_err(storage)?;
                for u in &users {
                    table.insert(u.as_str(), did.as_str()).map_err(storage)?;
                }
                let mut neg = tx.open_table(NEGATIVE).map_err(storage)?;
                neg.remove(did.as_str()).map_err(storage)?;
                for u in &users {
                    neg.remove(format!("user:{u}").as_str()).map_err(storage)?;
                }
            }
            tx.commit().map_err(storage)?;
            Ok(())
        })
        .await?;
        // Only after the commit: the mirror never runs ahead of the disk.
        self.memo
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(res);
        Ok(())
    }

    async fn negative(&self, key: String) -> Result<Option<StoredNegative>, CacheError> {
        self.blocking(move |db| {
            let tx = db.begin_read().map_err(storage)?;
            let t = tx.open_table(NEGATIVE).map_err(storage)?;
            let Some(v) = t.get(key.as_str()).map_err(storage)? else {
                return Ok(None);
            };
            serde_json::from_slice(v.value())
                .map(Some)
                .map_err(|e| CacheError::Record {
                    key: key.clone(),
                    reason: e.to_string(),
                })
        })
        .await
    }

    /// Records a negative answer; for a user ID, also forgets its positive mapping (the
    /// origin has said the binding is gone).
    async fn put_negative(&self, key: String, neg: StoredNegative) -> Result<(), CacheError> {
        let bytes = serde_json::to_vec(&neg).map_err(|e| CacheError::Record {
            key: key.clone(),
            reason: e.to_string(),
        })?;
        let user = key.strip_prefix("user:").map(str::to_owned);
        self.blocking(move |db| {
            let tx = db.begin_write().map_err(storage)?;
            {
                let mut t = tx.open_table(NEGATIVE).map_err(storage)?;
                t.insert(key.as_str(), bytes.as_slice()).map_err(storage)?;
                if let Some(user) = key.strip_prefix("user:") {
                    let mut users = tx.open_table(USERS).map_err(storage)?;
                    users.remove(user).map_err(storage)?;
                }
            }
            tx.commit().map_err(storage)?;
            Ok(())
        })
        .await?;
        // After the commit, like every change to the mirror.
        if let Some(user) = user {
            self.memo
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .users
                .remove(&user);
        }
        Ok(())
    }
}

fn read_account(
    tx: &redb::ReadTransaction,
    did: &str,
) -> Result<Option<StoredAccount>, CacheError> {
    let accounts = tx.open_table(ACCOUNTS).map_err(storage)?;
    let Some(v) = accounts.get(did).map_err(storage)? else {
        return Ok(None);
    };
    serde_json::from_slice(v.value())
        .map(Some)
        .map_err(|e| CacheError::Record {
            key: did.to_owned(),
            reason: e.to_string(),
        })
}

fn decode(r: StoredAccount) -> Result<Resolution, CacheError> {
    let key = r.resolution.did.to_string();
    let err = |reason: String| CacheError::Record {
        key: key.clone(),
        reason,
    };
    // Only verified answers are ever written, so the record is decoded, not re-verified;
    // peers that receive the bundle verify it themselves.
    let bundle = Bundle::from_value(&r.bundle).map_err(|e| err(e.to_string()))?;
    Resolution::from_wire(r.resolution, Arc::new(bundle)).map_err(|e| err(e.to_string()))
}

/// A resolver with a redb cache in front. See the module docs for the rules.
#[derive(Debug, Clone)]
pub struct Cached<R> {
    inner: R,
    store: CacheStore,
    clock: Arc<dyn Clock>,
    policy: CachePolicy,
}

impl<R: Resolver> Cached<R> {
    /// Wraps `inner`.
    pub fn new(inner: R, store: CacheStore, clock: Arc<dyn Clock>, policy: CachePolicy) -> Self {
        Self {
            inner,
            store,
            clock,
            policy,
        }
    }

    /// The store (to serve it on the LAN).
    pub fn store(&self) -> &CacheStore {
        &self.store
    }

    /// The wrapped resolver.
    pub fn inner(&self) -> &R {
        &self.inner
    }

    async fn resolve_user_impl(&self, user: &UserId) -> ResolveResult {
        let now = self.clock.now_ms();
        let cached = match self.lookup_user(user, now).await {
            Lookup::Answered(a) => return a,
            Lookup::Ask(cached) => cached,
        };
        // What was verified earlier goes along: if the origin is down, the account's servers
        // are asked and the origin's attestation verified earlier still counts (§10.2).
        let known = cached.as_ref().map(KnownAccount::of);
        let answer = self.inner.resolve_user_known(user, known.as_ref()).await;
        self.settle(answer, cached, Some(user), format!("user:{user}"), now)
            .await
    }

    /// Several user IDs: what the cache answers is answered from it; the others are asked
    /// of the inner resolver together (a network resolver asks the names of one server in
    /// one bulk query), and each answer is settled as [`Self::resolve_user_impl`] settles
    /// one. A name the bulk path found unreachable is asked again alone with what the cache
    /// knew of it, so the §10.2 fallback through the account's servers still applies.
    async fn resolve_users_impl(&self, users: &[UserId]) -> Vec<ResolveResult> {
        let now = self.clock.now_ms();
        let mut out: Vec<Option<ResolveResult>> = Vec::with_capacity(users.len());
        let mut ask: Vec<(usize, Option<Resolution>)> = Vec::new();
        for (i, user) in users.iter().enumerate() {
            match self.lookup_user(user, now).await {
                Lookup::Answered(a) => out.push(Some(a)),
                Lookup::Ask(cached) => {
                    out.push(None);
                    ask.push((i, cached));
                }
            }
        }
        let names: Vec<UserId> = ask.iter().map(|(i, _)| users[*i].clone()).collect();
        let answers = self.inner.resolve_users(&names).await;
        for ((i, cached), mut answer) in ask.into_iter().zip(answers) {
            let user = &users[i];
            if let (Err(ResolveError::Unreachable { .. }), Some(c)) = (&answer, &cached) {
                let known = KnownAccount::of(c);
                answer = self.inner.resolve_user_known(user, Some(&known)).await;
            }
            let settled = self
                .settle(answer, cached, Some(user), format!("user:{user}"), now)
                .await;
            out[i] = Some(settled);
        }
        out.into_iter().flatten().collect()
    }

    /// What the cache says of `user` at `now`: a fresh answer (positive or negative), or the
    /// record to weigh a new answer against.
    async fn lookup_user(&self, user: &UserId, now: Millis) -> Lookup {
        // The hot path: a fresh answer decoded in memory needs no negative lookup (see
        // `CacheStore::memo_for_user`) and no blocking-pool hop.
        if let Some(c) = self.store.memo_for_user(user)
            && c.user_ids.contains(user)
            && c.fresh_until(self.policy.positive_ttl_ms) > now
        {
            let notices = c.notices.clone();
            return Lookup::Answered(Ok(relabel(
                c,
                Some(user.clone()),
                ResolveStatus::Cached,
                Vec::new(),
                notices,
            )));
        }
        if let Some(e) = self.fresh_negative(format!("user:{user}"), now).await {
            return Lookup::Answered(Err(e));
        }
        let cached = self
            .store
            .resolution_for_user(user)
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(%user, error = %e, "cache read failed; resolving without it");
                None
            })
            .filter(|c| c.user_ids.contains(user));
        if let Some(c) = &cached
            && c.fresh_until(self.policy.positive_ttl_ms) > now
        {
            return Lookup::Answered(Ok(relabel(
                c.clone(),
                Some(user.clone()),
                ResolveStatus::Cached,
                Vec::new(),
                c.notices.clone(),
            )));
        }
        Lookup::Ask(cached)
    }

    async fn resolve_did_impl(&self, did: &Did, hints: &[ServerName]) -> ResolveResult {
        let now = self.clock.now_ms();
        let neg_key = did.to_string();
        if let Some(e) = self.fresh_negative(neg_key.clone(), now).await {
            return Err(e);
        }
        let cached = self
            .store
            .resolution_for_did(did)
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(%did, error = %e, "cache read failed; resolving without it");
                None
            });
        if let Some(c) = &cached
            && c.fresh_until(self.policy.positive_ttl_ms) > now
        {
            let first = c.user_ids.first().cloned();
            return Ok(relabel(
                c.clone(),
                first,
                ResolveStatus::Cached,
                Vec::new(),
                c.notices.clone(),
            ));
        }
        let mut all_hints = hints.to_vec();
        for s in cached.iter().flat_map(|c| c.servers.iter()) {
            if !all_hints.contains(s) {
                all_hints.push(s.clone());
            }
        }
        let answer = self.inner.resolve_did_via(did, &all_hints).await;
        self.settle(answer, cached, None, neg_key, now).await
    }

    async fn fresh_negative(&self, key: String, now: Millis) -> Option<ResolveError> {
        let neg = self.store.negative(key).await.ok().flatten()?;
        if neg.expires_at <= now {
            return None;
        }
        match (neg.class.as_str(), neg.user_id, neg.did) {
            ("unbound", Some(user_id), Some(did)) => Some(ResolveError::Unbound {
                user_id,
                did,
                reason: format!("{} (cached answer)", neg.detail),
            }),
            _ => Some(ResolveError::NotFound {
                subject: neg.subject,
                detail: format!("{} (cached answer)", neg.detail),
            }),
        }
    }

    /// Decides what to answer and store, given the inner resolver's answer and the record.
    async fn settle(
        &self,
        answer: ResolveResult,
        cached: Option<Resolution>,
        user: Option<&UserId>,
        neg_key: String,
        now: Millis,
    ) -> ResolveResult {
        match answer {
            Ok(fresh) => Ok(self.settle_fresh(fresh, cached, user, now).await),
            Err(ResolveError::Unreachable { subject, tried }) => match cached {
                Some(c) => Ok(self.stale_when_unreachable(c, user, &tried)),
                None => Err(ResolveError::Unreachable { subject, tried }),
            },
            Err(e @ (ResolveError::NotFound { .. } | ResolveError::Unbound { .. })) => {
                let expires_at = now.saturating_add(self.policy.negative_ttl_ms);
                if let Some(neg) = StoredNegative::of(&e, expires_at)
                    && let Err(err) = self.store.put_negative(neg_key, neg).await
                {
                    tracing::warn!(error = %err, "could not cache a negative answer");
                }
                Err(e)
            }
            // Invalid evidence and equivocation are never cached: each new attempt must see
            // them again (or see them resolved).
            Err(e) => Err(e),
        }
    }

    /// The never-downgrade rule: a fresh verified answer replaces the record only if its log
    /// contains the cached head (or a recovery rotate superseded it); a LAN answer is taken,
    /// unstored, only if it goes further; otherwise the record is kept and labelled `stale`.
    async fn settle_fresh(
        &self,
        fresh: Resolution,
        cached: Option<Resolution>,
        user: Option<&UserId>,
        now: Millis,
    ) -> Resolution {
        let Some((c, relation)) = weigh_against(&fresh, cached, now) else {
            if fresh.status == ResolveStatus::Verified {
                self.store_positive(&fresh).await;
            }
            return fresh;
        };
        match (fresh.status, relation) {
            (ResolveStatus::Verified, HeadRelation::Extends) => {
                self.store_positive(&fresh).await;
                fresh
            }
            (ResolveStatus::Verified, HeadRelation::Recovered) => {
                let mut fresh = fresh;
                fresh.warnings.push(format!(
                    "a recovery rotate superseded the head cached earlier ({}); the owner's recovery key took over",
                    c.head
                ));
                note_recovered(&mut fresh, &c.head);
                self.store_positive(&fresh).await;
                fresh
            }
            // A LAN answer that goes further than the cache is more recent evidence; it is
            // not stored, since nothing online confirmed it.
            (ResolveStatus::Lan, HeadRelation::Extends) if fresh.head != c.head => fresh,
            // The inner resolver is itself a cache: its answer already says how old it is.
            (ResolveStatus::Cached | ResolveStatus::Stale, _) => fresh,
            (status, _) => keep_cached(c, user, &fresh, status),
        }
    }

    /// The origin could not be reached: the record, `stale`, saying what was tried.
    fn stale_when_unreachable(
        &self,
        c: Resolution,
        user: Option<&UserId>,
        tried: &[String],
    ) -> Resolution {
        // Offline, "cannot be reached" means "was not asked": say so first.
        let offline = self.inner.is_offline().then(|| OFFLINE_WARNING.to_owned());
        let warnings = offline
            .into_iter()
            .chain(
                tried
                    .iter()
                    .filter(|t| !t.starts_with("offline:"))
                    .map(|t| format!("not reachable: {t}")),
            )
            .collect();
        let notices = if self.inner.is_offline() {
            vec![Notice::new(notice::OFFLINE)]
        } else {
            unreachable_notices(user, &c.servers)
        };
        let who = subject_user(user, &c);
        relabel(c, who, ResolveStatus::Stale, warnings, notices)
    }

    async fn store_positive(&self, res: &Resolution) {
        if let Err(e) = self.store.put(res).await {
            tracing::warn!(did = %res.did, error = %e, "could not cache a verified answer");
        }
    }
}

/// The record a fresh answer is weighed against (the same account's, if cached), and how
/// the fresh answer's log relates to the record's head (the never-downgrade rule).
pub(crate) fn weigh_against(
    fresh: &Resolution,
    cached: Option<Resolution>,
    now: Millis,
) -> Option<(Resolution, HeadRelation)> {
    let c = cached.filter(|c| c.did == fresh.did)?;
    let relation = head_relation(fresh, &c.head, now);
    Some((c, relation))
}

/// A recovery rotate superseded `head`: notice `recovered`, unless the answer says it already.
pub(crate) fn note_recovered(fresh: &mut Resolution, head: &OpHash) {
    if !fresh.notices.iter().any(|n| n.code == notice::RECOVERED) {
        fresh
            .notices
            .push(Notice::new(notice::RECOVERED).head(head));
    }
}

/// Nobody could be reached: the user ID's origin (`origin_unreachable`) and the account's
/// other servers (`server_unreachable`).
pub(crate) fn unreachable_notices(user: Option<&UserId>, servers: &[ServerName]) -> Vec<Notice> {
    let mut notices = Vec::new();
    if let Some(u) = user {
        notices.push(Notice::new(notice::ORIGIN_UNREACHABLE).server(&u.server_name()));
    }
    for s in servers {
        if user.is_none_or(|u| u.server_name() != *s) {
            notices.push(Notice::new(notice::SERVER_UNREACHABLE).server(s));
        }
    }
    notices
}

/// How the fresh answer's log relates to the cached head; a log that no longer verifies
/// counts as not containing it.
fn head_relation(fresh: &Resolution, cached_head: &OpHash, now: Millis) -> HeadRelation {
    if &fresh.head == cached_head {
        return HeadRelation::Extends;
    }
    match log::verify_values(&fresh.bundle.log, Some(&fresh.did), now) {
        Ok(l) => relation_to(&l, cached_head),
        Err(_) => HeadRelation::Missing,
    }
}

/// The fresh answer does not replace the record (a refused downgrade, or LAN peers with
/// nothing newer): the record, `stale`, with the fresh answer's warnings and the reason.
fn keep_cached(
    c: Resolution,
    user: Option<&UserId>,
    fresh: &Resolution,
    status: ResolveStatus,
) -> Resolution {
    let mut warnings = fresh.warnings.clone();
    let mut notices = fresh.notices.clone();
    if status == ResolveStatus::Verified {
        let mut n = Notice::new(notice::DOWNGRADE_REFUSED).head(&fresh.head);
        if let Source::Origin { server, .. } = &fresh.source {
            n = n.server(server);
        }
        notices.push(n);
    } else {
        notices.push(Notice::new(notice::LAN_NOTHING_NEWER));
    }
    let reason = match status {
        ResolveStatus::Verified => format!(
            "refused a downgrade: the log served now (head {}) does not contain the head verified at {} ({}); keeping the cached answer",
            fresh.head,
            rfc3339(c.verified_at),
            c.head
        ),
        _ => format!(
            "LAN peers offered nothing newer than the head verified at {}; answering from the cache",
            rfc3339(c.verified_at)
        ),
    };
    warnings.push(reason);
    let who = subject_user(user, &c);
    relabel(c, who, ResolveStatus::Stale, warnings, notices)
}

/// Who the answer is about: the user ID asked for, or the record's first bound one.
fn subject_user(user: Option<&UserId>, c: &Resolution) -> Option<UserId> {
    user.cloned().or_else(|| c.user_ids.first().cloned())
}

/// What the cache says before anyone is asked.
enum Lookup {
    /// A fresh answer: no one needs asking.
    Answered(ResolveResult),
    /// Ask; the record held (possibly stale) goes along.
    Ask(Option<Resolution>),
}

fn relabel(
    mut r: Resolution,
    user: Option<UserId>,
    status: ResolveStatus,
    warnings: Vec<String>,
    notices: Vec<Notice>,
) -> Resolution {
    r.user_id = user;
    r.status = status;
    r.warnings = warnings;
    r.notices = notices;
    r
}

impl<R: Resolver> Resolver for Cached<R> {
    fn resolve_user<'a>(&'a self, user_id: &'a UserId) -> BoxFuture<'a, ResolveResult> {
        self.resolve_user_impl(user_id).boxed()
    }

    fn resolve_users<'a>(&'a self, users: &'a [UserId]) -> BoxFuture<'a, Vec<ResolveResult>> {
        self.resolve_users_impl(users).boxed()
    }

    fn resolve_did_via<'a>(
        &'a self,
        did: &'a Did,
        hints: &'a [ServerName],
    ) -> BoxFuture<'a, ResolveResult> {
        self.resolve_did_impl(did, hints).boxed()
    }

    fn is_offline(&self) -> bool {
        self.inner.is_offline()
    }
}
