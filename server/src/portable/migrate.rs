//! `POST /_roam/v1/migrate`: taking an account in from another homeserver.
//!
//! Authority comes from the signed log, not from the caller: the log's current server list
//! must name this server (the user signed a `move`), and a local user ID is only created if
//! the log claims it. The steps are recorded so that a repeat of the same request resumes
//! where the last one stopped; the account, its log, binding and attestations are written in
//! one transaction, so there is no half-created account to clean up. Forwarding the log to
//! the other servers is best effort: a server that is down does not block anything.

use roam_identity_core::log::VerifiedLog;
use roam_identity_core::{Did, Localpart, ServerName, UserId};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::service::{held_log, op_error, signing_key, summary_of};
use super::{attestations_for, merge_ops};
use crate::error::AppError;
use crate::state::{AppState, now_ms};
use crate::store::{Account, LogCommit};

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

    fn done(&self, name: &str) -> bool {
        self.steps
            .iter()
            .any(|s| s.name == name && s.state == "done")
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
    if m.state == "complete" && m.done("forward") {
        return Ok(m);
    }

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
    let held = held_log(state, &did).await?;
    let held_ops = held
        .as_ref()
        .map(|(ops, _)| ops.clone())
        .unwrap_or_default();
    let merged = merge_ops(&held_ops, &incoming, &did, now_ms()).map_err(op_error)?;
    let st = merged.log.state.clone();
    if !st.servers.contains(&server) {
        return Err(AppError::Forbidden(format!(
            "The account log does not name {server} as a server; sign a `move` that lists it first"
        )));
    }
    if st.deactivated {
        return Err(AppError::RoamDeactivated);
    }
    if let Some(u) = &user_id
        && !st.user_ids.contains(u)
    {
        return Err(AppError::Forbidden(format!(
            "The account log does not claim {u}; sign a `claim` for it first"
        )));
    }
    m.step(
        "verify",
        "done",
        Some(format!("log verified, head {} (seq {})", st.head, st.seq)),
    );

    // Steps 2–5 in one transaction: account, log, attestations, activation (binding).
    commit_account(
        state,
        &did,
        &merged.log,
        &merged.accepted,
        held.as_ref().map(|(_, l)| l.state.head),
        user_id.as_ref(),
    )
    .await?;
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
    let all_ops = roam_identity_core::log::verify_values(
        &[held_ops, incoming].concat(),
        Some(&did),
        now_ms(),
    )
    .map(|l| {
        l.chain
            .iter()
            .chain(l.superseded.iter())
            .map(|o| o.value.clone())
            .collect::<Vec<_>>()
    })
    .unwrap_or_default();
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

/// Stores the log, creates or binds the local account and issues attestations, atomically.
async fn commit_account(
    state: &AppState,
    did: &Did,
    log: &VerifiedLog,
    accepted: &[roam_identity_core::log::SignedOp],
    expected_head: Option<roam_identity_core::OpHash>,
    user_id: Option<&UserId>,
) -> Result<(), AppError> {
    let lock = state.portable().lock_for(did);
    let _guard = lock.lock().await;
    let server = state.config().server_name.clone();
    let now = now_ms();
    let bound: Vec<UserId> = user_id.into_iter().cloned().collect();
    // Also keep user IDs bound earlier (a repeated or second migration).
    let mut bound_all = bound.clone();
    for u in log
        .state
        .user_ids
        .iter()
        .filter(|u| u.server_name() == server)
    {
        let (u2, d2) = (u.clone(), did.clone());
        if state
            .db(move |s| Ok(s.did_of_user(&u2)?.as_ref() == Some(&d2)))
            .await?
            && !bound_all.contains(u)
        {
            bound_all.push(u.clone());
        }
    }
    let attestations = attestations_for(&log.state, &server, &signing_key(state), &bound_all, now);
    let commit = LogCommit {
        did: did.clone(),
        expected_head,
        new_ops: accepted.iter().map(|o| (o.hash, o.value.clone())).collect(),
        summary: summary_of(&log.state),
        attestations: Some(attestations),
        bind: bound.clone(),
        unbind: Vec::new(),
    };
    let Some(user_id) = user_id.cloned() else {
        return state.db(move |s| s.commit_log(commit)).await;
    };
    let existing = {
        let u = user_id.clone();
        state
            .db(move |s| Ok((s.account(&u)?, s.did_of_user(&u)?)))
            .await?
    };
    match existing {
        (Some(_), Some(d)) if &d == did => state.db(move |s| s.commit_log(commit)).await,
        (Some(_), _) => Err(AppError::UserInUse),
        (None, _) => {
            let account = Account {
                user_id,
                password_hash: None,
                created_at: now,
            };
            state
                .db(move |s| s.create_account_with_log(account, None, None, commit))
                .await
        }
    }
}
