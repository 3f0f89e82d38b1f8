//! `roam serve`: load the configuration, open the store, serve until SIGINT/SIGTERM.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;

use super::common::shutdown_signal;
use roam_server::config::{self, FileConfig, Overrides};
use roam_server::{AppState, RegistrationMode};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML configuration file; flags and ROAM_* variables override it.
    #[arg(long, env = "ROAM_CONFIG")]
    config: Option<PathBuf>,
    /// The server name users get in their IDs (default: localhost:8008).
    #[arg(long, env = "ROAM_SERVER_NAME")]
    server_name: Option<String>,
    /// Address to listen on (default: 127.0.0.1:8008).
    #[arg(long, env = "ROAM_LISTEN")]
    listen: Option<String>,
    /// Directory of the redb database (default: ./.roam-data).
    #[arg(long, env = "ROAM_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// postgres://user:password@host:port/database: keep the store in PostgreSQL (several
    /// `roam serve` nodes may share it) instead of redb in the data directory.
    #[arg(long, env = "ROAM_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Base URL clients should use, for /.well-known/matrix/client.
    #[arg(long, env = "ROAM_PUBLIC_BASE_URL")]
    public_base_url: Option<String>,
    /// Who may register: open, token or closed (default: open).
    #[arg(long, env = "ROAM_REGISTRATION")]
    registration: Option<String>,
}

/// `--federation-override` and `--allow-private-fetch` are the global flags of `roam`
/// ([`super::GlobalArgs`]): the same meaning for the server as for the client commands.
pub fn run(args: ServeArgs, global: &super::GlobalArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ROAM_LOG").unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("info,tower_http=warn,sqlx=warn")
            }),
        )
        .init();
    let file = match &args.config {
        Some(path) => FileConfig::load(path)?,
        None => FileConfig::default(),
    };
    let config = config::resolve(
        file,
        Overrides {
            server_name: args.server_name,
            listen: args.listen,
            data_dir: args.data_dir,
            database_url: args.database_url,
            public_base_url: args.public_base_url,
            registration: args.registration,
            federation_overrides: global
                .federation_override
                .iter()
                .map(|(name, url)| format!("{name}={url}"))
                .collect(),
            allow_private_fetch: global.allow_private_fetch,
        },
    )?;
    let store = super::admin::open_store(
        &config.data_dir,
        config.database_url.as_deref(),
        config.database_pool_size,
    )?;
    let federation = roam_server::portable::federation::HttpFederation::new(&config)
        .context("building the server-to-server HTTP client")?;
    let state = AppState::with_federation(config.clone(), store, Arc::new(federation))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        let addr = listener.local_addr()?;
        banner(&config, addr, &state.server_key().key_id.to_string());
        roam_server::run(listener, state, shutdown_signal()).await?;
        println!("roam: stopped");
        Ok(())
    })
}

fn trusted_list(list: &[config::IpCidr]) -> String {
    if list.is_empty() {
        return "none (the socket address is the client)".into();
    }
    list.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// What the server prints when it is up, and the warnings about risky settings.
fn banner(config: &roam_server::ServerConfig, addr: std::net::SocketAddr, key_id: &str) {
    println!(
        "roam: homeserver {} listening on http://{addr}",
        config.server_name
    );
    let data = match &config.database_url {
        Some(url) => format!(
            "PostgreSQL at {}",
            roam_server::store::PgStore::redacted(url)
        ),
        None => config.data_dir.display().to_string(),
    };
    println!(
        "      data in {data}, server key {key_id}, registration {}",
        config.registration
    );
    let edge = &config.edge;
    println!(
        "      edge: request timeout {:?}, header timeout {:?}, at most {} requests at once, trusted proxies: {}",
        edge.request_timeout,
        edge.header_read_timeout,
        edge.max_concurrent_requests,
        trusted_list(&edge.trusted_proxies)
    );
    println!("      try: curl http://{addr}/_matrix/client/versions");
    if config.registration == RegistrationMode::Open && !addr.ip().is_loopback() {
        tracing::warn!(
            "registration is open on a non-loopback address: anyone who reaches it can sign up"
        );
    }
    if edge.trusted_proxies.iter().any(|c| c.prefix_len() == 0) {
        tracing::warn!(
            "trusted_proxies contains a /0 range: any client can name its own address and escape per-address limits"
        );
    }
}
