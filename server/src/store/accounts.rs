//! The [`Store`] trait: the Matrix half of the homeserver's durable state (server keys,
//! accounts, sessions, devices, end-to-end keys, registration tokens). It requires
//! [`LogStore`], the account-log half, and [`DevicePlaneStore`], the device plane.

use std::collections::BTreeMap;

use roam_identity_core::{DeviceId, Millis, UserId};
use serde_json::Value;

use super::carry::CarryStore;
use super::device_plane::DevicePlaneStore;
use super::error::{StoreError, StoreResult};
use super::key_backup::KeyBackupStore;
use super::logs::LogStore;
use super::records::{
    Account, CrossSigningKind, Device, KeySignature, KeysUpload, NewAccount, NewSession,
    OldServerKey, OneTimeKey, RefreshedTokens, RegistrationToken, ServerKeyRecord, SharedCaps,
    SharedEntry, SigningSnapshot, TokenOwner,
};

/// The durable state of one homeserver.
///
/// Implementations must make each method atomic: either all of its changes are committed
/// before it returns `Ok`, or none are.
pub trait Store:
    LogStore + DevicePlaneStore + KeyBackupStore + CarryStore + Send + Sync + std::fmt::Debug + 'static
{
    // --- server keys ---

    /// The current server signing key, creating it from `candidate` on first start.
    fn server_key_or_insert(&self, candidate: ServerKeyRecord) -> StoreResult<ServerKeyRecord>;
    /// Keys that were replaced, for `old_verify_keys`.
    fn old_server_keys(&self) -> StoreResult<Vec<OldServerKey>>;

    // --- accounts and sessions ---

    /// Creates an account, and its first session when one is given, in one transaction. A
    /// registration token is consumed in the same transaction, and the registration fails
    /// with [`super::error::StoreError::TokenInvalid`] if it is no longer usable.
    fn create_account(&self, new: NewAccount) -> StoreResult<()>;
    fn account(&self, user_id: &UserId) -> StoreResult<Option<Account>>;
    /// Logs in: creates the device if needed, otherwise revokes its previous token.
    fn create_session(&self, user_id: &UserId, session: NewSession) -> StoreResult<()>;
    /// Replaces the password hash; with `logout_devices`, deletes every device of the user
    /// but `keep` (the caller's), with their tokens and keys.
    fn set_password(
        &self,
        user_id: &UserId,
        hash: String,
        keep: Option<&DeviceId>,
        logout_devices: bool,
    ) -> StoreResult<()>;
    /// Deactivates the account: no password, no devices, no profile; every later login is
    /// refused with [`super::error::StoreError::Deactivated`]. The user ID stays taken.
    fn deactivate_account(&self, user_id: &UserId) -> StoreResult<()>;
    fn token_owner(&self, token_hash: &[u8; 32]) -> StoreResult<Option<TokenOwner>>;
    /// Redeems a refresh token (single use): its session gets `new` access and refresh
    /// tokens in place of the old ones, in one transaction. `None` for an unknown (or
    /// already used) refresh token.
    fn refresh_session(
        &self,
        refresh_hash: &[u8; 32],
        new: RefreshedTokens,
    ) -> StoreResult<Option<TokenOwner>>;
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
    /// Stores cross-signing keys if the user's stored keys are still `expected` (what the
    /// caller checked, and authorised with UIA when it replaces keys); returns false and
    /// writes nothing when they changed meanwhile.
    fn put_cross_signing_keys(
        &self,
        user_id: &UserId,
        keys: Vec<(CrossSigningKind, Value)>,
        expected: &BTreeMap<CrossSigningKind, Value>,
        now: Millis,
    ) -> StoreResult<bool>;
    /// One user's cross-signing keys and device keys, plus other users' cross-signing keys,
    /// read in one transaction (a consistent snapshot for checking signature uploads).
    fn signing_snapshot(&self, me: &UserId, others: &[UserId]) -> StoreResult<SigningSnapshot>;
    /// Stores signatures (all by one uploader) if the uploader's snapshot (with `others`)
    /// is still `expected`, the state they were checked against; returns false and writes
    /// nothing when a key changed meanwhile.
    fn add_key_signatures_if(
        &self,
        signatures: Vec<KeySignature>,
        expected: &SigningSnapshot,
        others: &[UserId],
        now: Millis,
    ) -> StoreResult<bool>;
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

    // --- operations ---

    /// Checks that the database answers (`/health`). An embedded store always does.
    fn ping(&self) -> StoreResult<()> {
        Ok(())
    }
    /// How busy the connection pool is, for a store that has one.
    fn pool_stats(&self) -> Option<super::pg_database::PoolStats> {
        None
    }

    // --- short-lived state shared by several nodes ---

    /// True when several server processes may share this store (PostgreSQL): UIA sessions
    /// and key-login challenges then live here (the methods below) instead of in one
    /// process's memory.
    fn is_shared(&self) -> bool {
        false
    }
    /// Stores (or replaces) an entry.
    fn shared_put(&self, _entry: SharedEntry) -> StoreResult<()> {
        Err(StoreError::Unsupported("shared node state"))
    }
    /// Stores a new entry within `caps` (counting live entries of its kind): false, and
    /// nothing written, when the client or the total is at its cap.
    fn shared_insert_capped(
        &self,
        _entry: SharedEntry,
        _caps: SharedCaps,
        _now: Millis,
    ) -> StoreResult<bool> {
        Err(StoreError::Unsupported("shared node state"))
    }
    /// The live entry (`None` when missing or expired at `now`).
    fn shared_get(&self, _kind: &str, _id: &str, _now: Millis) -> StoreResult<Option<Value>> {
        Err(StoreError::Unsupported("shared node state"))
    }
    /// Removes the entry and returns it if it was live (single use: of two nodes taking it
    /// at once, one gets it).
    fn shared_take(&self, _kind: &str, _id: &str, _now: Millis) -> StoreResult<Option<Value>> {
        Err(StoreError::Unsupported("shared node state"))
    }
    /// Takes one token from the bucket `key` of the rate limit `limiter` (`burst` tokens,
    /// refilled at `per_second`), which every node counts against, timed by the store's
    /// clock: `Ok(Err(ms))` says how long until one is available.
    fn shared_take_token(
        &self,
        _limiter: &str,
        _key: &str,
        _per_second: f64,
        _burst: u32,
    ) -> StoreResult<Result<(), u64>> {
        Err(StoreError::Unsupported("shared node state"))
    }
    /// Tells the other nodes that something a waiting `/sync` may want was written; returns
    /// at once. Nothing to do for a store of one process.
    fn announce_write(&self) {}
    /// Calls `wake` whenever another node announces a write, for as long as the store lives.
    /// Nothing to do for a store of one process.
    fn on_remote_writes(&self, _wake: std::sync::Arc<dyn Fn() + Send + Sync>) {}
}
