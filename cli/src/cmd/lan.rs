//! `roam lan serve` and `roam lan peers`: share the verified resolver cache on the LAN.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use roam_resolver::lan::{MdnsAnnouncer, MdnsBrowser};
use roam_resolver::{NetworkResolver, ResolverConfig, SystemClock};
use serde_json::json;

use super::common::{GlobalArgs, Progress, print_json, runtime};

#[derive(Debug, Args)]
pub struct LanArgs {
    #[command(subcommand)]
    command: LanCommand,
}

#[derive(Debug, Subcommand)]
enum LanCommand {
    /// Serve the bundles in your resolver cache to LAN peers (they verify every one) and
    /// announce this node with mDNS (_roam._tcp.local).
    Serve(ServeArgs),
    /// List resolver nodes announced on the LAN.
    Peers(PeersArgs),
}

/// The cache to share is the global `--cache` directory.
#[derive(Debug, Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:8448")]
    listen: SocketAddr,
    /// Do not announce with mDNS (peers must be given the URL).
    #[arg(long)]
    no_announce: bool,
}

#[derive(Debug, Args)]
struct PeersArgs {
    /// How long to listen for announcements.
    #[arg(long, value_name = "SECONDS", default_value_t = 3)]
    wait: u64,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(args: LanArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    match args.command {
        LanCommand::Serve(a) => serve(a, global),
        LanCommand::Peers(a) => peers(a, global),
    }
}

fn serve(args: ServeArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let path = global.cache_file();
    let store = global.cache_store()?;
    let rt = runtime()?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        let addr = listener.local_addr()?;
        println!("roam: serving LAN answers from {} on http://{addr}", path.display());
        let _announcer = if args.no_announce {
            None
        } else {
            let ips: Vec<IpAddr> = if addr.ip().is_unspecified() {
                Vec::new()
            } else {
                vec![addr.ip()]
            };
            let instance = format!("roam-{}", addr.port());
            match MdnsAnnouncer::announce(&instance, &ips, addr.port()) {
                Ok(a) => {
                    println!("      announced as {}", a.fullname());
                    Some(a)
                }
                Err(e) => {
                    eprintln!("warning: mDNS announcement failed ({e}); peers need --lan-peer http://{addr}");
                    None
                }
            }
        };
        roam_resolver::serve(listener, store, shutdown_signal())
            .await
            .context("serving")?;
        println!("roam: stopped");
        Ok(())
    })
}

fn peers(args: PeersArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let rt = runtime()?;
    let list = rt.block_on(async {
        let config = ResolverConfig {
            allow_private: global.allow_private_fetch,
            ..ResolverConfig::default()
        };
        let network = NetworkResolver::new(config, std::sync::Arc::new(SystemClock))?;
        let browser = MdnsBrowser::start(network.lan_peers().clone()).context("starting mDNS")?;
        let progress = Progress::spinner("listening for LAN peers");
        tokio::time::sleep(Duration::from_secs(args.wait)).await;
        progress.finish();
        drop(browser);
        anyhow::Ok(network.lan_peers().list())
    })?;
    if args.json {
        print_json(&json!({"peers": list.iter().map(|u| u.as_str()).collect::<Vec<_>>()}));
    } else if list.is_empty() {
        println!("no LAN peers found in {} s", args.wait);
    } else {
        for u in list {
            println!("{u}");
        }
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
