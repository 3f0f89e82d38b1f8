//! The HTTP surface: which path goes to which handler, plus the fallbacks that turn unknown
//! paths and methods into Matrix `M_UNRECOGNIZED` errors, and the edge middleware
//! (`edge`: client address, load shedding, request timeout, per-address write limits).

mod account;
mod account_settings;
mod client_info;
mod conditional;
mod devices;
mod edge;
mod federation;
mod key_backup;
mod keys;
mod long_poll;
mod metrics;
mod query;
mod roam;
mod server;
mod sync;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{get, post, put};

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
        .route("/account/password", post(account_settings::change_password))
        .route("/account/deactivate", post(account_settings::deactivate))
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
        .route("/sync", get(sync::sync))
        .route(
            "/sendToDevice/{event_type}/{txn_id}",
            put(sync::send_to_device),
        )
        .route(
            "/user/{user_id}/account_data/{type}",
            get(sync::get_account_data).put(sync::put_account_data),
        )
        .route("/user/{user_id}/filter", post(sync::create_filter))
        .route("/user/{user_id}/filter/{filter_id}", get(sync::get_filter))
        .route("/capabilities", get(client_info::capabilities))
        .route("/pushrules/", get(client_info::push_rules))
        .route("/profile/{user_id}", get(client_info::get_profile))
        .route(
            "/profile/{user_id}/displayname",
            get(client_info::get_displayname).put(client_info::put_displayname),
        )
        .route(
            "/profile/{user_id}/avatar_url",
            get(client_info::get_avatar_url).put(client_info::put_avatar_url),
        )
        .route("/voip/turnServer", get(client_info::turn_server))
        .route(
            "/thirdparty/protocols",
            get(client_info::thirdparty_protocols),
        )
        .route(
            "/room_keys/version",
            get(key_backup::current_version).post(key_backup::create_version),
        )
        .route(
            "/room_keys/version/{version}",
            get(key_backup::get_version)
                .put(key_backup::update_version)
                .delete(key_backup::delete_version),
        )
        .route(
            "/room_keys/keys",
            get(key_backup::get_all)
                .put(key_backup::put_all)
                .delete(key_backup::delete_all),
        )
        .route(
            "/room_keys/keys/{room_id}",
            get(key_backup::get_room)
                .put(key_backup::put_room)
                .delete(key_backup::delete_room),
        )
        .route(
            "/room_keys/keys/{room_id}/{session_id}",
            get(key_backup::get_session)
                .put(key_backup::put_session)
                .delete(key_backup::delete_session),
        )
}

/// Body cap of the routes that carry whole account logs (up to 1000 ops of up to 4 KiB).
const LOG_BODY_LIMIT: usize = 4 * 1024 * 1024;

/// Body cap of a device-plane import: a key backup of up to 50 000 keys (~1 KiB each with
/// their JSON) and the keys of a few user IDs.
const DEVICE_PLANE_BODY_LIMIT: usize = 64 * 1024 * 1024;

/// The `/_roam/v1` API.
fn roam_routes() -> Router<AppState> {
    Router::new()
        .route("/users/{user_id}", get(roam::user_bundle))
        .route("/users/{user_id}/credential", get(roam::user_credential))
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
        .route(
            "/device-plane",
            get(roam::device_plane_export)
                .post(roam::device_plane_import)
                .layer(DefaultBodyLimit::max(DEVICE_PLANE_BODY_LIMIT)),
        )
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
        // The server-server endpoints of the device plane (`X-Matrix`-signed). Not nested:
        // the signature covers the full request URI, which the handlers read.
        .route(
            "/_matrix/federation/v1/user/devices/{user_id}",
            get(federation::user_devices),
        )
        .route(
            "/_matrix/federation/v1/user/keys/query",
            post(federation::keys_query),
        )
        .route(
            "/_matrix/federation/v1/user/keys/claim",
            post(federation::keys_claim),
        )
        .route(
            "/_matrix/federation/v1/send/{txn_id}",
            put(federation::send_transaction),
        )
        .route("/.well-known/did.json", get(server::did_web_document))
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
