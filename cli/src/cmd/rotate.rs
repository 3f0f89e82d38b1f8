//! `roam rotate` and `roam recover`: the committed key takes over as update key.
//!
//! Both sign a rotate with the key in the recovery file, forking from the last op this
//! keystore signed. On an honest log that is the head, and this is a plain rotation. After a
//! compromise the thief's ops follow that op; identity-core's rule makes a rotate signed by
//! the committed key supersede them, so `recover` is the same operation pushed to every
//! server that holds any branch of the log.
//!
//! Crash safety: the new recovery file is written (beside the old one) before the keystore
//! changes, and only then moved into place, so the next key is never held only in memory.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use roam_client::account::{self, now_ms};
use roam_client::keystore::{KdfParams, RecoveryFile};
use roam_client::sync;
use roam_identity_core::ServerName;
use roam_identity_core::log::{self, SignedOp};

use super::common::{GlobalArgs, KeystoreArg, Progress, Session, default_recovery, runtime};
use super::exit::{CliError, UNREACHABLE};

#[derive(Debug, Args)]
pub struct RotateArgs {
    #[command(flatten)]
    keystore: KeystoreArg,
    /// The recovery file holding the committed key [default: <keystore>.recovery.json].
    #[arg(long, value_name = "FILE")]
    recovery: Option<PathBuf>,
    /// Where to write the new recovery file [default: replace the one used].
    #[arg(long, value_name = "FILE")]
    new_recovery: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RecoverArgs {
    #[command(flatten)]
    keystore: KeystoreArg,
    /// The recovery file holding the committed key (kept offline).
    #[arg(long, value_name = "FILE", required = true)]
    recovery: PathBuf,
    /// Where to write the new recovery file [default: replace the one used].
    #[arg(long, value_name = "FILE")]
    new_recovery: Option<PathBuf>,
}

pub fn rotate(args: RotateArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let recovery = args
        .recovery
        .clone()
        .unwrap_or_else(|| default_recovery(&args.keystore.keystore));
    run(
        &args.keystore,
        global,
        &recovery,
        args.new_recovery.as_deref(),
        false,
    )
}

pub fn recover(args: RecoverArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    run(
        &args.keystore,
        global,
        &args.recovery,
        args.new_recovery.as_deref(),
        true,
    )
}

fn run(
    keystore: &KeystoreArg,
    global: &GlobalArgs,
    recovery_path: &Path,
    new_path: Option<&Path>,
    recovering: bool,
) -> anyhow::Result<()> {
    let mut s = Session::open(keystore, global)?;
    let recovery = RecoveryFile::load(recovery_path, s.pass())
        .with_context(|| format!("opening the recovery file {}", recovery_path.display()))?;
    let before = account::local_log(&s.ks, now_ms())?.state;
    let did = before.did.clone();
    let rt = runtime()?;
    rt.block_on(async {
        let progress = Progress::spinner("asking the servers what they hold");
        // Every server that may hold a branch: ours, and any a foreign branch moved to.
        let (held, answered, _) = sync::gather_ops(&s.dir, &did, &before.servers).await;
        let foreign: Vec<SignedOp> = account::foreign_ops(&s.ks, &held)
            .into_iter()
            .filter_map(|v| SignedOp::from_value(v.clone()).ok())
            .collect();
        let mut targets: Vec<ServerName> = before.servers.clone();
        for op in &foreign {
            if let log::Action::Move { servers } = &op.op.action {
                for srv in servers {
                    if !targets.contains(srv) {
                        targets.push(srv.clone());
                    }
                }
            }
        }
        if !foreign.is_empty() && !recovering {
            eprintln!(
                "warning: the servers hold {} op(s) this keystore did not sign; this rotate supersedes them",
                foreign.len()
            );
        }
        progress.finish();

        let (rotate, next) = account::sign_rotate(&mut s.ks, &recovery)?;
        let final_path = new_path.map(Path::to_path_buf).unwrap_or_else(|| recovery_path.to_path_buf());
        let mut staging = final_path.as_os_str().to_owned();
        staging.push(".new");
        let staging = PathBuf::from(staging);
        next.save(&staging, s.pass(), KdfParams::from_env(), true)
            .with_context(|| format!("writing the new recovery file {}", staging.display()))?;
        s.save()?;
        std::fs::rename(&staging, &final_path)
            .with_context(|| format!("moving {} to {}", staging.display(), final_path.display()))?;

        // Check what the union of every branch and the rotate says, as a resolver will.
        let mut all = held.clone();
        all.extend(s.ks.public.ops.iter().cloned());
        let verified = log::verify_values(&all, Some(&did), now_ms() + log::MAX_FUTURE_SKEW_MS)
            .context("the servers' ops and this rotate do not verify together")?;
        let superseded = verified.superseded.len();

        let progress = Progress::bar(targets.len() as u64, "pushing the rotate");
        let outcomes = sync::push_to_servers(&s.dir, &did, &s.ks.public.ops, &targets, |o| progress.step(o.server.as_str())).await;
        progress.finish();
        let mut ok = 0;
        for o in &outcomes {
            match &o.result {
                Ok(_) => {
                    ok += 1;
                    eprintln!("  {}: has the rotate", o.server)
                }
                Err(e) => eprintln!("  {}: not updated: {e}", o.server),
            }
        }
        println!("{} {}", if recovering { "recovered" } else { "rotated" }, did);
        println!("new update key: {}", roam_identity_core::did::encode_multikey(&verified.state.update_key));
        println!("head: {} (seq {})", rotate.hash, rotate.op.seq);
        if superseded > 0 {
            println!("superseded {superseded} op(s) this keystore did not sign");
        }
        eprintln!("new recovery file: {} (the old one no longer works)", final_path.display());
        eprintln!("WARNING: keep the new recovery file offline, apart from the keystore.");
        if answered.is_empty() && !before.servers.is_empty() {
            eprintln!("note: no server answered before the rotate; the rotate is saved");
        }
        if ok == 0 {
            return Err(CliError::new(
                UNREACHABLE,
                "the rotate is signed and saved, but no server took it yet; run `roam servers set` with your servers, or `roam login`, when they are reachable",
            )
            .into());
        }
        Ok(())
    })
}
