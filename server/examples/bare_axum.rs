//! The load benchmark's baseline (`bench/load.sh`): a bare axum handler answering a fixed
//! 1 KiB JSON body from memory, on tokio's multi-thread runtime like `roam serve`, so each
//! Roam endpoint can be reported as a ratio of what serving bytes costs on this machine.
//!
//! Usage: `cargo run --release -p roam-server --example bare_axum -- 127.0.0.1:18449`.

use axum::Router;
use axum::http::header;
use axum::routing::get;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18449".into());
    let body: &'static str =
        Box::leak(format!("{{\"padding\":\"{}\"}}", "x".repeat(1024 - 14)).into_boxed_str());
    let app = Router::new().route(
        "/",
        get(move || async move { ([(header::CONTENT_TYPE, "application/json")], body) }),
    );
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("bare axum baseline on http://{addr}");
    axum::serve(listener, app).await
}
