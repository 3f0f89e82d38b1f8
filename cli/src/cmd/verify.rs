//! `roam verify FILE|-`: verify a log, a bundle or an exported account file offline — for
//! auditors, and (with `--conformance`) as the Rust implementation's command for the
//! conformance runner (`spec/conformance/run.py`).

use std::io::Read;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use roam_client::account::now_ms;
use roam_client::verify::{self, Report};
use serde_json::json;

use super::common::print_json;

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The file to verify (`-` for standard input): a JSON array of ops or `{"ops": [...]}`,
    /// a bundle, or a `roam export` file.
    #[arg(value_name = "FILE", required_unless_present = "conformance")]
    file: Option<PathBuf>,
    /// Verify as of this time (ms since the Unix epoch) instead of now.
    #[arg(long, value_name = "MS")]
    now: Option<u64>,
    /// Print JSON (the report, or the error with its class, index and evidence).
    #[arg(long)]
    json: bool,
    /// Answer one conformance request (`{"suite", "now", "input"}`) read from standard input,
    /// as spec/vectors/README.md describes; exits 0 whatever the vector's verdict.
    #[arg(long, conflicts_with_all = ["file", "now", "json"])]
    conformance: bool,
}

pub fn run(args: VerifyArgs) -> anyhow::Result<()> {
    if args.conformance {
        let mut request = Vec::new();
        std::io::stdin()
            .read_to_end(&mut request)
            .context("reading the request")?;
        print_json(&roam_client::conformance::answer(&request)?);
        return Ok(());
    }
    let path = args.file.unwrap_or_else(|| PathBuf::from("-"));
    let bytes = read_input(&path)?;
    let now = args.now.unwrap_or_else(now_ms);
    match verify::verify_document(&bytes, now) {
        Ok(report) if args.json => print_json(&report.to_json()),
        Ok(report) => print_report(&report),
        Err(e) => {
            if args.json {
                print_json(&json!({"valid": false, "error": e.to_json()}));
            }
            return Err(e.into());
        }
    }
    Ok(())
}

fn read_input(path: &PathBuf) -> anyhow::Result<Vec<u8>> {
    if path.as_os_str() == "-" {
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .context("reading standard input")?;
        return Ok(bytes);
    }
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

fn print_report(r: &Report) {
    let s = &r.log.state;
    println!("valid {}: {}", r.kind.name(), s.did);
    println!("  head        {} (seq {})", s.head, s.seq);
    println!(
        "  update key  {}",
        roam_identity_core::did::encode_multikey(&s.update_key)
    );
    println!(
        "  servers     {}",
        join(s.servers.iter().map(|x| x.as_str()))
    );
    println!(
        "  devices     {}",
        join(s.devices.keys().map(|d| d.as_str()))
    );
    if s.deactivated {
        println!("  DEACTIVATED");
    }
    if !r.log.superseded.is_empty() {
        println!(
            "  {} op(s) superseded by a recovery rotate",
            r.log.superseded.len()
        );
    }
    let report = r.to_json();
    for (what, key) in [("user ID", "bindings"), ("hosting", "hosting")] {
        if let Some(map) = report[key].as_object() {
            for (name, a) in map {
                let status = a["status"].as_str().unwrap_or("?");
                match a["valid_until"].as_u64() {
                    Some(t) => println!("  {what:<11} {name}: {status} (until {t})"),
                    None => println!("  {what:<11} {name}: {status}"),
                }
            }
        }
    }
    if r.bundle.is_none() {
        for u in &s.user_ids {
            println!("  user ID     {u}: claimed (a log alone carries no attestation)");
        }
    }
}

fn join<'a>(items: impl Iterator<Item = &'a str>) -> String {
    let v: Vec<&str> = items.collect();
    if v.is_empty() {
        "none".to_owned()
    } else {
        v.join(", ")
    }
}
