//! `POST /_roam/v1/migrate`: taking an account in from another homeserver.
//!
//! Authority comes from the signed log, not from the caller: the log's current server list
//! must name this server (the user signed a `move`), and a local user ID is only created if
//! the log claims it. The steps are recorded so that a repeat of the same request resumes
//! where the last one stopped; the account, its log, binding and attestations are written in
//! one transaction, so there is no half-created account to clean up. Forwarding the log to
//! the other servers is best effort: a server that is down does not block anything.

use roam_identity_core::{Did, Localpart, ServerName, UserId};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::commit::AccountMode;
use super::service::Portable;
use crate::clock::now_ms;
use crate::error::AppError;
use crate::metrics::Metrics;

/// The request body.
#[derive(Debug, Clone, Deserialize)]
pub struct MigrateRequest {
    pub did: String,
    #[serde(default)]
    pub log: Option<Vec<Value>>,
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub localpart: Option<String>,
    /// A registration token, when the server's registration policy is `token` and the
    /// migration creates a local account (spec/api.md).
    #[serde(default)]
    pub registration_token: Option<String>,
}

/// One step's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub name: String,
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The stored and returned record of a migration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Migration {
    pub id: String,
    pub did: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    pub state: String,
    pub steps: Vec<Step>,
    pub updated_at: u64,
}

impl Migration {
    fn step(&mut self, name: &str, state: &str, detail: Option<String>) {
        let s = Step {
            name: name.into(),
            state: state.into(),
            detail,
        };
        match self.steps.iter_mut().find(|x| x.name == name) {
            Some(x) => *x = s,
            None => self.steps.push(s),
        }
    }
}

/// The migration ID: derived from what is migrated, so the same request finds the same record.
fn migration_id(server: &ServerName, did: &Did, localpart: Option<&str>) -> String {
    let mut h = Sha256::new();
    h.update(server.as_str());
    h.update([0]);
    h.update(did.as_str());
    h.update([0]);
    h.update(localpart.unwrap_or(""));
    hex::encode(&h.finalize()[..12])
}

/// What a migration request names, parsed: the account, where it comes from, the local
/// user ID to create, and the migration's ID.
struct Target {
    did: Did,
    from: Option<ServerName>,
    user_id: Option<UserId>,
    id: String,
}

impl Target {
    fn parse(req: &MigrateRequest, server: &ServerName) -> Result<Self, AppError> {
        let did = Did::parse(&req.did).map_err(|e| AppError::InvalidParam(format!("did: {e}")))?;
        let from = req
            .from
            .as_deref()
            .map(ServerName::parse)
            .transpose()
            .map_err(|e| AppError::InvalidParam(format!("from: {e}")))?;
        let localpart = req
            .localpart
            .as_deref()
            .map(Localpart::parse)
            .transpose()
            .map_err(|e| AppError::InvalidUsername(e.to_string()))?;
        let user_id = localpart
            .as_ref()
            .map(|l| UserId::new(l, server))
            .transpose()
            .map_err(|e| AppError::InvalidUsername(e.to_string()))?;
        let id = migration_id(server, &did, localpart.as_ref().map(|l| l.as_str()));
        Ok(Self {
            did,
            from,
            user_id,
            id,
        })
    }
}

impl Portable {
    async fn save_migration(&self, did: &Did, m: &mut Migration) -> Result<(), AppError> {
        m.updated_at = now_ms();
        let v = serde_json::to_value(&*m).map_err(|e| AppError::Internal(e.to_string()))?;
        let (id, d) = (m.id.clone(), did.clone());
        Ok(self.db.run(move |s| s.put_migration(&id, &d, &v)).await?)
    }

    /// Looks a migration up by ID.
    pub async fn migration_status(&self, id: &str) -> Result<Migration, AppError> {
        let id = id.to_owned();
        let v = self
            .db
            .run(move |s| s.migration(&id))
            .await?
            .ok_or_else(|| AppError::NotFound("Unknown migration".into()))?;
        serde_json::from_value(v).map_err(|e| AppError::Internal(e.to_string()))
    }

    /// Runs (or resumes) a migration: find the record, get the log, verify and bind it
    /// (steps 1–5, one transaction), then forward it (step 6). A new local account consumes
    /// `token` (the registration gate, checked by the caller) in the same transaction.
    pub async fn migrate(
        &self,
        req: MigrateRequest,
        token: Option<String>,
    ) -> Result<Migration, AppError> {
        let target = Target::parse(&req, &self.server)?;
        let mut m = self.load_or_start(&target).await?;
        let incoming = self.incoming_log(req.log, &target).await?;
        // Verify the union with what is held, then account, log, attestations and
        // activation (binding) in one transaction. A repeat with a longer log adds the new ops.
        let log = self
            .bind_account(
                &target.did,
                &incoming,
                target.user_id.as_ref(),
                AccountMode::CreateIfMissing,
                token.as_deref(),
            )
            .await?;
        let st = &log.state;
        m.step(
            "verify",
            "done",
            Some(format!("log verified, head {} (seq {})", st.head, st.seq)),
        );
        for name in ["account", "log", "attest", "activate"] {
            m.step(name, "done", None);
        }
        m.state = "complete".into();
        self.save_migration(&target.did, &mut m).await?;
        Metrics::add(&self.metrics.migrations_completed, 1);
        let (state, detail) = self.forward_log(&target, &st.servers).await?;
        m.step("forward", state, Some(detail));
        self.save_migration(&target.did, &mut m).await?;
        Ok(m)
    }

    /// The stored record of this migration, or a new one.
    async fn load_or_start(&self, target: &Target) -> Result<Migration, AppError> {
        let id = target.id.clone();
        match self.db.run(move |s| s.migration(&id)).await? {
            Some(v) => serde_json::from_value(v).map_err(|e| AppError::Internal(e.to_string())),
            None => Ok(Migration {
                id: target.id.clone(),
                did: target.did.to_string(),
                user_id: target.user_id.as_ref().map(|u| u.to_string()),
                from: target.from.as_ref().map(|f| f.to_string()),
                state: "in_progress".into(),
                steps: Vec::new(),
                updated_at: now_ms(),
            }),
        }
    }

    /// Step 1: the log — given, or fetched from the old server. A failed fetch leaves no
    /// record: only migrations that completed are stored, so strangers cannot fill the
    /// store with failed ones.
    async fn incoming_log(
        &self,
        given: Option<Vec<Value>>,
        target: &Target,
    ) -> Result<Vec<Value>, AppError> {
        let given = given.unwrap_or_default();
        if !given.is_empty() {
            return Ok(given);
        }
        let Some(from) = &target.from else {
            return Err(AppError::MissingParam(
                "Give the account log or the server to fetch it from (`from`)".into(),
            ));
        };
        match self.federation.fetch_log(from, &target.did).await {
            Ok(ops) => Ok(ops),
            Err(e) => Err(AppError::RoamUnreachable(format!(
                "Could not fetch the account log from {from} ({e}); send it in `log` instead"
            ))),
        }
    }

    /// Step 6: sends everything held for the DID (superseded branches included; receivers
    /// dedupe by hash) to every other server the log names and to the old server. Not
    /// fatal when it fails: the ops are signed by the user and any server can serve them.
    async fn forward_log(
        &self,
        target: &Target,
        servers: &[ServerName],
    ) -> Result<(&'static str, String), AppError> {
        let mut targets: Vec<ServerName> = servers
            .iter()
            .filter(|s| **s != self.server)
            .cloned()
            .collect();
        if let Some(f) = &target.from
            && !targets.contains(f)
            && *f != self.server
        {
            targets.push(f.clone());
        }
        let d = target.did.clone();
        let all_ops = self.db.run(move |s| s.log_ops(&d)).await?;
        let mut failures = Vec::new();
        for t in &targets {
            let fut = self.federation.push_ops(t, &target.did, all_ops.clone());
            match tokio::time::timeout(std::time::Duration::from_secs(10), fut).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => failures.push(format!("{t}: {e}")),
                Err(_) => failures.push(format!("{t}: timed out")),
            }
        }
        if !failures.is_empty() {
            return Ok(("failed", failures.join("; ")));
        }
        if targets.is_empty() {
            return Ok(("done", "no other server to inform".to_owned()));
        }
        let names: Vec<String> = targets.iter().map(|t| t.to_string()).collect();
        Ok(("done", format!("sent to {}", names.join(", "))))
    }
}
