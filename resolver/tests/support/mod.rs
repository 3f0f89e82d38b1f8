//! Test origin servers and accounts: real signed data built with identity-core, served by
//! axum on 127.0.0.1:0 following the resolver's wire contract exactly.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use roam_identity_core::attestation::Attestation;
use roam_identity_core::bundle::Bundle;
use roam_identity_core::log::{self, AccountState, Action, SignedOp};
use roam_identity_core::server_keys::{self, ServerSigningKey};
use roam_identity_core::{
    Did, KeyCommitment, KeyId, Millis, OpHash, ServerName, SigningKey, UserId,
};
use roam_resolver::{ManualClock, NetworkResolver, ResolverConfig};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use url::Url;

/// The tests' "now".
pub const NOW: Millis = 1_800_000_000_000;
pub const DAY: Millis = 24 * 3600 * 1000;

pub fn user(s: &str) -> UserId {
    UserId::parse(s).unwrap()
}

pub fn name(s: &str) -> ServerName {
    ServerName::parse(s).unwrap()
}

/// An account and its full history of signed ops (every branch).
#[derive(Clone)]
pub struct Account {
    pub key: SigningKey,
    pub recovery: SigningKey,
    pub ops: Vec<SignedOp>,
    pub state: AccountState,
    pub t: Millis,
}

impl Account {
    pub fn new(seed: u8, first: &UserId, servers: &[&str]) -> Self {
        let key = SigningKey::from_bytes(&[seed; 32]);
        let recovery = SigningKey::from_bytes(&[seed.wrapping_add(100); 32]);
        let t = NOW - 30 * DAY;
        let g = log::genesis_op(
            &key.verifying_key(),
            KeyCommitment::to_key(&recovery.verifying_key()),
            first.clone(),
            servers.iter().map(|s| name(s)).collect(),
            t,
        )
        .unwrap()
        .sign(&key);
        let state = log::verify_log(std::slice::from_ref(&g), None, NOW)
            .unwrap()
            .state;
        Self {
            key,
            recovery,
            ops: vec![g],
            state,
            t,
        }
    }

    pub fn did(&self) -> Did {
        self.state.did.clone()
    }

    /// Appends an op signed by the update key on top of the current head.
    pub fn append(&mut self, action: Action) -> SignedOp {
        self.t += 1000;
        let op = log::next_op(&self.state, self.t, action).sign(&self.key);
        self.ops.push(op.clone());
        self.state = log::verify_log(&self.ops, None, NOW).unwrap().state;
        op
    }

    /// An op on top of the current head that is NOT added (for forks).
    pub fn sibling(&self, action: Action, t: Millis) -> SignedOp {
        log::next_op(&self.state, t, action).sign(&self.key)
    }

    pub fn values(&self) -> Vec<Value> {
        self.ops.iter().map(|o| o.value.clone()).collect()
    }

    pub fn values_upto(&self, n: usize) -> Vec<Value> {
        self.ops[..n].iter().map(|o| o.value.clone()).collect()
    }

    pub fn head(&self) -> OpHash {
        self.state.head
    }
}

pub fn device(id: &str, seed: u8) -> Action {
    Action::AddDevice {
        device_id: roam_identity_core::DeviceId::parse(id).unwrap(),
        keys: log::DeviceKeys {
            ed25519: SigningKey::from_bytes(&[seed; 32])
                .verifying_key()
                .to_bytes(),
            curve25519: [seed; 32],
        },
    }
}

#[derive(Default)]
pub struct Served {
    pub users: HashMap<String, Value>,
    pub accounts: HashMap<String, Value>,
    pub logs: HashMap<String, Vec<Value>>,
    /// The `/_matrix/key/v2/server` document.
    pub key_doc: Option<Value>,
    /// Every request this origin received (any path, any method), in order.
    pub requests: Vec<String>,
}

/// A homeserver stand-in with a real signing key.
pub struct Origin {
    pub name: ServerName,
    pub key: ServerSigningKey,
    pub served: Arc<Mutex<Served>>,
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Origin {
    pub async fn start(server: &str, seed: u8) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::start_on(server, seed, listener, Arc::default()).await
    }

    async fn start_on(
        server: &str,
        seed: u8,
        listener: TcpListener,
        served: Arc<Mutex<Served>>,
    ) -> Self {
        let name = name(server);
        let key = ServerSigningKey {
            key_id: KeyId::ed25519("a_1").unwrap(),
            key: SigningKey::from_bytes(&[seed; 32]),
        };
        let doc = server_keys::build(&name, &key, &BTreeMap::new(), NOW + 7 * DAY).unwrap();
        served.lock().unwrap().key_doc.get_or_insert(doc);
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let router = origin_router(served.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        Self {
            name,
            key,
            served,
            addr,
            stop: Some(tx),
            task: Some(task),
        }
    }

    pub fn base(&self) -> Url {
        Url::parse(&format!("http://{}", self.addr)).unwrap()
    }

    /// The requests received so far (`METHOD path?query`).
    pub fn requests(&self) -> Vec<String> {
        self.served.lock().unwrap().requests.clone()
    }

    /// Forgets the requests received so far.
    pub fn clear_requests(&self) {
        self.served.lock().unwrap().requests.clear();
    }

    pub fn key_doc(&self) -> Value {
        self.served.lock().unwrap().key_doc.clone().unwrap()
    }

    /// Stops serving: the port is closed afterwards (connection refused).
    pub async fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
    }

    pub fn attest(&self, user: Option<&UserId>, acct: &Account, hosting: bool) -> Value {
        self.attest_at(
            user,
            &acct.did(),
            acct.head(),
            hosting,
            NOW - DAY,
            NOW + DAY,
        )
    }

    pub fn attest_at(
        &self,
        user: Option<&UserId>,
        did: &Did,
        head: OpHash,
        hosting: bool,
        issued_at: Millis,
        valid_until: Millis,
    ) -> Value {
        Attestation {
            server_name: self.name.clone(),
            user_id: user.cloned(),
            did: did.clone(),
            head,
            hosting,
            issued_at,
            valid_until,
        }
        .sign(&self.key)
        .unwrap()
    }

    /// A bundle as this server would serve it: the given ops and attestations plus the key
    /// documents of `key_docs`.
    pub fn bundle(
        &self,
        did: &Did,
        log: Vec<Value>,
        attestations: Vec<Value>,
        key_docs: Vec<Value>,
    ) -> Value {
        Bundle {
            did: did.clone(),
            log,
            attestations,
            server_keys: key_docs,
            fetched_at: NOW - 1000,
            source: self.name.to_string(),
        }
        .to_value()
    }

    /// Serves `acct` (all its ops) for `user` and for its DID, attested by this server.
    pub fn host(&self, user: &UserId, acct: &Account) {
        let att = self.attest(Some(user), acct, true);
        let b = self.bundle(&acct.did(), acct.values(), vec![att], vec![self.key_doc()]);
        self.publish_user(user, b.clone());
        self.publish_account(&acct.did(), b);
        self.publish_log(&acct.did(), acct.values());
    }

    pub fn publish_user(&self, user: &UserId, bundle: Value) {
        self.served
            .lock()
            .unwrap()
            .users
            .insert(user.to_string(), bundle);
    }

    pub fn unpublish_user(&self, user: &UserId) {
        self.served.lock().unwrap().users.remove(user.as_str());
    }

    pub fn publish_account(&self, did: &Did, bundle: Value) {
        self.served
            .lock()
            .unwrap()
            .accounts
            .insert(did.to_string(), bundle);
    }

    pub fn publish_log(&self, did: &Did, ops: Vec<Value>) {
        self.served
            .lock()
            .unwrap()
            .logs
            .insert(did.to_string(), ops);
    }
}

fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(json!({"errcode": "M_NOT_FOUND", "error": "not found"})),
    )
        .into_response()
}

fn origin_router(served: Arc<Mutex<Served>>) -> Router {
    let log = served.clone();
    let count = axum::middleware::from_fn(
        move |req: axum::extract::Request, next: axum::middleware::Next| {
            let log = log.clone();
            async move {
                let line = format!(
                    "{} {}",
                    req.method(),
                    req.uri().path_and_query().map_or("", |p| p.as_str())
                );
                log.lock().unwrap().requests.push(line);
                next.run(req).await
            }
        },
    );
    Router::new()
        .route(
            "/_matrix/key/v2/server",
            get(|State(s): State<Arc<Mutex<Served>>>| async move {
                axum::Json(s.lock().unwrap().key_doc.clone().unwrap())
            }),
        )
        .route(
            "/_roam/v1/users/{user_id}",
            get(
                |State(s): State<Arc<Mutex<Served>>>, Path(u): Path<String>| async move {
                    match s.lock().unwrap().users.get(&u) {
                        Some(b) => axum::Json(b.clone()).into_response(),
                        None => not_found(),
                    }
                },
            ),
        )
        .route(
            "/_roam/v1/accounts/{did}",
            get(
                |State(s): State<Arc<Mutex<Served>>>, Path(d): Path<String>| async move {
                    match s.lock().unwrap().accounts.get(&d) {
                        Some(b) => axum::Json(b.clone()).into_response(),
                        None => not_found(),
                    }
                },
            ),
        )
        .route(
            "/_roam/v1/accounts/{did}/log",
            get(
                |State(s): State<Arc<Mutex<Served>>>,
                 Path(d): Path<String>,
                 Query(q): Query<HashMap<String, u64>>| async move {
                    let since = q.get("since").copied().unwrap_or(0);
                    match s.lock().unwrap().logs.get(&d) {
                        Some(ops) => {
                            let ops: Vec<Value> = ops
                                .iter()
                                .filter(|o| o["seq"].as_u64().unwrap_or(0) >= since)
                                .cloned()
                                .collect();
                            axum::Json(json!({ "ops": ops })).into_response()
                        }
                        None => not_found(),
                    }
                },
            ),
        )
        .fallback(|| async { not_found() })
        .layer(count)
        .with_state(served)
}

/// A resolver whose overrides point each origin's name at its loopback address.
pub fn resolver(origins: &[&Origin], clock: &ManualClock) -> NetworkResolver {
    resolver_with(origins, clock, |_| {})
}

pub fn resolver_with(
    origins: &[&Origin],
    clock: &ManualClock,
    tweak: impl FnOnce(&mut ResolverConfig),
) -> NetworkResolver {
    let mut config = ResolverConfig {
        request_timeout: Duration::from_secs(3),
        connect_timeout: Duration::from_secs(2),
        ..ResolverConfig::default()
    };
    for o in origins {
        config.overrides.insert(o.name.clone(), o.base());
    }
    tweak(&mut config);
    NetworkResolver::new(config, Arc::new(clock.clone())).unwrap()
}

/// A port on 127.0.0.1 with nothing listening (bound then released).
pub async fn dead_url() -> Url {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    Url::parse(&format!("http://{addr}")).unwrap()
}

/// Serves `router` on 127.0.0.1:0 for the rest of the test.
pub async fn serve_router(router: Router) -> Url {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(l, router).await.unwrap();
    });
    Url::parse(&format!("http://{addr}")).unwrap()
}
