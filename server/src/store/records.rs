//! The plain records the store speaks in: validated identifiers and values, no redb types
//! and no HTTP types.

use roam_identity_core::{DeviceId, Millis, UserId};
use serde_json::Value;

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
    /// Deactivated: every login is refused.
    pub deactivated: bool,
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
    /// When the access token stops working (`None`: never).
    pub expires_at: Option<Millis>,
    /// sha256 of the session's refresh token, when the client asked for one.
    pub refresh_hash: Option<[u8; 32]>,
    pub ip: Option<String>,
    pub now: Millis,
}

/// Who an access token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenOwner {
    pub user_id: UserId,
    pub device_id: DeviceId,
    /// When the access token stops working (`None`: never).
    pub expires_at: Option<Millis>,
}

/// A registration token as managed by `roam admin token`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationToken {
    /// When creating: the token. When read back: its ID (the first eight hex digits of its
    /// sha256): the store keeps only the hash.
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

/// What checking a signature upload reads, from one read transaction.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SigningSnapshot {
    /// The uploader's cross-signing keys.
    pub mine: std::collections::BTreeMap<CrossSigningKind, Value>,
    /// The uploader's device keys, by device ID.
    pub my_devices: Vec<(DeviceId, Value)>,
    /// Other users' cross-signing keys, by user ID.
    pub others:
        std::collections::BTreeMap<String, std::collections::BTreeMap<CrossSigningKind, Value>>,
}

/// The tokens a refresh hands out in place of the old ones (hashes only).
#[derive(Debug, Clone)]
pub struct RefreshedTokens {
    pub token_hash: [u8; 32],
    pub expires_at: Option<Millis>,
    pub refresh_hash: [u8; 32],
    pub now: Millis,
}

/// Short-lived state that several server nodes share (a UIA session, a key-login
/// challenge): one JSON value under (`kind`, `id`) until `expires_at`.
#[derive(Debug, Clone, PartialEq)]
pub struct SharedEntry {
    pub kind: &'static str,
    pub id: String,
    pub value: Value,
    pub expires_at: Millis,
    /// Who it is for (a user ID), for per-owner caps; may be empty.
    pub owner: String,
    /// Who asked for it (a client address), for per-client caps; may be empty.
    pub client: String,
}

/// Bounds on the live entries of one kind when inserting one more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedCaps {
    /// Per (owner, client): a new entry retires the pair's oldest beyond this.
    pub per_owner_client: usize,
    /// Per client: beyond this a new entry is refused.
    pub per_client: usize,
    /// In all: beyond this a new entry is refused.
    pub total: usize,
}
