//! The account log (spec/protocol.md §5): an append-only, hash-linked list of signed
//! operations per DID.
//!
//! Verification (§5.3) happens in fixed phases, so the same input always yields the same
//! error; each phase is a function named after what it checks:
//!
//! 1. **Parse** every op on its own ([`SignedOp::from_value`]; `parse_op`): strict JSON and
//!    the size cap, a known action with only its members, canonical encodings and list caps,
//!    exactly one signature under the op's DID.
//! 2. **The set** (`check_set`: empty, too large, one DID, not from the future, genesis ⇔ seq
//!    0 ⇔ no prev) and **links** (`link`: one op per hash, `prev` names a held op whose `seq`
//!    is one less, `created_at` never goes backwards, nothing follows a deactivate).
//! 3. **Signers** (`check_signers`): each op's required signer follows from its ancestry
//!    alone (the update key of the nearest genesis/rotate; a rotate must carry the committed
//!    key and be signed by it). All signatures are checked in one batch, falling back to one
//!    by one to name the culprit (`verify_signatures`). Either pass names the failing op
//!    first in input order, not first in walk order.
//! 4. **Forks** (`choose_chain`), epoch by epoch (an epoch is a genesis or rotate and the
//!    non-rotate ops after it): one rotate attached anywhere in the epoch wins and supersedes
//!    every other op of the epoch not on its path (recovery, no clock involved); two rotates,
//!    or a fork with no rotate, is equivocation, reported with both ops.
//! 5. **Replay** (`replay`) the chosen chain into an [`AccountState`], checking each action's
//!    meaning (claimed IDs, devices, caps).

use std::collections::{BTreeMap, HashMap};

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde_json::{Map, Value, json};

use crate::canonical::{self, CanonicalError};
use crate::did::{self, Did};
use crate::hash::{KeyCommitment, OpHash};
use crate::ids::{DeviceId, KeyId, ServerName, UserId};
use crate::{Millis, b64, signed};

/// Largest canonical size of one operation, in bytes.
pub const MAX_OP_BYTES: usize = 4096;
/// Most operations one log may hold (all branches counted).
pub const MAX_LOG_OPS: usize = 1000;
/// Most servers one `genesis` or `move` may list.
pub const MAX_SERVERS: usize = 10;
/// Most user IDs an account may have claimed at once.
pub const MAX_USER_IDS: usize = 10;
/// Most devices an account may have signed in at once.
pub const MAX_DEVICES: usize = 10;
/// How far in the future of the verifier's clock an op's `created_at` may be.
pub const MAX_FUTURE_SKEW_MS: Millis = 5 * 60 * 1000;

/// Why a log (or one of its ops) failed verification. [`LogError::class`] gives the stable
/// name used in the spec and the vectors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    #[error("op {index}: not valid JSON for a Roam object: {source}")]
    Encoding {
        index: usize,
        source: CanonicalError,
    },
    #[error("op {index}: malformed: {reason}")]
    Malformed { index: usize, reason: String },
    #[error("op {index}: unknown action {action:?}")]
    UnknownAction { index: usize, action: String },
    #[error("op {index}: unknown field {field:?} for action {action}")]
    UnknownField {
        index: usize,
        action: String,
        field: String,
    },
    #[error("op {index}: {reason}")]
    NonCanonical { index: usize, reason: String },
    #[error("op {index} is {size} bytes; the limit is {MAX_OP_BYTES}")]
    OpTooLarge { index: usize, size: usize },
    #[error("log has {count} ops; the limit is {MAX_LOG_OPS}")]
    LogTooLarge { count: usize },
    #[error("op {index}: {what} lists {count}; the limit is {limit}")]
    TooMany {
        index: usize,
        what: &'static str,
        count: usize,
        limit: usize,
    },
    #[error("op {index} belongs to {found}, not {expected}")]
    WrongDid {
        index: usize,
        expected: String,
        found: String,
    },
    #[error("log is empty")]
    Empty,
    #[error("op {index}: genesis must have seq 0 and no prev; other ops need both")]
    BadGenesis { index: usize },
    #[error("op {index}: prev {prev} is not an op of this log")]
    UnknownPrev { index: usize, prev: String },
    #[error("op {index}: seq {found} after an op with seq {parent}; expected {}", parent + 1)]
    SeqGap {
        index: usize,
        parent: u64,
        found: u64,
    },
    #[error("op {index}: created_at {found} is before its predecessor's {parent}")]
    TimeReversed {
        index: usize,
        parent: Millis,
        found: Millis,
    },
    #[error("op {index}: created_at {found} is in the future (now {now})")]
    FromFuture {
        index: usize,
        now: Millis,
        found: Millis,
    },
    #[error("op {index} follows a deactivate")]
    AfterDeactivate { index: usize },
    #[error("op {index}: must be signed by {expected}")]
    WrongSigner { index: usize, expected: String },
    #[error("op {index}: the new update key does not match the committed next key")]
    CommitmentMismatch { index: usize },
    #[error("op {index}: genesis update key must be the DID's own key")]
    GenesisKeyMismatch { index: usize },
    #[error("op {index}: signature does not verify")]
    BadSignature { index: usize },
    #[error("equivocation: ops {} and {} conflict and no recovery rotate settles it", a.hash, b.hash)]
    Equivocation { a: Box<SignedOp>, b: Box<SignedOp> },
    #[error("op {index}: {user_id} is already claimed")]
    AlreadyClaimed { index: usize, user_id: String },
    #[error("op {index}: {user_id} is not claimed")]
    NotClaimed { index: usize, user_id: String },
    #[error("op {index}: device {device_id} is already signed in")]
    DeviceExists { index: usize, device_id: String },
    #[error("op {index}: device {device_id} is not signed in")]
    UnknownDevice { index: usize, device_id: String },
}

impl LogError {
    /// The stable error class named in spec/protocol.md and the vectors.
    pub fn class(&self) -> &'static str {
        match self {
            LogError::Encoding { source, .. } => source.class(),
            LogError::Malformed { .. } => "malformed",
            LogError::UnknownAction { .. } => "unknown_action",
            LogError::UnknownField { .. } => "unknown_field",
            LogError::NonCanonical { .. } => "non_canonical",
            LogError::OpTooLarge { .. } => "op_too_large",
            LogError::LogTooLarge { .. } => "log_too_large",
            LogError::TooMany { .. } => "too_many",
            LogError::WrongDid { .. } => "wrong_did",
            LogError::Empty => "empty",
            LogError::BadGenesis { .. } => "bad_genesis",
            LogError::UnknownPrev { .. } => "unknown_prev",
            LogError::SeqGap { .. } => "seq_gap",
            LogError::TimeReversed { .. } => "time_reversed",
            LogError::FromFuture { .. } => "from_future",
            LogError::AfterDeactivate { .. } => "after_deactivate",
            LogError::WrongSigner { .. } => "wrong_signer",
            LogError::CommitmentMismatch { .. } => "commitment_mismatch",
            LogError::GenesisKeyMismatch { .. } => "genesis_key_mismatch",
            LogError::BadSignature { .. } => "bad_signature",
            LogError::Equivocation { .. } => "equivocation",
            LogError::AlreadyClaimed { .. } => "already_claimed",
            LogError::NotClaimed { .. } => "not_claimed",
            LogError::DeviceExists { .. } => "device_exists",
            LogError::UnknownDevice { .. } => "unknown_device",
        }
    }

    /// The position (in the input) of the op the error is about, if there is one.
    pub fn index(&self) -> Option<usize> {
        self.clone().index_slot().map(|i| *i)
    }

    fn with_index(mut self, i: usize) -> Self {
        if let Some(slot) = self.index_slot() {
            *slot = i;
        }
        self
    }

    /// The one list of which errors are about a particular op.
    fn index_slot(&mut self) -> Option<&mut usize> {
        use LogError::*;
        match self {
            Encoding { index, .. }
            | Malformed { index, .. }
            | UnknownAction { index, .. }
            | UnknownField { index, .. }
            | NonCanonical { index, .. }
            | OpTooLarge { index, .. }
            | TooMany { index, .. }
            | WrongDid { index, .. }
            | BadGenesis { index }
            | UnknownPrev { index, .. }
            | SeqGap { index, .. }
            | TimeReversed { index, .. }
            | FromFuture { index, .. }
            | AfterDeactivate { index }
            | WrongSigner { index, .. }
            | CommitmentMismatch { index }
            | GenesisKeyMismatch { index }
            | BadSignature { index }
            | AlreadyClaimed { index, .. }
            | NotClaimed { index, .. }
            | DeviceExists { index, .. }
            | UnknownDevice { index, .. } => Some(index),
            LogTooLarge { .. } | Empty | Equivocation { .. } => None,
        }
    }
}

/// A device's Matrix identity keys as signed into the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceKeys {
    /// The device's Ed25519 signing key (`ed25519:DEVICE` in Matrix device keys).
    pub ed25519: [u8; 32],
    /// The device's Curve25519 identity key (`curve25519:DEVICE`).
    pub curve25519: [u8; 32],
}

/// What an operation does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Creates the account. `update_key` must be the DID's key.
    Genesis {
        update_key: VerifyingKey,
        next_key: KeyCommitment,
        user_id: UserId,
        servers: Vec<ServerName>,
    },
    /// Binds a user ID (counts once that domain attests the DID).
    Claim { user_id: UserId },
    /// Unbinds a user ID.
    Release { user_id: UserId },
    /// Sets the ordered server list: primary first, then backups.
    Move { servers: Vec<ServerName> },
    /// Replaces the update key with the committed one and commits to the next.
    Rotate {
        update_key: VerifyingKey,
        next_key: KeyCommitment,
    },
    /// Signs a device into the account.
    AddDevice {
        device_id: DeviceId,
        keys: DeviceKeys,
    },
    /// Signs a device out.
    RevokeDevice { device_id: DeviceId },
    /// Ends the account (only a recovery rotate from before it can undo it).
    Deactivate,
}

impl Action {
    /// The wire name of the action.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Genesis { .. } => "genesis",
            Action::Claim { .. } => "claim",
            Action::Release { .. } => "release",
            Action::Move { .. } => "move",
            Action::Rotate { .. } => "rotate",
            Action::AddDevice { .. } => "add_device",
            Action::RevokeDevice { .. } => "revoke_device",
            Action::Deactivate => "deactivate",
        }
    }

    /// True for genesis and rotate, the ops that start a key epoch.
    pub fn is_key_event(&self) -> bool {
        matches!(self, Action::Genesis { .. } | Action::Rotate { .. })
    }
}

/// An operation before signing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    /// The account.
    pub did: Did,
    /// 0 for genesis, then +1 along the chain.
    pub seq: u64,
    /// Hash of the previous op; `None` only for genesis.
    pub prev: Option<OpHash>,
    /// When the op was made (ms), as claimed by its signer.
    pub created_at: Millis,
    /// What it does.
    pub action: Action,
}

impl Operation {
    /// The unsigned wire object.
    pub fn to_value(&self) -> Value {
        let mut m = Map::new();
        m.insert("did".into(), json!(self.did.as_str()));
        m.insert("seq".into(), json!(self.seq));
        if let Some(prev) = &self.prev {
            m.insert("prev".into(), json!(prev.to_multibase()));
        }
        m.insert("created_at".into(), json!(self.created_at));
        m.insert("action".into(), json!(self.action.name()));
        match &self.action {
            Action::Genesis {
                update_key,
                next_key,
                user_id,
                servers,
            } => {
                m.insert("update_key".into(), json!(did::encode_multikey(update_key)));
                m.insert("next_key".into(), json!(next_key.to_multibase()));
                m.insert("user_id".into(), json!(user_id.as_str()));
                m.insert("servers".into(), json!(servers));
            }
            Action::Claim { user_id } | Action::Release { user_id } => {
                m.insert("user_id".into(), json!(user_id.as_str()));
            }
            Action::Move { servers } => {
                m.insert("servers".into(), json!(servers));
            }
            Action::Rotate {
                update_key,
                next_key,
            } => {
                m.insert("update_key".into(), json!(did::encode_multikey(update_key)));
                m.insert("next_key".into(), json!(next_key.to_multibase()));
            }
            Action::AddDevice { device_id, keys } => {
                m.insert("device_id".into(), json!(device_id.as_str()));
                m.insert(
                    "device_keys".into(),
                    json!({
                        "ed25519": b64::encode(&keys.ed25519),
                        "curve25519": b64::encode(&keys.curve25519),
                    }),
                );
            }
            Action::RevokeDevice { device_id } => {
                m.insert("device_id".into(), json!(device_id.as_str()));
            }
            Action::Deactivate => {}
        }
        Value::Object(m)
    }

    /// Signs the op with `key` (which must be the key the log expects for it; the signature
    /// is checked when the log is verified, not here).
    pub fn sign(&self, key: &SigningKey) -> SignedOp {
        let mut value = self.to_value();
        let key_id = key_id_for(&key.verifying_key());
        // The value was built from typed fields: it is an object of strings and safe integers.
        let bytes = signed::signing_bytes(&value).unwrap_or_default();
        let sig: Signature = key.sign(&bytes);
        value["signatures"] = json!({
            self.did.as_str(): { key_id.as_str(): b64::encode(&sig.to_bytes()) }
        });
        let canonical = canonical::to_canonical_bytes(&value).unwrap_or_default();
        SignedOp {
            hash: OpHash::of_canonical_bytes(&canonical),
            signer: key.verifying_key(),
            signature: sig,
            op: self.clone(),
            value,
        }
    }
}

/// The signature key ID of an account key: `ed25519:` + its Multikey (`z6Mk…`).
pub fn key_id_for(key: &VerifyingKey) -> KeyId {
    // A Multikey is printable ASCII, so this cannot fail.
    KeyId::ed25519(&did::encode_multikey(key)).unwrap_or_else(|_| unreachable!())
}

/// A parsed, well-formed signed op. Its signature has not necessarily been checked against
/// the log: only [`verify_log`] does that.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedOp {
    /// The typed content.
    pub op: Operation,
    /// The key named by its one signature.
    pub signer: VerifyingKey,
    /// The signature.
    pub signature: Signature,
    /// Hash of the canonical bytes (signatures included).
    pub hash: OpHash,
    /// The wire object exactly as signed.
    pub value: Value,
}

impl SignedOp {
    /// Parses JSON bytes strictly (duplicate keys, floats and unsafe integers refused).
    pub fn from_json(bytes: &[u8]) -> Result<Self, LogError> {
        let value = canonical::parse_strict(bytes)
            .map_err(|source| LogError::Encoding { index: 0, source })?;
        Self::from_value(value)
    }

    /// Parses a wire object (see the module docs, phase 1).
    pub fn from_value(value: Value) -> Result<Self, LogError> {
        parse_op(value, 0, &mut KeyMemo::default())
    }

    /// The canonical JSON bytes (what is hashed).
    pub fn canonical_bytes(&self) -> Vec<u8> {
        canonical::to_canonical_bytes(&self.value).unwrap_or_default()
    }

    /// The bytes its signature covers (§4).
    fn signing_message(&self) -> Vec<u8> {
        signed::signing_bytes(&self.value).unwrap_or_default()
    }
}

fn malformed(index: usize, reason: impl Into<String>) -> LogError {
    LogError::Malformed {
        index,
        reason: reason.into(),
    }
}

fn non_canonical(index: usize, field: &str, error: impl std::fmt::Display) -> LogError {
    LogError::NonCanonical {
        index,
        reason: format!("{field}: {error}"),
    }
}

/// Multikeys already decoded while parsing one log: a log names the same DID and signer in
/// almost every op, and strict decoding (point decompression and the canonical-encoding
/// check) is the most expensive part of parsing.
#[derive(Debug, Default)]
struct KeyMemo(HashMap<String, VerifyingKey>);

impl KeyMemo {
    fn decode(&mut self, multikey: &str) -> Result<VerifyingKey, crate::DidError> {
        if let Some(k) = self.0.get(multikey) {
            return Ok(*k);
        }
        let k = did::decode_multikey(multikey)?;
        self.0.insert(multikey.to_owned(), k);
        Ok(k)
    }

    fn did(&mut self, text: &str) -> Result<Did, crate::DidError> {
        match text.strip_prefix("did:key:") {
            Some(mk) if self.0.contains_key(mk) => Ok(Did::from_checked(text, self.0[mk])),
            _ => {
                let d = Did::parse(text)?;
                self.0
                    .insert(d.fingerprint().to_owned(), *d.verifying_key());
                Ok(d)
            }
        }
    }
}

/// §5.3 phase 1: one op on its own, in the order the spec lists the checks, so that every
/// error names the first rule the op breaks. `index` is the op's input position.
fn parse_op(value: Value, index: usize, memo: &mut KeyMemo) -> Result<SignedOp, LogError> {
    let canonical = canonical_within_cap(&value, index)?;
    let obj = value
        .as_object()
        .ok_or_else(|| malformed(index, "op must be a JSON object"))?;
    let action_name = check_action_and_members(obj, index)?;
    let op = parse_operation(obj, action_name, index, memo)?;
    let (signer, signature) = parse_signature(obj, &op.did, index, memo)?;
    Ok(SignedOp {
        hash: OpHash::of_canonical_bytes(&canonical),
        signer,
        signature,
        op,
        value,
    })
}

/// §5.3 phase 1, steps 1–2: strict JSON numbers (§2.1), then the canonical size cap (§5.2).
/// Returns the canonical bytes, which are what the op hash covers.
fn canonical_within_cap(value: &Value, index: usize) -> Result<Vec<u8>, LogError> {
    canonical::check_numbers(value).map_err(|source| LogError::Encoding { index, source })?;
    let canonical = canonical::to_canonical_bytes(value)
        .map_err(|source| LogError::Encoding { index, source })?;
    if canonical.len() > MAX_OP_BYTES {
        return Err(LogError::OpTooLarge {
            index,
            size: canonical.len(),
        });
    }
    Ok(canonical)
}

/// The members every op carries (§5.1), whatever its action.
const COMMON_MEMBERS: &[&str] = &["did", "seq", "prev", "created_at", "action", "signatures"];

/// The action fields of §5.1's table, or `None` for an unknown action.
fn action_members(action: &str) -> Option<&'static [&'static str]> {
    Some(match action {
        "genesis" => &["update_key", "next_key", "user_id", "servers"],
        "claim" | "release" => &["user_id"],
        "move" => &["servers"],
        "rotate" => &["update_key", "next_key"],
        "add_device" => &["device_id", "device_keys"],
        "revoke_device" => &["device_id"],
        "deactivate" => &[],
        _ => return None,
    })
}

/// §5.3 phase 1, step 3: the action is known (`unknown_action`) and every member is allowed
/// for it (`unknown_field`). Returns the action's name.
fn check_action_and_members(obj: &Map<String, Value>, index: usize) -> Result<&str, LogError> {
    let action = get_str(obj, "action", index)?;
    let allowed = action_members(action).ok_or_else(|| LogError::UnknownAction {
        index,
        action: action.to_owned(),
    })?;
    let unknown = obj
        .keys()
        .find(|k| !COMMON_MEMBERS.contains(&k.as_str()) && !allowed.contains(&k.as_str()));
    match unknown {
        Some(field) => Err(LogError::UnknownField {
            index,
            action: action.to_owned(),
            field: field.clone(),
        }),
        None => Ok(action),
    }
}

/// §5.3 phase 1, step 4: the op's members (§5.1) decoded into their types — canonical
/// encodings (`non_canonical`), shapes (`malformed`) and list caps (`too_many`).
fn parse_operation(
    obj: &Map<String, Value>,
    action_name: &str,
    index: usize,
    memo: &mut KeyMemo,
) -> Result<Operation, LogError> {
    let did = memo
        .did(get_str(obj, "did", index)?)
        .map_err(|e| non_canonical(index, "did", e))?;
    let seq = obj
        .get("seq")
        .and_then(Value::as_u64)
        .ok_or_else(|| malformed(index, "seq must be a non-negative integer"))?;
    let prev = match obj.get("prev") {
        None => None,
        Some(Value::String(s)) => {
            Some(OpHash::parse(s).map_err(|e| non_canonical(index, "prev", e))?)
        }
        Some(_) => return Err(malformed(index, "prev must be a string")),
    };
    let created_at = obj
        .get("created_at")
        .and_then(Value::as_u64)
        .ok_or_else(|| malformed(index, "created_at must be a non-negative integer (ms)"))?;
    Ok(Operation {
        did,
        seq,
        prev,
        created_at,
        action: parse_action(obj, action_name, index, memo)?,
    })
}

/// §5.3 phase 1, step 4 for the action fields of §5.1's table. `action_name` is known: step 3
/// refused every other.
fn parse_action(
    obj: &Map<String, Value>,
    action_name: &str,
    index: usize,
    memo: &mut KeyMemo,
) -> Result<Action, LogError> {
    Ok(match action_name {
        "genesis" => Action::Genesis {
            update_key: get_key(obj, "update_key", index, memo)?,
            next_key: get_commitment(obj, index)?,
            user_id: get_user_id(obj, index)?,
            servers: get_servers(obj, index)?,
        },
        "claim" => Action::Claim {
            user_id: get_user_id(obj, index)?,
        },
        "release" => Action::Release {
            user_id: get_user_id(obj, index)?,
        },
        "move" => Action::Move {
            servers: get_servers(obj, index)?,
        },
        "rotate" => Action::Rotate {
            update_key: get_key(obj, "update_key", index, memo)?,
            next_key: get_commitment(obj, index)?,
        },
        "add_device" => Action::AddDevice {
            device_id: get_device_id(obj, index)?,
            keys: get_device_keys(obj, index)?,
        },
        "revoke_device" => Action::RevokeDevice {
            device_id: get_device_id(obj, index)?,
        },
        _ => Action::Deactivate,
    })
}

/// §5.3 phase 1, step 5 (with step 4 for the key ID and signature encodings): exactly one
/// signature, under the op's DID. Extra signatures would let anyone mint a second op with the
/// same content and a different hash, faking a fork (§5.1).
fn parse_signature(
    obj: &Map<String, Value>,
    did: &Did,
    index: usize,
    memo: &mut KeyMemo,
) -> Result<(VerifyingKey, Signature), LogError> {
    let (key_id_text, sig_value) = the_one_signature(obj, did, index)?;
    let key_id = KeyId::parse(key_id_text).map_err(|e| malformed(index, e.to_string()))?;
    if key_id.algorithm() != "ed25519" {
        return Err(malformed(index, "signature key must be ed25519"));
    }
    let signer = memo
        .decode(key_id.version())
        .map_err(|e| non_canonical(index, "signature key ID", e))?;
    let sig_text = sig_value
        .as_str()
        .ok_or_else(|| malformed(index, "signature must be a string"))?;
    let sig_bytes =
        b64::decode_array::<64>(sig_text).map_err(|e| non_canonical(index, "signature", e))?;
    Ok((signer, Signature::from_bytes(&sig_bytes)))
}

/// The shape half of step 5: `signatures` is `{DID: {key ID: signature}}` with one entry at
/// each level. Returns the key ID and the signature value.
fn the_one_signature<'a>(
    obj: &'a Map<String, Value>,
    did: &Did,
    index: usize,
) -> Result<(&'a String, &'a Value), LogError> {
    let sigs = obj
        .get("signatures")
        .and_then(Value::as_object)
        .ok_or_else(|| malformed(index, "signatures must be an object"))?;
    if sigs.len() != 1 || !sigs.contains_key(did.as_str()) {
        return Err(malformed(
            index,
            "signatures must hold exactly one entry, under the op's DID",
        ));
    }
    let by_did = sigs
        .get(did.as_str())
        .and_then(Value::as_object)
        .ok_or_else(|| malformed(index, "signatures[did] must be an object"))?;
    if by_did.len() != 1 {
        return Err(malformed(index, "an op carries exactly one signature"));
    }
    by_did
        .iter()
        .next()
        .ok_or_else(|| malformed(index, "no signature"))
}

/// §5.2's list caps: `count` items where at most `limit` are allowed is `too_many`.
fn within_cap(
    index: usize,
    what: &'static str,
    count: usize,
    limit: usize,
) -> Result<(), LogError> {
    if count > limit {
        return Err(LogError::TooMany {
            index,
            what,
            count,
            limit,
        });
    }
    Ok(())
}

fn get_str<'a>(
    obj: &'a Map<String, Value>,
    field: &str,
    index: usize,
) -> Result<&'a str, LogError> {
    obj.get(field)
        .and_then(Value::as_str)
        .ok_or_else(|| malformed(index, format!("{field} must be a string")))
}

fn get_key(
    obj: &Map<String, Value>,
    field: &str,
    index: usize,
    memo: &mut KeyMemo,
) -> Result<VerifyingKey, LogError> {
    memo.decode(get_str(obj, field, index)?)
        .map_err(|e| non_canonical(index, field, e))
}

fn get_commitment(obj: &Map<String, Value>, index: usize) -> Result<KeyCommitment, LogError> {
    KeyCommitment::parse(get_str(obj, "next_key", index)?)
        .map_err(|e| non_canonical(index, "next_key", e))
}

fn get_user_id(obj: &Map<String, Value>, index: usize) -> Result<UserId, LogError> {
    UserId::parse(get_str(obj, "user_id", index)?)
        .map_err(|e| malformed(index, format!("user_id: {e}")))
}

fn get_device_id(obj: &Map<String, Value>, index: usize) -> Result<DeviceId, LogError> {
    DeviceId::parse(get_str(obj, "device_id", index)?)
        .map_err(|e| malformed(index, format!("device_id: {e}")))
}

fn get_servers(obj: &Map<String, Value>, index: usize) -> Result<Vec<ServerName>, LogError> {
    let list = obj
        .get("servers")
        .and_then(Value::as_array)
        .ok_or_else(|| malformed(index, "servers must be an array"))?;
    if list.is_empty() {
        return Err(malformed(index, "servers must name at least one server"));
    }
    within_cap(index, "servers", list.len(), MAX_SERVERS)?;
    let mut out: Vec<ServerName> = Vec::with_capacity(list.len());
    for v in list {
        let s = v
            .as_str()
            .ok_or_else(|| malformed(index, "servers must be strings"))?;
        let name = ServerName::parse(s).map_err(|e| malformed(index, format!("servers: {e}")))?;
        if out.contains(&name) {
            return Err(malformed(index, format!("servers lists {name} twice")));
        }
        out.push(name);
    }
    Ok(out)
}

fn get_device_keys(obj: &Map<String, Value>, index: usize) -> Result<DeviceKeys, LogError> {
    let keys = obj
        .get("device_keys")
        .and_then(Value::as_object)
        .ok_or_else(|| malformed(index, "device_keys must be an object"))?;
    if let Some(k) = keys.keys().find(|k| *k != "ed25519" && *k != "curve25519") {
        return Err(LogError::UnknownField {
            index,
            action: "add_device".into(),
            field: format!("device_keys.{k}"),
        });
    }
    let get = |name: &str| -> Result<[u8; 32], LogError> {
        let text = keys
            .get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| malformed(index, format!("device_keys.{name} must be a string")))?;
        b64::decode_array::<32>(text)
            .map_err(|e| non_canonical(index, &format!("device_keys.{name}"), e))
    };
    // Members in §5.1's order; each key must be the one spelling of a usable key.
    let ed25519 = get("ed25519")?;
    did::ed25519_key_strict(&ed25519)
        .map_err(|e| non_canonical(index, "device_keys.ed25519", e))?;
    let curve25519 = get("curve25519")?;
    if !is_canonical_x25519(&curve25519) {
        return Err(non_canonical(
            index,
            "device_keys.curve25519",
            "not a reduced Curve25519 u-coordinate (must be below 2^255 - 19)",
        ));
    }
    Ok(DeviceKeys {
        ed25519,
        curve25519,
    })
}

/// True when 32 little-endian bytes are below p = 2^255 − 19: X25519 reduces every
/// u-coordinate mod p (and ignores the top bit), so only these are one spelling per key.
fn is_canonical_x25519(u: &[u8; 32]) -> bool {
    if u[31] & 0x80 != 0 {
        return false;
    }
    // p is 0x7fff…ffed: u >= p only when u is 0x7fff…ff followed by a low byte >= 0xed.
    !(u[31] == 0x7f && u[1..31].iter().all(|&b| b == 0xff) && u[0] >= 0xed)
}

/// The account as its verified log describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountState {
    /// The account.
    pub did: Did,
    /// The key that signs the account's operations now.
    pub update_key: VerifyingKey,
    /// Commitment to the key that may rotate (and recover) next.
    pub next_key: KeyCommitment,
    /// Claimed user IDs, in claim order.
    pub user_ids: Vec<UserId>,
    /// Servers, primary first.
    pub servers: Vec<ServerName>,
    /// Signed-in devices.
    pub devices: BTreeMap<DeviceId, DeviceKeys>,
    /// Hash of the last op of the chain.
    pub head: OpHash,
    /// Its seq.
    pub seq: u64,
    /// `created_at` of the genesis op.
    pub created_at: Millis,
    /// `created_at` of the head.
    pub updated_at: Millis,
    /// True once a deactivate is the head.
    pub deactivated: bool,
}

impl AccountState {
    /// The primary server, if any.
    pub fn primary(&self) -> Option<&ServerName> {
        self.servers.first()
    }
}

/// A verified log: the chosen chain and what it superseded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedLog {
    /// The account state at the head.
    pub state: AccountState,
    /// The chain from genesis to head.
    pub chain: Vec<SignedOp>,
    /// Valid ops that a recovery rotate superseded (kept as evidence).
    pub superseded: Vec<SignedOp>,
}

impl VerifiedLog {
    /// The chain as wire objects, in order.
    pub fn chain_values(&self) -> Vec<Value> {
        self.chain.iter().map(|o| o.value.clone()).collect()
    }

    /// True when `hash` is on the chain.
    pub fn contains(&self, hash: &OpHash) -> bool {
        self.chain.iter().any(|o| &o.hash == hash)
    }
}

/// Verifies wire objects as one log of `did` (if given) at time `now`.
pub fn verify_values(
    values: &[Value],
    expected_did: Option<&Did>,
    now: Millis,
) -> Result<VerifiedLog, LogError> {
    if values.len() > MAX_LOG_OPS {
        return Err(LogError::LogTooLarge {
            count: values.len(),
        });
    }
    let mut ops = Vec::with_capacity(values.len());
    let mut memo = KeyMemo::default();
    for (i, v) in values.iter().enumerate() {
        ops.push(parse_op(v.clone(), i, &mut memo)?);
    }
    verify_log(&ops, expected_did, now)
}

/// Verifies parsed ops as one log (phases 2–5 of the module docs). Ops may come in any order
/// and may repeat; errors name ops by their position in `ops`.
pub fn verify_log(
    ops: &[SignedOp],
    expected_did: Option<&Did>,
    now: Millis,
) -> Result<VerifiedLog, LogError> {
    verify_log_with(ops, expected_did, now, SignatureCheck::Batch)
}

/// How phase 3 checks signatures. Both accept exactly the same logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SignatureCheck {
    /// One batch verification, falling back to single checks to name a bad op (default).
    #[default]
    Batch,
    /// `verify_strict` for each op.
    Single,
}

/// [`verify_log`] with an explicit signature-checking strategy. Runs §5.3's phases 2–5 in
/// order; the first error found is the answer.
pub fn verify_log_with(
    ops: &[SignedOp],
    expected_did: Option<&Did>,
    now: Millis,
    check: SignatureCheck,
) -> Result<VerifiedLog, LogError> {
    let did = check_set(ops, expected_did, now)?;
    let links = link(ops)?;
    let order = check_signers(ops, &did, &links)?;
    verify_signatures(ops, &order, check)?;
    let (chain, superseded) = choose_chain(ops, &links)?;
    let state = replay(ops, &chain)?;
    Ok(VerifiedLog {
        state,
        chain: chain.iter().map(|&i| ops[i].clone()).collect(),
        superseded: superseded.iter().map(|&i| ops[i].clone()).collect(),
    })
}

/// §5.3 phase 2, the set as a whole (`empty`, `log_too_large`), then each op in input order:
/// the expected (or the first op's) DID — `wrong_did`; not from the future — `from_future`;
/// genesis ⇔ seq 0 ⇔ no prev — `bad_genesis`. Returns the log's DID.
fn check_set(ops: &[SignedOp], expected_did: Option<&Did>, now: Millis) -> Result<Did, LogError> {
    if ops.is_empty() {
        return Err(LogError::Empty);
    }
    if ops.len() > MAX_LOG_OPS {
        return Err(LogError::LogTooLarge { count: ops.len() });
    }
    let did = expected_did.unwrap_or(&ops[0].op.did).clone();
    for (i, o) in ops.iter().enumerate() {
        if o.op.did != did {
            return Err(LogError::WrongDid {
                index: i,
                expected: did.to_string(),
                found: o.op.did.to_string(),
            });
        }
        if o.op.created_at > now.saturating_add(MAX_FUTURE_SKEW_MS) {
            return Err(LogError::FromFuture {
                index: i,
                now,
                found: o.op.created_at,
            });
        }
        let is_genesis = matches!(o.op.action, Action::Genesis { .. });
        if is_genesis != (o.op.seq == 0) || is_genesis != o.op.prev.is_none() {
            return Err(LogError::BadGenesis { index: i });
        }
    }
    Ok(did)
}

/// The log as a tree of distinct ops (by input position): the geneses and each op's
/// children, both sorted by hash so that every walk is deterministic.
struct Links {
    roots: Vec<usize>,
    children: HashMap<usize, Vec<usize>>,
}

impl Links {
    fn kids(&self, i: usize) -> &[usize] {
        self.children.get(&i).map(Vec::as_slice).unwrap_or(&[])
    }
}

/// §5.3 phase 2, the links: ops with equal hashes are one op (the first position stands for
/// it); each `prev` names a held op ([`check_link`]). Ops are checked in input order.
fn link(ops: &[SignedOp]) -> Result<Links, LogError> {
    let mut by_hash: HashMap<OpHash, usize> = HashMap::with_capacity(ops.len());
    let mut distinct: Vec<usize> = Vec::with_capacity(ops.len());
    for (i, o) in ops.iter().enumerate() {
        if let std::collections::hash_map::Entry::Vacant(e) = by_hash.entry(o.hash) {
            e.insert(i);
            distinct.push(i);
        }
    }
    let mut links = Links {
        roots: Vec::new(),
        children: HashMap::new(),
    };
    for i in distinct {
        match &ops[i].op.prev {
            None => links.roots.push(i),
            Some(prev) => {
                let &p = by_hash.get(prev).ok_or_else(|| LogError::UnknownPrev {
                    index: i,
                    prev: prev.to_string(),
                })?;
                check_link(&ops[p], &ops[i], i)?;
                links.children.entry(p).or_default().push(i);
            }
        }
    }
    // Every op either is a genesis or names a held parent, and hashes admit no cycles, so
    // at least one root exists here.
    for v in links.children.values_mut() {
        v.sort_by_key(|&i| ops[i].hash);
    }
    links.roots.sort_by_key(|&i| ops[i].hash);
    Ok(links)
}

/// §5.3 phase 2, one link: the parent's `seq` is one less — `seq_gap`; its `created_at` is not
/// later — `time_reversed`; it is not a `deactivate` — `after_deactivate`.
fn check_link(parent: &SignedOp, o: &SignedOp, index: usize) -> Result<(), LogError> {
    if o.op.seq != parent.op.seq + 1 {
        return Err(LogError::SeqGap {
            index,
            parent: parent.op.seq,
            found: o.op.seq,
        });
    }
    if o.op.created_at < parent.op.created_at {
        return Err(LogError::TimeReversed {
            index,
            parent: parent.op.created_at,
            found: o.op.created_at,
        });
    }
    if matches!(parent.op.action, Action::Deactivate) {
        return Err(LogError::AfterDeactivate { index });
    }
    Ok(())
}

/// §5.3 phase 3, the required signers: walks the tree depth first from each genesis (children
/// in hash order), carrying the key event (genesis or rotate) in force. Every op is checked;
/// the error reported is the one of the op first in input order, so that the answer does not
/// depend on the walk. Returns the ops in walk order.
fn check_signers(ops: &[SignedOp], did: &Did, links: &Links) -> Result<Vec<usize>, LogError> {
    let mut order: Vec<usize> = Vec::with_capacity(ops.len());
    let mut first_error: Option<LogError> = None;
    let mut stack: Vec<(usize, Option<usize>)> =
        links.roots.iter().rev().map(|&r| (r, None)).collect();
    while let Some((i, parent_event)) = stack.pop() {
        let (event, error) = check_signer(ops, did, i, parent_event);
        if let Some(e) = error
            && first_error.as_ref().is_none_or(|f| f.index() > e.index())
        {
            first_error = Some(e);
        }
        order.push(i);
        for &c in links.kids(i).iter().rev() {
            stack.push((c, Some(event)));
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(order),
    }
}

/// §5.3 phase 3 for op `i`, given the key event in force above it: a genesis's update key is
/// the DID key — `genesis_key_mismatch`; a rotate's matches the commitment in force —
/// `commitment_mismatch`; the signer is the one §5.1's table names — `wrong_signer`.
/// Returns the key event in force for the op's children, and the op's error if any.
fn check_signer(
    ops: &[SignedOp],
    did: &Did,
    i: usize,
    parent_event: Option<usize>,
) -> (usize, Option<LogError>) {
    let o = &ops[i];
    match &o.op.action {
        Action::Genesis { update_key, .. } => {
            if update_key != did.verifying_key() {
                return (i, Some(LogError::GenesisKeyMismatch { index: i }));
            }
            (i, expect_signer(o, i, &[*update_key]).err())
        }
        Action::Rotate { update_key, .. } => {
            let commitment = parent_event.map(|e| commitment_of(&ops[e]));
            if commitment.is_none_or(|c| !c.matches(update_key)) {
                return (i, Some(LogError::CommitmentMismatch { index: i }));
            }
            (i, expect_signer(o, i, &[*update_key]).err())
        }
        Action::Deactivate => {
            // The update key, or the committed next key (§12).
            let e = parent_event.unwrap_or(i);
            let committed_signer = KeyCommitment::to_key(&o.signer) == commitment_of(&ops[e]);
            if committed_signer {
                return (e, None);
            }
            (e, expect_signer(o, i, &[update_key_of(&ops[e])]).err())
        }
        _ => {
            let e = parent_event.unwrap_or(i);
            (e, expect_signer(o, i, &[update_key_of(&ops[e])]).err())
        }
    }
}

fn commitment_of(event: &SignedOp) -> KeyCommitment {
    match &event.op.action {
        Action::Genesis { next_key, .. } | Action::Rotate { next_key, .. } => *next_key,
        _ => unreachable!("key events are genesis or rotate"),
    }
}

fn update_key_of(event: &SignedOp) -> VerifyingKey {
    match &event.op.action {
        Action::Genesis { update_key, .. } | Action::Rotate { update_key, .. } => *update_key,
        _ => unreachable!("key events are genesis or rotate"),
    }
}

fn expect_signer(o: &SignedOp, index: usize, allowed: &[VerifyingKey]) -> Result<(), LogError> {
    if allowed.contains(&o.signer) {
        Ok(())
    } else {
        Err(LogError::WrongSigner {
            index,
            expected: allowed
                .iter()
                .map(did::encode_multikey)
                .collect::<Vec<_>>()
                .join(" or "),
        })
    }
}

/// §5.3 phase 3, the signatures (§4) — `bad_signature`: every op's in one batch; on failure,
/// one by one to name the bad op first in input order. Weak keys never reach here (the multikey parser refuses them), which is
/// what makes the batch's missing weak-key check safe.
fn verify_signatures(
    ops: &[SignedOp],
    order: &[usize],
    check: SignatureCheck,
) -> Result<(), LogError> {
    let messages: Vec<Vec<u8>> = order.iter().map(|&i| ops[i].signing_message()).collect();
    let refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
    let sigs: Vec<Signature> = order.iter().map(|&i| ops[i].signature).collect();
    let keys: Vec<VerifyingKey> = order.iter().map(|&i| ops[i].signer).collect();
    // The batch equation does not refuse small-order R points the way verify_strict does;
    // check that separately so batch and single verification accept exactly the same logs.
    if check == SignatureCheck::Batch
        && ed25519_dalek::verify_batch(&refs, &sigs, &keys).is_ok()
        && sigs.iter().all(r_is_not_small_order)
    {
        return Ok(());
    }
    // Name the bad op first in input order, whatever order the walk visited them in.
    let mut by_input: Vec<usize> = (0..order.len()).collect();
    by_input.sort_by_key(|&n| order[n]);
    for n in by_input {
        if keys[n].verify_strict(&messages[n], &sigs[n]).is_err() {
            return Err(LogError::BadSignature { index: order[n] });
        }
    }
    Ok(())
}

fn r_is_not_small_order(sig: &Signature) -> bool {
    curve25519_dalek::edwards::CompressedEdwardsY(*sig.r_bytes())
        .decompress()
        .is_some_and(|r| !r.is_small_order())
}

/// §5.3 phase 4, forks epoch by epoch, starting with the epoch(s) of the genesis op(s).
/// Returns the chain and the superseded ops (input positions).
fn choose_chain(ops: &[SignedOp], links: &Links) -> Result<(Vec<usize>, Vec<usize>), LogError> {
    let mut chain: Vec<usize> = Vec::new();
    let mut superseded: Vec<usize> = Vec::new();
    // The epoch's starting points: the geneses at first, then the accepted rotate.
    let mut starts: Vec<usize> = links.roots.clone();
    loop {
        let mut epoch = collect_epoch(ops, links, &starts);
        match epoch.rotates[..] {
            [] => break,
            [rotate] => {
                // Recovery: the rotate's path is the epoch's final content; earlier epochs
                // are final from here on.
                let path = path_to_rotate(ops, &epoch.members, &starts, rotate);
                superseded.extend(epoch.members.iter().filter(|m| !path.contains(m)));
                chain.extend_from_slice(&path);
                starts = vec![rotate];
            }
            _ => {
                // Two rotates for one commitment.
                epoch.rotates.sort_by_key(|&i| ops[i].hash);
                return Err(equivocation(ops, epoch.rotates[0], epoch.rotates[1]));
            }
        }
    }
    follow_single_line(ops, links, &starts, &mut chain)?;
    Ok((chain, superseded))
}

/// One key epoch (§5.1): the non-rotate ops descending from its start(s), and the rotates
/// whose `prev` is one of them.
struct Epoch {
    members: Vec<usize>,
    rotates: Vec<usize>,
}

/// §5.3 phase 4, first step: collects the epoch that begins at `starts`.
fn collect_epoch(ops: &[SignedOp], links: &Links, starts: &[usize]) -> Epoch {
    let mut epoch = Epoch {
        members: Vec::new(),
        rotates: Vec::new(),
    };
    let mut stack: Vec<usize> = starts.to_vec();
    while let Some(i) = stack.pop() {
        epoch.members.push(i);
        for &c in links.kids(i) {
            if matches!(ops[c].op.action, Action::Rotate { .. }) {
                epoch.rotates.push(c);
            } else {
                stack.push(c);
            }
        }
    }
    epoch
}

/// §5.3 phase 4, exactly one rotate: the path from the epoch's start to the rotate's `prev`,
/// in chain order. Every other member of the epoch is superseded.
fn path_to_rotate(
    ops: &[SignedOp],
    members: &[usize],
    starts: &[usize],
    rotate: usize,
) -> Vec<usize> {
    let mut path = Vec::new();
    let mut cur = rotate;
    while let Some(prev) = &ops[cur].op.prev {
        let parent = members
            .iter()
            .copied()
            .find(|&m| &ops[m].hash == prev)
            .unwrap_or_else(|| unreachable!("a rotate's parent is in its epoch"));
        path.push(parent);
        if starts.contains(&parent) {
            break;
        }
        cur = parent;
    }
    path.reverse();
    path
}

/// §5.3 phase 4, no rotate: the last epoch must be a single line from a single start. Two
/// starts (geneses) or two ops with the same `prev` are equivocation.
fn follow_single_line(
    ops: &[SignedOp],
    links: &Links,
    starts: &[usize],
    chain: &mut Vec<usize>,
) -> Result<(), LogError> {
    if starts.len() > 1 {
        return Err(equivocation(ops, starts[0], starts[1]));
    }
    let mut cur = starts[0];
    chain.push(cur);
    loop {
        match links.kids(cur) {
            [] => return Ok(()),
            [next] => {
                cur = *next;
                chain.push(cur);
            }
            [a, b, ..] => return Err(equivocation(ops, *a, *b)),
        }
    }
}

/// Equivocation evidence: both conflicting ops (§5.3 phase 4).
fn equivocation(ops: &[SignedOp], a: usize, b: usize) -> LogError {
    LogError::Equivocation {
        a: Box::new(ops[a].clone()),
        b: Box::new(ops[b].clone()),
    }
}

/// §5.3 phase 5: replays the chosen chain from its genesis into the account state, checking
/// what each action means ([`AccountState::apply`]).
fn replay(ops: &[SignedOp], chain: &[usize]) -> Result<AccountState, LogError> {
    let mut state = AccountState::at_genesis(&ops[chain[0]]);
    for &i in &chain[1..] {
        let o = &ops[i];
        state.apply(&o.op.action, i)?;
        state.head = o.hash;
        state.seq = o.op.seq;
        state.updated_at = o.op.created_at;
    }
    Ok(state)
}

/// §5.3 phase 5, one action at a time.
impl AccountState {
    /// The state a genesis op creates.
    fn at_genesis(genesis: &SignedOp) -> Self {
        let Action::Genesis {
            update_key,
            next_key,
            user_id,
            servers,
        } = &genesis.op.action
        else {
            unreachable!("every chain starts at a genesis");
        };
        AccountState {
            did: genesis.op.did.clone(),
            update_key: *update_key,
            next_key: *next_key,
            user_ids: vec![user_id.clone()],
            servers: servers.clone(),
            devices: BTreeMap::new(),
            head: genesis.hash,
            seq: 0,
            created_at: genesis.op.created_at,
            updated_at: genesis.op.created_at,
            deactivated: false,
        }
    }

    /// Applies the action of the op at input position `index` (not a genesis: phase 2
    /// allows a genesis only as a root).
    fn apply(&mut self, action: &Action, index: usize) -> Result<(), LogError> {
        match action {
            Action::Genesis { .. } => return Err(LogError::BadGenesis { index }),
            Action::Claim { user_id } => self.claim(user_id, index)?,
            Action::Release { user_id } => self.release(user_id, index)?,
            Action::Move { servers } => self.servers = servers.clone(),
            Action::Rotate {
                update_key,
                next_key,
            } => {
                self.update_key = *update_key;
                self.next_key = *next_key;
            }
            Action::AddDevice { device_id, keys } => self.add_device(device_id, keys, index)?,
            Action::RevokeDevice { device_id } => self.revoke_device(device_id, index)?,
            Action::Deactivate => self.deactivated = true,
        }
        Ok(())
    }

    /// `claim` of a claimed user ID — `already_claimed`; over the cap — `too_many`.
    fn claim(&mut self, user_id: &UserId, index: usize) -> Result<(), LogError> {
        if self.user_ids.contains(user_id) {
            return Err(LogError::AlreadyClaimed {
                index,
                user_id: user_id.to_string(),
            });
        }
        within_cap(
            index,
            "claimed user IDs",
            self.user_ids.len() + 1,
            MAX_USER_IDS,
        )?;
        self.user_ids.push(user_id.clone());
        Ok(())
    }

    /// `release` of an unclaimed user ID — `not_claimed`.
    fn release(&mut self, user_id: &UserId, index: usize) -> Result<(), LogError> {
        let pos = self
            .user_ids
            .iter()
            .position(|u| u == user_id)
            .ok_or_else(|| LogError::NotClaimed {
                index,
                user_id: user_id.to_string(),
            })?;
        self.user_ids.remove(pos);
        Ok(())
    }

    /// `add_device` of a present device — `device_exists`; over the cap — `too_many`.
    fn add_device(
        &mut self,
        device_id: &DeviceId,
        keys: &DeviceKeys,
        index: usize,
    ) -> Result<(), LogError> {
        if self.devices.contains_key(device_id) {
            return Err(LogError::DeviceExists {
                index,
                device_id: device_id.to_string(),
            });
        }
        within_cap(index, "devices", self.devices.len() + 1, MAX_DEVICES)?;
        self.devices.insert(device_id.clone(), *keys);
        Ok(())
    }

    /// `revoke_device` of an absent device — `unknown_device`.
    fn revoke_device(&mut self, device_id: &DeviceId, index: usize) -> Result<(), LogError> {
        if self.devices.remove(device_id).is_none() {
            return Err(LogError::UnknownDevice {
                index,
                device_id: device_id.to_string(),
            });
        }
        Ok(())
    }
}

/// Builds the next op on top of `state` (seq and prev filled in).
pub fn next_op(state: &AccountState, created_at: Millis, action: Action) -> Operation {
    Operation {
        did: state.did.clone(),
        seq: state.seq + 1,
        prev: Some(state.head),
        created_at,
        action,
    }
}

/// Builds a genesis op for the account key `key`.
pub fn genesis_op(
    key: &VerifyingKey,
    next_key: KeyCommitment,
    user_id: UserId,
    servers: Vec<ServerName>,
    created_at: Millis,
) -> Result<Operation, crate::DidError> {
    Ok(Operation {
        did: Did::from_key(key)?,
        seq: 0,
        prev: None,
        created_at,
        action: Action::Genesis {
            update_key: *key,
            next_key,
            user_id,
            servers,
        },
    })
}

/// The error index is relative to the input: shift it when a caller verified a sub-slice.
pub fn reindex(err: LogError, offset: usize) -> LogError {
    match err.index() {
        Some(i) => err.with_index(i + offset),
        None => err,
    }
}
