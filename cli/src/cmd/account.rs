//! `roam account create` and `roam account show`.

use anyhow::Context;
use clap::{Args, Subcommand};
use roam_client::account::{self, describe_state, now_ms};
use roam_client::homeserver::{Homeserver, HomeserverError, Registered};
use roam_client::keystore::{Keystore, random_seed};
use roam_client::sync;
use roam_identity_core::bundle::{self, Attested, Bundle};
use roam_identity_core::log::{AccountState, SignedOp};
use roam_identity_core::{Did, Localpart, ServerName, UserId};
use serde_json::{Value, json};
use url::Url;

use super::common::{
    GlobalArgs, KeystoreArg, Progress, Session, joined, parse_url, print_json, runtime,
};
use super::exit::CliError;

#[derive(Debug, Args)]
pub struct AccountArgs {
    #[command(subcommand)]
    command: AccountCommand,
}

#[derive(Debug, Subcommand)]
enum AccountCommand {
    /// Register the Matrix account on a homeserver with the genesis op of your DID.
    Create(CreateArgs),
    /// Show user IDs, DID, servers, devices, head, and what each server attests now.
    Show(ShowArgs),
}

#[derive(Debug, Args)]
struct CreateArgs {
    #[command(flatten)]
    keystore: KeystoreArg,
    /// The homeserver's base URL, e.g. https://matrix.example.org.
    #[arg(long, value_name = "URL", value_parser = parse_url)]
    homeserver: Url,
    /// The localpart of the new user ID (`alice` for @alice:example.org).
    #[arg(long, value_name = "LOCALPART")]
    user: String,
    /// A Matrix password too (for clients without key login). Default: a random one, kept
    /// in the keystore.
    #[arg(long, value_name = "PW", env = "ROAM_PASSWORD")]
    password: Option<String>,
}

#[derive(Debug, Args)]
struct ShowArgs {
    #[command(flatten)]
    keystore: KeystoreArg,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// Print the binding of your user ID as a W3C Verifiable Credential issued by its
    /// homeserver (did:web), for verifiers outside Roam (`roam verify` checks it too).
    #[arg(long, conflicts_with = "json")]
    credential: bool,
    /// With --credential: issue your own FEP-c390 identity proof instead (the DID is also your
    /// user ID), signed by the account's update key; needs no server.
    #[arg(long, requires = "credential")]
    self_issued: bool,
}

pub fn run(args: AccountArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    match args.command {
        AccountCommand::Create(a) => create(a, global),
        AccountCommand::Show(a) => show(a, global),
    }
}

fn create(args: CreateArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let localpart = Localpart::parse(&args.user)
        .map_err(|e| CliError::usage(format!("--user {:?}: {e}", args.user)))?;
    let mut s = Session::open(&args.keystore, global)?;
    let rt = runtime()?;
    rt.block_on(async {
        let progress = Progress::spinner("registering");
        let (server, hs) = s
            .dir
            .identify(&args.homeserver)
            .await
            .with_context(|| format!("asking {} for its server name", args.homeserver))?;
        let user_id = UserId::new(&localpart, &server)?;
        if !s.ks.public.ops.is_empty() {
            progress.finish();
            return ensure_created_earlier(&s, &hs, &user_id).await;
        }
        let password = args
            .password
            .clone()
            .unwrap_or_else(|| roam_identity_core::b64::encode(&random_seed()[..18]));
        // The genesis is recorded only once the server took it: a refused registration
        // leaves the keystore as it was.
        let mut draft = Keystore {
            public: s.ks.public.clone(),
            secrets: s.ks.secrets.clone(),
        };
        let genesis = account::sign_genesis(&mut draft, user_id.clone(), vec![server.clone()])?;
        let registered = match hs
            .register_with_genesis(localpart.as_str(), &password, &genesis.value, false)
            .await
        {
            Ok(r) => r,
            Err(e) if e.errcode() == Some("M_USER_IN_USE") => {
                progress.finish();
                return adopt_earlier_registration(&mut s, &hs, &user_id, &args.homeserver, e)
                    .await;
            }
            Err(e) => return Err(e.into()),
        };
        check_bound(&registered, &s.ks.public.did, &server)?;
        s.ks.public.ops = draft.public.ops;
        record_home(&mut s, &args.homeserver, &registered.user_id);
        s.ks.secrets.password = Some(password);
        s.save()?;
        progress.finish();
        println!("{}\n{}", registered.user_id, s.ks.public.did);
        eprintln!(
            "next: roam login --keystore {} --homeserver {}",
            s.path.display(),
            args.homeserver
        );
        Ok(())
    })
}

/// A keystore with an account: fine if it is this user ID (an earlier run; the server is
/// brought up to date), refused otherwise.
async fn ensure_created_earlier(
    s: &Session,
    hs: &Homeserver,
    user_id: &UserId,
) -> anyhow::Result<()> {
    let state = account::local_log(&s.ks, now_ms())?.state;
    if !state.user_ids.contains(user_id) {
        return Err(CliError::not_allowed(format!(
            "this keystore already has an account ({}, {}); create a new keystore with `roam key new` for another one",
            s.ks.public.did,
            joined(state.user_ids.iter().map(UserId::as_str))
        ))
        .into());
    }
    sync::push_ops(hs, &state.did, &s.ks.public.ops).await?;
    println!("{user_id}\n{}", state.did);
    eprintln!("the account already exists; nothing to do");
    Ok(())
}

/// The user ID is taken: an earlier run may have registered and died before saving. Adopts
/// the server's log if the account there is ours, else reports `taken`.
async fn adopt_earlier_registration(
    s: &mut Session,
    hs: &Homeserver,
    user_id: &UserId,
    url: &Url,
    taken: HomeserverError,
) -> anyhow::Result<()> {
    let ours = match hs.user_bundle(user_id).await {
        Ok(b) => b.get("did").and_then(Value::as_str) == Some(s.ks.public.did.as_str()),
        Err(_) => false,
    };
    if !ours {
        return Err(taken.into());
    }
    s.ks.public.ops = hs.account_log(&s.did()?).await?;
    account::local_log(&s.ks, now_ms())?;
    record_home(s, url, user_id.as_str());
    s.save()?;
    println!("{user_id}\n{}", s.ks.public.did);
    eprintln!("the account was registered by an earlier run; the keystore is up to date now");
    Ok(())
}

/// Refuses a registration the server did not bind to this keystore's DID.
fn check_bound(registered: &Registered, did: &str, server: &ServerName) -> Result<(), CliError> {
    match &registered.did {
        Some(d) if d == did => Ok(()),
        Some(d) => Err(CliError::not_allowed(format!(
            "{server} registered the account under another DID ({d})"
        ))),
        None => Err(CliError::not_allowed(format!(
            "{server} registered {} but did not bind it to the DID (no org.roam.did in its answer): it does not support Roam accounts; use a Roam homeserver",
            registered.user_id
        ))),
    }
}

fn record_home(s: &mut Session, url: &Url, user_id: &str) {
    s.ks.public.homeserver = Some(url.as_str().trim_end_matches('/').to_owned());
    s.ks.public.user_id = Some(user_id.to_owned());
}

/// What one server says about the account.
fn server_view(
    server: &ServerName,
    raw: Result<Value, HomeserverError>,
    did: &Did,
    local_head: &str,
) -> Value {
    let now = now_ms();
    let raw = match raw {
        Ok(r) => r,
        Err(e) => {
            return json!({"server": server.as_str(), "reachable": false, "error": e.to_string()});
        }
    };
    let checked = Bundle::from_value(&raw).and_then(|b| bundle::verify(&b, Some(did), now));
    let vb = match checked {
        Ok(vb) => vb,
        Err(e) => {
            return json!({"server": server.as_str(), "reachable": true, "error": format!("its bundle does not verify: {e}")});
        }
    };
    let attests: Vec<Value> = vb
        .attestations
        .iter()
        .filter(|a| &a.server_name == server)
        .map(|a| {
            json!({
                "user_id": a.user_id.as_ref().map(UserId::as_str),
                "hosting": a.hosting,
                "head": a.head.to_string(),
                "valid_until": a.valid_until,
                "current": a.is_current(now),
            })
        })
        .collect();
    json!({
        "server": server.as_str(),
        "reachable": true,
        "head": vb.log.state.head.to_string(),
        "in_sync": vb.log.state.head.to_string() == local_head,
        "hosting": matches!(vb.hosting(server, now), Attested::Current { .. }),
        "attestations": attests,
    })
}

fn show(args: ShowArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let s = Session::open(&args.keystore, global)?;
    let local = account::local_log(&s.ks, now_ms())?.state;
    if args.credential {
        print_json(&credential(&s, &local, args.self_issued)?);
        return Ok(());
    }
    let (views, foreign) = runtime()?.block_on(ask_servers(&s, &local));
    let mut out = describe_state(&local);
    out["keystore"] = json!(s.path.display().to_string());
    out["homeserver"] = json!(s.ks.public.homeserver);
    out["logged_in_as"] = json!(s.ks.public.user_id);
    out["device_id"] = json!(s.ks.public.device_id);
    out["server_views"] = json!(views);
    out["ops_not_signed_here"] = json!(foreign);
    out["pending_migration"] = s.ks.public.pending_migration.clone().unwrap_or(Value::Null);
    if args.json {
        print_json(&out);
        return Ok(());
    }
    print_state(&local, &out);
    print_server_views(&views);
    print_foreign(&foreign);
    if let Some(p) = &s.ks.public.pending_migration {
        println!(
            "unfinished migration to {}: re-run `roam migrate --to {}`",
            p["to_server"].as_str().unwrap_or("?"),
            p["to_url"].as_str().unwrap_or("?")
        );
    }
    Ok(())
}

/// The account's credential: the homeserver's (fetched) or a self-issued identity statement.
fn credential(s: &Session, local: &AccountState, self_issued: bool) -> anyhow::Result<Value> {
    let user_id = match &s.ks.public.user_id {
        Some(u) => UserId::parse(u).context("the keystore's user ID")?,
        None => local
            .user_ids
            .first()
            .cloned()
            .ok_or_else(|| CliError::Usage("the account has no user ID".into()))?,
    };
    if self_issued {
        let statement = roam_vc::IdentityStatement {
            did: local.did.clone(),
            user_id,
            created: now_ms(),
        };
        return Ok(statement.issue(&s.ks.update_key())?);
    }
    runtime()?.block_on(async {
        let hs = s.dir.homeserver(&user_id.server_name()).await?;
        Ok(hs.user_credential(&user_id).await?)
    })
}

/// Each server's view (servers of the log and of the user IDs) and the ops they hold that
/// this keystore did not sign.
async fn ask_servers(s: &Session, local: &AccountState) -> (Vec<Value>, Vec<String>) {
    let mut servers = local.servers.clone();
    for u in &local.user_ids {
        let d = u.server_name();
        if !servers.contains(&d) {
            servers.push(d);
        }
    }
    let head = local.head.to_string();
    let progress = Progress::bar(servers.len() as u64, "asking servers");
    let mut views = Vec::new();
    for server in &servers {
        let raw = match s.dir.homeserver(server).await {
            Ok(hs) => hs.account_bundle(&local.did).await,
            Err(e) => Err(e),
        };
        views.push(server_view(server, raw, &local.did, &head));
        progress.step(server.as_str());
    }
    let (ops, _, _) = sync::gather_ops(&s.dir, &local.did, &local.servers).await;
    let foreign = account::foreign_ops(&s.ks, &ops)
        .into_iter()
        .filter_map(|v| SignedOp::from_value(v.clone()).ok())
        .map(|o| format!("seq {} {} ({})", o.op.seq, o.op.action.name(), o.hash))
        .collect();
    progress.finish();
    (views, foreign)
}

fn print_state(st: &AccountState, out: &Value) {
    println!("DID:        {}", st.did);
    println!(
        "user IDs:   {}",
        joined(st.user_ids.iter().map(UserId::as_str))
    );
    println!(
        "servers:    {} (primary first)",
        joined(st.servers.iter().map(ServerName::as_str))
    );
    let devices = if st.devices.is_empty() {
        "none signed in".to_owned()
    } else {
        joined(st.devices.keys().map(|d| d.as_str()))
    };
    println!("devices:    {devices}");
    println!(
        "update key: {}",
        out["update_key"].as_str().unwrap_or_default()
    );
    println!("head:       {} (seq {})", st.head, st.seq);
    if st.deactivated {
        println!("status:     DEACTIVATED");
    }
}

fn print_server_views(views: &[Value]) {
    println!("what each server attests now:");
    for v in views {
        let name = v["server"].as_str().unwrap_or_default();
        if let Some(e) = v.get("error").and_then(Value::as_str) {
            println!("  {name}: {e}");
            continue;
        }
        let sync = if v["in_sync"] == true {
            "in sync"
        } else {
            "behind or ahead of this keystore"
        };
        let mut parts: Vec<String> = v["attestations"]
            .as_array()
            .into_iter()
            .flatten()
            .map(describe_attestation)
            .collect();
        if parts.is_empty() {
            parts.push("no attestation".into());
        }
        println!("  {name}: {} [{sync}]", parts.join("; "));
    }
}

fn describe_attestation(a: &Value) -> String {
    let who = a["user_id"].as_str().unwrap_or("(hosting only)");
    let host = if a["hosting"] == true {
        "hosting"
    } else {
        "not hosting (forwarding)"
    };
    let cur = if a["current"] == true {
        ""
    } else {
        ", expired"
    };
    format!("{who} bound, {host}{cur}")
}

fn print_foreign(foreign: &[String]) {
    if foreign.is_empty() {
        return;
    }
    println!(
        "WARNING: the servers hold {} op(s) this keystore did not sign:",
        foreign.len()
    );
    for f in foreign {
        println!("  {f}");
    }
    println!(
        "If they are not yours, your update key is compromised: run `roam recover --recovery FILE` (or --phrase)."
    );
}
