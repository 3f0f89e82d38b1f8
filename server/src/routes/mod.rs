//! The HTTP surface: which path goes to which handler, plus the fallbacks that turn unknown
//! paths and methods into Matrix `M_UNRECOGNIZED` errors, and the edge middleware
//! (`edge`: client address, load shedding, request timeout, per-address write limits).

mod account;
mod conditional;
mod devices;
mod edge;
mod keys;
mod metrics;
mod query;
mod roam;
mod server;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{get, post};

use crate::error::AppError;
use crate::state::AppState;

/// Everything under `/_matrix/client/{v3,r0}`: the two prefixes serve the same handlers.
fn client_routes() -> Router<AppState> {
    Router::new()
        .route("/register", post(account::register))
        .route("/register/available", get(account::register_available))
        .route("/login", get(account::login_flows).post(account::login))
        .route("/refresh", post(account::refresh))
        .route("/account/whoami", get(account::whoami))
        .route("/logout", post(account::logout))
        .route("/logout/all", post(account::logout_all))
        .route("/devices", get(devices::list))
        .route(
            "/devices/{device_id}",
            get(devices::get_one)
                .put(devices::rename)
                .delete(devices::delete_one),
        )
        .route("/delete_devices", post(devices::delete_many))
        .route("/keys/upload", post(keys::upload))
        .route("/keys/query", post(keys::query))
        .route("/keys/claim", post(keys::claim))
        .route("/keys/changes", get(keys::changes))
        .route(
            "/keys/device_signing/upload",
            post(keys::device_signing_upload),
        )
        .route("/keys/signatures/upload", post(keys::signatures_upload))
}

/// Body cap of the routes that carry whole account logs (up to 1000 ops of up to 4 KiB).
const LOG_BODY_LIMIT: usize = 4 * 1024 * 1024;

/// The `/_roam/v1` API.
fn roam_routes() -> Router<AppState> {
    Router::new()
        .route("/users/{user_id}", get(roam::user_bundle))
        .route("/accounts/{did}", get(roam::account_bundle))
        .route("/accounts/{did}/log", get(roam::account_log))
        .route(
            "/accounts/{did}/ops",
            post(roam::post_ops).layer(DefaultBodyLimit::max(LOG_BODY_LIMIT)),
        )
        .route("/accounts/{did}/forks", get(roam::account_forks))
        .route("/export", get(roam::export))
        .route(
            "/query",
            post(query::query).layer(DefaultBodyLimit::max(query::QUERY_BODY_LIMIT)),
        )
        .route("/login/challenge", post(roam::login_challenge))
        .route(
            "/account/did",
            post(roam::adopt_did).layer(DefaultBodyLimit::max(LOG_BODY_LIMIT)),
        )
        .route(
            "/migrate",
            post(roam::start_migration).layer(DefaultBodyLimit::max(LOG_BODY_LIMIT)),
        )
        .route("/migrate/{id}", get(roam::migration_status))
}

/// The complete application with its state.
pub fn router(state: AppState) -> Router {
    let body_limit = state.config().max_body_bytes;
    Router::new()
        .route("/_matrix/client/versions", get(server::versions))
        .route(
            "/_matrix/client/v1/register/m.login.registration_token/validity",
            get(account::registration_token_validity),
        )
        .nest("/_matrix/client/v3", client_routes())
        .nest("/_matrix/client/r0", client_routes())
        .route("/_matrix/key/v2/server", get(server::server_keys))
        .route(
            "/_matrix/key/v2/server/{key_id}",
            get(server::server_keys_by_id),
        )
        .route("/.well-known/matrix/server", get(server::well_known_server))
        .route("/.well-known/matrix/client", get(server::well_known_client))
        .nest("/_roam/v1", roam_routes())
        .route("/1.0/identifiers/{did}", get(roam::identifiers))
        .route("/health", get(server::health))
        .route("/metrics", get(metrics::endpoint))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            edge::limit_writes,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .fallback(unrecognized)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            edge::guard,
        ))
        .with_state(state)
}

async fn unrecognized() -> AppError {
    AppError::Unrecognized {
        status: StatusCode::NOT_FOUND,
    }
}

async fn method_not_allowed() -> AppError {
    AppError::Unrecognized {
        status: StatusCode::METHOD_NOT_ALLOWED,
    }
}
