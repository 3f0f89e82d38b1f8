//! `roam device list` and `roam device revoke`.

use clap::{Args, Subcommand};
use roam_client::account::{self, now_ms};
use roam_client::homeserver::{DeviceInfo, Homeserver, UiaAnswer};
use roam_client::sync;
use roam_identity_core::log::{self, AccountState, Action};
use roam_identity_core::{DeviceId, ServerName, UserId, b64};
use serde_json::{Value, json};
use url::Url;

use super::common::{GlobalArgs, KeystoreArg, Progress, Session, print_json, runtime};
use super::exit::CliError;

#[derive(Debug, Args)]
pub struct DeviceArgs {
    #[command(subcommand)]
    command: DeviceCommand,
}

#[derive(Debug, Subcommand)]
enum DeviceCommand {
    /// List devices: those the account key signed into the log, and those the server has.
    List(ListArgs),
    /// Sign the device out of the log (`revoke_device`) and delete it on the server.
    Revoke(RevokeArgs),
}

#[derive(Debug, Args)]
struct ListArgs {
    #[command(flatten)]
    keystore: KeystoreArg,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct RevokeArgs {
    /// The device to revoke.
    device_id: String,
    #[command(flatten)]
    keystore: KeystoreArg,
}

pub fn run(args: DeviceArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    match args.command {
        DeviceCommand::List(a) => list(a, global),
        DeviceCommand::Revoke(a) => revoke(a, global),
    }
}

/// The logged-in homeserver of the keystore, if any.
fn logged_in(s: &Session) -> Option<(Homeserver, UserId)> {
    let url = Url::parse(s.ks.public.homeserver.as_deref()?).ok()?;
    let token = s.ks.secrets.access_token.clone()?;
    let user = UserId::parse(s.ks.public.user_id.as_deref()?).ok()?;
    Some((Homeserver::new(url).ok()?.with_token(token), user))
}

fn list(args: ListArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let s = Session::open(&args.keystore, global)?;
    let local = account::local_log(&s.ks, now_ms())?.state;
    let rt = runtime()?;
    let on_server = match logged_in(&s) {
        Some((hs, _)) => Some(rt.block_on(hs.devices())?),
        None => None,
    };
    let state = rt.block_on(servers_view(&s, &local));
    let rows = device_rows(&s, &local, &state, on_server.as_deref());
    if args.json {
        print_json(&json!({"devices": rows, "server_checked": on_server.is_some()}));
        return Ok(());
    }
    if on_server.is_none() {
        eprintln!(
            "not logged in: showing only the devices signed into the account log (run `roam login` to compare with the server)"
        );
    }
    for r in &rows {
        print_row(r);
    }
    if rows.is_empty() {
        println!("no devices");
    }
    Ok(())
}

/// The log as the servers hold it, with this keystore's ops: it may have devices signed by
/// ops this keystore did not sign (another copy of the key, or a thief), shown marked.
async fn servers_view(s: &Session, local: &AccountState) -> AccountState {
    let (held, _, _) = sync::gather_ops(&s.dir, &local.did, &local.servers).await;
    let mut all = s.ks.public.ops.clone();
    all.extend(held);
    match log::verify_values(&all, Some(&local.did), now_ms() + log::MAX_FUTURE_SKEW_MS) {
        Ok(v) => v.state,
        Err(e) => {
            eprintln!(
                "warning: the servers' log and this keystore's disagree ({e}); showing this keystore's view"
            );
            local.clone()
        }
    }
}

/// One row per device of the log, then one per device only the server has.
fn device_rows(
    s: &Session,
    local: &AccountState,
    state: &AccountState,
    on_server: Option<&[DeviceInfo]>,
) -> Vec<Value> {
    let this = s.ks.public.device_id.as_deref();
    let mut rows = Vec::new();
    for (id, keys) in &state.devices {
        let server = on_server.and_then(|l| l.iter().find(|d| d.device_id == id.as_str()));
        rows.push(json!({
            "device_id": id.as_str(),
            "signed_in_log": true,
            "signed_by_this_keystore": local.devices.get(id) == Some(keys),
            "on_server": on_server.map(|_| server.is_some()),
            "display_name": server.and_then(|d| d.display_name.clone()),
            "last_seen_ts": server.and_then(|d| d.last_seen_ts),
            "ed25519": b64::encode(&keys.ed25519),
            "curve25519": b64::encode(&keys.curve25519),
            "this_keystore": this == Some(id.as_str()),
        }));
    }
    for d in on_server.into_iter().flatten() {
        if !state.devices.keys().any(|k| k.as_str() == d.device_id) {
            rows.push(json!({
                "device_id": d.device_id,
                "signed_in_log": false,
                "signed_by_this_keystore": false,
                "on_server": true,
                "display_name": d.display_name,
                "last_seen_ts": d.last_seen_ts,
                "this_keystore": this == Some(d.device_id.as_str()),
            }));
        }
    }
    rows
}

fn print_row(r: &Value) {
    let id = r["device_id"].as_str().unwrap_or_default();
    let mut notes = Vec::new();
    notes.push(if r["signed_in_log"] == true {
        "signed by the account key"
    } else {
        "NOT signed by the account key (added by the server, or not yet signed)"
    });
    if r["signed_in_log"] == true && r["signed_by_this_keystore"] == false {
        notes.push("signed by an op this keystore did not make: if not yours, run `roam recover`");
    }
    if r["on_server"] == false {
        notes.push("not on the server");
    }
    if r["this_keystore"] == true {
        notes.push("this keystore");
    }
    let name = r["display_name"]
        .as_str()
        .map(|n| format!(" \"{n}\""))
        .unwrap_or_default();
    println!("{id}{name}: {}", notes.join(", "));
}

fn revoke(args: RevokeArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let device = DeviceId::parse(&args.device_id)
        .map_err(|e| CliError::usage(format!("{:?} is not a device ID: {e}", args.device_id)))?;
    let mut s = Session::open(&args.keystore, global)?;
    let state = account::local_log(&s.ks, now_ms())?.state;
    let in_log = state.devices.contains_key(&device);
    let rt = runtime()?;
    if !in_log {
        rt.block_on(refuse_foreign_device(&s, &state, &device))?;
    }
    rt.block_on(async {
        let progress = Progress::spinner("revoking");
        let mut done = Vec::new();
        if in_log {
            done = sign_revoke_and_push(&mut s, &state, &device).await?;
        }
        let deleted_on = delete_on_server(&s, &device).await?;
        progress.finish();
        if !in_log && deleted_on.is_none() {
            return Err(CliError::not_verified(format!(
                "no device {device} in the account log or on the server; see `roam device list`"
            ))
            .into());
        }
        done.extend(deleted_on.map(|server| format!("deleted on {server}")));
        forget_own_device(&mut s, &device)?;
        println!("revoked {device}");
        for d in done {
            eprintln!("  {d}");
        }
        if in_log {
            s.refresh_cache().await;
        }
        Ok(())
    })
}

/// A device the keystore's log does not know may have been signed in by an op this keystore
/// did not make: revoking it here would fork the log, so that is refused with what it means.
async fn refuse_foreign_device(
    s: &Session,
    state: &AccountState,
    device: &DeviceId,
) -> Result<(), CliError> {
    let held = sync::gather_ops(&s.dir, &state.did, &state.servers).await.0;
    let foreign = account::foreign_ops(&s.ks, &held).into_iter().any(|v| {
        v.get("action").and_then(|a| a.as_str()) == Some("add_device")
            && v.get("device_id").and_then(|d| d.as_str()) == Some(device.as_str())
    });
    if foreign {
        return Err(CliError::not_verified(format!(
            "{device} was signed into the log by an op this keystore did not make; \
             if that was not you, your update key is compromised: run `roam recover --recovery FILE`"
        )));
    }
    Ok(())
}

/// Signs `revoke_device`, saves, and pushes it to the log's servers; says which took it.
async fn sign_revoke_and_push(
    s: &mut Session,
    state: &AccountState,
    device: &DeviceId,
) -> anyhow::Result<Vec<String>> {
    account::sign_next(
        &mut s.ks,
        Action::RevokeDevice {
            device_id: device.clone(),
        },
    )?;
    s.save()?;
    let outcomes =
        sync::push_to_servers(&s.dir, &state.did, &s.ks.public.ops, &state.servers, |_| {}).await;
    let mut done = Vec::new();
    for o in &outcomes {
        match &o.result {
            Ok(_) => done.push(format!("{}: revoke_device recorded", o.server)),
            Err(e) => eprintln!(
                "warning: {} has not received the revoke_device op yet: {e}",
                o.server
            ),
        }
    }
    Ok(done)
}

/// Deletes the device on the logged-in server, if it has it; returns that server's name.
async fn delete_on_server(s: &Session, device: &DeviceId) -> anyhow::Result<Option<ServerName>> {
    let Some((hs, user)) = logged_in(s) else {
        return Ok(None);
    };
    let listed = hs.devices().await?;
    if !listed.iter().any(|d| d.device_id == device.as_str()) {
        return Ok(None);
    }
    let mut last = None;
    for answer in uia_answers(s, &user) {
        match hs.delete_devices(&[device.to_string()], &answer).await {
            Ok(()) => {
                if let Some(e) = &last {
                    eprintln!(
                        "note: the server refused key authentication ({e}); the account password was used"
                    );
                }
                return Ok(Some(user.server_name()));
            }
            Err(e) => last = Some(e),
        }
    }
    match last {
        Some(e) => Err(anyhow::Error::new(e).context(format!("deleting {device} on the server"))),
        None => Ok(None),
    }
}

/// How to answer the server's authentication: the account key, then the password if any.
fn uia_answers(s: &Session, user: &UserId) -> Vec<UiaAnswer> {
    let key = UiaAnswer::Key {
        user_id: user.clone(),
        server: user.server_name(),
        key: Box::new(s.ks.update_key()),
    };
    let password =
        s.ks.secrets
            .password
            .as_ref()
            .map(|pw| UiaAnswer::Password {
                user_id: user.clone(),
                password: pw.clone(),
            });
    std::iter::once(key).chain(password).collect()
}

/// Revoking this keystore's own device logs it out.
fn forget_own_device(s: &mut Session, device: &DeviceId) -> anyhow::Result<()> {
    if s.ks.public.device_id.as_deref() != Some(device.as_str()) {
        return Ok(());
    }
    s.ks.public.device_id = None;
    s.ks.secrets.access_token = None;
    s.ks.secrets.device_keys = None;
    s.save()?;
    eprintln!("that was this keystore's own device: log in again with `roam login`");
    Ok(())
}
