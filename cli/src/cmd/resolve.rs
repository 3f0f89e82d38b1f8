//! `roam resolve`: a user ID or DID to a verified answer, with its status in plain words.
//!
//! The resolver is roam-resolver's `Cached<NetworkResolver>` on the redb cache in the global
//! `--cache` directory (the one the account-changing commands keep current).
//! `--offline` sets the resolver's offline mode (`ResolverConfig::offline`): it asks nobody
//! but the cache and LAN peers (listed with `--lan-peer` or found with `--mdns`), and the
//! cache answers `cached`, `stale` or `lan` by its own rules.
//! `--credential FILE` offers a binding credential as an additional source
//! (`roam_resolver::resolve_user_with_credentials`, spec §10.5): checked against the answer,
//! and carrying it (status `credential`) only when nothing could be reached.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use roam_identity_core::{Did, ServerName, UserId, canonical};
use roam_resolver::lan::MdnsBrowser;
use roam_resolver::{
    CachePolicy, Cached, NetworkResolver, OfferedCredential, Resolution, ResolveError, Resolver,
    ResolverConfig, SystemClock, resolve_user_with_credentials,
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
    /// For a user ID: a binding credential its domain signed (`roam account show
    /// --credential`), as an additional source. It is checked against the answer; only when
    /// nothing can be reached does it carry the answer (status `credential`), and only if its
    /// proof, its window and the account log all check out (spec §10.5).
    #[arg(long, value_name = "FILE")]
    credential: Option<PathBuf>,
    /// With --credential: the issuer's DID document (else fetched from
    /// `https://<server>/.well-known/did.json` or the override, else keys fetched earlier).
    #[arg(long, value_name = "FILE", requires = "credential")]
    did_document: Option<PathBuf>,
    /// With --credential: the account's bundle, as `GET /_roam/v1/users/{userId}` serves it
    /// (else what the cache and LAN peers know of the credential's DID).
    #[arg(long, value_name = "FILE", requires = "credential")]
    bundle: Option<PathBuf>,
}

enum Subject {
    User(UserId),
    Did(Did),
}

pub fn run(args: ResolveArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let subject = parse_subject(&args.subject)?;
    let via = parse_via(&args.via)?;
    let offered = offered_credential(&args, &subject)?;
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
        let resolver = Cached::new(network.clone(), store, clock, policy);
        let progress = Progress::spinner("resolving");
        let result = match (&subject, &offered) {
            (Subject::User(u), Some(o)) => {
                let offered = std::slice::from_ref(o);
                resolve_user_with_credentials(&resolver, &network, u, offered).await
            }
            (Subject::User(u), None) => resolver.resolve_user(u).await,
            (Subject::Did(d), _) => resolver.resolve_did_via(d, &via).await,
        };
        progress.finish();
        report(result, args.json, &args.subject)
    })
}

/// The `--credential` file with the files given with it, read and parsed.
fn offered_credential(
    args: &ResolveArgs,
    subject: &Subject,
) -> anyhow::Result<Option<OfferedCredential>> {
    let Some(path) = &args.credential else {
        return Ok(None);
    };
    if let Subject::Did(_) = subject {
        return Err(CliError::usage("--credential is for a user ID: it vouches for one").into());
    }
    let read = |p: &PathBuf| -> anyhow::Result<serde_json::Value> {
        let bytes = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
        canonical::parse_strict(&bytes)
            .map_err(|e| CliError::usage(format!("{} is not strict JSON: {e}", p.display())).into())
    };
    Ok(Some(OfferedCredential {
        credential: read(path)?,
        from: path.display().to_string(),
        issuer_document: args.did_document.as_ref().map(read).transpose()?,
        bundle: args.bundle.as_ref().map(read).transpose()?,
    }))
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
