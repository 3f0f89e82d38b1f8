//! Why a storage call failed: typed causes, so callers decide by variant (a taken user ID,
//! a moved log head, a locked file) and never by parsing text.

use roam_identity_core::{Did, UserId};

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
    /// A key backup upload names a version that is not the current one.
    #[error("backup version is not the current one")]
    WrongBackupVersion { current: Option<u64> },
    /// The account was deactivated.
    #[error("account is deactivated")]
    Deactivated,
    /// A per-user or per-device cap (a device's undelivered messages, account data types,
    /// filters, tracked users) would be exceeded; nothing was stored.
    #[error("too many {0}")]
    CapReached(&'static str),
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
    /// This backend does not keep that kind of state (e.g. shared node state on redb,
    /// where one process holds it in memory).
    #[error("storage backend does not support {0}")]
    Unsupported(&'static str),
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
