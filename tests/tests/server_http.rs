//! The homeserver over real HTTP: every client-server flow, the error answers, and a restart
//! that must keep the signing key, accounts, devices and keys.

mod common;

use common::{
    Backend, C, SERVER_NAME, assert_err, cross_signing_key, cs_key_id, device_keys, start, start_on,
};
use ed25519_dalek::SigningKey;
use roam_identity_core::{KeyId, VerifyingKey, b64, signed};
use roam_server::config::RateLimit;
use serde_json::{Value, json};

fn uid(local: &str) -> String {
    format!("@{local}:{SERVER_NAME}")
}

/// Verifies the server key document against the key it publishes; returns (key ID, key).
fn check_server_keys(doc: &Value) -> (String, String) {
    let (key_id, key) = doc["verify_keys"]
        .as_object()
        .unwrap()
        .iter()
        .next()
        .unwrap();
    let public = key["key"].as_str().unwrap();
    let vk = VerifyingKey::from_bytes(&b64::decode_array::<32>(public).unwrap()).unwrap();
    signed::verify(doc, SERVER_NAME, &KeyId::parse(key_id).unwrap(), &vk).unwrap();
    (key_id.clone(), public.to_owned())
}

#[tokio::test]
async fn every_flow_then_restart() {
    every_flow_then_restart_on(Backend::Redb).await;
}

#[tokio::test]
async fn every_flow_then_restart_on_postgres() {
    every_flow_then_restart_on(Backend::postgres()).await;
}

async fn every_flow_then_restart_on(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let server = start_on(&backend, dir.path(), |_| {}).await;
    let anon = server.client();

    let (s, keys_before) = anon.get("/_matrix/key/v2/server").await;
    assert_eq!(s, 200);
    let server_key = check_server_keys(&keys_before);

    // Register alice; log in a second device with a chosen ID and name.
    let alice1 = anon.register("alice", "secret-a").await;
    let (s, who) = alice1.get(&format!("{C}/account/whoami")).await;
    assert_eq!(s, 200);
    let dev1 = who["device_id"].as_str().unwrap().to_owned();
    let (alice2, dev2) = anon.login("alice", "secret-a", Some("PHONE")).await;
    assert_eq!(dev2, "PHONE");
    let (s, _) = alice2
        .put(
            &format!("{C}/devices/PHONE"),
            json!({"display_name": "Alice's phone"}),
        )
        .await;
    assert_eq!(s, 200);
    let (s, list) = alice1.get(&format!("{C}/devices")).await;
    assert_eq!(s, 200);
    assert_eq!(list["devices"].as_array().unwrap().len(), 2);

    // Device keys and one-time keys for both devices.
    let k1 = SigningKey::from_bytes(&[11; 32]);
    let k2 = SigningKey::from_bytes(&[12; 32]);
    for (client, dev, key) in [(&alice1, &dev1, &k1), (&alice2, &dev2, &k2)] {
        let mut otk = json!({"key": b64::encode(&[3; 32])});
        signed::sign(&mut otk, &uid("alice"), &KeyId::ed25519(dev).unwrap(), key).unwrap();
        let (s, v) = client
            .post(&format!("{C}/keys/upload"), json!({
                "device_keys": device_keys(&uid("alice"), dev, key),
                "one_time_keys": {"signed_curve25519:AAAAAQ": otk},
                "fallback_keys": {"signed_curve25519:AAAAFB": {"key": b64::encode(&[4; 32]), "fallback": true}},
            }))
            .await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["one_time_key_counts"]["signed_curve25519"], 1);
    }

    // Cross-signing: the first upload needs no UIA.
    let master = SigningKey::from_bytes(&[21; 32]);
    let ssk = SigningKey::from_bytes(&[22; 32]);
    let usk = SigningKey::from_bytes(&[23; 32]);
    let master_obj = cross_signing_key(&uid("alice"), "master", &master);
    let mut ssk_obj = cross_signing_key(&uid("alice"), "self_signing", &ssk);
    let mut usk_obj = cross_signing_key(&uid("alice"), "user_signing", &usk);
    signed::sign(&mut ssk_obj, &uid("alice"), &cs_key_id(&master), &master).unwrap();
    signed::sign(&mut usk_obj, &uid("alice"), &cs_key_id(&master), &master).unwrap();
    // A self-signing key not signed by the master key is refused.
    let unsigned_ssk = cross_signing_key(&uid("alice"), "self_signing", &ssk);
    let r = alice1
        .post(
            &format!("{C}/keys/device_signing/upload"),
            json!({"master_key": master_obj, "self_signing_key": unsigned_ssk}),
        )
        .await;
    assert_err(&r, 400, "M_INVALID_SIGNATURE");
    let (s, v) = alice1
        .post(
            &format!("{C}/keys/device_signing/upload"),
            json!({
                "master_key": master_obj, "self_signing_key": ssk_obj, "user_signing_key": usk_obj,
            }),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    // Identical re-upload: still no UIA.
    let (s, _) = alice1
        .post(
            &format!("{C}/keys/device_signing/upload"),
            json!({"master_key": master_obj, "self_signing_key": ssk_obj}),
        )
        .await;
    assert_eq!(s, 200);
    // Replacing the keys needs the password.
    let new_master = SigningKey::from_bytes(&[31; 32]);
    let replace = json!({"master_key": cross_signing_key(&uid("alice"), "master", &new_master)});
    let (s, v) = alice1
        .post(&format!("{C}/keys/device_signing/upload"), replace.clone())
        .await;
    assert_eq!(s, 401, "{v}");
    assert_eq!(v["flows"], json!([{"stages": ["m.login.password"]}]));
    let session = v["session"].as_str().unwrap();

    // Sign PHONE's device keys with the self-signing key; a bad signature is a failure.
    let mut phone_keys = device_keys(&uid("alice"), "PHONE", &k2);
    phone_keys.as_object_mut().unwrap().remove("signatures");
    let mut bad = phone_keys.clone();
    signed::sign(&mut phone_keys, &uid("alice"), &cs_key_id(&ssk), &ssk).unwrap();
    signed::sign(&mut bad, &uid("alice"), &cs_key_id(&ssk), &usk).unwrap();
    let (s, v) = alice1
        .post(
            &format!("{C}/keys/signatures/upload"),
            json!({uid("alice"): {"PHONE": bad}}),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        v["failures"][uid("alice")]["PHONE"]["errcode"],
        "M_INVALID_SIGNATURE"
    );
    let (s, v) = alice1
        .post(
            &format!("{C}/keys/signatures/upload"),
            json!({uid("alice"): {"PHONE": phone_keys}}),
        )
        .await;
    assert_eq!((s, &v), (200, &json!({"failures": {}})));

    // Bob queries alice: both devices, self-signatures valid, PHONE cross-signed, the
    // display name in `unsigned`, and no user-signing key (it is alice's private one).
    let bob = anon.register("bob", "secret-b").await;
    let (s, q) = bob
        .post(
            &format!("{C}/keys/query"),
            json!({"device_keys": {uid("alice"): []}}),
        )
        .await;
    assert_eq!(s, 200, "{q}");
    let devices = q["device_keys"][uid("alice")].as_object().unwrap();
    assert_eq!(devices.len(), 2);
    for (dev, key) in [(&dev1, &k1), (&dev2, &k2)] {
        signed::verify(
            &devices[dev.as_str()],
            &uid("alice"),
            &KeyId::ed25519(dev).unwrap(),
            &key.verifying_key(),
        )
        .unwrap();
    }
    signed::verify(
        &devices["PHONE"],
        &uid("alice"),
        &cs_key_id(&ssk),
        &ssk.verifying_key(),
    )
    .unwrap();
    assert_eq!(
        devices["PHONE"]["unsigned"]["device_display_name"],
        "Alice's phone"
    );
    signed::verify(
        &q["self_signing_keys"][uid("alice")],
        &uid("alice"),
        &cs_key_id(&master),
        &master.verifying_key(),
    )
    .unwrap();
    assert!(q["master_keys"][uid("alice")].is_object());
    assert!(q["user_signing_keys"].get(uid("alice")).is_none());

    // Bob claims one of alice's one-time keys, then gets the fallback key.
    let claim = json!({"one_time_keys": {uid("alice"): {dev1.clone(): "signed_curve25519"}}});
    let (_, c1) = bob.post(&format!("{C}/keys/claim"), claim.clone()).await;
    let (_, c2) = bob.post(&format!("{C}/keys/claim"), claim).await;
    let first = &c1["one_time_keys"][uid("alice")][&dev1]["signed_curve25519:AAAAAQ"];
    signed::verify(
        first,
        &uid("alice"),
        &KeyId::ed25519(&dev1).unwrap(),
        &k1.verifying_key(),
    )
    .unwrap();
    assert!(
        c2["one_time_keys"][uid("alice")][&dev1]["signed_curve25519:AAAAFB"].is_object(),
        "{c2}"
    );

    // Key changes since the start include alice.
    let (s, ch) = bob.get(&format!("{C}/keys/changes?from=0")).await;
    assert_eq!(s, 200);
    assert!(
        ch["changed"]
            .as_array()
            .unwrap()
            .contains(&json!(uid("alice")))
    );

    // Finish the cross-signing replacement with the password.
    let mut with_auth = replace.clone();
    with_auth["auth"] = json!({"type": "m.login.password", "session": session, "identifier": {"type": "m.id.user", "user": "alice"}, "password": "secret-a"});
    let (s, v) = alice1
        .post(&format!("{C}/keys/device_signing/upload"), with_auth)
        .await;
    assert_eq!(s, 200, "{v}");
    let (_, q) = bob
        .post(
            &format!("{C}/keys/query"),
            json!({"device_keys": {uid("alice"): ["PHONE"]}}),
        )
        .await;
    let new_public = b64::encode(new_master.verifying_key().as_bytes());
    assert_eq!(
        q["master_keys"][uid("alice")]["keys"][format!("ed25519:{new_public}")],
        json!(new_public)
    );
    // The new identity has no self-signing key, so the old cross-signature is gone.
    assert!(
        q["device_keys"][uid("alice")]["PHONE"]["signatures"][uid("alice")]
            .get(cs_key_id(&ssk).as_str())
            .is_none()
    );

    // Third device, deleted through /delete_devices with UIA.
    let (alice3, dev3) = anon.login("@alice:roam.test", "secret-a", None).await;
    let (s, v) = alice1
        .post(&format!("{C}/delete_devices"), json!({"devices": [dev3]}))
        .await;
    assert_eq!(s, 401);
    let auth = json!({"type": "m.login.password", "session": v["session"], "user": "alice", "password": "secret-a"});
    let (s, _) = alice1
        .post(
            &format!("{C}/delete_devices"),
            json!({"devices": [dev3], "auth": auth}),
        )
        .await;
    assert_eq!(s, 200);
    assert_err(
        &alice3.get(&format!("{C}/account/whoami")).await,
        401,
        "M_UNKNOWN_TOKEN",
    );

    // Restart on the same data directory.
    server.stop().await;
    let server = start_on(&backend, dir.path(), |_| {}).await;
    let anon = server.client();
    let alice1 = alice1.clone_to(&server.base);
    let alice2 = alice2.clone_to(&server.base);
    let bob = bob.clone_to(&server.base);
    let (_, keys_after) = anon.get("/_matrix/key/v2/server").await;
    assert_eq!(
        check_server_keys(&keys_after),
        server_key,
        "the signing key survives a restart"
    );
    let (s, who) = alice2.get(&format!("{C}/account/whoami")).await;
    assert_eq!((s, who["device_id"].as_str()), (200, Some("PHONE")));
    let (_, list) = alice1.get(&format!("{C}/devices")).await;
    let mut ids: Vec<&str> = list["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["device_id"].as_str().unwrap())
        .collect();
    ids.sort();
    let mut expected = vec![dev1.as_str(), "PHONE"];
    expected.sort();
    assert_eq!(ids, expected);
    let (_, q) = bob
        .post(
            &format!("{C}/keys/query"),
            json!({"device_keys": {uid("alice"): []}}),
        )
        .await;
    signed::verify(
        &q["device_keys"][uid("alice")]["PHONE"],
        &uid("alice"),
        &KeyId::ed25519("PHONE").unwrap(),
        &k2.verifying_key(),
    )
    .unwrap();
    anon.login("alice", "secret-a", None).await;
    let r = anon
        .post(
            &format!("{C}/register"),
            json!({"username": "alice", "password": "x"}),
        )
        .await;
    assert_err(&r, 400, "M_USER_IN_USE");

    // Logout revokes; logout/all revokes every session.
    let (s, _) = alice2.post(&format!("{C}/logout"), json!({})).await;
    assert_eq!(s, 200);
    assert_err(
        &alice2.get(&format!("{C}/account/whoami")).await,
        401,
        "M_UNKNOWN_TOKEN",
    );
    let (s, _) = alice1.post(&format!("{C}/logout/all"), json!({})).await;
    assert_eq!(s, 200);
    assert_err(
        &alice1.get(&format!("{C}/account/whoami")).await,
        401,
        "M_UNKNOWN_TOKEN",
    );
    let (_, q) = bob
        .post(
            &format!("{C}/keys/query"),
            json!({"device_keys": {uid("alice"): []}}),
        )
        .await;
    assert_eq!(
        q["device_keys"][uid("alice")],
        json!({}),
        "logged-out devices' keys are gone"
    );
    server.stop().await;
}

#[tokio::test]
async fn errors_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |c| {
        c.max_body_bytes = 4096;
        c.rate_limits.register_per_ip = RateLimit {
            per_second: 0.001,
            burst: 2,
        };
        c.rate_limits.login_per_ip = RateLimit {
            per_second: 0.001,
            burst: 3,
        };
    })
    .await;
    let anon = server.client();
    let http = reqwest::Client::new();
    let url = |p: &str| format!("{}{p}", server.base);

    let raw = |body: &'static str| http.post(url(&format!("{C}/login"))).body(body).send();
    let r = raw("not json").await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["errcode"], "M_NOT_JSON");
    let r = raw("\"a string\"").await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["errcode"], "M_BAD_JSON");
    // A body of `n` bytes to a client-server path.
    let padded = |path: &str, n: usize| {
        http.post(url(&format!("{C}{path}")))
            .body("x".repeat(n))
            .send()
    };
    let r = padded("/keys/upload", 10_000).await.unwrap();
    // On authenticated endpoints the token is checked before the body is read, as in Synapse.
    assert_eq!(r.status(), 401);
    let r = padded("/login", 10_000).await.unwrap();
    assert_eq!(r.status(), 413);
    // The rest of the body is never read, so the connection closes and says so: a client
    // that reused it would see its next request fail.
    assert_eq!(r.headers()["connection"], "close");
    assert_eq!(r.json::<Value>().await.unwrap()["errcode"], "M_TOO_LARGE");
    for _ in 0..3 {
        let r = padded("/login", 10_000_000).await.unwrap();
        assert_eq!(r.status(), 413);
        let r = http.get(url("/_matrix/client/versions")).send().await;
        assert_eq!(
            r.unwrap().status(),
            200,
            "the next request on the same client"
        );
    }

    assert_err(
        &anon.get(&format!("{C}/account/whoami")).await,
        401,
        "M_MISSING_TOKEN",
    );
    let r = anon
        .with_token("roam_0000")
        .get(&format!("{C}/account/whoami"))
        .await;
    assert_err(&r, 401, "M_UNKNOWN_TOKEN");
    assert_eq!(r.1["soft_logout"], false);
    let r = http
        .get(url(&format!("{C}/account/whoami")))
        .header("authorization", "Basic abc")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.json::<Value>().await.unwrap()["errcode"],
        "M_MISSING_TOKEN"
    );
    assert_err(
        &anon.get("/_matrix/client/v3/rooms").await,
        404,
        "M_UNRECOGNIZED",
    );
    assert_err(&anon.get("/nothing/here").await, 404, "M_UNRECOGNIZED");
    assert_err(
        &anon
            .send(reqwest::Method::PATCH, "/_matrix/client/versions", None)
            .await,
        405,
        "M_UNRECOGNIZED",
    );

    // Two registrations fit the per-IP burst (the second UIA round trip counts too).
    let alice = anon.register("alice", "pw").await;
    let r = anon
        .post(
            &format!("{C}/register"),
            json!({"username": "bob", "password": "pw"}),
        )
        .await;
    assert_err(&r, 429, "M_LIMIT_EXCEEDED");
    assert!(r.1["retry_after_ms"].as_u64().unwrap() > 0);

    // Query parameter token, device errors.
    let token = alice.token.clone().unwrap();
    let (s, _) = anon
        .get(&format!("{C}/account/whoami?access_token={token}"))
        .await;
    assert_eq!(s, 200);
    assert_err(
        &alice.get(&format!("{C}/devices/NOSUCH")).await,
        404,
        "M_NOT_FOUND",
    );
    assert_err(
        &alice
            .put(&format!("{C}/devices/NOSUCH"), json!({"display_name": "x"}))
            .await,
        404,
        "M_NOT_FOUND",
    );
    assert_err(
        &alice.post(&format!("{C}/keys/query"), json!({})).await,
        400,
        "M_MISSING_PARAM",
    );
    assert_err(
        &alice
            .post(
                &format!("{C}/keys/claim"),
                json!({"one_time_keys": {"@x:roam.test": {"D": 1}}}),
            )
            .await,
        400,
        "M_INVALID_PARAM",
    );
    assert_err(
        &alice
            .post(&format!("{C}/keys/upload"), json!({"device_keys": "nope"}))
            .await,
        400,
        "M_BAD_JSON",
    );
    assert_err(&alice.post(&format!("{C}/keys/device_signing/upload"), json!({"self_signing_key": {"user_id": "@alice:roam.test", "usage": ["self_signing"], "keys": {"ed25519:AAAA": "AAAA"}}})).await, 400, "M_INVALID_PARAM");
    assert_err(
        &alice.get(&format!("{C}/keys/changes")).await,
        400,
        "M_MISSING_PARAM",
    );

    // Login: per-IP burst of 3, then 429.
    for _ in 0..3 {
        let r = anon
            .post(
                &format!("{C}/login"),
                json!({"type": "m.login.password", "user": "alice", "password": "wrong"}),
            )
            .await;
        assert_err(&r, 403, "M_FORBIDDEN");
    }
    let r = anon
        .post(
            &format!("{C}/login"),
            json!({"type": "m.login.password", "user": "alice", "password": "pw"}),
        )
        .await;
    assert_err(&r, 429, "M_LIMIT_EXCEEDED");
    server.stop().await;
}

trait Rebase {
    fn clone_to(&self, base: &str) -> Self;
}

impl Rebase for common::Client {
    fn clone_to(&self, base: &str) -> Self {
        common::Client {
            base: base.to_owned(),
            ..self.clone()
        }
    }
}
