//! The [`DevicePlaneStore`] trait: what a homeserver keeps for devices besides their keys —
//! to-device messages, global account data, sync filters, profiles, the users a device
//! tracks for device-list changes — and the stream positions `/sync` tokens are made of.
//!
//! Stream positions are durable counters: a `next_batch` token stays valid across restarts.
//! Key changes keep their own stream (`Store::key_change_position`); to-device messages and
//! account data share the message stream here.

use roam_identity_core::{DeviceId, ServerName, UserId};
use serde_json::Value;

use super::error::StoreResult;

/// At most this many undelivered to-device messages wait for one device; more are refused
/// ([`super::StoreError::InboxFull`]), so nobody can fill the disk through one device.
pub const MAX_INBOX: usize = 10_000;
/// At most this many account data types per user.
pub const MAX_ACCOUNT_DATA_TYPES: usize = 1_000;
/// At most this many stored filters per user.
pub const MAX_FILTERS: usize = 1_000;
/// At most this many tracked users per user.
pub const MAX_TRACKED: usize = 10_000;

/// At most this many other servers are told of one user's device-list changes; a server
/// asking after that is answered but not remembered.
pub const MAX_REMOTE_FOLLOWERS: usize = 1_000;

/// One to-device message for one device of a local user.
#[derive(Debug, Clone, PartialEq)]
pub struct ToDeviceMessage {
    pub user_id: UserId,
    pub device_id: DeviceId,
    /// The event as delivered: `{"sender", "type", "content"}`.
    pub event: Value,
}

/// Where a sender's transaction came from, for idempotent `PUT /sendToDevice/{type}/{txn}`.
#[derive(Debug, Clone, PartialEq)]
pub struct TxnKey {
    pub sender: UserId,
    pub device_id: DeviceId,
    pub txn_id: String,
}

/// The stream positions a `/sync` token stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SyncPositions {
    /// The key-change stream (device lists).
    pub keys: u64,
    /// The message stream (to-device messages, account data).
    pub messages: u64,
}

/// A user's profile fields.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Profile {
    pub displayname: Option<String>,
    pub avatar_url: Option<String>,
}

/// Device-plane storage. Every method is atomic, like [`super::Store`]'s.
pub trait DevicePlaneStore {
    /// The newest positions of both streams.
    fn sync_positions(&self) -> StoreResult<SyncPositions>;

    /// Stores the messages of one transaction; `false` (and nothing stored) when this
    /// transaction ID was already used by the sender's device.
    fn send_to_device(&self, txn: &TxnKey, messages: Vec<ToDeviceMessage>) -> StoreResult<bool>;
    /// Messages for a device after message position `since`, oldest first, at most `limit`,
    /// with their positions. Messages up to `since` are deleted first: the client has them.
    fn take_to_device(
        &self,
        user_id: &UserId,
        device_id: &DeviceId,
        since: u64,
        limit: usize,
    ) -> StoreResult<Vec<(u64, Value)>>;

    /// Sets one global account data type; returns its message position.
    fn put_account_data(&self, user_id: &UserId, kind: &str, content: Value) -> StoreResult<u64>;
    fn account_data(&self, user_id: &UserId, kind: &str) -> StoreResult<Option<Value>>;
    /// Every account data type changed after message position `since` (all when 0).
    fn account_data_since(&self, user_id: &UserId, since: u64)
    -> StoreResult<Vec<(String, Value)>>;

    /// Stores a filter; returns its ID.
    fn put_filter(&self, user_id: &UserId, filter: Value) -> StoreResult<String>;
    fn filter(&self, user_id: &UserId, filter_id: &str) -> StoreResult<Option<Value>>;

    fn profile(&self, user_id: &UserId) -> StoreResult<Profile>;
    fn set_profile(&self, user_id: &UserId, profile: Profile) -> StoreResult<()>;

    /// Records that `user_id`'s keys changed (a device-list update from its server).
    fn mark_keys_changed(&self, user_id: &UserId) -> StoreResult<u64>;
    /// Remembers that `user_id` follows the device lists of `users` (from `/keys/query`).
    fn track_users(&self, user_id: &UserId, users: &[UserId]) -> StoreResult<()>;
    /// Users whose keys changed in `(from, to]` that concern `user_id`: the user itself
    /// and the users it tracks.
    fn device_list_changes(&self, user_id: &UserId, from: u64, to: u64)
    -> StoreResult<Vec<UserId>>;

    /// Remembers that `server` follows the device lists of the local `users` (it asked for
    /// their keys over federation), so that their changes are sent to it
    /// (`m.device_list_update`). A user already followed by [`MAX_REMOTE_FOLLOWERS`] servers
    /// is left as it is.
    fn add_remote_follower(&self, server: &ServerName, users: &[UserId]) -> StoreResult<()>;
    /// The servers that follow `user_id`'s device list.
    fn remote_followers(&self, user_id: &UserId) -> StoreResult<Vec<ServerName>>;
}
