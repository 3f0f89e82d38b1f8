//! Server signing keys as the resolver knows them: fetched from each server itself, cached
//! with their validity, and used to judge the key documents that bundles carry.
//!
//! A key document is only self-signed, so anyone can mint one "for b.example". Online, the
//! only keys that count for b.example are the ones b.example serves; a bundle carrying a key
//! document that disagrees with them is refused. Offline, carried documents are all there is,
//! and they are still checked against whatever this cache remembers.

use std::collections::HashMap;
use std::sync::RwLock;

use roam_identity_core::server_keys::{ServerKeyError, ServerKeys};
use roam_identity_core::{KeyId, Millis, ServerName};
use serde_json::Value;

use crate::clock::rfc3339;
use crate::http::FetchError;

/// Why a server's own keys could not be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyFetchError {
    /// Offline, keys are never fetched, and none fetched earlier are still fresh.
    #[error("offline: {server}'s keys were not fetched (the resolver is offline)")]
    Offline { server: ServerName },
    /// The key document could not be fetched.
    #[error("cannot fetch {server}'s keys: {source}")]
    Fetch {
        server: ServerName,
        source: FetchError,
    },
    /// The key document does not verify.
    #[error("{server}'s key document does not verify: {source}")]
    Invalid {
        server: ServerName,
        source: ServerKeyError,
    },
    /// The key document is past its `valid_until_ts`.
    #[error("{server}'s key document expired at {}", rfc3339(*valid_until))]
    Expired {
        server: ServerName,
        valid_until: Millis,
    },
}

/// How a carried key document disagrees with the keys known for its server.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyDisagreement {
    /// The same key ID with other bytes.
    #[error("its key {id} for {carried} differs from the one {known} publishes")]
    Differs {
        id: KeyId,
        carried: ServerName,
        known: ServerName,
    },
    /// A key ID the server does not publish (only an error when checking strictly).
    #[error("it lists key {id} for {carried}, which {known} does not publish")]
    Unpublished {
        id: KeyId,
        carried: ServerName,
        known: ServerName,
    },
}

#[derive(Debug, Clone)]
struct KeyEntry {
    keys: ServerKeys,
    doc: Value,
    fetched_at: Millis,
}

/// Verified key documents by server, with the time they were fetched.
#[derive(Debug, Default)]
pub struct KeyCache {
    entries: RwLock<HashMap<ServerName, KeyEntry>>,
}

impl KeyCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Keys fetched online that may still be used at `now`: the document has not passed its
    /// `valid_until_ts` and was fetched less than `max_age` ago.
    pub fn fresh(
        &self,
        server: &ServerName,
        now: Millis,
        max_age: Millis,
    ) -> Option<(ServerKeys, Value)> {
        let map = self.entries.read().unwrap_or_else(|e| e.into_inner());
        let e = map.get(server)?;
        let young = now.saturating_sub(e.fetched_at) < max_age;
        (young && !e.keys.is_expired(now)).then(|| (e.keys.clone(), e.doc.clone()))
    }

    /// The last keys fetched for `server`, however old: enough to catch a forged carried
    /// document offline.
    pub fn known(&self, server: &ServerName) -> Option<ServerKeys> {
        let map = self.entries.read().unwrap_or_else(|e| e.into_inner());
        map.get(server).map(|e| e.keys.clone())
    }

    /// Records keys fetched from the server itself (already verified by the caller).
    pub fn insert(&self, keys: ServerKeys, doc: Value, fetched_at: Millis) {
        let mut map = self.entries.write().unwrap_or_else(|e| e.into_inner());
        map.insert(
            keys.server_name.clone(),
            KeyEntry {
                keys,
                doc,
                fetched_at,
            },
        );
    }
}

/// Checks a carried key document against keys known for the same server. Every key the
/// carried document lists, current or old, must be one the known document lists under the
/// same ID with the same bytes; with `strict` (online: `known` was fetched just now from the
/// server itself) a key unknown to the server is a disagreement too, while offline a key ID
/// the cache has never seen is tolerated (the server may have rotated since), because the
/// caller then also verifies that server's attestations with the known keys.
pub fn check_agreement(
    known: &ServerKeys,
    carried: &ServerKeys,
    strict: bool,
) -> Result<(), KeyDisagreement> {
    let lookup = |id| {
        known
            .verify_keys
            .get(id)
            .copied()
            .or_else(|| known.old_verify_keys.get(id).map(|o| o.key))
    };
    let carried_keys = carried
        .verify_keys
        .iter()
        .map(|(id, k)| (id, *k))
        .chain(carried.old_verify_keys.iter().map(|(id, o)| (id, o.key)));
    for (id, key) in carried_keys {
        match lookup(id) {
            Some(k) if k == key => {}
            Some(_) => {
                return Err(KeyDisagreement::Differs {
                    id: id.clone(),
                    carried: carried.server_name.clone(),
                    known: known.server_name.clone(),
                });
            }
            None if strict => {
                return Err(KeyDisagreement::Unpublished {
                    id: id.clone(),
                    carried: carried.server_name.clone(),
                    known: known.server_name.clone(),
                });
            }
            None => {}
        }
    }
    Ok(())
}
