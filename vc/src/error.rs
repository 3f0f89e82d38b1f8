//! The one error type of the crate, with the class names of spec/protocol.md §14.

use roam_identity_core::DidError;

/// Why a credential or a did:web document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VcError {
    /// Not the shape of a Roam credential or DID document.
    #[error("malformed: {0}")]
    Malformed(String),
    /// The issuer is not who may state this (another server's user ID, or a document of
    /// another DID).
    #[error("wrong issuer: {0}")]
    WrongIssuer(String),
    /// The proof names a verification method the issuer does not list for assertions.
    #[error("unknown verification method {0}")]
    UnknownKey(String),
    /// The proof value is not canonical base58btc multibase of 64 bytes.
    #[error("proof value is not a canonical base58btc signature")]
    NonCanonical,
    /// The signature does not verify: the credential was changed after signing, or signed by
    /// another key.
    #[error("the proof does not verify (the credential was altered or signed by another key)")]
    BadProof,
    /// Past `validUntil`.
    #[error("expired: valid until {0}")]
    Expired(String),
    /// Before `validFrom`.
    #[error("not yet valid: valid from {0}")]
    NotYetValid(String),
}

impl VcError {
    /// The protocol error class.
    pub fn class(&self) -> &'static str {
        match self {
            VcError::Malformed(_) => "malformed",
            VcError::WrongIssuer(_) => "wrong_issuer",
            VcError::UnknownKey(_) => "unknown_key",
            VcError::NonCanonical => "non_canonical",
            VcError::BadProof => "bad_proof",
            VcError::Expired(_) => "expired",
            VcError::NotYetValid(_) => "not_yet_valid",
        }
    }

    pub(crate) fn malformed(what: impl Into<String>) -> Self {
        VcError::Malformed(what.into())
    }
}

impl From<DidError> for VcError {
    fn from(e: DidError) -> Self {
        VcError::Malformed(format!("key: {e}"))
    }
}
