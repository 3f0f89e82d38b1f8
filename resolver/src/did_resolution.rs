//! W3C DID Resolution shapes for Roam accounts, as pure functions: the homeserver's
//! `GET /1.0/identifiers/{did}` (Universal Resolver driver interface) is built from these.
//!
//! The DID document is did:key's own (`Did::document`), plus what the account log and the
//! attestations add: `alsoKnownAs` Matrix URIs for bound user IDs and a `MatrixHomeserver`
//! service pointing at the primary. Errors use the DID Resolution problem-details shape.

use roam_identity_core::bundle::VerifiedBundle;
use roam_identity_core::{Did, DidError, Millis, OpHash, ServerName, UserId};
use serde_json::{Value, json};

use crate::clock::rfc3339;
use crate::resolution::Resolution;

/// Media type of a DID resolution result.
pub const CONTENT_TYPE_DID_RESOLUTION: &str = "application/did-resolution";
/// Media type of a DID document in JSON-LD.
pub const CONTENT_TYPE_DID_LD_JSON: &str = "application/did+ld+json";
/// Media type of a DID document in plain JSON.
pub const CONTENT_TYPE_DID_JSON: &str = "application/did+json";

/// What the caller asked for (`Accept`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Representation {
    /// The full resolution result (`application/did-resolution`).
    ResolutionResult,
    /// The DID document alone (`application/did+ld+json`, `application/did+json`, …).
    Document,
}

impl Representation {
    /// The content type to answer with.
    pub fn content_type(self) -> &'static str {
        match self {
            Representation::ResolutionResult => CONTENT_TYPE_DID_RESOLUTION,
            Representation::Document => CONTENT_TYPE_DID_LD_JSON,
        }
    }
}

/// Chooses the representation from an `Accept` header. A resolution result is the default
/// (no header, `*/*`, `application/json`, or the did-resolution profile of `ld+json`); a
/// DID-document media type asks for the document alone.
pub fn negotiate(accept: Option<&str>) -> Representation {
    let Some(accept) = accept else {
        return Representation::ResolutionResult;
    };
    for part in accept.split(',') {
        let mime = part.trim().to_ascii_lowercase();
        let base = mime.split(';').next().unwrap_or("").trim();
        match base {
            "application/did-resolution" => return Representation::ResolutionResult,
            "application/ld+json" if mime.contains("did-resolution") => {
                return Representation::ResolutionResult;
            }
            "application/did+ld+json"
            | "application/did+json"
            | "application/did"
            | "application/ld+json" => return Representation::Document,
            _ => {}
        }
    }
    Representation::ResolutionResult
}

/// What a DID document and its metadata are built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountView {
    /// The account.
    pub did: Did,
    /// Bound user IDs (for `alsoKnownAs`).
    pub user_ids: Vec<UserId>,
    /// Servers, primary first.
    pub servers: Vec<ServerName>,
    /// Log head (`versionId`).
    pub head: OpHash,
    /// Genesis time.
    pub created_at: Millis,
    /// Head time (`updated`).
    pub updated_at: Millis,
    /// Deactivated account.
    pub deactivated: bool,
}

impl AccountView {
    /// From a bundle verified at `now` (the homeserver's own accounts): user IDs whose binding
    /// is current.
    pub fn from_bundle(vb: &VerifiedBundle, now: Millis) -> Self {
        let st = &vb.log.state;
        Self {
            did: st.did.clone(),
            user_ids: vb.bound_user_ids(now),
            servers: st.servers.clone(),
            head: st.head,
            created_at: st.created_at,
            updated_at: st.updated_at,
            deactivated: st.deactivated,
        }
    }

    /// From a resolver answer (remote accounts).
    pub fn from_resolution(r: &Resolution) -> Self {
        Self {
            did: r.did.clone(),
            user_ids: r.user_ids.clone(),
            servers: r.servers.clone(),
            head: r.head,
            created_at: r.created_at,
            updated_at: r.updated_at,
            deactivated: r.deactivated,
        }
    }
}

/// The DID document: did:key's Multikey document, `alsoKnownAs` Matrix URIs, and the
/// primary homeserver as a `MatrixHomeserver` service.
pub fn document(view: &AccountView) -> Value {
    let mut doc = view.did.document();
    if !view.user_ids.is_empty() {
        doc["alsoKnownAs"] = view.user_ids.iter().map(UserId::matrix_uri).collect();
    }
    // A deactivated account has no service to reach.
    if let (Some(primary), false) = (view.servers.first(), view.deactivated) {
        doc["service"] = json!([{
            "id": "#matrix",
            "type": "MatrixHomeserver",
            "serviceEndpoint": format!("https://{primary}"),
        }]);
    }
    doc
}

/// `didDocumentMetadata`: `versionId` = head, `created`/`updated` from the log, and
/// `deactivated` when it is.
pub fn document_metadata(view: &AccountView) -> Value {
    let mut m = json!({
        "versionId": view.head.to_multibase(),
        "created": rfc3339(view.created_at),
        "updated": rfc3339(view.updated_at),
    });
    if view.deactivated {
        m["deactivated"] = json!(true);
    }
    m
}

/// A successful resolution: HTTP status (200, or 410 for a deactivated DID as the Universal
/// Resolver API has it) and the body for the representation asked for.
pub fn resolution_result(view: &AccountView, repr: Representation) -> (u16, Value) {
    let status = if view.deactivated { 410 } else { 200 };
    let doc = document(view);
    let body = match repr {
        Representation::Document => doc,
        Representation::ResolutionResult => json!({
            "didDocument": doc,
            "didResolutionMetadata": {"contentType": CONTENT_TYPE_DID_LD_JSON},
            "didDocumentMetadata": document_metadata(view),
        }),
    };
    (status, body)
}

/// DID Resolution errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolutionError {
    /// The DID is not valid syntax (or not a canonical did:key).
    InvalidDid(String),
    /// No account with this DID is known.
    NotFound(String),
    /// The method is not did:key.
    MethodNotSupported(String),
    /// The server failed internally (the detail is for logs, not the body).
    Internal,
}

impl ResolutionError {
    /// Maps a DID parse error.
    pub fn from_did_error(e: &DidError) -> Self {
        match e {
            DidError::MethodNotSupported(m) => ResolutionError::MethodNotSupported(format!(
                "DID method {m:?} is not supported; only did:key is"
            )),
            other => ResolutionError::InvalidDid(other.to_string()),
        }
    }

    /// HTTP status per the DID Resolution HTTP binding.
    pub fn status(&self) -> u16 {
        match self {
            ResolutionError::InvalidDid(_) => 400,
            ResolutionError::NotFound(_) => 404,
            ResolutionError::MethodNotSupported(_) => 501,
            ResolutionError::Internal => 500,
        }
    }

    /// The legacy error code (`invalidDid`, …) of DID Resolution.
    pub fn code(&self) -> &'static str {
        match self {
            ResolutionError::InvalidDid(_) => "invalidDid",
            ResolutionError::NotFound(_) => "notFound",
            ResolutionError::MethodNotSupported(_) => "methodNotSupported",
            ResolutionError::Internal => "internalError",
        }
    }

    fn type_uri(&self) -> &'static str {
        match self {
            ResolutionError::InvalidDid(_) => "https://www.w3.org/ns/did#INVALID_DID",
            ResolutionError::NotFound(_) => "https://www.w3.org/ns/did#NOT_FOUND",
            ResolutionError::MethodNotSupported(_) => {
                "https://www.w3.org/ns/did#METHOD_NOT_SUPPORTED"
            }
            ResolutionError::Internal => "https://www.w3.org/ns/did#INTERNAL_ERROR",
        }
    }

    fn title(&self) -> &'static str {
        match self {
            ResolutionError::InvalidDid(_) => "Invalid DID",
            ResolutionError::NotFound(_) => "DID not found",
            ResolutionError::MethodNotSupported(_) => "DID method not supported",
            ResolutionError::Internal => "Internal error",
        }
    }

    /// `(status, body)`: a resolution result with no document and the error in
    /// `didResolutionMetadata.error` as RFC 9457 problem details (current DID Resolution).
    pub fn result(&self) -> (u16, Value) {
        let mut problem = json!({
            "type": self.type_uri(),
            "title": self.title(),
            "status": self.status(),
        });
        match self {
            ResolutionError::InvalidDid(d)
            | ResolutionError::NotFound(d)
            | ResolutionError::MethodNotSupported(d) => problem["detail"] = json!(d),
            ResolutionError::Internal => {}
        }
        (
            self.status(),
            json!({
                "didDocument": null,
                "didResolutionMetadata": {
                    "contentType": CONTENT_TYPE_DID_RESOLUTION,
                    "error": problem,
                },
                "didDocumentMetadata": {},
            }),
        )
    }
}
