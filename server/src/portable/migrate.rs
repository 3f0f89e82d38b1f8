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

use super::service::{AccountMode, bind_account};
use crate::error::AppError;
use crate::state::{AppState, now_ms};

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

async fn save(state: &AppState, did: &Did, m: &mut Migration) -> Result<(), AppError> {
    m.updated_at = now_ms();
    let v = serde_json::to_value(&*m).map_err(|e| AppError::Internal(e.to_string()))?;
    let (id, d) = (m.id.clone(), did.clone());
    state.db(move |s| s.put_migration(&id, &d, &v)).await
}

/// Looks a migration up by ID.
pub async fn status(state: &AppState, id: &str) -> Result<Migration, AppError> {
    let id = id.to_owned();
    let v = state
        .db(move |s| s.migration(&id))
        .await?
        .ok_or_else(|| AppError::NotFound("Unknown migration".into()))?;
    serde_json::from_value(v).map_err(|e| AppError::Internal(e.to_string()))
}

/// Runs (or resumes) a migration.
pub async fn migrate(state: &AppState, req: MigrateRequest) -> Result<Migration, AppError> {
    let did = Did::parse(&req.did).map_err(|e| AppError::InvalidParam(format!("did: {e}")))?;
    let server = state.config().server_name.clone();
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
        .map(|l| UserId::new(l, &server))
        .transpose()
        .map_err(|e| AppError::InvalidUsername(e.to_string()))?;
    let id = migration_id(&server, &did, localpart.as_ref().map(|l| l.as_str()));
    let existing = {
        let id = id.clone();
        state.db(move |s| s.migration(&id)).await?
    };
    let mut m = match existing {
        Some(v) => serde_json::from_value(v).map_err(|e| AppError::Internal(e.to_string()))?,
        None => Migration {
            id: id.clone(),
            did: did.to_string(),
            user_id: user_id.as_ref().map(|u| u.to_string()),
            from: from.as_ref().map(|f| f.to_string()),
            state: "in_progress".into(),
            steps: Vec::new(),
            updated_at: now_ms(),
        },
    };
    // Step 1: the log — given, or fetched from the old server — verified together with
    // whatever this server already holds.
    let mut incoming = req.log.clone().unwrap_or_default();
    if incoming.is_empty() {
        let Some(from) = &from else {
            return Err(AppError::MissingParam(
                "Give the account log or the server to fetch it from (`from`)".into(),
            ));
        };
        match state.portable().federation.fetch_log(from, &did).await {
            Ok(ops) => incoming = ops,
            Err(e) => {
                m.step(
                    "verify",
                    "failed",
                    Some(format!("could not fetch the log from {from}: {e}")),
                );
                save(state, &did, &mut m).await?;
                return Err(AppError::RoamUnreachable(format!(
                    "Could not fetch the account log from {from}; send it in `log` instead"
                )));
            }
        }
    }
    // Steps 1–5: verify the union with what is held, then account, log, attestations and
    // activation (binding) in one transaction. A repeat with a longer log adds the new ops.
    let log = bind_account(
        state,
        &did,
        &incoming,
        user_id.as_ref(),
        AccountMode::CreateIfMissing,
    )
    .await?;
    let st = log.state.clone();
    m.step(
        "verify",
        "done",
        Some(format!("log verified, head {} (seq {})", st.head, st.seq)),
    );
    for name in ["account", "log", "attest", "activate"] {
        m.step(name, "done", None);
    }
    m.state = "complete".into();
    save(state, &did, &mut m).await?;
    crate::metrics::Metrics::add(&state.metrics().migrations_completed, 1);

    // Step 6: forward the signed log to every other server it names and to the old server.
    let mut targets: Vec<ServerName> = st
        .servers
        .iter()
        .filter(|s| **s != server)
        .cloned()
        .collect();
    if let Some(f) = &from
        && !targets.contains(f)
        && *f != server
    {
        targets.push(f.clone());
    }
    // Everything held, superseded branches included: receivers dedupe by hash.
    let all_ops = {
        let d = did.clone();
        state.db(move |s| s.log_ops(&d)).await?
    };
    let mut failures = Vec::new();
    for t in &targets {
        let fut = state
            .portable()
            .federation
            .push_ops(t, &did, all_ops.clone());
        match tokio::time::timeout(std::time::Duration::from_secs(10), fut).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failures.push(format!("{t}: {e}")),
            Err(_) => failures.push(format!("{t}: timed out")),
        }
    }
    if failures.is_empty() {
        let detail = if targets.is_empty() {
            "no other server to inform".to_owned()
        } else {
            format!(
                "sent to {}",
                targets
                    .iter()
                    .map(|t| t.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        m.step("forward", "done", Some(detail));
    } else {
        // Not fatal: the ops are signed by the user and any server can serve them.
        m.step("forward", "failed", Some(failures.join("; ")));
    }
    save(state, &did, &mut m).await?;
    Ok(m)
}
