//! The account's own settings through Matrix: `POST /account/password` and
//! `POST /account/deactivate`, both behind user-interactive authentication.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};

use super::account::hash_password;
use super::devices::require_password_uia_for;
use crate::error::AppError;
use crate::extract::{Authenticated, MatrixJson};
use crate::secrets::MAX_PASSWORD_BYTES;
use crate::state::AppState;
use crate::uia::Purpose;

#[derive(Debug, Deserialize)]
pub struct PasswordBody {
    #[serde(default)]
    new_password: Option<Value>,
    #[serde(default = "yes")]
    logout_devices: bool,
    #[serde(default)]
    auth: Option<Value>,
}

fn yes() -> bool {
    true
}

/// `POST /account/password`: UIA with the current password (or the account key), then the
/// new password; unless `logout_devices` is false, every other device is logged out.
pub async fn change_password(
    State(state): State<AppState>,
    auth: Authenticated,
    MatrixJson(body): MatrixJson<PasswordBody>,
) -> Result<Json<Value>, AppError> {
    let new_password = match body.new_password {
        Some(Value::String(p)) if !p.is_empty() && p.len() <= MAX_PASSWORD_BYTES => p,
        Some(Value::String(p)) if !p.is_empty() => {
            return Err(AppError::InvalidParam("Password too long".into()));
        }
        Some(_) => return Err(AppError::BadJson("new_password must be a string".into())),
        None => return Err(AppError::MissingParam("Missing param: new_password".into())),
    };
    let purpose = Purpose::ChangePassword(auth.user_id.clone());
    require_password_uia_for(&state, &auth, body.auth.as_ref(), purpose).await?;
    let hash = hash_password(new_password).await?;
    let logout = body.logout_devices;
    state
        .db(move |s| s.set_password(&auth.user_id, hash, Some(&auth.device_id), logout))
        .await?;
    Ok(Json(json!({})))
}

#[derive(Debug, Deserialize)]
pub struct DeactivateBody {
    #[serde(default)]
    auth: Option<Value>,
}

/// `POST /account/deactivate`: UIA, then the account can no longer log in (password or
/// key), its devices and profile are deleted, and its user ID stays taken.
pub async fn deactivate(
    State(state): State<AppState>,
    auth: Authenticated,
    MatrixJson(body): MatrixJson<DeactivateBody>,
) -> Result<Json<Value>, AppError> {
    let purpose = Purpose::Deactivate(auth.user_id.clone());
    require_password_uia_for(&state, &auth, body.auth.as_ref(), purpose).await?;
    state
        .db(move |s| s.deactivate_account(&auth.user_id))
        .await?;
    Ok(Json(json!({"id_server_unbind_result": "no-support"})))
}
