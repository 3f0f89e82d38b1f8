//! `roam login`: key login (`m.login.roam.key`) and the new device signed into the log.

use anyhow::Context;
use clap::Args;
use roam_client::account::{self, now_ms};
use roam_client::{session, sync};
use roam_identity_core::UserId;
use url::Url;

use super::common::{GlobalArgs, KeystoreArg, Progress, Session, parse_url, runtime};
use super::exit::CliError;

#[derive(Debug, Args)]
pub struct LoginArgs {
    #[command(flatten)]
    keystore: KeystoreArg,
    /// The homeserver's base URL [default: the one the keystore used last].
    #[arg(long, value_name = "URL", value_parser = parse_url)]
    homeserver: Option<Url>,
    /// The user ID to log in as [default: the account's user ID on that server].
    #[arg(long, value_name = "USER_ID")]
    user: Option<String>,
    /// Reuse this device ID instead of letting the server pick a new one.
    #[arg(long, value_name = "DEVICE_ID")]
    device_id: Option<String>,
}

pub fn run(args: LoginArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let mut s = Session::open(&args.keystore, global)?;
    let url = match args.homeserver.clone() {
        Some(u) => u,
        None => {
            s.ks.public
                .homeserver
                .as_deref()
                .and_then(|u| Url::parse(u).ok())
                .ok_or_else(|| {
                    CliError::usage("no homeserver known for this keystore; pass --homeserver URL")
                })?
        }
    };
    let state = account::local_log(&s.ks, now_ms())?.state;
    let did = state.did.clone();
    let rt = runtime()?;
    rt.block_on(async {
        let progress = Progress::spinner("logging in");
        let (server, hs) = s
            .dir
            .identify(&url)
            .await
            .with_context(|| format!("asking {url} for its server name"))?;
        let user_id = match &args.user {
            Some(u) => UserId::parse(u).map_err(|e| CliError::usage(format!("--user {u:?}: {e}")))?,
            None => state
                .user_ids
                .iter()
                .find(|u| u.server_name() == server)
                .cloned()
                .ok_or_else(|| {
                    CliError::usage(format!(
                            "the account has no user ID on {server} (it has {}); pass --user, or move there with `roam migrate --to {url}`",
                            state.user_ids.iter().map(UserId::as_str).collect::<Vec<_>>().join(", ")
                        ),
                    )
                })?,
        };
        // The server checks the signature against the update key it knows: bring it up to
        // date first (after a rotate it may not have seen yet). Failure here is not fatal:
        // the login below says what is wrong.
        let _ = sync::push_ops(&hs, &did, &s.ks.public.ops).await;
        let login = session::key_login(&hs, &s.ks, &server, &user_id, args.device_id.as_deref()).await?;
        let added = session::adopt_login(&hs, &mut s.ks, &login).await?;
        // Record the login (and the add_device op) before sending the op anywhere.
        s.save()?;
        progress.finish();
        if added.is_some() {
            let after = account::local_log(&s.ks, now_ms())?.state;
            let outcomes = sync::push_to_servers(&s.dir, &did, &s.ks.public.ops, &after.servers, |_| {}).await;
            for o in &outcomes {
                if let Err(e) = &o.result {
                    eprintln!("warning: {} has not received the add_device op yet: {e}", o.server);
                }
            }
            if outcomes.iter().all(|o| o.result.is_err()) {
                return Err(CliError::not_delivered("logged in, but no server of the account took the add_device op; run `roam login` again later",
                )
                .into());
            }
        }
        println!("{}", login.device_id);
        eprintln!("logged in to {server} as {user_id}; device {} is signed into the account log", login.device_id);
        s.refresh_cache().await;
        Ok(())
    })
}
