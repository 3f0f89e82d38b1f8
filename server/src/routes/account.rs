//! Registration, login, logout and whoami.

use std::sync::OnceLock;

use axum::Json;
use axum::extract::State;
use roam_identity_core::{DeviceId, Localpart, UserId};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::clock::now_ms;
use crate::config::RegistrationMode;
use crate::error::{AppError, StageError};
use crate::extract::{Authenticated, ClientIp, MatrixJson, QueryParams};
use crate::secrets::{self, MAX_PASSWORD_BYTES};
use crate::state::AppState;
use crate::store::{Account, NewAccount, NewSession, RefreshedTokens};
use crate::uia::{self, Purpose};

/// Longest device display name accepted (Synapse's limit).
pub const MAX_DISPLAY_NAME_LEN: usize = 100;

#[derive(Debug, Deserialize)]
pub struct RegisterBody {
    username: Option<Value>,
    password: Option<Value>,
    device_id: Option<Value>,
    initial_device_display_name: Option<Value>,
    inhibit_login: Option<Value>,
    /// Matrix refresh tokens: `true` asks for one.
    refresh_token: Option<Value>,
    auth: Option<Value>,
    /// A genesis op: the account is created with this portable identity (spec/api.md).
    #[serde(rename = "org.roam.genesis")]
    genesis: Option<Value>,
}

/// `POST /register`: check the request, the name and the genesis op (before UIA, so a
/// client learns about a taken name or a bad log at once), run UIA, then create the account
/// (with its log when it has a portable identity) and its first session in one transaction.
pub async fn register(
    State(state): State<AppState>,
    ip: ClientIp,
    query: QueryParams,
    MatrixJson(body): MatrixJson<RegisterBody>,
) -> Result<Json<Value>, AppError> {
    check_registration_kind(&query)?;
    let flows = registration_flows(state.config().registration)?;
    state
        .limiters()
        .register_per_ip
        .check(ip.key())
        .await
        .map_err(|retry_after_ms| AppError::LimitExceeded { retry_after_ms })?;
    let fields = RegisterFields::parse(&body)?;
    let requested = match opt_string(&body.username, "username")? {
        Some(name) => Some(available_user_id(&state, &name).await?),
        None => None,
    };
    let genesis = match &body.genesis {
        None | Some(Value::Null) => None,
        Some(g) => Some(check_genesis(&state, g, requested.as_ref()).await?),
    };
    let requested = requested.or_else(|| genesis.as_ref().map(|g| g.state.user_ids[0].clone()));
    let completed = run_registration_uia(&state, &flows, body.auth.as_ref()).await?;
    // With a portable identity the password is optional: the key logs in.
    if fields.password.is_none() && genesis.is_none() {
        return Err(AppError::MissingParam("Missing params: password".into()));
    }
    let user_id = match requested {
        Some(u) => u,
        None => generate_user_id(&state).await?,
    };
    let password_hash = match fields.password {
        Some(p) => Some(hash_password(p).await?),
        None => None,
    };
    let now = now_ms();
    let (session, mut reply) = match fields.inhibit_login {
        true => (None, json!({"user_id": user_id})),
        false => {
            let device = (fields.device_id, fields.display_name);
            let (mut reply, session) = new_session(&state, device, fields.refresh, &ip, now);
            reply["user_id"] = json!(user_id);
            (Some(session), reply)
        }
    };
    reply["home_server"] = json!(state.config().server_name);
    let new = NewAccount {
        account: Account {
            user_id: user_id.clone(),
            password_hash,
            created_at: now,
            deactivated: false,
        },
        session,
        registration_token: completed.registration_token,
    };
    match genesis {
        None => state.db(move |s| s.create_account(new)).await?,
        Some(log) => {
            reply["org.roam.did"] = json!(log.state.did.as_str());
            state.portable().create_with_genesis(new, &log).await?;
        }
    }
    tracing::info!(user_id = %user_id, "registered");
    Ok(Json(reply))
}

/// Only user registration: guests are refused, other kinds are invalid.
fn check_registration_kind(query: &QueryParams) -> Result<(), AppError> {
    match query.get("kind").unwrap_or("user") {
        "user" => Ok(()),
        "guest" => Err(AppError::GuestAccessForbidden),
        other => Err(AppError::InvalidParam(format!(
            "Invalid registration kind {other:?}"
        ))),
    }
}

/// The plain fields of a registration, checked.
struct RegisterFields {
    password: Option<String>,
    inhibit_login: bool,
    refresh: bool,
    device_id: Option<DeviceId>,
    display_name: Option<String>,
}

impl RegisterFields {
    fn parse(body: &RegisterBody) -> Result<Self, AppError> {
        let password = opt_string(&body.password, "password")?;
        if password
            .as_ref()
            .is_some_and(|p| p.len() > MAX_PASSWORD_BYTES)
        {
            return Err(AppError::InvalidParam("Password too long".into()));
        }
        let inhibit_login = match &body.inhibit_login {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                return Err(AppError::InvalidParam(
                    "inhibit_login must be a boolean".into(),
                ));
            }
        };
        Ok(Self {
            password,
            inhibit_login,
            refresh: bool_field(body.refresh_token.as_ref(), "refresh_token")?,
            device_id: opt_device_id(&body.device_id)?,
            display_name: opt_display_name(&body.initial_device_display_name)?,
        })
    }
}

/// The user ID a registration asks for, when it is valid and free.
async fn available_user_id(state: &AppState, name: &str) -> Result<UserId, AppError> {
    let user_id = user_id_for_registration(state, name)?;
    let check = user_id.clone();
    if state.db(move |s| s.account(&check)).await?.is_some() {
        return Err(AppError::UserInUse);
    }
    Ok(user_id)
}

/// An optional boolean field (absent or null: false).
fn bool_field(v: Option<&Value>, name: &str) -> Result<bool, AppError> {
    match v {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(AppError::BadJson(format!("{name} must be a boolean"))),
    }
}

/// A new session: the device (given or generated), a fresh access token (expiring after
/// `access_token_lifetime_ms` when configured) and, when asked for, a refresh token. Returns
/// the answer's token fields and what to store (hashes only).
fn new_session(
    state: &AppState,
    (device_id, display_name): (Option<DeviceId>, Option<String>),
    refresh: bool,
    ip: &ClientIp,
    now: u64,
) -> (Value, NewSession) {
    let (token, token_hash) = secrets::new_access_token();
    let lifetime = state.config().access_token_lifetime_ms;
    let session = NewSession {
        device_id: device_id.unwrap_or_else(new_device_id),
        display_name,
        token_hash,
        expires_at: lifetime.map(|l| now.saturating_add(l)),
        refresh_hash: None,
        ip: ip.0.clone(),
        now,
    };
    let mut reply = json!({"access_token": token, "device_id": session.device_id});
    let mut session = session;
    if refresh {
        let (refresh_token, hash) = secrets::new_refresh_token();
        reply["refresh_token"] = json!(refresh_token);
        session.refresh_hash = Some(hash);
    }
    if let Some(l) = lifetime {
        reply["expires_in_ms"] = json!(l);
    }
    (reply, session)
}

#[derive(Debug, Deserialize)]
pub struct RefreshBody {
    refresh_token: Option<Value>,
}

/// `POST /refresh`: a refresh token (single use) for a new access token and a new refresh
/// token; the old ones stop working. Unknown or used: `401 M_UNKNOWN_TOKEN`.
pub async fn refresh(
    State(state): State<AppState>,
    MatrixJson(body): MatrixJson<RefreshBody>,
) -> Result<Json<Value>, AppError> {
    let old = match opt_string(&body.refresh_token, "refresh_token")? {
        Some(t) => secrets::token_hash(&t),
        None => {
            return Err(AppError::MissingParam(
                "Missing param: refresh_token".into(),
            ));
        }
    };
    let (token, token_hash) = secrets::new_access_token();
    let (refresh_token, refresh_hash) = secrets::new_refresh_token();
    let now = now_ms();
    let lifetime = state.config().access_token_lifetime_ms;
    let new = RefreshedTokens {
        token_hash,
        expires_at: lifetime.map(|l| now.saturating_add(l)),
        refresh_hash,
        now,
    };
    let owner = state.db(move |s| s.refresh_session(&old, new)).await?;
    owner.ok_or(AppError::UnknownToken)?;
    let mut reply = json!({"access_token": token, "refresh_token": refresh_token});
    if let Some(l) = lifetime {
        reply["expires_in_ms"] = json!(l);
    }
    Ok(Json(reply))
}

/// Verifies a registration's genesis op: it must name the requested user ID (when one was
/// requested) as a user ID of this server, list this server, and be a DID new here.
async fn check_genesis(
    state: &AppState,
    genesis: &Value,
    requested: Option<&UserId>,
) -> Result<roam_identity_core::log::VerifiedLog, AppError> {
    let log = roam_identity_core::log::verify_values(std::slice::from_ref(genesis), None, now_ms())
        .map_err(|e| AppError::RoamInvalidOp {
            class: e.class(),
            index: Some(0),
            message: e.to_string(),
        })?;
    let st = &log.state;
    let server = &state.config().server_name;
    let named = &st.user_ids[0];
    if named.server_name() != *server || !named.is_strict() {
        return Err(AppError::InvalidUsername(format!(
            "The genesis op names {named}, which is not a valid new user ID of {server}"
        )));
    }
    if requested.is_some_and(|r| r != named) {
        return Err(AppError::InvalidParam(format!(
            "The genesis op names {named}, but the registration asks for another user ID"
        )));
    }
    if !st.servers.contains(server) {
        return Err(AppError::Forbidden(format!(
            "The genesis op does not list {server} as a server"
        )));
    }
    let (did, user) = (st.did.clone(), named.clone());
    let (held, taken) = state
        .db(move |s| Ok((s.log_summary(&did)?.is_some(), s.account(&user)?.is_some())))
        .await?;
    if taken {
        return Err(AppError::UserInUse);
    }
    if held {
        return Err(AppError::Forbidden(
            "This DID already has an account log here; log in with its key instead".into(),
        ));
    }
    Ok(log)
}

fn registration_flows(mode: RegistrationMode) -> Result<Vec<Vec<&'static str>>, AppError> {
    match mode {
        RegistrationMode::Open => Ok(vec![vec![uia::DUMMY]]),
        RegistrationMode::Token => Ok(vec![vec![uia::REGISTRATION_TOKEN, uia::DUMMY]]),
        RegistrationMode::Closed => {
            Err(AppError::Forbidden("Registration has been disabled".into()))
        }
    }
}

async fn run_registration_uia(
    state: &AppState,
    flows: &[Vec<&'static str>],
    auth: Option<&Value>,
) -> Result<uia::Completed, AppError> {
    let attempt = state.uia().begin(Purpose::Register, flows, auth)?;
    let outcome = match attempt.kind.as_str() {
        uia::DUMMY => Ok(None),
        uia::REGISTRATION_TOKEN => {
            let token = attempt
                .auth
                .get("token")
                .and_then(Value::as_str)
                .map(str::to_owned);
            match token {
                None => return Err(AppError::MissingParam("Missing registration token".into())),
                Some(token) => {
                    let lookup = token.clone();
                    let found = state.db(move |s| s.registration_token(&lookup)).await?;
                    if found.is_some_and(|t| t.is_usable(now_ms())) {
                        Ok(Some(token))
                    } else {
                        Err(StageError::InvalidRegistrationToken)
                    }
                }
            }
        }
        other => Err(StageError::UnrecognizedType(other.to_owned())),
    };
    state.uia().finish(attempt, flows, outcome)
}

/// The registration gate of every other way a local account is created (a migration that
/// creates one, spec/api.md): `closed` refuses, `token` needs a usable registration token,
/// which is returned to be consumed with the account.
pub(crate) async fn registration_gate(
    state: &AppState,
    token: Option<&str>,
) -> Result<Option<String>, AppError> {
    match state.config().registration {
        RegistrationMode::Open => Ok(None),
        RegistrationMode::Closed => {
            Err(AppError::Forbidden("Registration has been disabled".into()))
        }
        RegistrationMode::Token => {
            let Some(token) = token else {
                return Err(AppError::Forbidden(
                    "This server needs a registration token: send `registration_token`".into(),
                ));
            };
            let lookup = token.to_owned();
            let found = state.db(move |s| s.registration_token(&lookup)).await?;
            match found.is_some_and(|t| t.is_usable(now_ms())) {
                true => Ok(Some(token.to_owned())),
                false => Err(AppError::Forbidden("Invalid registration token".into())),
            }
        }
    }
}

/// Checks that a user ID a signed log claims could have been registered here: a localpart
/// of the strict grammar (lower case) that is not all digits (reserved, as in `/register`).
pub(crate) fn check_new_user_id(user_id: &UserId) -> Result<(), AppError> {
    let local = user_id.localpart();
    if local.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AppError::InvalidUsername(
            "Numeric user IDs are reserved for guest users.".into(),
        ));
    }
    if !user_id.is_strict() {
        return Err(AppError::InvalidUsername(
            "User ID can only contain characters a-z, 0-9, or '=_-./+'".into(),
        ));
    }
    Ok(())
}

/// Lower-cases and checks a requested localpart the way Synapse does, with its messages.
fn user_id_for_registration(state: &AppState, name: &str) -> Result<UserId, AppError> {
    let name = name.to_lowercase();
    if name.is_empty() {
        return Err(AppError::InvalidUsername("User ID cannot be empty".into()));
    }
    if name.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AppError::InvalidUsername(
            "Numeric user IDs are reserved for guest users.".into(),
        ));
    }
    let localpart = Localpart::parse(&name).map_err(|_| {
        AppError::InvalidUsername(
            "User ID can only contain characters a-z, 0-9, or '=_-./+'".into(),
        )
    })?;
    UserId::new(&localpart, &state.config().server_name).map_err(|_| {
        AppError::InvalidUsername("User ID may not be longer than 255 characters".into())
    })
}

async fn generate_user_id(state: &AppState) -> Result<UserId, AppError> {
    // Random digits, as Synapse's generated IDs are numeric; retry on the rare collision.
    for _ in 0..8 {
        let local = format!("u{}", secrets::random_string(b"0123456789", 10));
        let user_id = Localpart::parse(&local)
            .and_then(|l| UserId::new(&l, &state.config().server_name))
            .map_err(|e| AppError::Internal(format!("generated user ID: {e}")))?;
        let check = user_id.clone();
        if state.db(move |s| s.account(&check)).await?.is_none() {
            return Ok(user_id);
        }
    }
    Err(AppError::Internal(
        "could not generate a free user ID".into(),
    ))
}

/// `GET /register/available?username=`.
pub async fn register_available(
    State(state): State<AppState>,
    query: QueryParams,
) -> Result<Json<Value>, AppError> {
    if state.config().registration == RegistrationMode::Closed {
        return Err(AppError::Forbidden("Registration has been disabled".into()));
    }
    available_user_id(&state, query.require("username")?).await?;
    Ok(Json(json!({"available": true})))
}

/// `GET /_matrix/client/v1/register/m.login.registration_token/validity?token=`.
pub async fn registration_token_validity(
    State(state): State<AppState>,
    query: QueryParams,
) -> Result<Json<Value>, AppError> {
    if state.config().registration != RegistrationMode::Token {
        return Err(AppError::Forbidden(
            "Registration tokens are not enabled".into(),
        ));
    }
    let token = query.require("token")?.to_owned();
    let found = state.db(move |s| s.registration_token(&token)).await?;
    Ok(Json(
        json!({"valid": found.is_some_and(|t| t.is_usable(now_ms()))}),
    ))
}

/// `GET /login`.
pub async fn login_flows() -> Json<Value> {
    Json(json!({"flows": [{"type": "m.login.password"}, {"type": crate::uia::ROAM_KEY}]}))
}

#[derive(Debug, Deserialize)]
pub struct LoginBody {
    #[serde(rename = "type")]
    kind: Option<Value>,
    device_id: Option<Value>,
    initial_device_display_name: Option<Value>,
    #[serde(flatten)]
    rest: serde_json::Map<String, Value>,
}

/// `POST /login` with `m.login.password`.
pub async fn login(
    State(state): State<AppState>,
    ip: ClientIp,
    MatrixJson(body): MatrixJson<LoginBody>,
) -> Result<Json<Value>, AppError> {
    let key_login = matches!(&body.kind, Some(Value::String(t)) if t == crate::uia::ROAM_KEY);
    match &body.kind {
        Some(Value::String(t)) if t == "m.login.password" || key_login => {}
        Some(Value::String(_)) => return Err(AppError::BadRequest("Unknown login type".into())),
        Some(_) => return Err(AppError::BadJson("type must be a string".into())),
        None => return Err(AppError::MissingParam("Missing param: type".into())),
    }
    state
        .limiters()
        .login_per_ip
        .check(ip.key())
        .await
        .map_err(|retry_after_ms| AppError::LimitExceeded { retry_after_ms })?;
    let refresh = bool_field(body.rest.get("refresh_token"), "refresh_token")?;
    let rest = Value::Object(body.rest);
    let (user, password) = if key_login {
        (uia::login_user(&rest)?, None)
    } else {
        let (u, p) = uia::password_identity(&rest)?;
        (u, Some(p))
    };
    let device_id = opt_device_id(&body.device_id)?;
    let display_name = opt_display_name(&body.initial_device_display_name)?;

    let user_id = local_user_id(&state, &user)?;
    state
        .limiters()
        .login_per_account
        .check(user_id.as_str())
        .await
        .map_err(|retry_after_ms| AppError::LimitExceeded { retry_after_ms })?;
    match password {
        Some(password) => {
            if !check_password(&state, &user_id, password).await? {
                return Err(AppError::Forbidden("Invalid username or password".into()));
            }
            // A correct password for an account that moved away: say where it went.
            if let Err(e) = state.portable().hosted_log(&user_id).await? {
                return Err(e.into());
            }
        }
        None => state.portable().check_key_proof(&user_id, &rest).await?,
    }

    let device = (device_id, display_name);
    let (mut reply, session) = new_session(&state, device, refresh, &ip, now_ms());
    let who = user_id.clone();
    state.db(move |s| s.create_session(&who, session)).await?;
    reply["user_id"] = json!(user_id);
    reply["home_server"] = json!(state.config().server_name);
    reply["well_known"] =
        json!({"m.homeserver": {"base_url": format!("{}/", state.config().public_base_url)}});
    Ok(Json(reply))
}

/// The local user a login names, from `@alice:server` or `alice`. Anything that cannot be
/// ours is answered like a wrong password, so the reply never tells which part was wrong.
pub fn local_user_id(state: &AppState, user: &str) -> Result<UserId, AppError> {
    let wrong = || AppError::Forbidden("Invalid username or password".into());
    let full = if user.starts_with('@') {
        let parsed = UserId::parse(user).map_err(|_| wrong())?;
        if parsed.server_name() != state.config().server_name {
            return Err(wrong());
        }
        format!(
            "@{}:{}",
            parsed.localpart().to_lowercase(),
            state.config().server_name
        )
    } else {
        format!("@{}:{}", user.to_lowercase(), state.config().server_name)
    };
    UserId::parse(&full).map_err(|_| wrong())
}

/// True when `password` is the user's. Runs argon2 even for unknown users so that response
/// time does not reveal which accounts exist.
pub async fn check_password(
    state: &AppState,
    user_id: &UserId,
    password: String,
) -> Result<bool, AppError> {
    if password.len() > MAX_PASSWORD_BYTES {
        return Ok(false);
    }
    let who = user_id.clone();
    let account = state.db(move |s| s.account(&who)).await?;
    let stored = account.and_then(|a| a.password_hash);
    tokio::task::spawn_blocking(move || match stored {
        Some(phc) => secrets::verify_password(&password, &phc),
        None => {
            secrets::verify_password(&password, dummy_hash());
            false
        }
    })
    .await
    .map_err(|e| AppError::Internal(format!("password check task failed: {e}")))
}

fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| secrets::hash_password("roam-dummy-password").unwrap_or_default())
}

pub async fn hash_password(password: String) -> Result<String, AppError> {
    tokio::task::spawn_blocking(move || secrets::hash_password(&password))
        .await
        .map_err(|e| AppError::Internal(format!("hash task failed: {e}")))?
        .map_err(|e| AppError::Internal(e.to_string()))
}

/// `GET /account/whoami`.
pub async fn whoami(auth: Authenticated) -> Json<Value> {
    Json(json!({"user_id": auth.user_id, "device_id": auth.device_id, "is_guest": false}))
}

/// `POST /logout`: ends this session, which deletes its device and the device's keys.
pub async fn logout(
    State(state): State<AppState>,
    auth: Authenticated,
) -> Result<Json<Value>, AppError> {
    state
        .db(move |s| s.delete_devices(&auth.user_id, &[auth.device_id]))
        .await?;
    Ok(Json(json!({})))
}

/// `POST /logout/all`.
pub async fn logout_all(
    State(state): State<AppState>,
    auth: Authenticated,
) -> Result<Json<Value>, AppError> {
    state
        .db(move |s| s.delete_all_devices(&auth.user_id))
        .await?;
    Ok(Json(json!({})))
}

fn new_device_id() -> DeviceId {
    // Ten upper-case letters always parse.
    DeviceId::parse(&secrets::new_device_id())
        .unwrap_or_else(|_| unreachable!("generated device IDs are valid"))
}

/// An optional device ID field: absent or null → `None`; not a valid ID → `M_INVALID_PARAM`.
fn opt_device_id(v: &Option<Value>) -> Result<Option<DeviceId>, AppError> {
    opt_string(v, "device_id")?
        .map(|d| {
            DeviceId::parse(&d)
                .map_err(|e| AppError::InvalidParam(format!("Invalid device_id: {e}")))
        })
        .transpose()
}

/// An optional string field: absent or null → `None`; another type → `M_INVALID_PARAM`.
pub fn opt_string(v: &Option<Value>, name: &str) -> Result<Option<String>, AppError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(AppError::InvalidParam(format!(
            "Invalid {name}: must be a string"
        ))),
    }
}

pub fn opt_display_name(v: &Option<Value>) -> Result<Option<String>, AppError> {
    let name = opt_string(v, "display name")?;
    if name
        .as_ref()
        .is_some_and(|n| n.chars().count() > MAX_DISPLAY_NAME_LEN)
    {
        return Err(AppError::TooLarge(format!(
            "Device display name is too long (max {MAX_DISPLAY_NAME_LEN})"
        )));
    }
    Ok(name)
}
