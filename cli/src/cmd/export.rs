//! `roam export` and `roam import`: the portable account file.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use roam_client::account::{self, now_ms};
use roam_client::device_plane;
use roam_client::export;
use roam_client::homeserver::Homeserver;
use roam_client::keystore::{Keystore, KeystoreError, write_private};
use roam_client::sync;
use roam_identity_core::UserId;
use roam_identity_core::bundle;
use url::Url;

use super::common::{
    GlobalArgs, KeystoreArg, Progress, Session, default_keystore, parse_url, passphrase,
    print_json, read_recovery_key, runtime,
};
use super::exit::CliError;

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    keystore: KeystoreArg,
    /// The file to write.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Include the keystore itself (still encrypted under its passphrase), so the file can
    /// restore this client elsewhere. Without it the file holds no secret.
    #[arg(long)]
    include_secrets: bool,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The export file.
    #[arg(long = "in", value_name = "FILE")]
    input: PathBuf,
    /// The homeserver to hand the account's log to (it must be named in the log).
    #[arg(long, value_name = "URL", value_parser = parse_url)]
    homeserver: Url,
    /// Also restore the keystore carried by the file (exported with --include-secrets) here.
    #[arg(long, value_name = "FILE")]
    keystore: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// Then re-sign the cross-signing keys for the account's user ID on the homeserver with
    /// the same master key: reads the Matrix secret-storage recovery key at a hidden prompt
    /// (or from standard input) and opens secret storage on this machine only.
    #[arg(long)]
    recovery_key: bool,
    /// The account's keystore, to sign the device plane over to the homeserver when
    /// --keystore does not restore one (it is read, not changed).
    #[command(flatten)]
    signer: SignerArg,
}

/// `--sign-with FILE` (env `ROAM_KEYSTORE`; else the default keystore, when it exists).
#[derive(Debug, Args)]
pub struct SignerArg {
    /// The keystore that signs the device plane over [default: ROAM_KEYSTORE, else the
    /// default keystore if it is this account's; without one the log is imported and the
    /// device plane left out].
    #[arg(long = "sign-with", value_name = "FILE", env = "ROAM_KEYSTORE")]
    sign_with: Option<PathBuf>,
}

pub fn export(args: ExportArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    if args.out.exists() {
        return Err(KeystoreError::Exists {
            path: args.out.display().to_string(),
        }
        .into());
    }
    let s = Session::open(&args.keystore, global)?;
    let local = account::local_log(&s.ks, now_ms())?;
    let did = local.state.did.clone();
    let mut servers = local.state.servers.clone();
    for u in &local.state.user_ids {
        if !servers.contains(&u.server_name()) {
            servers.push(u.server_name());
        }
    }
    let rt = runtime()?;
    let fetched = rt.block_on(async {
        let progress = Progress::bar(servers.len() as u64, "collecting attestations");
        let mut out = Vec::new();
        for server in &servers {
            let got = match s.dir.homeserver(server).await {
                Ok(hs) => hs.account_bundle(&did).await,
                Err(e) => Err(e),
            };
            match got {
                Ok(b) => out.push((server.to_string(), b)),
                Err(e) => eprintln!("warning: {server}: {e}"),
            }
            progress.step(server.as_str());
        }
        out
    });
    let device_plane = rt.block_on(fetch_device_plane(&s.ks));
    let now = now_ms();
    let (b, warnings) = export::assemble(&did, &s.ks.public.ops, &fetched, now);
    for w in warnings {
        eprintln!("warning: {w}");
    }
    let verified =
        bundle::verify(&b, Some(&did), now).context("the assembled bundle does not verify")?;
    let keystore = if args.include_secrets {
        let text = std::fs::read_to_string(&s.path)
            .with_context(|| format!("reading {}", s.path.display()))?;
        Some(serde_json::from_str(&text).context("the keystore file is not JSON")?)
    } else {
        None
    };
    let plane_words = device_plane
        .as_ref()
        .map(|p| format!(", the device plane ({})", device_plane::describe(p)))
        .unwrap_or_default();
    let file = export::to_file(&b, &verified, keystore, device_plane, now);
    write_private(&args.out, &(serde_json::to_string_pretty(&file)? + "\n"))?;
    println!("{}", args.out.display());
    eprintln!(
        "exported {} op(s), {} attestation(s), {} device(s){plane_words}{}",
        b.log.len(),
        b.attestations.len(),
        verified.log.state.devices.len(),
        if args.include_secrets {
            ", and the encrypted keystore"
        } else {
            "; no secrets"
        }
    );
    Ok(())
}

/// The device plane from the keystore's homeserver, with the session the keystore holds
/// there; `None` (with a warning) when there is none or the server cannot be reached.
async fn fetch_device_plane(ks: &Keystore) -> Option<serde_json::Value> {
    let (Some(url), Some(token)) = (
        ks.public.homeserver.as_deref(),
        ks.secrets.access_token.as_deref(),
    ) else {
        eprintln!("warning: no session in the keystore (roam login): the device plane is left out");
        return None;
    };
    let hs = Url::parse(url)
        .ok()
        .and_then(|u| Homeserver::new(u).ok())?
        .with_token(token);
    match device_plane::fetch(&hs).await {
        Ok(p) => Some(p),
        Err(e) => {
            eprintln!("warning: the device plane is left out: {e}");
            None
        }
    }
}

/// The keystore that signs the device plane over: the one at `path` (just restored, or the
/// user's own), which must be this account's.
fn signer_keystore(
    path: &std::path::Path,
    did: &roam_identity_core::Did,
) -> anyhow::Result<Keystore> {
    if !path.exists() {
        return Err(CliError::usage(format!(
            "the file carries the device plane, and restoring it needs the account's keystore to sign it: pass --sign-with FILE, or --keystore FILE with an export made with --include-secrets ({} does not exist)",
            path.display()
        ))
        .into());
    }
    let pass = passphrase(false, &path.display().to_string())?;
    let ks = Keystore::load(path, &pass)?;
    if ks.did()? != *did {
        return Err(CliError::usage(format!(
            "{} belongs to another account ({}), not {did}",
            path.display(),
            ks.public.did
        ))
        .into());
    }
    Ok(ks)
}

/// The keystore that signs the device plane over: the one named (restored with `--keystore`,
/// or `--sign-with` / `ROAM_KEYSTORE`), which must open and be this account's; else the
/// default keystore if it is this account's; else none (the device plane is left out, said
/// on stderr).
fn find_signer(
    args: &ImportArgs,
    did: &roam_identity_core::Did,
) -> anyhow::Result<Option<Keystore>> {
    if let Some(path) = args.keystore.as_ref().or(args.signer.sign_with.as_ref()) {
        return Ok(Some(signer_keystore(path, did)?));
    }
    let path = default_keystore();
    let found = path
        .exists()
        .then(|| signer_keystore(&path, did))
        .transpose();
    match found {
        Ok(Some(ks)) => Ok(Some(ks)),
        Ok(None) => {
            eprintln!(
                "warning: the file carries the device plane; to restore it, name the account's keystore with --sign-with FILE (only the log is imported)"
            );
            Ok(None)
        }
        Err(e) => {
            eprintln!("warning: the device plane is left out: {e}");
            Ok(None)
        }
    }
}

/// Reads and verifies the export file; restores the keystore it carries to `--keystore`.
fn read_export(args: &ImportArgs) -> anyhow::Result<export::Imported> {
    let text = std::fs::read_to_string(&args.input).map_err(|source| KeystoreError::Io {
        path: args.input.display().to_string(),
        source,
    })?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| export::ExportError::Format(format!("{}: {e}", args.input.display())))?;
    let imported = export::from_file(&value, now_ms())?;
    if let Some(path) = &args.keystore {
        let Some(ks) = &imported.keystore else {
            return Err(CliError::usage(
                "the file carries no keystore (export it with --include-secrets)",
            )
            .into());
        };
        if path.exists() {
            return Err(KeystoreError::Exists {
                path: path.display().to_string(),
            }
            .into());
        }
        write_private(path, &(serde_json::to_string_pretty(ks)? + "\n"))?;
    }
    Ok(imported)
}

/// Re-signs the cross-signing keys for the account's user on `hs` (`out`: the import's
/// answer), in a session of its own (key login, a new device, logged out after).
async fn cross_sign(
    hs: &Homeserver,
    ks: &Keystore,
    server: &roam_identity_core::ServerName,
    out: &serde_json::Value,
    recovery_key: &[u8; 32],
) -> anyhow::Result<String> {
    let user = UserId::parse(out["user_id"].as_str().unwrap_or_default())?;
    let login = roam_client::session::key_login(hs, ks, server, &user, None).await?;
    let session = hs.clone().with_token(login.access_token);
    let done = device_plane::cross_sign(&session, &user, recovery_key).await;
    if let Err(e) = session.logout().await {
        eprintln!("warning: the session opened to cross-sign was not closed: {e}");
    }
    Ok(done?)
}

/// Hands the log (the file's, and the signing keystore's, which may be newer: a move signed
/// after the export) to the homeserver, then the device plane (re-signing the cross-signing
/// keys with `recovery_key`).
async fn hand_over(
    args: &ImportArgs,
    imported: &export::Imported,
    signer: Option<&Keystore>,
    recovery_key: Option<&[u8; 32]>,
) -> anyhow::Result<(
    roam_identity_core::ServerName,
    usize,
    Option<serde_json::Value>,
)> {
    let state = &imported.verified.log.state;
    let progress = Progress::spinner("handing the log to the homeserver");
    let hs = Homeserver::new(args.homeserver.clone())?;
    let server = hs.server_name().await?;
    let servers = match signer {
        Some(ks) => account::local_log(ks, now_ms())?.state.servers,
        None => state.servers.clone(),
    };
    if !servers.contains(&server) {
        return Err(CliError::not_allowed(format!(
            "the account's log does not name {server} (it names {}); sign a move first with `roam servers set` or `roam migrate --to {}`",
            servers.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
            args.homeserver
        ))
        .into());
    }
    let mut n = sync::push_ops(&hs, &state.did, &imported.bundle.log).await?;
    if let Some(ks) = signer {
        n += sync::push_ops(&hs, &state.did, &ks.public.ops).await?;
    }
    progress.finish();
    let plane = match (&imported.device_plane, signer) {
        (Some(p), Some(ks)) => {
            let bundle = Some(imported.bundle.to_value());
            let mut out = device_plane::import(&hs, ks, &server, p, bundle).await?;
            if let Some(key) = recovery_key {
                out["cross_signed"] = cross_sign(&hs, ks, &server, &out, key).await?.into();
            }
            Some(out)
        }
        _ => None,
    };
    Ok((server, n, plane))
}

pub fn import(args: ImportArgs, _global: &GlobalArgs) -> anyhow::Result<()> {
    let imported = read_export(&args)?;
    let state = &imported.verified.log.state;
    let signer = match &imported.device_plane {
        Some(_) => find_signer(&args, &state.did)?,
        None => None,
    };
    let recovery_key = match (&signer, args.recovery_key) {
        (Some(_), true) => Some(read_recovery_key()?),
        (None, true) => {
            return Err(CliError::usage(
                "--recovery-key re-signs the carried cross-signing keys, and the file carries no device plane",
            )
            .into());
        }
        _ => None,
    };
    let rt = runtime()?;
    let (server, accepted, plane) = rt.block_on(hand_over(
        &args,
        &imported,
        signer.as_ref(),
        recovery_key.as_deref(),
    ))?;
    let summary = serde_json::json!({
        "did": state.did.as_str(),
        "user_ids": state.user_ids.iter().map(UserId::as_str).collect::<Vec<_>>(),
        "servers": state.servers.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        "devices": state.devices.keys().map(|d| d.as_str()).collect::<Vec<_>>(),
        "head": state.head.to_string(),
        "homeserver": server.as_str(),
        "new_ops": accepted,
        "keystore_restored": args.keystore.as_ref().map(|p| p.display().to_string()),
        "device_plane": plane,
    });
    if args.json {
        print_json(&summary);
        return Ok(());
    }
    println!(
        "imported {} into {server}: {accepted} new op(s), head {}",
        state.did, state.head
    );
    if let Some(p) = &args.keystore {
        println!(
            "keystore restored to {} (same passphrase as when exported)",
            p.display()
        );
    }
    match &plane {
        Some(out) => {
            println!(
                "device plane restored: {}",
                device_plane::describe_outcome(out)
            );
            match out["cross_signed"].as_str() {
                Some(done) => println!("{done}"),
                None => println!(
                    "cross-signing keys keep their old user ID; to cross-sign the new one with the same identity, a Matrix client with the recovery key must re-sign them (or pass --recovery-key)"
                ),
            }
        }
        None if imported.device_plane.is_some() => {
            println!("the device plane was not restored (no keystore of the account to sign it)")
        }
        None => println!("the file carries no device plane"),
    }
    Ok(())
}
