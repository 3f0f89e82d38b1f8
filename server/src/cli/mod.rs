//! The `roam` command line. Each subcommand lives in its own module with its clap `Args`
//! and a `run` function; add new ones (client commands such as `key`, `account`, `login`,
//! `migrate`, `resolve`) as another variant of [`Command`] and another module.

mod admin;
mod serve;

use clap::{Parser, Subcommand};

/// Roam: portable identity for Matrix-style federated chat.
#[derive(Debug, Parser)]
#[command(name = "roam", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a homeserver.
    Serve(serve::ServeArgs),
    /// Administer a homeserver's data directory (stop the server first).
    Admin(admin::AdminArgs),
}

/// Runs the chosen subcommand.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Admin(args) => admin::run(args),
    }
}
