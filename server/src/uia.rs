//! User-interactive authentication (UIA), as Synapse runs it.
//!
//! The first request without `auth` gets a 401 with the flows and a new `session`; the client
//! repeats the request with `auth: {type, session, …}` for each stage until one flow is
//! complete. A session is bound to what it authorises (registration, or one user's device
//! deletion / key replacement) so that it cannot be replayed for something else. Sessions live
//! for a few minutes, in memory (losing them on restart only makes a client start over), or,
//! when several nodes share a PostgreSQL store, in the store, so that each stage may be
//! answered by a different node.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use roam_identity_core::{Millis, UserId};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::clock::now_ms;
use crate::error::{AppError, StageError, UiaChallenge};
use crate::secrets;
use crate::store::{SharedEntry, Store, StoreError};

pub const DUMMY: &str = "m.login.dummy";
pub const PASSWORD: &str = "m.login.password";
pub const REGISTRATION_TOKEN: &str = "m.login.registration_token";
/// Roam key login: a challenge signed with the account's current update key (spec/api.md).
pub const ROAM_KEY: &str = "m.login.roam.key";

const SESSION_TTL_MS: Millis = 15 * 60 * 1000;
const MAX_SESSIONS: usize = 10_000;
/// The `kind` of UIA sessions in the shared store.
const SHARED_KIND: &str = "uia";

/// What a UIA session authorises.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Purpose {
    Register,
    /// Deleting devices of this user.
    DeleteDevices(UserId),
    /// Replacing this user's cross-signing keys.
    CrossSigning(UserId),
    /// Changing this user's password.
    ChangePassword(UserId),
    /// Deactivating this user's account.
    Deactivate(UserId),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Session {
    purpose: Purpose,
    created: Millis,
    completed: Vec<String>,
    registration_token: Option<String>,
}

impl Session {
    fn live(&self, now: Millis) -> bool {
        now.saturating_sub(self.created) < SESSION_TTL_MS
    }
}

/// The session table: in this process's memory, or in a store several nodes share.
#[derive(Debug, Default)]
pub struct UiaSessions {
    sessions: Mutex<HashMap<String, Session>>,
    shared: Option<Arc<dyn Store>>,
}

/// A stage the client claims to have completed, before checking it.
#[derive(Debug)]
pub struct StageAttempt {
    pub session: String,
    pub kind: String,
    pub auth: Value,
}

/// The checked outcome of one stage: passed (with the registration token it presented, if
/// any), or failed and why.
pub type StageOutcome = Result<Option<String>, StageError>;

/// What a successful UIA run leaves behind.
#[derive(Debug, Default)]
pub struct Completed {
    /// The registration token the client presented, to be consumed with the account.
    pub registration_token: Option<String>,
}

impl UiaSessions {
    /// Sessions kept in `store` when it is shared by several nodes, else in memory.
    pub fn for_store(store: &Arc<dyn Store>) -> Self {
        Self {
            sessions: Mutex::default(),
            shared: store.is_shared().then(|| Arc::clone(store)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        // The map stays consistent even if a holder panicked: every update is one insert.
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The live session `id`.
    fn get(&self, id: &str) -> Result<Option<Session>, AppError> {
        let now = now_ms();
        let Some(store) = &self.shared else {
            return Ok(self.lock().get(id).filter(|s| s.live(now)).cloned());
        };
        let value = store.shared_get(SHARED_KIND, id, now)?;
        Ok(value.and_then(|v| serde_json::from_value(v).ok()))
    }

    /// Stores session `id` (new or updated).
    fn save(&self, id: &str, session: Session) -> Result<(), AppError> {
        let Some(store) = &self.shared else {
            self.lock().insert(id.to_owned(), session);
            return Ok(());
        };
        let value = serde_json::to_value(&session).map_err(|e| {
            AppError::from(StoreError::Corrupt {
                what: "UIA session",
                source: Box::new(e),
            })
        })?;
        store.shared_put(SharedEntry {
            kind: SHARED_KIND,
            id: id.to_owned(),
            value,
            expires_at: session.created + SESSION_TTL_MS,
            owner: String::new(),
            client: String::new(),
        })?;
        Ok(())
    }

    /// Removes session `id`; false when it was already gone (another request, maybe on
    /// another node, completed it first).
    fn remove(&self, id: &str) -> Result<bool, AppError> {
        Ok(match &self.shared {
            Some(store) => store.shared_take(SHARED_KIND, id, now_ms())?.is_some(),
            None => self.lock().remove(id).is_some(),
        })
    }

    fn create(&self, purpose: Purpose) -> Result<String, AppError> {
        let id = secrets::new_opaque_id(24);
        let now = now_ms();
        let session = Session {
            purpose,
            created: now,
            completed: Vec::new(),
            registration_token: None,
        };
        if self.shared.is_none() {
            let mut map = self.lock();
            map.retain(|_, s| s.live(now));
            if map.len() >= MAX_SESSIONS {
                // Bound memory against clients that open sessions and never finish them.
                if let Some(oldest) = map
                    .iter()
                    .min_by_key(|(_, s)| s.created)
                    .map(|(k, _)| k.clone())
                {
                    map.remove(&oldest);
                }
            }
        }
        self.save(&id, session)?;
        Ok(id)
    }

    /// Starts or continues UIA for `purpose`. Returns the stage to check, or the 401
    /// challenge to send when the client has not attempted a stage.
    pub fn begin(
        &self,
        purpose: Purpose,
        flows: &[Vec<&'static str>],
        auth: Option<&Value>,
    ) -> Result<StageAttempt, AppError> {
        let Some(auth) = auth.filter(|a| !a.is_null()) else {
            let session = self.create(purpose)?;
            return Err(self.challenge(&session, flows, None));
        };
        if !auth.is_object() {
            return Err(AppError::BadJson("auth must be an object".into()));
        }
        let session = match auth.get("session") {
            None => self.create(purpose.clone())?,
            Some(Value::String(id)) => match self.get(id)? {
                Some(s) if s.purpose == purpose => id.clone(),
                // Unknown, expired, or issued for another operation or user.
                _ => return Err(AppError::BadRequest("Unknown session ID".into())),
            },
            Some(_) => return Err(AppError::BadJson("auth.session must be a string".into())),
        };
        match auth.get("type") {
            // No type: the client asks where the session stands.
            None => Err(self.challenge(&session, flows, None)),
            Some(Value::String(kind)) => {
                let allowed = flows.iter().flatten().any(|s| s == kind);
                if !allowed {
                    return Err(self.challenge(
                        &session,
                        flows,
                        Some(StageError::UnrecognizedType(kind.clone())),
                    ));
                }
                Ok(StageAttempt {
                    session,
                    kind: kind.clone(),
                    auth: auth.clone(),
                })
            }
            Some(_) => Err(AppError::BadJson("auth.type must be a string".into())),
        }
    }

    /// Records the outcome of a checked stage: a failure answers the challenge with the
    /// error; a success either completes a flow or asks for the next stage.
    pub fn finish(
        &self,
        attempt: StageAttempt,
        flows: &[Vec<&'static str>],
        outcome: StageOutcome,
    ) -> Result<Completed, AppError> {
        let token = match outcome {
            Ok(token) => token,
            Err(error) => return Err(self.challenge(&attempt.session, flows, Some(error))),
        };
        let Some(mut session) = self.get(&attempt.session)? else {
            return Err(AppError::BadRequest("Unknown session ID".into()));
        };
        if !session.completed.contains(&attempt.kind) {
            session.completed.push(attempt.kind.clone());
        }
        if token.is_some() {
            session.registration_token = token;
        }
        let done = flows.iter().any(|flow| {
            flow.iter()
                .all(|stage| session.completed.iter().any(|c| c == stage))
        });
        if done {
            let registration_token = session.registration_token.take();
            if !self.remove(&attempt.session)? {
                return Err(AppError::BadRequest("Unknown session ID".into()));
            }
            return Ok(Completed { registration_token });
        }
        self.save(&attempt.session, session)?;
        Err(self.challenge(&attempt.session, flows, None))
    }

    fn challenge(
        &self,
        session: &str,
        flows: &[Vec<&'static str>],
        error: Option<StageError>,
    ) -> AppError {
        let completed = match self.get(session) {
            Ok(s) => s.map(|s| s.completed).unwrap_or_default(),
            Err(e) => return e,
        };
        AppError::Uia(Box::new(UiaChallenge {
            session: session.to_owned(),
            flows: flows.to_vec(),
            completed,
            params: json!({}),
            error,
        }))
    }
}

/// The user and password of an `m.login.password` stage (or login request), in either the
/// `identifier` form or the legacy `user` form.
pub fn password_identity(auth: &Value) -> Result<(String, String), AppError> {
    let user = login_user(auth)?;
    let password = auth
        .get("password")
        .and_then(Value::as_str)
        .ok_or_else(|| AppError::MissingParam("Missing param: password".into()))?;
    Ok((user, password.to_owned()))
}

/// The user named by a login or UIA body: `identifier` (`m.id.user`) or the legacy `user`.
pub fn login_user(auth: &Value) -> Result<String, AppError> {
    let user = match auth.get("identifier") {
        Some(id) => {
            match id.get("type").and_then(Value::as_str) {
                Some("m.id.user") => {}
                Some(_) => {
                    return Err(AppError::BadRequest("Unknown login identifier type".into()));
                }
                None => return Err(AppError::BadJson("identifier.type is required".into())),
            }
            id.get("user").and_then(Value::as_str).ok_or_else(|| {
                AppError::MissingParam("User identifier is missing 'user' key".into())
            })?
        }
        None => auth
            .get("user")
            .and_then(Value::as_str)
            .ok_or_else(|| AppError::MissingParam("Missing param: identifier".into()))?,
    };
    Ok(user.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dummy_flow_completes_and_session_is_single_use() {
        let uia = UiaSessions::default();
        let flows = vec![vec![DUMMY]];
        let AppError::Uia(c) = uia.begin(Purpose::Register, &flows, None).unwrap_err() else {
            panic!()
        };
        let auth = json!({"type": DUMMY, "session": c.session});
        let attempt = uia.begin(Purpose::Register, &flows, Some(&auth)).unwrap();
        uia.finish(attempt, &flows, Ok(None)).unwrap();
        // The session is gone after success.
        assert!(matches!(
            uia.begin(Purpose::Register, &flows, Some(&auth)),
            Err(AppError::BadRequest(_))
        ));
    }

    #[test]
    fn session_is_bound_to_its_purpose() {
        let uia = UiaSessions::default();
        let flows = vec![vec![PASSWORD]];
        let alice = UserId::parse("@alice:a.example").unwrap();
        let bob = UserId::parse("@bob:a.example").unwrap();
        let AppError::Uia(c) = uia
            .begin(Purpose::DeleteDevices(alice), &flows, None)
            .unwrap_err()
        else {
            panic!()
        };
        let auth = json!({"type": PASSWORD, "session": c.session});
        assert!(
            uia.begin(Purpose::DeleteDevices(bob), &flows, Some(&auth))
                .is_err()
        );
    }

    #[test]
    fn multi_stage_flow_asks_for_the_next_stage() {
        let uia = UiaSessions::default();
        let flows = vec![vec![REGISTRATION_TOKEN, DUMMY]];
        let auth = json!({"type": REGISTRATION_TOKEN});
        let attempt = uia.begin(Purpose::Register, &flows, Some(&auth)).unwrap();
        let AppError::Uia(c) = uia
            .finish(attempt, &flows, Ok(Some("tok".into())))
            .unwrap_err()
        else {
            panic!()
        };
        assert_eq!(c.completed, vec![REGISTRATION_TOKEN.to_owned()]);
        let auth = json!({"type": DUMMY, "session": c.session});
        let attempt = uia.begin(Purpose::Register, &flows, Some(&auth)).unwrap();
        let done = uia.finish(attempt, &flows, Ok(None)).unwrap();
        assert_eq!(done.registration_token.as_deref(), Some("tok"));
    }
}
