//! `roam key new`: the account key and the committed next key, written to the encrypted
//! keystore and the recovery file, and shown once as a 24-word recovery phrase.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use roam_client::keystore::{KdfParams, KeystoreError};
use roam_client::{account, phrase};
use serde_json::json;

use super::common::{
    KeystoreArg, PHRASE_WARNING, Progress, default_recovery, passphrase, print_json, show_phrase,
};

#[derive(Debug, Args)]
pub struct KeyArgs {
    #[command(subcommand)]
    command: KeyCommand,
}

#[derive(Debug, Subcommand)]
enum KeyCommand {
    /// Create the account key (your DID) and the committed next key; write the encrypted
    /// keystore and the recovery file.
    New(NewArgs),
}

#[derive(Debug, Args)]
struct NewArgs {
    #[command(flatten)]
    keystore: KeystoreArg,
    /// Where to write the recovery file [default: <keystore>.recovery.json]. Move it offline.
    #[arg(long, value_name = "FILE")]
    recovery: Option<PathBuf>,
    /// Do not show the recovery key as a 24-word phrase (keep only the recovery file).
    #[arg(long)]
    no_phrase: bool,
    /// Print JSON (the DID, the files, and the phrase unless --no-phrase) instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(args: KeyArgs) -> anyhow::Result<()> {
    let KeyCommand::New(args) = args.command;
    let path = args.keystore.keystore.clone();
    let recovery_path = args
        .recovery
        .clone()
        .unwrap_or_else(|| default_recovery(&path));
    refuse_existing(&[&path, &recovery_path])?;
    let pass = passphrase(true, "the new keystore")?;
    let (ks, recovery) = account::new_account()?;
    let progress = Progress::spinner("encrypting (argon2id)");
    recovery.save(&recovery_path, &pass, KdfParams::from_env(), false)?;
    if let Err(e) = ks.save(&path, &pass, KdfParams::from_env()) {
        // Leave no recovery file without its keystore.
        let _ = std::fs::remove_file(&recovery_path);
        return Err(e.into());
    }
    progress.finish();
    // The phrase goes out exactly as the human output would show it: the JSON carries it
    // only when the text would.
    let words = (!args.no_phrase).then(|| phrase::encode(&recovery.next_key));
    if args.json {
        print_json(&json!({
            "did": ks.public.did,
            "keystore": path.display().to_string(),
            "recovery_file": recovery_path.display().to_string(),
            "recovery_phrase": words.as_deref().map(String::as_str),
        }));
        if words.is_some() {
            eprintln!("{PHRASE_WARNING}");
        }
    } else {
        println!("{}", ks.public.did);
        explain(&path, &recovery_path);
        if let Some(w) = &words {
            show_phrase(w);
            eprintln!();
        }
        eprintln!(
            "next: roam account create --keystore {} --homeserver URL --user NAME",
            path.display()
        );
    }
    Ok(())
}

fn refuse_existing(paths: &[&Path]) -> Result<(), KeystoreError> {
    match paths.iter().find(|p| p.exists()) {
        Some(p) => Err(KeystoreError::Exists {
            path: p.display().to_string(),
        }),
        None => Ok(()),
    }
}

fn explain(path: &Path, recovery_path: &Path) {
    eprintln!("keystore:      {}", path.display());
    eprintln!("recovery file: {}", recovery_path.display());
    eprintln!();
    eprintln!("WARNING: the recovery file holds the key that can rotate and recover this account.");
    eprintln!("Move it offline (USB stick) and keep it apart from the keystore: whoever holds");
    eprintln!("both and the passphrase owns the account.");
    eprintln!();
}
