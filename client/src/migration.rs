//! Moving an account to another homeserver, one resumable step at a time.
//!
//! The plan is fixed once and kept in the keystore (`public.pending_migration`) before any op
//! leaves the machine, so a re-run continues the same migration instead of signing a second,
//! conflicting `move`. The steps:
//!
//! 1. `sign` — claim `@localpart:new` (unless claimed) and sign a `move` naming the new server
//!    first (old servers kept as backups if asked); both recorded in the keystore.
//! 2. `submit` — `POST /_roam/v1/migrate` on the new server with the whole log (upload), then
//!    ask its progress until it has verified the log, created the account, attested and
//!    activated (wait); its own steps are idempotent.
//! 3. `device-plane` — fetch the account's device plane (account data such as secret
//!    storage, the key backup, cross-signing and device keys) from the old server with the
//!    session the keystore holds there, and hand it to the new server signed by the account
//!    key ([`crate::device_plane`]); best effort: with the old server down or no session
//!    there, the step is skipped and says how to carry it from an export file instead.
//! 4. `notify` — push the new ops to the old servers so they can forward; best effort: a server
//!    that is down is skipped, the new server forwards when it can.
//! 5. `login` — key login on the new server with the same device ID (devices move with the log).
//!
//! Nothing needs the old server: the log is the client's own record. [`run`] plans (or
//! resumes the saved plan), then drives the steps through a small `Driver` that saves the
//! keystore and reports after each one.

use std::time::Duration;

use roam_identity_core::log::Action;
use roam_identity_core::{Did, IdError, Localpart, ServerName, UserId};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::account::{self, AccountError};
use crate::directory::ServerDirectory;
use crate::homeserver::{Homeserver, HomeserverError, MigrateRequest, Migration, UiaAnswer};
use crate::keystore::{Keystore, KeystoreError};
use crate::session::{self, SessionError};
use crate::sync;

/// A step of the migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Sign the claim and the move.
    Sign,
    /// Hand the log to the new server and wait until it hosts the account.
    Submit,
    /// Carry the device plane from the old server to the new one (best effort).
    DevicePlane,
    /// Push the new ops to the old servers (best effort).
    Notify,
    /// Key login on the new server.
    Login,
}

impl Step {
    /// The name stored in the keystore and shown in reports.
    pub fn name(self) -> &'static str {
        match self {
            Step::Sign => "sign",
            Step::Submit => "submit",
            Step::DevicePlane => "device-plane",
            Step::Notify => "notify",
            Step::Login => "login",
        }
    }
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The steps, in order.
pub const STEPS: [Step; 5] = [
    Step::Sign,
    Step::Submit,
    Step::DevicePlane,
    Step::Notify,
    Step::Login,
];

/// How often, and how long apart, the new server's progress is asked for.
const STATUS_POLLS: usize = 20;
const STATUS_INTERVAL: Duration = Duration::from_millis(250);

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

impl PendingMigration {
    fn is_done(&self, step: Step) -> bool {
        self.done.iter().any(|d| d == step.name())
    }

    /// The old servers other than the new one.
    fn old_servers_except(&self, to: &ServerName) -> Vec<ServerName> {
        self.old_servers
            .iter()
            .filter_map(|s| ServerName::parse(s).ok())
            .filter(|s| s != to)
            .collect()
    }
}

/// What the user asked for.
#[derive(Debug, Clone)]
pub struct MigrateOptions {
    pub to: Url,
    pub localpart: Option<String>,
    pub keep_old_as_backup: bool,
    /// For a new server whose registration needs a token: migration creates an account there
    /// under the same policy as `/register`. Never saved in the keystore.
    pub registration_token: Option<String>,
    /// The secret-storage recovery key: with it, the cross-signing keys are re-signed for
    /// the new user ID with the same master key after login ([`crate::device_plane::cross_sign`]).
    /// Never saved.
    pub recovery_key: Option<zeroize::Zeroizing<[u8; 32]>>,
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
    pub step: Step,
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
        step: Step,
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
    #[error(transparent)]
    DevicePlane(crate::device_plane::DevicePlaneError),
    /// The plan names something that is not a valid identifier (an edited keystore).
    #[error("the saved plan is invalid: {0}")]
    Id(#[from] IdError),
    /// The plan's URL does not parse (an edited keystore).
    #[error("the saved plan's URL is invalid: {0}")]
    Url(#[from] url::ParseError),
    /// No user ID to take along, and none given.
    #[error("no user ID to take along; pass --user LOCALPART")]
    NoUserId,
    /// The localpart asked for is not valid.
    #[error("--user {localpart:?}: {source}")]
    BadLocalpart { localpart: String, source: IdError },
    /// The new server has not finished its side yet.
    #[error("{server} has not finished the migration yet ({steps})")]
    NotFinished { server: String, steps: String },
}

fn stopped(step: Step) -> impl FnOnce(StepError) -> MigrationError {
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
    save: impl FnMut(&Keystore) -> Result<(), KeystoreError>,
    report: impl FnMut(&StepReport),
) -> Result<(), MigrationError> {
    let plan = resume_or_plan(ks, dir, opts).await?;
    let mut driver = Driver {
        ks,
        dir,
        plan,
        registration_token: opts.registration_token.as_deref(),
        recovery_key: opts.recovery_key.as_deref(),
        save,
        report,
    };
    driver.sign()?;
    let target = driver.target().map_err(stopped(Step::Submit))?;
    driver.submit(&target).await?;
    driver.device_plane(&target).await?;
    driver.notify(&target).await?;
    driver.login(&target).await
}

/// The saved plan when it is for the same server, a new plan when there is none.
async fn resume_or_plan(
    ks: &Keystore,
    dir: &mut ServerDirectory,
    opts: &MigrateOptions,
) -> Result<PendingMigration, MigrationError> {
    let Some(p) = pending(ks) else {
        return plan(ks, dir, opts).await;
    };
    let same = Url::parse(&p.to_url).is_ok_and(|u| u == opts.to)
        || opts.to.as_str().trim_end_matches('/') == p.to_url;
    if !same {
        return Err(MigrationError::OtherPending {
            pending: p.to_server.clone(),
            url: p.to_url.clone(),
        });
    }
    Ok(p)
}

/// The new server, as the steps after `sign` need it.
struct Target {
    did: Did,
    server: ServerName,
    hs: Homeserver,
}

/// One run of the steps: the keystore, the plan and the caller's callbacks.
struct Driver<'a, S, R> {
    ks: &'a mut Keystore,
    dir: &'a mut ServerDirectory,
    plan: PendingMigration,
    registration_token: Option<&'a str>,
    recovery_key: Option<&'a [u8; 32]>,
    save: S,
    report: R,
}

impl<S, R> Driver<'_, S, R>
where
    S: FnMut(&Keystore) -> Result<(), KeystoreError>,
    R: FnMut(&StepReport),
{
    /// Stores the plan in the keystore and saves it.
    fn checkpoint(&mut self) -> Result<(), MigrationError> {
        store(self.ks, &self.plan);
        (self.save)(self.ks)?;
        Ok(())
    }

    /// Marks `step` done, saves, and reports it.
    fn finish(
        &mut self,
        step: Step,
        state: StepState,
        detail: String,
    ) -> Result<(), MigrationError> {
        self.plan.done.push(step.name().into());
        self.checkpoint()?;
        (self.report)(&StepReport {
            step,
            state,
            detail,
        });
        Ok(())
    }

    /// Reports `step` as done by an earlier run, if it was; true then.
    fn done_earlier(
        &mut self,
        step: Step,
        detail: impl FnOnce(&PendingMigration) -> String,
    ) -> bool {
        if !self.plan.is_done(step) {
            return false;
        }
        (self.report)(&StepReport {
            step,
            state: StepState::AlreadyDone,
            detail: detail(&self.plan),
        });
        true
    }

    /// Step 1: the claim and the move, recorded in the keystore.
    fn sign(&mut self) -> Result<(), MigrationError> {
        if self.done_earlier(Step::Sign, |p| {
            format!("{} op(s) signed by an earlier run", p.ops.len())
        }) {
            return Ok(());
        }
        let detail = sign(self.ks, &mut self.plan).map_err(stopped(Step::Sign))?;
        self.finish(Step::Sign, StepState::Done, detail)
    }

    fn target(&mut self) -> Result<Target, StepError> {
        let did = self.ks.did()?;
        let server = ServerName::parse(&self.plan.to_server)?;
        let url = Url::parse(&self.plan.to_url)?;
        self.dir.remember(&server, &url);
        let hs = Homeserver::new(url)?;
        Ok(Target { did, server, hs })
    }

    /// Step 2: the new server verifies the log, creates the account, attests and activates.
    async fn submit(&mut self, t: &Target) -> Result<(), MigrationError> {
        if self.done_earlier(Step::Submit, |p| {
            format!("{} accepted the account earlier", p.to_server)
        }) {
            return Ok(());
        }
        let m = self.upload(t).await.map_err(stopped(Step::Submit))?;
        self.plan.migration_id = Some(m.id.clone());
        self.checkpoint()?;
        let m = wait_until_complete(&t.hs, m, &self.plan.to_server)
            .await
            .map_err(stopped(Step::Submit))?;
        let detail = format!(
            "{} verified the log and hosts the account ({})",
            self.plan.to_server,
            describe_steps(&m)
        );
        self.finish(Step::Submit, StepState::Done, detail)
    }

    /// `POST /_roam/v1/migrate` with the whole log.
    async fn upload(&self, t: &Target) -> Result<Migration, StepError> {
        let old_primary = self
            .plan
            .old_servers
            .first()
            .and_then(|s| ServerName::parse(s).ok())
            .filter(|s| s != &t.server);
        let req = MigrateRequest {
            did: &t.did,
            log: &self.ks.public.ops,
            from: old_primary.as_ref(),
            localpart: Some(&self.plan.localpart),
            registration_token: self.registration_token,
        };
        Ok(t.hs.migrate(&req).await?)
    }

    /// Step 3: the device plane, from the old server (with the keystore's session there) to
    /// the new one. Skipped, with the reason and the way around it, when the old server
    /// cannot hand it out; a refusal by the new server stops the migration (re-run resumes).
    async fn device_plane(&mut self, t: &Target) -> Result<(), MigrationError> {
        if self.done_earlier(Step::DevicePlane, |_| {
            "the device plane was carried earlier".into()
        }) {
            return Ok(());
        }
        let plane = match self.old_session() {
            Some(old) => crate::device_plane::fetch(&old)
                .await
                .map_err(|e| e.to_string()),
            None => Err("the keystore holds no session on the old server".into()),
        };
        let plane = match plane {
            Ok(p) => p,
            Err(why) => {
                let detail = format!(
                    "not carried ({why}); with an export file taken earlier, run `roam import --in FILE --homeserver {}`",
                    self.plan.to_url
                );
                return self.finish(Step::DevicePlane, StepState::Skipped, detail);
            }
        };
        let out = crate::device_plane::import(&t.hs, self.ks, &t.server, &plane, None)
            .await
            .map_err(|e| stopped(Step::DevicePlane)(StepError::DevicePlane(e)))?;
        let mut detail = crate::device_plane::describe_outcome(&out);
        let carried = crate::device_plane::cross_signed_users(&plane);
        if !carried.is_empty() && self.recovery_key.is_none() {
            let names: Vec<String> = carried.iter().map(ToString::to_string).collect();
            detail.push_str(&format!(
                "; the cross-signing keys stay valid for {} — to cross-sign the new user ID with the same identity, a Matrix client with the recovery key must re-sign them (or pass --recovery-key)",
                names.join(", ")
            ));
        }
        self.finish(Step::DevicePlane, StepState::Done, detail)
    }

    /// The keystore's session on an old server (not the new one), if it has one.
    fn old_session(&self) -> Option<Homeserver> {
        let token = self.ks.secrets.access_token.clone()?;
        let url = Url::parse(self.ks.public.homeserver.as_deref()?).ok()?;
        let to = Url::parse(&self.plan.to_url).ok()?;
        if url.origin() == to.origin() || self.plan.old_servers.is_empty() {
            return None;
        }
        Some(Homeserver::new(url).ok()?.with_token(token))
    }

    /// Step 4: the old servers get the new ops so they can forward (best effort).
    async fn notify(&mut self, t: &Target) -> Result<(), MigrationError> {
        if self.done_earlier(Step::Notify, |_| "old servers were notified earlier".into()) {
            return Ok(());
        }
        let old = self.plan.old_servers_except(&t.server);
        let outcomes =
            sync::push_to_servers(self.dir, &t.did, &self.ks.public.ops, &old, |_| {}).await;
        let (state, detail) = describe_notified(&outcomes, &self.plan.to_server);
        self.finish(Step::Notify, state, detail)
    }

    /// Step 5: key login on the new server with the same device ID; the plan is dropped.
    /// With the recovery key, the cross-signing keys are then re-signed for the new user ID
    /// (a failure keeps the plan: a re-run logs in and tries again).
    async fn login(&mut self, t: &Target) -> Result<(), MigrationError> {
        let (user_id, device_id) = self.log_in(t).await.map_err(stopped(Step::Login))?;
        let mut detail = format!(
            "logged in to {} as {user_id}, device {device_id}",
            self.plan.to_server
        );
        let token = self.ks.secrets.access_token.clone().unwrap_or_default();
        let hs = t.hs.clone().with_token(token);
        // The new server got the account from its log, without a Matrix password: the one
        // the keystore keeps is set there (authorised by the account key), so that clients
        // without key login sign in to the new server as they did to the old one.
        if let Some(password) = self.ks.secrets.password.clone() {
            let answer = UiaAnswer::Key {
                user_id: user_id.clone(),
                server: t.server.clone(),
                key: Box::new(self.ks.update_key()),
            };
            hs.set_password(&password, &answer)
                .await
                .map_err(|e| stopped(Step::Login)(StepError::Homeserver(e)))?;
            detail.push_str("; the Matrix password from the keystore is set there");
        }
        if let Some(key) = self.recovery_key {
            let done = crate::device_plane::cross_sign(&hs, &user_id, key)
                .await
                .map_err(|e| stopped(Step::Login)(StepError::DevicePlane(e)))?;
            detail.push_str(&format!("; {done}"));
        }
        self.ks.public.pending_migration = None;
        (self.save)(self.ks)?;
        (self.report)(&StepReport {
            step: Step::Login,
            state: StepState::Done,
            detail,
        });
        Ok(())
    }

    async fn log_in(&mut self, t: &Target) -> Result<(UserId, String), StepError> {
        let user_id = UserId::parse(&format!("@{}:{}", self.plan.localpart, t.server))?;
        let device = self.ks.public.device_id.clone();
        let login =
            session::key_login(&t.hs, self.ks, &t.server, &user_id, device.as_deref()).await?;
        let added = session::adopt_login(&t.hs, self.ks, &login).await?;
        self.ks.public.server_urls = self.dir.known().clone();
        (self.save)(self.ks)?;
        if added.is_some() {
            sync::push_ops(&t.hs, &t.did, &self.ks.public.ops).await?;
        }
        Ok((user_id, login.device_id))
    }
}

/// Asks the new server until its side of the migration is complete (or gives up).
async fn wait_until_complete(
    hs: &Homeserver,
    mut m: Migration,
    server: &str,
) -> Result<Migration, StepError> {
    for _ in 0..STATUS_POLLS {
        if m.is_complete() {
            return Ok(m);
        }
        tokio::time::sleep(STATUS_INTERVAL).await;
        m = hs.migration(&m.id).await?;
    }
    if m.is_complete() {
        return Ok(m);
    }
    Err(StepError::NotFinished {
        server: server.to_owned(),
        steps: describe_steps(&m),
    })
}

/// The notify step's outcome in words: done when every old server took the ops.
fn describe_notified(outcomes: &[sync::PushOutcome], to_server: &str) -> (StepState, String) {
    let parts: Vec<String> = outcomes
        .iter()
        .map(|o| match &o.result {
            Ok(n) => format!("{}: {n} new op(s)", o.server),
            Err(e) => format!(
                "{}: not updated ({e}); {to_server} forwards the ops when it can",
                o.server
            ),
        })
        .collect();
    let all_ok = outcomes.iter().all(|o| o.result.is_ok());
    let state = if all_ok && !outcomes.is_empty() {
        StepState::Done
    } else {
        StepState::Skipped
    };
    if parts.is_empty() {
        (state, "no old server to notify".into())
    } else {
        (state, parts.join("; "))
    }
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
    let localpart = choose_localpart(ks, &state, opts).map_err(MigrationError::Plan)?;
    let target = UserId::new(&localpart, &to_server).map_err(|e| MigrationError::Plan(e.into()))?;
    if state.servers == [to_server.clone()] && state.user_ids.contains(&target) {
        return Err(MigrationError::AlreadyThere(to_server.to_string()));
    }
    Ok(PendingMigration {
        to_url: opts.to.as_str().trim_end_matches('/').to_owned(),
        to_server: to_server.to_string(),
        localpart: localpart.as_str().to_owned(),
        keep_old_as_backup: opts.keep_old_as_backup,
        old_servers: state.servers.iter().map(ToString::to_string).collect(),
        ops: Vec::new(),
        migration_id: None,
        done: Vec::new(),
    })
}

/// The localpart asked for, else the one of the keystore's or the log's first user ID.
fn choose_localpart(
    ks: &Keystore,
    state: &roam_identity_core::log::AccountState,
    opts: &MigrateOptions,
) -> Result<Localpart, StepError> {
    let localpart = match &opts.localpart {
        Some(l) => l.clone(),
        None => ks
            .public
            .user_id
            .as_deref()
            .and_then(|u| UserId::parse(u).ok())
            .or_else(|| state.user_ids.first().cloned())
            .map(|u| u.localpart().to_owned())
            .ok_or(StepError::NoUserId)?,
    };
    Localpart::parse(&localpart).map_err(|source| StepError::BadLocalpart { localpart, source })
}

/// The server list after the move: the new server first, then the old ones if kept.
fn servers_after(plan: &PendingMigration, to: &ServerName) -> Vec<ServerName> {
    let mut servers = vec![to.clone()];
    if plan.keep_old_as_backup {
        for s in plan.old_servers_except(to) {
            if !servers.contains(&s) {
                servers.push(s);
            }
        }
    }
    servers.truncate(roam_identity_core::log::MAX_SERVERS);
    servers
}

/// Step 1: the claim and the move, recorded in the keystore.
fn sign(ks: &mut Keystore, plan: &mut PendingMigration) -> Result<String, StepError> {
    let state = account::local_log(ks, account::now_ms())?.state;
    let to = ServerName::parse(&plan.to_server)?;
    let user_id = UserId::parse_strict(&format!("@{}:{}", plan.localpart, plan.to_server))?;
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
    let servers = servers_after(plan, &to);
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
