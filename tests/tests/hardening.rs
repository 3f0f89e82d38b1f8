//! Issue 10: no stranger can register, fill, crash or lock out a Roam server. Each test
//! drives one hole over real HTTP against a real redb store.

use ed25519_dalek::SigningKey;
use roam_identity_core::log::{SignedOp, genesis_op, next_op, verify_log};
use roam_identity_core::{KeyCommitment, ServerName, UserId, signed};
use roam_server::config::{OpLimits, RateLimit, RegistrationMode};
use roam_server::store::RegistrationToken;
use serde_json::{Value, json};

mod common;
use common::{C, Owner, SERVER_NAME, add_device, assert_err, now, start};

const MIGRATE: &str = "/_roam/v1/migrate";

fn migrate_body(owner: &Owner, localpart: &str) -> Value {
    json!({"did": owner.did(), "log": owner.values(), "localpart": localpart})
}

fn user(localpart: &str) -> String {
    format!("@{localpart}:{SERVER_NAME}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_refused_when_registration_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |c| c.registration = RegistrationMode::Closed).await;
    let alice = Owner::new(1, &user("alice"), &[SERVER_NAME]);
    let answer = server
        .client()
        .post(MIGRATE, migrate_body(&alice, "alice"))
        .await;
    assert_err(&answer, 403, "M_FORBIDDEN");
    let u = UserId::parse(&user("alice")).unwrap();
    assert!(server.state.store().account(&u).unwrap().is_none());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_needs_a_registration_token_in_token_mode() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |c| c.registration = RegistrationMode::Token).await;
    server
        .state
        .store()
        .create_registration_token(RegistrationToken {
            token: "letmein".into(),
            uses_allowed: Some(1),
            completed: 0,
            expiry_time: None,
            created_at: now(),
        })
        .unwrap();
    let client = server.client();
    let bob = Owner::new(2, &user("bob"), &[SERVER_NAME]);
    let answer = client.post(MIGRATE, migrate_body(&bob, "bob")).await;
    assert_err(&answer, 403, "M_FORBIDDEN");
    let mut body = migrate_body(&bob, "bob");
    body["registration_token"] = json!("wrong");
    assert_err(&client.post(MIGRATE, body).await, 403, "M_FORBIDDEN");
    let mut body = migrate_body(&bob, "bob");
    body["registration_token"] = json!("letmein");
    let (s, m) = client.post(MIGRATE, body).await;
    assert_eq!(s, 200, "{m}");
    // The token is used up: the next account is refused.
    let carl = Owner::new(3, &user("carl"), &[SERVER_NAME]);
    let mut body = migrate_body(&carl, "carl");
    body["registration_token"] = json!("letmein");
    assert_err(&client.post(MIGRATE, body).await, 403, "M_FORBIDDEN");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_refuses_numeric_localparts_and_is_rate_limited() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |c| {
        c.rate_limits.register_per_ip = RateLimit {
            per_second: 0.001,
            burst: 2,
        }
    })
    .await;
    let client = server.client();
    let digits = Owner::new(4, &user("12345"), &[SERVER_NAME]);
    let answer = client.post(MIGRATE, migrate_body(&digits, "12345")).await;
    assert_err(&answer, 400, "M_INVALID_USERNAME");
    let ok = Owner::new(5, &user("erin"), &[SERVER_NAME]);
    let (s, m) = client.post(MIGRATE, migrate_body(&ok, "erin")).await;
    assert_eq!(s, 200, "{m}");
    let third = Owner::new(6, &user("fred"), &[SERVER_NAME]);
    let answer = client.post(MIGRATE, migrate_body(&third, "fred")).await;
    assert_err(&answer, 429, "M_LIMIT_EXCEEDED");
    server.stop().await;
}

/// Registration tokens are stored hashed: the store never holds the token itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_tokens_are_stored_hashed() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |c| c.registration = RegistrationMode::Token).await;
    let store = server.state.store().clone();
    store
        .create_registration_token(RegistrationToken {
            token: "s3cret-token".into(),
            uses_allowed: None,
            completed: 0,
            expiry_time: None,
            created_at: now(),
        })
        .unwrap();
    let listed = store.registration_tokens().unwrap();
    assert_eq!(listed.len(), 1);
    assert!(!listed[0].token.contains("s3cret"), "{:?}", listed[0]);
    assert!(store.registration_token("s3cret-token").unwrap().is_some());
    assert!(
        store
            .registration_token(&listed[0].token)
            .unwrap()
            .is_none()
    );
    let (s, v) = server
        .client()
        .get("/_matrix/client/v1/register/m.login.registration_token/validity?token=s3cret-token")
        .await;
    assert_eq!((s, &v["valid"]), (200, &json!(true)), "{v}");
    server.stop().await;
    let raw = common::stored_bytes(dir.path());
    assert!(
        !raw.windows(12).any(|w| w == b"s3cret-token"),
        "the token is in the database file"
    );
}

/// Concurrent adoptions of one account with different DIDs: exactly one binds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_adoptions_bind_one_did_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {}).await;
    let carol = server.client().register("carol", "pw-carol-1").await;
    let owners: Vec<Owner> = (0..8)
        .map(|i| Owner::new(40 + i, &user("carol"), &[SERVER_NAME]))
        .collect();
    let mut tasks = Vec::new();
    for o in &owners {
        let c = carol.clone();
        let body = json!({"ops": o.values()});
        tasks.push(tokio::spawn(async move {
            c.post("/_roam/v1/account/did", body).await
        }));
    }
    let mut won = Vec::new();
    for t in tasks {
        let (s, v) = t.await.unwrap();
        match s {
            200 => won.push(v["did"].as_str().unwrap().to_owned()),
            _ => assert_err(&(s, v), 400, "M_USER_IN_USE"),
        }
    }
    assert_eq!(won.len(), 1, "{won:?}");
    let (s, bundle) = server
        .client()
        .get(&format!("/_roam/v1/users/{}", common::enc(&user("carol"))))
        .await;
    assert_eq!(s, 200, "{bundle}");
    assert_eq!(bundle["did"], won[0].as_str(), "{bundle}");
    // No loser's log is held.
    let held = server.state.store().held_dids().unwrap();
    assert_eq!(held.len(), 1, "{held:?}");
    server.stop().await;
}

/// An op at seq 1 that forks `owner`'s log (its genesis followed by something else).
fn fork_of(owner: &Owner, i: u8) -> Value {
    let st = verify_log(&owner.ops[..1], None, now()).unwrap().state;
    next_op(&st, now(), add_device(&format!("FORK{i:03}"), i))
        .sign(&owner.update)
        .value
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fork_evidence_is_bounded_and_only_for_held_dids() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |c| {
        c.op_limits = OpLimits {
            per_hour: 1000,
            per_day: 1000,
        }
    })
    .await;
    let client = server.client();
    // A DID this server neither hosts nor holds: its forks are not stored.
    let stranger = Owner::new(60, "@x:elsewhere.test", &["elsewhere.test"]);
    let ops = json!({"ops": [stranger.values()[0].clone(), fork_of(&stranger, 1), fork_of(&stranger, 2)]});
    let (s, v) = client
        .post(&format!("/_roam/v1/accounts/{}/ops", stranger.did()), ops)
        .await;
    assert!(s >= 400, "{s} {v}");
    let (_, ev) = client
        .get(&format!("/_roam/v1/accounts/{}/forks", stranger.did()))
        .await;
    assert_eq!(ev["evidence"], json!([]), "{ev}");
    // A held DID: evidence is kept, but capped.
    let mut held = Owner::new(61, &user("hank"), &[SERVER_NAME]);
    held.sign(add_device("MAIN", 7));
    let path = format!("/_roam/v1/accounts/{}/ops", held.did());
    let (s, v) = client.post(&path, json!({"ops": held.values()})).await;
    assert_eq!(s, 200, "{v}");
    for i in 0..80u8 {
        let (s, v) = client
            .post(&path, json!({"ops": [fork_of(&held, i + 10)]}))
            .await;
        assert!(s >= 400, "{s} {v}");
    }
    let (_, ev) = client
        .get(&format!("/_roam/v1/accounts/{}/forks", held.did()))
        .await;
    let n = ev["evidence"].as_array().unwrap().len();
    assert!(n > 0 && n <= 64, "{n} evidence ops kept");
    server.stop().await;
}

/// A genesis and a log created days ago (every op backdated).
fn backdated_owner(seed: u8, days: u64) -> (SigningKey, Vec<SignedOp>) {
    let update = SigningKey::from_bytes(&[seed; 32]);
    let next = SigningKey::from_bytes(&[seed.wrapping_add(100); 32]);
    let t0 = now() - days * 86_400_000;
    let g = genesis_op(
        &update.verifying_key(),
        KeyCommitment::to_key(&next.verifying_key()),
        UserId::parse(&user(&format!("old{seed}"))).unwrap(),
        vec![ServerName::parse(SERVER_NAME).unwrap()],
        t0,
    )
    .unwrap()
    .sign(&update);
    let mut ops = vec![g];
    for i in 1..=6u64 {
        let st = verify_log(&ops, None, now()).unwrap().state;
        let op = next_op(
            &st,
            t0 + i * 1000,
            add_device(&format!("OLD{i}"), seed + i as u8),
        );
        ops.push(op.sign(&update));
    }
    (update, ops)
}

/// Backdated ops count against the per-DID limit by arrival, and the windows survive a
/// restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn op_limit_counts_arrivals_and_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let limits = |c: &mut roam_server::config::ServerConfig| {
        c.op_limits = OpLimits {
            per_hour: 3,
            per_day: 100,
        }
    };
    let server = start(dir.path(), limits).await;
    let (_, ops) = backdated_owner(70, 3);
    let did = ops[0].op.did.to_string();
    let path = format!("/_roam/v1/accounts/{did}/ops");
    let client = server.client();
    let (s, v) = client.post(&path, json!({"ops": [ops[0].value]})).await;
    assert_eq!(s, 200, "{v}");
    for op in &ops[1..4] {
        let (s, v) = client.post(&path, json!({"ops": [op.value]})).await;
        assert_eq!(s, 200, "{v}");
    }
    let answer = client.post(&path, json!({"ops": [ops[4].value]})).await;
    assert_err(&answer, 429, "M_LIMIT_EXCEEDED");
    server.stop().await;
    let server = start(dir.path(), limits).await;
    let answer = server
        .client()
        .post(&path, json!({"ops": [ops[4].value]}))
        .await;
    assert_err(&answer, 429, "M_LIMIT_EXCEEDED");
    server.stop().await;
}

/// A migration whose log cannot be fetched leaves no lasting record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_migrations_leave_no_record() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {}).await;
    let client = server.client();
    let ghost = Owner::new(80, &user("ghost"), &[SERVER_NAME]);
    for i in 0..5 {
        let body = json!({"did": ghost.did(), "from": "unreachable.test", "localpart": format!("ghost{i}")});
        let (s, _) = client.post(MIGRATE, body).await;
        assert!(s >= 400);
    }
    let store = server.state.store().clone();
    let d = roam_identity_core::Did::parse(&ghost.did()).unwrap();
    assert!(store.migration_of(&d).unwrap().is_none());
    let _ = C;
    server.stop().await;
}

/// Concurrent first uploads of cross-signing keys: one is the first upload, every other one
/// replaces keys and so needs UIA — none replaces them without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_cross_signing_uploads_need_uia_to_replace() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {}).await;
    let dana = server.client().register("dana", "pw-dana-1").await;
    let me = user("dana");
    let mut tasks = Vec::new();
    for i in 0..8u8 {
        let c = dana.clone();
        let key = SigningKey::from_bytes(&[90 + i; 32]);
        let body = json!({"master_key": common::cross_signing_key(&me, "master", &key)});
        tasks.push(tokio::spawn(async move {
            c.post(&format!("{C}/keys/device_signing/upload"), body)
                .await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        let (s, v) = t.await.unwrap();
        match s {
            200 => ok += 1,
            _ => assert_eq!(s, 401, "{v}"),
        }
    }
    assert_eq!(ok, 1, "only the first upload goes through without UIA");
    server.stop().await;
}

/// Dana's cross-signing keys (`master`, `self_signing`), the self-signing key signed by the
/// master key, as one `device_signing/upload` body.
fn cross_signing_body(me: &str, master: &SigningKey, ssk: &SigningKey) -> Value {
    let mut self_signing = common::cross_signing_key(me, "self_signing", ssk);
    signed::sign(&mut self_signing, me, &common::cs_key_id(master), master).unwrap();
    json!({"master_key": common::cross_signing_key(me, "master", master), "self_signing_key": self_signing})
}

/// Signature uploads racing a replacement of the cross-signing keys: an upload checked against
/// the old self-signing key must not land after the new master key cleared the old identity's
/// signatures. Uploaders send signatures by the old key in a loop while the replacement (UIA
/// with the password, so it is in flight for a while) commits; afterwards no signature by an
/// old key is on the device, in any round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signature_uploads_racing_a_key_replacement_leave_no_stale_signature() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |c| {
        c.rate_limits.write_per_ip = RateLimit {
            per_second: 1e6,
            burst: 1_000_000,
        }
    })
    .await;
    let anon = server.client();
    anon.register("dana", "pw-dana-1").await;
    let (dana, device) = anon.login("dana", "pw-dana-1", Some("DANAPHONE")).await;
    let me = user("dana");
    let device_key = SigningKey::from_bytes(&[77; 32]);
    let stored = common::device_keys(&me, &device, &device_key);
    let (s, v) = dana
        .post(
            &format!("{C}/keys/upload"),
            json!({"device_keys": stored.clone()}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let upload = format!("{C}/keys/device_signing/upload");
    let mut ssk = SigningKey::from_bytes(&[100; 32]);
    let first = cross_signing_body(&me, &SigningKey::from_bytes(&[101; 32]), &ssk);
    assert_eq!(dana.post(&upload, first).await.0, 200);
    for round in 0..10u8 {
        // The device's keys, signed by the current (soon old) self-signing key.
        let mut signed_device = stored.clone();
        signed::sign(&mut signed_device, &me, &common::cs_key_id(&ssk), &ssk).unwrap();
        let next_ssk = SigningKey::from_bytes(&[110 + round; 32]);
        let next_master = SigningKey::from_bytes(&[130 + round; 32]);
        let mut replace = cross_signing_body(&me, &next_master, &next_ssk);
        let (s, v) = dana.post(&upload, replace.clone()).await;
        assert_eq!(s, 401, "replacing keys needs UIA: {v}");
        replace["auth"] = json!({"type": "m.login.password", "session": v["session"],
            "identifier": {"type": "m.id.user", "user": "dana"}, "password": "pw-dana-1"});
        let done = Arc::new(AtomicBool::new(false));
        let mut uploaders = Vec::new();
        for _ in 0..4 {
            let (c, done) = (dana.clone(), done.clone());
            let body = json!({me.clone(): {device.clone(): signed_device.clone()}});
            uploaders.push(tokio::spawn(async move {
                // Until a little after the replacement committed.
                let mut after = 0;
                while after < 3 {
                    let (s, v) = c
                        .post(&format!("{C}/keys/signatures/upload"), body.clone())
                        .await;
                    assert!(s == 200 || s == 429, "{s} {v}");
                    if done.load(Ordering::SeqCst) {
                        after += 1;
                    }
                }
            }));
        }
        let (s, v) = dana.post(&upload, replace).await;
        assert_eq!(s, 200, "the replacement with UIA goes through: {v}");
        done.store(true, Ordering::SeqCst);
        for u in uploaders {
            u.await.unwrap();
        }
        let (s, q) = dana
            .post(
                &format!("{C}/keys/query"),
                json!({"device_keys": {me.clone(): []}}),
            )
            .await;
        assert_eq!(s, 200, "{q}");
        let sigs = q["device_keys"][&me][&device]["signatures"][&me]
            .as_object()
            .unwrap();
        let stale = common::cs_key_id(&ssk);
        assert!(
            !sigs.contains_key(stale.as_str()),
            "round {round}: a signature by the replaced self-signing key survived: {sigs:?}"
        );
        ssk = next_ssk;
    }
    server.stop().await;
}

/// Access tokens expire when configured; refresh tokens are single use and rotated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_tokens_expire_and_refresh_tokens_rotate() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |c| c.access_token_lifetime_ms = Some(1500)).await;
    let client = server.client();
    let register = format!("{C}/register");
    let body = json!({"username": "ivy", "password": "pw-ivy-1", "refresh_token": true});
    let (s, v) = client.post(&register, body.clone()).await;
    assert_eq!(s, 401, "{v}");
    let mut body = body;
    body["auth"] = json!({"type": "m.login.dummy", "session": v["session"]});
    let (s, v) = client.post(&register, body).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["expires_in_ms"], 1500, "{v}");
    let access = v["access_token"].as_str().unwrap().to_owned();
    let refresh = v["refresh_token"].as_str().unwrap().to_owned();
    let whoami = format!("{C}/account/whoami");
    assert_eq!(client.with_token(&access).get(&whoami).await.0, 200);
    tokio::time::sleep(std::time::Duration::from_millis(1600)).await;
    let (s, v) = client.with_token(&access).get(&whoami).await;
    assert_err(&(s, v.clone()), 401, "M_UNKNOWN_TOKEN");
    assert_eq!(v["soft_logout"], true, "{v}");
    // The refresh token gives a new pair; it cannot be used twice.
    let (s, v) = client
        .post(&format!("{C}/refresh"), json!({"refresh_token": refresh}))
        .await;
    assert_eq!(s, 200, "{v}");
    let access2 = v["access_token"].as_str().unwrap().to_owned();
    assert!(v["refresh_token"].is_string() && v["refresh_token"] != refresh.as_str());
    assert_eq!(client.with_token(&access2).get(&whoami).await.0, 200);
    let again = client
        .post(&format!("{C}/refresh"), json!({"refresh_token": refresh}))
        .await;
    assert_err(&again, 401, "M_UNKNOWN_TOKEN");
    // Login asks for one the same way.
    let login = json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "ivy"}, "password": "pw-ivy-1", "refresh_token": true});
    let (s, v) = client.post(&format!("{C}/login"), login).await;
    assert_eq!(s, 200, "{v}");
    assert!(v["refresh_token"].is_string(), "{v}");
    // Tokens are stored hashed: the database holds neither.
    server.stop().await;
    let raw = common::stored_bytes(dir.path());
    let tail = refresh.as_bytes();
    assert!(!raw.windows(tail.len()).any(|w| w == tail));
}

/// Server names the URL layer cannot reach are refused where they enter: a migration `from`
/// such a name, and a log that lists one, get clear 400s, never a panic or a 5xx.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_server_names_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {}).await;
    let client = server.client();
    let ghost = Owner::new(81, &user("ghost"), &[SERVER_NAME]);
    for from in ["x.1", "x.0x10", "A.example", "a.example."] {
        let body = json!({"did": ghost.did(), "from": from, "localpart": "ghost"});
        let answer = client.post(MIGRATE, body).await;
        assert_eq!(answer.0, 400, "from {from:?}: {}", answer.1);
        assert!(answer.1["errcode"].is_string(), "{}", answer.1);
    }
    // A genesis listing `x.1` as a server is not a valid op: refused as such.
    let mut genesis = ghost.values()[0].clone();
    genesis["servers"] = json!([SERVER_NAME, "x.1"]);
    let body = json!({"did": ghost.did(), "log": [genesis], "localpart": "ghost"});
    let (s, v) = client.post(MIGRATE, body).await;
    assert_eq!(s, 400, "{v}");
    server.stop().await;
}

/// A client whose every request says, through a trusted proxy, that it comes from `ip`.
fn client_at(server: &common::TestServer, ip: &str) -> common::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("x-forwarded-for", ip.parse().unwrap());
    let http = reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap();
    common::Client {
        http,
        base: server.client().base,
        token: None,
    }
}

/// A stranger asking for many key-login challenges for Alice's user ID (from another
/// address) neither evicts nor exhausts the challenge Alice is about to answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_cannot_jam_a_users_key_login() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |c| {
        c.edge.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    let alice_user = user("alice");
    let alice = Owner::new(90, &alice_user, &[SERVER_NAME]);
    let at_home = client_at(&server, "10.0.0.1");
    let stranger = client_at(&server, "10.9.9.9");
    let body = json!({"username": "alice", "auth": {"type": "m.login.dummy"},
                      "org.roam.genesis": alice.ops[0].value, "inhibit_login": true});
    let (s, v) = at_home.post(&format!("{C}/register"), body).await;
    assert_eq!(s, 200, "{v}");
    let (s, c) = at_home
        .post("/_roam/v1/login/challenge", json!({"user_id": alice_user}))
        .await;
    assert_eq!(s, 200, "{c}");
    // More than the old per-user cap of 4, which evicted the user's oldest challenge.
    let mut issued = 0;
    for _ in 0..40 {
        let (s, _) = stranger
            .post("/_roam/v1/login/challenge", json!({"user_id": alice_user}))
            .await;
        issued += usize::from(s == 200);
    }
    assert!(issued >= 5, "the stranger got only {issued} challenges");
    let challenge = c["challenge"].as_str().unwrap();
    let server_name = ServerName::parse(SERVER_NAME).unwrap();
    let uid = UserId::parse(&alice_user).unwrap();
    let signature =
        roam_identity_core::login::sign_login(&alice.update, challenge, &server_name, &uid);
    let login = json!({"type": "m.login.roam.key", "challenge": challenge, "signature": signature,
                       "identifier": {"type": "m.id.user", "user": alice_user}});
    let (s, v) = at_home.post(&format!("{C}/login"), login).await;
    assert_eq!(s, 200, "Alice's own challenge was jammed: {v}");
    server.stop().await;
}
