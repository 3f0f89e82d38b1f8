//! Storage for portable accounts: held account logs, the attestations this server issued,
//! user ID → DID bindings, the export stream and migrations.
//!
//! A separate trait from `Store` (which requires it) so the account-log half can be
//! read on its own; the redb implementation shares the same file and transactions.

use std::collections::BTreeMap;

use roam_identity_core::log::DeviceKeys;
use roam_identity_core::{DeviceId, Did, Millis, OpHash, ServerName, UserId};
use serde_json::Value;

use super::error::StoreResult;
use super::records::NewAccount;

/// The verified head of a held log, as last stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSummary {
    pub head: OpHash,
    pub seq: u64,
    pub servers: Vec<ServerName>,
    pub user_ids: Vec<UserId>,
    pub deactivated: bool,
    pub updated_at: Millis,
    /// The devices the account key signed in (`None` in summaries stored before this was
    /// kept: unknown until the next change to the log).
    pub devices: Option<BTreeMap<DeviceId, DeviceKeys>>,
}

/// One atomic change to a held log.
#[derive(Debug, Clone)]
pub struct LogCommit {
    pub did: Did,
    /// The head the caller verified against (`None`: the log was not held). The commit
    /// fails with [`super::error::StoreError::HeadMoved`] if another writer moved it meanwhile.
    pub expected_head: Option<OpHash>,
    /// New ops (hash, canonical JSON value), appended to the log and the export stream.
    pub new_ops: Vec<(OpHash, Value)>,
    /// The verified state after the change.
    pub summary: LogSummary,
    /// Replaces the issued attestations when `Some`.
    pub attestations: Option<Vec<Value>>,
    /// Local user IDs to bind to the DID. A user ID bound to another DID is refused
    /// ([`super::error::StoreError::UserInUse`]), checked inside the write transaction.
    pub bind: Vec<UserId>,
    /// Local user IDs to unbind (released).
    pub unbind: Vec<UserId>,
    /// Devices signed into the log that a local account should list (created without an
    /// access token when the account has no such device yet): device records move with the
    /// account, Matrix access tokens do not.
    pub devices: Vec<(UserId, DeviceId)>,
    /// The encoded answers for the new head, stored with it. `None` drops the stored answers
    /// and makes the DID due at once (the next read or the background task re-makes them).
    pub served: Option<ServedViews>,
}

/// Which stored encoding of an account's current head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServedKind {
    /// The bundle (`/_roam/v1/users/…`, `/_roam/v1/accounts/…`).
    Bundle,
    /// The whole log, ordered by seq (`/_roam/v1/accounts/{did}/log`).
    Log,
    /// The DID document alone (`/1.0/identifiers/…` asked for a DID document type).
    DidDocument,
    /// The DID resolution result (`/1.0/identifiers/…`).
    DidResolution,
}

impl ServedKind {
    pub const ALL: [ServedKind; 4] = [
        Self::Bundle,
        Self::Log,
        Self::DidDocument,
        Self::DidResolution,
    ];

    /// The storage key, also the representation's tag in the ETag.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bundle => "bundle",
            Self::Log => "log",
            Self::DidDocument => "doc",
            Self::DidResolution => "res",
        }
    }
}

/// The answers for one head, encoded on the write path (after verification) so that reads
/// only copy bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedViews {
    /// When they were made; with the head, it names this version of the answers (ETag).
    pub generation: Millis,
    /// They stay true until then (the earliest expiry of the attestations and key document
    /// they carry).
    pub fresh_until: Millis,
    /// When the background task re-makes them (re-issuing attestations), before `fresh_until`.
    pub due_at: Millis,
    /// One body per [`ServedKind`], in [`ServedKind::ALL`] order.
    pub bodies: [Vec<u8>; 4],
}

/// One stored answer, as a read gets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    pub did: Did,
    pub head: OpHash,
    pub generation: Millis,
    pub fresh_until: Millis,
    pub deactivated: bool,
    pub body: Vec<u8>,
}

/// How a read names an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountRef {
    Did(Did),
    /// A local user ID bound to a DID here.
    User(UserId),
}

/// One line of the export stream.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportedOp {
    pub cursor: u64,
    pub did: String,
    pub op: Value,
}

/// Durable state of portable accounts. Every method is atomic.
pub trait LogStore {
    /// Every op held for `did` (all branches), in no particular order.
    fn log_ops(&self, did: &Did) -> StoreResult<Vec<Value>>;
    /// The stored head of `did`'s log.
    fn log_summary(&self, did: &Did) -> StoreResult<Option<LogSummary>>;
    /// Every DID whose log is held.
    fn held_dids(&self) -> StoreResult<Vec<Did>>;
    /// The DID bound to a local user ID.
    fn did_of_user(&self, user_id: &UserId) -> StoreResult<Option<Did>>;
    /// The attestations this server last issued for `did`.
    fn issued_attestations(&self, did: &Did) -> StoreResult<Vec<Value>>;
    /// Applies a change to a held log (or starts holding one).
    fn commit_log(&self, commit: LogCommit) -> StoreResult<()>;
    /// Applies several changes in one durable transaction (group commit): each applies
    /// whole or not at all and has its own result (`HeadMoved`, `UserInUse`); `Err` means
    /// none was committed.
    fn commit_logs(&self, commits: Vec<LogCommit>) -> StoreResult<Vec<StoreResult<()>>>;
    /// The stored answers of kind `kind` for each account, in order (`None`: no DID bound,
    /// or no answers stored for it), read in one transaction.
    fn served(&self, accounts: &[AccountRef], kind: ServedKind)
    -> StoreResult<Vec<Option<Served>>>;
    /// Held DIDs whose answers are due at `now` (or missing), at most `limit`, most overdue
    /// first.
    fn served_due(&self, now: Millis, limit: usize) -> StoreResult<Vec<Did>>;
    /// Marks every held DID due now unless the stored answers were made with the server key
    /// `key_id` (a new key, or answers made before they were stored); returns how many.
    fn mark_served_due(&self, key_id: &str) -> StoreResult<u64>;
    /// Creates an account (and session, consuming a registration token) together with its
    /// log, binding and attestations, in one transaction.
    fn create_account_with_log(&self, new: NewAccount, commit: LogCommit) -> StoreResult<()>;
    /// Keeps ops refused as equivocation, as evidence, while the DID's evidence stays
    /// within `cap` (ops and bytes); ops beyond it are dropped. Returns how many were kept.
    fn record_fork(
        &self,
        did: &Did,
        ops: &[(OpHash, Value)],
        cap: EvidenceCap,
    ) -> StoreResult<usize>;
    /// Fork evidence held for `did`.
    fn fork_evidence(&self, did: &Did) -> StoreResult<Vec<Value>>;
    /// Ops stored after `after`, at most `limit`, in storage order.
    fn export_ops(&self, after: u64, limit: usize) -> StoreResult<Vec<ExportedOp>>;
    /// A migration record.
    fn migration(&self, id: &str) -> StoreResult<Option<Value>>;
    /// The latest migration record of `did`.
    fn migration_of(&self, did: &Did) -> StoreResult<Option<Value>>;
    /// Stores a migration record (and makes it the DID's latest).
    fn put_migration(&self, id: &str, did: &Did, record: &Value) -> StoreResult<()>;
    /// Reads the arrival times of `did`'s recent ops, lets `update` change them, and
    /// stores the result when `update` returns true: the per-DID op windows, durable.
    fn update_op_window(&self, did: &Did, update: &mut OpWindowUpdate<'_>) -> StoreResult<()>;
}

/// A change to one DID's op window: its arrival times (ms), oldest first.
pub type OpWindowUpdate<'a> = dyn FnMut(&mut Vec<Millis>) -> bool + Send + 'a;

/// The most fork evidence kept per DID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvidenceCap {
    pub ops: usize,
    pub bytes: usize,
}
