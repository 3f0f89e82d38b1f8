//! Attestations: a homeserver's signed statement that a user ID (or hosting) belongs to a DID.
//!
//! A user ID is bound to a DID only when both directions hold: the DID's log claims the user
//! ID, and the user ID's own domain attests the DID. `hosting: true` says the signing server
//! serves the account now. Attestations expire; expired ones still say what was once
//! confirmed, which offline answers report as such.

use serde_json::{Value, json};

use crate::did::Did;
use crate::hash::OpHash;
use crate::ids::{ServerName, UserId};
use crate::server_keys::{ServerKeys, ServerSigningKey};
use crate::signed::{self, SignError};
use crate::{Millis, canonical};

/// The `type` of an attestation object.
pub const ATTESTATION_TYPE: &str = "roam.attestation";
/// Longest validity window an attestation may claim (30 days).
pub const MAX_VALIDITY_MS: Millis = 30 * 24 * 3600 * 1000;

/// Why an attestation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttestationError {
    #[error("attestation is malformed: {0}")]
    Malformed(String),
    #[error("attestation is signed by {found}, but these keys are {expected}'s")]
    WrongServer { expected: String, found: String },
    #[error("attestation validity window is invalid")]
    BadWindow,
    #[error("attestation was issued in the future")]
    FromFuture,
    #[error("attestation signature: {0}")]
    Signature(#[from] SignError),
}

impl AttestationError {
    /// The stable error class used in spec/protocol.md and the vectors.
    pub fn class(&self) -> &'static str {
        match self {
            AttestationError::Malformed(_) => "malformed",
            AttestationError::WrongServer { .. } => "wrong_server",
            AttestationError::BadWindow => "bad_window",
            AttestationError::FromFuture => "from_future",
            AttestationError::Signature(e) => e.class(),
        }
    }
}

/// What a server attests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attestation {
    /// The attesting server.
    pub server_name: ServerName,
    /// The user ID on that server bound to the DID (absent for a hosting-only statement).
    pub user_id: Option<UserId>,
    /// The account.
    pub did: Did,
    /// The log head the server held when it signed.
    pub head: OpHash,
    /// True when the server hosts the account now.
    pub hosting: bool,
    /// When it was signed (ms).
    pub issued_at: Millis,
    /// Until when it holds (ms).
    pub valid_until: Millis,
}

impl Attestation {
    /// The unsigned wire object.
    pub fn to_value(&self) -> Value {
        let mut v = json!({
            "type": ATTESTATION_TYPE,
            "server_name": self.server_name.as_str(),
            "did": self.did.as_str(),
            "head": self.head.to_multibase(),
            "hosting": self.hosting,
            "issued_at": self.issued_at,
            "valid_until": self.valid_until,
        });
        if let Some(u) = &self.user_id {
            v["user_id"] = json!(u.as_str());
        }
        v
    }

    /// Signs with the server's key.
    pub fn sign(&self, key: &ServerSigningKey) -> Result<Value, SignError> {
        let mut v = self.to_value();
        signed::sign(&mut v, self.server_name.as_str(), &key.key_id, &key.key)?;
        Ok(v)
    }

    /// True when `now` is inside the validity window.
    pub fn is_current(&self, now: Millis) -> bool {
        self.issued_at <= now && now <= self.valid_until
    }

    /// True when this attestation binds `user_id` to the DID (the user ID's own domain).
    pub fn binds(&self, user_id: &UserId) -> bool {
        self.user_id.as_ref() == Some(user_id) && user_id.server_name() == self.server_name
    }
}

/// Parses an attestation without checking its signature.
pub fn parse(v: &Value) -> Result<Attestation, AttestationError> {
    let bad = |m: &str| AttestationError::Malformed(m.to_owned());
    canonical::check_numbers(v).map_err(|e| AttestationError::Malformed(e.to_string()))?;
    let obj = v.as_object().ok_or_else(|| bad("not an object"))?;
    const FIELDS: &[&str] = &[
        "type",
        "server_name",
        "user_id",
        "did",
        "head",
        "hosting",
        "issued_at",
        "valid_until",
        "signatures",
        "unsigned",
    ];
    if let Some(k) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(AttestationError::Malformed(format!("unknown field {k:?}")));
    }
    if obj.get("type").and_then(Value::as_str) != Some(ATTESTATION_TYPE) {
        return Err(bad("type must be roam.attestation"));
    }
    let s = |k: &str| {
        obj.get(k)
            .and_then(Value::as_str)
            .ok_or_else(|| AttestationError::Malformed(format!("{k} must be a string")))
    };
    let n = |k: &str| {
        obj.get(k)
            .and_then(Value::as_u64)
            .ok_or_else(|| AttestationError::Malformed(format!("{k} must be an integer")))
    };
    let user_id = match obj.get("user_id") {
        None => None,
        Some(Value::String(u)) => {
            Some(UserId::parse(u).map_err(|e| AttestationError::Malformed(e.to_string()))?)
        }
        Some(_) => return Err(bad("user_id must be a string")),
    };
    let a = Attestation {
        server_name: ServerName::parse(s("server_name")?)
            .map_err(|e| AttestationError::Malformed(e.to_string()))?,
        user_id,
        did: Did::parse(s("did")?).map_err(|e| AttestationError::Malformed(e.to_string()))?,
        head: OpHash::parse(s("head")?).map_err(|e| AttestationError::Malformed(e.to_string()))?,
        hosting: obj
            .get("hosting")
            .and_then(Value::as_bool)
            .ok_or_else(|| bad("hosting must be a boolean"))?,
        issued_at: n("issued_at")?,
        valid_until: n("valid_until")?,
    };
    if a.valid_until <= a.issued_at || a.valid_until - a.issued_at > MAX_VALIDITY_MS {
        return Err(AttestationError::BadWindow);
    }
    Ok(a)
}

/// Verifies an attestation's signature with the attesting server's keys (a key valid at
/// `issued_at`). Expiry is not an error here: callers compare [`Attestation::is_current`]
/// with their clock and report expired statements as stale.
pub fn verify(v: &Value, keys: &ServerKeys, now: Millis) -> Result<Attestation, AttestationError> {
    let a = parse(v)?;
    if a.server_name != keys.server_name {
        return Err(AttestationError::WrongServer {
            expected: keys.server_name.to_string(),
            found: a.server_name.to_string(),
        });
    }
    if a.issued_at > now.saturating_add(crate::log::MAX_FUTURE_SKEW_MS) {
        return Err(AttestationError::FromFuture);
    }
    keys.verify_object(v, a.issued_at)?;
    Ok(a)
}
