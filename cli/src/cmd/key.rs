//! `roam key new`: the account key and the committed next key.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use roam_client::account;
use roam_client::keystore::{KdfParams, KeystoreError};

use super::common::{KeystoreArg, Progress, default_recovery, passphrase};

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
}

pub fn run(args: KeyArgs) -> anyhow::Result<()> {
    let KeyCommand::New(args) = args.command;
    let path = args.keystore.keystore;
    let recovery_path = args.recovery.unwrap_or_else(|| default_recovery(&path));
    for p in [&path, &recovery_path] {
        if p.exists() {
            return Err(KeystoreError::Exists {
                path: p.display().to_string(),
            }
            .into());
        }
    }
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
    println!("{}", ks.public.did);
    eprintln!("keystore:      {}", path.display());
    eprintln!("recovery file: {}", recovery_path.display());
    eprintln!();
    eprintln!("WARNING: the recovery file holds the key that can rotate and recover this account.");
    eprintln!(
        "It is shown only now. Move it offline (USB stick, paper backup) and keep it apart from"
    );
    eprintln!("the keystore: whoever holds both and the passphrase owns the account.");
    eprintln!();
    eprintln!(
        "next: roam account create --keystore {} --homeserver URL --user NAME",
        path.display()
    );
    Ok(())
}
