//! The server-server endpoints of the device plane (Matrix federation API): device lists,
//! key queries and claims, and to-device delivery through `/send` transactions. Every
//! request must carry an `X-Matrix` signature of its origin server, checked against the
//! keys that server publishes.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, Uri};
use roam_identity_core::{DeviceId, ServerName, UserId};
use serde_json::{Map, Value, json};

use super::keys::{QueryAnswer, claim_entry, claim_local, per_user, query_entry, required_object};
use crate::error::AppError;
use crate::portable::carry::{answers_for, inbox_of};
use crate::state::AppState;
use crate::store::device_plane::{ToDeviceMessage, TxnKey};

/// At most this many EDUs in one transaction (Matrix's limit).
const MAX_EDUS: usize = 100;
/// The pseudo device that incoming to-device transactions are recorded under.
const FEDERATION_DEVICE: &str = "FEDERATION";

/// Checks the request's signature; the origin server and the parsed body.
async fn authenticate(
    state: &AppState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<(ServerName, Option<Value>), AppError> {
    let content = if body.is_empty() {
        None
    } else {
        Some(
            roam_identity_core::canonical::parse_strict(body)
                .map_err(|e| AppError::BadJson(format!("Invalid JSON: {e}")))?,
        )
    };
    let uri = uri
        .path_and_query()
        .map_or_else(|| uri.path().to_owned(), |p| p.as_str().to_owned());
    let auth = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let origin = state
        .remote_keys()
        .verify_request(method.as_str(), &uri, auth, content.as_ref())
        .await?;
    Ok((origin, content))
}

/// A user this server answers for, from a path: a local one, or a user ID of another server
/// carried here by a migration.
async fn local_user(
    state: &AppState,
    path: Result<Path<String>, PathRejection>,
) -> Result<UserId, AppError> {
    let bad = || AppError::InvalidParam("Invalid user ID".into());
    let Path(raw) = path.map_err(|_| bad())?;
    let user = UserId::parse(&raw).map_err(|_| bad())?;
    let (own, u) = (state.config().server_name.clone(), user.clone());
    if !state.db(move |s| answers_for(s, &own, &u)).await? {
        return Err(AppError::InvalidParam("Not a user of this server".into()));
    }
    Ok(user)
}

/// `GET /_matrix/federation/v1/user/devices/{userId}`.
pub async fn user_devices(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    body: Bytes,
) -> Result<Json<Value>, AppError> {
    let (origin, _) = authenticate(&state, &method, &uri, &headers, &body).await?;
    let user = local_user(&state, path).await?;
    let own = state.config().server_name.clone();
    let answer = state
        .db(move |s| {
            if user.server_name() == own {
                s.add_remote_follower(&origin, std::slice::from_ref(&user))?;
            }
            let mut q = QueryAnswer::default();
            q.add_user(s, &user, &[], None)?;
            let stream_id = s.sync_positions()?.keys;
            let devices: Vec<Value> = q
                .device_keys
                .get(user.as_str())
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .map(|(id, keys)| {
                    json!({"device_id": id, "keys": keys,
                           "device_display_name": keys["unsigned"]["device_display_name"]})
                })
                .collect();
            let mut out =
                json!({"user_id": user.as_str(), "stream_id": stream_id, "devices": devices});
            if let Some(m) = q.master.get(user.as_str()) {
                out["master_key"] = m.clone();
            }
            if let Some(k) = q.self_signing.get(user.as_str()) {
                out["self_signing_key"] = k.clone();
            }
            Ok(out)
        })
        .await?;
    Ok(Json(answer))
}

/// `POST /_matrix/federation/v1/user/keys/query`: this server's users only.
pub async fn keys_query(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, AppError> {
    let (origin, content) = authenticate(&state, &method, &uri, &headers, &body).await?;
    let requested = required_object(
        content.and_then(|c| c.get("device_keys").cloned()),
        "device_keys",
    )?;
    let wanted = per_user(&requested, query_entry)?;
    let own = state.config().server_name.clone();
    let answer = state
        .db(move |s| {
            let mut q = QueryAnswer::default();
            let mut followed = Vec::new();
            for (user, devices) in wanted {
                if answers_for(s, &own, &user)? {
                    q.add_user(s, &user, &devices, None)?;
                    if user.server_name() == own {
                        followed.push(user);
                    }
                }
            }
            // The asking server is told of these users' changes from now on.
            s.add_remote_follower(&origin, &followed)?;
            Ok(
                json!({"device_keys": q.device_keys, "master_keys": q.master,
                      "self_signing_keys": q.self_signing}),
            )
        })
        .await?;
    Ok(Json(answer))
}

/// `POST /_matrix/federation/v1/user/keys/claim`: this server's users only.
pub async fn keys_claim(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, AppError> {
    let (_, content) = authenticate(&state, &method, &uri, &headers, &body).await?;
    let requested = required_object(
        content.and_then(|c| c.get("one_time_keys").cloned()),
        "one_time_keys",
    )?;
    let own = state.config().server_name.clone();
    let wanted = per_user(&requested, claim_entry)?;
    let keys = state
        .db(move |s| {
            let mut ours = Vec::new();
            for (user, devices) in wanted {
                if answers_for(s, &own, &user)? {
                    ours.push((user, devices));
                }
            }
            claim_local(s, ours)
        })
        .await?;
    Ok(Json(json!({"one_time_keys": keys})))
}

/// One incoming message: the local recipient, the device ID (or `*`) and the content.
type Incoming = (UserId, String, Value);

/// The to-device messages of one `m.direct_to_device` EDU from `origin` (the recipients
/// this server answers for are picked when they are stored).
fn direct_to_device(
    origin: &ServerName,
    content: &Value,
) -> Option<(TxnKey, Vec<Incoming>, Value)> {
    let sender = UserId::parse(content["sender"].as_str()?).ok()?;
    if sender.server_name() != *origin {
        tracing::warn!(%origin, %sender, "to-device EDU for a sender of another server");
        return None;
    }
    let kind = content["type"].as_str()?.to_owned();
    let message_id = content["message_id"].as_str()?.to_owned();
    let mut out = Vec::new();
    for (user, devices) in content["messages"].as_object()? {
        let Ok(user) = UserId::parse(user) else {
            continue;
        };
        for (device, body) in devices.as_object().into_iter().flatten() {
            if body.is_object() {
                out.push((user.clone(), device.clone(), body.clone()));
            }
        }
    }
    let txn = TxnKey {
        sender: sender.clone(),
        device_id: DeviceId::parse(FEDERATION_DEVICE).ok()?,
        txn_id: format!("{origin}/{message_id}"),
    };
    let event = json!({"sender": sender.as_str(), "type": kind});
    Some((txn, out, event))
}

/// Stores one `m.direct_to_device` EDU's messages for local devices (once per message ID).
async fn deliver(state: &AppState, origin: &ServerName, content: &Value) -> Result<(), AppError> {
    let Some((txn, messages, event)) = direct_to_device(origin, content) else {
        return Ok(());
    };
    let own = state.config().server_name.clone();
    state
        .db(move |s| {
            let mut out = Vec::new();
            for (user, device, body) in messages {
                // A carried (old) user ID's messages go to the account's local user.
                let Some(user) = inbox_of(s, &own, &user)? else {
                    continue;
                };
                let mut e = event.clone();
                e["content"] = body;
                for d in s.devices(&user)? {
                    if device == "*" || d.device_id.as_str() == device {
                        out.push(ToDeviceMessage {
                            user_id: user.clone(),
                            device_id: d.device_id.clone(),
                            event: e.clone(),
                        });
                    }
                }
            }
            s.send_to_device(&txn, out).map(|_| ())
        })
        .await
}

/// `PUT /_matrix/federation/v1/send/{txnId}`: EDUs only (a Roam server has no rooms):
/// `m.direct_to_device` (stored for local devices) and `m.device_list_update` (a change
/// for whoever follows that user). Others are ignored.
pub async fn send_transaction(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, AppError> {
    let (origin, content) = authenticate(&state, &method, &uri, &headers, &body).await?;
    let content = content.ok_or(AppError::NotJson)?;
    let edus = content
        .get("edus")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if edus.len() > MAX_EDUS {
        return Err(AppError::BadJson(format!("More than {MAX_EDUS} EDUs")));
    }
    for edu in &edus {
        let edu_content = &edu["content"];
        match edu["edu_type"].as_str() {
            Some("m.direct_to_device") => deliver(&state, &origin, edu_content).await?,
            Some("m.device_list_update") => {
                let user = edu_content["user_id"]
                    .as_str()
                    .and_then(|u| UserId::parse(u).ok());
                if let Some(user) = user.filter(|u| u.server_name() == origin) {
                    state.db(move |s| s.mark_keys_changed(&user)).await?;
                }
            }
            _ => {}
        }
    }
    state.wake_sync();
    Ok(Json(json!({"pdus": Map::new()})))
}
