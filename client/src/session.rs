//! Logging in with the account key and signing the device into the account log.
//!
//! Key login (`m.login.roam.key`): the server issues a single-use challenge, the client signs
//! `roam_identity_core::login::login_message` with the current update key. The new device then gets
//! its own Ed25519/Curve25519 identity keys, uploaded as Matrix device keys, and an
//! `add_device` op signed by the account key, so anyone who resolves the account can tell
//! this device from one a server injected.

use roam_identity_core::log::Action;
use roam_identity_core::{DeviceId, ServerName, UserId};

use crate::account::{self, AccountError, DeviceSecrets};
use crate::homeserver::{Homeserver, HomeserverError, LoggedIn};
use crate::keystore::Keystore;

/// Why logging in failed.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Homeserver(#[from] HomeserverError),
    #[error(transparent)]
    Account(#[from] AccountError),
    #[error("the server returned an invalid {what}: {value:?}")]
    BadId { what: &'static str, value: String },
}

/// Logs in to `hs` (named `server`) as `user_id` with the keystore's update key, asking for
/// `device_id` (an existing device keeps its ID; `None` lets the server choose).
pub async fn key_login(
    hs: &Homeserver,
    ks: &Keystore,
    server: &ServerName,
    user_id: &UserId,
    device_id: Option<&str>,
) -> Result<LoggedIn, SessionError> {
    let challenge = hs.login_challenge(user_id).await?;
    let signature = account::sign_login(&ks.update_key(), &challenge.challenge, server, user_id);
    Ok(hs
        .login_with_key(
            user_id,
            &challenge.challenge,
            &signature,
            device_id,
            Some("roam CLI"),
        )
        .await?)
}

/// Records a fresh login in the keystore and, for a device the log does not know yet,
/// generates its identity keys and signs `add_device` (recorded in the keystore; the caller
/// saves it and pushes the op). Uploads the Matrix device keys with the new access token.
/// Returns the `add_device` op, if one was signed.
pub async fn adopt_login(
    hs: &Homeserver,
    ks: &mut Keystore,
    login: &LoggedIn,
) -> Result<Option<roam_identity_core::log::SignedOp>, SessionError> {
    let user_id = UserId::parse(&login.user_id).map_err(|_| SessionError::BadId {
        what: "user ID",
        value: login.user_id.clone(),
    })?;
    let device_id = DeviceId::parse(&login.device_id).map_err(|_| SessionError::BadId {
        what: "device ID",
        value: login.device_id.clone(),
    })?;
    let state = account::local_log(ks, account::now_ms())?.state;
    let same_device = ks.public.device_id.as_deref() == Some(device_id.as_str());
    let secrets = match ks.secrets.device_keys {
        Some((ed25519, curve25519)) if same_device => DeviceSecrets {
            ed25519,
            curve25519,
        },
        _ => DeviceSecrets::generate(),
    };
    ks.public.user_id = Some(user_id.to_string());
    ks.public.device_id = Some(device_id.to_string());
    ks.public.homeserver = Some(hs.base().as_str().trim_end_matches('/').to_owned());
    ks.secrets.access_token = Some(login.access_token.clone());
    ks.secrets.device_keys = Some((secrets.ed25519, secrets.curve25519));
    let signed = match state.devices.get(&device_id) {
        Some(k) if *k == secrets.public() => None,
        Some(_) => {
            // The log knows this device ID with other keys: revoke and re-add.
            account::sign_next(
                ks,
                Action::RevokeDevice {
                    device_id: device_id.clone(),
                },
            )?;
            Some(account::sign_next(
                ks,
                Action::AddDevice {
                    device_id: device_id.clone(),
                    keys: secrets.public(),
                },
            )?)
        }
        None => Some(account::sign_next(
            ks,
            Action::AddDevice {
                device_id: device_id.clone(),
                keys: secrets.public(),
            },
        )?),
    };
    let keys = secrets.matrix_device_keys(&user_id, &device_id)?;
    hs.clone()
        .with_token(login.access_token.clone())
        .upload_device_keys(&keys)
        .await?;
    Ok(signed)
}
