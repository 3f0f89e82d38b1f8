//! Bundles: everything needed to verify an identity offline.
//!
//! A bundle carries the log (every op the sender holds, superseded branches included), the
//! attestations it relies on and the key documents that sign them, plus when and where it was
//! fetched. Nobody has to be trusted, only keys: every object in a bundle must verify, so a
//! tampered bundle is refused outright rather than partly believed. What a bundle cannot prove
//! offline is freshness: that no newer op exists.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::Millis;
use crate::attestation::{self, Attestation, AttestationError};
use crate::did::Did;
use crate::ids::{ServerName, UserId};
use crate::log::{self, LogError, VerifiedLog};
use crate::server_keys::{self, ServerKeyError, ServerKeys};

/// The `type` of a bundle object.
pub const BUNDLE_TYPE: &str = "roam.bundle";
/// Most attestations one bundle may carry.
pub const MAX_ATTESTATIONS: usize = 64;
/// Most key documents one bundle may carry.
pub const MAX_SERVER_KEYS: usize = 64;

/// Why a bundle was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    #[error("bundle is malformed: {0}")]
    Malformed(String),
    #[error("bundle is for {found}, expected {expected}")]
    WrongDid { expected: String, found: String },
    #[error("bundle log: {0}")]
    Log(#[from] LogError),
    #[error("bundle key document for {server}: {source}")]
    ServerKeys {
        server: String,
        source: ServerKeyError,
    },
    #[error("bundle attestation {index}: {source}")]
    Attestation {
        index: usize,
        source: AttestationError,
    },
    #[error("bundle attestation {index} is by {server}, whose keys the bundle does not carry")]
    MissingServerKeys { index: usize, server: String },
    #[error("bundle attestation {index} is about {found}, not this account")]
    ForeignAttestation { index: usize, found: String },
    #[error("bundle carries {count} {what}; the limit is {limit}")]
    TooMany {
        what: &'static str,
        count: usize,
        limit: usize,
    },
    #[error("bundle carries two key documents for {server}")]
    DuplicateServerKeys { server: String },
}

impl BundleError {
    /// The stable error class used in spec/protocol.md and the vectors (log errors keep
    /// their own class).
    pub fn class(&self) -> &'static str {
        match self {
            BundleError::Malformed(_) => "malformed",
            BundleError::WrongDid { .. } => "wrong_did",
            BundleError::Log(e) => e.class(),
            BundleError::ServerKeys { .. } => "server_keys",
            BundleError::Attestation { .. } => "attestation",
            BundleError::MissingServerKeys { .. } => "missing_server_keys",
            BundleError::ForeignAttestation { .. } => "foreign_attestation",
            BundleError::TooMany { .. } => "too_many",
            BundleError::DuplicateServerKeys { .. } => "server_keys",
        }
    }
}

/// A bundle on the wire.
#[derive(Debug, Clone, PartialEq)]
pub struct Bundle {
    /// The account.
    pub did: Did,
    /// Signed ops.
    pub log: Vec<Value>,
    /// Signed attestations.
    pub attestations: Vec<Value>,
    /// `/_matrix/key/v2/server` documents of the attesting servers.
    pub server_keys: Vec<Value>,
    /// When the sender fetched or assembled it (ms).
    pub fetched_at: Millis,
    /// Where it came from (a server name or URL).
    pub source: String,
}

impl Bundle {
    /// The wire object.
    pub fn to_value(&self) -> Value {
        json!({
            "type": BUNDLE_TYPE,
            "did": self.did.as_str(),
            "log": self.log,
            "attestations": self.attestations,
            "server_keys": self.server_keys,
            "fetched_at": self.fetched_at,
            "source": self.source,
        })
    }

    /// Reads the wire object (nothing verified yet).
    pub fn from_value(v: &Value) -> Result<Self, BundleError> {
        let bad = |m: &str| BundleError::Malformed(m.to_owned());
        let obj = v.as_object().ok_or_else(|| bad("not an object"))?;
        if obj.get("type").and_then(Value::as_str) != Some(BUNDLE_TYPE) {
            return Err(bad("type must be roam.bundle"));
        }
        let list = |k: &str| -> Result<Vec<Value>, BundleError> {
            obj.get(k)
                .and_then(Value::as_array)
                .cloned()
                .ok_or_else(|| BundleError::Malformed(format!("{k} must be an array")))
        };
        let log = list("log")?;
        if log.len() > log::MAX_LOG_OPS {
            return Err(LogError::LogTooLarge { count: log.len() }.into());
        }
        let attestations = list("attestations")?;
        let server_keys = list("server_keys")?;
        for (what, count, limit) in [
            ("attestations", attestations.len(), MAX_ATTESTATIONS),
            ("key documents", server_keys.len(), MAX_SERVER_KEYS),
        ] {
            if count > limit {
                return Err(BundleError::TooMany { what, count, limit });
            }
        }
        Ok(Self {
            did: obj
                .get("did")
                .and_then(Value::as_str)
                .and_then(|s| Did::parse(s).ok())
                .ok_or_else(|| bad("did must be a canonical did:key"))?,
            log,
            attestations,
            server_keys,
            fetched_at: obj
                .get("fetched_at")
                .and_then(Value::as_u64)
                .ok_or_else(|| bad("fetched_at must be an integer"))?,
            // Optional: who assembled the bundle is a hint, not evidence.
            source: match obj.get("source") {
                None => String::new(),
                Some(Value::String(s)) => s.clone(),
                Some(_) => return Err(bad("source must be a string")),
            },
        })
    }
}

/// Whether a statement is attested now, was attested once, or never was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attested {
    /// A current attestation covers it.
    Current { valid_until: Millis },
    /// Only expired attestations cover it; the latest held until `valid_until`.
    Expired { valid_until: Millis },
    /// Nothing covers it.
    Missing,
}

/// A bundle whose every signature checked out.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedBundle {
    /// The verified log.
    pub log: VerifiedLog,
    /// Verified attestations about this account.
    pub attestations: Vec<Attestation>,
    /// Verified key documents, by server.
    pub server_keys: BTreeMap<ServerName, ServerKeys>,
    /// When the sender fetched it.
    pub fetched_at: Millis,
    /// Where it came from.
    pub source: String,
}

impl VerifiedBundle {
    fn best<'a>(&self, it: impl Iterator<Item = &'a Attestation>, now: Millis) -> Attested {
        let mut expired: Option<Millis> = None;
        for a in it {
            if a.is_current(now) {
                return Attested::Current {
                    valid_until: a.valid_until,
                };
            }
            expired = Some(expired.map_or(a.valid_until, |e| e.max(a.valid_until)));
        }
        expired.map_or(Attested::Missing, |valid_until| Attested::Expired {
            valid_until,
        })
    }

    /// The two-way binding of `user_id`: claimed by the log (else `Missing`) and attested by
    /// the user ID's own domain.
    pub fn binding(&self, user_id: &UserId, now: Millis) -> Attested {
        if !self.log.state.user_ids.contains(user_id) {
            return Attested::Missing;
        }
        self.best(self.attestations.iter().filter(|a| a.binds(user_id)), now)
    }

    /// Whether `server` attests hosting the account.
    pub fn hosting(&self, server: &ServerName, now: Millis) -> Attested {
        self.best(
            self.attestations
                .iter()
                .filter(|a| a.hosting && &a.server_name == server),
            now,
        )
    }

    /// The claimed user IDs whose binding is current.
    pub fn bound_user_ids(&self, now: Millis) -> Vec<UserId> {
        self.log
            .state
            .user_ids
            .iter()
            .filter(|u| matches!(self.binding(u, now), Attested::Current { .. }))
            .cloned()
            .collect()
    }

    /// The latest time any attestation of this bundle was issued: when the identity was last
    /// confirmed by a server.
    pub fn last_confirmed(&self) -> Option<Millis> {
        self.attestations.iter().map(|a| a.issued_at).max()
    }
}

/// Verifies a bundle: the log, every key document, and every attestation.
pub fn verify(
    bundle: &Bundle,
    expected_did: Option<&Did>,
    now: Millis,
) -> Result<VerifiedBundle, BundleError> {
    if let Some(d) = expected_did
        && d != &bundle.did
    {
        return Err(BundleError::WrongDid {
            expected: d.to_string(),
            found: bundle.did.to_string(),
        });
    }
    let log = log::verify_values(&bundle.log, Some(&bundle.did), now)?;
    let mut keys = BTreeMap::new();
    for doc in &bundle.server_keys {
        let name = doc
            .get("server_name")
            .and_then(Value::as_str)
            .and_then(|s| ServerName::parse(s).ok())
            .ok_or_else(|| {
                BundleError::Malformed("key document without a valid server_name".into())
            })?;
        let k = server_keys::verify(doc, &name).map_err(|source| BundleError::ServerKeys {
            server: name.to_string(),
            source,
        })?;
        // One document per server: with two, their order would decide which keys count.
        if keys.insert(name.clone(), k).is_some() {
            return Err(BundleError::DuplicateServerKeys {
                server: name.to_string(),
            });
        }
    }
    let mut attestations = Vec::with_capacity(bundle.attestations.len());
    for (index, v) in bundle.attestations.iter().enumerate() {
        let a =
            attestation::parse(v).map_err(|source| BundleError::Attestation { index, source })?;
        if a.did != bundle.did {
            return Err(BundleError::ForeignAttestation {
                index,
                found: a.did.to_string(),
            });
        }
        let k = keys
            .get(&a.server_name)
            .ok_or_else(|| BundleError::MissingServerKeys {
                index,
                server: a.server_name.to_string(),
            })?;
        attestations.push(
            attestation::verify(v, k, now)
                .map_err(|source| BundleError::Attestation { index, source })?,
        );
    }
    Ok(VerifiedBundle {
        log,
        attestations,
        server_keys: keys,
        fetched_at: bundle.fetched_at,
        source: bundle.source.clone(),
    })
}
