//! The HTTP side of the metrics: a middleware recording every request under its route
//! template (never the raw path, so user IDs and DIDs do not become label values), and
//! `GET /metrics` in the Prometheus text exposition format.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::state::AppState;

/// Middleware: times the request and counts it by method, route template and status.
pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = req.method().as_str().to_owned();
    let start = Instant::now();
    let resp = next.run(req).await;
    state.metrics().observe(
        &method,
        &route,
        resp.status().as_u16(),
        start.elapsed().as_secs_f64(),
    );
    resp
}

/// `GET /metrics`.
pub async fn endpoint(State(state): State<AppState>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        state.metrics().render() + &pool_metrics(state.store().pool_stats()),
    )
        .into_response()
}

/// The connection pool's gauges, when the store has a pool (PostgreSQL).
fn pool_metrics(stats: Option<crate::store::PoolStats>) -> String {
    let Some(p) = stats else {
        return String::new();
    };
    let mut out = String::new();
    for (name, help, v) in [
        (
            "roam_db_pool_connections",
            "Open connections to the database.",
            p.size,
        ),
        (
            "roam_db_pool_idle_connections",
            "Open connections not in use.",
            p.idle,
        ),
        (
            "roam_db_pool_max_connections",
            "The most connections this node opens.",
            p.max,
        ),
    ] {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}\n"
        ));
    }
    out
}
