//! Every redb table of the homeserver and the layout of its keys and values, in one place.
//!
//! Keys are tuples of strings so that one user's (or one device's) rows are a contiguous
//! range: `(user_id, device_id, …)`. Values that are records are JSON-encoded row structs
//! defined here; they are a storage format, separate from both the internal types in
//! the store module and the Matrix wire format, so either can change without a migration.
//! Uploaded Matrix objects (device keys, one-time keys, cross-signing keys) are stored as the
//! JSON text the client sent, after validation.

use redb::TableDefinition;
use serde::{Deserialize, Serialize};

/// Bumped when a layout below changes incompatibly.
pub const SCHEMA_VERSION: u64 = 1;

/// `name → bytes`. Names: [`META_SCHEMA`], [`META_SERVER_KEY`], [`META_KEY_STREAM`].
pub const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
pub const META_SCHEMA: &str = "schema_version";
/// JSON [`ServerKeyRow`].
pub const META_SERVER_KEY: &str = "server_key";
/// u64 big-endian: the newest key-change stream position.
pub const META_KEY_STREAM: &str = "key_stream";
/// u64 big-endian: the newest message stream position (to-device messages, account data).
pub const META_MESSAGE_STREAM: &str = "message_stream";

/// `version → JSON OldServerKeyRow`.
pub const OLD_SERVER_KEYS: TableDefinition<&str, &str> = TableDefinition::new("old_server_keys");

/// `user_id → JSON AccountRow`.
pub const ACCOUNTS: TableDefinition<&str, &str> = TableDefinition::new("accounts");

/// `(user_id, device_id) → JSON DeviceRow`.
pub const DEVICES: TableDefinition<(&str, &str), &str> = TableDefinition::new("devices");

/// `sha256(access token) → JSON TokenRow`. The device row holds the reverse link.
pub const ACCESS_TOKENS: TableDefinition<&[u8], &str> = TableDefinition::new("access_tokens");

/// `sha256(refresh token) → JSON TokenRow`: single-use refresh tokens, rotated on use.
pub const REFRESH_TOKENS: TableDefinition<&[u8], &str> = TableDefinition::new("refresh_tokens");

/// `(user_id, device_id) → device keys JSON`.
pub const DEVICE_KEYS: TableDefinition<(&str, &str), &str> = TableDefinition::new("device_keys");

/// `(user_id, device_id, "algorithm:key_id") → key JSON`. The algorithm prefix makes "one key
/// of this algorithm" a range scan.
pub const ONE_TIME_KEYS: TableDefinition<(&str, &str, &str), &str> =
    TableDefinition::new("one_time_keys");

/// `(user_id, device_id, algorithm) → JSON FallbackKeyRow`.
pub const FALLBACK_KEYS: TableDefinition<(&str, &str, &str), &str> =
    TableDefinition::new("fallback_keys");

/// `(user_id, "master" | "self_signing" | "user_signing") → key JSON`.
pub const CROSS_SIGNING_KEYS: TableDefinition<(&str, &str), &str> =
    TableDefinition::new("cross_signing_keys");

/// `(target_user, target_key, signer_user, signer_key_id) → unpadded base64 signature`.
pub const KEY_SIGNATURES: TableDefinition<(&str, &str, &str, &str), &str> =
    TableDefinition::new("key_signatures");

/// `stream position → user_id` whose keys changed at that position.
pub const KEY_CHANGES: TableDefinition<u64, &str> = TableDefinition::new("key_changes");

/// `hex sha256(token) → JSON RegistrationTokenRow`: tokens are stored hashed; the first
/// eight hex digits are the token's ID in listings.
pub const REGISTRATION_TOKENS: TableDefinition<&str, &str> =
    TableDefinition::new("registration_tokens");

/// Upper bound for device IDs and key IDs in range scans: they are printable ASCII (< 0x7F).
pub const PRINTABLE_END: &str = "\u{7f}";

#[derive(Debug, Serialize, Deserialize)]
pub struct ServerKeyRow {
    pub version: String,
    /// Unpadded base64 of the 32-byte seed.
    pub seed: String,
    pub created_at: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct OldServerKeyRow {
    /// Unpadded base64 of the public key.
    pub public_key: String,
    pub expired_ts: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct AccountRow {
    pub password_hash: Option<String>,
    pub created_at: u64,
    /// Deactivated through `/account/deactivate`: no login of any kind any more.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deactivated: bool,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct DeviceRow {
    pub display_name: Option<String>,
    pub created_at: u64,
    /// Hex sha256 of the device's access token, so that deleting the device revokes it.
    pub token_hash: Option<String>,
    /// Hex sha256 of the device's refresh token, likewise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_hash: Option<String>,
    pub last_seen_ip: Option<String>,
    pub last_seen_ts: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct TokenRow {
    pub user_id: String,
    pub device_id: String,
    /// When an access token stops working (ms); absent: never (and for refresh tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct FallbackKeyRow {
    pub key_id: String,
    pub key: serde_json::Value,
    pub used: bool,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct RegistrationTokenRow {
    pub uses_allowed: Option<u32>,
    pub completed: u32,
    pub expiry_time: Option<u64>,
    pub created_at: u64,
}

// --- portable accounts (account logs, attestations, migrations) ---

/// `(did, op hash) → canonical op JSON`: every op held for a DID, all branches.
pub const LOG_OPS: TableDefinition<(&str, &str), &str> = TableDefinition::new("log_ops");

/// `did → JSON LogSummaryRow`: the verified head of each held log.
pub const LOG_HEADS: TableDefinition<&str, &str> = TableDefinition::new("log_heads");

/// `user_id → did`: local user IDs bound to a DID on this server.
pub const USER_DIDS: TableDefinition<&str, &str> = TableDefinition::new("user_dids");

/// `did → JSON array of attestations`: the set this server last issued for the DID.
pub const ATTESTATIONS: TableDefinition<&str, &str> = TableDefinition::new("attestations");

/// `cursor → (did, op hash)`: the order ops were stored in, for `/_roam/v1/export`.
pub const OP_EXPORT: TableDefinition<u64, (&str, &str)> = TableDefinition::new("op_export");

/// `(did, op hash) → op JSON`: ops refused as equivocation, kept as evidence.
pub const FORK_EVIDENCE: TableDefinition<(&str, &str), &str> =
    TableDefinition::new("fork_evidence");

/// `migration id → JSON migration record`.
pub const MIGRATIONS: TableDefinition<&str, &str> = TableDefinition::new("migrations");

/// `did → migration id`: the latest migration of a DID to this server.
pub const MIGRATION_BY_DID: TableDefinition<&str, &str> = TableDefinition::new("migration_by_did");

/// `did → JSON array of u64`: arrival times of the DID's recent ops (the per-DID op
/// limit's windows, kept across restarts).
pub const OP_WINDOWS: TableDefinition<&str, &str> = TableDefinition::new("op_windows");

/// `(did, served kind) → encoded answer`: the bundle, log, DID document and DID resolution
/// result of the current head, made on the write path.
pub const SERVED: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("served");

/// `did → JSON ServedMetaRow`: what the stored answers of a DID are about.
pub const SERVED_META: TableDefinition<&str, &str> = TableDefinition::new("served_meta");

/// `(due_at ms, did) → ()`: when each DID's answers are re-made, soonest first.
pub const SERVED_DUE: TableDefinition<(u64, &str), ()> = TableDefinition::new("served_due");

/// `META` name of the server key ID the stored answers were made with.
pub const META_SERVED_KEY: &str = "served_key";

#[derive(Debug, Serialize, Deserialize)]
pub struct ServedMetaRow {
    pub head: String,
    pub generation: u64,
    pub fresh_until: u64,
    pub due_at: u64,
    pub deactivated: bool,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct LogSummaryRow {
    pub head: String,
    pub seq: u64,
    pub servers: Vec<String>,
    pub user_ids: Vec<String>,
    pub deactivated: bool,
    pub updated_at: u64,
    /// `device_id → [ed25519, curve25519]` (unpadded base64) of the devices signed in;
    /// absent in rows written before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devices: Option<std::collections::BTreeMap<String, [String; 2]>>,
}

// --- the device plane (to-device messages, account data, filters, profiles) ---

/// `(user_id, device_id, message position) → event JSON`: undelivered to-device messages.
pub const TO_DEVICE: TableDefinition<(&str, &str, u64), &str> = TableDefinition::new("to_device");

/// `(sender, sender device, txn_id) → u64 ms`: transactions of `PUT /sendToDevice` already
/// stored, so a retried request is not delivered twice.
pub const TO_DEVICE_TXNS: TableDefinition<(&str, &str, &str), u64> =
    TableDefinition::new("to_device_txns");

/// `(user_id, type) → JSON AccountDataRow`: global account data.
pub const ACCOUNT_DATA: TableDefinition<(&str, &str), &str> = TableDefinition::new("account_data");

/// `(user_id, filter_id) → filter JSON`.
pub const FILTERS: TableDefinition<(&str, &str), &str> = TableDefinition::new("filters");

/// `user_id → JSON ProfileRow`.
pub const PROFILES: TableDefinition<&str, &str> = TableDefinition::new("profiles");

/// `(user_id, tracked user_id) → ()`: whose device lists a user follows.
pub const TRACKED_USERS: TableDefinition<(&str, &str), ()> = TableDefinition::new("tracked_users");

/// `(local user_id, server name) → ()`: the other servers told of a user's device-list
/// changes.
pub const REMOTE_FOLLOWERS: TableDefinition<(&str, &str), ()> =
    TableDefinition::new("remote_followers");

/// `(user_id, version) → JSON BackupVersionRow`: key backup versions, deleted ones too (a
/// version number is never reused).
pub const BACKUP_VERSIONS: TableDefinition<(&str, u64), &str> =
    TableDefinition::new("backup_versions");

/// `(user_id, version, room_id, session_id) → KeyBackupData JSON`.
pub const BACKUP_KEYS: TableDefinition<(&str, u64, &str, &str), &str> =
    TableDefinition::new("backup_keys");

/// `user_id → did`: user IDs of other servers whose keys this server holds for an account it
/// hosts (carried by a device-plane import after a migration).
pub const CARRIED_USERS: TableDefinition<&str, &str> = TableDefinition::new("carried_users");

#[derive(Debug, Serialize, Deserialize)]
pub struct BackupVersionRow {
    pub algorithm: String,
    pub auth_data: serde_json::Value,
    pub etag: u64,
    pub count: u64,
    pub deleted: bool,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct AccountDataRow {
    /// The message stream position of the last change.
    pub pos: u64,
    pub content: serde_json::Value,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ProfileRow {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub displayname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avatar_url: Option<String>,
}

/// Creates every table (when the database is opened), so read transactions can open them
/// unconditionally.
pub fn create_all(txn: &redb::WriteTransaction) -> Result<(), redb::TableError> {
    txn.open_table(META)?;
    txn.open_table(OLD_SERVER_KEYS)?;
    txn.open_table(ACCOUNTS)?;
    txn.open_table(DEVICES)?;
    txn.open_table(ACCESS_TOKENS)?;
    txn.open_table(DEVICE_KEYS)?;
    txn.open_table(ONE_TIME_KEYS)?;
    txn.open_table(FALLBACK_KEYS)?;
    txn.open_table(CROSS_SIGNING_KEYS)?;
    txn.open_table(KEY_SIGNATURES)?;
    txn.open_table(KEY_CHANGES)?;
    txn.open_table(REGISTRATION_TOKENS)?;
    txn.open_table(LOG_OPS)?;
    txn.open_table(LOG_HEADS)?;
    txn.open_table(USER_DIDS)?;
    txn.open_table(ATTESTATIONS)?;
    txn.open_table(OP_EXPORT)?;
    txn.open_table(FORK_EVIDENCE)?;
    txn.open_table(MIGRATIONS)?;
    txn.open_table(MIGRATION_BY_DID)?;
    txn.open_table(OP_WINDOWS)?;
    txn.open_table(REFRESH_TOKENS)?;
    txn.open_table(TO_DEVICE)?;
    txn.open_table(TO_DEVICE_TXNS)?;
    txn.open_table(ACCOUNT_DATA)?;
    txn.open_table(FILTERS)?;
    txn.open_table(PROFILES)?;
    txn.open_table(TRACKED_USERS)?;
    txn.open_table(REMOTE_FOLLOWERS)?;
    txn.open_table(BACKUP_VERSIONS)?;
    txn.open_table(BACKUP_KEYS)?;
    txn.open_table(CARRIED_USERS)?;
    txn.open_table(SERVED)?;
    txn.open_table(SERVED_META)?;
    txn.open_table(SERVED_DUE)?;
    Ok(())
}
