//! Helpers shared by the integration tests: a homeserver on a loopback port with a temporary
//! redb file, one HTTP request function and a small Matrix client over it, the user's side of
//! a portable account ([`Owner`] and the ops it signs), and checks on what servers answer
//! (Matrix errors, bundles, migrations).

#![allow(dead_code)] // each test binary uses a different subset

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use roam_identity_core::{KeyId, ServerName, b64, signed};
use roam_server::config::ServerConfig;
use roam_server::store::PgStore;
use roam_server::{AppState, RateLimits, RedbStore, Store, StoreError};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const SERVER_NAME: &str = "roam.test";

/// A running server; [`TestServer::stop`] shuts it down gracefully and releases the store.
#[derive(Debug)]
pub struct TestServer {
    pub base: String,
    pub state: AppState,
    shutdown: Option<oneshot::Sender<()>>,
    handle: JoinHandle<std::io::Result<()>>,
}

/// Which store a test server runs on.
#[derive(Debug, Clone)]
pub enum Backend {
    /// redb in the server's directory.
    Redb,
    /// PostgreSQL at this URL (a database of the test's own).
    Postgres(String),
}

impl Backend {
    /// A fresh PostgreSQL database on the server `ROAM_TEST_DATABASE_URL` names (which
    /// `scripts/test.sh` starts with scripts/pg.sh); fails with a message when it is unset.
    pub fn postgres() -> Self {
        let url = std::env::var("ROAM_TEST_DATABASE_URL").expect(
            "ROAM_TEST_DATABASE_URL is not set: the PostgreSQL tests need a server; run \
             `eval \"$(bash scripts/pg.sh start)\"` (scripts/test.sh does this)",
        );
        Backend::Postgres(PgStore::create_fresh_database(&url, "roam_it").unwrap())
    }

    /// The store of the server whose directory is `dir`, for the tests that do not pick one:
    /// redb, or PostgreSQL when `ROAM_TEST_STORE=postgres` (scripts/test.sh runs the
    /// integration tests once each way). On PostgreSQL the database made for `dir` is named in
    /// a file there, so a server restarted on the same directory finds its data again.
    pub fn for_dir(dir: &Path) -> Self {
        if !postgres_wanted() {
            return Backend::Redb;
        }
        let marker = dir.join(".roam-test-database-url");
        if let Ok(url) = std::fs::read_to_string(&marker) {
            return Backend::Postgres(url);
        }
        let backend = Backend::postgres();
        if let Backend::Postgres(url) = &backend {
            std::fs::create_dir_all(dir).unwrap();
            std::fs::write(&marker, url).unwrap();
        }
        backend
    }

    /// A new store for a server that is never restarted: as [`Backend::for_dir`].
    pub fn from_env() -> Self {
        if postgres_wanted() {
            Backend::postgres()
        } else {
            Backend::Redb
        }
    }

    /// Opens the store for a server whose directory is `dir`.
    pub async fn open(&self, dir: &Path) -> Arc<dyn Store> {
        match self {
            Backend::Redb => Arc::new(open_store(dir).await),
            Backend::Postgres(url) => Arc::new(PgStore::connect(url, 8).unwrap()),
        }
    }
}

/// True when `ROAM_TEST_STORE=postgres`: the integration tests then run their servers on
/// PostgreSQL (see [`Backend::for_dir`]).
fn postgres_wanted() -> bool {
    match std::env::var("ROAM_TEST_STORE").as_deref() {
        Ok("postgres") => true,
        Ok("redb") | Err(std::env::VarError::NotPresent) => false,
        other => panic!("ROAM_TEST_STORE must be `redb` or `postgres`, not {other:?}"),
    }
}

/// Starts a server on `127.0.0.1:0` whose data lives in `dir`.
pub async fn start(dir: &Path, tweak: impl FnOnce(&mut ServerConfig)) -> TestServer {
    start_on(&Backend::for_dir(dir), dir, tweak).await
}

/// Starts a server on `127.0.0.1:0` on `backend` (redb files live in `dir`).
pub async fn start_on(
    backend: &Backend,
    dir: &Path,
    tweak: impl FnOnce(&mut ServerConfig),
) -> TestServer {
    start_with(backend, dir, tweak, false).await
}

/// [`start`] with a federation client (`HttpFederation`): the other servers it may reach are
/// the `federation_overrides` that `tweak` sets.
pub async fn start_federated(dir: &Path, tweak: impl FnOnce(&mut ServerConfig)) -> TestServer {
    start_with(&Backend::for_dir(dir), dir, tweak, true).await
}

/// Shows the servers' error logs (an internal error's cause, which the client only sees as
/// `M_UNKNOWN`) in a failing test's output; `RUST_LOG` shows more.
pub fn show_server_errors() {
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "error".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_test_writer()
        .try_init();
}

async fn start_with(
    backend: &Backend,
    dir: &Path,
    tweak: impl FnOnce(&mut ServerConfig),
    federated: bool,
) -> TestServer {
    show_server_errors();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut config = ServerConfig::for_server_name(
        ServerName::parse(SERVER_NAME).unwrap(),
        addr,
        dir.to_owned(),
    );
    config.rate_limits = RateLimits::unlimited();
    tweak(&mut config);
    let store = backend.open(dir).await;
    let state = if federated {
        let fed = roam_server::portable::federation::HttpFederation::new(&config).unwrap();
        AppState::with_federation(config, store, Arc::new(fed)).unwrap()
    } else {
        AppState::new(config, store).unwrap()
    };
    let (tx, rx) = oneshot::channel::<()>();
    let handle = tokio::spawn(roam_server::run(listener, state.clone(), async move {
        let _ = rx.await;
    }));
    TestServer {
        base: format!("http://{addr}"),
        state,
        shutdown: Some(tx),
        handle,
    }
}

/// The store of a stopped server whose directory is `dir` (see [`Backend::for_dir`]), for
/// tests that change what it holds behind the server's back.
pub async fn open_dir_store(dir: &Path) -> Arc<dyn Store> {
    Backend::for_dir(dir).open(dir).await
}

/// Everything a stopped server whose directory is `dir` stored, as bytes: its redb file, or a
/// `pg_dump --data-only` of its PostgreSQL database (for tests that check what is never
/// stored in the clear).
pub fn stored_bytes(dir: &Path) -> Vec<u8> {
    match Backend::for_dir(dir) {
        Backend::Redb => {
            let file = std::fs::read_dir(dir)
                .unwrap()
                .filter_map(Result::ok)
                .find(|e| e.path().extension().is_some_and(|x| x == "redb"))
                .unwrap_or_else(|| panic!("no redb file in {}", dir.display()));
            std::fs::read(file.path()).unwrap()
        }
        Backend::Postgres(url) => {
            let pg_dump = std::fs::read_dir("/usr/lib/postgresql")
                .ok()
                .into_iter()
                .flatten()
                .filter_map(Result::ok)
                .map(|v| v.path().join("bin/pg_dump"))
                .find(|p| p.exists())
                .expect(
                    "pg_dump is missing (Debian: postgresql-client; scripts/pg.sh installs it)",
                );
            let out = std::process::Command::new(pg_dump)
                .args(["--data-only", "--no-owner", &url])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "pg_dump: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(out.stdout.len() > 1000, "pg_dump wrote almost nothing");
            out.stdout
        }
    }
}

/// Opens the store, waiting briefly if a just-stopped server still holds the file.
async fn open_store(dir: &Path) -> RedbStore {
    for _ in 0..50 {
        match RedbStore::open_dir(dir) {
            Err(StoreError::Locked) => tokio::time::sleep(Duration::from_millis(100)).await,
            other => return other.unwrap(),
        }
    }
    panic!("store in {} stayed locked", dir.display());
}

impl TestServer {
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        drop(self.state);
        self.handle.await.unwrap().unwrap();
    }

    pub fn client(&self) -> Client {
        Client {
            http: reqwest::Client::new(),
            base: self.base.clone(),
            token: None,
        }
    }
}

/// A minimal Matrix client: JSON in, status and JSON out.
#[derive(Debug, Clone)]
pub struct Client {
    pub http: reqwest::Client,
    pub base: String,
    pub token: Option<String>,
}

pub const C: &str = "/_matrix/client/v3";

impl Client {
    pub fn with_token(&self, token: &str) -> Client {
        Client {
            token: Some(token.to_owned()),
            ..self.clone()
        }
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        request(&self.http, method, &url, body, self.token.as_deref()).await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.send(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::POST, path, Some(&body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::PUT, path, Some(&body)).await
    }

    /// Registers through both UIA round trips, as a client following the protocol would.
    pub async fn register(&self, username: &str, password: &str) -> Client {
        let (s, v) = self
            .post(
                &format!("{C}/register"),
                json!({"username": username, "password": password}),
            )
            .await;
        assert_eq!(s, 401, "{v}");
        let session = v["session"].as_str().unwrap();
        let (s, v) = self
            .post(
                &format!("{C}/register"),
                json!({"username": username, "password": password, "auth": {"type": "m.login.dummy", "session": session}}),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        self.with_token(v["access_token"].as_str().unwrap())
    }

    pub async fn login(
        &self,
        user: &str,
        password: &str,
        device_id: Option<&str>,
    ) -> (Client, String) {
        let mut body = json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user}, "password": password});
        if let Some(d) = device_id {
            body["device_id"] = json!(d);
        }
        let (s, v) = self.post(&format!("{C}/login"), body).await;
        assert_eq!(s, 200, "{v}");
        (
            self.with_token(v["access_token"].as_str().unwrap()),
            v["device_id"].as_str().unwrap().to_owned(),
        )
    }
}

/// One HTTP request with an optional JSON body and bearer token. Returns the status and the
/// JSON answer (a body that is not JSON comes back as a JSON string).
pub async fn request(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: Option<&Value>,
    token: Option<&str>,
) -> (u16, Value) {
    let mut req = http.request(method, url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Asserts a Matrix error answer.
pub fn assert_err(got: &(u16, Value), status: u16, errcode: &str) {
    assert_eq!(got.0, status, "{}", got.1);
    assert_eq!(got.1["errcode"], errcode, "{}", got.1);
}

/// Signed device keys for `device` of `user`, as a Matrix client would upload them.
pub fn device_keys(user: &str, device: &str, key: &SigningKey) -> Value {
    let mut keys = json!({
        "user_id": user,
        "device_id": device,
        "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
        "keys": {
            format!("curve25519:{device}"): b64::encode(&[7u8; 32]),
            format!("ed25519:{device}"): b64::encode(key.verifying_key().as_bytes()),
        },
    });
    signed::sign(&mut keys, user, &KeyId::ed25519(device).unwrap(), key).unwrap();
    keys
}

/// A cross-signing key object of `usage` for `user`, unsigned.
pub fn cross_signing_key(user: &str, usage: &str, key: &SigningKey) -> Value {
    let public = b64::encode(key.verifying_key().as_bytes());
    json!({"user_id": user, "usage": [usage], "keys": {format!("ed25519:{public}"): public}})
}

/// The key ID of a cross-signing key: `ed25519:<public key>`.
pub fn cs_key_id(key: &SigningKey) -> KeyId {
    KeyId::ed25519(&b64::encode(key.verifying_key().as_bytes())).unwrap()
}

/// Milliseconds since the Unix epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Percent-encodes the characters of a user ID that matter in a path segment.
pub fn enc(s: &str) -> String {
    s.replace('@', "%40").replace(':', "%3A")
}

/// The user's side of a portable account in tests: the update key, the committed next key,
/// and every op the user signed.
pub struct Owner {
    pub update: SigningKey,
    pub next: SigningKey,
    pub ops: Vec<roam_identity_core::log::SignedOp>,
}

impl Owner {
    /// A genesis for `user` on `servers`, with keys from fixed seeds.
    pub fn new(seed: u8, user: &str, servers: &[&str]) -> Self {
        let update = SigningKey::from_bytes(&[seed; 32]);
        let next = SigningKey::from_bytes(&[seed.wrapping_add(100); 32]);
        Self::from_keys(update, next, user, servers)
    }

    /// A genesis for `user` on `servers` signed by `update`, committing to `next`.
    pub fn from_keys(update: SigningKey, next: SigningKey, user: &str, servers: &[&str]) -> Self {
        let g = roam_identity_core::log::genesis_op(
            &update.verifying_key(),
            roam_identity_core::KeyCommitment::to_key(&next.verifying_key()),
            roam_identity_core::UserId::parse(user).unwrap(),
            servers
                .iter()
                .map(|s| ServerName::parse(s).unwrap())
                .collect(),
            now() - 60_000,
        )
        .unwrap()
        .sign(&update);
        Owner {
            update,
            next,
            ops: vec![g],
        }
    }

    pub fn did(&self) -> String {
        self.ops[0].op.did.to_string()
    }

    pub fn state(&self) -> roam_identity_core::log::AccountState {
        roam_identity_core::log::verify_log(&self.ops, None, now())
            .unwrap()
            .state
    }

    /// Signs `action` on top of the owner's head with the update key.
    pub fn sign(&mut self, action: roam_identity_core::log::Action) -> Value {
        let op = roam_identity_core::log::next_op(&self.state(), now(), action).sign(&self.update);
        self.ops.push(op.clone());
        op.value
    }

    pub fn values(&self) -> Vec<Value> {
        self.ops.iter().map(|o| o.value.clone()).collect()
    }
}

/// An `add_device` of `device_id`, with Matrix identity keys from a fixed seed.
pub fn add_device(device_id: &str, seed: u8) -> roam_identity_core::log::Action {
    let key = SigningKey::from_bytes(&[seed; 32]).verifying_key();
    roam_identity_core::log::Action::AddDevice {
        device_id: roam_identity_core::DeviceId::parse(device_id).unwrap(),
        keys: roam_identity_core::log::DeviceKeys {
            ed25519: key.to_bytes(),
            curve25519: key.to_montgomery().to_bytes(),
        },
    }
}

/// Verifies a bundle as a server served it, offline, at the current time.
pub fn verify_bundle(bundle: &Value) -> roam_identity_core::bundle::VerifiedBundle {
    let b = roam_identity_core::bundle::Bundle::from_value(bundle).unwrap();
    roam_identity_core::bundle::verify(&b, None, now()).unwrap()
}

/// The step called `name` of a migration answer.
pub fn migration_step<'a>(migration: &'a Value, name: &str) -> &'a Value {
    migration["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no step {name} in {migration}"))
}

/// A `move` to `names`, primary first.
pub fn move_to(names: &[&str]) -> roam_identity_core::log::Action {
    roam_identity_core::log::Action::Move {
        servers: names
            .iter()
            .map(|s| ServerName::parse(s).unwrap())
            .collect(),
    }
}

/// Builds (if needed) and locates the `roam` binary next to this test's target directory
/// (`target/debug/deps/TEST-HASH` → `target/debug/roam`).
pub fn roam_bin() -> std::path::PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = std::process::Command::new(cargo)
        .args(["build", "--quiet", "-p", "roam-cli", "--bin", "roam"])
        .status()
        .expect("running cargo build");
    assert!(status.success(), "building roam failed");
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().join("roam")
}

/// Spawns a prepared `roam serve` command and returns the child and its base URL, read from
/// the banner. Stdout keeps being drained so the server never blocks on a full pipe.
pub fn spawn_serve(mut cmd: std::process::Command) -> (std::process::Child, String) {
    use std::io::{BufRead, BufReader};
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines
        .next()
        .expect("roam serve printed its banner")
        .unwrap();
    let base = first
        .split("listening on ")
        .nth(1)
        .expect("banner names the address")
        .trim()
        .to_owned();
    std::thread::spawn(move || for _ in lines {});
    (child, base)
}

/// tests/js-sdk/flow.mjs (the matrix-js-sdk client), after checking that matrix-js-sdk is
/// installed there: without it the test fails with the command that installs it.
pub fn js_sdk_flow() -> std::path::PathBuf {
    let project = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("js-sdk");
    let sdk = project.join("node_modules/matrix-js-sdk/package.json");
    assert!(
        sdk.exists(),
        "{} is missing: run `bash .ci/setup-node.sh` (or the README's test command, \
         `bash scripts/test.sh`) to install matrix-js-sdk",
        sdk.display()
    );
    project.join("flow.mjs")
}

/// Starts a server, runs an independent client program (`program script BASE_URL`) against
/// it, and asserts that it succeeded and printed `passed`. `what` names the client in
/// failures; a program that cannot start fails with `setup`, the command that installs it.
pub async fn run_client(
    program: std::path::PathBuf,
    script: std::path::PathBuf,
    what: &str,
    passed: &str,
    setup: &str,
) {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {}).await;
    let base = server.base.clone();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(program)
            .arg(script)
            .arg(base)
            .output()
    })
    .await
    .unwrap()
    .unwrap_or_else(|e| panic!("running the {what} client (`{setup}` installs it): {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        output.status.success(),
        "{what} client failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    assert!(
        stdout.contains(passed),
        "{what}: no {passed:?} in its output"
    );
    server.stop().await;
}

/// One server of [`federation`]; dropping it stops the server.
pub struct Node {
    pub name: String,
    pub base: String,
    shutdown: Option<oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

impl Node {
    pub fn client(&self) -> Client {
        Client {
            http: reqwest::Client::new(),
            base: self.base.clone(),
            token: None,
        }
    }

    pub fn uid(&self, localpart: &str) -> String {
        format!("@{localpart}:{}", self.name)
    }

    /// `--federation-override` value for a `roam` client.
    pub fn override_arg(&self) -> String {
        format!("{}={}", self.name, self.base)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Servers named `names` on loopback ports, each reaching the others through its federation
/// overrides (and those overrides, `NAME=URL`, for a `roam` client: [`Node::override_arg`]).
pub async fn federation(names: &[&str]) -> Vec<Node> {
    show_server_errors();
    let mut listeners = Vec::new();
    let mut overrides = std::collections::BTreeMap::new();
    for n in names {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        overrides.insert(
            ServerName::parse(n).unwrap(),
            url::Url::parse(&format!("http://{addr}")).unwrap(),
        );
        listeners.push((n.to_string(), l, addr));
    }
    let mut nodes = Vec::new();
    for (name, listener, addr) in listeners {
        let dir = tempfile::tempdir().unwrap();
        let sn = ServerName::parse(&name).unwrap();
        let mut config = ServerConfig::for_server_name(sn, addr, dir.path().to_owned());
        config.rate_limits = RateLimits::unlimited();
        config.federation_overrides = overrides.clone();
        let fed = roam_server::portable::federation::HttpFederation::new(&config).unwrap();
        let store = roam_server::store::RedbStore::open_dir(dir.path()).unwrap();
        let state = roam_server::state::AppState::with_federation(
            config,
            std::sync::Arc::new(store),
            std::sync::Arc::new(fed),
        )
        .unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(roam_server::run(listener, state, async move {
            let _ = rx.await;
        }));
        nodes.push(Node {
            name,
            base: format!("http://{addr}"),
            shutdown: Some(tx),
            _dir: dir,
        });
    }
    nodes
}
