//! `roam servers set`: the ordered server list (primary first, then backups).

use anyhow::Context;
use clap::{Args, Subcommand};
use roam_client::account::{self, now_ms};
use roam_client::sync;
use roam_identity_core::ServerName;
use roam_identity_core::log::Action;
use url::Url;

use super::common::{GlobalArgs, KeystoreArg, Progress, Session, joined, parse_url, runtime};
use super::exit::CliError;

#[derive(Debug, Args)]
pub struct ServersArgs {
    #[command(subcommand)]
    command: ServersCommand,
}

#[derive(Debug, Subcommand)]
enum ServersCommand {
    /// Sign a `move` listing these servers: the first is the primary, the rest are backups
    /// (roaming: resolvers fail over in order).
    Set(SetArgs),
}

#[derive(Debug, Args)]
struct SetArgs {
    #[command(flatten)]
    keystore: KeystoreArg,
    /// Base URLs of the servers, primary first.
    #[arg(value_name = "URL", required = true, value_parser = parse_url)]
    urls: Vec<Url>,
}

pub fn run(args: ServersArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let ServersCommand::Set(args) = args.command;
    let mut s = Session::open(&args.keystore, global)?;
    let before = account::local_log(&s.ks, now_ms())?.state;
    let did = before.did.clone();
    let rt = runtime()?;
    rt.block_on(async {
        let progress = Progress::bar(args.urls.len() as u64 * 2, "asking servers for their names");
        let mut servers: Vec<ServerName> = Vec::new();
        for url in &args.urls {
            let (name, _) = s
                .dir
                .identify(url)
                .await
                .with_context(|| format!("asking {url} for its server name"))?;
            if servers.contains(&name) {
                return Err(CliError::usage(format!("{name} is listed twice")).into());
            }
            servers.push(name);
            progress.step(url.as_str());
        }
        if servers.len() > roam_identity_core::log::MAX_SERVERS {
            return Err(CliError::usage("at most 10 servers").into());
        }
        if before.servers == servers {
            // Signed by an earlier run: make sure every server has it.
            eprintln!("the log already lists {}; updating the servers", list(&servers));
        } else {
            account::sign_next(&mut s.ks, Action::Move { servers: servers.clone() })?;
            s.save()?;
        }
        let mut targets = servers.clone();
        for old in &before.servers {
            if !targets.contains(old) {
                targets.push(old.clone());
            }
        }
        let outcomes = sync::push_to_servers(&s.dir, &did, &s.ks.public.ops, &targets, |o| progress.step(o.server.as_str())).await;
        progress.finish();
        let mut reached_new = false;
        for o in &outcomes {
            match &o.result {
                Ok(n) => {
                    reached_new |= servers.contains(&o.server);
                    eprintln!("  {}: up to date ({n} new op(s))", o.server)
                }
                Err(e) => eprintln!("  {}: not updated: {e}", o.server),
            }
        }
        println!("servers: {}", list(&servers));
        if !reached_new {
            return Err(CliError::not_delivered("the move is signed and saved, but none of the new servers took it; run the same command again when they are reachable",
            )
            .into());
        }
        s.refresh_cache().await;
        Ok(())
    })
}

fn list(servers: &[ServerName]) -> String {
    joined(servers.iter().map(ServerName::as_str))
}
