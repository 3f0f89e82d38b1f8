//! `roam export` and `roam import`: the portable account file.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use roam_client::account::{self, now_ms};
use roam_client::export;
use roam_client::homeserver::Homeserver;
use roam_client::keystore::{KeystoreError, write_private};
use roam_client::sync;
use roam_identity_core::UserId;
use roam_identity_core::bundle;
use url::Url;

use super::common::{GlobalArgs, KeystoreArg, Progress, Session, parse_url, print_json, runtime};
use super::exit::CliError;

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    keystore: KeystoreArg,
    /// The file to write.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Include the keystore itself (still encrypted under its passphrase), so the file can
    /// restore this client elsewhere. Without it the file holds no secret.
    #[arg(long)]
    include_secrets: bool,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The export file.
    #[arg(long = "in", value_name = "FILE")]
    input: PathBuf,
    /// The homeserver to hand the account's log to (it must be named in the log).
    #[arg(long, value_name = "URL", value_parser = parse_url)]
    homeserver: Url,
    /// Also restore the keystore carried by the file (exported with --include-secrets) here.
    #[arg(long, value_name = "FILE")]
    keystore: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

pub fn export(args: ExportArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    if args.out.exists() {
        return Err(KeystoreError::Exists {
            path: args.out.display().to_string(),
        }
        .into());
    }
    let s = Session::open(&args.keystore, global)?;
    let local = account::local_log(&s.ks, now_ms())?;
    let did = local.state.did.clone();
    let mut servers = local.state.servers.clone();
    for u in &local.state.user_ids {
        if !servers.contains(&u.server_name()) {
            servers.push(u.server_name());
        }
    }
    let rt = runtime()?;
    let fetched = rt.block_on(async {
        let progress = Progress::bar(servers.len() as u64, "collecting attestations");
        let mut out = Vec::new();
        for server in &servers {
            let got = match s.dir.homeserver(server).await {
                Ok(hs) => hs.account_bundle(&did).await,
                Err(e) => Err(e),
            };
            match got {
                Ok(b) => out.push((server.to_string(), b)),
                Err(e) => eprintln!("warning: {server}: {e}"),
            }
            progress.step(server.as_str());
        }
        out
    });
    let now = now_ms();
    let (b, warnings) = export::assemble(&did, &s.ks.public.ops, &fetched, now);
    for w in warnings {
        eprintln!("warning: {w}");
    }
    let verified =
        bundle::verify(&b, Some(&did), now).context("the assembled bundle does not verify")?;
    let keystore = if args.include_secrets {
        let text = std::fs::read_to_string(&s.path)
            .with_context(|| format!("reading {}", s.path.display()))?;
        Some(serde_json::from_str(&text).context("the keystore file is not JSON")?)
    } else {
        None
    };
    let file = export::to_file(&b, &verified, keystore, now);
    write_private(&args.out, &(serde_json::to_string_pretty(&file)? + "\n"))?;
    println!("{}", args.out.display());
    eprintln!(
        "exported {} op(s), {} attestation(s), {} device(s){}",
        b.log.len(),
        b.attestations.len(),
        verified.log.state.devices.len(),
        if args.include_secrets {
            ", and the encrypted keystore"
        } else {
            "; no secrets"
        }
    );
    Ok(())
}

pub fn import(args: ImportArgs, _global: &GlobalArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.input).map_err(|source| KeystoreError::Io {
        path: args.input.display().to_string(),
        source,
    })?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| export::ExportError::Format(format!("{}: {e}", args.input.display())))?;
    let imported = export::from_file(&value, now_ms())?;
    let state = &imported.verified.log.state;
    if let Some(path) = &args.keystore {
        let Some(ks) = &imported.keystore else {
            return Err(CliError::usage(
                "the file carries no keystore (export it with --include-secrets)",
            )
            .into());
        };
        if path.exists() {
            return Err(KeystoreError::Exists {
                path: path.display().to_string(),
            }
            .into());
        }
        write_private(path, &(serde_json::to_string_pretty(ks)? + "\n"))?;
    }
    let rt = runtime()?;
    let (server, accepted) = rt.block_on(async {
        let progress = Progress::spinner("handing the log to the homeserver");
        let hs = Homeserver::new(args.homeserver.clone())?;
        let server = hs.server_name().await?;
        if !state.servers.contains(&server) {
            return Err(CliError::not_allowed(format!(
                    "the account's log does not name {server} (it names {}); sign a move first with `roam servers set` or `roam migrate --to {}`",
                    state.servers.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
                    args.homeserver
                ),
            )
            .into());
        }
        let n = sync::push_ops(&hs, &state.did, &imported.bundle.log).await?;
        progress.finish();
        anyhow::Ok((server, n))
    })?;
    let summary = serde_json::json!({
        "did": state.did.as_str(),
        "user_ids": state.user_ids.iter().map(UserId::as_str).collect::<Vec<_>>(),
        "servers": state.servers.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        "devices": state.devices.keys().map(|d| d.as_str()).collect::<Vec<_>>(),
        "head": state.head.to_string(),
        "homeserver": server.as_str(),
        "new_ops": accepted,
        "keystore_restored": args.keystore.as_ref().map(|p| p.display().to_string()),
    });
    if args.json {
        print_json(&summary);
    } else {
        println!(
            "imported {} into {server}: {accepted} new op(s), head {}",
            state.did, state.head
        );
        if let Some(p) = &args.keystore {
            println!(
                "keystore restored to {} (same passphrase as when exported)",
                p.display()
            );
        }
    }
    Ok(())
}
