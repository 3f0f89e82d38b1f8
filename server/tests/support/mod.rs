//! Helpers shared by the handler tests: an app on an in-memory store, requests through
//! `tower::ServiceExt::oneshot`, registration, and the checks every test makes.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use ed25519_dalek::SigningKey;
use roam_identity_core::{KeyId, ServerName, b64, signed};
use roam_server::config::ServerConfig;
use roam_server::{AppState, RateLimits, RedbStore, router};
use serde_json::{Value, json};
use tower::ServiceExt;

pub fn config(f: impl FnOnce(&mut ServerConfig)) -> ServerConfig {
    let mut c = ServerConfig::for_server_name(
        ServerName::parse("test.example").unwrap(),
        "127.0.0.1:0".parse().unwrap(),
        "/nonexistent".into(),
    );
    c.rate_limits = RateLimits::unlimited();
    f(&mut c);
    c
}

pub fn app_with(f: impl FnOnce(&mut ServerConfig)) -> (Router, AppState) {
    let store = Arc::new(RedbStore::in_memory().unwrap());
    let state = AppState::new(config(f), store).unwrap();
    (router(state.clone()), state)
}

pub fn app() -> Router {
    app_with(|_| {}).0
}

pub async fn call_raw(
    app: &Router,
    method: Method,
    uri: &str,
    token: Option<&str>,
    body: Body,
) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = app.clone().oneshot(req.body(body).unwrap()).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, value)
}

pub async fn call(
    app: &Router,
    method: Method,
    uri: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let body = body.map_or(Body::empty(), |b| Body::from(b.to_string()));
    call_raw(app, method, uri, token, body).await
}

pub const C: &str = "/_matrix/client/v3";

/// Registers `name` with password `pw` through the dummy stage; returns (token, device_id).
pub async fn register(app: &Router, name: &str) -> (String, String) {
    let (s, v) = call(
        app,
        Method::POST,
        &format!("{C}/register"),
        None,
        Some(json!({"username": name, "password": "pw", "auth": {"type": "m.login.dummy"}})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    (
        v["access_token"].as_str().unwrap().into(),
        v["device_id"].as_str().unwrap().into(),
    )
}

pub fn assert_err(got: &(StatusCode, Value), status: StatusCode, errcode: &str) {
    assert_eq!(got.0, status, "{}", got.1);
    assert_eq!(got.1["errcode"], errcode, "{}", got.1);
    assert!(got.1["error"].is_string(), "{}", got.1);
}

pub fn device_keys(user: &str, device: &str, key: &SigningKey) -> Value {
    let mut keys = json!({
        "user_id": user,
        "device_id": device,
        "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
        "keys": {
            format!("curve25519:{device}"): b64::encode(&[9u8; 32]),
            format!("ed25519:{device}"): b64::encode(key.verifying_key().as_bytes()),
        },
    });
    signed::sign(&mut keys, user, &KeyId::ed25519(device).unwrap(), key).unwrap();
    keys
}

/// `GET uri`.
pub async fn get(app: &Router, uri: &str, token: Option<&str>) -> (StatusCode, Value) {
    call(app, Method::GET, uri, token, None).await
}

/// `POST uri` with a JSON body.
pub async fn post(
    app: &Router,
    uri: &str,
    token: Option<&str>,
    body: Value,
) -> (StatusCode, Value) {
    call(app, Method::POST, uri, token, Some(body)).await
}

/// `PUT uri` with a JSON body.
pub async fn put(app: &Router, uri: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
    call(app, Method::PUT, uri, token, Some(body)).await
}
