//! Portable accounts across real homeservers on loopback (issue: /_roam/v1, attestations,
//! key login, migration and roaming). Three servers, `a.test`, `b.test`, `c.test` (and a
//! hostile `evil.test`), reach each other through `federation_overrides`; every request is
//! real HTTP, every store a real redb file in a temporary directory.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::{Signer, SigningKey};
use roam_identity_core::log::{Action, Operation, SignedOp, next_op};
use roam_identity_core::login::login_message;
use roam_identity_core::{DeviceId, KeyCommitment, ServerName, UserId, b64};
use roam_resolver::{NetworkResolver, Resolver, ResolverConfig, SystemClock};
use roam_server::config::ServerConfig;
use roam_server::portable::federation::HttpFederation;
use roam_server::{AppState, RateLimits};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

mod common;
use common::{
    Backend, Owner, add_device, assert_err, enc, migration_step, move_to, now, verify_bundle,
};

/// A homeserver of the test federation.
struct Node {
    name: ServerName,
    base: String,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<std::io::Result<()>>>,
    dir: Option<tempfile::TempDir>,
    backend: Backend,
}

impl Node {
    async fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            h.await.unwrap().unwrap();
        }
    }
}

/// Starts one server per name, all knowing each other's addresses, on the tests' store
/// ([`Backend::from_env`]).
async fn federation(names: &[&str]) -> Vec<Node> {
    federation_on(names, |_| Backend::from_env()).await
}

/// Starts one server per name on the store `backend` picks for it.
async fn federation_on(names: &[&str], backend: impl Fn(&str) -> Backend) -> Vec<Node> {
    let mut listeners = Vec::new();
    let mut overrides = BTreeMap::new();
    for n in names {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        overrides.insert(
            ServerName::parse(n).unwrap(),
            url::Url::parse(&format!("http://{addr}")).unwrap(),
        );
        listeners.push((n.to_string(), l));
    }
    let mut nodes = Vec::new();
    for (name, listener) in listeners {
        let backend = backend(&name);
        nodes.push(start_node(&name, listener, backend, &overrides).await);
    }
    nodes
}

/// Starts one server named `name` on `listener` and `backend`.
async fn start_node(
    name: &str,
    listener: tokio::net::TcpListener,
    backend: Backend,
    overrides: &BTreeMap<ServerName, url::Url>,
) -> Node {
    let addr = listener.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sn = ServerName::parse(name).unwrap();
    let mut config = ServerConfig::for_server_name(sn.clone(), addr, dir.path().to_owned());
    config.rate_limits = RateLimits::unlimited();
    config.federation_overrides = overrides.clone();
    let fed = HttpFederation::new(&config).unwrap();
    let store = backend.open(dir.path()).await;
    let state = AppState::with_federation(config, store, Arc::new(fed)).unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let handle = tokio::spawn(roam_server::run(listener, state, async move {
        let _ = rx.await;
    }));
    Node {
        name: sn,
        base: format!("http://{addr}"),
        shutdown: Some(tx),
        handle: Some(handle),
        dir: Some(dir),
        backend,
    }
}

/// Two nodes of one homeserver (`a.test`) on one PostgreSQL database, as behind a load
/// balancer.
async fn two_nodes_one_database() -> Vec<Node> {
    let backend = Backend::postgres();
    let mut nodes = Vec::new();
    for _ in 0..2 {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        nodes.push(start_node("a.test", l, backend.clone(), &BTreeMap::new()).await);
    }
    nodes
}

async fn call(
    method: reqwest::Method,
    url: String,
    body: Option<Value>,
    token: Option<&str>,
) -> (u16, Value) {
    common::request(&reqwest::Client::new(), method, &url, body.as_ref(), token).await
}

async fn get(node: &Node, path: &str) -> (u16, Value) {
    call(
        reqwest::Method::GET,
        format!("{}{path}", node.base),
        None,
        None,
    )
    .await
}

async fn post(node: &Node, path: &str, body: Value) -> (u16, Value) {
    call(
        reqwest::Method::POST,
        format!("{}{path}", node.base),
        Some(body),
        None,
    )
    .await
}

async fn register(node: &Node, owner: &Owner, localpart: &str) -> (u16, Value) {
    post(
        node,
        "/_matrix/client/v3/register",
        json!({
            "username": localpart,
            "auth": {"type": "m.login.dummy"},
            "org.roam.genesis": owner.ops[0].value,
            "inhibit_login": true,
        }),
    )
    .await
}

/// Registers a password account in one request (dummy auth); returns its access token.
async fn register_with_password(node: &Node, username: &str, password: &str) -> String {
    let (s, r) = post(
        node,
        "/_matrix/client/v3/register",
        json!({"username": username, "password": password, "auth": {"type": "m.login.dummy"}}),
    )
    .await;
    assert_eq!(s, 200, "{r}");
    r["access_token"].as_str().unwrap().to_owned()
}

async fn key_login(node: &Node, user: &str, key: &SigningKey) -> (u16, Value) {
    let (s, c) = post(node, "/_roam/v1/login/challenge", json!({"user_id": user})).await;
    assert_eq!(s, 200, "{c}");
    let challenge = c["challenge"].as_str().unwrap();
    let msg = login_message(challenge, &node.name, &UserId::parse(user).unwrap());
    let sig = b64::encode(&key.sign(&msg).to_bytes());
    post(
        node,
        "/_matrix/client/v3/login",
        json!({
            "type": "m.login.roam.key",
            "identifier": {"type": "m.id.user", "user": user},
            "challenge": challenge,
            "signature": sig,
        }),
    )
    .await
}

async fn push(node: &Node, did: &str, ops: Vec<Value>) -> (u16, Value) {
    post(
        node,
        &format!("/_roam/v1/accounts/{did}/ops"),
        json!({ "ops": ops }),
    )
    .await
}

async fn head(node: &Node, did: &str) -> Option<String> {
    let (s, b) = get(node, &format!("/_roam/v1/accounts/{did}")).await;
    if s != 200 {
        return None;
    }
    let log: Vec<Value> = b["log"].as_array().unwrap().clone();
    let v = roam_identity_core::log::verify_values(&log, None, now()).unwrap();
    Some(v.state.head.to_string())
}

/// Waits for background forwarding to reach `node`.
async fn wait_for_head(node: &Node, did: &str, want: &str) {
    for _ in 0..100 {
        if head(node, did).await.as_deref() == Some(want) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "{} never reached head {want} (has {:?})",
        node.name,
        head(node, did).await
    );
}

fn resolver(nodes: &[&Node]) -> NetworkResolver {
    let mut config = ResolverConfig::default();
    for n in nodes {
        config
            .overrides
            .insert(n.name.clone(), url::Url::parse(&n.base).unwrap());
    }
    NetworkResolver::new(config, Arc::new(SystemClock)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_login_device_and_bundle() {
    create_login_device_and_bundle_on(federation(&["a.test"]).await).await;
}

/// The portable log commit path (register with a log, key login, devices signed into the
/// log, bundles) on a PostgreSQL store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_login_device_and_bundle_on_postgres() {
    let nodes = federation_on(&["a.test"], |_| Backend::postgres()).await;
    create_login_device_and_bundle_on(nodes).await;
}

async fn create_login_device_and_bundle_on(nodes: Vec<Node>) {
    let a = &nodes[0];
    let mut alice = Owner::new(1, "@alice:a.test", &["a.test"]);
    let did = alice.did();

    let (s, b) = register(a, &alice, "alice").await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["org.roam.did"], did.as_str());
    // The same DID cannot register twice.
    let (s, b) = register(a, &alice, "alice2").await;
    assert_eq!(s, 400, "{b}");

    // Key login, then sign the new device into the log.
    let (s, login) = key_login(a, "@alice:a.test", &alice.update).await;
    assert_eq!(s, 200, "{login}");
    let device = login["device_id"].as_str().unwrap().to_owned();
    let op = alice.sign(add_device(&device, 42));
    let (s, r) = push(a, &did, vec![op.clone()]).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["accepted"].as_array().unwrap().len(), 1);
    // Idempotent.
    let (s, r) = push(a, &did, vec![op]).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["known"].as_array().unwrap().len(), 1);

    // The bundle verifies offline and binds the user ID both ways.
    let (s, bundle) = get(a, &format!("/_roam/v1/users/{}", enc("@alice:a.test"))).await;
    assert_eq!(s, 200, "{bundle}");
    let vb = verify_bundle(&bundle);
    assert_eq!(
        vb.bound_user_ids(now()),
        vec![UserId::parse("@alice:a.test").unwrap()]
    );
    assert!(
        vb.log
            .state
            .devices
            .contains_key(&DeviceId::parse(&device).unwrap())
    );

    // A resolver sees the device.
    let r = resolver(&[a])
        .resolve_user(&UserId::parse("@alice:a.test").unwrap())
        .await
        .unwrap();
    assert_eq!(r.did.to_string(), did);
    assert!(r.devices.contains_key(&DeviceId::parse(&device).unwrap()));

    // W3C DID Resolution, in both representations, and its errors.
    let (s, res) = get(a, &format!("/1.0/identifiers/{did}")).await;
    assert_eq!(s, 200, "{res}");
    assert_eq!(res["didDocument"]["id"], did.as_str());
    assert_eq!(
        res["didDocument"]["alsoKnownAs"],
        json!(["matrix:u/alice:a.test"])
    );
    assert_eq!(res["didDocument"]["service"][0]["type"], "MatrixHomeserver");
    assert_eq!(
        res["didDocumentMetadata"]["versionId"],
        alice.state().head.to_string().as_str()
    );
    let resp = reqwest::Client::new()
        .get(format!("{}/1.0/identifiers/{did}", a.base))
        .header("accept", "application/did+ld+json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "application/did+ld+json");
    let doc: Value = resp.json().await.unwrap();
    assert_eq!(doc["id"], did.as_str());
    assert_eq!(get(a, "/1.0/identifiers/did:key:z6Mk").await.0, 400);
    assert_eq!(get(a, "/1.0/identifiers/did:web:example.com").await.0, 501);
    let stranger = Owner::new(77, "@x:a.test", &["a.test"]);
    let (s, e) = get(a, &format!("/1.0/identifiers/{}", stranger.did())).await;
    assert_eq!(s, 404, "{e}");

    // A replayed login signature is refused; so is another key.
    let (s, c) = post(
        a,
        "/_roam/v1/login/challenge",
        json!({"user_id": "@alice:a.test"}),
    )
    .await;
    assert_eq!(s, 200);
    let ch = c["challenge"].as_str().unwrap();
    let msg = login_message(ch, &a.name, &UserId::parse("@alice:a.test").unwrap());
    let body = json!({"type": "m.login.roam.key", "identifier": {"type": "m.id.user", "user": "@alice:a.test"},
        "challenge": ch, "signature": b64::encode(&alice.update.sign(&msg).to_bytes())});
    assert_eq!(
        post(a, "/_matrix/client/v3/login", body.clone()).await.0,
        200
    );
    let (s, e) = post(a, "/_matrix/client/v3/login", body).await;
    assert_eq!(
        (s, e["errcode"].as_str()),
        (403, Some("M_FORBIDDEN")),
        "{e}"
    );
    let (s, e) = key_login(a, "@alice:a.test", &SigningKey::from_bytes(&[9; 32])).await;
    assert_eq!(
        (s, e["errcode"].as_str()),
        (403, Some("M_FORBIDDEN")),
        "{e}"
    );

    // Deleting a device with key UIA.
    let token = login["access_token"].as_str().unwrap();
    let url = format!("{}/_matrix/client/v3/delete_devices", a.base);
    let (s, uia) = call(
        reqwest::Method::POST,
        url.clone(),
        Some(json!({"devices": [device]})),
        Some(token),
    )
    .await;
    assert_eq!(s, 401, "{uia}");
    assert!(
        uia["flows"].to_string().contains("m.login.roam.key"),
        "{uia}"
    );
    let (_, c) = post(
        a,
        "/_roam/v1/login/challenge",
        json!({"user_id": "@alice:a.test"}),
    )
    .await;
    let ch = c["challenge"].as_str().unwrap();
    let msg = login_message(ch, &a.name, &UserId::parse("@alice:a.test").unwrap());
    let auth = json!({"type": "m.login.roam.key", "session": uia["session"], "challenge": ch,
        "signature": b64::encode(&alice.update.sign(&msg).to_bytes())});
    let (s, r) = call(
        reqwest::Method::POST,
        url,
        Some(json!({"devices": [device], "auth": auth})),
        Some(token),
    )
    .await;
    assert_eq!(s, 200, "{r}");

    // Prometheus metrics count what happened, labelled by route template (no user data).
    let text = reqwest::get(format!("{}/metrics", a.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("roam_account_ops_accepted_total 1"), "{text}");
    assert!(text.contains("roam_key_proofs_total 3"), "{text}");
    assert!(
        text.contains("route=\"/_roam/v1/accounts/{did}/ops\""),
        "{text}"
    );
    assert!(!text.contains("alice"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_documented_errcodes() {
    let nodes = federation(&["a.test"]).await;
    let a = &nodes[0];
    let mut alice = Owner::new(2, "@alice:a.test", &["a.test"]);
    let did = alice.did();
    assert_eq!(register(a, &alice, "alice").await.0, 200);

    let (s, e) = get(a, "/_roam/v1/accounts/did:key:z6Mk").await;
    assert_eq!(
        (s, e["errcode"].as_str()),
        (400, Some("M_INVALID_PARAM")),
        "{e}"
    );
    let other = Owner::new(3, "@bob:a.test", &["a.test"]);
    let (s, e) = get(a, &format!("/_roam/v1/accounts/{}", other.did())).await;
    assert_eq!(
        (s, e["errcode"].as_str()),
        (404, Some("M_NOT_FOUND")),
        "{e}"
    );
    let (s, e) = get(a, &format!("/_roam/v1/users/{}", enc("@nobody:a.test"))).await;
    assert_eq!(
        (s, e["errcode"].as_str()),
        (404, Some("M_NOT_FOUND")),
        "{e}"
    );

    // A path segment that is not UTF-8 still gets a Matrix error (DID resolution: its own shape).
    let (s, e) = get(a, "/_roam/v1/users/%FF%FE").await;
    assert_eq!(
        (s, e["errcode"].as_str()),
        (400, Some("M_INVALID_PARAM")),
        "{e}"
    );
    let (s, e) = get(a, "/1.0/identifiers/%FF").await;
    assert_eq!(s, 400, "{e}");
    assert!(
        e["didResolutionMetadata"]["error"]["type"]
            .as_str()
            .unwrap()
            .ends_with("INVALID_DID"),
        "{e}"
    );

    // Not JSON, floats, duplicate keys.
    let url = format!("{}/_roam/v1/accounts/{did}/ops", a.base);
    let raw = |body: &str| {
        let url = url.clone();
        let body = body.to_owned();
        async move {
            let resp = reqwest::Client::new()
                .post(url)
                .body(body)
                .send()
                .await
                .unwrap();
            let s = resp.status().as_u16();
            (s, resp.json::<Value>().await.unwrap())
        }
    };
    let (s, e) = raw("{not json").await;
    assert_eq!((s, e["errcode"].as_str()), (400, Some("M_NOT_JSON")), "{e}");
    let (s, e) = raw(r#"{"ops": [{"seq": 1.5}]}"#).await;
    assert_eq!(
        (s, e["errcode"].as_str(), e["class"].as_str()),
        (400, Some("ROAM_INVALID_OP"), Some("float")),
        "{e}"
    );
    let (s, e) = raw(r#"{"ops": [], "ops": []}"#).await;
    assert_eq!(
        (s, e["class"].as_str()),
        (400, Some("duplicate_key")),
        "{e}"
    );

    // An op signed by a key that is not the update key (a server forging the user's moves).
    let forged = next_op(&alice.state(), now(), move_to(&["evil.test"]))
        .sign(&SigningKey::from_bytes(&[66; 32]));
    let (s, e) = push(a, &did, vec![forged.value]).await;
    assert_eq!(
        (s, e["errcode"].as_str(), e["class"].as_str()),
        (400, Some("ROAM_INVALID_OP"), Some("wrong_signer")),
        "{e}"
    );

    // Oversized body.
    let big = json!({"ops": [{"padding": "x".repeat(5 * 1024 * 1024)}]});
    let (s, e) = push(a, &did, big["ops"].as_array().unwrap().clone()).await;
    assert_eq!(
        (s, e["errcode"].as_str()),
        (413, Some("M_TOO_LARGE")),
        "{e}"
    );

    // Per-DID op rate limit: 10 fresh ops per hour.
    let mut last = (0, Value::Null);
    for i in 0..11 {
        let op = alice.sign(move_to(if i % 2 == 0 {
            &["a.test", "b.test"]
        } else {
            &["a.test"]
        }));
        last = push(a, &did, vec![op]).await;
        if i < 10 {
            assert_eq!(last.0, 200, "op {i}: {}", last.1);
        }
    }
    assert_eq!(
        (last.0, last.1["errcode"].as_str()),
        (429, Some("M_LIMIT_EXCEEDED")),
        "{}",
        last.1
    );
    assert!(last.1["retry_after_ms"].as_u64().unwrap() > 0);

    // Export: every op, resumable by cursor.
    let (s, text) = get(a, "/_roam/v1/export?limit=3").await;
    assert_eq!(s, 200);
    let lines: Vec<Value> = text
        .as_str()
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    let cursor = lines[2]["cursor"].as_str().unwrap();
    let (_, rest) = get(a, &format!("/_roam/v1/export?after={cursor}")).await;
    assert_eq!(
        rest.as_str().unwrap().lines().count(),
        11 - 3,
        "genesis + 10 ops in all"
    );
    let (s, e) = get(a, "/_roam/v1/export?after=x").await;
    assert_eq!((s, e["errcode"].as_str()), (400, Some("M_INVALID_PARAM")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_with_old_server_up_then_down() {
    migrate_with_old_server_up_then_down_on(federation(&["a.test", "b.test"]).await).await;
}

/// The same migration with both servers on PostgreSQL (one database each).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_with_old_server_up_then_down_on_postgres() {
    let nodes = federation_on(&["a.test", "b.test"], |_| Backend::postgres()).await;
    migrate_with_old_server_up_then_down_on(nodes).await;
}

async fn migrate_with_old_server_up_then_down_on(mut nodes: Vec<Node>) {
    let mut alice = Owner::new(10, "@alice:a.test", &["a.test"]);
    let did = alice.did();
    assert_eq!(register(&nodes[0], &alice, "alice").await.0, 200);
    assert_eq!(
        key_login(&nodes[0], "@alice:a.test", &alice.update).await.0,
        200
    );

    // A device signed into the log on A moves with the account (its record, not its token).
    alice.sign(add_device("PHONE", 43));

    // Migrate to B with A up: claim @alice:b.test, move [b, a] (A kept as backup).
    alice.sign(Action::Claim {
        user_id: UserId::parse("@alice:b.test").unwrap(),
    });
    alice.sign(move_to(&["b.test"]));
    let req = json!({"did": did, "log": alice.values(), "from": "a.test", "localpart": "alice"});
    let (s, m) = post(&nodes[1], "/_roam/v1/migrate", req.clone()).await;
    assert_eq!(s, 200, "{m}");
    assert_eq!(m["state"], "complete", "{m}");
    assert!(m["steps"].to_string().contains("\"forward\""), "{m}");
    let forward = migration_step(&m, "forward");
    assert_eq!(forward["state"], "done", "{m}");
    // Repeating is safe and returns the same migration; status by ID too.
    let (s, m2) = post(&nodes[1], "/_roam/v1/migrate", req).await;
    assert_eq!((s, &m2["id"]), (200, &m["id"]));
    // Repeating with a longer log adds the new ops.
    alice.sign(Action::Claim {
        user_id: UserId::parse("@alice2:b.test").unwrap(),
    });
    let longer = json!({"did": did, "log": alice.values(), "from": "a.test", "localpart": "alice"});
    let (s, m3) = post(&nodes[1], "/_roam/v1/migrate", longer).await;
    assert_eq!((s, &m3["id"]), (200, &m["id"]), "{m3}");
    assert_eq!(
        head(&nodes[1], &did).await.unwrap(),
        alice.state().head.to_string()
    );
    let (s, st) = get(
        &nodes[1],
        &format!("/_roam/v1/migrate/{}", m["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!((s, &st["state"]), (200, &json!("complete")));

    // A got the move: it answers for @alice:a.test with a bundle that points to B, and
    // refuses logins with ROAM_MOVED.
    let head_b = head(&nodes[1], &did).await.unwrap();
    wait_for_head(&nodes[0], &did, &head_b).await;
    let (s, bundle) = get(
        &nodes[0],
        &format!("/_roam/v1/users/{}", enc("@alice:a.test")),
    )
    .await;
    assert_eq!(s, 200);
    let vb = verify_bundle(&bundle);
    assert_eq!(
        vb.log.state.servers,
        vec![ServerName::parse("b.test").unwrap()]
    );
    let (s, e) = key_login(&nodes[0], "@alice:a.test", &alice.update).await;
    assert_eq!((s, e["errcode"].as_str()), (403, Some("ROAM_MOVED")), "{e}");
    assert_eq!(e["servers"], json!(["b.test"]));
    // B takes key logins for the new user ID, and lists the device that moved.
    let (s, l) = key_login(&nodes[1], "@alice:b.test", &alice.update).await;
    assert_eq!(s, 200, "{l}");
    let (s, devs) = call(
        reqwest::Method::GET,
        format!("{}/_matrix/client/v3/devices", nodes[1].base),
        None,
        l["access_token"].as_str(),
    )
    .await;
    assert_eq!(s, 200, "{devs}");
    assert!(devs["devices"].to_string().contains("\"PHONE\""), "{devs}");

    // A resolver following @alice:a.test ends at B, verified.
    let r = resolver(&[&nodes[0], &nodes[1]])
        .resolve_user(&UserId::parse("@alice:b.test").unwrap())
        .await
        .unwrap();
    assert_eq!(r.servers, vec![ServerName::parse("b.test").unwrap()]);

    // Without the log in the request, B fetches it from A (A holds the signed move).
    let mut dan = Owner::new(12, "@dan:a.test", &["a.test"]);
    let dan_did = dan.did();
    assert_eq!(register(&nodes[0], &dan, "dan").await.0, 200);
    dan.sign(Action::Claim {
        user_id: UserId::parse("@dan:b.test").unwrap(),
    });
    let mv = dan.sign(move_to(&["b.test", "a.test"]));
    let claim = dan.ops[1].value.clone();
    let (s, r) = push(&nodes[0], &dan_did, vec![claim, mv]).await;
    assert_eq!(s, 200, "{r}");
    let (s, m) = post(
        &nodes[1],
        "/_roam/v1/migrate",
        json!({"did": dan_did, "from": "a.test", "localpart": "dan"}),
    )
    .await;
    assert_eq!((s, &m["state"]), (200, &json!("complete")), "{m}");
    assert_eq!(
        head(&nodes[1], &dan_did).await.unwrap(),
        dan.state().head.to_string()
    );
    assert_eq!(
        key_login(&nodes[1], "@dan:b.test", &dan.update).await.0,
        200
    );

    // Now a second account migrates while A is down.
    let mut bob = Owner::new(11, "@bob:a.test", &["a.test"]);
    let bob_did = bob.did();
    assert_eq!(register(&nodes[0], &bob, "bob").await.0, 200);
    nodes[0].stop().await;
    bob.sign(Action::Claim {
        user_id: UserId::parse("@bob:b.test").unwrap(),
    });
    bob.sign(move_to(&["b.test", "a.test"]));
    // Without the log, B must fetch it from A, which is down: a clear error.
    let (s, e) = post(
        &nodes[1],
        "/_roam/v1/migrate",
        json!({"did": bob_did, "from": "a.test", "localpart": "bob"}),
    )
    .await;
    assert_eq!(
        (s, e["errcode"].as_str()),
        (502, Some("ROAM_UNREACHABLE")),
        "{e}"
    );
    // With the log, it completes; forwarding to A is recorded as failed, not fatal.
    let (s, m) = post(
        &nodes[1],
        "/_roam/v1/migrate",
        json!({"did": bob_did, "log": bob.values(), "from": "a.test", "localpart": "bob"}),
    )
    .await;
    assert_eq!(s, 200, "{m}");
    assert_eq!(m["state"], "complete");
    let forward = migration_step(&m, "forward");
    assert_eq!(forward["state"], "failed", "{m}");
    assert_eq!(
        key_login(&nodes[1], "@bob:b.test", &bob.update).await.0,
        200
    );
    // A user ID the log does not claim is refused.
    let answer = post(
        &nodes[1],
        "/_roam/v1/migrate",
        json!({"did": bob_did, "log": bob.values(), "localpart": "robert"}),
    )
    .await;
    assert_err(&answer, 403, "M_FORBIDDEN");
    // Deactivation: the DID resolves as deactivated (410) and logins stop.
    let deact = bob.sign(Action::Deactivate);
    assert_eq!(push(&nodes[1], &bob_did, vec![deact]).await.0, 200);
    let (s, res) = get(&nodes[1], &format!("/1.0/identifiers/{bob_did}")).await;
    assert_eq!(
        (s, &res["didDocumentMetadata"]["deactivated"]),
        (410, &json!(true)),
        "{res}"
    );
    let (s, e) = key_login(&nodes[1], "@bob:b.test", &bob.update).await;
    assert_eq!(
        (s, e["errcode"].as_str()),
        (403, Some("ROAM_DEACTIVATED")),
        "{e}"
    );
    nodes[1].stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roaming_hostile_servers_recovery_and_equivocation() {
    let mut nodes = federation(&["a.test", "b.test", "c.test"]).await;
    let mut alice = Owner::new(20, "@alice:b.test", &["b.test"]);
    let did = alice.did();
    assert_eq!(register(&nodes[1], &alice, "alice").await.0, 200);

    // Roaming: B primary, C backup. B forwards the log to C, which then attests hosting.
    let mv = alice.sign(move_to(&["b.test", "c.test"]));
    let (s, r) = push(&nodes[1], &did, vec![mv]).await;
    assert_eq!(s, 200, "{r}");
    let hb = head(&nodes[1], &did).await.unwrap();
    wait_for_head(&nodes[2], &did, &hb).await;
    let (_, bundle_c) = get(&nodes[2], &format!("/_roam/v1/accounts/{did}")).await;
    let vb = verify_bundle(&bundle_c);
    assert!(matches!(
        vb.hosting(&ServerName::parse("c.test").unwrap(), now()),
        roam_identity_core::bundle::Attested::Current { .. }
    ));

    // B stops; the backup accepts ops and serves bundles like the primary.
    nodes[1].stop().await;
    let claim = alice.sign(Action::Claim {
        user_id: UserId::parse("@alice:c.test").unwrap(),
    });
    let (s, r) = push(&nodes[2], &did, vec![claim]).await;
    assert_eq!(s, 200, "{r}");
    // A server that does not hold the log resolves the DID through the others.
    let (s, res) = get(&nodes[0], &format!("/1.0/identifiers/{did}")).await;
    assert_eq!(s, 200, "{res}");
    assert_eq!(
        res["didDocumentMetadata"]["versionId"],
        alice.state().head.to_string().as_str()
    );
    let r = resolver(&[&nodes[0], &nodes[1], &nodes[2]])
        .resolve_did_via(
            &alice.ops[0].op.did,
            &[
                ServerName::parse("b.test").unwrap(),
                ServerName::parse("c.test").unwrap(),
            ],
        )
        .await
        .unwrap();
    assert_eq!(r.head, alice.state().head, "resolved through the backup");

    // A hostile server cannot move or claim the DID without the user's key: every honest
    // server refuses its ops.
    let evil = SigningKey::from_bytes(&[99; 32]);
    let forged_move = next_op(&alice.state(), now(), move_to(&["evil.test"])).sign(&evil);
    let forged_claim = next_op(
        &alice.state(),
        now(),
        Action::Claim {
            user_id: UserId::parse("@mallory:c.test").unwrap(),
        },
    )
    .sign(&evil);
    for n in [&nodes[0], &nodes[2]] {
        for op in [&forged_move, &forged_claim] {
            let (s, e) = push(n, &did, vec![op.value.clone()]).await;
            assert!(s == 400 || s == 404, "{}: {s} {e}", n.name);
        }
    }
    let (s, e) = push(&nodes[2], &did, vec![forged_move.value.clone()]).await;
    assert_eq!((s, e["class"].as_str()), (400, Some("wrong_signer")), "{e}");

    // A fork outside the rules (two ops on one prev, same epoch) is refused as equivocation
    // with both ops, and kept as evidence.
    let st = alice.state();
    let x = next_op(&st, now(), move_to(&["c.test"])).sign(&alice.update);
    let y = next_op(&st, now(), move_to(&["c.test", "a.test"])).sign(&alice.update);
    assert_eq!(push(&nodes[2], &did, vec![x.value.clone()]).await.0, 200);
    let (s, e) = push(&nodes[2], &did, vec![y.value.clone()]).await;
    assert_eq!((s, e["errcode"].as_str()), (409, Some("ROAM_FORK")), "{e}");
    let ev: Vec<String> = e["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| SignedOp::from_value(v.clone()).unwrap().hash.to_string())
        .collect();
    assert!(
        ev.contains(&x.hash.to_string()) && ev.contains(&y.hash.to_string()),
        "{e}"
    );
    let (_, forks) = get(&nodes[2], &format!("/_roam/v1/accounts/{did}/forks")).await;
    assert!(!forks["evidence"].as_array().unwrap().is_empty(), "{forks}");
    alice.ops.push(x);

    // Compromise: the thief holds the update key and moves the account to evil.test on C.
    let before_theft = alice.ops.len() - 1;
    let theft = next_op(&alice.state(), now(), move_to(&["evil.test"])).sign(&alice.update);
    assert_eq!(
        push(&nodes[2], &did, vec![theft.value.clone()]).await.0,
        200
    );
    // B comes back (same store) and gets the thief's op too.
    let restarted = restart(&mut nodes[1]).await;
    nodes[1] = restarted;
    // The owner recovers with the committed key: a rotate forking from before the theft.
    let base_state = roam_identity_core::log::verify_log(&alice.ops[..=before_theft], None, now())
        .unwrap()
        .state;
    let third = SigningKey::from_bytes(&[21; 32]);
    let rotate = Operation {
        did: base_state.did.clone(),
        seq: base_state.seq + 1,
        prev: Some(base_state.head),
        created_at: now(),
        action: Action::Rotate {
            update_key: alice.next.verifying_key(),
            next_key: KeyCommitment::to_key(&third.verifying_key()),
        },
    }
    .sign(&alice.next);
    let all: Vec<Value> = alice
        .values()
        .into_iter()
        .chain([rotate.value.clone()])
        .collect();
    for n in [&nodes[0], &nodes[1], &nodes[2]] {
        let (s, r) = push(n, &did, all.clone()).await;
        assert!(s == 200 || s == 403, "{}: {s} {r}", n.name);
    }
    // Every server that holds the log ends on the owner's branch.
    let want = rotate.hash.to_string();
    wait_for_head(&nodes[2], &did, &want).await;
    wait_for_head(&nodes[1], &did, &want).await;
    let (_, bundle) = get(&nodes[2], &format!("/_roam/v1/accounts/{did}")).await;
    let vb = verify_bundle(&bundle);
    assert!(
        vb.log.superseded.iter().any(|o| o.hash == theft.hash),
        "theft superseded"
    );
    assert_eq!(vb.log.state.update_key, alice.next.verifying_key());
    for n in nodes.iter_mut() {
        n.stop().await;
    }
}

/// Restarts a stopped node on a fresh port with the same store. Other nodes keep their old
/// override for it, so this is only for a node that others need not reach afterwards.
async fn restart(old: &mut Node) -> Node {
    let dir = old.dir.take().unwrap();
    let path: PathBuf = dir.path().to_owned();
    let addr: std::net::SocketAddr = old.base.trim_start_matches("http://").parse().unwrap();
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let mut config = ServerConfig::for_server_name(old.name.clone(), addr, path.clone());
    config.rate_limits = RateLimits::unlimited();
    let fed = HttpFederation::new(&config).unwrap();
    let store = old.backend.open(&path).await;
    let state = AppState::with_federation(config, store, Arc::new(fed)).unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let handle = tokio::spawn(roam_server::run(listener, state, async move {
        let _ = rx.await;
    }));
    Node {
        name: old.name.clone(),
        base: old.base.clone(),
        shutdown: Some(tx),
        handle: Some(handle),
        dir: Some(dir),
        backend: old.backend.clone(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_account_adopts_a_did() {
    let nodes = federation(&["a.test"]).await;
    let a = &nodes[0];
    let token = register_with_password(a, "carol", "pw-carol-1").await;
    let adopt = |body: Value, token: Option<String>| {
        let url = format!("{}/_roam/v1/account/did", a.base);
        async move { call(reqwest::Method::POST, url, Some(body), token.as_deref()).await }
    };
    // Without a token: M_MISSING_TOKEN.
    let carol = Owner::new(30, "@carol:a.test", &["a.test"]);
    let answer = adopt(json!({"ops": carol.values()}), None).await;
    assert_err(&answer, 401, "M_MISSING_TOKEN");
    // A log that does not name this server is refused (it would lock the account out).
    let elsewhere = Owner::new(32, "@carol:a.test", &["other.test"]);
    let answer = adopt(json!({"ops": elsewhere.values()}), Some(token.clone())).await;
    assert_err(&answer, 403, "M_FORBIDDEN");
    // A log that does not claim the caller's user ID is refused.
    let other = Owner::new(31, "@dave:a.test", &["a.test"]);
    let answer = adopt(json!({"ops": other.values()}), Some(token.clone())).await;
    assert_err(&answer, 403, "M_FORBIDDEN");
    // The signed genesis claiming @carol:a.test binds the account to the DID.
    let (s, r) = adopt(json!({"ops": carol.values()}), Some(token.clone())).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["did"], carol.did().as_str());
    let (s, bundle) = get(a, &format!("/_roam/v1/users/{}", enc("@carol:a.test"))).await;
    assert_eq!(s, 200, "{bundle}");
    let vb = verify_bundle(&bundle);
    assert_eq!(
        vb.bound_user_ids(now()),
        vec![UserId::parse("@carol:a.test").unwrap()]
    );
    // Once is enough; the key now logs in too.
    let answer = adopt(json!({"ops": carol.values()}), Some(token)).await;
    assert_err(&answer, 400, "M_USER_IN_USE");
    assert_eq!(key_login(a, "@carol:a.test", &carol.update).await.0, 200);

    // A second account of the same server joins the DID: both stay attested.
    let token2 = register_with_password(a, "carola", "pw-carol-2").await;
    let mut carol = carol;
    carol.sign(Action::Claim {
        user_id: UserId::parse("@carola:a.test").unwrap(),
    });
    let (s, r) = adopt(json!({"ops": carol.values()}), Some(token2)).await;
    assert_eq!(s, 200, "{r}");
    let (_, bundle) = get(a, &format!("/_roam/v1/accounts/{}", carol.did())).await;
    let vb = verify_bundle(&bundle);
    assert_eq!(
        vb.bound_user_ids(now()),
        vec![
            UserId::parse("@carol:a.test").unwrap(),
            UserId::parse("@carola:a.test").unwrap()
        ]
    );
}

/// Consecutive requests of one client hit different nodes: UIA started on one is finished on
/// the other, a login challenge issued by one is redeemed on the other (once), tokens work
/// everywhere, and both nodes sign with the one server key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_uia_logins_and_keys() {
    let mut nodes = two_nodes_one_database().await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let (_, ka) = get(a, "/_matrix/key/v2/server").await;
    let (_, kb) = get(b, "/_matrix/key/v2/server").await;
    assert_eq!(ka["verify_keys"], kb["verify_keys"]);

    // UIA: the 401 (and its session) from node a, the stage answered on node b.
    let body = json!({"username": "bob", "password": "pw-bob"});
    let (s, r) = post(a, "/_matrix/client/v3/register", body.clone()).await;
    assert_eq!(s, 401, "{r}");
    let session = r["session"].as_str().unwrap().to_owned();
    let mut done = body.clone();
    done["auth"] = json!({"type": "m.login.dummy", "session": session});
    let (s, r) = post(b, "/_matrix/client/v3/register", done.clone()).await;
    assert_eq!(s, 200, "{r}");
    let token = r["access_token"].as_str().unwrap().to_owned();
    // The session is single-use on every node.
    done["username"] = json!("carl");
    let (s, r) = post(a, "/_matrix/client/v3/register", done).await;
    assert_err(&(s, r), 400, "M_UNKNOWN");
    let whoami = |node: &Node, token: String| {
        let url = format!("{}/_matrix/client/v3/account/whoami", node.base);
        async move { call(reqwest::Method::GET, url, None, Some(&token)).await }
    };
    let (s, r) = whoami(a, token.clone()).await;
    assert_eq!((s, r["user_id"].as_str()), (200, Some("@bob:a.test")));

    // Password login on b, the token used on a.
    let (s, r) = post(
        b,
        "/_matrix/client/v3/login",
        json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "bob"},
               "password": "pw-bob"}),
    )
    .await;
    assert_eq!(s, 200, "{r}");
    let (s, _) = whoami(a, r["access_token"].as_str().unwrap().to_owned()).await;
    assert_eq!(s, 200);

    // Key login: the challenge from a, the signed answer to b; a replay on a fails.
    let alice = Owner::new(1, "@alice:a.test", &["a.test"]);
    let (s, r) = register(a, &alice, "alice").await;
    assert_eq!(s, 200, "{r}");
    let (s, c) = post(
        a,
        "/_roam/v1/login/challenge",
        json!({"user_id": "@alice:a.test"}),
    )
    .await;
    assert_eq!(s, 200, "{c}");
    let challenge = c["challenge"].as_str().unwrap();
    let msg = login_message(challenge, &a.name, &UserId::parse("@alice:a.test").unwrap());
    let login = json!({
        "type": "m.login.roam.key",
        "identifier": {"type": "m.id.user", "user": "@alice:a.test"},
        "challenge": challenge,
        "signature": b64::encode(&alice.update.sign(&msg).to_bytes()),
    });
    let (s, r) = post(b, "/_matrix/client/v3/login", login.clone()).await;
    assert_eq!(s, 200, "{r}");
    let (s, r) = post(a, "/_matrix/client/v3/login", login).await;
    assert_err(&(s, r), 403, "M_FORBIDDEN");
    for n in nodes.iter_mut() {
        n.stop().await;
    }
}
