//! The one error enum of the resolver, and its wire shape.
//!
//! Each variant is an answer a caller can act on: the name does not exist, exists but is not
//! bound, the owner's key equivocated (with both signed ops), someone served invalid data, or
//! nobody could be reached. Transport details stay in the message.

use roam_identity_core::log::SignedOp;
use roam_identity_core::{Did, UserId};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Why a resolution failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// The authoritative server says the name or DID does not exist.
    #[error("{subject} was not found: {detail}")]
    NotFound { subject: String, detail: String },
    /// The account exists but the user ID is not bound to it both ways.
    #[error("{user_id} is not bound to {did}: {reason}")]
    Unbound {
        user_id: UserId,
        /// Boxed: a `Did` carries its decoded key, and this keeps every `Result` small.
        did: Box<Did>,
        reason: String,
    },
    /// Two validly signed ops conflict and no recovery rotate settles it. Both are evidence.
    #[error("equivocation: ops {} and {} conflict and no recovery rotate settles it", a.hash, b.hash)]
    Equivocation { a: Box<SignedOp>, b: Box<SignedOp> },
    /// A source served data that does not verify.
    #[error("invalid: {0}")]
    Invalid(String),
    /// No source could be reached (origin, its servers, LAN peers); what was tried is listed.
    #[error("{subject} could not be resolved: nothing reachable ({})", tried.join("; "))]
    Unreachable { subject: String, tried: Vec<String> },
}

impl ResolveError {
    /// The stable error class of DESIGN.md (`not_found`, `unbound`, …).
    pub fn class(&self) -> &'static str {
        match self {
            ResolveError::NotFound { .. } => "not_found",
            ResolveError::Unbound { .. } => "unbound",
            ResolveError::Equivocation { .. } => "equivocation",
            ResolveError::Invalid(_) => "invalid",
            ResolveError::Unreachable { .. } => "unreachable",
        }
    }

    /// The wire form.
    pub fn to_wire(&self) -> ResolveErrorWire {
        let evidence = match self {
            ResolveError::Equivocation { a, b } => Some(EquivocationEvidence {
                a: a.value.clone(),
                b: b.value.clone(),
            }),
            _ => None,
        };
        ResolveErrorWire {
            error: self.class().to_owned(),
            message: self.to_string(),
            evidence,
        }
    }
}

/// A resolution error on the wire: `{"error": "equivocation", "message": …, "evidence": {a, b}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResolveErrorWire {
    /// The class, as [`ResolveError::class`].
    pub error: String,
    /// Human-readable text.
    pub message: String,
    /// For equivocation: both signed ops, exactly as signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<EquivocationEvidence>,
}

/// The two conflicting signed ops.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EquivocationEvidence {
    /// One op, as signed.
    pub a: Value,
    /// The other op, as signed.
    pub b: Value,
}
