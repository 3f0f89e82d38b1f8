//! `roam device list` and `roam device revoke`.

use clap::{Args, Subcommand};
use roam_client::account::{self, now_ms};
use roam_client::homeserver::{Homeserver, UiaAnswer};
use roam_client::sync;
use roam_identity_core::log::{self, Action};
use roam_identity_core::{DeviceId, ServerName, UserId, b64};
use serde_json::json;
use url::Url;

use super::common::{GlobalArgs, KeystoreArg, Progress, Session, print_json, runtime};
use super::exit::{CliError, UNVERIFIED, USAGE};

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
    // The log as the servers hold it may have devices signed by ops this keystore did not
    // sign (another copy of the key, or a thief): show those too, marked.
    let (held, _, _) = rt.block_on(sync::gather_ops(&s.dir, &local.did, &local.servers));
    let mut all = s.ks.public.ops.clone();
    all.extend(held);
    let state = match log::verify_values(&all, Some(&local.did), now_ms() + log::MAX_FUTURE_SKEW_MS)
    {
        Ok(v) => v.state,
        Err(e) => {
            eprintln!(
                "warning: the servers' log and this keystore's disagree ({e}); showing this keystore's view"
            );
            local.clone()
        }
    };
    let mut rows = Vec::new();
    for (id, keys) in &state.devices {
        let server = on_server
            .as_ref()
            .and_then(|l| l.iter().find(|d| d.device_id == id.as_str()));
        rows.push(json!({
            "device_id": id.as_str(),
            "signed_in_log": true,
            "signed_by_this_keystore": local.devices.get(id) == Some(keys),
            "on_server": on_server.as_ref().map(|_| server.is_some()),
            "display_name": server.and_then(|d| d.display_name.clone()),
            "last_seen_ts": server.and_then(|d| d.last_seen_ts),
            "ed25519": b64::encode(&keys.ed25519),
            "curve25519": b64::encode(&keys.curve25519),
            "this_keystore": s.ks.public.device_id.as_deref() == Some(id.as_str()),
        }));
    }
    for d in on_server.iter().flatten() {
        if !state.devices.keys().any(|k| k.as_str() == d.device_id) {
            rows.push(json!({
                "device_id": d.device_id,
                "signed_in_log": false,
                "signed_by_this_keystore": false,
                "on_server": true,
                "display_name": d.display_name,
                "last_seen_ts": d.last_seen_ts,
                "this_keystore": s.ks.public.device_id.as_deref() == Some(d.device_id.as_str()),
            }));
        }
    }
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
        let id = r["device_id"].as_str().unwrap_or_default();
        let mut notes = Vec::new();
        notes.push(if r["signed_in_log"] == true {
            "signed by the account key"
        } else {
            "NOT signed by the account key (added by the server, or not yet signed)"
        });
        if r["signed_in_log"] == true && r["signed_by_this_keystore"] == false {
            notes.push(
                "signed by an op this keystore did not make: if not yours, run `roam recover`",
            );
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
    if rows.is_empty() {
        println!("no devices");
    }
    Ok(())
}

fn revoke(args: RevokeArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let device = DeviceId::parse(&args.device_id).map_err(|e| {
        CliError::new(
            USAGE,
            format!("{:?} is not a device ID: {e}", args.device_id),
        )
    })?;
    let mut s = Session::open(&args.keystore, global)?;
    let state = account::local_log(&s.ks, now_ms())?.state;
    let did = state.did.clone();
    let in_log = state.devices.contains_key(&device);
    if !in_log {
        // Signed in by an op this keystore did not make? Revoking it here would fork the log.
        let held = runtime()?
            .block_on(sync::gather_ops(&s.dir, &did, &state.servers))
            .0;
        let foreign = account::foreign_ops(&s.ks, &held).into_iter().any(|v| {
            v.get("action").and_then(|a| a.as_str()) == Some("add_device")
                && v.get("device_id").and_then(|d| d.as_str()) == Some(device.as_str())
        });
        if foreign {
            return Err(CliError::new(
                UNVERIFIED,
                format!(
                    "{device} was signed into the log by an op this keystore did not make; \
                     if that was not you, your update key is compromised: run `roam recover --recovery FILE`"
                ),
            )
            .into());
        }
    }
    let rt = runtime()?;
    rt.block_on(async {
        let progress = Progress::spinner("revoking");
        let mut done = Vec::new();
        if in_log {
            account::sign_next(
                &mut s.ks,
                Action::RevokeDevice {
                    device_id: device.clone(),
                },
            )?;
            s.save()?;
            let outcomes =
                sync::push_to_servers(&s.dir, &did, &s.ks.public.ops, &state.servers, |_| {}).await;
            for o in &outcomes {
                match &o.result {
                    Ok(_) => done.push(format!("{}: revoke_device recorded", o.server)),
                    Err(e) => eprintln!(
                        "warning: {} has not received the revoke_device op yet: {e}",
                        o.server
                    ),
                }
            }
        }
        let mut deleted = false;
        if let Some((hs, user)) = logged_in(&s) {
            let on_server = hs
                .devices()
                .await?
                .iter()
                .any(|d| d.device_id == device.as_str());
            if on_server {
                let server: ServerName = user.server_name();
                let answer = match &s.ks.secrets.password {
                    Some(pw) => vec![
                        UiaAnswer::Key {
                            user_id: user.clone(),
                            server: server.clone(),
                            key: Box::new(s.ks.update_key()),
                        },
                        UiaAnswer::Password {
                            user_id: user.clone(),
                            password: pw.clone(),
                        },
                    ],
                    None => vec![UiaAnswer::Key {
                        user_id: user.clone(),
                        server,
                        key: Box::new(s.ks.update_key()),
                    }],
                };
                let mut last = None;
                for a in &answer {
                    match hs.delete_devices(&[device.to_string()], a).await {
                        Ok(()) => {
                            if let Some(e) = &last {
                                eprintln!(
                                    "note: the server refused key authentication ({e}); the account password was used"
                                );
                            }
                            deleted = true;
                            last = None;
                            break;
                        }
                        Err(e) => last = Some(e),
                    }
                }
                if let Some(e) = last {
                    return Err(
                        anyhow::Error::new(e).context(format!("deleting {device} on the server"))
                    );
                }
                done.push(format!("deleted on {}", user.server_name()));
            }
        }
        progress.finish();
        if !in_log && !deleted {
            return Err(CliError::new(
                UNVERIFIED,
                format!(
                    "no device {device} in the account log or on the server; see `roam device list`"
                ),
            )
            .into());
        }
        if s.ks.public.device_id.as_deref() == Some(device.as_str()) {
            s.ks.public.device_id = None;
            s.ks.secrets.access_token = None;
            s.ks.secrets.device_keys = None;
            s.save()?;
            eprintln!("that was this keystore's own device: log in again with `roam login`");
        }
        println!("revoked {device}");
        for d in done {
            eprintln!("  {d}");
        }
        Ok(())
    })
}
