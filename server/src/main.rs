//! The `roam` binary: parses the command line and hands over to [`cli`]. Exit codes are
//! decided here: 0 on success, 1 on any error (printed with its causes), 2 for usage errors
//! (by clap).

mod cli;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("roam: error: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}
