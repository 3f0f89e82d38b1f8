//! `roam resolve`: a user ID or DID to a verified answer, with its status in plain words.
//!
//! The resolver is roam-resolver's `Cached<NetworkResolver>` on a redb cache in `--cache`.
//! `--offline` asks nobody but the cache and LAN peers: every server the answer could involve
//! is pointed at a closed local port, so the network resolver fails over to LAN peers and the
//! cache answers `cached` or `stale` by its own rules.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use roam_identity_core::{Did, ServerName, UserId};
use roam_resolver::lan::MdnsBrowser;
use roam_resolver::{
    CachePolicy, CacheStore, Cached, NetworkResolver, Resolver, ResolverConfig, SystemClock,
};
use url::Url;

use super::common::{GlobalArgs, Progress, default_cache_dir, print_json, runtime};
use super::exit::{CliError, USAGE};

#[derive(Debug, Args)]
pub struct ResolveArgs {
    /// A user ID (@alice:a.example) or a DID (did:key:z6Mk…).
    #[arg(value_name = "USER_ID|DID")]
    subject: String,
    /// Print the answer (or the error) as JSON.
    #[arg(long)]
    json: bool,
    /// Directory of the resolver cache [default: ~/.cache/roam].
    #[arg(long, value_name = "DIR")]
    cache: Option<PathBuf>,
    /// Answer from the cache and LAN peers only; contact no server.
    #[arg(long)]
    offline: bool,
    /// A LAN peer (a `roam lan serve` node) to ask when the origin cannot be reached
    /// (repeatable).
    #[arg(long = "lan-peer", value_name = "URL")]
    lan_peer: Vec<Url>,
    /// Also look for LAN peers with mDNS for a moment before resolving.
    #[arg(long)]
    mdns: bool,
    /// Serve a cached answer without rechecking while it is younger than this.
    #[arg(long, value_name = "SECONDS", default_value_t = 600)]
    max_age: u64,
    /// For a DID: a server to ask first (repeatable).
    #[arg(long, value_name = "SERVER_NAME")]
    via: Vec<String>,
}

enum Subject {
    User(UserId),
    Did(Did),
}

/// A URL nothing answers on: a loopback port this process bound and released.
fn closed_port_url() -> anyhow::Result<Url> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("finding a closed port")?;
    let port = l.local_addr()?.port();
    drop(l);
    Ok(Url::parse(&format!("http://127.0.0.1:{port}"))?)
}

pub fn run(args: ResolveArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let subject = if args.subject.starts_with("did:") {
        Subject::Did(
            Did::parse(&args.subject)
                .map_err(|e| CliError::new(USAGE, format!("{:?}: {e}", args.subject)))?,
        )
    } else {
        Subject::User(UserId::parse(&args.subject).map_err(|e| {
            CliError::new(
                USAGE,
                format!("{:?} is neither a user ID nor a DID: {e}", args.subject),
            )
        })?)
    };
    let mut via = Vec::new();
    for v in &args.via {
        via.push(
            ServerName::parse(v).map_err(|e| CliError::new(USAGE, format!("--via {v:?}: {e}")))?,
        );
    }
    let dir = args.cache.clone().unwrap_or_else(default_cache_dir);
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("creating the cache directory {}", dir.display()))?;
    let store_path = dir.join("resolver.redb");
    let store = CacheStore::open(&store_path).with_context(|| {
        format!(
            "opening the resolver cache {} (is `roam lan serve` using it?)",
            store_path.display()
        )
    })?;
    let rt = runtime()?;
    rt.block_on(async {
        let mut config = ResolverConfig {
            overrides: global.overrides(),
            allow_private: global.allow_private_fetch,
            lan_peers: args.lan_peer.clone(),
            ..ResolverConfig::default()
        };
        let mut offline_url = None;
        if args.offline {
            let closed = closed_port_url()?;
            offline_url = Some(closed.as_str().trim_end_matches('/').to_owned());
            let mut names: Vec<ServerName> = via.clone();
            let cached = match &subject {
                Subject::User(u) => {
                    names.push(u.server_name());
                    store.resolution_for_user(u).await.ok().flatten()
                }
                Subject::Did(d) => store.resolution_for_did(d).await.ok().flatten(),
            };
            if let Some(c) = cached {
                names.extend(c.servers.iter().cloned());
                names.extend(c.user_ids.iter().map(UserId::server_name));
            }
            config.overrides = names.into_iter().map(|n| (n, closed.clone())).collect();
            config.did_servers.clear();
        }
        let clock = Arc::new(SystemClock);
        let network =
            NetworkResolver::new(config, clock.clone()).context("setting up the resolver")?;
        let _browser = if args.mdns {
            let progress = Progress::spinner("looking for LAN peers (mDNS)");
            let b = MdnsBrowser::start(network.lan_peers().clone());
            if let Err(e) = &b {
                eprintln!("warning: mDNS unavailable: {e}");
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
            progress.finish();
            b.ok()
        } else {
            None
        };
        let policy = CachePolicy {
            positive_ttl_ms: args.max_age.saturating_mul(1000),
            ..CachePolicy::default()
        };
        let resolver = Cached::new(network, store, clock, policy);
        let progress = Progress::spinner("resolving");
        let result = match &subject {
            Subject::User(u) => resolver.resolve_user(u).await,
            Subject::Did(d) => resolver.resolve_did_via(d, &via).await,
        };
        progress.finish();
        match result {
            Ok(mut res) => {
                if let Some(closed) = &offline_url {
                    // The closed port is how --offline keeps the resolver off the network;
                    // say that rather than "not reachable: http://127.0.0.1:…".
                    let before = res.warnings.len();
                    res.warnings.retain(|w| !w.contains(closed.as_str()));
                    if res.warnings.len() != before {
                        res.warnings
                            .insert(0, "offline: no server was asked (--offline)".to_owned());
                    }
                }
                if args.json {
                    print_json(&serde_json::to_value(res.to_wire())?);
                } else {
                    let w = res.to_wire();
                    println!("status:     {}", w.status);
                    println!("{}", w.explanation);
                    if let Some(u) = &w.user_id {
                        println!("user ID:    {u}");
                    }
                    println!("DID:        {}", w.did);
                    println!("update key: {}", w.update_key);
                    println!(
                        "servers:    {}",
                        w.servers
                            .iter()
                            .map(ServerName::as_str)
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                    println!(
                        "user IDs:   {}",
                        w.user_ids
                            .iter()
                            .map(UserId::as_str)
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                    println!(
                        "devices:    {}",
                        w.devices
                            .keys()
                            .map(|d| d.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                    println!("head:       {} (seq {})", w.head, w.seq);
                    for warning in &w.warnings {
                        println!("warning:    {warning}");
                    }
                }
                Ok(())
            }
            Err(e) => {
                if args.json {
                    print_json(&serde_json::to_value(e.to_wire())?);
                }
                Err(anyhow::Error::new(e).context(format!("could not resolve {}", args.subject)))
            }
        }
    })
}
