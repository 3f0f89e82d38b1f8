//! `roam resolve`: a user ID or DID to a verified answer, with its status in plain words.
//!
//! The resolver is roam-resolver's `Cached<NetworkResolver>` on the redb cache in the global
//! `--cache` directory (the one the account-changing commands keep current).
//! `--offline` sets the resolver's offline mode (`ResolverConfig::offline`): it asks nobody
//! but the cache and LAN peers (listed with `--lan-peer` or found with `--mdns`), and the
//! cache answers `cached`, `stale` or `lan` by its own rules.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use roam_identity_core::{Did, ServerName, UserId};
use roam_resolver::lan::MdnsBrowser;
use roam_resolver::{
    CachePolicy, Cached, NetworkResolver, Resolution, ResolveError, Resolver, ResolverConfig,
    SystemClock,
};
use url::Url;

use super::common::{GlobalArgs, Progress, joined, print_json, runtime};
use super::exit::CliError;

#[derive(Debug, Args)]
pub struct ResolveArgs {
    /// A user ID (@alice:a.example) or a DID (did:key:z6Mk…).
    #[arg(value_name = "USER_ID|DID")]
    subject: String,
    /// Print the answer (or the error) as JSON.
    #[arg(long)]
    json: bool,
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
    let subject = parse_subject(&args.subject)?;
    let via = parse_via(&args.via)?;
    let store = global.cache_store()?;
    let rt = runtime()?;
    rt.block_on(async {
        let config = ResolverConfig {
            lan_peers: args.lan_peer.clone(),
            offline: args.offline,
            ..global.resolver_config()
        };
        let clock = Arc::new(SystemClock);
        let network =
            NetworkResolver::new(config, clock.clone()).context("setting up the resolver")?;
        let _browser = if args.mdns {
            browse_lan(&network).await
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
        report(result, args.json, &args.subject)
    })
}

fn parse_subject(subject: &str) -> Result<Subject, CliError> {
    if subject.starts_with("did:") {
        return Did::parse(subject)
            .map(Subject::Did)
            .map_err(|e| CliError::usage(format!("{subject:?}: {e}")));
    }
    UserId::parse(subject)
        .map(Subject::User)
        .map_err(|e| CliError::usage(format!("{subject:?} is neither a user ID nor a DID: {e}")))
}

fn parse_via(via: &[String]) -> Result<Vec<ServerName>, CliError> {
    via.iter()
        .map(|v| ServerName::parse(v).map_err(|e| CliError::usage(format!("--via {v:?}: {e}"))))
        .collect()
}

/// Looks for LAN peers with mDNS for two seconds; the browser keeps adding peers while kept.
async fn browse_lan(network: &NetworkResolver) -> Option<MdnsBrowser> {
    let progress = Progress::spinner("looking for LAN peers (mDNS)");
    let b = MdnsBrowser::start(network.lan_peers().clone());
    if let Err(e) = &b {
        eprintln!("warning: mDNS unavailable: {e}");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    progress.finish();
    b.ok()
}

/// Prints the answer (or the JSON error) and turns a failure into the command's error.
fn report(
    result: Result<Resolution, ResolveError>,
    json: bool,
    subject: &str,
) -> anyhow::Result<()> {
    match result {
        Ok(res) if json => {
            print_json(&serde_json::to_value(res.to_wire())?);
            Ok(())
        }
        Ok(res) => {
            print_resolution(&res);
            Ok(())
        }
        Err(e) => {
            if json {
                print_json(&serde_json::to_value(e.to_wire())?);
            }
            Err(anyhow::Error::new(e).context(format!("could not resolve {subject}")))
        }
    }
}

fn print_resolution(res: &Resolution) {
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
        joined(w.servers.iter().map(ServerName::as_str))
    );
    println!(
        "user IDs:   {}",
        joined(w.user_ids.iter().map(UserId::as_str))
    );
    println!(
        "devices:    {}",
        joined(w.devices.keys().map(|d| d.as_str()))
    );
    println!("head:       {} (seq {})", w.head, w.seq);
    for warning in &w.warnings {
        println!("warning:    {warning}");
    }
}
