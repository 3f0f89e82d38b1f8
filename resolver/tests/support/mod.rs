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
use roam_resolver::clock::rfc3339;
use roam_resolver::{
    CachePolicy, CacheStore, Cached, ManualClock, NetworkResolver, Resolution, ResolveError,
    ResolveResult, Resolver, ResolverConfig,
};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::attest::signed_attestation;
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
    /// The `/.well-known/did.json` document (the same key, as did:web).
    pub did_doc: Option<Value>,
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
        let keys = server_keys::ServerKeys {
            server_name: name.clone(),
            verify_keys: BTreeMap::from([(key.key_id.clone(), key.key.verifying_key())]),
            old_verify_keys: BTreeMap::new(),
            valid_until_ts: NOW + 7 * DAY,
        };
        let did_doc = roam_vc::did_web::document(&keys).unwrap();
        served.lock().unwrap().key_doc.get_or_insert(doc);
        served.lock().unwrap().did_doc.get_or_insert(did_doc);
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

    /// This server's binding credential for `user` → `did` at `head`, valid from
    /// `issued_at` to `valid_until` (roam-vc, signed with this server's key).
    pub fn credential(
        &self,
        user: &UserId,
        did: &Did,
        head: OpHash,
        (issued_at, valid_until): (Millis, Millis),
    ) -> Value {
        roam_vc::BindingCredential {
            server: self.name.clone(),
            user_id: user.clone(),
            did: did.clone(),
            head,
            hosting: true,
            valid_from: issued_at,
            valid_until,
        }
        .issue(&self.key.key_id, &self.key.key)
        .unwrap()
    }

    pub fn did_doc(&self) -> Value {
        self.served.lock().unwrap().did_doc.clone().unwrap()
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
        let signer = (&self.name, &self.key);
        signed_attestation(signer, (user, did, head), hosting, (issued_at, valid_until))
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

    /// Serves a bundle for `user`: these ops and attestations, with this server's key
    /// document.
    pub fn publish_user_bundle(
        &self,
        user: &UserId,
        did: &Did,
        ops: Vec<Value>,
        attestations: Vec<Value>,
    ) {
        let b = self.bundle(did, ops, attestations, vec![self.key_doc()]);
        self.publish_user(user, b);
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
            "/.well-known/did.json",
            get(|State(s): State<Arc<Mutex<Served>>>| async move {
                axum::Json(s.lock().unwrap().did_doc.clone().unwrap())
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

/// The tests' cache policy: positive answers for a minute, negative ones for five seconds.
pub const TEST_POLICY: CachePolicy = CachePolicy {
    positive_ttl_ms: 60_000,
    negative_ttl_ms: 5_000,
};

/// `inner` behind a cache on `store` with [`TEST_POLICY`].
pub fn cached_on<R: Resolver>(inner: R, store: &CacheStore, clock: &ManualClock) -> Cached<R> {
    cached_with(inner, store, clock, TEST_POLICY)
}

/// `inner` behind a cache on `store` with `policy`.
pub fn cached_with<R: Resolver>(
    inner: R,
    store: &CacheStore,
    clock: &ManualClock,
    policy: CachePolicy,
) -> Cached<R> {
    Cached::new(inner, store.clone(), Arc::new(clock.clone()), policy)
}

/// Resolves `user` once at [`NOW`] with a fresh resolver over `origins`.
pub async fn resolve_once(origins: &[&Origin], user: &UserId) -> ResolveResult {
    let clock = ManualClock::new(NOW);
    resolver(origins, &clock).resolve_user(user).await
}

/// `@alice:a.test` and her account (seed 7, on a.test), served nowhere yet.
pub fn alice_account() -> (UserId, Account) {
    let alice = user("@alice:a.test");
    let acct = Account::new(7, &alice, &["a.test"]);
    (alice, acct)
}

/// `@alice:a.test`'s account, moved to `servers`; `a` hosts it as of the move.
pub fn alice_moved(a: &Origin, servers: &[&str]) -> (UserId, Account) {
    let (alice, mut acct) = alice_account();
    acct.append(Action::Move {
        servers: servers.iter().map(|s| name(s)).collect(),
    });
    a.host(&alice, &acct);
    (alice, acct)
}

/// A signing key nobody published: anyone can mint a self-signed key document with it.
pub fn forger(seed: u8) -> ServerSigningKey {
    ServerSigningKey {
        key_id: KeyId::ed25519("a_1").unwrap(),
        key: SigningKey::from_bytes(&[seed; 32]),
    }
}

/// What a forger can mint "for" `server`: a key document and an attestation binding `user`
/// to `acct` from `issued_at` to a day after [`NOW`], both signed with `key`.
pub fn minted(
    server: &str,
    key: &ServerSigningKey,
    user: &UserId,
    acct: &Account,
    issued_at: Millis,
) -> (Value, Value) {
    let doc = server_keys::build(&name(server), key, &Default::default(), NOW + DAY).unwrap();
    let att = Attestation {
        server_name: name(server),
        user_id: Some(user.clone()),
        did: acct.did(),
        head: acct.head(),
        hosting: true,
        issued_at,
        valid_until: NOW + DAY,
    }
    .sign(key)
    .unwrap();
    (doc, att)
}

/// A LAN peer that re-binds `user` to another account (seed 50) with a key document it
/// minted for `server`: the bundle verifies on its own, but not against `server`'s real keys.
pub async fn minted_key_peer(user: &UserId, server: &str) -> Url {
    let mallory = Account::new(50, user, &[server]);
    let (doc, att) = minted(server, &forger(98), user, &mallory, NOW);
    let forged = Bundle {
        did: mallory.did(),
        log: mallory.values(),
        attestations: vec![att],
        server_keys: vec![doc],
        fetched_at: NOW,
        source: "peer".into(),
    }
    .to_value();
    serve_user_bundle(forged).await
}

/// A peer that answers every `/_roam/v1/users/{id}` with `bundle`.
pub async fn serve_user_bundle(bundle: Value) -> Url {
    serve_router(Router::new().route(
        "/_roam/v1/users/{id}",
        get(move || {
            let b = bundle.clone();
            async move { axum::Json(b).into_response() }
        }),
    ))
    .await
}

/// `r` (about `@alice:a.test`) says in words that a.test could not confirm it and when the
/// binding was last confirmed.
pub fn assert_alice_unconfirmed_since(r: &Resolution, confirmed_at: Millis) {
    let want = format!(
        "this user claims to be @alice:a.test; a.test cannot be reached to confirm; what is \
         certain is that they hold key {}, as last confirmed at {}",
        r.update_key_multikey(),
        rfc3339(confirmed_at)
    );
    assert!(r.explanation().starts_with(&want), "{}", r.explanation());
}

/// `answer` is `unbound`, for a reason that mentions `why`.
pub fn assert_unbound(answer: ResolveResult, why: &str) {
    let err = answer.unwrap_err();
    assert!(
        matches!(&err, ResolveError::Unbound { reason, .. } if reason.contains(why)),
        "{err:?}"
    );
}

/// The head of the answer `store` holds for `user`.
pub async fn stored_head(store: &CacheStore, user: &UserId) -> OpHash {
    store
        .resolution_for_user(user)
        .await
        .unwrap()
        .expect("an answer is stored")
        .head
}

/// The benchmarks' cache policy: answers stay `cached` for the whole run.
pub const KEEP_FOREVER: CachePolicy = CachePolicy {
    positive_ttl_ms: u64::MAX / 4,
    negative_ttl_ms: 1000,
};

/// The benchmarks' scene: `@alice:a.test` moved to b.test; a.test answers as of the move and
/// b.test holds a newer op, so a cold resolve asks both.
pub async fn two_servers_with_moved_alice() -> (Origin, Origin, UserId) {
    let a = Origin::start("a.test", 1).await;
    let b = Origin::start("b.test", 2).await;
    let (alice, mut acct) = alice_account();
    acct.append(device("PHONE", 3));
    acct.append(Action::Move {
        servers: vec![name("b.test"), name("a.test")],
    });
    a.host(&alice, &acct);
    acct.append(device("LAPTOP", 4));
    b.publish_log(&acct.did(), acct.values());
    (a, b, alice)
}
