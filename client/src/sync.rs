//! Bringing servers up to date with the ops this client signed.
//!
//! Ops are authorised by their signatures alone, so the client can hand its whole record to
//! any server named in the log; the server keeps what it lacks and acknowledges the rest. The
//! client first asks what the server holds and sends only the missing ops, in `seq` order and
//! in requests under the API's caps (100 ops, 64 KiB), so a server that holds nothing gets the
//! genesis in the first request, as `spec/api.md` requires.

use std::collections::HashSet;

use roam_identity_core::log::SignedOp;
use roam_identity_core::{Did, ServerName};
use serde_json::Value;

use crate::directory::ServerDirectory;
use crate::homeserver::{Homeserver, HomeserverError};

/// Most ops per request (the API allows 100).
const MAX_OPS_PER_REQUEST: usize = 50;
/// Largest request body (the API allows 64 KiB).
const MAX_REQUEST_BYTES: usize = 48 * 1024;

/// What pushing to one server did.
#[derive(Debug)]
pub struct PushOutcome {
    /// The server.
    pub server: ServerName,
    /// How many ops it lacked and accepted, or why it could not be updated.
    pub result: Result<usize, HomeserverError>,
}

/// Hashes of the ops `hs` holds for `did` (empty when it holds no log).
pub async fn held_hashes(hs: &Homeserver, did: &Did) -> Result<HashSet<String>, HomeserverError> {
    match hs.account_log(did).await {
        Ok(ops) => Ok(ops
            .into_iter()
            .filter_map(|v| SignedOp::from_value(v).ok())
            .map(|o| o.hash.to_string())
            .collect()),
        Err(e) if e.is_not_found() => Ok(HashSet::new()),
        Err(e) => Err(e),
    }
}

/// Sends `hs` the ops of `mine` it lacks. Returns how many it accepted.
pub async fn push_ops(
    hs: &Homeserver,
    did: &Did,
    mine: &[Value],
) -> Result<usize, HomeserverError> {
    let held = held_hashes(hs, did).await?;
    let mut missing: Vec<SignedOp> = mine
        .iter()
        .filter_map(|v| SignedOp::from_value(v.clone()).ok())
        .filter(|o| !held.contains(&o.hash.to_string()))
        .collect();
    if missing.is_empty() {
        return Ok(0);
    }
    missing.sort_by_key(|o| o.op.seq);
    let mut accepted = 0;
    let mut batch: Vec<Value> = Vec::new();
    let mut size = 0;
    for op in missing {
        let len = op.canonical_bytes().len() + 1;
        if !batch.is_empty()
            && (batch.len() >= MAX_OPS_PER_REQUEST || size + len > MAX_REQUEST_BYTES)
        {
            accepted += hs.post_ops(did, &batch).await?.accepted.len();
            batch.clear();
            size = 0;
        }
        size += len;
        batch.push(op.value);
    }
    accepted += hs.post_ops(did, &batch).await?.accepted.len();
    Ok(accepted)
}

/// Pushes `mine` to each of `servers`, one after the other, reporting each outcome (a
/// server that is down does not stop the others).
pub async fn push_to_servers(
    dir: &ServerDirectory,
    did: &Did,
    mine: &[Value],
    servers: &[ServerName],
    mut on_done: impl FnMut(&PushOutcome),
) -> Vec<PushOutcome> {
    let mut out = Vec::with_capacity(servers.len());
    for server in servers {
        let result = match dir.homeserver(server).await {
            Ok(hs) => push_ops(&hs, did, mine).await,
            Err(e) => Err(e),
        };
        let outcome = PushOutcome {
            server: server.clone(),
            result,
        };
        on_done(&outcome);
        out.push(outcome);
    }
    out
}

/// Every op any of `servers` holds for `did` (all branches), with the servers that answered
/// and the errors of those that did not.
pub async fn gather_ops(
    dir: &ServerDirectory,
    did: &Did,
    servers: &[ServerName],
) -> (
    Vec<Value>,
    Vec<ServerName>,
    Vec<(ServerName, HomeserverError)>,
) {
    let mut ops = Vec::new();
    let mut seen = HashSet::new();
    let mut answered = Vec::new();
    let mut failed = Vec::new();
    for server in servers {
        let got = match dir.homeserver(server).await {
            Ok(hs) => hs.account_log(did).await,
            Err(e) => Err(e),
        };
        match got {
            Ok(list) => {
                answered.push(server.clone());
                for v in list {
                    if let Ok(o) = SignedOp::from_value(v.clone())
                        && seen.insert(o.hash.to_string())
                    {
                        ops.push(v);
                    }
                }
            }
            Err(e) => failed.push((server.clone(), e)),
        }
    }
    (ops, answered, failed)
}
