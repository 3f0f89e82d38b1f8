//! The user's side of Roam: the keystore and recovery key (file or phrase), the ops the user
//! signs, the HTTP client that talks to homeservers on the user's behalf, the migration
//! driver, and keeping the local resolver cache current after the user's own changes. The
//! `roam` subcommands other than `serve` and `admin` are built on it.
//!
//! - [`keystore`]: the encrypted keystore and the offline recovery file.
//! - [`phrase`]: the recovery key as 24 BIP39 words, for keeping it on paper.
//! - [`account`]: ops as the client signs them (genesis, next op, rotate/recover, devices),
//!   always checked by identity-core against the client's own record before signing.
//! - [`homeserver`]: a typed HTTP client for one homeserver (Matrix + `/_roam/v1`).
//! - [`directory`]: which base URL answers for a server name.
//! - [`secret_storage`]: Matrix secret storage opened with the recovery key, on this machine
//!   only, to re-sign the cross-signing keys for a new user ID.
//! - [`session`]: key login and signing the device into the log.
//! - [`sync`]: bringing servers up to date with the ops the client signed.
//! - [`migration`]: the resumable, step-by-step move to another homeserver.
//! - [`export`]: the portable account file.
//! - [`device_plane`]: carrying account data, key backup, cross-signing and device keys to
//!   another homeserver.
//! - [`credential`]: checking a W3C credential of a binding (roam-vc) against the issuer's
//!   did:web document and the account log (`roam verify`).
//! - [`local_cache`]: after the user changes the account, the change verified through the
//!   resolver and stored in the local resolver cache, so `roam resolve` shows it at once.
//!
//! Errors are concrete enums per module (no `String` errors): the binary decides exit codes
//! from them, in one place.

pub mod account;
pub mod conformance;
pub mod credential;
pub mod device_plane;
pub mod directory;
pub mod export;
pub mod homeserver;
pub mod keystore;
pub mod local_cache;
pub mod migration;
pub mod phrase;
pub mod secret_storage;
pub mod session;
pub mod sync;
pub mod verify;
