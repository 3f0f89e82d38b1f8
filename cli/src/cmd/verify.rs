//! `roam verify FILE|-`: verify a log, a bundle or an exported account file offline — for
//! auditors, and (with `--conformance`) as the Rust implementation's command for the
//! conformance runner (`spec/conformance/run.py`). A W3C credential of a binding (spec §14)
//! is checked against its issuer's did:web document and the account log, fetched through the
//! SSRF-guarded client unless given as files.

use std::io::Read;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use roam_client::account::now_ms;
use roam_client::credential::{self, CredentialReport, Sources};
use roam_client::verify::{self, Report};
use roam_identity_core::canonical;
use roam_resolver::http::SafeClient;
use serde_json::{Value, json};

use super::common::{GlobalArgs, print_json, runtime};

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The file to verify (`-` for standard input): a JSON array of ops or `{"ops": [...]}`,
    /// a bundle, a `roam export` file, or a credential (`roam account show --credential`).
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
    /// For a credential: the issuer's DID document (else fetched from
    /// `https://<server>/.well-known/did.json`, or the server's `--federation-override`).
    #[arg(long, value_name = "FILE")]
    did_document: Option<PathBuf>,
    /// For a credential: the account's log, bundle or export (else the issuer's bundle).
    #[arg(long, value_name = "FILE")]
    log: Option<PathBuf>,
}

pub fn run(args: VerifyArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    if args.conformance {
        let mut request = Vec::new();
        std::io::stdin()
            .read_to_end(&mut request)
            .context("reading the request")?;
        print_json(&roam_client::conformance::answer(&request)?);
        return Ok(());
    }
    let path = args.file.clone().unwrap_or_else(|| PathBuf::from("-"));
    let bytes = read_input(&path)?;
    let now = args.now.unwrap_or_else(now_ms);
    if let Ok(value) = canonical::parse_strict(&bytes)
        && roam_vc::credential::is_credential(&value)
    {
        return run_credential(&args, global, &value, now);
    }
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

fn run_credential(
    args: &VerifyArgs,
    global: &GlobalArgs,
    value: &Value,
    now: u64,
) -> anyhow::Result<()> {
    let issuer_document = match &args.did_document {
        Some(p) => Some(serde_json::from_slice(&read_input(p)?).context("the DID document")?),
        None => None,
    };
    let log_file = args.log.as_ref().map(read_input).transpose()?;
    let client = SafeClient::new(&global.resolver_config()).context("setting up HTTP")?;
    let overrides = global.overrides();
    let sources = Sources {
        client: &client,
        overrides: &overrides,
        issuer_document,
        log_file,
    };
    let result = runtime()?.block_on(credential::verify_credential(value, sources, now));
    match result {
        Ok(report) if args.json => print_json(&report.to_json()),
        Ok(report) => print_credential(&report),
        Err(e) => {
            if args.json {
                let error = json!({"class": e.class(), "message": e.to_string()});
                print_json(&json!({"valid": false, "error": error}));
            }
            return Err(e.into());
        }
    }
    Ok(())
}

fn print_credential(r: &CredentialReport) {
    let c = &r.credential;
    println!("valid credential ({}): {} is {}", c.kind, c.did, c.user_id);
    println!("  issuer      {}", c.issuer);
    println!("  signed by   {}", c.verification_method);
    match c.valid_until {
        Some(u) => println!("  valid       {} .. {}", c.valid_from, u),
        None => println!("  valid from  {}", c.valid_from),
    }
    if let Some(h) = c.hosting {
        println!("  hosting     {h}");
    }
    println!("  account log {} (head {})", r.log_source, r.head);
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
