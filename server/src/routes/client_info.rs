//! What Matrix clients ask for on start-up besides keys: `/capabilities`, the server-default
//! `/pushrules/`, profiles, `/voip/turnServer` and `/thirdparty/protocols` (nothing of
//! either is offered).

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use roam_identity_core::UserId;
use serde_json::{Map, Value, json};

use crate::error::AppError;
use crate::extract::{Authenticated, MatrixJson};
use crate::state::AppState;
use crate::store::device_plane::Profile;

/// Longest display name or avatar URL accepted, in bytes.
const MAX_PROFILE_FIELD: usize = 1024;

/// `GET /capabilities`.
pub async fn capabilities(_auth: Authenticated) -> Json<Value> {
    Json(json!({"capabilities": {
        "m.change_password": {"enabled": true},
        "m.set_displayname": {"enabled": true},
        "m.set_avatar_url": {"enabled": true},
        "m.3pid_changes": {"enabled": false},
        "m.get_login_token": {"enabled": false},
        "m.room_versions": {"default": "10", "available": {"10": "stable", "11": "stable"}},
    }}))
}

fn rule(id: &str, enabled: bool, conditions: Value, actions: Value) -> Value {
    json!({"rule_id": id, "default": true, "enabled": enabled, "conditions": conditions, "actions": actions})
}

fn event_match(key: &str, pattern: &str) -> Value {
    json!({"kind": "event_match", "key": key, "pattern": pattern})
}

/// The server-default override rules of the Matrix specification, for `user`, in its order
/// (with the deprecated `.m.rule.contains_display_name` and `.m.rule.roomnotif`, which the
/// specification still lists and clients check for).
fn override_rules(user: &UserId) -> Vec<Value> {
    let notify_sound = json!(["notify", {"set_tweak": "sound", "value": "default"}]);
    let highlight =
        json!(["notify", {"set_tweak": "sound", "value": "default"}, {"set_tweak": "highlight"}]);
    vec![
        rule(".m.rule.master", false, json!([]), json!([])),
        rule(
            ".m.rule.suppress_notices",
            true,
            json!([event_match("content.msgtype", "m.notice")]),
            json!([]),
        ),
        rule(
            ".m.rule.invite_for_me",
            true,
            json!([
                event_match("type", "m.room.member"),
                event_match("content.membership", "invite"),
                event_match("state_key", user.as_str())
            ]),
            notify_sound,
        ),
        rule(
            ".m.rule.member_event",
            true,
            json!([event_match("type", "m.room.member")]),
            json!([]),
        ),
        rule(
            ".m.rule.is_user_mention",
            true,
            json!([{"kind": "event_property_contains", "key": "content.m\\.mentions.user_ids", "value": user.as_str()}]),
            highlight.clone(),
        ),
        rule(
            ".m.rule.contains_display_name",
            true,
            json!([{"kind": "contains_display_name"}]),
            highlight.clone(),
        ),
        rule(
            ".m.rule.is_room_mention",
            true,
            json!([{"kind": "event_property_is", "key": "content.m\\.mentions.room", "value": true}, {"kind": "sender_notification_permission", "key": "room"}]),
            json!(["notify", {"set_tweak": "highlight"}]),
        ),
        rule(
            ".m.rule.roomnotif",
            true,
            json!([event_match("content.body", "@room"), {"kind": "sender_notification_permission", "key": "room"}]),
            json!(["notify", {"set_tweak": "highlight"}]),
        ),
        rule(
            ".m.rule.tombstone",
            true,
            json!([
                event_match("type", "m.room.tombstone"),
                event_match("state_key", "")
            ]),
            json!(["notify", {"set_tweak": "highlight"}]),
        ),
        rule(
            ".m.rule.reaction",
            true,
            json!([event_match("type", "m.reaction")]),
            json!([]),
        ),
        rule(
            ".m.rule.room.server_acl",
            true,
            json!([
                event_match("type", "m.room.server_acl"),
                event_match("state_key", "")
            ]),
            json!([]),
        ),
        rule(
            ".m.rule.suppress_edits",
            true,
            json!([{"kind": "event_property_is", "key": "content.m\\.relates_to.rel_type", "value": "m.replace"}]),
            json!([]),
        ),
    ]
}

/// The server-default content rule of the Matrix specification (deprecated, still listed):
/// highlight messages containing the user's localpart.
fn content_rules(user: &UserId) -> Vec<Value> {
    let localpart = user.localpart();
    vec![json!({
        "rule_id": ".m.rule.contains_user_name", "default": true, "enabled": true,
        "pattern": localpart,
        "actions": ["notify", {"set_tweak": "sound", "value": "default"}, {"set_tweak": "highlight"}],
    })]
}

/// The server-default underride rules of the Matrix specification.
fn underride_rules() -> Vec<Value> {
    let sound = json!(["notify", {"set_tweak": "sound", "value": "default"}]);
    let one_to_one = json!({"kind": "room_member_count", "is": "2"});
    vec![
        rule(
            ".m.rule.call",
            true,
            json!([event_match("type", "m.call.invite")]),
            json!(["notify", {"set_tweak": "sound", "value": "ring"}]),
        ),
        rule(
            ".m.rule.encrypted_room_one_to_one",
            true,
            json!([one_to_one, event_match("type", "m.room.encrypted")]),
            sound.clone(),
        ),
        rule(
            ".m.rule.room_one_to_one",
            true,
            json!([one_to_one, event_match("type", "m.room.message")]),
            sound,
        ),
        rule(
            ".m.rule.message",
            true,
            json!([event_match("type", "m.room.message")]),
            json!(["notify"]),
        ),
        rule(
            ".m.rule.encrypted",
            true,
            json!([event_match("type", "m.room.encrypted")]),
            json!(["notify"]),
        ),
    ]
}

/// `GET /pushrules/`: the specification's server-default rules for the caller (Roam keeps
/// no per-user push rules: there are no rooms to notify about).
pub async fn push_rules(auth: Authenticated) -> Json<Value> {
    Json(json!({"global": {
        "override": override_rules(&auth.user_id),
        "content": content_rules(&auth.user_id),
        "room": [],
        "sender": [],
        "underride": underride_rules(),
    }}))
}

/// `GET /voip/turnServer`: this server offers no TURN server.
pub async fn turn_server(_auth: Authenticated) -> Json<Value> {
    Json(json!({}))
}

/// `GET /thirdparty/protocols`: no bridges.
pub async fn thirdparty_protocols(_auth: Authenticated) -> Json<Value> {
    Json(json!({}))
}

/// The user of a profile path: a local user with an account, else not found.
async fn profile_of(
    state: &AppState,
    path: Result<Path<String>, PathRejection>,
) -> Result<(UserId, Profile), AppError> {
    let not_found = || AppError::NotFound("Profile not found".into());
    let Path(raw) = path.map_err(|_| not_found())?;
    let user = UserId::parse(&raw).map_err(|_| not_found())?;
    if user.server_name() != state.config().server_name {
        return Err(AppError::NotFound(
            "Profiles of remote users are not available here".into(),
        ));
    }
    let u = user.clone();
    let (account, profile) = state
        .db(move |s| Ok((s.account(&u)?, s.profile(&u)?)))
        .await?;
    account.ok_or_else(not_found)?;
    Ok((user, profile))
}

fn profile_json(p: &Profile) -> Map<String, Value> {
    let mut out = Map::new();
    if let Some(d) = &p.displayname {
        out.insert("displayname".into(), json!(d));
    }
    if let Some(a) = &p.avatar_url {
        out.insert("avatar_url".into(), json!(a));
    }
    out
}

/// `GET /profile/{userId}`.
pub async fn get_profile(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, AppError> {
    let (_, profile) = profile_of(&state, path).await?;
    Ok(Json(Value::Object(profile_json(&profile))))
}

/// Which profile field a path names.
#[derive(Debug, Clone, Copy)]
pub enum Field {
    Displayname,
    AvatarUrl,
}

impl Field {
    fn name(self) -> &'static str {
        match self {
            Field::Displayname => "displayname",
            Field::AvatarUrl => "avatar_url",
        }
    }
}

/// `GET /profile/{userId}/{displayname|avatar_url}`.
pub async fn get_field(
    state: AppState,
    path: Result<Path<String>, PathRejection>,
    field: Field,
) -> Result<Json<Value>, AppError> {
    let (_, profile) = profile_of(&state, path).await?;
    let all = profile_json(&profile);
    let value = all
        .get(field.name())
        .ok_or_else(|| AppError::NotFound(format!("No {} set", field.name())))?;
    Ok(Json(json!({field.name(): value})))
}

/// `PUT /profile/{userId}/{displayname|avatar_url}`: only the user's own.
pub async fn put_field(
    state: AppState,
    auth: Authenticated,
    path: Result<Path<String>, PathRejection>,
    body: Map<String, Value>,
    field: Field,
) -> Result<Json<Value>, AppError> {
    let (user, mut profile) = profile_of(&state, path).await?;
    if user != auth.user_id {
        return Err(AppError::Forbidden(
            "Cannot set the profile of another user".into(),
        ));
    }
    let value = match body.get(field.name()) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) if s.len() <= MAX_PROFILE_FIELD => Some(s.clone()),
        Some(Value::String(_)) => {
            return Err(AppError::BadJson(format!("{} is too long", field.name())));
        }
        Some(_) => {
            return Err(AppError::BadJson(format!(
                "{} must be a string",
                field.name()
            )));
        }
    };
    if matches!(field, Field::AvatarUrl) && value.as_ref().is_some_and(|v| !v.starts_with("mxc://"))
    {
        return Err(AppError::BadJson("avatar_url must be an mxc:// URI".into()));
    }
    match field {
        Field::Displayname => profile.displayname = value,
        Field::AvatarUrl => profile.avatar_url = value,
    }
    state.db(move |s| s.set_profile(&user, profile)).await?;
    Ok(Json(json!({})))
}

macro_rules! field_routes {
    ($get:ident, $put:ident, $field:expr) => {
        pub async fn $get(
            State(state): State<AppState>,
            path: Result<Path<String>, PathRejection>,
        ) -> Result<Json<Value>, AppError> {
            get_field(state, path, $field).await
        }

        pub async fn $put(
            State(state): State<AppState>,
            auth: Authenticated,
            path: Result<Path<String>, PathRejection>,
            MatrixJson(body): MatrixJson<Map<String, Value>>,
        ) -> Result<Json<Value>, AppError> {
            put_field(state, auth, path, body, $field).await
        }
    };
}

field_routes!(get_displayname, put_displayname, Field::Displayname);
field_routes!(get_avatar_url, put_avatar_url, Field::AvatarUrl);
