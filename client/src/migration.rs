//! Moving an account to another homeserver, one resumable step at a time.
//!
//! The plan is fixed once and kept in the keystore (`public.pending_migration`) before any op
//! leaves the machine, so a re-run continues the same migration instead of signing a second,
//! conflicting `move`. The steps:
//!
//! 1. `sign` — claim `@localpart:new` (unless claimed) and sign a `move` naming the new server
//!    first (old servers kept as backups if asked); both recorded in the keystore.
//! 2. `submit` — `POST /_roam/v1/migrate` on the new server with the whole log; the server
//!    verifies it, creates the account, attests and activates (its own steps are idempotent).
//! 3. `notify` — push the new ops to the old servers so they can forward; best effort: a server
//!    that is down is skipped, the new server forwards when it can.
//! 4. `login` — key login on the new server with the same device ID (devices move with the log).
//!
//! Nothing needs the old server: the log is the client's own record.

use roam_identity_core::log::Action;
use roam_identity_core::{Localpart, ServerName, UserId};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::account::{self, AccountError};
use crate::directory::ServerDirectory;
use crate::homeserver::{HomeserverError, MigrateRequest, Migration};
use crate::keystore::{Keystore, KeystoreError};
use crate::session::{self, SessionError};
use crate::sync;

/// The steps, in order.
pub const STEPS: [&str; 4] = ["sign", "submit", "notify", "login"];

/// The plan and progress of a migration, as stored in the keystore.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingMigration {
    /// Base URL of the new homeserver.
    pub to_url: String,
    /// Its server name.
    pub to_server: String,
    /// The localpart to claim there.
    pub localpart: String,
    /// Keep the old servers as backups.
    pub keep_old_as_backup: bool,
    /// The server list before the move (primary first).
    pub old_servers: Vec<String>,
    /// Hashes of the ops signed for this migration.
    #[serde(default)]
    pub ops: Vec<String>,
    /// The new server's migration ID, once known.
    #[serde(default)]
    pub migration_id: Option<String>,
    /// Steps completed.
    #[serde(default)]
    pub done: Vec<String>,
}

/// What the user asked for.
#[derive(Debug, Clone)]
pub struct MigrateOptions {
    pub to: Url,
    pub localpart: Option<String>,
    pub keep_old_as_backup: bool,
}

/// How one step ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepState {
    /// Done now.
    Done,
    /// Done by an earlier run.
    AlreadyDone,
    /// Not needed or not possible, and not required (the detail says which).
    Skipped,
}

/// A line of the step-by-step report.
#[derive(Debug, Clone)]
pub struct StepReport {
    pub name: &'static str,
    pub state: StepState,
    pub detail: String,
}

/// Why a migration stopped.
#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    /// Another migration is unfinished.
    #[error(
        "a migration to {pending} is unfinished; finish it with `roam migrate --to {url}`, or drop it with `roam migrate --abandon`"
    )]
    OtherPending { pending: String, url: String },
    /// The new server is the only server already.
    #[error("the account is already hosted by {0} as primary; nothing to migrate")]
    AlreadyThere(String),
    /// A step failed; what was done before is saved.
    #[error(
        "migration stopped at step `{step}`; what was done is saved, re-run the same `roam migrate` command to continue"
    )]
    Stopped {
        step: &'static str,
        #[source]
        source: StepError,
    },
    /// The migration could not be planned (nothing was signed or saved).
    #[error("cannot start the migration: {0}")]
    Plan(StepError),
    /// The plan could not be saved.
    #[error(transparent)]
    Keystore(#[from] KeystoreError),
}

/// The cause of a stopped step.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error(transparent)]
    Homeserver(#[from] HomeserverError),
    #[error(transparent)]
    Account(#[from] AccountError),
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error(transparent)]
    Keystore(#[from] KeystoreError),
    #[error("{0}")]
    Refused(String),
}

fn stopped(step: &'static str) -> impl FnOnce(StepError) -> MigrationError {
    move |source| MigrationError::Stopped { step, source }
}

/// Reads the pending migration from the keystore.
pub fn pending(ks: &Keystore) -> Option<PendingMigration> {
    ks.public
        .pending_migration
        .as_ref()
        .and_then(|v| serde_json::from_value(v.clone()).ok())
}

fn store(ks: &mut Keystore, p: &PendingMigration) {
    ks.public.pending_migration = serde_json::to_value(p).ok();
}

/// Runs (or resumes) a migration. `save` persists the keystore (called after every step);
/// `report` receives each step as it ends.
pub async fn run(
    ks: &mut Keystore,
    dir: &mut ServerDirectory,
    opts: &MigrateOptions,
    mut save: impl FnMut(&Keystore) -> Result<(), KeystoreError>,
    mut report: impl FnMut(&StepReport),
) -> Result<(), MigrationError> {
    let mut plan = match pending(ks) {
        Some(p) => {
            let same = Url::parse(&p.to_url).is_ok_and(|u| u == opts.to)
                || opts.to.as_str().trim_end_matches('/') == p.to_url;
            if !same {
                return Err(MigrationError::OtherPending {
                    pending: p.to_server.clone(),
                    url: p.to_url.clone(),
                });
            }
            p
        }
        None => plan(ks, dir, opts).await?,
    };

    // 1. sign
    if plan.done.iter().any(|d| d == "sign") {
        report(&StepReport {
            name: "sign",
            state: StepState::AlreadyDone,
            detail: format!("{} op(s) signed by an earlier run", plan.ops.len()),
        });
    } else {
        let detail = sign(ks, &mut plan).map_err(stopped("sign"))?;
        plan.done.push("sign".into());
        store(ks, &plan);
        save(ks)?;
        report(&StepReport {
            name: "sign",
            state: StepState::Done,
            detail,
        });
    }

    let did = ks
        .did()
        .map_err(|e| stopped("submit")(StepError::Keystore(e)))?;
    let to_server = ServerName::parse(&plan.to_server)
        .map_err(|e| stopped("submit")(StepError::Refused(e.to_string())))?;
    let to_url = Url::parse(&plan.to_url)
        .map_err(|e| stopped("submit")(StepError::Refused(e.to_string())))?;
    dir.remember(&to_server, &to_url);
    let hs = crate::homeserver::Homeserver::new(to_url.clone())
        .map_err(|e| stopped("submit")(e.into()))?;

    // 2. submit
    if plan.done.iter().any(|d| d == "submit") {
        report(&StepReport {
            name: "submit",
            state: StepState::AlreadyDone,
            detail: format!("{} accepted the account earlier", plan.to_server),
        });
    } else {
        let old_primary = plan
            .old_servers
            .first()
            .and_then(|s| ServerName::parse(s).ok())
            .filter(|s| s != &to_server);
        let req = MigrateRequest {
            did: &did,
            log: &ks.public.ops,
            from: old_primary.as_ref(),
            localpart: Some(&plan.localpart),
        };
        let mut m = hs
            .migrate(&req)
            .await
            .map_err(|e| stopped("submit")(e.into()))?;
        plan.migration_id = Some(m.id.clone());
        store(ks, &plan);
        save(ks)?;
        for _ in 0..20 {
            if m.is_complete() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            m = hs
                .migration(&m.id)
                .await
                .map_err(|e| stopped("submit")(e.into()))?;
        }
        if !m.is_complete() {
            return Err(stopped("submit")(StepError::Refused(format!(
                "{} has not finished the migration yet ({})",
                plan.to_server,
                describe_steps(&m)
            ))));
        }
        plan.done.push("submit".into());
        store(ks, &plan);
        save(ks)?;
        report(&StepReport {
            name: "submit",
            state: StepState::Done,
            detail: format!(
                "{} verified the log and hosts the account ({})",
                plan.to_server,
                describe_steps(&m)
            ),
        });
    }

    // 3. notify the old servers (best effort)
    if plan.done.iter().any(|d| d == "notify") {
        report(&StepReport {
            name: "notify",
            state: StepState::AlreadyDone,
            detail: "old servers were notified earlier".into(),
        });
    } else {
        let old: Vec<ServerName> = plan
            .old_servers
            .iter()
            .filter_map(|s| ServerName::parse(s).ok())
            .filter(|s| s != &to_server)
            .collect();
        let outcomes = sync::push_to_servers(dir, &did, &ks.public.ops, &old, |_| {}).await;
        let mut parts = Vec::new();
        let mut all_ok = true;
        for o in &outcomes {
            match &o.result {
                Ok(n) => parts.push(format!("{}: {n} new op(s)", o.server)),
                Err(e) => {
                    all_ok = false;
                    parts.push(format!(
                        "{}: not updated ({e}); {} forwards the ops when it can",
                        o.server, plan.to_server
                    ))
                }
            }
        }
        plan.done.push("notify".into());
        store(ks, &plan);
        save(ks)?;
        report(&StepReport {
            name: "notify",
            state: if all_ok && !outcomes.is_empty() {
                StepState::Done
            } else {
                StepState::Skipped
            },
            detail: if parts.is_empty() {
                "no old server to notify".into()
            } else {
                parts.join("; ")
            },
        });
    }

    // 4. login on the new server
    let user_id = UserId::parse(&format!("@{}:{}", plan.localpart, plan.to_server))
        .map_err(|e| stopped("login")(StepError::Refused(e.to_string())))?;
    let device = ks.public.device_id.clone();
    let login = session::key_login(&hs, ks, &to_server, &user_id, device.as_deref())
        .await
        .map_err(|e| stopped("login")(e.into()))?;
    let added = session::adopt_login(&hs, ks, &login)
        .await
        .map_err(|e| stopped("login")(e.into()))?;
    ks.public.server_urls = dir.known().clone();
    save(ks)?;
    if added.is_some() {
        sync::push_ops(&hs, &did, &ks.public.ops)
            .await
            .map_err(|e| stopped("login")(e.into()))?;
    }
    ks.public.pending_migration = None;
    save(ks)?;
    report(&StepReport {
        name: "login",
        state: StepState::Done,
        detail: format!(
            "logged in to {} as {user_id}, device {}",
            plan.to_server, login.device_id
        ),
    });
    Ok(())
}

fn describe_steps(m: &Migration) -> String {
    m.steps
        .iter()
        .map(|s| format!("{} {}", s.name, s.state))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Decides the plan: the new server's name (from its key document), the localpart, and the
/// server list before the move.
async fn plan(
    ks: &Keystore,
    dir: &mut ServerDirectory,
    opts: &MigrateOptions,
) -> Result<PendingMigration, MigrationError> {
    let state = account::local_log(ks, account::now_ms())
        .map_err(|e| MigrationError::Plan(e.into()))?
        .state;
    let (to_server, _) = dir
        .identify(&opts.to)
        .await
        .map_err(|e| MigrationError::Plan(e.into()))?;
    let localpart = match &opts.localpart {
        Some(l) => l.clone(),
        None => ks
            .public
            .user_id
            .as_deref()
            .and_then(|u| UserId::parse(u).ok())
            .or_else(|| state.user_ids.first().cloned())
            .map(|u| u.localpart().to_owned())
            .ok_or_else(|| {
                MigrationError::Plan(StepError::Refused(
                    "no user ID to take along; pass --user LOCALPART".into(),
                ))
            })?,
    };
    Localpart::parse(&localpart).map_err(|e| {
        MigrationError::Plan(StepError::Refused(format!("--user {localpart:?}: {e}")))
    })?;
    let target = UserId::parse(&format!("@{localpart}:{to_server}"))
        .map_err(|e| MigrationError::Plan(StepError::Refused(e.to_string())))?;
    if state.servers == [to_server.clone()] && state.user_ids.contains(&target) {
        return Err(MigrationError::AlreadyThere(to_server.to_string()));
    }
    Ok(PendingMigration {
        to_url: opts.to.as_str().trim_end_matches('/').to_owned(),
        to_server: to_server.to_string(),
        localpart,
        keep_old_as_backup: opts.keep_old_as_backup,
        old_servers: state.servers.iter().map(ToString::to_string).collect(),
        ops: Vec::new(),
        migration_id: None,
        done: Vec::new(),
    })
}

/// Step 1: the claim and the move, recorded in the keystore.
fn sign(ks: &mut Keystore, plan: &mut PendingMigration) -> Result<String, StepError> {
    let state = account::local_log(ks, account::now_ms())?.state;
    let to = ServerName::parse(&plan.to_server).map_err(|e| StepError::Refused(e.to_string()))?;
    let user_id = UserId::parse_strict(&format!("@{}:{}", plan.localpart, plan.to_server))
        .map_err(|e| StepError::Refused(e.to_string()))?;
    let mut signed = Vec::new();
    if !state.user_ids.contains(&user_id) {
        let op = account::sign_next(
            ks,
            Action::Claim {
                user_id: user_id.clone(),
            },
        )?;
        plan.ops.push(op.hash.to_string());
        signed.push(format!("claim {user_id}"));
    }
    let mut servers = vec![to.clone()];
    if plan.keep_old_as_backup {
        for s in plan
            .old_servers
            .iter()
            .filter_map(|s| ServerName::parse(s).ok())
        {
            if !servers.contains(&s) {
                servers.push(s);
            }
        }
    }
    servers.truncate(roam_identity_core::log::MAX_SERVERS);
    if state.servers != servers {
        let list = servers
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let op = account::sign_next(ks, Action::Move { servers })?;
        plan.ops.push(op.hash.to_string());
        signed.push(format!("move to [{list}]"));
    }
    Ok(if signed.is_empty() {
        "the log already names the new server; nothing to sign".into()
    } else {
        format!("signed {}", signed.join(" and "))
    })
}
