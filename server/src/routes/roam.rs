//! The `/_roam/v1` API (spec/api.md): bundles, logs, ops, export, key-login challenges,
//! adopting a DID, migration.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use rand_core::{OsRng, RngCore};
use roam_identity_core::log::SignedOp;
use roam_identity_core::{Did, Localpart, UserId, canonical};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::clock::now_ms;
use crate::error::AppError;
use crate::extract::{
    Authenticated, ClientIp, MatrixJson, PathParam, QueryParams, RawBody, from_body_value,
};
use crate::portable::challenge::ChallengeError;
use crate::portable::commit::AccountMode;
use crate::portable::migrate::MigrateRequest;
use crate::routes::long_poll::{long_poll, timeout_param};
use crate::routes::{account, conditional};
use crate::state::AppState;
use crate::store::{AccountRef, Served, ServedKind};

/// The per-IP registration limit, shared by every way an account or a DID arrives.
async fn register_limit(state: &AppState, ip: &ClientIp) -> Result<(), AppError> {
    state
        .limiters()
        .register_per_ip
        .check(ip.key())
        .await
        .map_err(|retry_after_ms| AppError::LimitExceeded { retry_after_ms })
}

fn parse_did(s: &str) -> Result<Did, AppError> {
    Did::parse(s).map_err(|e| AppError::InvalidParam(format!("Invalid DID: {e}")))
}

/// Parses a body as a Roam object: duplicate keys, floats and unsafe integers are refused
/// with their protocol class (`ROAM_INVALID_OP`); what is not JSON is `M_NOT_JSON`.
fn strict_json(bytes: &[u8]) -> Result<Value, AppError> {
    canonical::parse_strict(bytes).map_err(|e| match e {
        canonical::CanonicalError::Syntax(_) => AppError::NotJson,
        e => AppError::RoamInvalidOp {
            class: e.class(),
            index: None,
            message: e.to_string(),
        },
    })
}

/// Parses an ops body strictly (duplicate keys, floats, unsafe integers refused with their
/// protocol class) and returns its `ops` array.
fn ops_body(bytes: &[u8]) -> Result<Vec<Value>, AppError> {
    let value = strict_json(bytes)?;
    match value.get("ops") {
        Some(Value::Array(ops)) => Ok(ops.clone()),
        _ => Err(AppError::BadJson(
            "Body must be an object with an `ops` array".into(),
        )),
    }
}

/// One stored answer, or `M_NOT_FOUND` with `missing`.
async fn served_one(
    state: &AppState,
    account: AccountRef,
    kind: ServedKind,
    missing: impl FnOnce() -> String,
) -> Result<Served, AppError> {
    let found = state.portable().served(vec![account], kind).await?;
    found
        .into_iter()
        .next()
        .flatten()
        .ok_or_else(|| AppError::NotFound(missing()))
}

/// A stored bundle or log as a `200` (or `304`) JSON answer with its validators.
fn json_answer(headers: &HeaderMap, served: Served, kind: ServedKind) -> Response {
    let ok = axum::http::StatusCode::OK;
    conditional::respond_served(headers, served, kind, ok, "application/json", now_ms())
}

/// `GET /_roam/v1/users/{user_id}`: the stored bundle; reads verify nothing.
pub async fn user_bundle(
    State(state): State<AppState>,
    PathParam(user_id): PathParam,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let user = UserId::parse(&user_id)
        .map_err(|e| AppError::InvalidParam(format!("Invalid user ID: {e}")))?;
    let missing = || format!("{user} has no portable identity on this server");
    let served = served_one(
        &state,
        AccountRef::User(user.clone()),
        ServedKind::Bundle,
        missing,
    );
    Ok(json_answer(&headers, served.await?, ServedKind::Bundle))
}

/// `GET /_roam/v1/users/{user_id}/credential`: the binding as a W3C credential (spec §14.2).
pub async fn user_credential(
    State(state): State<AppState>,
    PathParam(user_id): PathParam,
) -> Result<Json<Value>, AppError> {
    let user = UserId::parse(&user_id)
        .map_err(|e| AppError::InvalidParam(format!("Invalid user ID: {e}")))?;
    state.portable().credential_for(&user).await.map(Json)
}

/// `GET /_roam/v1/accounts/{did}`.
pub async fn account_bundle(
    State(state): State<AppState>,
    PathParam(did): PathParam,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let did = parse_did(&did)?;
    let missing = || format!("No account log for {did}");
    let served = served_one(
        &state,
        AccountRef::Did(did.clone()),
        ServedKind::Bundle,
        missing,
    );
    Ok(json_answer(&headers, served.await?, ServedKind::Bundle))
}

/// `GET /_roam/v1/accounts/{did}/log?since=SEQ`: the whole log is a stored answer; a
/// `since` suffix is read from the held ops (parsed, not verified).
pub async fn account_log(
    State(state): State<AppState>,
    PathParam(did): PathParam,
    q: QueryParams,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let did = parse_did(&did)?;
    let since: u64 = match q.get("since") {
        Some(s) => s
            .parse()
            .map_err(|_| AppError::InvalidParam("`since` must be a non-negative integer".into()))?,
        None => 0,
    };
    let missing = || format!("No account log for {did}");
    let served = served_one(
        &state,
        AccountRef::Did(did.clone()),
        ServedKind::Log,
        missing,
    )
    .await?;
    if since == 0 {
        return Ok(json_answer(&headers, served, ServedKind::Log));
    }
    let d = did.clone();
    let ops = state.db(move |s| s.log_ops(&d)).await?;
    let mut parsed: Vec<SignedOp> = ops
        .into_iter()
        .filter_map(|v| SignedOp::from_value(v).ok())
        .filter(|o| o.op.seq >= since)
        .collect();
    parsed.sort_by_key(|o| (o.op.seq, o.hash));
    let body = json!({"ops": parsed.into_iter().map(|o| o.value).collect::<Vec<_>>()});
    let tag = format!(
        "\"{}.{}.log{since}\"",
        served.head.to_multibase(),
        served.generation
    );
    let cache = conditional::cache_control(served.fresh_until, now_ms());
    let ok = axum::http::StatusCode::OK;
    let bytes = serde_json::to_vec(&body).map_err(|e| AppError::Internal(e.to_string()))?;
    Ok(conditional::respond(
        &headers,
        &tag,
        cache,
        ok,
        "application/json",
        bytes,
    ))
}

/// `POST /_roam/v1/accounts/{did}/ops`. A DID this server does not hold yet costs the
/// client address a registration (the per-IP registration limit): new DIDs are free to
/// make, so they are what a flood would be made of.
pub async fn post_ops(
    State(state): State<AppState>,
    ip: ClientIp,
    PathParam(did): PathParam,
    RawBody(body): RawBody,
) -> Result<Json<Value>, AppError> {
    let did = parse_did(&did)?;
    let ops = ops_body(&body)?;
    if ops.is_empty() {
        return Err(AppError::BadJson("`ops` is empty".into()));
    }
    let d = did.clone();
    if state.db(move |s| s.log_summary(&d)).await?.is_none() {
        register_limit(&state, &ip).await?;
    }
    state
        .portable()
        .apply_ops(&did, ops)
        .await
        .map(|a| Json(a.to_json()))
}

/// `GET /_roam/v1/accounts/{did}/forks`: ops refused as equivocation, kept as evidence.
pub async fn account_forks(
    State(state): State<AppState>,
    PathParam(did): PathParam,
) -> Result<Json<Value>, AppError> {
    let did = parse_did(&did)?;
    let d = did.clone();
    let evidence = state.db(move |s| s.fork_evidence(&d)).await?;
    Ok(Json(json!({"did": did.as_str(), "evidence": evidence})))
}

/// Rows read per store call while streaming an export.
const EXPORT_PAGE: usize = 1000;

/// One export line per row.
fn export_lines(rows: Vec<crate::store::ExportedOp>) -> String {
    let mut body = String::new();
    for r in rows {
        body.push_str(
            &json!({"cursor": r.cursor.to_string(), "did": r.did, "op": r.op}).to_string(),
        );
        body.push('\n');
    }
    body
}

/// Most export live follows waiting at once in this process; a request beyond them is
/// answered at once, as without `timeout`, so strangers cannot hold requests open at will.
static EXPORT_FOLLOWERS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(64);

/// Waits (live follow) until an op is held after `after`, up to `timeout`, if a follower slot
/// is free; returns at once without one.
async fn wait_for_ops(
    state: &AppState,
    after: u64,
    timeout: std::time::Duration,
) -> Result<(), AppError> {
    if timeout.is_zero() {
        return Ok(());
    }
    let Ok(_slot) = EXPORT_FOLLOWERS.try_acquire() else {
        return Ok(());
    };
    long_poll(state, timeout, || async {
        let next = state.db(move |s| s.export_ops(after, 1)).await?;
        Ok(((), !next.is_empty()))
    })
    .await
}

/// `GET /_roam/v1/export?after=CURSOR&limit=N&timeout=MS` (`since` is `after`): JSON lines of
/// every op held. With `limit`, one page and `X-Roam-Next-Cursor`; without, a stream of every
/// op after the cursor to the end, read a page at a time (memory bounded whatever the size).
/// With `timeout` (live follow for replicas), a request finding nothing after the cursor
/// waits up to that long for the next op.
pub async fn export(State(state): State<AppState>, q: QueryParams) -> Result<Response, AppError> {
    let after: u64 = match q.get("after").or_else(|| q.get("since")) {
        Some(s) => s.parse().map_err(|_| {
            AppError::InvalidParam("`after` must be a cursor returned earlier".into())
        })?,
        None => 0,
    };
    let limit: Option<usize> = match q.get("limit") {
        Some(s) => Some(
            s.parse::<usize>()
                .ok()
                .filter(|n| (1..=10_000).contains(n))
                .ok_or_else(|| AppError::InvalidParam("`limit` must be from 1 to 10000".into()))?,
        ),
        None => None,
    };
    wait_for_ops(&state, after, timeout_param(q.get("timeout"))?).await?;
    let mut resp = match limit {
        Some(limit) => {
            let rows = state.db(move |s| s.export_ops(after, limit)).await?;
            let next = rows.last().map_or(after, |r| r.cursor);
            let mut resp = export_lines(rows).into_response();
            if let Ok(v) = HeaderValue::from_str(&next.to_string()) {
                resp.headers_mut().insert("x-roam-next-cursor", v);
            }
            resp
        }
        None => Response::new(axum::body::Body::from_stream(export_stream(state, after))),
    };
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    Ok(resp)
}

/// Every op after `after`, a page per store call, until a page comes back short.
fn export_stream(
    state: AppState,
    after: u64,
) -> impl futures::Stream<Item = Result<String, AppError>> + Send {
    futures::stream::try_unfold(Some(after), move |cursor| {
        let state = state.clone();
        async move {
            let Some(after) = cursor else {
                return Ok(None);
            };
            let rows = state.db(move |s| s.export_ops(after, EXPORT_PAGE)).await?;
            if rows.is_empty() {
                return Ok(None);
            }
            let next = (rows.len() == EXPORT_PAGE).then(|| rows.last().map_or(after, |r| r.cursor));
            Ok(Some((export_lines(rows), next)))
        }
    })
}

#[derive(Debug, Deserialize)]
pub struct ChallengeRequest {
    user_id: String,
}

/// `POST /_roam/v1/login/challenge`.
pub async fn login_challenge(
    State(state): State<AppState>,
    ip: ClientIp,
    MatrixJson(req): MatrixJson<ChallengeRequest>,
) -> Result<Json<Value>, AppError> {
    let user = UserId::parse(&req.user_id)
        .map_err(|e| AppError::InvalidParam(format!("Invalid user ID: {e}")))?;
    let mut random = [0u8; 32];
    OsRng.fill_bytes(&mut random);
    state
        .limiters()
        .challenge_per_ip
        .check(ip.key())
        .await
        .map_err(|retry_after_ms| AppError::LimitExceeded { retry_after_ms })?;
    let (challenge, expires_at) = state
        .portable()
        .challenges
        .issue(&user, ip.key(), random, now_ms())
        .map_err(|e| match e {
            ChallengeError::Store(message) => AppError::Internal(message),
            _ => AppError::LimitExceeded {
                retry_after_ms: 1000,
            },
        })?;
    Ok(Json(
        json!({"challenge": challenge, "expires_at": expires_at}),
    ))
}

/// `POST /_roam/v1/account/did`: an existing account adopts a DID with a log that claims it.
///
/// The account already passed the registration gate when it was created, so the policy is
/// not asked again; the per-IP registration limit applies, and the store refuses (inside
/// the write transaction) a user ID bound to another DID meanwhile.
pub async fn adopt_did(
    State(state): State<AppState>,
    ip: ClientIp,
    auth: Authenticated,
    RawBody(body): RawBody,
) -> Result<Json<Value>, AppError> {
    register_limit(&state, &ip).await?;
    let ops = ops_body(&body)?;
    let first = ops
        .first()
        .and_then(|v| v.get("did"))
        .and_then(Value::as_str)
        .ok_or_else(|| {
            AppError::BadJson("`ops` must hold the account log, genesis first".into())
        })?;
    let did = parse_did(first)?;
    let u = auth.user_id.clone();
    if state.db(move |s| s.did_of_user(&u)).await?.is_some() {
        return Err(AppError::UserInUse);
    }
    let log = state
        .portable()
        .bind_account(&did, &ops, Some(&auth.user_id), AccountMode::Existing, None)
        .await?;
    let st = &log.state;
    let d = did.clone();
    let atts = state.db(move |s| s.issued_attestations(&d)).await?;
    Ok(Json(
        json!({"did": did.as_str(), "user_id": auth.user_id.as_str(), "head": st.head.to_multibase(), "attestations": atts}),
    ))
}

/// `POST /_roam/v1/migrate`: rate-limited per client address like `/register`; a
/// migration that creates a local account passes the registration gate first.
pub async fn start_migration(
    State(state): State<AppState>,
    ip: ClientIp,
    RawBody(body): RawBody,
) -> Result<Json<Value>, AppError> {
    register_limit(&state, &ip).await?;
    let value = strict_json(&body)?;
    let req: MigrateRequest = from_body_value(value)?;
    let token = migration_gate(&state, &req).await?;
    let m = state.portable().migrate(req, token).await?;
    Ok(Json(
        serde_json::to_value(m).map_err(|e| AppError::Internal(e.to_string()))?,
    ))
}

/// The registration gate of a migration that would create a local account (spec/api.md):
/// the user ID must be one `/register` could have made, and the policy must allow it.
/// Returns the registration token to consume with the account.
async fn migration_gate(
    state: &AppState,
    req: &MigrateRequest,
) -> Result<Option<String>, AppError> {
    let Some(localpart) = req.localpart.as_deref() else {
        return Ok(None);
    };
    let user_id = Localpart::parse(localpart)
        .and_then(|l| UserId::new(&l, &state.config().server_name))
        .map_err(|e| AppError::InvalidUsername(e.to_string()))?;
    let u = user_id.clone();
    if state.db(move |s| s.account(&u)).await?.is_some() {
        // Resuming (the store checks the account is bound to this DID), not creating.
        return Ok(None);
    }
    account::check_new_user_id(&user_id)?;
    account::registration_gate(state, req.registration_token.as_deref()).await
}

/// `GET /_roam/v1/migrate/{id}`.
pub async fn migration_status(
    State(state): State<AppState>,
    PathParam(id): PathParam,
) -> Result<Json<Value>, AppError> {
    let m = state.portable().migration_status(&id).await?;
    Ok(Json(
        serde_json::to_value(m).map_err(|e| AppError::Internal(e.to_string()))?,
    ))
}

/// `GET /1.0/identifiers/{did}`: W3C DID Resolution (Universal Resolver driver shape). DIDs
/// held here are answered with the stored answer of their head (made when the log changed);
/// others through the resolver, verified.
pub async fn identifiers(
    State(state): State<AppState>,
    did: Result<PathParam, AppError>,
    headers: axum::http::HeaderMap,
) -> Response {
    use roam_resolver::did_resolution::{
        AccountView, CONTENT_TYPE_DID_RESOLUTION, Representation, ResolutionError, negotiate,
        resolution_result,
    };
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let repr = negotiate(accept);
    let respond = |status: u16, body: Value, ctype: &'static str| {
        let mut resp = Json(body).into_response();
        *resp.status_mut() = axum::http::StatusCode::from_u16(status)
            .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
        resp
    };
    let fail = |e: ResolutionError| {
        let (status, body) = e.result();
        respond(status, body, CONTENT_TYPE_DID_RESOLUTION)
    };
    let did = match did {
        Ok(PathParam(d)) => d,
        Err(e) => return fail(ResolutionError::InvalidDid(e.to_string())),
    };
    let did = match Did::parse(&did) {
        Ok(d) => d,
        Err(e) => return fail(ResolutionError::from_did_error(&e)),
    };
    let kind = match repr {
        Representation::Document => ServedKind::DidDocument,
        Representation::ResolutionResult => ServedKind::DidResolution,
    };
    let view = match state
        .portable()
        .served(vec![AccountRef::Did(did.clone())], kind)
        .await
    {
        Ok(mut found) => match found.pop().flatten() {
            Some(served) => {
                let status = if served.deactivated {
                    axum::http::StatusCode::GONE
                } else {
                    axum::http::StatusCode::OK
                };
                let ctype = repr.content_type();
                return conditional::respond_served(
                    &headers,
                    served,
                    kind,
                    status,
                    ctype,
                    now_ms(),
                );
            }
            None => match state.portable().federation.resolve_did(&did).await {
                Ok(r) => AccountView::from_resolution(&r),
                Err(roam_resolver::ResolveError::NotFound { .. }) => {
                    return fail(ResolutionError::NotFound(format!(
                        "No account is known for {did}"
                    )));
                }
                Err(e) => {
                    return fail(ResolutionError::NotFound(format!(
                        "{did} could not be resolved: {e}"
                    )));
                }
            },
        },
        Err(e) => {
            tracing::error!(%did, error = %e, "DID resolution failed");
            return fail(ResolutionError::Internal);
        }
    };
    let (status, body) = resolution_result(&view, repr);
    respond(status, body, repr.content_type())
}

/// `GET /_roam/v1/device-plane`: the caller's account data, current key backup, and
/// cross-signing and device keys, as one object to carry to another server.
pub async fn device_plane_export(
    State(state): State<AppState>,
    auth: Authenticated,
) -> Result<Json<Value>, AppError> {
    Ok(Json(
        state.portable().export_device_plane(&auth.user_id).await?,
    ))
}

/// `POST /_roam/v1/device-plane`: a device plane taken in, signed by the account's update
/// key for this server (no access token: the signature is the authority).
pub async fn device_plane_import(
    State(state): State<AppState>,
    ip: ClientIp,
    MatrixJson(body): MatrixJson<Value>,
) -> Result<Json<Value>, AppError> {
    register_limit(&state, &ip).await?;
    let out = state.portable().import_device_plane(body).await?;
    state.wake_sync();
    Ok(Json(out))
}
