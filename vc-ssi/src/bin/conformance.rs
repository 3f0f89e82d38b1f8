//! `roam-ssi-conformance`: the conformance runner's command (`spec/conformance/run.py`) built
//! in ssi's graph, where serde_json's `arbitrary_precision` is on: one request on standard
//! input, one answer on standard output, exactly `roam verify --conformance`'s
//! (`roam_client::conformance::answer`). scripts/test.sh runs every vector through it.

use std::io::Read;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut request = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut request) {
        eprintln!("roam-ssi-conformance: cannot read the request: {e}");
        return ExitCode::from(2);
    }
    match roam_client::conformance::answer(&request) {
        Ok(answer) => {
            println!("{answer}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("roam-ssi-conformance: {e}");
            ExitCode::from(2)
        }
    }
}
