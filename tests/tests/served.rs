//! Identities at wire speed, over real HTTP: reads serve the answers stored when the log
//! changed (they never verify a signature: counted), answers carry strong ETags and
//! `Cache-Control`, `If-None-Match` gets a `304`, and the background task re-issues
//! attestations before they expire.

mod common;

use std::sync::atomic::Ordering;

use common::{Owner, SERVER_NAME, TestServer, add_device, enc, start, verify_bundle};
use reqwest::StatusCode;
use roam_server::store::{LogCommit, LogStore};
use serde_json::{Value, json};

fn verifications(s: &TestServer) -> u64 {
    s.state.metrics().log_verifications.load(Ordering::Relaxed)
}

async fn register(s: &TestServer, owner: &Owner, localpart: &str) {
    let (st, v) = s
        .client()
        .post(
            "/_matrix/client/v3/register",
            json!({
                "username": localpart,
                "auth": {"type": "m.login.dummy"},
                "org.roam.genesis": owner.ops[0].value,
                "inhibit_login": true,
            }),
        )
        .await;
    assert_eq!(st, 200, "{v}");
}

/// Every identity read of one account: bundle by user ID and DID, log, DID resolution in
/// both representations.
fn read_paths(user: &str, did: &str) -> Vec<(String, Option<&'static str>)> {
    vec![
        (format!("/_roam/v1/users/{}", enc(user)), None),
        (format!("/_roam/v1/accounts/{did}"), None),
        (format!("/_roam/v1/accounts/{did}/log"), None),
        (format!("/1.0/identifiers/{did}"), None),
        (
            format!("/1.0/identifiers/{did}"),
            Some("application/did+ld+json"),
        ),
    ]
}

async fn get(
    s: &TestServer,
    path: &str,
    accept: Option<&str>,
    etag: Option<&str>,
) -> reqwest::Response {
    let mut req = reqwest::Client::new().get(format!("{}{path}", s.base));
    if let Some(a) = accept {
        req = req.header("accept", a);
    }
    if let Some(t) = etag {
        req = req.header("if-none-match", t);
    }
    req.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_serve_stored_answers_without_verifying() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), |_| {}).await;
    let user = format!("@alice:{SERVER_NAME}");
    let mut alice = Owner::new(11, &user, &[SERVER_NAME]);
    let did = alice.did();
    register(&s, &alice, "alice").await;

    let before = verifications(&s);
    for _ in 0..3 {
        for (path, accept) in read_paths(&user, &did) {
            let resp = get(&s, &path, accept, None).await;
            assert_eq!(resp.status(), StatusCode::OK, "{path}");
        }
    }
    assert_eq!(verifications(&s), before, "a read verified a log");

    // The stored bundle is a complete, verifiable bundle of the current head.
    let (st, bundle) = s.client().get(&format!("/_roam/v1/accounts/{did}")).await;
    assert_eq!(st, 200);
    let vb = verify_bundle(&bundle);
    assert_eq!(vb.log.state.head, alice.ops[0].hash);
    assert_eq!(
        vb.bound_user_ids(common::now()),
        vec![alice.state().user_ids[0].clone()]
    );

    // A write verifies, and the next reads serve the new head.
    let op = alice.sign(add_device("PHONE", 3));
    let (st, v) = s
        .client()
        .post(
            &format!("/_roam/v1/accounts/{did}/ops"),
            json!({"ops": [op]}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert!(verifications(&s) > before);
    let after_write = verifications(&s);
    let (_, bundle) = s
        .client()
        .get(&format!("/_roam/v1/users/{}", enc(&user)))
        .await;
    assert_eq!(verify_bundle(&bundle).log.state.head, alice.ops[1].hash);
    let (_, log) = s
        .client()
        .get(&format!("/_roam/v1/accounts/{did}/log"))
        .await;
    assert_eq!(log["ops"].as_array().unwrap().len(), 2);
    assert_eq!(log["ops"][1], alice.ops[1].value);
    let (_, res) = s.client().get(&format!("/1.0/identifiers/{did}")).await;
    assert_eq!(
        res["didDocumentMetadata"]["versionId"],
        alice.ops[1].hash.to_multibase()
    );
    assert_eq!(
        res["didDocument"]["alsoKnownAs"],
        json!([format!("matrix:u/alice:{SERVER_NAME}")])
    );
    assert_eq!(verifications(&s), after_write, "a read verified a log");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etags_answer_304_until_the_log_changes() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), |_| {}).await;
    let user = format!("@bob:{SERVER_NAME}");
    let mut bob = Owner::new(12, &user, &[SERVER_NAME]);
    let did = bob.did();
    register(&s, &bob, "bob").await;

    let mut tags = Vec::new();
    for (path, accept) in read_paths(&user, &did) {
        let resp = get(&s, &path, accept, None).await;
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        let h = resp.headers();
        let tag = h["etag"].to_str().unwrap().to_owned();
        assert!(
            tag.starts_with('"') && tag.contains(&bob.ops[0].hash.to_multibase()),
            "{tag}"
        );
        let cc = h["cache-control"].to_str().unwrap();
        let age: u64 = cc
            .strip_prefix("public, max-age=")
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&age), "{cc}");
        let again = get(&s, &path, accept, Some(&tag)).await;
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{path}");
        assert_eq!(again.headers()["etag"], tag.as_str());
        assert!(again.bytes().await.unwrap().is_empty());
        // Another tag (or a weak form of this one) is compared as RFC 9110 says.
        let weak = format!("W/{tag}");
        assert_eq!(get(&s, &path, accept, Some(&weak)).await.status(), 304);
        let other = get(&s, &path, accept, Some("\"other\"")).await;
        assert_eq!(other.status(), StatusCode::OK);
        tags.push(tag);
    }
    // Two representations of one URL never share a tag.
    assert_ne!(tags[3], tags[4]);

    let op = bob.sign(add_device("LAPTOP", 4));
    let (st, v) = s
        .client()
        .post(
            &format!("/_roam/v1/accounts/{did}/ops"),
            json!({"ops": [op]}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    for ((path, accept), old) in read_paths(&user, &did).into_iter().zip(&tags) {
        let resp = get(&s, &path, accept, Some(old)).await;
        assert_eq!(
            resp.status(),
            StatusCode::OK,
            "{path} still 304 after a new op"
        );
        assert_ne!(resp.headers()["etag"].to_str().unwrap(), old.as_str());
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attestations_are_reissued_in_the_background_not_on_reads() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), |_| {}).await;
    let user = format!("@carol:{SERVER_NAME}");
    let carol = Owner::new(13, &user, &[SERVER_NAME]);
    let did = carol.did();
    register(&s, &carol, "carol").await;
    let (_, first) = s.client().get(&format!("/_roam/v1/accounts/{did}")).await;
    let issued = first["attestations"][0]["issued_at"].as_u64().unwrap();
    let until = first["attestations"][0]["valid_until"].as_u64().unwrap();

    // Nothing is due now; six days and a bit later, the answers are.
    let portable = s.state.portable();
    assert_eq!(portable.refresh_due(common::now(), 64).await.unwrap(), 0);
    let later = until - 12 * 3600 * 1000;
    assert_eq!(portable.refresh_due(later, 64).await.unwrap(), 1);
    let before = verifications(&s);
    let (_, second) = s.client().get(&format!("/_roam/v1/accounts/{did}")).await;
    assert_eq!(verifications(&s), before, "a read verified a log");
    let reissued = second["attestations"][0]["issued_at"].as_u64().unwrap();
    assert!(reissued > issued, "{issued} → {reissued}");
    assert_eq!(second["fetched_at"].as_u64().unwrap(), later);
    let b = roam_identity_core::bundle::Bundle::from_value(&second).unwrap();
    roam_identity_core::bundle::verify(&b, None, later).unwrap();
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_missing_from_an_older_store_are_made_once() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), |_| {}).await;
    let user = format!("@dan:{SERVER_NAME}");
    let dan = Owner::new(14, &user, &[SERVER_NAME]);
    let did = dan.did();
    register(&s, &dan, "dan").await;
    s.stop().await;
    {
        // What an older version stored: the log, no answers.
        let store = common::open_dir_store(dir.path()).await;
        let d = roam_identity_core::Did::parse(&did).unwrap();
        let summary = store.log_summary(&d).unwrap().unwrap();
        store
            .commit_log(LogCommit {
                did: d,
                expected_head: Some(summary.head),
                new_ops: Vec::new(),
                summary,
                attestations: None,
                bind: Vec::new(),
                unbind: Vec::new(),
                devices: Vec::new(),
                served: None,
            })
            .unwrap();
    }
    let s = start(dir.path(), |_| {}).await;
    let before = verifications(&s);
    let mut bodies: Vec<Value> = Vec::new();
    for _ in 0..3 {
        let (st, b) = s
            .client()
            .get(&format!("/_roam/v1/users/{}", enc(&user)))
            .await;
        assert_eq!(st, 200, "{b}");
        bodies.push(b);
    }
    assert!(verifications(&s) - before <= 1, "made more than once");
    verify_bundle(&bodies[2]);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_document_is_signed_once_and_revalidated() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), |_| {}).await;
    let first = get(&s, "/_matrix/key/v2/server", None, None).await;
    assert_eq!(first.status(), StatusCode::OK);
    let tag = first.headers()["etag"].to_str().unwrap().to_owned();
    assert!(
        first.headers()["cache-control"]
            .to_str()
            .unwrap()
            .starts_with("public, max-age=")
    );
    let doc: Value = first.json().await.unwrap();
    assert!(
        tag.contains(&doc["valid_until_ts"].to_string()),
        "{tag} {doc}"
    );
    let second: Value = get(&s, "/_matrix/key/v2/server", None, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(doc, second, "signed again within the hour");
    let again = get(&s, "/_matrix/key/v2/server", None, Some(&tag)).await;
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_resolver_revalidates_with_if_none_match() {
    use roam_resolver::{NetworkResolver, Resolver, ResolverConfig};
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), |_| {}).await;
    let user = format!("@erin:{SERVER_NAME}");
    let erin = Owner::new(15, &user, &[SERVER_NAME]);
    register(&s, &erin, "erin").await;
    let mut config = ResolverConfig::default();
    config.overrides.insert(
        roam_identity_core::ServerName::parse(SERVER_NAME).unwrap(),
        url::Url::parse(&s.base).unwrap(),
    );
    let resolver =
        NetworkResolver::new(config, std::sync::Arc::new(roam_resolver::SystemClock)).unwrap();
    let uid = roam_identity_core::UserId::parse(&user).unwrap();
    let first = resolver.resolve_user(&uid).await.unwrap();
    let second = resolver.resolve_user(&uid).await.unwrap();
    assert_eq!(first.head, second.head);
    assert_eq!(second.did.to_string(), erin.did());
    let (_, metrics) = s.client().get("/metrics").await;
    let metrics = metrics.as_str().unwrap().to_owned();
    let line = "roam_http_requests_total{method=\"GET\",route=\"/_roam/v1/users/{user_id}\",status=\"304\"} 1";
    assert!(metrics.contains(line), "{metrics}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_query_answers_many_accounts_from_stored_bundles() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), |_| {}).await;
    let (a, b) = (format!("@fay:{SERVER_NAME}"), format!("@gil:{SERVER_NAME}"));
    let fay = Owner::new(16, &a, &[SERVER_NAME]);
    let gil = Owner::new(17, &b, &[SERVER_NAME]);
    register(&s, &fay, "fay").await;
    register(&s, &gil, "gil").await;
    let stranger = Owner::new(18, &format!("@hal:{SERVER_NAME}"), &[SERVER_NAME]).did();
    let nobody = format!("@nobody:{SERVER_NAME}");
    let before = verifications(&s);
    let c = s.client();
    let (st, v) = c
        .post(
            "/_roam/v1/query",
            json!({"user_ids": [a, b, nobody, a], "dids": [fay.did(), stranger]}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(verifications(&s), before, "a query verified a log");
    assert_eq!(
        verify_bundle(&v["users"][&a]).log.state.did.to_string(),
        fay.did()
    );
    assert_eq!(
        verify_bundle(&v["users"][&b]).log.state.did.to_string(),
        gil.did()
    );
    assert_eq!(
        verify_bundle(&v["accounts"][fay.did()]).log.state.head,
        fay.ops[0].hash
    );
    assert_eq!(v["users"].as_object().unwrap().len(), 2);
    assert_eq!(v["not_found"], json!([nobody, stranger]));

    // Bounded: names, body, and each name is checked.
    let many: Vec<String> = (0..101).map(|i| format!("@u{i}:{SERVER_NAME}")).collect();
    let r = c.post("/_roam/v1/query", json!({"user_ids": many})).await;
    common::assert_err(&r, 413, "M_TOO_LARGE");
    let r = c
        .post("/_roam/v1/query", json!({"user_ids": [], "dids": []}))
        .await;
    common::assert_err(&r, 400, "M_BAD_JSON");
    let r = c
        .post("/_roam/v1/query", json!({"dids": ["did:key:z"]}))
        .await;
    common::assert_err(&r, 400, "M_INVALID_PARAM");
    let r = c
        .post("/_roam/v1/query", json!({"user_ids": ["alice"]}))
        .await;
    common::assert_err(&r, 400, "M_INVALID_PARAM");
    let huge = "x".repeat(70 * 1024);
    let r = c.post("/_roam/v1/query", json!({"user_ids": [huge]})).await;
    common::assert_err(&r, 413, "M_TOO_LARGE");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_resolver_asks_several_names_of_one_server_in_one_query() {
    use roam_resolver::{NetworkResolver, ResolverConfig};
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), |_| {}).await;
    let mut names = Vec::new();
    let mut dids = Vec::new();
    for (i, local) in ["ivy", "jon", "kim"].iter().enumerate() {
        let user = format!("@{local}:{SERVER_NAME}");
        let owner = Owner::new(20 + i as u8, &user, &[SERVER_NAME]);
        register(&s, &owner, local).await;
        dids.push(owner.did());
        names.push(roam_identity_core::UserId::parse(&user).unwrap());
    }
    names.insert(
        1,
        roam_identity_core::UserId::parse(&format!("@nobody:{SERVER_NAME}")).unwrap(),
    );
    let mut config = ResolverConfig::default();
    config.overrides.insert(
        roam_identity_core::ServerName::parse(SERVER_NAME).unwrap(),
        url::Url::parse(&s.base).unwrap(),
    );
    let resolver =
        NetworkResolver::new(config, std::sync::Arc::new(roam_resolver::SystemClock)).unwrap();
    let answers = resolver.resolve_users(&names).await;
    assert_eq!(answers.len(), 4);
    assert_eq!(answers[0].as_ref().unwrap().did.to_string(), dids[0]);
    assert_eq!(answers[1].as_ref().unwrap_err().class(), "not_found");
    assert_eq!(answers[2].as_ref().unwrap().did.to_string(), dids[1]);
    assert_eq!(answers[3].as_ref().unwrap().did.to_string(), dids[2]);
    assert_eq!(
        answers[3].as_ref().unwrap().user_id.as_ref(),
        Some(&names[3])
    );
    let (_, metrics) = s.client().get("/metrics").await;
    let metrics = metrics.as_str().unwrap().to_owned();
    let q = "roam_http_requests_total{method=\"POST\",route=\"/_roam/v1/query\",status=\"200\"} 1";
    assert!(metrics.contains(q), "{metrics}");
    assert!(
        !metrics.contains("route=\"/_roam/v1/users/{user_id}\""),
        "{metrics}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cached_resolver_answers_what_it_holds_and_asks_the_rest_in_one_query() {
    use roam_identity_core::{ServerName, UserId};
    use roam_resolver::{CachePolicy, CacheStore, Cached, NetworkResolver, ResolverConfig};
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), |_| {}).await;
    let mut names = Vec::new();
    for (i, local) in ["nia", "oto", "pia"].iter().enumerate() {
        let user = format!("@{local}:{SERVER_NAME}");
        register(&s, &Owner::new(40 + i as u8, &user, &[SERVER_NAME]), local).await;
        names.push(UserId::parse(&user).unwrap());
    }
    let mut config = ResolverConfig::default();
    config.overrides.insert(
        ServerName::parse(SERVER_NAME).unwrap(),
        url::Url::parse(&s.base).unwrap(),
    );
    let clock = std::sync::Arc::new(roam_resolver::SystemClock);
    let network = NetworkResolver::new(config, clock.clone()).unwrap();
    let cache_dir = tempfile::tempdir().unwrap();
    let store = CacheStore::open(cache_dir.path().join("cache.redb")).unwrap();
    let cached = Cached::new(network, store, clock, CachePolicy::default());
    let query_count = |m: &str| {
        m.lines()
            .find(|l| {
                l.starts_with("roam_http_requests_total{method=\"POST\",route=\"/_roam/v1/query\"")
            })
            .and_then(|l| l.rsplit(' ').next())
            .map_or(0, |n| n.parse::<u64>().unwrap())
    };
    // One name first, alone: one single lookup, cached.
    let one = roam_resolver::Resolver::resolve_user(&cached, &names[0])
        .await
        .unwrap();
    assert_eq!(one.status, roam_resolver::ResolveStatus::Verified);
    // All three: the first from the cache, the other two in one bulk query.
    let all = roam_resolver::Resolver::resolve_users(&cached, &names).await;
    let statuses: Vec<_> = all.iter().map(|r| r.as_ref().unwrap().status).collect();
    use roam_resolver::ResolveStatus::{Cached as C, Verified as V};
    assert_eq!(statuses, vec![C, V, V]);
    for (r, n) in all.iter().zip(&names) {
        assert_eq!(r.as_ref().unwrap().user_id.as_ref(), Some(n));
    }
    let (_, m) = s.client().get("/metrics").await;
    assert_eq!(query_count(m.as_str().unwrap()), 1, "{m}");
    // Again: everything from the cache, nobody asked.
    let again = roam_resolver::Resolver::resolve_users(&cached, &names).await;
    assert!(again.iter().all(|r| r.as_ref().unwrap().status == C));
    let (_, m) = s.client().get("/metrics").await;
    assert_eq!(query_count(m.as_str().unwrap()), 1, "{m}");
    s.stop().await;
}

/// A commit of `owner`'s genesis, as the server would store it (no answers).
fn genesis_commit(owner: &Owner, bind: Option<&str>) -> LogCommit {
    let st = owner.state();
    LogCommit {
        did: st.did.clone(),
        expected_head: None,
        new_ops: vec![(owner.ops[0].hash, owner.ops[0].value.clone())],
        summary: roam_server::portable::service::summary_of(&st),
        attestations: Some(Vec::new()),
        bind: bind
            .map(|u| roam_identity_core::UserId::parse(u).unwrap())
            .into_iter()
            .collect(),
        unbind: Vec::new(),
        devices: Vec::new(),
        served: None,
    }
}

#[test]
fn a_group_commit_applies_each_change_whole_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let store = roam_server::RedbStore::open_dir(dir.path()).unwrap();
    let user = format!("@lea:{SERVER_NAME}");
    let a = Owner::new(30, &user, &[SERVER_NAME]);
    let b = Owner::new(31, &user, &[SERVER_NAME]);
    let c = Owner::new(32, &format!("@max:{SERVER_NAME}"), &[SERVER_NAME]);
    let mut moved = genesis_commit(&c, None);
    moved.expected_head = Some(a.ops[0].hash);
    let results = store
        .commit_logs(vec![
            genesis_commit(&a, Some(&user)),
            // The same user ID for another DID, in the same transaction: refused.
            genesis_commit(&b, Some(&user)),
            moved,
            genesis_commit(&c, None),
        ])
        .unwrap();
    assert!(results[0].is_ok());
    assert!(matches!(
        results[1],
        Err(roam_server::StoreError::UserInUse(_))
    ));
    assert!(matches!(
        results[2],
        Err(roam_server::StoreError::HeadMoved { .. })
    ));
    assert!(results[3].is_ok());
    drop(store);
    let store = roam_server::RedbStore::open_dir(dir.path()).unwrap();
    let did = |o: &Owner| roam_identity_core::Did::parse(&o.did()).unwrap();
    assert!(store.log_summary(&did(&a)).unwrap().is_some());
    assert!(
        store.log_summary(&did(&b)).unwrap().is_none(),
        "a refused change left a trace"
    );
    assert!(store.log_ops(&did(&b)).unwrap().is_empty());
    assert!(store.log_summary(&did(&c)).unwrap().is_some());
    let uid = roam_identity_core::UserId::parse(&user).unwrap();
    assert_eq!(store.did_of_user(&uid).unwrap(), Some(did(&a)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_are_all_acknowledged_durably() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), |_| {}).await;
    let owners: Vec<Owner> = (0..48)
        .map(|i| {
            Owner::new(
                100 + i as u8,
                &format!("@w{i}:{SERVER_NAME}"),
                &[SERVER_NAME],
            )
        })
        .collect();
    let mut tasks = Vec::new();
    for o in &owners {
        let (c, did, op) = (s.client(), o.did(), o.ops[0].value.clone());
        tasks.push(tokio::spawn(async move {
            c.post(
                &format!("/_roam/v1/accounts/{did}/ops"),
                json!({"ops": [op]}),
            )
            .await
        }));
    }
    for t in tasks {
        let (st, v) = t.await.unwrap();
        assert_eq!(st, 200, "{v}");
    }
    s.stop().await;
    let store = common::open_dir_store(dir.path()).await;
    for o in &owners {
        let did = roam_identity_core::Did::parse(&o.did()).unwrap();
        assert_eq!(
            store.log_summary(&did).unwrap().unwrap().head,
            o.ops[0].hash
        );
        let served = store
            .served(
                &[roam_server::store::AccountRef::Did(did)],
                roam_server::store::ServedKind::Bundle,
            )
            .unwrap();
        assert!(
            served[0].is_some(),
            "acknowledged without its stored answers"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_streams_every_op_after_a_cursor() {
    let dir = tempfile::tempdir().unwrap();
    {
        // More ops than one page of the stream (1000).
        let store = common::open_dir_store(dir.path()).await;
        let commits = (0..1100u32)
            .map(|i| {
                let mut seed = [7u8; 32];
                seed[..4].copy_from_slice(&i.to_le_bytes());
                let update = ed25519_dalek::SigningKey::from_bytes(&seed);
                seed[31] = 8;
                let next = ed25519_dalek::SigningKey::from_bytes(&seed);
                let o = Owner::from_keys(
                    update,
                    next,
                    &format!("@x{i}:{SERVER_NAME}"),
                    &[SERVER_NAME],
                );
                genesis_commit(&o, None)
            })
            .collect();
        assert!(
            store
                .commit_logs(commits)
                .unwrap()
                .iter()
                .all(Result::is_ok)
        );
    }
    let s = start(dir.path(), |_| {}).await;
    let lines = |text: &str| -> Vec<Value> {
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let all = get(&s, "/_roam/v1/export", None, None).await;
    assert_eq!(all.status(), StatusCode::OK);
    assert_eq!(all.headers()["content-type"], "application/x-ndjson");
    let all = lines(&all.text().await.unwrap());
    assert_eq!(all.len(), 1100);
    let cursors: Vec<u64> = all
        .iter()
        .map(|l| l["cursor"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(cursors.windows(2).all(|w| w[0] < w[1]));
    let since = cursors[499];
    let rest = get(&s, &format!("/_roam/v1/export?since={since}"), None, None).await;
    let rest = lines(&rest.text().await.unwrap());
    assert_eq!(rest.len(), 600);
    assert_eq!(rest[0], all[500]);
    // A page with `limit` still says where to resume.
    let page = get(
        &s,
        &format!("/_roam/v1/export?since={since}&limit=10"),
        None,
        None,
    )
    .await;
    assert_eq!(
        page.headers()["x-roam-next-cursor"],
        cursors[509].to_string().as_str()
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_live_follow_waits_for_the_next_op() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), |_| {}).await;
    let user = format!("@uma:{SERVER_NAME}");
    register(&s, &Owner::new(50, &user, &[SERVER_NAME]), "uma").await;
    let first = get(&s, "/_roam/v1/export?limit=100", None, None).await;
    let cursor = first.headers()["x-roam-next-cursor"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(!first.text().await.unwrap().is_empty());
    // Nothing after the cursor and no timeout: an empty page at once.
    let empty = get(
        &s,
        &format!("/_roam/v1/export?after={cursor}&limit=100"),
        None,
        None,
    )
    .await;
    assert_eq!(empty.status(), StatusCode::OK);
    assert_eq!(empty.text().await.unwrap(), "");
    // A follower waits; the next account's genesis wakes it with exactly that op.
    let url = format!("/_roam/v1/export?after={cursor}&limit=100&timeout=20000");
    let follower = {
        let base = s.base.clone();
        tokio::spawn(async move {
            reqwest::get(format!("{base}{url}"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        !follower.is_finished(),
        "the follower answered before any op"
    );
    let vic = Owner::new(51, &format!("@vic:{SERVER_NAME}"), &[SERVER_NAME]);
    register(&s, &vic, "vic").await;
    let got = follower.await.unwrap();
    let lines: Vec<Value> = got
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{got}");
    assert_eq!(lines[0]["did"], vic.did());
    // A timeout that is not a number is refused.
    let bad = get(&s, "/_roam/v1/export?timeout=soon", None, None).await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    s.stop().await;
}
