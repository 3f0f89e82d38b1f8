//! The resolver against real homeservers: every answer status and error produced by a real
//! scenario — real `roam` servers on loopback with redb files, a real redb cache, a real LAN
//! node — rather than by test origins.

use std::collections::BTreeMap;
use std::sync::Arc;

use ed25519_dalek::SigningKey;
use roam_identity_core::{ServerName, UserId};
use roam_resolver::resolution::notice;
use roam_resolver::{
    CachePolicy, CacheStore, Cached, Clock, ManualClock, NetworkResolver, Notice, Resolution,
    ResolveError, ResolveStatus, Resolver, ResolverConfig, Source,
};
use roam_server::config::ServerConfig;
use roam_server::portable::federation::HttpFederation;
use roam_server::{AppState, RateLimits};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use url::Url;

mod common;
use common::{Owner, add_device, move_to, now};

const DAY_MS: u64 = 24 * 3600 * 1000;

/// A homeserver that can be stopped and started again on the same address and data.
struct Home {
    name: ServerName,
    addr: std::net::SocketAddr,
    dir: tempfile::TempDir,
    /// Names this server may reach (its federation overrides).
    overrides: BTreeMap<ServerName, Url>,
    running: Option<(oneshot::Sender<()>, JoinHandle<std::io::Result<()>>)>,
}

impl Home {
    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    async fn start(&mut self) {
        let listener = tokio::net::TcpListener::bind(self.addr).await.unwrap();
        let mut config =
            ServerConfig::for_server_name(self.name.clone(), self.addr, self.dir.path().into());
        config.rate_limits = RateLimits::unlimited();
        // Long enough that a resolver clock moved past the 7-day attestations still finds
        // the key documents valid (the failover tests move it 8 days on).
        config.key_validity_ms = 30 * DAY_MS;
        config.federation_overrides = self.overrides.clone();
        let fed = HttpFederation::new(&config).unwrap();
        let store = common::open_dir_store(self.dir.path()).await;
        let state = AppState::with_federation(config, store, Arc::new(fed)).unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(roam_server::run(listener, state, async move {
            let _ = rx.await;
        }));
        self.running = Some((tx, handle));
    }

    async fn stop(&mut self) {
        if let Some((tx, handle)) = self.running.take() {
            let _ = tx.send(());
            handle.await.unwrap().unwrap();
        }
    }
}

/// Reserves addresses for `names`; each server may reach the names in `reach`.
async fn homes(names: &[&str], reach_each_other: bool) -> Vec<Home> {
    let mut addrs = Vec::new();
    for _ in names {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        addrs.push(l.local_addr().unwrap());
    }
    let all: BTreeMap<ServerName, Url> = names
        .iter()
        .zip(&addrs)
        .map(|(n, a)| {
            (
                ServerName::parse(n).unwrap(),
                Url::parse(&format!("http://{a}")).unwrap(),
            )
        })
        .collect();
    let mut out = Vec::new();
    for (n, addr) in names.iter().zip(addrs) {
        let name = ServerName::parse(n).unwrap();
        let overrides = if reach_each_other {
            all.clone()
        } else {
            all.iter()
                .filter(|(k, _)| **k == name)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
        let mut h = Home {
            name,
            addr,
            dir: tempfile::tempdir().unwrap(),
            overrides,
            running: None,
        };
        h.start().await;
        out.push(h);
    }
    out
}

async fn post(home: &Home, path: &str, body: Value) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(format!("{}{path}", home.url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn register(home: &Home, owner: &Owner, localpart: &str) {
    let (s, r) = post(
        home,
        "/_matrix/client/v3/register",
        json!({"username": localpart, "auth": {"type": "m.login.dummy"},
               "org.roam.genesis": owner.ops[0].value, "inhibit_login": true}),
    )
    .await;
    assert_eq!(s, 200, "{r}");
}

async fn push(home: &Home, did: &str, ops: Vec<Value>) -> (u16, Value) {
    post(
        home,
        &format!("/_roam/v1/accounts/{did}/ops"),
        json!({ "ops": ops }),
    )
    .await
}

fn config_for(homes: &[&Home]) -> ResolverConfig {
    let mut c = ResolverConfig::default();
    for h in homes {
        c.overrides
            .insert(h.name.clone(), Url::parse(&h.url()).unwrap());
    }
    c
}

fn user(s: &str) -> UserId {
    UserId::parse(s).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verified_cached_stale_lan_not_found_unreachable() {
    let mut hs = homes(&["a.test"], true).await;
    let alice = Owner::new(50, "@alice:a.test", &["a.test"]);
    register(&hs[0], &alice, "alice").await;

    let clock = ManualClock::new(now());
    let cache_dir = tempfile::tempdir().unwrap();
    let store = CacheStore::open(cache_dir.path().join("cache.redb")).unwrap();
    let network = NetworkResolver::new(config_for(&[&hs[0]]), Arc::new(clock.clone())).unwrap();
    let policy = CachePolicy {
        positive_ttl_ms: 60_000,
        negative_ttl_ms: 10_000,
    };
    let cached = Cached::new(network, store.clone(), Arc::new(clock.clone()), policy);

    // verified: from the origin, now.
    let r = cached.resolve_user(&user("@alice:a.test")).await.unwrap();
    assert_eq!(r.status, ResolveStatus::Verified);
    assert_eq!(r.did, alice.ops[0].op.did);
    // cached: within the TTL, without asking.
    let r = cached.resolve_user(&user("@alice:a.test")).await.unwrap();
    assert_eq!(r.status, ResolveStatus::Cached);
    // not_found: the origin says so.
    let e = cached
        .resolve_user(&user("@nobody:a.test"))
        .await
        .unwrap_err();
    assert_eq!(e.class(), "not_found", "{e}");

    // stale: the origin is gone and the TTL has passed.
    hs[0].stop().await;
    clock.advance(120_000);
    let r = cached.resolve_user(&user("@alice:a.test")).await.unwrap();
    assert_eq!(r.status, ResolveStatus::Stale);
    assert!(
        r.explanation().contains("cannot be reached"),
        "{}",
        r.explanation()
    );

    // lan: a peer with no cache of its own asks a LAN node serving this cache.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let lan_url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = oneshot::channel::<()>();
    let lan = tokio::spawn(roam_resolver::serve(listener, store.clone(), async move {
        let _ = rx.await;
    }));
    let mut peer_config = config_for(&[&hs[0]]);
    peer_config.lan_peers = vec![Url::parse(&lan_url).unwrap()];
    let peer = NetworkResolver::new(peer_config, Arc::new(clock.clone())).unwrap();
    let r = peer.resolve_user(&user("@alice:a.test")).await.unwrap();
    assert_eq!(r.status, ResolveStatus::Lan);
    assert_eq!(r.did, alice.ops[0].op.did);

    // unreachable: no cache, no peer, no origin.
    let lonely = NetworkResolver::new(config_for(&[&hs[0]]), Arc::new(clock.clone())).unwrap();
    let e = lonely
        .resolve_user(&user("@alice:a.test"))
        .await
        .unwrap_err();
    assert_eq!(e.class(), "unreachable", "{e}");
    let _ = tx.send(());
    lan.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn equivocation_across_servers_that_cannot_reach_each_other() {
    // c.test and d.test cannot forward to each other, so each keeps its own branch.
    let mut hs = homes(&["c.test", "d.test"], false).await;
    let mut eve = Owner::new(60, "@eve:c.test", &["c.test"]);
    let did = eve.did();
    register(&hs[0], &eve, "eve").await;
    // Eve moves to d.test; c.test keeps answering for @eve:c.test (the forwarding record).
    let mv = eve.sign(move_to(&["d.test"]));
    assert_eq!(push(&hs[0], &did, vec![mv]).await.0, 200);
    assert_eq!(push(&hs[1], &did, eve.values()).await.0, 200);
    // Two valid ops on one prev, one per server.
    let st = eve.state();
    // One branch on the user ID's own server, another on the current primary.
    let claim = |u: &str| roam_identity_core::log::Action::Claim { user_id: user(u) };
    let x = roam_identity_core::log::next_op(&st, now(), claim("@eve2:c.test")).sign(&eve.update);
    let y = roam_identity_core::log::next_op(&st, now(), claim("@eve3:d.test")).sign(&eve.update);
    assert_eq!(push(&hs[0], &did, vec![x.value.clone()]).await.0, 200);
    assert_eq!(push(&hs[1], &did, vec![y.value.clone()]).await.0, 200);

    let resolver = NetworkResolver::new(
        config_for(&[&hs[0], &hs[1]]),
        Arc::new(roam_resolver::SystemClock),
    )
    .unwrap();
    let e = resolver
        .resolve_user(&user("@eve:c.test"))
        .await
        .unwrap_err();
    let ResolveError::Equivocation { a, b } = &e else {
        panic!("expected equivocation, got {e}");
    };
    let mut got = [a.hash, b.hash];
    let mut want = [x.hash, y.hash];
    got.sort();
    want.sort();
    assert_eq!(got, want, "both conflicting ops are the evidence");
    for h in hs.iter_mut() {
        h.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_when_a_server_serves_a_forged_attestation() {
    let mut hs = homes(&["e.test"], true).await;
    let frank = Owner::new(70, "@frank:e.test", &["e.test"]);
    let did = frank.ops[0].op.did.clone();
    register(&hs[0], &frank, "frank").await;

    // The operator (or an intruder) replaces the stored attestation with one signed by
    // another key: the server will serve it as is.
    hs[0].stop().await;
    {
        let store = common::open_dir_store(hs[0].dir.path()).await;
        let summary = store.log_summary(&did).unwrap().unwrap();
        let mut atts = store.issued_attestations(&did).unwrap();
        let forger = roam_identity_core::server_keys::ServerSigningKey {
            key_id: roam_identity_core::KeyId::ed25519("a_forged").unwrap(),
            key: SigningKey::from_bytes(&[5; 32]),
        };
        let mut a = roam_identity_core::attestation::parse(&atts[0]).unwrap();
        a.valid_until += 1000;
        let mut forged = a.sign(&forger).unwrap();
        // Keep the server's own key ID so the resolver checks it against the real key.
        let real_kid = atts[0]["signatures"]["e.test"]
            .as_object()
            .unwrap()
            .keys()
            .next()
            .unwrap()
            .clone();
        let sig = forged["signatures"]["e.test"]["ed25519:a_forged"].clone();
        forged["signatures"] = json!({"e.test": {real_kid: sig}});
        atts[0] = forged;
        store
            .commit_log(roam_server::store::LogCommit {
                did: did.clone(),
                expected_head: Some(summary.head),
                new_ops: Vec::new(),
                summary,
                attestations: Some(atts),
                bind: Vec::new(),
                unbind: Vec::new(),
                devices: Vec::new(),
                // The server re-makes its stored answers from what is stored now.
                served: None,
            })
            .unwrap();
    }
    hs[0].start().await;

    let resolver =
        NetworkResolver::new(config_for(&[&hs[0]]), Arc::new(roam_resolver::SystemClock)).unwrap();
    let e = resolver
        .resolve_user(&user("@frank:e.test"))
        .await
        .unwrap_err();
    assert_eq!(e.class(), "invalid", "{e}");
    hs[0].stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbound_when_the_log_released_the_user_id() {
    // The old server never hears of the release (it cannot be reached from the new one), so
    // it still serves its forwarding record; the newer ops at the primary release the ID.
    let mut hs = homes(&["c.test", "d.test"], false).await;
    let mut gus = Owner::new(61, "@gus:c.test", &["c.test"]);
    let did = gus.did();
    register(&hs[0], &gus, "gus").await;
    let mv = gus.sign(move_to(&["d.test"]));
    assert_eq!(push(&hs[0], &did, vec![mv]).await.0, 200);
    gus.sign(roam_identity_core::log::Action::Claim {
        user_id: user("@gus:d.test"),
    });
    gus.sign(roam_identity_core::log::Action::Release {
        user_id: user("@gus:c.test"),
    });
    assert_eq!(push(&hs[1], &did, gus.values()).await.0, 200);

    let resolver = NetworkResolver::new(
        config_for(&[&hs[0], &hs[1]]),
        Arc::new(roam_resolver::SystemClock),
    )
    .unwrap();
    let e = resolver
        .resolve_user(&user("@gus:c.test"))
        .await
        .unwrap_err();
    assert_eq!(e.class(), "unbound", "{e}");
    for h in hs.iter_mut() {
        h.stop().await;
    }
}

/// The notice of `code` about `server`, if the answer carries one.
fn notice_of<'r>(r: &'r Resolution, code: &str, server: &str) -> Option<&'r Notice> {
    r.notices
        .iter()
        .find(|n| n.code == code && n.server.as_ref().map(ServerName::as_str) == Some(server))
}

fn source_server(r: &Resolution) -> String {
    match &r.source {
        Source::Origin { server, .. } => server.to_string(),
        Source::Lan { peers } => format!("lan {peers:?}"),
        Source::Credential { issuer, .. } => format!("credential {issuer}"),
    }
}

/// Issue 14, failover by user ID: `@alice:a.test` hosted by a.test (primary) and b.test
/// (backup); a.test goes down. A resolver with the account cached asks b.test instead of
/// answering `stale` without asking: `verified` while a.test's attestation of the binding is
/// unexpired, saying that b.test confirmed the log and a.test's attestation carries the
/// binding; `stale` (with the newer log b.test confirmed) once that attestation has expired;
/// `stale` from the cache when nobody can be reached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_by_user_id_asks_the_backup_when_the_origin_is_down() {
    let mut hs = homes(&["a.test", "b.test"], true).await;
    let mut alice = Owner::new(51, "@alice:a.test", &["a.test", "b.test"]);
    let did = alice.did();
    register(&hs[0], &alice, "alice").await;
    let (s, r) = push(&hs[1], &did, alice.values()).await;
    assert_eq!(s, 200, "the backup takes the log: {r}");

    let clock = ManualClock::new(now());
    let store = CacheStore::in_memory().unwrap();
    let network =
        NetworkResolver::new(config_for(&[&hs[0], &hs[1]]), Arc::new(clock.clone())).unwrap();
    let policy = CachePolicy {
        positive_ttl_ms: 60_000,
        negative_ttl_ms: 10_000,
    };
    let cached = Cached::new(network, store, Arc::new(clock.clone()), policy);
    let alice_id = user("@alice:a.test");
    let r = cached.resolve_user(&alice_id).await.unwrap();
    assert_eq!(r.status, ResolveStatus::Verified);
    assert_eq!(source_server(&r), "a.test");

    // a.test goes down; the owner signs a device in through the backup, so only b.test
    // knows the newest head.
    hs[0].stop().await;
    let (s, r) = push(&hs[1], &did, vec![alice.sign(add_device("PHONE", 9))]).await;
    assert_eq!(s, 200, "{r}");
    let newest = alice.state().head;

    clock.advance(120_000);
    let asked_at = clock.now_ms();
    let r = cached.resolve_user(&alice_id).await.unwrap();
    assert_eq!(r.status, ResolveStatus::Verified, "{:?}", r.warnings);
    assert_eq!(
        r.head, newest,
        "the head only b.test holds: b.test was asked"
    );
    assert_eq!(source_server(&r), "b.test");
    assert_eq!(r.user_ids, vec![alice_id.clone()]);
    assert!(
        notice_of(&r, notice::ORIGIN_UNREACHABLE, "a.test").is_some(),
        "{:?}",
        r.notices
    );
    let confirmed = notice_of(&r, notice::LOG_CONFIRMED, "b.test").expect("log_confirmed");
    assert_eq!(confirmed.at, Some(asked_at));
    assert_eq!(confirmed.head, Some(newest.to_multibase()));
    let binding =
        notice_of(&r, notice::BINDING_FROM_ATTESTATION, "a.test").expect("binding notice");
    let until = binding.until.expect("until");
    assert!(until > asked_at);
    assert!(
        r.warnings.iter().any(|w| w.contains("confirmed by b.test")),
        "{:?}",
        r.warnings
    );
    assert!(
        r.explanation().contains("a.test could not be reached")
            && r.explanation().contains("confirmed online by b.test"),
        "{}",
        r.explanation()
    );
    // The answer re-verifies anywhere: a.test's attestation and key document travel with it.
    let vb = roam_identity_core::bundle::verify(&r.bundle, None, asked_at).unwrap();
    assert!(matches!(
        vb.binding(&alice_id, asked_at),
        roam_identity_core::bundle::Attested::Current { .. }
    ));

    // Past the end of a.test's attestation: the log is still confirmed by b.test, but the
    // binding is not confirmed now: stale, saying when it expired.
    let (s, r) = push(&hs[1], &did, vec![alice.sign(add_device("TABLET", 10))]).await;
    assert_eq!(s, 200, "{r}");
    let newest = alice.state().head;
    clock.set(until + 1);
    let r = cached.resolve_user(&alice_id).await.unwrap();
    assert_eq!(r.status, ResolveStatus::Stale, "{:?}", r.warnings);
    assert_eq!(r.head, newest, "b.test was asked");
    let expired = notice_of(&r, notice::BINDING_EXPIRED, "a.test").expect("binding_expired");
    assert_eq!(expired.until, Some(until));
    assert!(
        notice_of(&r, notice::LOG_CONFIRMED, "b.test").is_some(),
        "{:?}",
        r.notices
    );
    assert!(notice_of(&r, notice::BINDING_FROM_ATTESTATION, "a.test").is_none());

    // Nobody reachable: stale from the cache, naming both servers.
    hs[1].stop().await;
    clock.advance(1000);
    let r = cached.resolve_user(&alice_id).await.unwrap();
    assert_eq!(r.status, ResolveStatus::Stale);
    assert!(
        notice_of(&r, notice::ORIGIN_UNREACHABLE, "a.test").is_some(),
        "{:?}",
        r.notices
    );
    assert!(
        notice_of(&r, notice::SERVER_UNREACHABLE, "b.test").is_some(),
        "{:?}",
        r.notices
    );
    assert!(notice_of(&r, notice::LOG_CONFIRMED, "b.test").is_none());
}

/// Without a cache, a resolver that cannot reach the origin knows no DID to fail over with:
/// with no LAN peer either, the answer is `unreachable` (it never guesses the account).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_failover_without_a_known_account() {
    let mut hs = homes(&["a.test", "b.test"], true).await;
    let alice = Owner::new(52, "@alice:a.test", &["a.test", "b.test"]);
    register(&hs[0], &alice, "alice").await;
    assert_eq!(push(&hs[1], &alice.did(), alice.values()).await.0, 200);
    hs[0].stop().await;
    let resolver = NetworkResolver::new(
        config_for(&[&hs[0], &hs[1]]),
        Arc::new(roam_resolver::SystemClock),
    )
    .unwrap();
    let e = resolver
        .resolve_user(&user("@alice:a.test"))
        .await
        .unwrap_err();
    assert_eq!(e.class(), "unreachable", "{e}");
    hs[1].stop().await;
}

/// Failover from a LAN-learned account: a resolver with no cache of its own, a.test down, a
/// LAN node that verified `@alice:a.test` earlier. The LAN bundle names the account and its
/// servers, so b.test is asked too: the answer stays `lan` (the binding rests on key
/// documents the peer carried) but has the newer log b.test confirmed, and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_from_a_lan_learned_account() {
    let mut hs = homes(&["a.test", "b.test"], true).await;
    let mut alice = Owner::new(53, "@alice:a.test", &["a.test", "b.test"]);
    let did = alice.did();
    register(&hs[0], &alice, "alice").await;
    assert_eq!(push(&hs[1], &did, alice.values()).await.0, 200);

    // A LAN node verifies alice while a.test is up.
    let clock = ManualClock::new(now());
    let store = CacheStore::in_memory().unwrap();
    let node = Cached::new(
        NetworkResolver::new(config_for(&[&hs[0], &hs[1]]), Arc::new(clock.clone())).unwrap(),
        store.clone(),
        Arc::new(clock.clone()),
        CachePolicy::default(),
    );
    let alice_id = user("@alice:a.test");
    assert_eq!(
        node.resolve_user(&alice_id).await.unwrap().status,
        ResolveStatus::Verified
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let lan_url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = oneshot::channel::<()>();
    let lan = tokio::spawn(roam_resolver::serve(listener, store, async move {
        let _ = rx.await;
    }));

    hs[0].stop().await;
    assert_eq!(
        push(&hs[1], &did, vec![alice.sign(add_device("PHONE", 9))])
            .await
            .0,
        200
    );
    let newest = alice.state().head;

    let mut peer_config = config_for(&[&hs[0], &hs[1]]);
    peer_config.lan_peers = vec![Url::parse(&lan_url).unwrap()];
    let peer = NetworkResolver::new(peer_config, Arc::new(clock.clone())).unwrap();
    let r = peer.resolve_user(&alice_id).await.unwrap();
    assert_eq!(r.status, ResolveStatus::Lan, "{:?}", r.warnings);
    assert_eq!(r.head, newest, "b.test was asked");
    assert!(matches!(r.source, Source::Lan { .. }));
    assert!(
        notice_of(&r, notice::LOG_CONFIRMED, "b.test").is_some(),
        "{:?}",
        r.notices
    );
    assert!(
        notice_of(&r, notice::ORIGIN_UNREACHABLE, "a.test").is_some(),
        "{:?}",
        r.notices
    );

    let _ = tx.send(());
    lan.await.unwrap().unwrap();
    hs[1].stop().await;
}
