//! The one error type of the server and its mapping to Matrix errors.
//!
//! Every handler and service returns `Result<_, AppError>`; the single `match` in
//! [`AppError::parts`] decides the status code and `errcode` (with [`StageError::errcode`]
//! for failed UIA stages, and `From<StoreError>` for storage). Internal failures are logged
//! with their cause and answered with a fixed text, so storage details never reach a client.
//! It sits just above the store: it imports `StoreError` and nothing else of the crate.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::store::StoreError;

/// A user-interactive authentication challenge: the 401 body of the Matrix UIA protocol.
#[derive(Debug, Clone)]
pub struct UiaChallenge {
    pub session: String,
    pub flows: Vec<Vec<&'static str>>,
    pub completed: Vec<String>,
    pub params: Value,
    /// Set when the last stage attempt failed.
    pub error: Option<StageError>,
}

/// Why one UIA stage failed. It is answered inside the 401 challenge (with its own
/// `errcode`), not as an error of its own: the client may try the stage again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StageError {
    /// The stage type is in no offered flow, or not one this server checks.
    #[error("Unrecognized login type {0}")]
    UnrecognizedType(String),
    /// The registration token does not exist, is used up or expired.
    #[error("Invalid registration token")]
    InvalidRegistrationToken,
    /// The password is not the requesting user's.
    #[error("Invalid password")]
    WrongPassword,
    /// The `m.login.roam.key` proof was refused (the text says why).
    #[error("{0}")]
    KeyProofRefused(String),
}

/// Everything a Matrix endpoint can answer besides success.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("Missing access token")]
    MissingToken,
    #[error("Invalid access token passed.")]
    UnknownToken,
    /// The access token expired: the client refreshes it (`soft_logout: true`).
    #[error("Access token has expired")]
    ExpiredToken,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("User ID already taken.")]
    UserInUse,
    #[error("{0}")]
    InvalidUsername(String),
    #[error("Content not JSON.")]
    NotJson,
    #[error("{0}")]
    BadJson(String),
    #[error("{0}")]
    MissingParam(String),
    #[error("{0}")]
    InvalidParam(String),
    #[error("{0}")]
    InvalidSignature(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    TooLarge(String),
    /// A request body over the route's cap. Its rest is never read, so the answer also
    /// closes the connection: a client must not send its next request on it.
    #[error("Request body too large")]
    BodyTooLarge,
    #[error("Too Many Requests")]
    LimitExceeded { retry_after_ms: u64 },
    /// Load shed: the server is handling as many requests as it allows.
    #[error("The server is busy; try again shortly")]
    Overloaded { retry_after_ms: u64 },
    /// The request was not answered within the request timeout.
    #[error("The request took too long")]
    TimedOut,
    #[error("Unrecognized request")]
    Unrecognized { status: StatusCode },
    /// A request this server understands but does not support (`M_UNRECOGNIZED`, 400).
    #[error("{0}")]
    Unsupported(String),
    #[error("Guest access is disabled")]
    GuestAccessForbidden,
    /// A client error that has no more specific code (Synapse answers `M_UNKNOWN` 400).
    #[error("{0}")]
    BadRequest(String),
    #[error("user-interactive authentication required")]
    Uia(Box<UiaChallenge>),
    /// An account op or log fails verification (`class` is the protocol error class).
    #[error("{message}")]
    RoamInvalidOp {
        class: &'static str,
        index: Option<usize>,
        message: String,
    },
    /// The ops would fork the account log outside the recovery rule.
    #[error("The operations fork the account log; both conflicting operations are in `evidence`.")]
    RoamFork { evidence: Vec<Value> },
    /// The account moved to other servers.
    #[error("This account has moved; log in at its current homeserver.")]
    RoamMoved { servers: Vec<String> },
    /// A key backup call names a version that is not the current one.
    #[error("Wrong backup version")]
    WrongRoomKeysVersion { current_version: Option<String> },
    /// The Matrix account was deactivated (`/account/deactivate`).
    #[error("This account has been deactivated")]
    UserDeactivated,
    /// The account's log is deactivated.
    #[error("This account is deactivated.")]
    RoamDeactivated,
    /// Another homeserver needed for this request could not be reached.
    #[error("{0}")]
    RoamUnreachable(String),
    /// Something broke on our side. The text is logged, never sent.
    #[error("internal error: {0}")]
    Internal(String),
}

impl AppError {
    /// Status, errcode and client-facing message: the one place that decides them.
    fn parts(&self) -> (StatusCode, &'static str, String) {
        use AppError::*;
        let msg = self.to_string();
        match self {
            MissingToken => (StatusCode::UNAUTHORIZED, "M_MISSING_TOKEN", msg),
            UnknownToken | ExpiredToken => (StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN", msg),
            Forbidden(_) | GuestAccessForbidden => (StatusCode::FORBIDDEN, "M_FORBIDDEN", msg),
            Unauthorized(_) => (StatusCode::UNAUTHORIZED, "M_UNAUTHORIZED", msg),
            UserInUse => (StatusCode::BAD_REQUEST, "M_USER_IN_USE", msg),
            InvalidUsername(_) => (StatusCode::BAD_REQUEST, "M_INVALID_USERNAME", msg),
            NotJson => (StatusCode::BAD_REQUEST, "M_NOT_JSON", msg),
            BadJson(_) => (StatusCode::BAD_REQUEST, "M_BAD_JSON", msg),
            MissingParam(_) => (StatusCode::BAD_REQUEST, "M_MISSING_PARAM", msg),
            InvalidParam(_) => (StatusCode::BAD_REQUEST, "M_INVALID_PARAM", msg),
            InvalidSignature(_) => (StatusCode::BAD_REQUEST, "M_INVALID_SIGNATURE", msg),
            NotFound(_) => (StatusCode::NOT_FOUND, "M_NOT_FOUND", msg),
            TooLarge(_) | BodyTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "M_TOO_LARGE", msg),
            LimitExceeded { .. } => (StatusCode::TOO_MANY_REQUESTS, "M_LIMIT_EXCEEDED", msg),
            Overloaded { .. } | TimedOut => {
                (StatusCode::SERVICE_UNAVAILABLE, "M_LIMIT_EXCEEDED", msg)
            }
            Unrecognized { status } => (*status, "M_UNRECOGNIZED", msg),
            Unsupported(_) => (StatusCode::BAD_REQUEST, "M_UNRECOGNIZED", msg),
            BadRequest(_) => (StatusCode::BAD_REQUEST, "M_UNKNOWN", msg),
            Uia(_) => (StatusCode::UNAUTHORIZED, "M_FORBIDDEN", msg),
            RoamInvalidOp { .. } => (StatusCode::BAD_REQUEST, "ROAM_INVALID_OP", msg),
            RoamFork { .. } => (StatusCode::CONFLICT, "ROAM_FORK", msg),
            RoamMoved { .. } => (StatusCode::FORBIDDEN, "ROAM_MOVED", msg),
            RoamDeactivated => (StatusCode::FORBIDDEN, "ROAM_DEACTIVATED", msg),
            UserDeactivated => (StatusCode::FORBIDDEN, "M_USER_DEACTIVATED", msg),
            WrongRoomKeysVersion { .. } => {
                (StatusCode::FORBIDDEN, "M_WRONG_ROOM_KEYS_VERSION", msg)
            }
            RoamUnreachable(_) => (StatusCode::BAD_GATEWAY, "ROAM_UNREACHABLE", msg),
            Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "M_UNKNOWN",
                "Internal server error".to_owned(),
            ),
        }
    }

    /// When the client may try again, for the answers that say so.
    fn retry_after_ms(&self) -> Option<u64> {
        match self {
            AppError::LimitExceeded { retry_after_ms }
            | AppError::Overloaded { retry_after_ms } => Some(*retry_after_ms),
            AppError::TimedOut => Some(1000),
            _ => None,
        }
    }

    /// The Matrix error code, for tests and logs.
    pub fn errcode(&self) -> &'static str {
        self.parts().1
    }

    /// `{errcode, error}`, for the per-item `failures` of an answer that succeeds as a whole
    /// (`/keys/signatures/upload`). Internal causes are logged, not sent.
    pub fn failure_entry(&self) -> Value {
        let (_, errcode, error) = self.parts();
        if let AppError::Internal(cause) = self {
            tracing::error!(%cause, "internal error");
        }
        json!({"errcode": errcode, "error": error})
    }
}

impl StageError {
    /// The `errcode` of the challenge that reports this failure.
    fn errcode(&self) -> &'static str {
        match self {
            StageError::UnrecognizedType(_) => "M_UNRECOGNIZED",
            StageError::InvalidRegistrationToken => "M_UNAUTHORIZED",
            StageError::WrongPassword | StageError::KeyProofRefused(_) => "M_FORBIDDEN",
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, errcode, error) = self.parts();
        let body = match &self {
            AppError::UnknownToken => {
                json!({"errcode": errcode, "error": error, "soft_logout": false})
            }
            AppError::ExpiredToken => {
                json!({"errcode": errcode, "error": error, "soft_logout": true})
            }
            AppError::LimitExceeded { .. } | AppError::Overloaded { .. } | AppError::TimedOut => {
                json!({"errcode": errcode, "error": error, "retry_after_ms": self.retry_after_ms()})
            }
            AppError::Uia(c) => {
                let flows: Vec<Value> = c
                    .flows
                    .iter()
                    .map(|stages| json!({"stages": stages}))
                    .collect();
                let mut body = json!({
                    "session": c.session,
                    "flows": flows,
                    "params": c.params,
                    "completed": c.completed,
                });
                if let Some(e) = &c.error {
                    body["errcode"] = json!(e.errcode());
                    body["error"] = json!(e.to_string());
                }
                body
            }
            AppError::RoamInvalidOp { class, index, .. } => {
                json!({"errcode": errcode, "error": error, "class": class, "index": index})
            }
            AppError::RoamFork { evidence } => {
                json!({"errcode": errcode, "error": error, "evidence": evidence})
            }
            AppError::WrongRoomKeysVersion { current_version } => {
                json!({"errcode": errcode, "error": error, "current_version": current_version})
            }
            AppError::RoamMoved { servers } => {
                json!({"errcode": errcode, "error": error, "servers": servers})
            }
            AppError::Internal(cause) => {
                tracing::error!(%cause, "internal error");
                json!({"errcode": errcode, "error": error})
            }
            _ => json!({"errcode": errcode, "error": error}),
        };
        let mut response = (status, Json(body)).into_response();
        if matches!(self, AppError::BodyTooLarge) {
            // Without this a client may reuse the connection, which the server closes as it
            // answers, and see its next request fail with a broken pipe.
            response.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
        }
        if let Some(retry_after_ms) = self.retry_after_ms() {
            // Seconds, rounded up, for clients and proxies that read the standard header.
            let secs = retry_after_ms.div_ceil(1000).max(1);
            if let Ok(v) = secs.to_string().parse() {
                response
                    .headers_mut()
                    .insert(axum::http::header::RETRY_AFTER, v);
            }
        }
        response
    }
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::UserInUse(_) => AppError::UserInUse,
            StoreError::NotFound(what) => {
                AppError::NotFound(format!("{} not found", capitalize(what)))
            }
            StoreError::KeyConflict { key_id } => AppError::InvalidParam(format!(
                "One time key {key_id} already exists with different content"
            )),
            StoreError::TokenInvalid => AppError::Unauthorized("Invalid registration token".into()),
            StoreError::TokenExists => AppError::InvalidParam("Token already exists".into()),
            StoreError::Deactivated => AppError::UserDeactivated,
            StoreError::WrongBackupVersion { current } => AppError::WrongRoomKeysVersion {
                current_version: current.map(|v| v.to_string()),
            },
            // A full inbox empties when its device syncs; the caller may retry later.
            StoreError::CapReached(_) => AppError::LimitExceeded {
                retry_after_ms: 60_000,
            },
            e @ (StoreError::HeadMoved { .. }
            | StoreError::Locked
            | StoreError::SchemaVersion { .. }
            | StoreError::Corrupt { .. }
            | StoreError::Dangling { .. }
            | StoreError::CreateDir { .. }
            | StoreError::Unsupported(_)
            | StoreError::Backend { .. }) => AppError::Internal(e.to_string()),
        }
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}
