//! `POST /_roam/v1/query`: many accounts in one request (spec/api.md), the shape a room join
//! needs (MSC4243 `query/accounts`). Answered from the stored bundles: the response is those
//! bytes spliced together, nothing is verified or re-encoded.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use roam_identity_core::{Did, UserId};
use serde::Deserialize;

use crate::error::AppError;
use crate::extract::MatrixJson;
use crate::state::AppState;
use crate::store::{AccountRef, ServedKind};

/// The most user IDs and DIDs one query may name, together.
pub const QUERY_MAX_NAMES: usize = 100;
/// Body cap of a query: 100 names of at most 255 bytes, with room for JSON.
pub const QUERY_BODY_LIMIT: usize = 64 * 1024;

#[derive(Debug, Deserialize)]
pub struct QueryRequest {
    #[serde(default)]
    user_ids: Vec<String>,
    #[serde(default)]
    dids: Vec<String>,
}

/// The names of a query, parsed and deduplicated, user IDs first.
fn parse_names(req: QueryRequest) -> Result<Vec<(String, AccountRef)>, AppError> {
    let total = req.user_ids.len() + req.dids.len();
    if total == 0 {
        return Err(AppError::BadJson(
            "Name at least one user ID or DID in `user_ids` or `dids`".into(),
        ));
    }
    if total > QUERY_MAX_NAMES {
        return Err(AppError::TooLarge(format!(
            "At most {QUERY_MAX_NAMES} user IDs and DIDs per query"
        )));
    }
    let mut out: Vec<(String, AccountRef)> = Vec::with_capacity(total);
    for u in req.user_ids {
        let user = UserId::parse(&u)
            .map_err(|e| AppError::InvalidParam(format!("Invalid user ID {u:?}: {e}")))?;
        out.push((u, AccountRef::User(user)));
    }
    for d in req.dids {
        let did = Did::parse(&d)
            .map_err(|e| AppError::InvalidParam(format!("Invalid DID {d:?}: {e}")))?;
        out.push((d, AccountRef::Did(did)));
    }
    let mut seen = std::collections::HashSet::new();
    out.retain(|(name, _)| seen.insert(name.clone()));
    Ok(out)
}

/// Appends `"name":` to a JSON object being written.
fn push_key(out: &mut Vec<u8>, first: &mut bool, name: &str) {
    if !std::mem::take(first) {
        out.push(b',');
    }
    // Names are valid user IDs or DIDs; encoding them still escapes whatever needs it.
    out.extend_from_slice(serde_json::Value::from(name).to_string().as_bytes());
    out.push(b':');
}

/// `POST /_roam/v1/query` with `{"user_ids": [...], "dids": [...]}`: `200 {"users": {user_id:
/// bundle}, "accounts": {did: bundle}, "not_found": [name, ...]}`.
pub async fn query(
    State(state): State<AppState>,
    MatrixJson(req): MatrixJson<QueryRequest>,
) -> Result<Response, AppError> {
    let names = parse_names(req)?;
    let refs = names.iter().map(|(_, r)| r.clone()).collect();
    let found = state.portable().served(refs, ServedKind::Bundle).await?;
    let size: usize = found.iter().flatten().map(|s| s.body.len() + 300).sum();
    let mut body = Vec::with_capacity(size + 64);
    let mut missing = Vec::new();
    for (section, users) in [("users", true), ("accounts", false)] {
        body.extend_from_slice(if users { b"{\"" } else { b",\"" });
        body.extend_from_slice(section.as_bytes());
        body.extend_from_slice(b"\":{");
        let mut first = true;
        for ((name, r), served) in names.iter().zip(&found) {
            if matches!(r, AccountRef::User(_)) != users {
                continue;
            }
            match served {
                Some(s) => {
                    push_key(&mut body, &mut first, name);
                    body.extend_from_slice(&s.body);
                }
                None => missing.push(name.as_str()),
            }
        }
        body.push(b'}');
    }
    body.extend_from_slice(b",\"not_found\":");
    body.extend_from_slice(serde_json::Value::from(missing).to_string().as_bytes());
    body.push(b'}');
    let mut resp = Response::new(Body::from(body));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}
