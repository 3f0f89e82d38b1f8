//! The [`KeyBackupStore`] trait: server-side key backup (`/room_keys`). The server stores
//! what clients encrypted (`auth_data`, `session_data`) as it is and never sees a key.

use roam_identity_core::UserId;
use serde_json::Value;

use super::error::StoreResult;

/// At most this many keys in one backup version.
pub const MAX_BACKUP_KEYS: u64 = 1_000_000;

/// One server-side key backup version (`/room_keys/version`).
#[derive(Debug, Clone, PartialEq)]
pub struct BackupVersion {
    pub version: u64,
    pub algorithm: String,
    pub auth_data: Value,
    /// Changes whenever the version's keys change.
    pub etag: u64,
    pub count: u64,
}

/// One backed-up room key: `(room_id, session_id, KeyBackupData)`.
pub type BackupKey = (String, String, Value);

/// Which keys of a backup version a call is about: all, one room's, or one session's.
#[derive(Debug, Clone, PartialEq)]
pub enum BackupScope {
    All,
    Room(String),
    Session(String, String),
}

/// Whether an uploaded `KeyBackupData` replaces the stored one (Matrix's rule): a verified
/// key beats an unverified one; then the lower `first_message_index`; then the lower
/// `forwarded_count`. An equal key does not replace.
pub fn replaces_backup_key(new: &Value, old: &Value) -> bool {
    let verified = |k: &Value| k["is_verified"].as_bool().unwrap_or(false);
    let index = |k: &Value| k["first_message_index"].as_u64().unwrap_or(u64::MAX);
    let forwarded = |k: &Value| k["forwarded_count"].as_u64().unwrap_or(u64::MAX);
    (!verified(new), index(new), forwarded(new)) < (!verified(old), index(old), forwarded(old))
}

/// Key backup storage. Every method is atomic, like [`super::Store`]'s.
pub trait KeyBackupStore {
    /// Creates a backup version, which becomes the current one; returns its number
    /// (numbers are never reused).
    fn create_backup_version(
        &self,
        user_id: &UserId,
        algorithm: String,
        auth_data: Value,
    ) -> StoreResult<u64>;
    /// A version (`None`: the current one, the newest not deleted).
    fn backup_version(
        &self,
        user_id: &UserId,
        version: Option<u64>,
    ) -> StoreResult<Option<BackupVersion>>;
    /// Replaces a version's `auth_data`; `NotFound` for an unknown or deleted version.
    fn update_backup_version(
        &self,
        user_id: &UserId,
        version: u64,
        auth_data: Value,
    ) -> StoreResult<()>;
    /// Deletes a version and its keys; `NotFound` for an unknown or deleted version.
    fn delete_backup_version(&self, user_id: &UserId, version: u64) -> StoreResult<()>;
    /// Stores keys into the current version, each only if it replaces the stored one
    /// ([`replaces_backup_key`]); [`super::StoreError::WrongBackupVersion`] when `version`
    /// is not the current one. Returns the version after the change.
    fn put_backup_keys(
        &self,
        user_id: &UserId,
        version: u64,
        keys: Vec<BackupKey>,
    ) -> StoreResult<BackupVersion>;
    /// Keys of a version in `scope`; `NotFound` for an unknown or deleted version.
    fn backup_keys(
        &self,
        user_id: &UserId,
        version: u64,
        scope: &BackupScope,
    ) -> StoreResult<Vec<BackupKey>>;
    /// Deletes keys of a version in `scope`; returns the version after the change.
    fn delete_backup_keys(
        &self,
        user_id: &UserId,
        version: u64,
        scope: &BackupScope,
    ) -> StoreResult<BackupVersion>;
}
