//! Portable accounts: the homeserver's side of DID-named identities.
//!
//! The decisions are pure functions in [`rules`] (which ops a server accepts, what it
//! attests, the bundle). Around them: the service the handlers call ([`service::Portable`]),
//! its one read–verify–commit path ([`commit`]), migration ([`migrate`]), key-login
//! challenges ([`challenge`]), per-DID op limits ([`oprate`]), group commit of log changes ([`group`]) and
//! server-to-server calls ([`federation`]). This file only names them.

pub mod carry;
pub mod challenge;
pub mod commit;
pub mod federation;
pub mod group;
pub mod migrate;
pub mod oprate;
pub mod rules;
pub mod service;
