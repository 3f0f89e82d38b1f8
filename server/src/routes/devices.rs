//! Device management. A device is a login session; deleting one (directly or through
//! `/delete_devices`) revokes its token and its end-to-end keys, after password UIA.

use axum::Json;
use axum::extract::Path;
use axum::extract::State;
use axum::extract::rejection::PathRejection;
use roam_identity_core::DeviceId;
use serde::Deserialize;
use serde_json::{Value, json};

use super::account::{check_password, local_user_id, opt_display_name};
use crate::error::{AppError, StageError};
use crate::extract::{Authenticated, MatrixJson, RawBody, parse_object};
use crate::state::AppState;
use crate::store::Device;
use crate::uia::{self, Purpose};

fn device_json(d: &Device) -> Value {
    json!({
        "device_id": d.device_id,
        "display_name": d.display_name,
        "last_seen_ip": d.last_seen_ip,
        "last_seen_ts": d.last_seen_ts,
    })
}

/// A device ID from the path; one that cannot exist is simply not found.
fn path_device(path: Result<Path<String>, PathRejection>) -> Result<DeviceId, AppError> {
    let not_found = || AppError::NotFound("Device not found".into());
    let Path(raw) = path.map_err(|_| not_found())?;
    DeviceId::parse(&raw).map_err(|_| not_found())
}

/// `GET /devices`.
pub async fn list(
    State(state): State<AppState>,
    auth: Authenticated,
) -> Result<Json<Value>, AppError> {
    let devices = state.db(move |s| s.devices(&auth.user_id)).await?;
    Ok(Json(
        json!({"devices": devices.iter().map(device_json).collect::<Vec<_>>()}),
    ))
}

/// `GET /devices/{deviceId}`.
pub async fn get_one(
    State(state): State<AppState>,
    auth: Authenticated,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, AppError> {
    let device_id = path_device(path)?;
    let device = state
        .db(move |s| s.device(&auth.user_id, &device_id))
        .await?;
    device
        .map(|d| Json(device_json(&d)))
        .ok_or_else(|| AppError::NotFound("Device not found".into()))
}

#[derive(Debug, Deserialize)]
pub struct RenameBody {
    display_name: Option<Value>,
}

/// `PUT /devices/{deviceId}`.
pub async fn rename(
    State(state): State<AppState>,
    auth: Authenticated,
    path: Result<Path<String>, PathRejection>,
    MatrixJson(body): MatrixJson<RenameBody>,
) -> Result<Json<Value>, AppError> {
    let device_id = path_device(path)?;
    let name = opt_display_name(&body.display_name)?;
    state
        .db(move |s| s.set_device_display_name(&auth.user_id, &device_id, name))
        .await?;
    Ok(Json(json!({})))
}

/// `DELETE /devices/{deviceId}`. The body (holding `auth`) may be empty on the first call.
pub async fn delete_one(
    State(state): State<AppState>,
    auth: Authenticated,
    path: Result<Path<String>, PathRejection>,
    RawBody(body): RawBody,
) -> Result<Json<Value>, AppError> {
    let device_id = path_device(path)?;
    let body: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        parse_object(&body)?
    };
    require_password_uia(&state, &auth, body.get("auth")).await?;
    state
        .db(move |s| s.delete_devices(&auth.user_id, &[device_id]))
        .await?;
    Ok(Json(json!({})))
}

#[derive(Debug, Deserialize)]
pub struct DeleteManyBody {
    devices: Option<Value>,
    auth: Option<Value>,
}

/// `POST /delete_devices`.
pub async fn delete_many(
    State(state): State<AppState>,
    auth: Authenticated,
    MatrixJson(body): MatrixJson<DeleteManyBody>,
) -> Result<Json<Value>, AppError> {
    let devices = match body.devices {
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().and_then(|s| DeviceId::parse(s).ok()))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| AppError::InvalidParam("devices must be a list of device IDs".into()))?,
        Some(_) => {
            return Err(AppError::InvalidParam(
                "devices must be a list of device IDs".into(),
            ));
        }
        None => return Err(AppError::MissingParam("Missing param: devices".into())),
    };
    require_password_uia(&state, &auth, body.auth.as_ref()).await?;
    state
        .db(move |s| s.delete_devices(&auth.user_id, &devices))
        .await?;
    Ok(Json(json!({})))
}

/// Password UIA for a sensitive operation of the authenticated user.
pub async fn require_password_uia(
    state: &AppState,
    auth: &Authenticated,
    uia_auth: Option<&Value>,
) -> Result<(), AppError> {
    require_password_uia_for(
        state,
        auth,
        uia_auth,
        Purpose::DeleteDevices(auth.user_id.clone()),
    )
    .await
}

pub async fn require_password_uia_for(
    state: &AppState,
    auth: &Authenticated,
    uia_auth: Option<&Value>,
    purpose: Purpose,
) -> Result<(), AppError> {
    // Accounts with a portable identity may also prove themselves with their key.
    let has_key = matches!(
        state.portable().hosted_log(&auth.user_id).await?,
        Ok(Some(_))
    );
    let flows = if has_key {
        vec![vec![uia::PASSWORD], vec![uia::ROAM_KEY]]
    } else {
        vec![vec![uia::PASSWORD]]
    };
    let attempt = state.uia().begin(purpose, &flows, uia_auth)?;
    if attempt.kind == uia::ROAM_KEY {
        let proof = state
            .portable()
            .check_key_proof(&auth.user_id, &attempt.auth)
            .await;
        let outcome = match proof {
            Ok(()) => Ok(None),
            // A malformed stage, or a failure on our side, is not a refused proof.
            Err(e @ (AppError::MissingParam(_) | AppError::Internal(_))) => return Err(e),
            Err(e) => Err(StageError::KeyProofRefused(e.to_string())),
        };
        return state.uia().finish(attempt, &flows, outcome).map(|_| ());
    }
    let (user, password) = uia::password_identity(&attempt.auth)?;
    // The stage proves the *requesting* user knows their password: another user's
    // credentials, even correct ones, do not count.
    let same_user = local_user_id(state, &user).is_ok_and(|u| u == auth.user_id);
    let ok = same_user && check_password(state, &auth.user_id, password).await?;
    let outcome = if ok {
        Ok(None)
    } else {
        Err(StageError::WrongPassword)
    };
    state.uia().finish(attempt, &flows, outcome).map(|_| ())
}
