//! Server-level documents: supported versions, discovery (`.well-known`) and the server's
//! signing keys.

use axum::Json;
use axum::extract::Path;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use crate::clock::now_ms;
use crate::error::AppError;
use crate::routes::conditional;
use crate::state::AppState;

/// `GET /_matrix/client/versions`.
pub async fn versions() -> Json<Value> {
    Json(json!({
        "versions": ["r0.5.0", "r0.6.0", "r0.6.1", "v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6", "v1.7", "v1.8", "v1.9", "v1.10", "v1.11"],
        "unstable_features": {},
    }))
}

/// `GET /.well-known/matrix/server`.
pub async fn well_known_server(State(state): State<AppState>) -> Json<Value> {
    Json(json!({"m.server": state.config().federation_address}))
}

/// `GET /.well-known/matrix/client`.
pub async fn well_known_client(State(state): State<AppState>) -> Json<Value> {
    Json(json!({"m.homeserver": {"base_url": state.config().public_base_url}}))
}

/// `GET /health`: the process is up and its store answers (for PostgreSQL: the database is
/// reachable and the schema readable), so a load balancer takes a node whose database is
/// gone out of rotation.
pub async fn health(State(state): State<AppState>) -> Result<&'static str, AppError> {
    state
        .db(|s| {
            s.ping()?;
            s.key_change_position()
        })
        .await?;
    Ok("OK")
}

/// The published key document with its validators (spec/api.md, *Caching*).
fn key_document(state: &AppState, headers: &HeaderMap) -> Result<Response, AppError> {
    let now = now_ms();
    let p = state.signer().published(now)?;
    let cache = conditional::cache_control(p.renew_at, now);
    let ok = StatusCode::OK;
    let body = p.body.clone();
    Ok(conditional::respond(
        headers,
        &p.etag,
        cache,
        ok,
        "application/json",
        body,
    ))
}

/// `GET /_matrix/key/v2/server`.
pub async fn server_keys(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    key_document(&state, &headers)
}

/// `GET /.well-known/did.json`: the server's did:web document (spec §14.1).
pub async fn did_web_document(State(state): State<AppState>) -> Result<Json<Value>, AppError> {
    state.signer().did_document(now_ms()).map(Json)
}

/// `GET /_matrix/key/v2/server/{keyId}`: deprecated; like Synapse, the key ID is ignored and
/// the whole document returned.
pub async fn server_keys_by_id(
    State(state): State<AppState>,
    _key_id: Path<String>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    key_document(&state, &headers)
}
