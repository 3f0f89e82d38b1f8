//! `roam claim` and `roam release`: bind or unbind another user ID (one DID, several
//! attested user IDs).
//!
//! A claim counts once the user ID's own server attests it. A server attests user IDs of its
//! own users for accounts it holds: for a user ID on a server of the log (`roam migrate
//! --user`, `roam servers set`), pushing the claim is enough; for an existing Matrix account
//! elsewhere, `--homeserver URL --password PW` logs in to it and asks its server to adopt the
//! DID (`POST /_roam/v1/account/did`).

use clap::Args;
use roam_client::account::{self, now_ms};
use roam_client::homeserver::Homeserver;
use roam_client::sync;
use roam_identity_core::UserId;
use roam_identity_core::bundle::{self, Attested, Bundle};
use roam_identity_core::log::Action;
use url::Url;

use super::common::{GlobalArgs, KeystoreArg, Progress, Session, parse_url, runtime};
use super::exit::CliError;

#[derive(Debug, Args)]
pub struct ClaimArgs {
    /// The user ID to bind, e.g. @alice:b.example.
    user_id: String,
    #[command(flatten)]
    keystore: KeystoreArg,
    /// For an existing Matrix account: its homeserver's base URL (with --password).
    #[arg(long, value_name = "URL", value_parser = parse_url, requires = "password")]
    homeserver: Option<Url>,
    /// The existing Matrix account's password, to prove it is yours.
    #[arg(long, value_name = "PW", env = "ROAM_CLAIM_PASSWORD")]
    password: Option<String>,
}

#[derive(Debug, Args)]
pub struct ReleaseArgs {
    /// The user ID to unbind.
    user_id: String,
    #[command(flatten)]
    keystore: KeystoreArg,
}

pub fn claim(args: ClaimArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let user_id = UserId::parse_strict(&args.user_id)
        .map_err(|e| CliError::usage(format!("{:?} is not a user ID: {e}", args.user_id)))?;
    change(
        &args.keystore,
        global,
        Action::Claim {
            user_id: user_id.clone(),
        },
        async |s: &mut Session| {
            if let (Some(url), Some(pw)) = (&args.homeserver, &args.password) {
                let hs = Homeserver::new(url.clone())?;
                let login = hs.login_with_password(user_id.as_str(), pw).await?;
                hs.with_token(login.access_token)
                    .adopt_did(&s.ks.public.ops)
                    .await?;
            }
            // Does the user ID's own server attest the binding now?
            let did = s.did()?;
            let domain = user_id.server_name();
            let verdict = match s.dir.homeserver(&domain).await {
                Ok(hs) => match hs.user_bundle(&user_id).await {
                    Ok(raw) => match Bundle::from_value(&raw)
                        .and_then(|b| bundle::verify(&b, Some(&did), now_ms()))
                    {
                        Ok(vb) => match vb.binding(&user_id, now_ms()) {
                            Attested::Current { .. } => {
                                format!("{domain} attests it: {user_id} is bound")
                            }
                            _ => format!("claimed in the log; {domain} does not attest it (yet)"),
                        },
                        Err(e) => format!(
                            "claimed in the log; {domain} answers for another account or invalid data ({e})"
                        ),
                    },
                    Err(e) if e.is_not_found() => format!(
                        "claimed in the log; {domain} has no such user for this account: it counts once {domain} attests it \
                     (move there with `roam migrate --to URL --user {}`, or prove an existing account with --homeserver and --password)",
                        user_id.localpart()
                    ),
                    Err(e) => format!("claimed in the log; could not ask {domain}: {e}"),
                },
                Err(e) => format!("claimed in the log; could not reach {domain}: {e}"),
            };
            Ok(verdict)
        },
    )
}

pub fn release(args: ReleaseArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let user_id = UserId::parse(&args.user_id)
        .map_err(|e| CliError::usage(format!("{:?} is not a user ID: {e}", args.user_id)))?;
    change(
        &args.keystore,
        global,
        Action::Release {
            user_id: user_id.clone(),
        },
        async |_s: &mut Session| Ok(format!("{user_id} is no longer claimed by the account")),
    )
}

/// Signs `action`, saves, pushes to every server of the log, then runs `after`.
fn change(
    keystore: &KeystoreArg,
    global: &GlobalArgs,
    action: Action,
    after: impl AsyncFnOnce(&mut Session) -> anyhow::Result<String>,
) -> anyhow::Result<()> {
    let mut s = Session::open(keystore, global)?;
    let state = account::local_log(&s.ks, now_ms())?.state;
    let did = state.did.clone();
    let name = action.name();
    account::sign_next(&mut s.ks, action)?;
    s.save()?;
    let rt = runtime()?;
    rt.block_on(async {
        let progress = Progress::bar(state.servers.len() as u64, "sending the op");
        let outcomes = sync::push_to_servers(&s.dir, &did, &s.ks.public.ops, &state.servers, |o| progress.step(o.server.as_str())).await;
        progress.finish();
        for o in &outcomes {
            if let Err(e) = &o.result {
                eprintln!("  {}: not updated: {e}", o.server);
            }
        }
        if outcomes.iter().all(|o| o.result.is_err()) {
            return Err(CliError::not_delivered(format!("the {name} op is signed and saved, but no server of the account took it; run `roam servers set` with your servers when they are reachable"),
            )
            .into());
        }
        let verdict = after(&mut s).await?;
        println!("{verdict}");
        s.refresh_cache().await;
        Ok(())
    })
}
