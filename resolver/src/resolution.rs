//! What a resolution answers: the internal [`Resolution`] and its separate wire form.
//!
//! The status says how much is known (verified online now, from cache, stale, or from a LAN
//! peer) and [`Resolution::explanation`] puts that in plain words, so that a client never has
//! to guess what "stale" means for its user.

use std::collections::BTreeMap;
use std::sync::Arc;

use roam_identity_core::bundle::Bundle;
use roam_identity_core::did::{decode_multikey, encode_multikey};
use roam_identity_core::log::DeviceKeys;
use roam_identity_core::{DeviceId, Did, Millis, OpHash, ServerName, UserId, VerifyingKey, b64};
use serde::{Deserialize, Serialize};

use crate::clock::rfc3339;

/// How fresh and how confirmed an answer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResolveStatus {
    /// Verified online just now, from the user's own domain and the account's servers.
    Verified,
    /// Verified online earlier, still within the cache TTL.
    Cached,
    /// Verified online earlier; the TTL has passed and the origin cannot be reached.
    Stale,
    /// From LAN peers' bundles: every signature checked, freshness unknown.
    Lan,
    /// The user ID's domain could not be reached; a binding credential it signed (spec §14)
    /// and an account log that backs it carry the answer: every signature checked, fresh
    /// only as far as the credential's validity window says (spec §10.5). Never cached.
    Credential,
}

impl ResolveStatus {
    /// The wire name (`verified`, `cached`, `stale`, `lan`).
    pub fn as_str(self) -> &'static str {
        match self {
            ResolveStatus::Verified => "verified",
            ResolveStatus::Cached => "cached",
            ResolveStatus::Stale => "stale",
            ResolveStatus::Lan => "lan",
            ResolveStatus::Credential => "credential",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "verified" => ResolveStatus::Verified,
            "cached" => ResolveStatus::Cached,
            "stale" => ResolveStatus::Stale,
            "lan" => ResolveStatus::Lan,
            "credential" => ResolveStatus::Credential,
            _ => return None,
        })
    }
}

/// Where the evidence of an answer came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Fetched online from `server` (the user ID's own domain, or a server of the DID) at `url`.
    Origin { server: ServerName, url: String },
    /// Bundles from these LAN peers (base URLs).
    Lan { peers: Vec<String> },
    /// A binding credential `issuer` signed, offered from `from` (a file, a peer), with the
    /// account log from `log`.
    Credential {
        issuer: ServerName,
        from: String,
        log: String,
    },
}

/// A verified answer about an account.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolution {
    /// The user ID asked about (for a DID resolution: the first bound user ID, if any).
    pub user_id: Option<UserId>,
    /// The account.
    pub did: Did,
    /// The key that signs the account's operations now.
    pub update_key: VerifyingKey,
    /// Servers that host the account, primary first.
    pub servers: Vec<ServerName>,
    /// Devices the account key signed in.
    pub devices: BTreeMap<DeviceId, DeviceKeys>,
    /// User IDs bound both ways (claimed by the log, attested by their own domain). For
    /// `stale` and `lan` answers the attestation may have expired since.
    pub user_ids: Vec<UserId>,
    /// Hash of the log's head op.
    pub head: OpHash,
    /// Its seq.
    pub seq: u64,
    /// `created_at` of the genesis op.
    pub created_at: Millis,
    /// `created_at` of the head op.
    pub updated_at: Millis,
    /// True when the log ends with a deactivate.
    pub deactivated: bool,
    /// How much is known.
    pub status: ResolveStatus,
    /// When this resolver last verified the evidence (for `cached`/`stale`: when it was online).
    pub verified_at: Millis,
    /// When a server last confirmed the binding (issue time of the newest attestation relied on).
    pub last_confirmed: Option<Millis>,
    /// Where the evidence came from.
    pub source: Source,
    /// Everything a careful reader should know: sources dropped, peers rejected, servers down.
    pub warnings: Vec<String>,
    /// The facts behind the answer's status, as stable machine codes with their fields
    /// (spec §10.3): who could not be reached, who confirmed the log and when, which
    /// attestation the binding rests on and until when, refused downgrades, recoveries.
    pub notices: Vec<Notice>,
    /// The self-verifying evidence (log with every branch, attestations, key documents).
    pub bundle: Arc<Bundle>,
}

impl Resolution {
    /// The account's update key as a Multikey (`z6Mk…`).
    pub fn update_key_multikey(&self) -> String {
        encode_multikey(&self.update_key)
    }

    /// Until when a cache may repeat this answer as `cached`: `verified_at` + `ttl_ms`, but
    /// never past the end of an attestation the binding rests on without having been
    /// re-fetched (`binding_from_attestation`, spec §10.3).
    pub fn fresh_until(&self, ttl_ms: Millis) -> Millis {
        let ttl_end = self.verified_at.saturating_add(ttl_ms);
        self.notices
            .iter()
            .filter(|n| n.code == notice::BINDING_FROM_ATTESTATION)
            .filter_map(|n| n.until)
            .fold(ttl_end, Millis::min)
    }

    /// The domain whose confirmation is missing when the answer is not fresh.
    fn confirming_domain(&self) -> String {
        match (&self.user_id, self.servers.first()) {
            (Some(u), _) => u.server_name().to_string(),
            (None, Some(s)) => s.to_string(),
            (None, None) => "the account's server".to_owned(),
        }
    }

    fn subject_claim(&self) -> String {
        match &self.user_id {
            Some(u) => format!("this user claims to be {u}"),
            None if self.user_ids.is_empty() => {
                format!("this account ({}) claims no bound user ID", self.did)
            }
            None => format!("this account claims to be {}", join(&self.user_ids)),
        }
    }

    /// What a `verified` or `cached` answer says is bound.
    fn bound_claim(&self) -> String {
        match &self.user_id {
            Some(u) => format!(
                "{u} is bound to {}: the account's log claims it and {} attests it{}",
                self.did,
                u.server_name(),
                self.last_confirmed
                    .map(|t| format!(" (attestation issued at {})", rfc3339(t)))
                    .unwrap_or_default()
            ),
            None if self.user_ids.is_empty() => {
                format!("{} has no bound user ID", self.did)
            }
            None => format!("{} is bound to {}", self.did, join(&self.user_ids)),
        }
    }

    /// When and how a `verified` or `cached` answer was confirmed: online now, in failover
    /// (the origin's attestation carries the binding, a server confirmed the log), or from
    /// the cache.
    fn verified_when(&self) -> String {
        let failover = self
            .notices
            .iter()
            .find(|n| n.code == notice::BINDING_FROM_ATTESTATION && n.until.is_some());
        let confirmed_by = self
            .notices
            .iter()
            .find(|n| n.code == notice::LOG_CONFIRMED)
            .and_then(|n| n.server.as_ref());
        match (self.status, failover, confirmed_by) {
            (ResolveStatus::Verified, Some(b), Some(by)) => format!(
                "{} could not be reached, so its attestation verified earlier carries the binding until {}; the log was confirmed online by {by} at {}",
                b.server
                    .as_ref()
                    .map_or_else(String::new, ToString::to_string),
                rfc3339(b.until.unwrap_or_default()),
                rfc3339(self.verified_at)
            ),
            (ResolveStatus::Verified, _, _) => {
                format!("verified online at {}", rfc3339(self.verified_at))
            }
            _ => format!(
                "verified online at {} and served from cache, not rechecked since",
                rfc3339(self.verified_at)
            ),
        }
    }

    /// Plain words for what is and is not known. For `stale` and `lan` it is DESIGN.md's
    /// sentence: "this user claims to be @foo:example.com; example.com cannot be reached to
    /// confirm; what is certain is that they hold key XYZ, as last confirmed at T".
    pub fn explanation(&self) -> String {
        let key = self.update_key_multikey();
        let hosted = if self.servers.is_empty() {
            String::new()
        } else {
            format!(", hosted by {}", join(&self.servers))
        };
        let deactivated = if self.deactivated {
            "The account is deactivated. "
        } else {
            ""
        };
        match self.status {
            ResolveStatus::Verified | ResolveStatus::Cached => format!(
                "{deactivated}{}; it is controlled by key {key}{hosted}; {}.",
                self.bound_claim(),
                self.verified_when()
            ),
            ResolveStatus::Stale => format!(
                "{deactivated}{}; {} cannot be reached to confirm; what is certain is that they \
                 hold key {key}, as last confirmed at {}. This answer is from this resolver's \
                 cache; a newer operation may exist.",
                self.subject_claim(),
                self.confirming_domain(),
                rfc3339(self.verified_at),
            ),
            ResolveStatus::Credential => self.credential_explanation(deactivated, &key),
            ResolveStatus::Lan => {
                let peers = match &self.source {
                    Source::Lan { peers } => peers.join(", "),
                    Source::Origin { url, .. } => url.clone(),
                    Source::Credential { from, .. } => from.clone(),
                };
                format!(
                    "{deactivated}{}; {} cannot be reached to confirm; what is certain is that \
                     they hold key {key}, as last confirmed at {}. This answer comes from LAN \
                     peer(s) {peers}: every signature was checked, but a newer operation may \
                     exist.",
                    self.subject_claim(),
                    self.confirming_domain(),
                    rfc3339(self.last_confirmed.unwrap_or(self.bundle.fetched_at)),
                )
            }
        }
    }

    /// Plain words for a `credential` answer.
    fn credential_explanation(&self, deactivated: &str, key: &str) -> String {
        let (issuer, from, log) = match &self.source {
            Source::Credential { issuer, from, log } => {
                (issuer.to_string(), from.as_str(), log.as_str())
            }
            _ => (self.confirming_domain(), "", ""),
        };
        let until = self
            .notices
            .iter()
            .find(|n| n.code == notice::BINDING_FROM_CREDENTIAL)
            .and_then(|n| n.until)
            .map(|t| format!(" (valid until {})", rfc3339(t)))
            .unwrap_or_default();
        format!(
            "{deactivated}{}; {issuer} cannot be reached to confirm, but a credential it signed{until}, \
             from {from}, binds it to {}, and the account log from {log} backs it: they hold key \
             {key}. Every signature was checked; a newer operation may exist.",
            self.subject_claim(),
            self.did,
        )
    }

    /// The wire form.
    pub fn to_wire(&self) -> ResolutionWire {
        ResolutionWire {
            user_id: self.user_id.clone(),
            did: self.did.clone(),
            update_key: self.update_key_multikey(),
            servers: self.servers.clone(),
            devices: self
                .devices
                .iter()
                .map(|(id, k)| {
                    (
                        id.clone(),
                        DeviceKeysWire {
                            ed25519: b64::encode(&k.ed25519),
                            curve25519: b64::encode(&k.curve25519),
                        },
                    )
                })
                .collect(),
            user_ids: self.user_ids.clone(),
            head: self.head.to_multibase(),
            seq: self.seq,
            created_at: self.created_at,
            updated_at: self.updated_at,
            deactivated: self.deactivated,
            status: self.status.as_str().to_owned(),
            verified_at: self.verified_at,
            last_confirmed: self.last_confirmed,
            source: match &self.source {
                Source::Origin { server, url } => SourceWire::Origin {
                    server: server.clone(),
                    url: url.clone(),
                },
                Source::Lan { peers } => SourceWire::Lan {
                    peers: peers.clone(),
                },
                Source::Credential { issuer, from, log } => SourceWire::Credential {
                    issuer: issuer.clone(),
                    from: from.clone(),
                    log: log.clone(),
                },
            },
            warnings: self.warnings.clone(),
            notices: self.notices.clone(),
            explanation: self.explanation(),
        }
    }

    /// Reads the wire form back (used by the cache, which stores what it verified).
    pub fn from_wire(w: ResolutionWire, bundle: Arc<Bundle>) -> Result<Self, WireError> {
        let bad = |what: &str, e: &dyn std::fmt::Display| WireError(format!("{what}: {e}"));
        let mut devices = BTreeMap::new();
        for (id, k) in w.devices {
            let ed25519 =
                b64::decode_array::<32>(&k.ed25519).map_err(|e| bad("device ed25519", &e))?;
            let curve25519 =
                b64::decode_array::<32>(&k.curve25519).map_err(|e| bad("device curve25519", &e))?;
            devices.insert(
                id,
                DeviceKeys {
                    ed25519,
                    curve25519,
                },
            );
        }
        Ok(Self {
            user_id: w.user_id,
            did: w.did,
            update_key: decode_multikey(&w.update_key).map_err(|e| bad("update_key", &e))?,
            servers: w.servers,
            devices,
            user_ids: w.user_ids,
            head: OpHash::parse(&w.head).map_err(|e| bad("head", &e))?,
            seq: w.seq,
            created_at: w.created_at,
            updated_at: w.updated_at,
            deactivated: w.deactivated,
            status: ResolveStatus::parse(&w.status)
                .ok_or_else(|| WireError(format!("unknown status {:?}", w.status)))?,
            verified_at: w.verified_at,
            last_confirmed: w.last_confirmed,
            source: match w.source {
                SourceWire::Origin { server, url } => Source::Origin { server, url },
                SourceWire::Lan { peers } => Source::Lan { peers },
                SourceWire::Credential { issuer, from, log } => {
                    Source::Credential { issuer, from, log }
                }
            },
            warnings: w.warnings,
            notices: w.notices,
            bundle,
        })
    }
}

fn join<T: std::fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A wire resolution that does not read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed resolution: {0}")]
pub struct WireError(pub String);

/// The JSON answer of a resolution (field names as in DESIGN.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResolutionWire {
    /// The user ID asked about, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<UserId>,
    /// The account DID.
    pub did: Did,
    /// The update key as a Multikey.
    pub update_key: String,
    /// Servers, primary first.
    pub servers: Vec<ServerName>,
    /// Signed-in devices.
    pub devices: BTreeMap<DeviceId, DeviceKeysWire>,
    /// Bound user IDs.
    pub user_ids: Vec<UserId>,
    /// Head op hash (multibase).
    pub head: String,
    /// Head seq.
    pub seq: u64,
    /// Genesis time (ms).
    pub created_at: Millis,
    /// Head time (ms).
    pub updated_at: Millis,
    /// Deactivated account.
    pub deactivated: bool,
    /// `verified`, `cached`, `stale`, `lan` or `credential`.
    pub status: String,
    /// When the evidence was last verified online (ms).
    pub verified_at: Millis,
    /// When a server last confirmed the binding (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_confirmed: Option<Millis>,
    /// Where the evidence came from.
    pub source: SourceWire,
    /// Warnings.
    pub warnings: Vec<String>,
    /// Coded facts behind the status (§10.3).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notices: Vec<Notice>,
    /// Plain-words summary (see [`Resolution::explanation`]).
    pub explanation: String,
}

/// A device's keys on the wire (unpadded base64, as in Matrix).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceKeysWire {
    /// Ed25519 signing key.
    pub ed25519: String,
    /// Curve25519 identity key.
    pub curve25519: String,
}

/// Where the evidence came from, on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum SourceWire {
    /// An online server.
    Origin { server: ServerName, url: String },
    /// LAN peers.
    Lan { peers: Vec<String> },
    /// A binding credential (`issuer`, offered from `from`) and the account log from `log`.
    Credential {
        issuer: ServerName,
        from: String,
        log: String,
    },
}

/// A fact behind an answer's status, with a stable machine code (spec §10.3). The same fact
/// is also in [`Resolution::warnings`] as text for people; programs read the code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    /// The stable code (`origin_unreachable`, `log_confirmed`, …; see [`notice`]).
    pub code: String,
    /// The server the fact is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerName>,
    /// When it happened or was issued (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<Millis>,
    /// Until when it holds (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<Millis>,
    /// The log head it is about (multibase).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<String>,
}

impl Notice {
    /// A notice with only a code.
    pub fn new(code: &str) -> Self {
        Self {
            code: code.to_owned(),
            server: None,
            at: None,
            until: None,
            head: None,
        }
    }

    /// With the server it is about.
    pub fn server(mut self, s: &ServerName) -> Self {
        self.server = Some(s.clone());
        self
    }

    /// With a time.
    pub fn at(mut self, t: Millis) -> Self {
        self.at = Some(t);
        self
    }

    /// With an end of validity.
    pub fn until(mut self, t: Millis) -> Self {
        self.until = Some(t);
        self
    }

    /// With a head.
    pub fn head(mut self, h: &OpHash) -> Self {
        self.head = Some(h.to_multibase());
        self
    }
}

/// The stable notice codes of spec §10.3.
pub mod notice {
    /// The user ID's own domain could not be reached (`server`).
    pub const ORIGIN_UNREACHABLE: &str = "origin_unreachable";
    /// One of the account's servers could not be reached (`server`).
    pub const SERVER_UNREACHABLE: &str = "server_unreachable";
    /// One of the account's servers answered that it does not know the account (`server`).
    pub const SERVER_NOT_FOUND: &str = "server_not_found";
    /// A source served evidence that does not verify; it was ignored (`server`).
    pub const SOURCE_REJECTED: &str = "source_rejected";
    /// An account server answered online with a log whose head is the answer's (`server`,
    /// `at` = when it answered, `head`).
    pub const LOG_CONFIRMED: &str = "log_confirmed";
    /// The binding rests on the origin's attestation verified earlier, not re-fetched now
    /// (`server` = the origin, `at` = its issue time, `until` = its `valid_until`).
    pub const BINDING_FROM_ATTESTATION: &str = "binding_from_attestation";
    /// The origin's attestation of the binding has expired (`server`, `until`).
    pub const BINDING_EXPIRED: &str = "binding_expired";
    /// A source served a log that does not contain the head verified earlier; the earlier
    /// head is kept (`server` when known, `head` = the head it served).
    pub const DOWNGRADE_REFUSED: &str = "downgrade_refused";
    /// A recovery rotate superseded the head verified earlier (`head` = that earlier head).
    pub const RECOVERED: &str = "recovered";
    /// Attestations by this server were left out: its keys could not be fetched from it
    /// (`server`).
    pub const ATTESTATION_UNCHECKED: &str = "attestation_unchecked";
    /// LAN peers offered nothing newer than the answer verified earlier, which is repeated.
    pub const LAN_NOTHING_NEWER: &str = "lan_nothing_newer";
    /// Nothing was asked: the resolver is offline.
    pub const OFFLINE: &str = "offline";
    /// The binding rests on a credential the user ID's domain signed, offered by the caller
    /// (`server` = the issuer, `at` = its `validFrom`, `until` = its `validUntil`, `head` = the
    /// log head it attests); spec §10.5.
    pub const BINDING_FROM_CREDENTIAL: &str = "binding_from_credential";
    /// An offered credential verified and agrees with the answer (`server`, `at`, `until`,
    /// `head`).
    pub const CREDENTIAL_AGREES: &str = "credential_agrees";
    /// An offered credential verified but the answer's verified log contradicts it (another
    /// account, or the log no longer claims the user ID); the log wins (`server`, `head`).
    pub const CREDENTIAL_CONTRADICTED: &str = "credential_contradicted";
    /// An offered credential was refused (its proof, its window, its issuer's keys, or the
    /// log given with it); `server` = the issuer when known.
    pub const CREDENTIAL_REFUSED: &str = "credential_refused";
}

/// What a caller (the cache) already verified about the account a user ID named: passed to
/// [`crate::Resolver::resolve_user_known`] so that, when the user ID's own domain cannot be
/// reached, the account's servers can be asked instead (spec §10.2).
#[derive(Debug, Clone, PartialEq)]
pub struct KnownAccount {
    /// The account the user ID was bound to.
    pub did: Did,
    /// Its servers, primary first, as last verified.
    pub servers: Vec<ServerName>,
    /// The evidence verified then (log, attestations, the key documents fetched from the
    /// attesting servers themselves).
    pub bundle: Arc<Bundle>,
    /// When it was verified online.
    pub verified_at: Millis,
}

impl KnownAccount {
    /// What a stored answer says about its account.
    pub fn of(r: &Resolution) -> Self {
        Self {
            did: r.did.clone(),
            servers: r.servers.clone(),
            bundle: r.bundle.clone(),
            verified_at: r.verified_at,
        }
    }
}
