//! `roam rotate` and `roam recover`: the committed key takes over as update key.
//!
//! Both sign a rotate with the key in the recovery file, forking from the last op this
//! keystore signed. On an honest log that is the head, and this is a plain rotation. After a
//! compromise the thief's ops follow that op; identity-core's rule makes a rotate signed by
//! the committed key supersede them, so `recover` is the same operation pushed to every
//! server that holds any branch of the log.
//!
//! The committed key comes from the recovery file or, with `--phrase`, from the 24-word
//! recovery phrase (hidden prompt or standard input; never a flag value). Like `key new`, a
//! rotate shows the new recovery key once as a phrase (unless `--no-phrase`): the old
//! phrase, like the old file, no longer works.
//!
//! Crash safety: the new recovery file is written (beside the old one) before the keystore
//! changes, and only then moved into place, so the next key is never held only in memory.
//! Once a server has the rotate, the verified result goes into the local resolver cache.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use roam_client::account::{self, now_ms};
use roam_client::keystore::{KdfParams, RecoveryFile};
use roam_client::{phrase, sync};
use roam_identity_core::log::{self, AccountState, SignedOp, VerifiedLog};
use roam_identity_core::{Did, ServerName};
use serde_json::Value;

use super::common::{
    GlobalArgs, KeystoreArg, Progress, Session, default_recovery, read_phrase, runtime, show_phrase,
};
use super::exit::CliError;

#[derive(Debug, Args)]
pub struct RotateArgs {
    #[command(flatten)]
    keystore: KeystoreArg,
    /// The recovery file holding the committed key [default: <keystore>.recovery.json].
    #[arg(long, value_name = "FILE", conflicts_with = "phrase")]
    recovery: Option<PathBuf>,
    #[command(flatten)]
    key: KeyArgs,
}

#[derive(Debug, Args)]
pub struct RecoverArgs {
    #[command(flatten)]
    keystore: KeystoreArg,
    /// The recovery file holding the committed key (kept offline).
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present = "phrase",
        conflicts_with = "phrase"
    )]
    recovery: Option<PathBuf>,
    #[command(flatten)]
    key: KeyArgs,
}

/// How the committed key comes in and the new one goes out (shared by rotate and recover).
#[derive(Debug, Args)]
struct KeyArgs {
    /// Give the committed key as the 24-word recovery phrase instead of a file: typed at a
    /// hidden prompt, or read from standard input when it is not a terminal.
    #[arg(long)]
    phrase: bool,
    /// Where to write the new recovery file [default: replace the one used, or
    /// <keystore>.recovery.json with --phrase].
    #[arg(long, value_name = "FILE")]
    new_recovery: Option<PathBuf>,
    /// Do not show the new recovery key as a 24-word phrase (keep only the new file).
    #[arg(long)]
    no_phrase: bool,
}

/// Where the committed key comes from.
enum Source {
    File(PathBuf),
    Phrase,
}

/// What the user asked for.
struct Request<'a> {
    source: Source,
    new_path: Option<&'a Path>,
    show_phrase: bool,
    recovering: bool,
}

pub fn rotate(args: RotateArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let file = args
        .recovery
        .unwrap_or_else(|| default_recovery(&args.keystore.keystore));
    run(&args.keystore, global, &args.key.request(Some(file), false))
}

pub fn recover(args: RecoverArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    run(
        &args.keystore,
        global,
        &args.key.request(args.recovery, true),
    )
}

impl KeyArgs {
    /// The request: the phrase if asked for, else `file`.
    fn request(&self, file: Option<PathBuf>, recovering: bool) -> Request<'_> {
        let source = match file {
            Some(f) if !self.phrase => Source::File(f),
            _ => Source::Phrase,
        };
        Request {
            source,
            new_path: self.new_recovery.as_deref(),
            show_phrase: !self.no_phrase,
            recovering,
        }
    }
}

/// What the servers hold before the rotate.
struct Survey {
    /// Every op any server holds, all branches.
    held: Vec<Value>,
    /// Ops among them this keystore did not sign.
    foreign: usize,
    /// Servers to push the rotate to: ours, and any a foreign branch moved to.
    targets: Vec<ServerName>,
    /// Whether any server answered.
    answered: bool,
}

fn run(keystore: &KeystoreArg, global: &GlobalArgs, req: &Request<'_>) -> anyhow::Result<()> {
    let mut s = Session::open(keystore, global)?;
    let recovery = load_recovery(&s, &req.source)?;
    let final_path = match (req.new_path, &req.source) {
        (Some(p), _) => p.to_path_buf(),
        (None, Source::File(f)) => f.clone(),
        (None, Source::Phrase) => default_recovery(&s.path),
    };
    let before = account::local_log(&s.ks, now_ms())?.state;
    let rt = runtime()?;
    rt.block_on(async {
        let survey = survey(&s, &before).await;
        if survey.foreign > 0 && !req.recovering {
            eprintln!(
                "warning: the servers hold {} op(s) this keystore did not sign; this rotate supersedes them",
                survey.foreign
            );
        }
        let (rotate, next) = sign_and_keep(&mut s, &recovery, &final_path)?;
        let verified = verify_union(&survey.held, &s.ks.public.ops, &before.did)?;
        let delivered = push(&s, &before.did, &survey.targets).await;
        print_outcome(req, &before.did, &rotate, &verified, &final_path);
        if req.show_phrase {
            show_phrase(&phrase::encode(&next.next_key));
        }
        if !survey.answered && !before.servers.is_empty() {
            eprintln!("note: no server answered before the rotate; the rotate is saved");
        }
        if delivered == 0 {
            return Err(CliError::not_delivered(
                "the rotate is signed and saved, but no server took it yet; run `roam servers set` with your servers, or `roam login`, when they are reachable",
            )
            .into());
        }
        s.refresh_cache().await;
        Ok(())
    })
}

/// The committed key, from the recovery file or the phrase (checked against the log).
fn load_recovery(s: &Session, source: &Source) -> anyhow::Result<RecoveryFile> {
    match source {
        Source::File(path) => RecoveryFile::load(path, s.pass())
            .with_context(|| format!("opening the recovery file {}", path.display())),
        Source::Phrase => {
            let text = read_phrase()?;
            Ok(account::recovery_from_phrase(&s.ks, &text)?)
        }
    }
}

/// Asks every server of the log what it holds, and finds the ops this keystore did not sign.
async fn survey(s: &Session, before: &AccountState) -> Survey {
    let progress = Progress::spinner("asking the servers what they hold");
    let (held, answered, _) = sync::gather_ops(&s.dir, &before.did, &before.servers).await;
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
    progress.finish();
    Survey {
        held,
        foreign: foreign.len(),
        targets,
        answered: !answered.is_empty(),
    }
}

/// Signs the rotate and keeps the new key safe: the new recovery file is written beside the
/// final path first, then the keystore, then the file is moved into place.
fn sign_and_keep(
    s: &mut Session,
    recovery: &RecoveryFile,
    final_path: &Path,
) -> anyhow::Result<(SignedOp, RecoveryFile)> {
    let (rotate, next) = account::sign_rotate(&mut s.ks, recovery)?;
    let mut staging = final_path.as_os_str().to_owned();
    staging.push(".new");
    let staging = PathBuf::from(staging);
    next.save(&staging, s.pass(), KdfParams::from_env(), true)
        .with_context(|| format!("writing the new recovery file {}", staging.display()))?;
    s.save()?;
    std::fs::rename(&staging, final_path)
        .with_context(|| format!("moving {} to {}", staging.display(), final_path.display()))?;
    Ok((rotate, next))
}

/// What the union of every branch and the rotate says, as a resolver will see it.
fn verify_union(held: &[Value], mine: &[Value], did: &Did) -> anyhow::Result<VerifiedLog> {
    let mut all = held.to_vec();
    all.extend(mine.iter().cloned());
    log::verify_values(&all, Some(did), now_ms() + log::MAX_FUTURE_SKEW_MS)
        .context("the servers' ops and this rotate do not verify together")
}

/// Pushes the log to `targets`, saying how each went; returns how many took it.
async fn push(s: &Session, did: &Did, targets: &[ServerName]) -> usize {
    let progress = Progress::bar(targets.len() as u64, "pushing the rotate");
    let outcomes = sync::push_to_servers(&s.dir, did, &s.ks.public.ops, targets, |o| {
        progress.step(o.server.as_str())
    })
    .await;
    progress.finish();
    for o in &outcomes {
        match &o.result {
            Ok(_) => eprintln!("  {}: has the rotate", o.server),
            Err(e) => eprintln!("  {}: not updated: {e}", o.server),
        }
    }
    outcomes.iter().filter(|o| o.result.is_ok()).count()
}

fn print_outcome(
    req: &Request<'_>,
    did: &Did,
    rotate: &SignedOp,
    verified: &VerifiedLog,
    final_path: &Path,
) {
    let verb = if req.recovering {
        "recovered"
    } else {
        "rotated"
    };
    println!("{verb} {did}");
    println!(
        "new update key: {}",
        roam_identity_core::did::encode_multikey(&verified.state.update_key)
    );
    println!("head: {} (seq {})", rotate.hash, rotate.op.seq);
    if !verified.superseded.is_empty() {
        println!(
            "superseded {} op(s) this keystore did not sign",
            verified.superseded.len()
        );
    }
    let old = match req.source {
        Source::File(_) => "the old one no longer works",
        Source::Phrase => "the old phrase and recovery file no longer work",
    };
    eprintln!("new recovery file: {} ({old})", final_path.display());
    eprintln!("WARNING: keep the new recovery file offline, apart from the keystore.");
}
