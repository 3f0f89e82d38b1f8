//! Request extractors that fail with Matrix errors instead of axum's plain-text rejections;
//! one function ([`body_rejection`]) maps a body that could not be read to its error.

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use roam_identity_core::{DeviceId, UserId};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::AppError;
use crate::secrets;
use crate::state::AppState;

/// A raw body under the route's size cap; over it → `M_TOO_LARGE` (as Matrix JSON).
#[derive(Debug)]
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, AppError> {
        Bytes::from_request(req, state)
            .await
            .map(RawBody)
            .map_err(body_rejection)
    }
}

/// The one mapping of a body that could not be read to a Matrix error.
fn body_rejection(rejection: BytesRejection) -> AppError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        AppError::TooLarge("Request body too large".into())
    } else {
        AppError::BadJson(rejection.body_text())
    }
}

/// A JSON object body. Unparseable → `M_NOT_JSON`; valid JSON that is not an object or does
/// not fit `T` → `M_BAD_JSON`; over the body cap → `M_TOO_LARGE`.
#[derive(Debug)]
pub struct MatrixJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for MatrixJson<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, AppError> {
        let RawBody(bytes) = RawBody::from_request(req, state).await?;
        parse_object(&bytes).map(MatrixJson)
    }
}

/// Parses a request body the way [`MatrixJson`] does.
pub fn parse_object<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, AppError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|_| AppError::NotJson)?;
    if !value.is_object() {
        return Err(AppError::BadJson("Content must be a JSON object.".into()));
    }
    from_body_value(value)
}

/// Reads a parsed body as `T`; a body that does not fit → `M_BAD_JSON`.
pub fn from_body_value<T: DeserializeOwned>(value: Value) -> Result<T, AppError> {
    serde_json::from_value(value)
        .map_err(|e| AppError::BadJson(format!("Invalid request body: {e}")))
}

/// The decoded query string; repeated keys keep the last value.
#[derive(Debug, Default)]
pub struct QueryParams(pub HashMap<String, String>);

impl QueryParams {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    pub fn require(&self, key: &str) -> Result<&str, AppError> {
        self.get(key).ok_or_else(|| {
            AppError::MissingParam(format!("Missing string query parameter {key:?}"))
        })
    }
}

impl<S: Send + Sync> FromRequestParts<S> for QueryParams {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, AppError> {
        Ok(Self(query_map(parts)))
    }
}

fn query_map(parts: &Parts) -> HashMap<String, String> {
    parts
        .uri
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default()
}

/// The client's address as seen on the socket; `None` under `oneshot` tests.
#[derive(Debug, Clone)]
pub struct ClientIp(pub Option<String>);

impl ClientIp {
    /// The rate-limit key: unknown addresses share one bucket.
    pub fn key(&self) -> &str {
        self.0.as_deref().unwrap_or("unknown")
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(addr)| addr.ip().to_string()),
        ))
    }
}

/// A request made with a valid access token. Handlers that need a user take this; there is
/// no "maybe authenticated" path to forget a check on.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub user_id: UserId,
    pub device_id: DeviceId,
}

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let token = access_token(parts)?.ok_or(AppError::MissingToken)?;
        let hash = secrets::token_hash(&token);
        let owner = state.db(move |s| s.token_owner(&hash)).await?;
        let owner = owner.ok_or(AppError::UnknownToken)?;
        if owner
            .expires_at
            .is_some_and(|t| t <= crate::clock::now_ms())
        {
            return Err(AppError::ExpiredToken);
        }
        Ok(Self {
            user_id: owner.user_id,
            device_id: owner.device_id,
        })
    }
}

/// The token from `Authorization: Bearer …` or, failing that, the `access_token` query
/// parameter, as Matrix allows both.
fn access_token(parts: &Parts) -> Result<Option<String>, AppError> {
    if let Some(value) = parts.headers.get(axum::http::header::AUTHORIZATION) {
        let text = value.to_str().map_err(|_| AppError::UnknownToken)?;
        return match text.strip_prefix("Bearer ") {
            Some(token) if !token.trim().is_empty() => Ok(Some(token.trim().to_owned())),
            // Synapse treats a malformed Authorization header as a missing token.
            _ => Err(AppError::MissingToken),
        };
    }
    Ok(query_map(parts)
        .remove("access_token")
        .filter(|t| !t.is_empty()))
}

/// One path parameter as text. A segment that is not valid UTF-8 after percent-decoding
/// answers `M_INVALID_PARAM` as Matrix JSON instead of axum's plain-text rejection.
#[derive(Debug)]
pub struct PathParam(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathParam {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
        axum::extract::Path::<String>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(s)| PathParam(s))
            .map_err(|e| {
                AppError::InvalidParam(format!("Invalid path parameter: {}", e.body_text()))
            })
    }
}
