//! Server-side key backup: `/room_keys/version` and `/room_keys/keys`. What clients upload is
//! encrypted on their side (`auth_data`, `session_data`) and stored as it is.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use serde_json::{Map, Value, json};

use crate::error::AppError;
use crate::extract::{Authenticated, MatrixJson, QueryParams};
use crate::state::AppState;
use crate::store::key_backup::{BackupKey, BackupScope, BackupVersion};

/// Longest room or session ID accepted.
const MAX_ID: usize = 255;

fn not_found() -> AppError {
    AppError::NotFound("Unknown backup version".into())
}

/// A version number from a path or query; one that cannot exist is `u64::MAX` (never a
/// stored version), so it is not found — or, for an upload, not the current one.
fn version_number(raw: &str) -> u64 {
    raw.parse().unwrap_or(u64::MAX)
}

fn version_json(v: &BackupVersion) -> Value {
    json!({
        "algorithm": v.algorithm,
        "auth_data": v.auth_data,
        "count": v.count,
        "etag": v.etag.to_string(),
        "version": v.version.to_string(),
    })
}

/// `algorithm` and `auth_data` of a version body.
fn version_body(body: &Map<String, Value>) -> Result<(String, Value), AppError> {
    let algorithm = match body.get("algorithm") {
        Some(Value::String(a)) if !a.is_empty() && a.len() <= MAX_ID => a.clone(),
        Some(_) => return Err(AppError::BadJson("algorithm must be a string".into())),
        None => return Err(AppError::MissingParam("Missing param: algorithm".into())),
    };
    let auth_data = match body.get("auth_data") {
        Some(v @ Value::Object(_)) => v.clone(),
        Some(_) => return Err(AppError::BadJson("auth_data must be an object".into())),
        None => return Err(AppError::MissingParam("Missing param: auth_data".into())),
    };
    Ok((algorithm, auth_data))
}

/// `POST /room_keys/version`: a new version, which becomes the current one.
pub async fn create_version(
    State(state): State<AppState>,
    auth: Authenticated,
    MatrixJson(body): MatrixJson<Map<String, Value>>,
) -> Result<Json<Value>, AppError> {
    let (algorithm, auth_data) = version_body(&body)?;
    let v = state
        .db(move |s| s.create_backup_version(&auth.user_id, algorithm, auth_data))
        .await?;
    Ok(Json(json!({"version": v.to_string()})))
}

/// `GET /room_keys/version`: the current version.
pub async fn current_version(
    State(state): State<AppState>,
    auth: Authenticated,
) -> Result<Json<Value>, AppError> {
    let v = state
        .db(move |s| s.backup_version(&auth.user_id, None))
        .await?
        .ok_or_else(|| AppError::NotFound("No current backup version".into()))?;
    Ok(Json(version_json(&v)))
}

fn path_version(path: Result<Path<String>, PathRejection>) -> Result<u64, AppError> {
    let Path(raw) = path.map_err(|_| not_found())?;
    Ok(version_number(&raw))
}

/// `GET /room_keys/version/{version}`.
pub async fn get_version(
    State(state): State<AppState>,
    auth: Authenticated,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, AppError> {
    let version = path_version(path)?;
    let v = state
        .db(move |s| s.backup_version(&auth.user_id, Some(version)))
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(version_json(&v)))
}

/// `PUT /room_keys/version/{version}`: new `auth_data`; the algorithm cannot change.
pub async fn update_version(
    State(state): State<AppState>,
    auth: Authenticated,
    path: Result<Path<String>, PathRejection>,
    MatrixJson(body): MatrixJson<Map<String, Value>>,
) -> Result<Json<Value>, AppError> {
    let version = path_version(path)?;
    let (algorithm, auth_data) = version_body(&body)?;
    if let Some(v) = body.get("version")
        && v.as_str() != Some(version.to_string().as_str())
    {
        return Err(AppError::InvalidParam(
            "version in the body does not match the path".into(),
        ));
    }
    let user = auth.user_id.clone();
    let stored = state
        .db(move |s| s.backup_version(&user, Some(version)))
        .await?
        .ok_or_else(not_found)?;
    if stored.algorithm != algorithm {
        return Err(AppError::InvalidParam(
            "The algorithm of a backup version cannot change".into(),
        ));
    }
    state
        .db(move |s| s.update_backup_version(&auth.user_id, version, auth_data))
        .await?;
    Ok(Json(json!({})))
}

/// `DELETE /room_keys/version/{version}`: the version and its keys.
pub async fn delete_version(
    State(state): State<AppState>,
    auth: Authenticated,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, AppError> {
    let version = path_version(path)?;
    state
        .db(move |s| s.delete_backup_version(&auth.user_id, version))
        .await?;
    Ok(Json(json!({})))
}

/// A room or session ID: 1–255 printable ASCII characters.
fn check_id(id: &str, what: &str) -> Result<(), AppError> {
    let ok = !id.is_empty() && id.len() <= MAX_ID && id.bytes().all(|b| (0x21..0x7f).contains(&b));
    if ok {
        Ok(())
    } else {
        Err(AppError::InvalidParam(format!("Invalid {what}: {id:?}")))
    }
}

/// One `KeyBackupData` object, checked.
fn key_data(v: &Value) -> Result<Value, AppError> {
    let bad = |m: &str| AppError::BadJson(format!("Invalid key backup data: {m}"));
    let o = v.as_object().ok_or_else(|| bad("not an object"))?;
    for n in ["first_message_index", "forwarded_count"] {
        o.get(n)
            .and_then(Value::as_u64)
            .ok_or_else(|| bad(&format!("{n} must be a non-negative integer")))?;
    }
    o.get("is_verified")
        .and_then(Value::as_bool)
        .ok_or_else(|| bad("is_verified must be a boolean"))?;
    if !o.get("session_data").is_some_and(Value::is_object) {
        return Err(bad("session_data must be an object"));
    }
    Ok(v.clone())
}

/// `{"sessions": {id: data}}` of one room, checked.
fn sessions(room: &str, v: &Value, out: &mut Vec<BackupKey>) -> Result<(), AppError> {
    let sessions = v
        .get("sessions")
        .and_then(Value::as_object)
        .ok_or_else(|| AppError::BadJson("sessions must be an object".into()))?;
    for (id, data) in sessions {
        check_id(id, "session ID")?;
        out.push((room.to_owned(), id.clone(), key_data(data)?));
    }
    Ok(())
}

/// The keys of an upload body in `scope`.
fn upload(scope: &BackupScope, body: &Value) -> Result<Vec<BackupKey>, AppError> {
    let mut out = Vec::new();
    match scope {
        BackupScope::All => {
            let rooms = body
                .get("rooms")
                .and_then(Value::as_object)
                .ok_or_else(|| AppError::BadJson("rooms must be an object".into()))?;
            for (room, v) in rooms {
                check_id(room, "room ID")?;
                sessions(room, v, &mut out)?;
            }
        }
        BackupScope::Room(room) => sessions(room, body, &mut out)?,
        BackupScope::Session(room, id) => out.push((room.clone(), id.clone(), key_data(body)?)),
    }
    Ok(out)
}

/// The answer of a key read in `scope`.
fn keys_json(scope: &BackupScope, keys: Vec<BackupKey>) -> Result<Value, AppError> {
    if let BackupScope::Session(..) = scope {
        return keys
            .into_iter()
            .next()
            .map(|(_, _, data)| data)
            .ok_or_else(|| AppError::NotFound("No backed-up key for this session".into()));
    }
    let mut rooms: Map<String, Value> = Map::new();
    for (room, session, data) in keys {
        let entry = rooms.entry(room).or_insert_with(|| json!({"sessions": {}}));
        entry["sessions"][session] = data;
    }
    Ok(match scope {
        BackupScope::Room(room) => rooms
            .remove(room)
            .unwrap_or_else(|| json!({"sessions": {}})),
        _ => json!({"rooms": rooms}),
    })
}

fn query_version(query: &QueryParams) -> Result<u64, AppError> {
    query.require("version").map(version_number)
}

async fn get_keys(
    state: AppState,
    auth: Authenticated,
    query: QueryParams,
    scope: BackupScope,
) -> Result<Json<Value>, AppError> {
    let version = query_version(&query)?;
    let s2 = scope.clone();
    let keys = state
        .db(move |s| s.backup_keys(&auth.user_id, version, &s2))
        .await
        .map_err(|e| match e {
            AppError::NotFound(_) => not_found(),
            e => e,
        })?;
    keys_json(&scope, keys).map(Json)
}

async fn put_keys(
    state: AppState,
    auth: Authenticated,
    query: QueryParams,
    scope: BackupScope,
    body: Value,
) -> Result<Json<Value>, AppError> {
    let version = query_version(&query)?;
    let keys = upload(&scope, &body)?;
    let v = state
        .db(move |s| s.put_backup_keys(&auth.user_id, version, keys))
        .await?;
    Ok(Json(json!({"etag": v.etag.to_string(), "count": v.count})))
}

async fn delete_keys(
    state: AppState,
    auth: Authenticated,
    query: QueryParams,
    scope: BackupScope,
) -> Result<Json<Value>, AppError> {
    let version = query_version(&query)?;
    let v = state
        .db(move |s| s.delete_backup_keys(&auth.user_id, version, &scope))
        .await?;
    Ok(Json(json!({"etag": v.etag.to_string(), "count": v.count})))
}

type RoomPath = Result<Path<String>, PathRejection>;
type SessionPath = Result<Path<(String, String)>, PathRejection>;

fn room_scope(path: RoomPath) -> Result<BackupScope, AppError> {
    let Path(room) = path.map_err(|_| AppError::InvalidParam("Invalid room ID".into()))?;
    check_id(&room, "room ID")?;
    Ok(BackupScope::Room(room))
}

fn session_scope(path: SessionPath) -> Result<BackupScope, AppError> {
    let Path((room, session)) =
        path.map_err(|_| AppError::InvalidParam("Invalid room or session ID".into()))?;
    check_id(&room, "room ID")?;
    check_id(&session, "session ID")?;
    Ok(BackupScope::Session(room, session))
}

/// `GET /room_keys/keys`.
pub async fn get_all(
    State(state): State<AppState>,
    auth: Authenticated,
    query: QueryParams,
) -> Result<Json<Value>, AppError> {
    get_keys(state, auth, query, BackupScope::All).await
}

/// `PUT /room_keys/keys`.
pub async fn put_all(
    State(state): State<AppState>,
    auth: Authenticated,
    query: QueryParams,
    MatrixJson(body): MatrixJson<Value>,
) -> Result<Json<Value>, AppError> {
    put_keys(state, auth, query, BackupScope::All, body).await
}

/// `DELETE /room_keys/keys`.
pub async fn delete_all(
    State(state): State<AppState>,
    auth: Authenticated,
    query: QueryParams,
) -> Result<Json<Value>, AppError> {
    delete_keys(state, auth, query, BackupScope::All).await
}

/// `GET /room_keys/keys/{roomId}`.
pub async fn get_room(
    State(state): State<AppState>,
    auth: Authenticated,
    path: RoomPath,
    query: QueryParams,
) -> Result<Json<Value>, AppError> {
    get_keys(state, auth, query, room_scope(path)?).await
}

/// `PUT /room_keys/keys/{roomId}`.
pub async fn put_room(
    State(state): State<AppState>,
    auth: Authenticated,
    path: RoomPath,
    query: QueryParams,
    MatrixJson(body): MatrixJson<Value>,
) -> Result<Json<Value>, AppError> {
    put_keys(state, auth, query, room_scope(path)?, body).await
}

/// `DELETE /room_keys/keys/{roomId}`.
pub async fn delete_room(
    State(state): State<AppState>,
    auth: Authenticated,
    path: RoomPath,
    query: QueryParams,
) -> Result<Json<Value>, AppError> {
    delete_keys(state, auth, query, room_scope(path)?).await
}

/// `GET /room_keys/keys/{roomId}/{sessionId}`.
pub async fn get_session(
    State(state): State<AppState>,
    auth: Authenticated,
    path: SessionPath,
    query: QueryParams,
) -> Result<Json<Value>, AppError> {
    get_keys(state, auth, query, session_scope(path)?).await
}

/// `PUT /room_keys/keys/{roomId}/{sessionId}`.
pub async fn put_session(
    State(state): State<AppState>,
    auth: Authenticated,
    path: SessionPath,
    query: QueryParams,
    MatrixJson(body): MatrixJson<Value>,
) -> Result<Json<Value>, AppError> {
    put_keys(state, auth, query, session_scope(path)?, body).await
}

/// `DELETE /room_keys/keys/{roomId}/{sessionId}`.
pub async fn delete_session(
    State(state): State<AppState>,
    auth: Authenticated,
    path: SessionPath,
    query: QueryParams,
) -> Result<Json<Value>, AppError> {
    delete_keys(state, auth, query, session_scope(path)?).await
}
