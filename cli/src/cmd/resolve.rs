//! `roam resolve`: a user ID or DID to a verified answer, with its status in plain words.
//!
//! The resolver is roam-resolver's `Cached<NetworkResolver>` on a redb cache in `--cache`.
//! `--offline` sets the resolver's offline mode (`ResolverConfig::offline`): it asks nobody
//! but the cache and LAN peers (listed with `--lan-peer` or found with `--mdns`), and the
//! cache answers `cached`, `stale` or `lan` by its own rules.

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
        let config = ResolverConfig {
            overrides: global.overrides(),
            allow_private: global.allow_private_fetch,
            lan_peers: args.lan_peer.clone(),
            offline: args.offline,
            ..ResolverConfig::default()
        };
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
            Ok(res) => {
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
