//! `roam lan serve`: answer LAN peers from the verified resolver cache and announce the node
//! with mDNS. Built only with the `serve` feature: it links the resolver's HTTP server.

use std::net::{IpAddr, SocketAddr};

use anyhow::Context;
use clap::Args;
use roam_resolver::lan::MdnsAnnouncer;

use super::common::{GlobalArgs, runtime, shutdown_signal};

/// The cache to share is the global `--cache` directory.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:8448")]
    listen: SocketAddr,
    /// Do not announce with mDNS (peers must be given the URL).
    #[arg(long)]
    no_announce: bool,
}

pub fn serve(args: ServeArgs, global: &GlobalArgs) -> anyhow::Result<()> {
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
