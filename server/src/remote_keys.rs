//! Device keys and to-device messages across servers: the client API's `/keys/query`,
//! `/keys/claim` and `/sendToDevice` for users of other servers go to the server that hosts
//! the user now (for a portable account, the primary server the resolver verified; else the
//! user ID's own server), as Matrix server-server requests signed with this server's key
//! (`X-Matrix`); and incoming server-server requests are checked against the origin's keys.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::http::Method;
use roam_identity_core::xmatrix::{self, XMatrix};
use roam_identity_core::{DeviceId, ServerName, UserId};
use serde_json::{Map, Value, json};

use crate::clock::now_ms;
use crate::error::AppError;
use crate::portable::federation::{Federation, FederationError};
use crate::server_key::ServerKey;

/// Users of other servers in one request, grouped by the server that answers for them.
type ByServer<T> = BTreeMap<ServerName, Vec<(UserId, T)>>;

/// What remote servers answered to a key query, merged.
#[derive(Debug, Default)]
pub struct RemoteQuery {
    pub device_keys: Map<String, Value>,
    pub master_keys: Map<String, Value>,
    pub self_signing_keys: Map<String, Value>,
    pub failures: Map<String, Value>,
}

/// The server-server side of the device plane.
#[derive(Debug, Clone)]
pub struct RemoteKeys {
    federation: Arc<dyn Federation>,
    key: ServerKey,
    own: ServerName,
}

fn failure(e: &FederationError) -> Value {
    let status = match e {
        FederationError::Refused { status, .. } => *status,
        _ => 503,
    };
    json!({"status": status, "message": e.to_string()})
}

/// Keeps the entries of `answer[field]` for users this request asked about.
fn keep_asked(answer: &Value, field: &str, asked: &[UserId], out: &mut Map<String, Value>) {
    let Some(map) = answer.get(field).and_then(Value::as_object) else {
        return;
    };
    for user in asked {
        if let Some(v) = map.get(user.as_str()) {
            out.insert(user.to_string(), v.clone());
        }
    }
}

/// Device keys of `user` whose `user_id` and `device_id` match where they are listed.
fn matching_devices(user: &UserId, devices: &Value) -> Value {
    let mut out = Map::new();
    for (id, keys) in devices.as_object().into_iter().flatten() {
        let ok = keys["user_id"] == user.as_str() && keys["device_id"] == id.as_str();
        if ok {
            out.insert(id.clone(), keys.clone());
        }
    }
    Value::Object(out)
}

impl RemoteKeys {
    pub fn new(federation: Arc<dyn Federation>, key: ServerKey, own: ServerName) -> Self {
        Self {
            federation,
            key,
            own,
        }
    }

    /// Groups `wanted` by the server that answers for each user now: for a portable account,
    /// the first server the resolver verified; else (or when it cannot say) the user ID's own
    /// server. The users are resolved together, so the names of one server cost one bulk
    /// query rather than one request each.
    async fn group<T>(&self, wanted: Vec<(UserId, T)>) -> ByServer<T> {
        let users: Vec<UserId> = wanted.iter().map(|(u, _)| u.clone()).collect();
        let answers = self.federation.resolve_users(&users).await;
        let mut out: ByServer<T> = BTreeMap::new();
        for ((user, v), answer) in wanted.into_iter().zip(answers) {
            let home = match answer {
                Ok(r) => r.servers.first().cloned(),
                Err(_) => None,
            }
            .unwrap_or_else(|| user.server_name());
            out.entry(home).or_default().push((user, v));
        }
        out
    }

    /// One signed request to `server`.
    async fn call(
        &self,
        server: &ServerName,
        method: Method,
        path: &str,
        body: Value,
    ) -> Result<Value, FederationError> {
        let (own, key) = (self.own.clone(), self.key.clone());
        let sign = move |m: &str, uri: &str, dest: &ServerName, content: Option<&Value>| {
            let obj = xmatrix::request_object(m, uri, &own, dest, content);
            xmatrix::sign_request(&obj, &own, dest, &key.key_id, &key.signing_key)
                .unwrap_or_default()
        };
        self.federation
            .matrix_request(server, method, path, Some(body), &sign)
            .await
    }

    /// `/keys/query` for users of other servers.
    pub async fn query(&self, wanted: Vec<(UserId, Vec<DeviceId>)>) -> RemoteQuery {
        let mut out = RemoteQuery::default();
        for (server, users) in self.group(wanted).await {
            let asked: Vec<UserId> = users.iter().map(|(u, _)| u.clone()).collect();
            let device_keys: Map<String, Value> = users
                .into_iter()
                .map(|(u, d)| (u.to_string(), json!(d)))
                .collect();
            let body = json!({"device_keys": device_keys});
            let path = "/_matrix/federation/v1/user/keys/query";
            match self.call(&server, Method::POST, path, body).await {
                Ok(answer) => {
                    let mut devices = Map::new();
                    keep_asked(&answer, "device_keys", &asked, &mut devices);
                    for user in &asked {
                        if let Some(d) = devices.get(user.as_str()) {
                            out.device_keys
                                .insert(user.to_string(), matching_devices(user, d));
                        }
                    }
                    keep_asked(&answer, "master_keys", &asked, &mut out.master_keys);
                    keep_asked(
                        &answer,
                        "self_signing_keys",
                        &asked,
                        &mut out.self_signing_keys,
                    );
                }
                Err(e) => {
                    tracing::warn!(%server, error = %e, "remote key query failed");
                    out.failures.insert(server.to_string(), failure(&e));
                }
            }
        }
        out
    }

    /// `/keys/claim` for users of other servers: `(one_time_keys, failures)`.
    pub async fn claim(
        &self,
        wanted: Vec<(UserId, Vec<(DeviceId, String)>)>,
    ) -> (Map<String, Value>, Map<String, Value>) {
        let (mut keys, mut failures) = (Map::new(), Map::new());
        for (server, users) in self.group(wanted).await {
            let asked: Vec<UserId> = users.iter().map(|(u, _)| u.clone()).collect();
            let body: Map<String, Value> = users
                .into_iter()
                .map(|(u, devices)| {
                    let d: Map<String, Value> = devices
                        .into_iter()
                        .map(|(d, alg)| (d.to_string(), json!(alg)))
                        .collect();
                    (u.to_string(), Value::Object(d))
                })
                .collect();
            let path = "/_matrix/federation/v1/user/keys/claim";
            match self
                .call(&server, Method::POST, path, json!({"one_time_keys": body}))
                .await
            {
                Ok(answer) => keep_asked(&answer, "one_time_keys", &asked, &mut keys),
                Err(e) => {
                    tracing::warn!(%server, error = %e, "remote key claim failed");
                    failures.insert(server.to_string(), failure(&e));
                }
            }
        }
        (keys, failures)
    }

    /// Delivers to-device messages to users of other servers, one `m.direct_to_device` EDU
    /// per server. Undeliverable servers are logged (the sender's request still succeeds, as
    /// in Matrix: delivery is best effort).
    pub async fn send_to_device(
        &self,
        sender: &UserId,
        event_type: &str,
        message_id: &str,
        messages: Vec<(UserId, Vec<(String, Value)>)>,
    ) {
        for (server, users) in self.group(messages).await {
            let per_user: Map<String, Value> = users
                .into_iter()
                .map(|(u, devices)| (u.to_string(), Value::Object(devices.into_iter().collect())))
                .collect();
            let edu = json!({"edu_type": "m.direct_to_device", "content": {
                "sender": sender.as_str(), "type": event_type,
                "message_id": message_id, "messages": per_user,
            }});
            let txn = format!("{}-{message_id}", now_ms());
            let body = json!({"origin": self.own.as_str(), "origin_server_ts": now_ms(), "pdus": [], "edus": [edu]});
            let path = format!(
                "/_matrix/federation/v1/send/{}",
                roam_resolver::discovery::encode_segment(&txn)
            );
            if let Err(e) = self.call(&server, Method::PUT, &path, body).await {
                tracing::warn!(%server, error = %e, "to-device delivery failed");
            }
        }
    }

    /// Tells `servers` that `user`'s device list changed: one `m.device_list_update` EDU each,
    /// with `device_id` `*` (Roam's convention: the list as a whole; the receiver asks for
    /// it again) and no `prev_id`. Unreachable servers are logged (best effort).
    pub async fn send_device_list_update(
        &self,
        user: &UserId,
        stream_id: u64,
        servers: &[ServerName],
    ) {
        for server in servers.iter().filter(|s| **s != self.own) {
            let edu = json!({"edu_type": "m.device_list_update", "content": {
                "user_id": user.as_str(), "device_id": "*", "stream_id": stream_id,
                "prev_id": [], "deleted": false,
            }});
            let txn = format!("dl-{}-{stream_id}", now_ms());
            let body = json!({"origin": self.own.as_str(), "origin_server_ts": now_ms(), "pdus": [], "edus": [edu]});
            let path = format!(
                "/_matrix/federation/v1/send/{}",
                roam_resolver::discovery::encode_segment(&txn)
            );
            if let Err(e) = self.call(server, Method::PUT, &path, body).await {
                tracing::warn!(%server, %user, error = %e, "device-list update not delivered");
            }
        }
    }

    /// Checks an incoming server-server request's `X-Matrix` signature against the origin's
    /// keys; the origin server.
    pub async fn verify_request(
        &self,
        method: &str,
        uri: &str,
        authorization: Option<&str>,
        content: Option<&Value>,
    ) -> Result<ServerName, AppError> {
        let unauthorized = |m: String| AppError::Unauthorized(m);
        let header =
            authorization.ok_or_else(|| unauthorized("Missing X-Matrix authorization".into()))?;
        let x: XMatrix = xmatrix::parse_header(header).map_err(|e| unauthorized(e.to_string()))?;
        if x.destination.as_ref().is_some_and(|d| *d != self.own) {
            return Err(unauthorized(
                "The request is for another destination".into(),
            ));
        }
        let obj = xmatrix::request_object(method, uri, &x.origin, &self.own, content);
        let keys = self
            .federation
            .server_keys(&x.origin)
            .await
            .map_err(|e| unauthorized(format!("Cannot check the origin's keys: {e}")))?;
        keys.verify_object(&xmatrix::signed_object(&obj, &x), now_ms())
            .map_err(|e| unauthorized(format!("Bad X-Matrix signature: {e}")))?;
        Ok(x.origin)
    }
}
