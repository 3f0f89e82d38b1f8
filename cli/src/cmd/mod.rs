//! The `roam` command line. Each subcommand lives in its own module with its clap `Args`
//! and a `run` function: `serve` and `admin` run a homeserver (they call `roam_server` and
//! exist only with the default `serve` feature); the others are the user's client (keys,
//! account, login, devices, migrate, servers, rotate/recover, claim/release, resolve,
//! export/import, lan), built on `roam_client` and `roam_resolver`.
//!
//! [`common`] holds what they share: the global flags (`--federation-override`,
//! `--allow-private-fetch`, and `--cache`, the resolver cache that `resolve` answers from and
//! `lan serve` shares), the keystore and its passphrase, the recovery phrase prompt. Every
//! command that changes the account (`login`, `device revoke`, `migrate`, `servers set`,
//! `rotate`, `recover`, `claim`, `release`) ends by storing the account as a resolver now
//! verifies it in that cache (`roam_client::local_cache`), so `roam resolve` shows the change
//! at once. Exit codes and error reports are decided in [`exit`], from the error types.

mod account;
#[cfg(feature = "serve")]
mod admin;
mod claim;
mod common;
mod device;
pub mod exit;
mod export;
mod key;
mod lan;
#[cfg(feature = "serve")]
mod lan_serve;
mod login;
mod migrate;
mod resolve;
mod rotate;
#[cfg(feature = "serve")]
mod serve;
mod servers;
mod verify;

use clap::{Parser, Subcommand};

pub use common::GlobalArgs;

/// Roam: portable identity for Matrix-style federated chat.
#[derive(Debug, Parser)]
#[command(name = "roam", version, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a homeserver.
    #[cfg(feature = "serve")]
    Serve(serve::ServeArgs),
    /// Administer a homeserver's data directory (stop the server first).
    #[cfg(feature = "serve")]
    Admin(admin::AdminArgs),
    /// Create account keys.
    Key(key::KeyArgs),
    /// Create the account on a homeserver, or show it.
    Account(account::AccountArgs),
    /// Log in with the account key; the new device is signed into the account log.
    Login(login::LoginArgs),
    /// List or revoke devices.
    Device(device::DeviceArgs),
    /// Move the account to another homeserver (resumable: re-run to continue).
    Migrate(migrate::MigrateArgs),
    /// Set the account's servers: primary, then backups.
    Servers(servers::ServersArgs),
    /// Rotate the update key to the committed key (from the recovery file or phrase).
    Rotate(rotate::RotateArgs),
    /// Recover after a compromise: the committed key (file or phrase) supersedes what the
    /// thief signed.
    Recover(rotate::RecoverArgs),
    /// Bind another user ID to the account.
    Claim(claim::ClaimArgs),
    /// Unbind a user ID from the account.
    Release(claim::ReleaseArgs),
    /// Resolve a user ID or DID, verifying every signature.
    Resolve(resolve::ResolveArgs),
    /// Write a portable account file (log, attestations, devices; secrets only if asked).
    Export(export::ExportArgs),
    /// Verify a portable account file and hand its log to a homeserver.
    Import(export::ImportArgs),
    /// Share resolved identities with peers on the LAN.
    Lan(lan::LanArgs),
    /// Verify a log, bundle or exported account file offline (state, bindings, or the error).
    Verify(verify::VerifyArgs),
}

/// Runs the chosen subcommand.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let g = &cli.global;
    match cli.command {
        #[cfg(feature = "serve")]
        Command::Serve(args) => serve::run(args, g),
        #[cfg(feature = "serve")]
        Command::Admin(args) => admin::run(args),
        Command::Key(args) => key::run(args),
        Command::Account(args) => account::run(args, g),
        Command::Login(args) => login::run(args, g),
        Command::Device(args) => device::run(args, g),
        Command::Migrate(args) => migrate::run(args, g),
        Command::Servers(args) => servers::run(args, g),
        Command::Rotate(args) => rotate::rotate(args, g),
        Command::Recover(args) => rotate::recover(args, g),
        Command::Claim(args) => claim::claim(args, g),
        Command::Release(args) => claim::release(args, g),
        Command::Resolve(args) => resolve::run(args, g),
        Command::Export(args) => export::export(args, g),
        Command::Import(args) => export::import(args, g),
        Command::Lan(args) => lan::run(args, g),
        Command::Verify(args) => verify::run(args, g),
    }
}
