//! The device plane's client API: `GET /sync` (long-polling; to-device messages, device-list
//! changes, one-time key counts, global account data), `PUT /sendToDevice`, global account
//! data and sync filters. There are no rooms on a Roam server: `rooms` and `presence` are
//! always empty.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use roam_identity_core::UserId;
use serde_json::{Map, Value, json};

use super::long_poll::{long_poll, timeout_param};
use crate::error::AppError;
use crate::extract::{Authenticated, MatrixJson, QueryParams};
use crate::state::AppState;
use crate::store::device_plane::{SyncPositions, ToDeviceMessage, TxnKey};

/// To-device messages per `/sync` answer; the rest come with the next one.
const TO_DEVICE_LIMIT: usize = 100;
/// Longest accepted transaction ID.
const MAX_TXN_ID: usize = 255;

/// A `/sync` token: the positions of both streams, `s<keys>_<messages>`. Opaque to clients,
/// durable across restarts (the positions are stored counters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncToken(pub SyncPositions);

impl SyncToken {
    pub fn parse(s: &str) -> Result<Self, AppError> {
        let bad = || AppError::InvalidParam(format!("Invalid sync token {s:?}"));
        let (keys, messages) = s
            .strip_prefix('s')
            .and_then(|rest| rest.split_once('_'))
            .ok_or_else(bad)?;
        Ok(Self(SyncPositions {
            keys: keys.parse().map_err(|_| bad())?,
            messages: messages.parse().map_err(|_| bad())?,
        }))
    }

    /// The key-change position of a `/sync` token, or a bare position (older clients and
    /// `/keys/changes` callers that kept one).
    pub fn key_position(s: &str) -> Result<u64, AppError> {
        match s.parse::<u64>() {
            Ok(n) => Ok(n),
            Err(_) => Self::parse(s).map(|t| t.0.keys),
        }
    }

    pub fn encode(&self) -> String {
        format!("s{}_{}", self.0.keys, self.0.messages)
    }
}

/// What a filter keeps of global account data (`account_data.types`/`not_types`, `*`
/// wildcards, and `limit`).
#[derive(Debug, Default)]
struct AccountDataFilter {
    types: Option<Vec<String>>,
    not_types: Vec<String>,
    limit: Option<usize>,
}

impl AccountDataFilter {
    fn from_filter(filter: &Value) -> Result<Self, AppError> {
        let bad = |m: &str| AppError::BadJson(format!("Invalid filter: {m}"));
        if !filter.is_object() {
            return Err(bad("a filter is a JSON object"));
        }
        let Some(section) = filter.get("account_data") else {
            return Ok(Self::default());
        };
        let strings = |name: &str| -> Result<Option<Vec<String>>, AppError> {
            match section.get(name) {
                None => Ok(None),
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|v| v.as_str().map(str::to_owned))
                    .collect::<Option<Vec<_>>>()
                    .map(Some)
                    .ok_or_else(|| bad(&format!("account_data.{name} must list strings"))),
                Some(_) => Err(bad(&format!("account_data.{name} must be a list"))),
            }
        };
        let limit = match section.get("limit") {
            None => None,
            Some(v) => Some(
                v.as_u64()
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| bad("account_data.limit must be a positive integer"))?
                    as usize,
            ),
        };
        Ok(Self {
            types: strings("types")?,
            not_types: strings("not_types")?.unwrap_or_default(),
            limit,
        })
    }

    fn keeps(&self, kind: &str) -> bool {
        let hit = |p: &String| match p.strip_suffix('*') {
            Some(prefix) => kind.starts_with(prefix),
            None => p == kind,
        };
        !self.not_types.iter().any(hit) && self.types.as_ref().is_none_or(|t| t.iter().any(hit))
    }
}

/// The filter of a `/sync` request: inline JSON or the ID of a stored one.
async fn sync_filter(
    state: &AppState,
    auth: &Authenticated,
    raw: Option<&str>,
) -> Result<AccountDataFilter, AppError> {
    let Some(raw) = raw else {
        return Ok(AccountDataFilter::default());
    };
    let filter = if raw.trim_start().starts_with('{') {
        roam_identity_core::canonical::parse_strict(raw.as_bytes())
            .map_err(|e| AppError::BadJson(format!("Invalid filter: {e}")))?
    } else {
        let (user, id) = (auth.user_id.clone(), raw.to_owned());
        state
            .db(move |s| s.filter(&user, &id))
            .await?
            .ok_or_else(|| AppError::InvalidParam(format!("Unknown filter ID {raw:?}")))?
    };
    AccountDataFilter::from_filter(&filter)
}

/// One look at everything `/sync` reports; `news` when something is new since the token.
struct Snapshot {
    body: Value,
    news: bool,
}

async fn snapshot(
    state: &AppState,
    auth: &Authenticated,
    since: Option<SyncPositions>,
    filter: &AccountDataFilter,
) -> Result<Snapshot, AppError> {
    let (user, device) = (auth.user_id.clone(), auth.device_id.clone());
    let from = since.unwrap_or_default();
    let (now, to_device, changed, counts, fallback, data) = state
        .db(move |s| {
            let now = s.sync_positions()?;
            let to_device = s.take_to_device(&user, &device, from.messages, TO_DEVICE_LIMIT)?;
            let changed = match since {
                Some(p) => s.device_list_changes(&user, p.keys, now.keys)?,
                None => Vec::new(),
            };
            let counts = s.one_time_key_counts(&user, &device)?;
            let fallback = s.unused_fallback_key_types(&user, &device)?;
            let data = s.account_data_since(&user, from.messages)?;
            Ok((now, to_device, changed, counts, fallback, data))
        })
        .await?;
    let limited = to_device.len() >= TO_DEVICE_LIMIT;
    let last_message = to_device.last().map_or(0, |(pos, _)| *pos);
    let next = SyncToken(SyncPositions {
        keys: now.keys,
        // A full page: the rest of the messages come after the last one given.
        messages: if limited {
            last_message
        } else {
            now.messages.max(last_message)
        },
    });
    let mut events: Vec<Value> = data
        .into_iter()
        .filter(|(kind, _)| filter.keeps(kind))
        .map(|(kind, content)| json!({"type": kind, "content": content}))
        .collect();
    if let Some(limit) = filter.limit {
        events.truncate(limit);
    }
    let news = !to_device.is_empty() || !changed.is_empty() || !events.is_empty();
    let to_device: Vec<Value> = to_device.into_iter().map(|(_, e)| e).collect();
    let body = json!({
        "next_batch": next.encode(),
        "to_device": {"events": to_device},
        "device_lists": {"changed": changed, "left": []},
        "device_one_time_keys_count": counts,
        "device_unused_fallback_key_types": fallback,
        "account_data": {"events": events},
        "presence": {"events": []},
        "rooms": {"join": {}, "invite": {}, "leave": {}, "knock": {}},
    });
    Ok(Snapshot { body, news })
}

/// `GET /sync`: answers at once on the first sync or when there is news since `since`;
/// otherwise waits up to `timeout` ms (bounded by the request timeout) for some.
pub async fn sync(
    State(state): State<AppState>,
    auth: Authenticated,
    query: QueryParams,
) -> Result<Json<Value>, AppError> {
    let since = query
        .get("since")
        .map(|s| SyncToken::parse(s).map(|t| t.0))
        .transpose()?;
    let timeout = timeout_param(query.get("timeout"))?;
    let filter = sync_filter(&state, &auth, query.get("filter")).await?;
    let body = long_poll(&state, timeout, || async {
        let snap = snapshot(&state, &auth, since, &filter).await?;
        Ok((snap.body, since.is_none() || snap.news))
    })
    .await?;
    Ok(Json(body))
}

/// The `{userId}` of a `/user/{userId}/…` path: it must be the caller.
fn own_user(path_user: &str, auth: &Authenticated, what: &str) -> Result<(), AppError> {
    if path_user == auth.user_id.as_str() {
        Ok(())
    } else {
        Err(AppError::Forbidden(format!(
            "Cannot access the {what} of other users"
        )))
    }
}

/// One local user and, per device ID (or `*`), a message content.
type Recipient = (UserId, Vec<(String, Value)>);

/// The recipients of a `/sendToDevice` body with, per user, device IDs (or `*`) and
/// contents: local users first, then users of other servers.
fn recipients(
    messages: &Map<String, Value>,
    own_server: &roam_identity_core::ServerName,
) -> Result<(Vec<Recipient>, Vec<Recipient>), AppError> {
    let (mut out, mut remote) = (Vec::new(), Vec::new());
    for (user, devices) in messages {
        let user = UserId::parse(user)
            .map_err(|e| AppError::InvalidParam(format!("Invalid user ID: {e}")))?;
        let devices = devices
            .as_object()
            .ok_or_else(|| AppError::BadJson("Each user's messages must be an object".into()))?;
        if devices.values().any(|c| !c.is_object()) {
            return Err(AppError::BadJson(
                "Message content must be an object".into(),
            ));
        }
        let devices = devices.iter().map(|(d, c)| (d.clone(), c.clone()));
        if user.server_name() == *own_server {
            out.push((user, devices.collect()));
        } else {
            remote.push((user, devices.collect()));
        }
    }
    Ok((out, remote))
}

/// `PUT /sendToDevice/{eventType}/{txnId}`: stored for each recipient device (`*`: every
/// device of the user), once per transaction ID of the sending device.
pub async fn send_to_device(
    State(state): State<AppState>,
    auth: Authenticated,
    path: Result<Path<(String, String)>, PathRejection>,
    MatrixJson(body): MatrixJson<Map<String, Value>>,
) -> Result<Json<Value>, AppError> {
    let Path((event_type, txn_id)) =
        path.map_err(|_| AppError::InvalidParam("Invalid path".into()))?;
    if event_type.is_empty() || event_type.len() > 255 || txn_id.len() > MAX_TXN_ID {
        return Err(AppError::InvalidParam(
            "Event type and transaction ID must be 1 to 255 characters".into(),
        ));
    }
    let (messages, remote) = match body.get("messages") {
        Some(Value::Object(m)) => recipients(m, &state.config().server_name)?,
        Some(_) => return Err(AppError::BadJson("messages must be an object".into())),
        None => return Err(AppError::MissingParam("Missing param: messages".into())),
    };
    let sender = auth.user_id.clone();
    let txn = TxnKey {
        sender: sender.clone(),
        device_id: auth.device_id.clone(),
        txn_id: txn_id.clone(),
    };
    let kind = event_type.clone();
    let fresh = state
        .db(move |s| {
            let mut out = Vec::new();
            for (user, devices) in messages {
                let known = s.devices(&user)?;
                for (device, content) in devices {
                    let event =
                        json!({"sender": sender.as_str(), "type": event_type, "content": content});
                    let targets = known
                        .iter()
                        .filter(|d| device == "*" || d.device_id.as_str() == device);
                    out.extend(targets.map(|d| ToDeviceMessage {
                        user_id: user.clone(),
                        device_id: d.device_id.clone(),
                        event: event.clone(),
                    }));
                }
            }
            s.send_to_device(&txn, out)
        })
        .await?;
    // A retried transaction was delivered the first time, remote copies too.
    if fresh && !remote.is_empty() {
        let message_id = format!("{}:{txn_id}", auth.device_id);
        state
            .remote_keys()
            .send_to_device(&auth.user_id, &kind, &message_id, remote)
            .await;
    }
    Ok(Json(json!({})))
}

/// Account data types a client may not set through this endpoint.
fn settable(kind: &str) -> Result<(), AppError> {
    match kind {
        "m.fully_read" | "m.push_rules" => Err(AppError::BadJson(format!(
            "Cannot set {kind} through account data"
        ))),
        "" => Err(AppError::InvalidParam("Empty account data type".into())),
        k if k.len() > 255 => Err(AppError::InvalidParam("Account data type too long".into())),
        _ => Ok(()),
    }
}

type UserAndType = Result<Path<(String, String)>, PathRejection>;

/// `GET /user/{userId}/account_data/{type}`.
pub async fn get_account_data(
    State(state): State<AppState>,
    auth: Authenticated,
    path: UserAndType,
) -> Result<Json<Value>, AppError> {
    let Path((user, kind)) = path.map_err(|_| AppError::InvalidParam("Invalid path".into()))?;
    own_user(&user, &auth, "account data")?;
    let me = auth.user_id.clone();
    state
        .db(move |s| s.account_data(&me, &kind))
        .await?
        .map(Json)
        .ok_or_else(|| AppError::NotFound("Account data not found".into()))
}

/// `PUT /user/{userId}/account_data/{type}`.
pub async fn put_account_data(
    State(state): State<AppState>,
    auth: Authenticated,
    path: UserAndType,
    MatrixJson(body): MatrixJson<Map<String, Value>>,
) -> Result<Json<Value>, AppError> {
    let Path((user, kind)) = path.map_err(|_| AppError::InvalidParam("Invalid path".into()))?;
    own_user(&user, &auth, "account data")?;
    settable(&kind)?;
    let me = auth.user_id.clone();
    state
        .db(move |s| s.put_account_data(&me, &kind, Value::Object(body)))
        .await?;
    Ok(Json(json!({})))
}

/// `POST /user/{userId}/filter`.
pub async fn create_filter(
    State(state): State<AppState>,
    auth: Authenticated,
    path: Result<Path<String>, PathRejection>,
    MatrixJson(body): MatrixJson<Map<String, Value>>,
) -> Result<Json<Value>, AppError> {
    let Path(user) = path.map_err(|_| AppError::InvalidParam("Invalid path".into()))?;
    own_user(&user, &auth, "filters")?;
    let filter = Value::Object(body);
    AccountDataFilter::from_filter(&filter)?;
    let me = auth.user_id.clone();
    let id = state.db(move |s| s.put_filter(&me, filter)).await?;
    Ok(Json(json!({"filter_id": id})))
}

/// `GET /user/{userId}/filter/{filterId}`.
pub async fn get_filter(
    State(state): State<AppState>,
    auth: Authenticated,
    path: UserAndType,
) -> Result<Json<Value>, AppError> {
    let Path((user, id)) = path.map_err(|_| AppError::InvalidParam("Invalid path".into()))?;
    own_user(&user, &auth, "filters")?;
    let me = auth.user_id.clone();
    state
        .db(move |s| s.filter(&me, &id))
        .await?
        .map(Json)
        .ok_or_else(|| AppError::NotFound("Filter not found".into()))
}
