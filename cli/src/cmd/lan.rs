//! `roam lan serve` and `roam lan peers`: share the verified resolver cache on the LAN.
//! Serving (`lan_serve`) links an HTTP server, so it exists only with the `serve` feature.

use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use roam_resolver::lan::MdnsBrowser;
use roam_resolver::{NetworkResolver, ResolverConfig, SystemClock};
use serde_json::json;

use super::common::{GlobalArgs, Progress, print_json, runtime};
#[cfg(feature = "serve")]
use super::lan_serve;

#[derive(Debug, Args)]
pub struct LanArgs {
    #[command(subcommand)]
    command: LanCommand,
}

#[derive(Debug, Subcommand)]
enum LanCommand {
    /// Serve the bundles in your resolver cache to LAN peers (they verify every one) and
    /// announce this node with mDNS (_roam._tcp.local).
    #[cfg(feature = "serve")]
    Serve(lan_serve::ServeArgs),
    /// List resolver nodes announced on the LAN.
    Peers(PeersArgs),
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
        #[cfg(feature = "serve")]
        LanCommand::Serve(a) => lan_serve::serve(a, global),
        LanCommand::Peers(a) => peers(a, global),
    }
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
