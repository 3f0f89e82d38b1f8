//! The [`CarryStore`] trait: an account's device plane as one object, read for an export and
//! written by an import on another server (a migration, or `roam import`).
//!
//! What is carried is what clients made: account data (secret storage is encrypted by the
//! client), the current key backup version with its keys (encrypted by the client), and the
//! cross-signing and device keys (Matrix-signed by the client) with the owner's signatures
//! and the devices' unclaimed one-time and fallback keys. Keys name a user ID inside their
//! signed content, so keys of a user ID of another server (the account's old user ID after a
//! migration) are kept under that user ID, and the user ID is remembered as *carried* for the
//! account's DID: this server then answers key queries and claims for it.

use std::collections::BTreeMap;

use roam_identity_core::{DeviceId, Did, Millis, UserId};
use serde_json::Value;

use super::error::StoreResult;
use super::key_backup::BackupKey;
use super::records::{CrossSigningKind, KeySignature, OneTimeKey};

/// At most this many backed-up keys travel in one device plane.
pub const MAX_CARRIED_BACKUP_KEYS: usize = 50_000;
/// At most this many user IDs' keys travel in one device plane (the log's cap on user IDs).
pub const MAX_CARRIED_USERS: usize = 10;
/// At most this many devices per carried user ID.
pub const MAX_CARRIED_DEVICES: usize = 100;

/// One device of a carried user ID.
#[derive(Debug, Clone, PartialEq)]
pub struct CarriedDevice {
    pub device_id: DeviceId,
    pub display_name: Option<String>,
    /// The Matrix device keys object, as the device signed it.
    pub keys: Value,
    /// Unclaimed one-time keys.
    pub one_time_keys: Vec<OneTimeKey>,
    /// Unused fallback keys (one per algorithm).
    pub fallback_keys: Vec<OneTimeKey>,
}

/// The keys held for one user ID.
#[derive(Debug, Clone, PartialEq)]
pub struct CarriedUser {
    pub user_id: UserId,
    pub cross_signing: BTreeMap<CrossSigningKind, Value>,
    pub devices: Vec<CarriedDevice>,
    /// The owner's signatures on its own keys (master by devices, devices by self-signing).
    pub signatures: Vec<KeySignature>,
}

/// The current key backup version and its keys.
#[derive(Debug, Clone, PartialEq)]
pub struct CarriedBackup {
    pub algorithm: String,
    pub auth_data: Value,
    pub keys: Vec<BackupKey>,
}

/// An account's device plane.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DevicePlane {
    pub account_data: Vec<(String, Value)>,
    pub backup: Option<CarriedBackup>,
    pub users: Vec<CarriedUser>,
}

/// What an import changed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ImportOutcome {
    pub account_data: usize,
    /// The backup version the keys went into (an existing one with the same `auth_data`, or
    /// a new one).
    pub backup_version: Option<u64>,
    pub backup_keys_added: u64,
    /// User IDs whose keys are now held (the account's own, or carried ones).
    pub users: Vec<UserId>,
    pub devices: usize,
}

/// Device-plane export and import. Every method is atomic, like [`super::Store`]'s.
pub trait CarryStore {
    /// The device plane of the local `account`, with the keys of every user ID carried here
    /// for `did`. [`super::StoreError::CapReached`] when the backup holds more than
    /// [`MAX_CARRIED_BACKUP_KEYS`] keys.
    fn device_plane(&self, account: &UserId, did: Option<&Did>) -> StoreResult<DevicePlane>;
    /// Imports `plane` into the local `account`, in one transaction: account data set, the
    /// backup keys put into the live version with the same algorithm and `auth_data` (a new
    /// current version if there is none), and each user's keys stored under its user ID —
    /// user IDs other than `account` recorded as carried for `did`.
    fn import_device_plane(
        &self,
        account: &UserId,
        did: &Did,
        plane: DevicePlane,
        now: Millis,
    ) -> StoreResult<ImportOutcome>;
    /// The DID a user ID of another server was carried here for, if any.
    fn carried_did(&self, user_id: &UserId) -> StoreResult<Option<Did>>;
}
