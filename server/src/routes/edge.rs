//! The router's edge middleware: who the client is (the socket peer, or what a trusted
//! proxy says), load shedding over `edge.max_concurrent_requests`, the per-request timeout,
//! and the per-address limits on writes and on password checks. Connection-level bounds
//! (the header read timeout against slowloris clients) are in [`crate::run`].

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use crate::error::AppError;
use crate::extract::{ClientAddr, bucket_key, client_addr};
use crate::metrics::Metrics;
use crate::state::AppState;

/// How long a shed client is asked to wait.
const SHED_RETRY_MS: u64 = 1000;

/// Outermost middleware: decides the client address, takes a request permit or sheds the
/// request, and bounds the time to an answer.
pub async fn guard(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(a)| a.ip());
    let addr = peer.map(|peer| {
        let edge = &state.config().edge;
        client_addr(peer, req.headers(), &edge.trusted_proxies)
    });
    if let Some(addr) = addr {
        req.extensions_mut().insert(ClientAddr(addr));
    }
    // Everything logged while handling the request names the client.
    let client = addr.map_or_else(|| "unknown".to_owned(), |a| a.to_string());
    let span = tracing::info_span!("request", %client);
    let Ok(_permit) = state.request_permits().clone().try_acquire_owned() else {
        tracing::warn!(%client, "request shed: at max_concurrent_requests");
        Metrics::add(&state.metrics().requests_shed, 1);
        return AppError::Overloaded {
            retry_after_ms: SHED_RETRY_MS,
        }
        .into_response();
    };
    let timeout = state.config().edge.request_timeout;
    match tokio::time::timeout(timeout, next.run(req).instrument(span)).await {
        Ok(resp) => resp,
        Err(_) => {
            Metrics::add(&state.metrics().requests_timed_out, 1);
            AppError::TimedOut.into_response()
        }
    }
}

/// Route middleware: every write under `/_matrix/client` and `/_roam/v1` (any method but
/// GET, HEAD and OPTIONS; `POST /keys/query` is a read) takes a token of the client
/// address's write bucket; the routes that check a password through UIA also
/// take one of its UIA bucket.
pub async fn limit_writes(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Result<Response, AppError> {
    let method = req.method().clone();
    if matches!(method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(next.run(req).await);
    }
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let client = route
        .strip_prefix("/_matrix/client/v3")
        .or_else(|| route.strip_prefix("/_matrix/client/r0"));
    let is_write = match client {
        // A query by POST reads; it is not a write to limit.
        Some(rest) => rest != "/keys/query",
        None => {
            (route.starts_with("/_roam/v1/") && route != "/_roam/v1/query")
                || route.starts_with("/_matrix/federation/")
        }
    };
    if !is_write {
        return Ok(next.run(req).await);
    }
    let key = req
        .extensions()
        .get::<ClientAddr>()
        .map_or_else(|| "unknown".to_owned(), |ClientAddr(a)| bucket_key(*a));
    let limiters = state.limiters();
    let over = |retry_after_ms| {
        Metrics::add(&state.metrics().requests_rate_limited, 1);
        AppError::LimitExceeded { retry_after_ms }
    };
    limiters.write_per_ip.check(&key).await.map_err(over)?;
    if client.is_some_and(|rest| checks_password(&method, rest)) {
        limiters.uia_per_ip.check(&key).await.map_err(over)?;
    }
    let resp = next.run(req).await;
    // A write may be news for a waiting `/sync` (a to-device message, new keys, account
    // data, a device signed into the log).
    if resp.status().is_success() {
        state.wake_sync();
    }
    Ok(resp)
}

/// The client-API routes (after `/_matrix/client/v3`) whose UIA asks for the password.
fn checks_password(method: &Method, route: &str) -> bool {
    matches!(
        (method.as_str(), route),
        ("POST", "/delete_devices")
            | ("DELETE", "/devices/{device_id}")
            | ("POST", "/keys/device_signing/upload")
    ) || route.starts_with("/account/") && method != Method::GET
}
