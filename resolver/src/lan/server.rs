//! Serving this node's verified cache to LAN peers (feature `lan-server`): the only part of
//! the resolver that needs an HTTP server, and so the only user of axum.

use std::future::Future;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use roam_identity_core::{Did, UserId};
use serde_json::json;
use tokio::net::TcpListener;

use crate::cache::{CacheError, CacheStore};

fn matrix_error(status: StatusCode, errcode: &str, error: &str) -> Response {
    (
        status,
        axum::Json(json!({"errcode": errcode, "error": error})),
    )
        .into_response()
}

fn invalid_param(error: &str) -> Response {
    matrix_error(StatusCode::BAD_REQUEST, "M_INVALID_PARAM", error)
}

/// The routes a resolver node serves to its LAN peers, from its verified cache.
pub fn lan_router(store: CacheStore) -> Router {
    Router::new()
        .route("/_roam/v1/users/{user_id}", get(user_bundle))
        .route("/_roam/v1/accounts/{did}", get(account_bundle))
        .with_state(store)
}

async fn user_bundle(State(store): State<CacheStore>, Path(user_id): Path<String>) -> Response {
    let Ok(user) = UserId::parse(&user_id) else {
        return invalid_param("not a valid user ID");
    };
    answer(store.bundle_for_user(&user).await)
}

async fn account_bundle(State(store): State<CacheStore>, Path(did): Path<String>) -> Response {
    let Ok(did) = Did::parse(&did) else {
        return invalid_param("not a valid did:key");
    };
    answer(store.bundle_for_did(&did).await)
}

fn answer(r: Result<Option<serde_json::Value>, CacheError>) -> Response {
    match r {
        Ok(Some(bundle)) => axum::Json(bundle).into_response(),
        Ok(None) => matrix_error(
            StatusCode::NOT_FOUND,
            "M_NOT_FOUND",
            "not in this node's cache",
        ),
        Err(e) => {
            // Internal details are logged, never sent to peers.
            tracing::error!(error = %e, "LAN cache read failed");
            matrix_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "M_UNKNOWN",
                "internal error",
            )
        }
    }
}

/// Serves [`lan_router`] on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    store: CacheStore,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, lan_router(store))
        .with_graceful_shutdown(shutdown)
        .await
}
