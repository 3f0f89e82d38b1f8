//! Durable state of the homeserver behind one trait.
//!
//! Handlers never see redb: they call the typed methods of [`Store`], which speak in validated
//! identifiers and plain records and fail with [`StoreError`]. The trait is synchronous because
//! redb is; async callers go through [`Db`], which runs a call on the blocking pool. Every method that changes several tables does it in one transaction and
//! returns only after the commit, so an answer sent to a client is never ahead of the disk.
//!
//! New features (the account log, attestations) add their own tables in [`tables`] and their
//! own methods here; they must not change the layouts of the existing tables.

pub mod logs;
mod redb_common;
mod redb_logs;
mod redb_store;
pub mod tables;

use std::collections::BTreeMap;

use std::sync::Arc;

use roam_identity_core::{DeviceId, Did, Millis, UserId};
use serde_json::Value;

pub use logs::{ExportedOp, LogCommit, LogStore, LogSummary};
pub use redb_common::RedbStore;

/// The cause behind a backend or decoding failure (redb, the file system, serde).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a storage call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The user ID is already registered.
    #[error("user ID {0} is already taken")]
    UserInUse(UserId),
    /// The named row does not exist.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A one-time key ID was uploaded again with different content.
    #[error("one-time key {key_id} already exists with different content")]
    KeyConflict { key_id: String },
    /// A registration token with this text already exists.
    #[error("registration token already exists")]
    TokenExists,
    /// A registration token does not exist, is used up or expired.
    #[error("registration token is not valid")]
    TokenInvalid,
    /// A concurrent writer moved the head of `did`'s log after the caller read it; retry
    /// from a fresh read.
    #[error("conflict: log of {did} changed concurrently")]
    HeadMoved { did: Box<Did> },
    /// The database file is held by another process (usually a running `roam serve`).
    #[error("the database is in use by another process")]
    Locked,
    /// The file was written by a build with another table layout.
    #[error("stored data is corrupt: schema version {found}, this build understands {supported}")]
    SchemaVersion { found: u64, supported: u64 },
    /// A stored row could not be decoded: the file was written by something else.
    #[error("stored data is corrupt: {what}: {source}")]
    Corrupt {
        what: &'static str,
        source: BoxError,
    },
    /// A row names another row that is missing.
    #[error("stored data is corrupt: {what} names a missing row")]
    Dangling { what: &'static str },
    /// The data directory could not be created.
    #[error("storage backend failed: cannot create {}: {source}", path.display())]
    CreateDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    /// redb, the file system or the blocking pool failed.
    #[error("storage backend failed: {context}: {source}")]
    Backend {
        context: &'static str,
        source: BoxError,
    },
}

impl StoreError {
    /// A decoding failure of a stored `what`, for `map_err`.
    pub fn corrupt<E: Into<BoxError>>(what: &'static str) -> impl FnOnce(E) -> StoreError {
        move |e| StoreError::Corrupt {
            what,
            source: e.into(),
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// The server's Ed25519 signing key as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerKeyRecord {
    /// The version part of the key ID, `[a-zA-Z0-9_]+` (e.g. `a_Xy12`).
    pub version: String,
    /// The 32-byte seed. Kept in the store so that one file is the whole server.
    pub seed: [u8; 32],
    pub created_at: Millis,
}

/// A key the server used to sign with, published under `old_verify_keys`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OldServerKey {
    pub version: String,
    pub public_key: [u8; 32],
    pub expired_ts: Millis,
}

/// A local account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub user_id: UserId,
    /// argon2id PHC string; `None` for accounts that cannot log in with a password.
    pub password_hash: Option<String>,
    pub created_at: Millis,
}

/// A device, which is also a login session: at most one access token belongs to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub user_id: UserId,
    pub device_id: DeviceId,
    pub display_name: Option<String>,
    pub created_at: Millis,
    pub last_seen_ip: Option<String>,
    pub last_seen_ts: Option<Millis>,
}

/// A registration: the account, its first session (unless login is inhibited) and the
/// registration token to consume with it.
#[derive(Debug, Clone)]
pub struct NewAccount {
    pub account: Account,
    pub session: Option<NewSession>,
    pub registration_token: Option<String>,
}

/// What a new login creates: a device (new or re-used) and its access token.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub device_id: DeviceId,
    /// Set on a new device; on an existing one, replaces the name only when `Some`.
    pub display_name: Option<String>,
    /// sha256 of the access token. The token itself is never stored.
    pub token_hash: [u8; 32],
    pub ip: Option<String>,
    pub now: Millis,
}

/// Who an access token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenOwner {
    pub user_id: UserId,
    pub device_id: DeviceId,
}

/// A registration token as managed by `roam admin token`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationToken {
    pub token: String,
    /// `None` = unlimited.
    pub uses_allowed: Option<u32>,
    pub completed: u32,
    pub expiry_time: Option<Millis>,
    pub created_at: Millis,
}

impl RegistrationToken {
    /// True when the token may still admit one registration at `now`.
    pub fn is_usable(&self, now: Millis) -> bool {
        self.uses_allowed.is_none_or(|n| self.completed < n)
            && self.expiry_time.is_none_or(|t| now < t)
    }
}

/// A one-time or fallback key: its full ID (`signed_curve25519:AAAAAQ`) and JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct OneTimeKey {
    pub key_id: String,
    pub key: Value,
}

/// One `POST /keys/upload`, already validated by the handler.
#[derive(Debug, Clone, Default)]
pub struct KeysUpload {
    pub device_keys: Option<Value>,
    pub one_time_keys: Vec<OneTimeKey>,
    /// At most one per algorithm; replaces the previous fallback key of that algorithm.
    pub fallback_keys: Vec<OneTimeKey>,
}

/// Which cross-signing key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CrossSigningKind {
    Master,
    SelfSigning,
    UserSigning,
}

impl CrossSigningKind {
    pub const ALL: [CrossSigningKind; 3] = [Self::Master, Self::SelfSigning, Self::UserSigning];

    /// The `usage` value and the storage key.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Master => "master",
            Self::SelfSigning => "self_signing",
            Self::UserSigning => "user_signing",
        }
    }
}

/// A signature by `signer_user`'s key `signer_key_id` over `target_user`'s key `target_key`
/// (a device ID, or the unpadded base64 public key of a cross-signing key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySignature {
    pub target_user: UserId,
    pub target_key: String,
    pub signer_user: UserId,
    pub signer_key_id: String,
    pub signature: String,
}

/// The durable state of one homeserver.
///
/// Implementations must make each method atomic: either all of its changes are committed
/// before it returns `Ok`, or none are.
pub trait Store: LogStore + Send + Sync + std::fmt::Debug + 'static {
    // --- server keys ---

    /// The current server signing key, creating it from `candidate` on first start.
    fn server_key_or_insert(&self, candidate: ServerKeyRecord) -> StoreResult<ServerKeyRecord>;
    /// Keys that were replaced, for `old_verify_keys`.
    fn old_server_keys(&self) -> StoreResult<Vec<OldServerKey>>;

    // --- accounts and sessions ---

    /// Creates an account, and its first session when one is given, in one transaction. A
    /// registration token is consumed in the same transaction, and the registration fails
    /// with [`StoreError::TokenInvalid`] if it is no longer usable.
    fn create_account(&self, new: NewAccount) -> StoreResult<()>;
    fn account(&self, user_id: &UserId) -> StoreResult<Option<Account>>;
    /// Logs in: creates the device if needed, otherwise revokes its previous token.
    fn create_session(&self, user_id: &UserId, session: NewSession) -> StoreResult<()>;
    fn token_owner(&self, token_hash: &[u8; 32]) -> StoreResult<Option<TokenOwner>>;
    /// Deletes devices with their tokens and end-to-end keys. Unknown IDs are ignored.
    fn delete_devices(&self, user_id: &UserId, devices: &[DeviceId]) -> StoreResult<()>;
    /// Deletes every device of the user (`/logout/all`).
    fn delete_all_devices(&self, user_id: &UserId) -> StoreResult<()>;
    fn devices(&self, user_id: &UserId) -> StoreResult<Vec<Device>>;
    fn device(&self, user_id: &UserId, device_id: &DeviceId) -> StoreResult<Option<Device>>;
    fn set_device_display_name(
        &self,
        user_id: &UserId,
        device_id: &DeviceId,
        name: Option<String>,
    ) -> StoreResult<()>;

    // --- end-to-end keys ---

    /// Stores uploaded keys; returns the unclaimed one-time key count per algorithm.
    fn upload_keys(
        &self,
        user_id: &UserId,
        device_id: &DeviceId,
        upload: KeysUpload,
        now: Millis,
    ) -> StoreResult<BTreeMap<String, u64>>;
    /// Unclaimed one-time keys per algorithm for one device.
    fn one_time_key_counts(
        &self,
        user_id: &UserId,
        device_id: &DeviceId,
    ) -> StoreResult<BTreeMap<String, u64>>;
    /// Device keys of the user's devices (all when `only` is empty), as uploaded.
    fn device_keys(&self, user_id: &UserId, only: &[DeviceId])
    -> StoreResult<Vec<(Device, Value)>>;
    /// Takes one one-time key of `algorithm`, falling back to the fallback key.
    fn claim_key(
        &self,
        user_id: &UserId,
        device_id: &DeviceId,
        algorithm: &str,
    ) -> StoreResult<Option<OneTimeKey>>;
    /// Unused fallback key algorithms of a device.
    fn unused_fallback_key_types(
        &self,
        user_id: &UserId,
        device_id: &DeviceId,
    ) -> StoreResult<Vec<String>>;
    fn cross_signing_keys(
        &self,
        user_id: &UserId,
    ) -> StoreResult<BTreeMap<CrossSigningKind, Value>>;
    fn put_cross_signing_keys(
        &self,
        user_id: &UserId,
        keys: Vec<(CrossSigningKind, Value)>,
        now: Millis,
    ) -> StoreResult<()>;
    /// Stores signatures on keys and marks the targets' key lists as changed.
    fn add_key_signatures(&self, signatures: Vec<KeySignature>, now: Millis) -> StoreResult<()>;
    /// Signatures stored for `target_user`'s keys.
    fn key_signatures(&self, target_user: &UserId) -> StoreResult<Vec<KeySignature>>;
    /// The position of the newest key change (0 when none).
    fn key_change_position(&self) -> StoreResult<u64>;
    /// Users whose device or cross-signing keys changed after `from`, up to `to` inclusive.
    fn key_changes(&self, from: u64, to: u64) -> StoreResult<Vec<UserId>>;

    // --- registration tokens ---

    fn create_registration_token(&self, token: RegistrationToken) -> StoreResult<()>;
    fn registration_tokens(&self) -> StoreResult<Vec<RegistrationToken>>;
    fn registration_token(&self, token: &str) -> StoreResult<Option<RegistrationToken>>;
    /// Deletes a token; `NotFound` if it did not exist.
    fn revoke_registration_token(&self, token: &str) -> StoreResult<()>;
}

/// A shared store for async callers: each call runs on the blocking pool, because redb is
/// synchronous and a commit waits for the disk, which must not stall the async workers.
#[derive(Debug, Clone)]
pub struct Db(Arc<dyn Store>);

impl Db {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self(store)
    }

    /// The store itself, for synchronous callers (the admin CLI, tests).
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.0
    }

    /// Runs one store call on the blocking pool.
    pub async fn run<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Store) -> StoreResult<T> + Send + 'static,
    {
        let store = Arc::clone(&self.0);
        tokio::task::spawn_blocking(move || f(store.as_ref()))
            .await
            .map_err(|e| StoreError::Backend {
                context: "store task",
                source: Box::new(e),
            })?
    }
}
