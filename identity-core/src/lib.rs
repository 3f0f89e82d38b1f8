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

/// The text form of a value that only its parser builds: `Debug` as `Name(text)`, `Display`
/// as the text, and `FromStr` and serde both through `parse`, so that no other path can make
/// one. `$text` names the method that gives the text.
macro_rules! text_form {
    ($name:ident, $err:ty, $text:ident) => {
        impl ::std::fmt::Debug for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                write!(f, "{}({})", stringify!($name), self.$text())
            }
        }
        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(&self.$text())
            }
        }
        impl ::std::str::FromStr for $name {
            type Err = $err;
            fn from_str(s: &str) -> Result<Self, $err> {
                Self::parse(s)
            }
        }
        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.$text())
            }
        }
        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <String as ::serde::Deserialize>::deserialize(d)?;
                Self::parse(&s).map_err(::serde::de::Error::custom)
            }
        }
    };
}

pub mod attestation;
pub mod b64;
pub mod bundle;
pub mod canonical;
pub mod device_plane;
pub mod did;
pub mod hash;
pub mod ids;
pub mod log;
pub mod login;
pub mod server_keys;
pub mod signed;
pub mod xmatrix;

pub use did::{Did, DidError};
pub use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
pub use hash::{KeyCommitment, OpHash};
pub use ids::{DeviceId, IdError, KeyId, Localpart, ServerName, UserId};

/// Milliseconds since the Unix epoch. identity-core never reads a clock: callers pass this in.
pub type Millis = u64;
