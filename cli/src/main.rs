//! The `roam` binary: parses the command line and hands over to [`cmd`]. Exit codes are
//! decided in one place, [`cmd::exit`]: 0 on success, 2 for usage errors (by clap), and a
//! code per kind of failure (keystore, unreachable, refused, unverified, unfinished).

mod cmd;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = cmd::Cli::parse();
    match cmd::run(args) {
        Ok(()) => std::process::ExitCode::from(cmd::exit::SUCCESS),
        Err(e) => std::process::ExitCode::from(cmd::exit::report(&e)),
    }
}
