//! Handler tests: the router driven with `tower::ServiceExt::oneshot` on an in-memory store.
//! Each test checks status, `errcode` and body shape as Synapse would answer.

mod support;

use axum::body::Body;
use axum::http::{Method, StatusCode};
use ed25519_dalek::SigningKey;
use roam_identity_core::{KeyId, b64, signed};
use roam_server::config::{RateLimit, RegistrationMode};
use roam_server::store::RegistrationToken;
use serde_json::json;
use support::*;

#[tokio::test]
async fn versions_and_unknown_routes() {
    let app = app();
    let (s, v) = get(&app, "/_matrix/client/versions", None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(v["versions"].as_array().unwrap().contains(&json!("v1.11")));
    assert_err(
        &get(&app, "/_matrix/client/v3/nope", None).await,
        StatusCode::NOT_FOUND,
        "M_UNRECOGNIZED",
    );
    assert_err(
        &call(&app, Method::DELETE, &format!("{C}/login"), None, None).await,
        StatusCode::METHOD_NOT_ALLOWED,
        "M_UNRECOGNIZED",
    );
    // r0 is served by the same handlers.
    let (s, v) = get(&app, "/_matrix/client/r0/login", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["flows"][0]["type"], "m.login.password");
}

#[tokio::test]
async fn register_runs_uia_and_checks_names() {
    let app = app();
    let uri = format!("{C}/register");
    let (s, v) = post(
        &app,
        &uri,
        None,
        json!({"username": "alice", "password": "pw"}),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(v["flows"], json!([{"stages": ["m.login.dummy"]}]));
    let session = v["session"].as_str().unwrap().to_owned();
    let (s, v) = post(&app, &uri, None, json!({
        "username": "Alice", "password": "pw", "device_id": "MYDEVICE",
        "initial_device_display_name": "laptop", "auth": {"type": "m.login.dummy", "session": session},
    })).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["user_id"], "@alice:test.example");
    assert_eq!(v["device_id"], "MYDEVICE");
    let token = v["access_token"].as_str().unwrap();
    let (_, d) = get(&app, &format!("{C}/devices/MYDEVICE"), Some(token)).await;
    assert_eq!(d["display_name"], "laptop");

    let taken = post(
        &app,
        &uri,
        None,
        json!({"username": "alice", "password": "pw"}),
    )
    .await;
    assert_err(&taken, StatusCode::BAD_REQUEST, "M_USER_IN_USE");
    for bad in ["al ice", "", "12345", "ä"] {
        let r = post(&app, &uri, None, json!({"username": bad, "password": "pw"})).await;
        assert_err(&r, StatusCode::BAD_REQUEST, "M_INVALID_USERNAME");
    }
    let r = post(&app, &format!("{uri}?kind=guest"), None, json!({})).await;
    assert_err(&r, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    let r = post(&app, &uri, None, json!({"username": 5})).await;
    assert_err(&r, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
    let r = post(
        &app,
        &uri,
        None,
        json!({"username": "bob", "auth": {"type": "m.login.dummy"}}),
    )
    .await;
    assert_err(&r, StatusCode::BAD_REQUEST, "M_MISSING_PARAM");
    // A session of another kind, or an unknown one, is refused.
    let r = post(&app, &uri, None, json!({"username": "bob", "password": "x", "auth": {"type": "m.login.dummy", "session": "nope"}})).await;
    assert_err(&r, StatusCode::BAD_REQUEST, "M_UNKNOWN");

    // inhibit_login: an account but no session.
    let (s, v) = post(&app, &uri, None, json!({"username": "carol", "password": "pw", "inhibit_login": true, "auth": {"type": "m.login.dummy"}})).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["user_id"], "@carol:test.example");
    assert!(v.get("access_token").is_none());

    // No username: one is generated.
    let (s, v) = post(
        &app,
        &uri,
        None,
        json!({"password": "pw", "auth": {"type": "m.login.dummy"}}),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert!(v["user_id"].as_str().unwrap().ends_with(":test.example"));

    let (s, v) = get(&app, &format!("{C}/register/available?username=dave"), None).await;
    assert_eq!((s, v), (StatusCode::OK, json!({"available": true})));
    let r = get(
        &app,
        &format!("{C}/register/available?username=alice"),
        None,
    )
    .await;
    assert_err(&r, StatusCode::BAD_REQUEST, "M_USER_IN_USE");
    let r = get(&app, &format!("{C}/register/available"), None).await;
    assert_err(&r, StatusCode::BAD_REQUEST, "M_MISSING_PARAM");
}

#[tokio::test]
async fn registration_modes() {
    let (app, _) = app_with(|c| c.registration = RegistrationMode::Closed);
    let r = post(
        &app,
        &format!("{C}/register"),
        None,
        json!({"username": "a", "password": "pw"}),
    )
    .await;
    assert_err(&r, StatusCode::FORBIDDEN, "M_FORBIDDEN");

    let (app, state) = app_with(|c| c.registration = RegistrationMode::Token);
    state
        .store()
        .create_registration_token(RegistrationToken {
            token: "letmein".into(),
            uses_allowed: Some(1),
            completed: 0,
            expiry_time: None,
            created_at: 0,
        })
        .unwrap();
    let uri = format!("{C}/register");
    // The dummy stage alone does not complete the token flow.
    let (s, v) = post(
        &app,
        &uri,
        None,
        json!({"username": "a", "password": "pw", "auth": {"type": "m.login.dummy"}}),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(
        v["flows"],
        json!([{"stages": ["m.login.registration_token", "m.login.dummy"]}])
    );
    let (s, v) = post(&app, &uri, None, json!({"username": "a", "password": "pw", "auth": {"type": "m.login.registration_token", "token": "wrong"}})).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(v["errcode"], "M_UNAUTHORIZED");
    let session = v["session"].as_str().unwrap().to_owned();
    let (s, v) = post(&app, &uri, None, json!({"username": "a", "password": "pw", "auth": {"type": "m.login.registration_token", "token": "letmein", "session": session}})).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(v["completed"], json!(["m.login.registration_token"]));
    let (s, v) = post(&app, &uri, None, json!({"username": "a", "password": "pw", "auth": {"type": "m.login.dummy", "session": session}})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        state
            .store()
            .registration_token("letmein")
            .unwrap()
            .unwrap()
            .completed,
        1
    );
    // Used up now.
    let (s, v) = get(
        &app,
        "/_matrix/client/v1/register/m.login.registration_token/validity?token=letmein",
        None,
    )
    .await;
    assert_eq!((s, v), (StatusCode::OK, json!({"valid": false})));
    let (s, v) = post(&app, &uri, None, json!({"username": "b", "password": "pw", "auth": {"type": "m.login.registration_token", "token": "letmein"}})).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(v["errcode"], "M_UNAUTHORIZED");
}

#[tokio::test]
async fn body_errors() {
    let (app, _) = app_with(|c| c.max_body_bytes = 1000);
    let uri = format!("{C}/login");
    assert_err(
        &call_raw(&app, Method::POST, &uri, None, Body::from("{nope")).await,
        StatusCode::BAD_REQUEST,
        "M_NOT_JSON",
    );
    assert_err(
        &call_raw(&app, Method::POST, &uri, None, Body::from("")).await,
        StatusCode::BAD_REQUEST,
        "M_NOT_JSON",
    );
    assert_err(
        &call_raw(&app, Method::POST, &uri, None, Body::from("[]")).await,
        StatusCode::BAD_REQUEST,
        "M_BAD_JSON",
    );
    assert_err(
        &call_raw(&app, Method::POST, &uri, None, Body::from("{\"type\": 1}")).await,
        StatusCode::BAD_REQUEST,
        "M_BAD_JSON",
    );
    let big = format!("{{\"type\": \"{}\"}}", "a".repeat(2000));
    assert_err(
        &call_raw(&app, Method::POST, &uri, None, Body::from(big)).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "M_TOO_LARGE",
    );
    assert_err(
        &post(&app, &uri, None, json!({"type": "m.login.sso"})).await,
        StatusCode::BAD_REQUEST,
        "M_UNKNOWN",
    );
}

#[tokio::test]
async fn tokens_login_logout() {
    let app = app();
    let (token, device) = register(&app, "alice").await;
    let who = format!("{C}/account/whoami");
    assert_err(
        &get(&app, &who, None).await,
        StatusCode::UNAUTHORIZED,
        "M_MISSING_TOKEN",
    );
    let bad = get(&app, &who, Some("roam_bogus")).await;
    assert_err(&bad, StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN");
    assert_eq!(bad.1["soft_logout"], false);
    let (s, v) = get(&app, &format!("{who}?access_token={token}"), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        v,
        json!({"user_id": "@alice:test.example", "device_id": device, "is_guest": false})
    );

    let login = format!("{C}/login");
    for body in [
        json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"}, "password": "pw"}),
        json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "@alice:test.example"}, "password": "pw"}),
        json!({"type": "m.login.password", "user": "ALICE", "password": "pw", "device_id": "SECOND", "initial_device_display_name": "phone"}),
    ] {
        let (s, v) = post(&app, &login, None, body).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["user_id"], "@alice:test.example");
    }
    for body in [
        json!({"type": "m.login.password", "user": "alice", "password": "nope"}),
        json!({"type": "m.login.password", "user": "nobody", "password": "pw"}),
        json!({"type": "m.login.password", "user": "@alice:other.example", "password": "pw"}),
    ] {
        assert_err(
            &post(&app, &login, None, body).await,
            StatusCode::FORBIDDEN,
            "M_FORBIDDEN",
        );
    }
    assert_err(
        &post(
            &app,
            &login,
            None,
            json!({"type": "m.login.password", "user": "alice"}),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "M_MISSING_PARAM",
    );

    // Logging in again with the same device ID revokes that device's previous token.
    let (_, first) = post(&app, &login, None, json!({"type": "m.login.password", "user": "alice", "password": "pw", "device_id": "SECOND"})).await;
    let (_, v) = get(&app, &format!("{C}/devices"), Some(&token)).await;
    assert_eq!(v["devices"].as_array().unwrap().len(), 4, "{v}");
    let second = first["access_token"].as_str().unwrap();
    let (_, d) = get(&app, &format!("{C}/devices/SECOND"), Some(second)).await;
    assert_eq!(d["display_name"], "phone");

    let (s, _) = post(&app, &format!("{C}/logout"), Some(second), json!({})).await;
    assert_eq!(s, StatusCode::OK);
    assert_err(
        &get(&app, &who, Some(second)).await,
        StatusCode::UNAUTHORIZED,
        "M_UNKNOWN_TOKEN",
    );
    let r = get(&app, &format!("{C}/devices/SECOND"), Some(&token)).await;
    assert_err(&r, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    let (s, _) = post(&app, &format!("{C}/logout/all"), Some(&token), json!({})).await;
    assert_eq!(s, StatusCode::OK);
    assert_err(
        &get(&app, &who, Some(&token)).await,
        StatusCode::UNAUTHORIZED,
        "M_UNKNOWN_TOKEN",
    );
}

#[tokio::test]
async fn rate_limits_answer_429_with_retry_after() {
    let tight = RateLimit {
        per_second: 0.001,
        burst: 2,
    };
    let (app, _) = app_with(|c| {
        c.rate_limits.login_per_account = tight;
        c.rate_limits.register_per_ip = RateLimit {
            per_second: 0.001,
            burst: 3,
        };
    });
    let (_token, _) = register(&app, "alice").await;
    let login = format!("{C}/login");
    let body = json!({"type": "m.login.password", "user": "alice", "password": "wrong"});
    for _ in 0..2 {
        assert_err(
            &post(&app, &login, None, body.clone()).await,
            StatusCode::FORBIDDEN,
            "M_FORBIDDEN",
        );
    }
    let limited = post(&app, &login, None, body).await;
    assert_err(&limited, StatusCode::TOO_MANY_REQUESTS, "M_LIMIT_EXCEEDED");
    assert!(limited.1["retry_after_ms"].as_u64().unwrap() > 0);
    // Another account is not affected by alice's limit.
    let other = post(
        &app,
        &login,
        None,
        json!({"type": "m.login.password", "user": "bob", "password": "x"}),
    )
    .await;
    assert_err(&other, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    // Registration: one was used above, two more fit the burst of 3.
    register(&app, "b1").await;
    register(&app, "b2").await;
    let r = post(
        &app,
        &format!("{C}/register"),
        None,
        json!({"username": "b3", "password": "pw"}),
    )
    .await;
    assert_err(&r, StatusCode::TOO_MANY_REQUESTS, "M_LIMIT_EXCEEDED");
}

#[tokio::test]
async fn devices_need_password_uia_to_delete() {
    let app = app();
    let (token, device) = register(&app, "alice").await;
    let (other_token, _) = register(&app, "bob").await;
    let uri = format!("{C}/devices/{device}");
    let (s, v) = put(&app, &uri, Some(&token), json!({"display_name": "renamed"})).await;
    assert_eq!((s, v), (StatusCode::OK, json!({})));
    let (_, v) = get(&app, &uri, Some(&token)).await;
    assert_eq!(v["display_name"], "renamed");
    let r = put(
        &app,
        &uri,
        Some(&token),
        json!({"display_name": "x".repeat(101)}),
    )
    .await;
    assert_err(&r, StatusCode::PAYLOAD_TOO_LARGE, "M_TOO_LARGE");
    let r = put(
        &app,
        &format!("{C}/devices/NOPE"),
        Some(&token),
        json!({"display_name": "x"}),
    )
    .await;
    assert_err(&r, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    // Bob cannot see alice's device.
    let r = get(&app, &uri, Some(&other_token)).await;
    assert_err(&r, StatusCode::NOT_FOUND, "M_NOT_FOUND");

    let (s, v) = call(&app, Method::DELETE, &uri, Some(&token), None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(v["flows"], json!([{"stages": ["m.login.password"]}]));
    let session = v["session"].as_str().unwrap().to_owned();
    // Wrong password: challenge again, with the error.
    let wrong = json!({"auth": {"type": "m.login.password", "session": session, "identifier": {"type": "m.id.user", "user": "alice"}, "password": "bad"}});
    let (s, v) = call(&app, Method::DELETE, &uri, Some(&token), Some(wrong)).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(v["errcode"], "M_FORBIDDEN");
    // Bob's correct password does not authorise deleting alice's device.
    let bobs = json!({"auth": {"type": "m.login.password", "session": session, "user": "bob", "password": "pw"}});
    assert_eq!(
        call(&app, Method::DELETE, &uri, Some(&token), Some(bobs))
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    let right = json!({"auth": {"type": "m.login.password", "session": session, "identifier": {"type": "m.id.user", "user": "alice"}, "password": "pw"}});
    let (s, _) = call(&app, Method::DELETE, &uri, Some(&token), Some(right)).await;
    assert_eq!(s, StatusCode::OK);
    assert_err(
        &get(&app, &format!("{C}/account/whoami"), Some(&token)).await,
        StatusCode::UNAUTHORIZED,
        "M_UNKNOWN_TOKEN",
    );

    let r = post(
        &app,
        &format!("{C}/delete_devices"),
        Some(&other_token),
        json!({}),
    )
    .await;
    assert_err(&r, StatusCode::BAD_REQUEST, "M_MISSING_PARAM");
    let r = post(
        &app,
        &format!("{C}/delete_devices"),
        Some(&other_token),
        json!({"devices": [1]}),
    )
    .await;
    assert_err(&r, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
}

#[tokio::test]
async fn key_upload_checks_signatures_and_ownership() {
    let app = app();
    let (token, device) = register(&app, "alice").await;
    let key = SigningKey::from_bytes(&[1u8; 32]);
    let uri = format!("{C}/keys/upload");

    let mut tampered = device_keys("@alice:test.example", &device, &key);
    tampered["algorithms"] = json!(["m.megolm.v1.aes-sha2"]);
    let r = post(&app, &uri, Some(&token), json!({"device_keys": tampered})).await;
    assert_err(&r, StatusCode::BAD_REQUEST, "M_INVALID_SIGNATURE");
    let other_device = device_keys("@alice:test.example", "OTHER", &key);
    let r = post(
        &app,
        &uri,
        Some(&token),
        json!({"device_keys": other_device}),
    )
    .await;
    assert_err(&r, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
    let other_user = device_keys("@bob:test.example", &device, &key);
    let r = post(&app, &uri, Some(&token), json!({"device_keys": other_user})).await;
    assert_err(&r, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");

    let good = device_keys("@alice:test.example", &device, &key);
    let mut otk = json!({"key": b64::encode(&[5u8; 32])});
    signed::sign(
        &mut otk,
        "@alice:test.example",
        &KeyId::ed25519(&device).unwrap(),
        &key,
    )
    .unwrap();
    let (s, v) = post(&app, &uri, Some(&token), json!({
        "device_keys": good,
        "one_time_keys": {"signed_curve25519:AAAAAQ": otk, "signed_curve25519:AAAAAg": otk},
        "org.matrix.msc2732.fallback_keys": {"signed_curve25519:AAAAAw": {"key": "x", "fallback": true}},
    })).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["one_time_key_counts"]["signed_curve25519"], 2);
    // Same ID, different content.
    let r = post(
        &app,
        &uri,
        Some(&token),
        json!({"one_time_keys": {"signed_curve25519:AAAAAQ": {"key": "other"}}}),
    )
    .await;
    assert_err(&r, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
    // A signed one-time key with a bad signature.
    let mut bad_otk = otk.clone();
    bad_otk["key"] = json!("changed");
    let r = post(
        &app,
        &uri,
        Some(&token),
        json!({"one_time_keys": {"signed_curve25519:AAAABA": bad_otk}}),
    )
    .await;
    assert_err(&r, StatusCode::BAD_REQUEST, "M_INVALID_SIGNATURE");

    // Claim both one-time keys, then the fallback key (repeatedly).
    let claim =
        json!({"one_time_keys": {"@alice:test.example": {device.clone(): "signed_curve25519"}}});
    let mut claimed = Vec::new();
    for _ in 0..4 {
        let (s, v) = post(
            &app,
            &format!("{C}/keys/claim"),
            Some(&token),
            claim.clone(),
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        let keys = v["one_time_keys"]["@alice:test.example"][&device]
            .as_object()
            .unwrap()
            .clone();
        claimed.push(keys.keys().next().unwrap().clone());
    }
    assert_eq!(
        claimed,
        [
            "signed_curve25519:AAAAAQ",
            "signed_curve25519:AAAAAg",
            "signed_curve25519:AAAAAw",
            "signed_curve25519:AAAAAw"
        ]
    );
    let r = post(
        &app,
        &format!("{C}/keys/claim"),
        Some(&token),
        json!({"one_time_keys": []}),
    )
    .await;
    assert_err(&r, StatusCode::BAD_REQUEST, "M_BAD_JSON");

    let (s, v) = post(
        &app,
        &format!("{C}/keys/query"),
        Some(&token),
        json!({"device_keys": {"@alice:test.example": [], "@x:remote.example": []}}),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let got = &v["device_keys"]["@alice:test.example"][&device];
    signed::verify(
        got,
        "@alice:test.example",
        &KeyId::ed25519(&device).unwrap(),
        &key.verifying_key(),
    )
    .unwrap();
    assert!(v["failures"]["remote.example"].is_object());
    let r = post(
        &app,
        &format!("{C}/keys/query"),
        Some(&token),
        json!({"device_keys": {"not a user": []}}),
    )
    .await;
    assert_err(&r, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
    let (s, v) = get(
        &app,
        &format!("{C}/keys/changes?from=0&to=100"),
        Some(&token),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["changed"], json!(["@alice:test.example"]));
    let r = get(&app, &format!("{C}/keys/changes?from=x"), Some(&token)).await;
    assert_err(&r, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
}

#[tokio::test]
async fn server_keys_and_well_known() {
    let (app, state) = app_with(|_| {});
    let (s, v) = get(&app, "/_matrix/key/v2/server", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["server_name"], "test.example");
    let key_id = state.server_key().key_id.clone();
    let public =
        b64::decode_array::<32>(v["verify_keys"][key_id.as_str()]["key"].as_str().unwrap())
            .unwrap();
    let vk = ed25519_dalek::VerifyingKey::from_bytes(&public).unwrap();
    signed::verify(&v, "test.example", &key_id, &vk).unwrap();
    assert!(v["valid_until_ts"].as_u64().unwrap() > roam_server::state::now_ms());
    let (s, v2) = get(&app, &format!("/_matrix/key/v2/server/{key_id}"), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v2["verify_keys"], v["verify_keys"]);
    let (_, v) = get(&app, "/.well-known/matrix/server", None).await;
    assert_eq!(v, json!({"m.server": "test.example:0"}));
    let (_, v) = get(&app, "/.well-known/matrix/client", None).await;
    assert_eq!(
        v,
        json!({"m.homeserver": {"base_url": "https://test.example"}})
    );
}
