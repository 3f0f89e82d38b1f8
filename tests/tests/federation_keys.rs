//! Keys across servers (issue 12): two homeservers on loopback, each resolving the other
//! through its federation overrides. A user on one queries and claims the device keys of a
//! user on the other and sends them a to-device message, all as `X-Matrix`-signed
//! server-server requests; unsigned or forged server-server requests are refused. A
//! device-list change reaches the servers that asked for the user's keys (`m.device_list_update`).

use ed25519_dalek::SigningKey;
use roam_identity_core::ServerName;
use roam_identity_core::xmatrix;
use serde_json::{Value, json};

mod common;
use common::{C, device_keys, federation};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_and_to_device_messages_cross_servers() {
    let nodes = federation(&["a.test", "b.test"]).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    a.client().register("alice", "pw-alice-1").await;
    b.client().register("bob", "pw-bob-1").await;
    let (alice, _) = a
        .client()
        .login("alice", "pw-alice-1", Some("APHONE"))
        .await;
    let (bob, _) = b.client().login("bob", "pw-bob-1", Some("BLAPTOP")).await;
    let alice_key = SigningKey::from_bytes(&[21; 32]);
    let keys = device_keys(&a.uid("alice"), "APHONE", &alice_key);
    let mut one = json!({"key": "otk-key"});
    let device_key_id = roam_identity_core::KeyId::parse("ed25519:APHONE").unwrap();
    roam_identity_core::signed::sign(&mut one, &a.uid("alice"), &device_key_id, &alice_key)
        .unwrap();
    let otk = json!({"signed_curve25519:AAAAQ": one});
    let (s, v) = alice
        .post(
            &format!("{C}/keys/upload"),
            json!({"device_keys": keys, "one_time_keys": otk}),
        )
        .await;
    assert_eq!(s, 200, "{v}");

    // Bob (on b.test) queries Alice (on a.test): b.test asks a.test, signed.
    let (s, q) = bob
        .post(
            &format!("{C}/keys/query"),
            json!({"device_keys": {a.uid("alice"): []}}),
        )
        .await;
    assert_eq!(s, 200, "{q}");
    assert_eq!(q["failures"], json!({}), "{q}");
    let got = &q["device_keys"][a.uid("alice")]["APHONE"];
    assert_eq!(got["keys"], keys["keys"], "{q}");
    roam_identity_core::signed::verify(
        got,
        &a.uid("alice"),
        &roam_identity_core::KeyId::parse("ed25519:APHONE").unwrap(),
        &alice_key.verifying_key(),
    )
    .expect("the device keys arrive as Alice signed them");

    // And claims her one-time key.
    let (s, c) = bob
        .post(
            &format!("{C}/keys/claim"),
            json!({"one_time_keys": {a.uid("alice"): {"APHONE": "signed_curve25519"}}}),
        )
        .await;
    assert_eq!(s, 200, "{c}");
    assert_eq!(
        c["one_time_keys"][a.uid("alice")]["APHONE"]["signed_curve25519:AAAAQ"]["key"],
        "otk-key",
        "{c}"
    );

    // A to-device message from Bob reaches Alice's device through a.test's /sync.
    let (s, first) = alice.get(&format!("{C}/sync")).await;
    assert_eq!(s, 200);
    let since = first["next_batch"].as_str().unwrap().to_owned();
    let body = json!({"messages": {a.uid("alice"): {"APHONE": {"hi": "from b"}}}});
    let (s, v) = bob
        .put(&format!("{C}/sendToDevice/m.roam.test/t1"), body)
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, got) = alice
        .get(&format!("{C}/sync?since={since}&timeout=5000"))
        .await;
    assert_eq!(s, 200, "{got}");
    let events = got["to_device"]["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{got}");
    assert_eq!(events[0]["sender"], b.uid("bob"));
    assert_eq!(events[0]["content"]["hi"], "from b");

    // A server that is down is a failure in the answer, not an error.
    let (s, q) = bob
        .post(
            &format!("{C}/keys/query"),
            json!({"device_keys": {"@carol:c.test": []}}),
        )
        .await;
    assert_eq!(s, 200, "{q}");
    assert!(q["failures"]["c.test"].is_object(), "{q}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_and_forged_server_requests_are_refused() {
    let nodes = federation(&["a.test", "b.test"]).await;
    let a = &nodes[0];
    a.client().register("alice", "pw-alice-1").await;
    let path = "/_matrix/federation/v1/user/keys/query";
    let body = json!({"device_keys": {a.uid("alice"): []}});
    let http = reqwest::Client::new();
    let post = |auth: Option<String>| {
        let mut req = http
            .post(format!("{}{path}", a.base))
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(h) = auth {
            req = req.header("authorization", h);
        }
        async move {
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap())
        }
    };
    let (s, v) = post(None).await;
    assert_eq!(
        (s, v["errcode"].as_str()),
        (401, Some("M_UNAUTHORIZED")),
        "{v}"
    );
    // Signed by a key b.test does not publish: claims to be b.test, cannot prove it.
    let (origin, dest) = (
        ServerName::parse("b.test").unwrap(),
        ServerName::parse("a.test").unwrap(),
    );
    let forger = SigningKey::from_bytes(&[66; 32]);
    let key_id = roam_identity_core::KeyId::parse("ed25519:forged").unwrap();
    let obj = xmatrix::request_object("POST", path, &origin, &dest, Some(&body));
    let header = xmatrix::sign_request(&obj, &origin, &dest, &key_id, &forger).unwrap();
    let (s, v) = post(Some(header)).await;
    assert_eq!(
        (s, v["errcode"].as_str()),
        (401, Some("M_UNAUTHORIZED")),
        "{v}"
    );
    let (s, v) = post(Some("X-Matrix garbage".into())).await;
    assert_eq!(
        (s, v["errcode"].as_str()),
        (401, Some("M_UNAUTHORIZED")),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_naming_several_users_of_one_server_resolves_them_in_one_bulk_query() {
    let nodes = federation(&["a.test", "b.test"]).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    for name in ["amy", "ann", "ada"] {
        a.client().register(name, "pw-a-users-1").await;
    }
    b.client().register("ben", "pw-ben-1").await;
    let (ben, _) = b.client().login("ben", "pw-ben-1", Some("BDESK")).await;
    let wanted: serde_json::Map<String, Value> = ["amy", "ann", "ada"]
        .iter()
        .map(|n| (a.uid(n), json!([])))
        .collect();
    let (s, q) = ben
        .post(&format!("{C}/keys/query"), json!({"device_keys": wanted}))
        .await;
    assert_eq!(s, 200, "{q}");
    assert_eq!(q["failures"], json!({}), "{q}");
    let (_, metrics) = a.client().get("/metrics").await;
    let metrics = metrics.as_str().unwrap();
    let bulk =
        "roam_http_requests_total{method=\"POST\",route=\"/_roam/v1/query\",status=\"200\"} 1";
    assert!(metrics.contains(bulk), "{metrics}");
    assert!(
        !metrics.contains("route=\"/_roam/v1/users/{user_id}\""),
        "one bulk query, not a lookup per user: {metrics}"
    );
}

/// A device-list change reaches the users of other servers who follow the user: b.test asked
/// a.test for Alice's keys, so a.test sends it an `m.device_list_update` when Alice adds a
/// device, and Bob's `/sync` on b.test lists her in `device_lists.changed`; his next query
/// finds the new device.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_list_changes_reach_the_servers_that_follow_the_user() {
    let nodes = federation(&["a.test", "b.test"]).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    a.client().register("alice", "pw-alice-1").await;
    b.client().register("bob", "pw-bob-1").await;
    let (bob, _) = b.client().login("bob", "pw-bob-1", Some("BLAPTOP")).await;
    let alice = a.uid("alice");
    let query = json!({"device_keys": {&alice: []}});
    let (s, q) = bob.post(&format!("{C}/keys/query"), query.clone()).await;
    assert_eq!((s, &q["failures"]), (200, &json!({})), "{q}");
    assert!(q["device_keys"][&alice].get("APHONE").is_none(), "{q}");
    let (s, first) = bob.get(&format!("{C}/sync")).await;
    assert_eq!(s, 200, "{first}");
    let mut since = first["next_batch"].as_str().unwrap().to_owned();

    // Alice signs in on a phone and uploads its keys, on a.test.
    let (phone, _) = a
        .client()
        .login("alice", "pw-alice-1", Some("APHONE"))
        .await;
    let phone_key = SigningKey::from_bytes(&[23; 32]);
    let body = json!({"device_keys": device_keys(&alice, "APHONE", &phone_key)});
    let (s, v) = phone.post(&format!("{C}/keys/upload"), body).await;
    assert_eq!(s, 200, "{v}");

    // Bob's /sync on b.test hears of it (a long poll: woken when the EDU arrives).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (s, got) = bob
            .get(&format!("{C}/sync?since={since}&timeout=5000"))
            .await;
        assert_eq!(s, 200, "{got}");
        let changed = got["device_lists"]["changed"].as_array().unwrap();
        if changed.iter().any(|u| u == &json!(alice)) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "b.test never heard of Alice's new device: {got}"
        );
        since = got["next_batch"].as_str().unwrap().to_owned();
    }
    let (s, q) = bob.post(&format!("{C}/keys/query"), query).await;
    assert_eq!(s, 200, "{q}");
    assert!(q["device_keys"][&alice].get("APHONE").is_some(), "{q}");
}
