//! The Roam homeserver: a Matrix client-server subset on axum, with state in redb.
//!
//! Modules, outermost first:
//! - [`routes`]: which path goes to which handler; [`router`] builds the whole app.
//! - [`extract`]: request extractors that fail with Matrix errors (`MatrixJson`,
//!   `Authenticated`, query and client address).
//! - [`error`]: `AppError`, the one mapping from failures to `errcode` and status.
//! - [`uia`]: user-interactive authentication sessions (registration, device deletion).
//! - [`store`]: the `Store` trait, its redb implementation and the table layouts.
//! - [`secrets`]: argon2id passwords, hashed access tokens, generated IDs.
//! - [`ratelimit`], [`config`], [`state`]: limits, configuration, shared state.
//!
//! [`run`] serves a router on a listener until a shutdown future resolves, so tests can bind
//! `127.0.0.1:0` and stop the server themselves. The `roam` binary (`src/main.rs`) adds the
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
