//! The Roam homeserver: a Matrix client-server subset on axum, with state in redb.
//!
//! Modules by layer, outermost first; each layer imports only the layers below it:
//! - HTTP: [`routes`] (which path goes to which handler, the metrics middleware;
//!   [`router`] builds the whole app) and [`extract`] (extractors that fail with Matrix
//!   errors: `MatrixJson`, `RawBody`, `Authenticated`, query, path and client address).
//! - Composition root: [`state`], where `AppState` is assembled once from the
//!   configuration, the store and the federation client, and handed to the router.
//! - Services, which never see the state, the routes or the extractors: [`portable`]
//!   (portable accounts: the `Portable` service, its one read–verify–commit path, migration,
//!   key-login challenges, per-DID op limits, federation), [`uia`] (user-interactive
//!   authentication), [`server_key`] (the signing key and the server key document),
//!   [`ratelimit`], [`metrics`] (the counters), [`secrets`] (argon2id, tokens, IDs).
//! - [`error`]: `AppError`, the one mapping from failures (including `StoreError`) to
//!   `errcode` and status.
//! - [`store`]: the `Store` trait, the `Db` handle that runs calls on the blocking pool,
//!   the redb implementation and the table layouts. It imports nothing else of the crate.
//! - Leaf vocabulary: [`config`] and [`clock`] (`now_ms`).
//!
//! [`run`] serves a router on a listener until a shutdown future resolves, so tests can bind
//! `127.0.0.1:0` and stop the server themselves. The `roam` binary (in roam-cli) adds the
//! command line around it.
//!
//! Architecture invariant: handlers know nothing of redb and the store knows nothing of HTTP.

pub mod clock;
pub mod config;
pub mod device_list_updates;
pub mod error;
pub mod extract;
pub mod metrics;
pub mod portable;
pub mod ratelimit;
pub mod remote_keys;
pub mod routes;
pub mod secrets;
pub mod server_key;
pub mod state;
pub mod store;
pub mod uia;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

pub use config::{RateLimits, RegistrationMode, ServerConfig};
pub use error::AppError;
pub use routes::router;
pub use state::AppState;
pub use store::{RedbStore, Store, StoreError};

/// Serves the app on `listener` until `shutdown` resolves, then finishes in-flight requests
/// (for at most the request timeout plus the header read timeout).
///
/// Each connection is HTTP/1.1 with hyper's header read timeout
/// (`edge.header_read_timeout`): a client that does not finish a request head in time — a
/// slowloris client dribbling bytes, or an idle keep-alive connection — is disconnected.
pub async fn run<F>(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: F,
) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    let edge = state.config().edge.clone();
    let (stop_refresher, stopped) = tokio::sync::watch::channel(false);
    let refresher = tokio::spawn({
        let state = state.clone();
        async move { state.portable().keep_answers_fresh(stopped).await }
    });
    let updates = tokio::spawn({
        let (state, stopped) = (state.clone(), stop_refresher.subscribe());
        device_list_updates::send_loop(state, stopped)
    });
    let app = router(state).layer(tower_http::trace::TraceLayer::new_for_http());
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(edge.header_read_timeout)
        .keep_alive(true);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        serve_connection(&http, &graceful, &app, stream, peer);
    }
    drop(listener);
    // The refresher holds the store: it ends before `run` returns, so the file can reopen.
    let _ = stop_refresher.send(true);
    let _ = refresher.await;
    let _ = updates.await;
    let grace = edge.request_timeout + edge.header_read_timeout;
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the shutdown grace period; closing");
    }
    Ok(())
}

/// Serves one accepted connection on its own task, telling the app the peer's address.
fn serve_connection(
    http: &hyper::server::conn::http1::Builder,
    graceful: &hyper_util::server::graceful::GracefulShutdown,
    app: &axum::Router,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
) {
    use tower::ServiceExt;
    let _ = stream.set_nodelay(true);
    let svc =
        app.clone()
            .map_request(move |mut req: axum::http::Request<hyper::body::Incoming>| {
                req.extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                req
            });
    let conn = http.serve_connection(
        hyper_util::rt::TokioIo::new(stream),
        hyper_util::service::TowerToHyperService::new(svc),
    );
    let conn = graceful.watch(conn);
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, %peer, "connection ended with an error");
        }
    });
}
