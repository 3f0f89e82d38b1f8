//! The `roam` binary: parses the command line and hands over to [`cli`]. Exit codes are
//! decided in one place, [`cli::exit`]: 0 on success, 2 for usage errors (by clap), and a
//! code per kind of failure (keystore, unreachable, refused, unverified, unfinished).

mod cli;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(()) => std::process::ExitCode::from(cli::exit::SUCCESS),
        Err(e) => std::process::ExitCode::from(cli::exit::report(&e)),
    }
}
