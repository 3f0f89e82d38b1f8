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
pub mod error;
pub mod extract;
pub mod metrics;
pub mod portable;
pub mod ratelimit;
pub mod routes;
pub mod secrets;
pub mod server_key;
pub mod state;
pub mod store;
pub mod uia;

use std::future::Future;
use std::net::SocketAddr;

pub use config::{RateLimits, RegistrationMode, ServerConfig};
pub use error::AppError;
pub use routes::router;
pub use state::AppState;
pub use store::{RedbStore, Store, StoreError};

/// Serves the app on `listener` until `shutdown` resolves, then finishes in-flight requests.
pub async fn run<F>(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: F,
) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    let app = router(state).layer(tower_http::trace::TraceLayer::new_for_http());
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
