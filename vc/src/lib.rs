//! Roam's bindings as W3C Verifiable Credentials, and homeservers as `did:web`.
//!
//! Roam's own proofs are Matrix signed JSON, which only Roam checks. This crate restates them
//! in the shapes the wider ecosystem verifies: a homeserver's attestation becomes a VC 2.0
//! credential issued by `did:web:<server_name>` ([`credential`]), whose DID document lists the
//! same Ed25519 keys as `/_matrix/key/v2/server` ([`did_web`]); an account holder's own
//! statement that a DID is also a Matrix user ID is the FEP-c390 identity proof
//! ([`credential::IdentityStatement`]). Both are proved with `eddsa-jcs-2022` ([`proof`]).
//!
//! The key design choice: everything here is built from identity-core's canonical JSON (which
//! is RFC 8785 for the objects this crate signs, see [`jcs`]), ed25519-dalek and sha2, so the
//! server and the client link no W3C stack, and nothing here turns on serde_json's
//! `arbitrary_precision` (as `ssi` would for every crate built with it). Pure like
//! identity-core: no I/O, time is passed in.

pub mod credential;
pub mod did_web;
pub mod error;
pub mod jcs;
pub mod proof;
pub mod time;

pub use credential::{BindingCredential, IdentityStatement, Verified};
pub use error::VcError;
