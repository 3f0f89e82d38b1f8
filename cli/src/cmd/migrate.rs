//! `roam migrate`: the whole move to another homeserver, resumable.

use clap::Args;
use roam_client::migration::{self, MigrateOptions, StepState};
use url::Url;

use roam_identity_core::ServerName;

use super::common::{
    GlobalArgs, KeystoreArg, Progress, Session, joined, parse_url, read_recovery_key, runtime,
};
use super::exit::CliError;

#[derive(Debug, Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    keystore: KeystoreArg,
    /// The new homeserver's base URL.
    #[arg(long, value_name = "URL", value_parser = parse_url, required_unless_present = "abandon")]
    to: Option<Url>,
    /// The localpart to take on the new server [default: the current one].
    #[arg(long, value_name = "LOCALPART")]
    user: Option<String>,
    /// Keep the old server(s) in the list as backups.
    #[arg(long)]
    keep_old_as_backup: bool,
    /// Registration token of the new server, when it registers accounts by token only.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "ROAM_REGISTRATION_TOKEN",
        hide_env_values = true
    )]
    registration_token: Option<String>,
    /// Re-sign the cross-signing keys for the new user ID with the same master key: reads the
    /// Matrix secret-storage recovery key at a hidden prompt (or from standard input) and
    /// opens secret storage on this machine only.
    #[arg(long)]
    recovery_key: bool,
    /// Forget an unfinished migration (ops already signed stay in the log).
    #[arg(long, conflicts_with_all = ["to", "user", "keep_old_as_backup", "recovery_key"])]
    abandon: bool,
}

pub fn run(args: MigrateArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let mut s = Session::open(&args.keystore, global)?;
    if args.abandon {
        let Some(p) = migration::pending(&s.ks) else {
            return Err(CliError::usage("there is no unfinished migration").into());
        };
        s.ks.public.pending_migration = None;
        s.save()?;
        println!("dropped the unfinished migration to {}", p.to_server);
        return Ok(());
    }
    let Some(to) = args.to.clone() else {
        return Err(CliError::usage("--to URL is required").into());
    };
    let recovery_key = if args.recovery_key {
        Some(read_recovery_key()?)
    } else {
        None
    };
    let resuming = migration::pending(&s.ks).is_some();
    if resuming {
        eprintln!("resuming the unfinished migration");
    }
    let opts = MigrateOptions {
        to,
        localpart: args.user.clone(),
        keep_old_as_backup: args.keep_old_as_backup,
        registration_token: args.registration_token.clone(),
        recovery_key,
    };
    let rt = runtime()?;
    let progress = Progress::bar(migration::STEPS.len() as u64, "migrating");
    let path = s.path.clone();
    let pass = s.pass().to_owned();
    let Session { ks, dir, .. } = &mut s;
    let result = rt.block_on(migration::run(
        ks,
        dir,
        &opts,
        |k| Session::save_keystore(&path, &pass, k),
        |step| {
            let mark = match step.state {
                StepState::Done => "done",
                StepState::AlreadyDone => "done earlier",
                StepState::Skipped => "skipped",
            };
            progress.println(&format!("[{mark}] {}: {}", step.step, step.detail));
            progress.step(step.step.name());
        },
    ));
    progress.finish();
    result?;
    rt.block_on(s.refresh_cache());
    let state = roam_client::account::local_log(&s.ks, roam_client::account::now_ms())?.state;
    println!(
        "migrated: {} now lives on {}",
        s.ks.public.user_id.as_deref().unwrap_or("the account"),
        joined(state.servers.iter().map(ServerName::as_str))
    );
    Ok(())
}
