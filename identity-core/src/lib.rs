//! The Roam protocol core: everything that is signed, hashed and verified, with no I/O.
//!
//! An account is an Ed25519 key named by its `did:key` ([`did`]). Its history is an
//! append-only, hash-linked log of operations signed in Matrix signed JSON ([`signed`],
//! [`canonical`], [`hash`]); [`log`] verifies a log into an account state, applying the
//! pre-rotation recovery rule and reporting equivocation. Homeservers sign server key documents
//! ([`server_keys`]) and attestations that bind user IDs to DIDs ([`attestation`]); a
//! [`bundle`] carries all of it so that anyone can verify an identity offline.
//!
//! The crate is pure: no network, no files, no clock (time is a parameter), no async. That is
//! what lets a homeserver, a resolver cache and a LAN peer run the exact same checks.

pub mod attestation;
pub mod b64;
pub mod bundle;
pub mod canonical;
pub mod did;
pub mod hash;
pub mod ids;
pub mod log;
pub mod login;
pub mod server_keys;
pub mod signed;

pub use did::{Did, DidError};
pub use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
pub use hash::{KeyCommitment, OpHash};
pub use ids::{DeviceId, IdError, KeyId, Localpart, ServerName, UserId};

/// Milliseconds since the Unix epoch. identity-core never reads a clock: callers pass this in.
pub type Millis = u64;
