//! A typed HTTP client for one homeserver: the Matrix client-server calls the `roam` CLI needs
//! and the `/_roam/v1` API of `spec/api.md`.
//!
//! Every method returns either the typed answer or a [`HomeserverError`] that says whether the
//! server could not be reached (worth retrying), refused the request (with its Matrix
//! `errcode`, and the whole body for extras such as `servers` of `ROAM_MOVED`), or answered
//! something that is not what the spec promises.

use std::time::Duration;

use roam_identity_core::server_keys::{self, ServerKeys};
use roam_identity_core::{Did, ServerName, UserId};
use serde::Deserialize;
use serde_json::{Value, json};
use url::Url;

/// Why a call to a homeserver failed.
#[derive(Debug, thiserror::Error)]
pub enum HomeserverError {
    /// No HTTP answer at all: connection refused, DNS, timeout.
    #[error("cannot reach {url}: {reason}")]
    Unreachable { url: String, reason: String },
    /// The server answered with a Matrix error.
    #[error("{url} refused the request: {errcode} ({status}): {message}")]
    Refused {
        url: String,
        status: u16,
        errcode: String,
        message: String,
        /// The whole error body (for `servers`, `evidence`, `retry_after_ms`, UIA flows…).
        body: Value,
    },
    /// The server answered, but not in the shape the API promises.
    #[error("{url} answered something unexpected: {reason}")]
    /// (Also a body over [`MAX_RESPONSE_BYTES`]: see [`HomeserverError::is_too_large`].)
    BadResponse { url: String, reason: String },
}

/// The start of [`HomeserverError::BadResponse`]'s reason for a body over the cap.
pub const RESPONSE_TOO_LARGE: &str = "response too large";

/// The largest response body the client reads (4 MiB); a larger one is refused while
/// streaming, so a hostile or broken server cannot make the client buffer without bound.
pub const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;
/// Largest device-plane export accepted (the servers' import cap).
pub const MAX_DEVICE_PLANE_BYTES: usize = 64 * 1024 * 1024;

impl HomeserverError {
    /// The Matrix errcode, when the server refused.
    pub fn errcode(&self) -> Option<&str> {
        match self {
            HomeserverError::Refused { errcode, .. } => Some(errcode),
            _ => None,
        }
    }

    /// The HTTP status, when the server answered with an error.
    pub fn status(&self) -> Option<u16> {
        match self {
            HomeserverError::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// True for `404 M_NOT_FOUND` (and 404s without a Matrix body).
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    /// True when the server could not be reached at all.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, HomeserverError::Unreachable { .. })
    }

    /// True when the server's answer was refused for being over [`MAX_RESPONSE_BYTES`].
    pub fn is_too_large(&self) -> bool {
        matches!(self, HomeserverError::BadResponse { reason, .. }
            if reason.starts_with(RESPONSE_TOO_LARGE))
    }

    /// The error body, when the server refused.
    pub fn body(&self) -> Option<&Value> {
        match self {
            HomeserverError::Refused { body, .. } => Some(body),
            _ => None,
        }
    }
}

/// What registration answered.
#[derive(Debug, Clone, Deserialize)]
pub struct Registered {
    pub user_id: String,
    #[serde(default, rename = "org.roam.did")]
    pub did: Option<String>,
    #[serde(default)]
    pub access_token: Option<String>,
    #[serde(default)]
    pub device_id: Option<String>,
}

/// What a login answered.
#[derive(Debug, Clone, Deserialize)]
pub struct LoggedIn {
    pub user_id: String,
    pub access_token: String,
    pub device_id: String,
}

/// A key-login challenge.
#[derive(Debug, Clone, Deserialize)]
pub struct Challenge {
    pub challenge: String,
    #[serde(default)]
    pub expires_at: Option<u64>,
}

/// A device as `GET /devices` lists it.
#[derive(Debug, Clone, Deserialize)]
pub struct DeviceInfo {
    pub device_id: String,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub last_seen_ip: Option<String>,
    #[serde(default)]
    pub last_seen_ts: Option<u64>,
}

/// What `POST /_roam/v1/accounts/{did}/ops` answered.
#[derive(Debug, Clone, Deserialize)]
pub struct OpsAccepted {
    #[serde(default)]
    pub head: Option<String>,
    #[serde(default)]
    pub seq: Option<u64>,
    #[serde(default)]
    pub accepted: Vec<String>,
    #[serde(default)]
    pub known: Vec<String>,
}

/// One step of a server-side migration.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct MigrationStep {
    pub name: String,
    pub state: String,
    #[serde(default)]
    pub detail: Option<Value>,
}

/// A server-side migration (`POST /_roam/v1/migrate`).
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct Migration {
    pub id: String,
    #[serde(default)]
    pub did: Option<String>,
    #[serde(default)]
    pub user_id: Option<String>,
    pub state: String,
    #[serde(default)]
    pub steps: Vec<MigrationStep>,
}

impl Migration {
    /// True when every step is done.
    pub fn is_complete(&self) -> bool {
        self.state == "complete"
    }
}

/// The body of a migration request.
#[derive(Debug, Clone)]
pub struct MigrateRequest<'a> {
    pub did: &'a Did,
    pub log: &'a [Value],
    pub from: Option<&'a ServerName>,
    pub localpart: Option<&'a str>,
    /// Needed when the server's registration mode is `token`.
    pub registration_token: Option<&'a str>,
}

/// How to answer a user-interactive authentication challenge.
#[derive(Debug, Clone)]
pub enum UiaAnswer {
    /// `m.login.roam.key`: sign the challenge the server offers with the update key.
    Key {
        user_id: UserId,
        server: ServerName,
        key: Box<roam_identity_core::SigningKey>,
    },
    /// `m.login.password`.
    Password { user_id: UserId, password: String },
}

/// A client for one homeserver base URL, optionally logged in.
#[derive(Debug, Clone)]
pub struct Homeserver {
    base: Url,
    http: reqwest::Client,
    token: Option<String>,
}

pub use roam_resolver::discovery::encode_segment;

impl Homeserver {
    /// A client for `base` (scheme, host, port; a trailing path is kept as a prefix).
    pub fn new(base: Url) -> Result<Self, HomeserverError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .user_agent(concat!("roam-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| HomeserverError::Unreachable {
                url: base.to_string(),
                reason: format!("cannot build an HTTP client: {e}"),
            })?;
        Ok(Self {
            base,
            http,
            token: None,
        })
    }

    /// The same client, authenticated with `token`.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// The base URL.
    pub fn base(&self) -> &Url {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base.as_str().trim_end_matches('/'), path)
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, HomeserverError> {
        self.send_capped(method, path, body, MAX_RESPONSE_BYTES)
            .await
    }

    async fn send_capped(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        cap: usize,
    ) -> Result<Value, HomeserverError> {
        let url = self.url(path);
        let mut req = self.http.request(method, &url);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| HomeserverError::Unreachable {
            url: url.clone(),
            reason: describe_reqwest(&e),
        })?;
        let status = resp.status();
        let bytes = read_capped(resp, &url, cap).await?;
        let value: Option<Value> = serde_json::from_slice(&bytes).ok();
        if status.is_success() {
            return value.ok_or_else(|| HomeserverError::BadResponse {
                url,
                reason: format!("status {status} with a body that is not JSON"),
            });
        }
        let body = value.unwrap_or_else(|| json!({}));
        Err(HomeserverError::Refused {
            url,
            status: status.as_u16(),
            errcode: body
                .get("errcode")
                .and_then(Value::as_str)
                .unwrap_or("(none)")
                .to_owned(),
            message: body
                .get("error")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(|| {
                    String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned()
                }),
            body,
        })
    }

    async fn get(&self, path: &str) -> Result<Value, HomeserverError> {
        self.send(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: &Value) -> Result<Value, HomeserverError> {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    fn parse<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        v: Value,
    ) -> Result<T, HomeserverError> {
        serde_json::from_value(v).map_err(|e| HomeserverError::BadResponse {
            url: self.url(path),
            reason: e.to_string(),
        })
    }

    /// `GET /_matrix/key/v2/server`, verified: the server's name and keys.
    pub async fn server_keys(&self) -> Result<(ServerName, ServerKeys, Value), HomeserverError> {
        const PATH: &str = "/_matrix/key/v2/server";
        let doc = self.get(PATH).await?;
        let bad = |reason: String| HomeserverError::BadResponse {
            url: self.url(PATH),
            reason,
        };
        let name = doc
            .get("server_name")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("key document without server_name".into()))?;
        let name = ServerName::parse(name).map_err(|e| bad(format!("server_name: {e}")))?;
        let keys = server_keys::verify(&doc, &name).map_err(|e| bad(e.to_string()))?;
        Ok((name, keys, doc))
    }

    /// The server's name (from its verified key document).
    pub async fn server_name(&self) -> Result<ServerName, HomeserverError> {
        Ok(self.server_keys().await?.0)
    }

    /// `POST /register` with a genesis op and the dummy stage. With `login: false` no device
    /// is created (`inhibit_login`).
    pub async fn register_with_genesis(
        &self,
        localpart: &str,
        password: &str,
        genesis: &Value,
        login: bool,
    ) -> Result<Registered, HomeserverError> {
        const PATH: &str = "/_matrix/client/v3/register";
        let body = json!({
            "username": localpart,
            "password": password,
            "inhibit_login": !login,
            "org.roam.genesis": genesis,
            "auth": {"type": "m.login.dummy"},
        });
        let v = self.post(PATH, &body).await?;
        self.parse(PATH, v)
    }

    /// `POST /_roam/v1/login/challenge`.
    pub async fn login_challenge(&self, user_id: &UserId) -> Result<Challenge, HomeserverError> {
        const PATH: &str = "/_roam/v1/login/challenge";
        let v = self
            .post(PATH, &json!({"user_id": user_id.as_str()}))
            .await?;
        self.parse(PATH, v)
    }

    /// `POST /login` with `m.login.roam.key`.
    pub async fn login_with_key(
        &self,
        user_id: &UserId,
        challenge: &str,
        signature: &str,
        device_id: Option<&str>,
        display_name: Option<&str>,
    ) -> Result<LoggedIn, HomeserverError> {
        const PATH: &str = "/_matrix/client/v3/login";
        let mut body = json!({
            "type": "m.login.roam.key",
            "identifier": {"type": "m.id.user", "user": user_id.as_str()},
            "challenge": challenge,
            "signature": signature,
        });
        if let Some(d) = device_id {
            body["device_id"] = json!(d);
        }
        if let Some(n) = display_name {
            body["initial_device_display_name"] = json!(n);
        }
        let v = self.post(PATH, &body).await?;
        self.parse(PATH, v)
    }

    /// `POST /login` with `m.login.password`.
    pub async fn login_with_password(
        &self,
        user: &str,
        password: &str,
    ) -> Result<LoggedIn, HomeserverError> {
        const PATH: &str = "/_matrix/client/v3/login";
        let body = json!({
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": user},
            "password": password,
        });
        let v = self.post(PATH, &body).await?;
        self.parse(PATH, v)
    }

    /// `GET /devices`.
    pub async fn devices(&self) -> Result<Vec<DeviceInfo>, HomeserverError> {
        const PATH: &str = "/_matrix/client/v3/devices";
        #[derive(Deserialize)]
        struct Devices {
            devices: Vec<DeviceInfo>,
        }
        let v = self.get(PATH).await?;
        Ok(self.parse::<Devices>(PATH, v)?.devices)
    }

    /// `POST /keys/upload` with signed Matrix device keys.
    pub async fn upload_device_keys(&self, device_keys: &Value) -> Result<(), HomeserverError> {
        self.post(
            "/_matrix/client/v3/keys/upload",
            &json!({"device_keys": device_keys}),
        )
        .await
        .map(|_| ())
    }

    /// `POST /delete_devices`, answering the UIA challenge with `answer`.
    pub async fn delete_devices(
        &self,
        devices: &[String],
        answer: &UiaAnswer,
    ) -> Result<(), HomeserverError> {
        self.post_with_uia(
            "/_matrix/client/v3/delete_devices",
            json!({"devices": devices}),
            answer,
        )
        .await
        .map(|_| ())
    }

    /// `POST /account/password` without logging out the other devices, answering the UIA
    /// challenge with `answer` (the account key sets a password on a server the account
    /// has none on yet, as after a migration).
    pub async fn set_password(
        &self,
        new_password: &str,
        answer: &UiaAnswer,
    ) -> Result<(), HomeserverError> {
        self.post_with_uia(
            "/_matrix/client/v3/account/password",
            json!({"new_password": new_password, "logout_devices": false}),
            answer,
        )
        .await
        .map(|_| ())
    }

    /// `POST path` with `body`; when the server answers with a UIA challenge (401 with
    /// `flows`), once more with `body.auth` answering it with `answer`.
    async fn post_with_uia(
        &self,
        path: &str,
        mut body: Value,
        answer: &UiaAnswer,
    ) -> Result<Value, HomeserverError> {
        let challenge = match self.post(path, &body).await {
            Ok(v) => return Ok(v),
            Err(e)
                if e.status() == Some(401)
                    && e.body().is_some_and(|b| b.get("flows").is_some()) =>
            {
                e.body().cloned().unwrap_or_default()
            }
            Err(e) => return Err(e),
        };
        let session = challenge.get("session").cloned().unwrap_or(Value::Null);
        let offers = |stage: &str| {
            challenge
                .get("flows")
                .and_then(Value::as_array)
                .is_some_and(|flows| {
                    flows.iter().any(|f| {
                        f.get("stages")
                            .and_then(Value::as_array)
                            .is_some_and(|s| s.len() == 1 && s[0] == stage)
                    })
                })
        };
        let auth = match answer {
            UiaAnswer::Key {
                user_id,
                server,
                key,
            } if offers("m.login.roam.key") => {
                // spec/api.md puts the challenge in the 401's params; a server that does
                // not is answered with a fresh one from /_roam/v1/login/challenge.
                let c = match challenge
                    .pointer("/params/m.login.roam.key/challenge")
                    .and_then(Value::as_str)
                {
                    Some(c) => c.to_owned(),
                    None => self.login_challenge(user_id).await?.challenge,
                };
                json!({
                    "type": "m.login.roam.key",
                    "session": session,
                    "signature": crate::account::sign_login(key, &c, server, user_id),
                    "challenge": c,
                })
            }
            UiaAnswer::Password { user_id, password } if offers("m.login.password") => json!({
                "type": "m.login.password",
                "session": session,
                "identifier": {"type": "m.id.user", "user": user_id.as_str()},
                "password": password,
            }),
            _ => {
                return Err(HomeserverError::Refused {
                    url: self.url(path),
                    status: 401,
                    errcode: "M_FORBIDDEN".into(),
                    message: format!(
                        "the server asks for an authentication this client cannot give (flows: {})",
                        challenge.get("flows").cloned().unwrap_or_default()
                    ),
                    body: challenge,
                });
            }
        };
        body["auth"] = auth;
        self.post(path, &body).await
    }

    /// `GET /_roam/v1/users/{user_id}`: a bundle (not yet verified).
    pub async fn user_bundle(&self, user_id: &UserId) -> Result<Value, HomeserverError> {
        self.get(&format!(
            "/_roam/v1/users/{}",
            encode_segment(user_id.as_str())
        ))
        .await
    }

    /// `GET /_roam/v1/users/{user_id}/credential`: the binding as a W3C credential.
    pub async fn user_credential(&self, user_id: &UserId) -> Result<Value, HomeserverError> {
        self.get(&format!(
            "/_roam/v1/users/{}/credential",
            encode_segment(user_id.as_str())
        ))
        .await
    }

    /// `GET /_roam/v1/accounts/{did}`: a bundle (not yet verified).
    pub async fn account_bundle(&self, did: &Did) -> Result<Value, HomeserverError> {
        self.get(&format!(
            "/_roam/v1/accounts/{}",
            encode_segment(did.as_str())
        ))
        .await
    }

    /// `GET /_roam/v1/accounts/{did}/log`: every op the server holds, all branches.
    pub async fn account_log(&self, did: &Did) -> Result<Vec<Value>, HomeserverError> {
        let path = format!(
            "/_roam/v1/accounts/{}/log?since=0",
            encode_segment(did.as_str())
        );
        let v = self.get(&path).await?;
        #[derive(Deserialize)]
        struct Ops {
            ops: Vec<Value>,
        }
        Ok(self.parse::<Ops>(&path, v)?.ops)
    }

    /// `POST /_roam/v1/accounts/{did}/ops`.
    pub async fn post_ops(&self, did: &Did, ops: &[Value]) -> Result<OpsAccepted, HomeserverError> {
        let path = format!("/_roam/v1/accounts/{}/ops", encode_segment(did.as_str()));
        let v = self.post(&path, &json!({"ops": ops})).await?;
        self.parse(&path, v)
    }

    /// `POST /_roam/v1/account/did`: binds the logged-in Matrix account to a DID.
    pub async fn adopt_did(&self, ops: &[Value]) -> Result<Value, HomeserverError> {
        self.post("/_roam/v1/account/did", &json!({"ops": ops}))
            .await
    }

    /// `POST /_roam/v1/migrate`.
    pub async fn migrate(&self, req: &MigrateRequest<'_>) -> Result<Migration, HomeserverError> {
        const PATH: &str = "/_roam/v1/migrate";
        let mut body = json!({"did": req.did.as_str(), "log": req.log});
        if let Some(f) = req.from {
            body["from"] = json!(f.as_str());
        }
        if let Some(l) = req.localpart {
            body["localpart"] = json!(l);
        }
        if let Some(t) = req.registration_token {
            body["registration_token"] = json!(t);
        }
        let v = self.post(PATH, &body).await?;
        self.parse(PATH, v)
    }

    /// `GET /_roam/v1/device-plane` (authenticated): the account's device plane.
    pub async fn device_plane(&self) -> Result<Value, HomeserverError> {
        self.send_capped(
            reqwest::Method::GET,
            "/_roam/v1/device-plane",
            None,
            MAX_DEVICE_PLANE_BYTES,
        )
        .await
    }

    /// `POST /_roam/v1/device-plane` with a request signed by the account key.
    pub async fn import_device_plane(&self, req: &Value) -> Result<Value, HomeserverError> {
        self.post("/_roam/v1/device-plane", req).await
    }

    /// `POST /logout`: ends this session (and deletes its device).
    pub async fn logout(&self) -> Result<(), HomeserverError> {
        self.post("/_matrix/client/v3/logout", &json!({}))
            .await
            .map(|_| ())
    }

    /// `POST /keys/device_signing/upload` (no UIA: for an account without cross-signing keys,
    /// or with the same ones).
    pub async fn upload_cross_signing(&self, body: &Value) -> Result<(), HomeserverError> {
        self.post("/_matrix/client/v3/keys/device_signing/upload", body)
            .await
            .map(|_| ())
    }

    /// `GET /room_keys/version`: the current key backup version, `None` when there is none.
    pub async fn backup_version(&self) -> Result<Option<Value>, HomeserverError> {
        match self.get("/_matrix/client/v3/room_keys/version").await {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `PUT /room_keys/version/{version}` with a new `auth_data`.
    pub async fn update_backup_auth_data(
        &self,
        version: &str,
        algorithm: &str,
        auth_data: &Value,
    ) -> Result<(), HomeserverError> {
        let path = format!(
            "/_matrix/client/v3/room_keys/version/{}",
            encode_segment(version)
        );
        let body = json!({"version": version, "algorithm": algorithm, "auth_data": auth_data});
        self.send(reqwest::Method::PUT, &path, Some(&body))
            .await
            .map(|_| ())
    }

    /// `GET /_roam/v1/migrate/{id}`.
    pub async fn migration(&self, id: &str) -> Result<Migration, HomeserverError> {
        let path = format!("/_roam/v1/migrate/{}", encode_segment(id));
        let v = self.get(&path).await?;
        self.parse(&path, v)
    }

    /// `GET /.well-known/matrix/client` → `m.homeserver.base_url`, if the server publishes one.
    pub async fn well_known_base_url(&self) -> Option<Url> {
        let v = self.get("/.well-known/matrix/client").await.ok()?;
        let s = v.pointer("/m.homeserver/base_url")?.as_str()?;
        Url::parse(s).ok()
    }
}

/// Reads a response body chunk by chunk, refusing it as soon as it passes `limit` bytes (a
/// declared Content-Length over the limit is refused before reading anything).
async fn read_capped(
    mut resp: reqwest::Response,
    url: &str,
    limit: usize,
) -> Result<Vec<u8>, HomeserverError> {
    let too_large = || HomeserverError::BadResponse {
        url: url.to_owned(),
        reason: format!("{RESPONSE_TOO_LARGE}: over {limit} bytes"),
    };
    if resp
        .content_length()
        .is_some_and(|n| n > u64::try_from(limit).unwrap_or(u64::MAX))
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| HomeserverError::Unreachable {
            url: url.to_owned(),
            reason: describe_reqwest(&e),
        })?
    {
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn describe_reqwest(e: &reqwest::Error) -> String {
    let mut s = if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        "connection failed".to_owned()
    } else {
        e.to_string()
    };
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(encode_segment("@alice:a.test"), "%40alice%3Aa.test");
        assert_eq!(
            encode_segment("did:key:z6Mk-x_y.~"),
            "did%3Akey%3Az6Mk-x_y.~"
        );
    }

    #[tokio::test]
    async fn unreachable_server_is_reported_as_such() {
        // A port this test bound and released: nothing listens on it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let base = format!("http://127.0.0.1:{port}");
        let hs = Homeserver::new(Url::parse(&base).unwrap()).unwrap();
        let err = hs.server_name().await.unwrap_err();
        assert!(err.is_unreachable(), "{err}");
        assert!(err.to_string().contains(&format!("cannot reach {base}")));
    }

    /// A one-shot HTTP server on 127.0.0.1 answering `200` with a JSON body of `len` bytes,
    /// with or without a Content-Length header (without: the body ends with the connection).
    async fn oversized_server(len: usize, content_length: bool) -> Url {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = sock.read(&mut buf).await;
            let head = if content_length {
                format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len}\r\n\r\n"
                )
            } else {
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n"
                    .to_owned()
            };
            if sock.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            // `"aaaa…"`: valid JSON if it were ever read whole.
            let mut body = vec![b'a'; len];
            body[0] = b'"';
            body[len - 1] = b'"';
            for chunk in body.chunks(64 * 1024) {
                if sock.write_all(chunk).await.is_err() {
                    return; // the client hung up: what the cap should make it do
                }
            }
            let _ = sock.shutdown().await;
        });
        Url::parse(&format!("http://{addr}")).unwrap()
    }

    #[tokio::test]
    async fn oversized_response_is_refused_while_streaming() {
        let base = oversized_server(MAX_RESPONSE_BYTES + 1024, false).await;
        let err = Homeserver::new(base)
            .unwrap()
            .server_name()
            .await
            .unwrap_err();
        assert!(err.is_too_large(), "{err:?}");
        assert!(err.to_string().contains("response too large"), "{err}");
    }

    #[tokio::test]
    async fn oversized_content_length_is_refused() {
        let base = oversized_server(MAX_RESPONSE_BYTES + 1, true).await;
        let err = Homeserver::new(base)
            .unwrap()
            .server_name()
            .await
            .unwrap_err();
        assert!(err.is_too_large(), "{err:?}");
    }

    #[tokio::test]
    async fn a_body_within_the_cap_is_read() {
        let base = oversized_server(1000, false).await;
        let v = Homeserver::new(base).unwrap().get("/").await.unwrap();
        assert_eq!(v.as_str().map(str::len), Some(998));
    }
}
