//! Every `POST /_roam/v1/*` request body, through the real router (`tower::ServiceExt::oneshot`
//! on an in-memory store). The first byte picks the endpoint, the rest is the body:
//! 0 `/accounts/{did}/ops` of an account hosted here, 1 `/login/challenge`, 2 `/account/did`
//! with a password account's token, 3 `/migrate`, 4 `/accounts/{did}/ops` of an unknown DID,
//! 5 `/account/did` without a token.
//!
//! Invariants: no panic; never a 5xx, except `502 ROAM_UNREACHABLE` from `/migrate` (this
//! harness has no federation, so the old server is unreachable by construction); every
//! non-2xx answer is a Matrix error (a JSON object with a string `errcode`).
//!
//! The state persists across inputs (a fresh store per input would cost an argon2 hash).
//! With `ROAM_FUZZ_SEEDS=DIR` set, the first run writes one valid request per endpoint to DIR.
#![no_main]

use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request};
use libfuzzer_sys::fuzz_target;
use roam_fuzz::{GENESIS_AT, Keys, add_device, genesis};
use roam_identity_core::log::{next_op, verify_log};
use roam_identity_core::{Did, ServerName};
use roam_server::config::{OpLimits, ServerConfig};
use roam_server::{AppState, RateLimits, RedbStore, router};
use serde_json::{Value, json};
use tower::ServiceExt;

const SERVER: &str = "fuzz.test";

struct Harness {
    rt: tokio::runtime::Runtime,
    app: Router,
    token: String,
    hosted: Did,
    unknown: Did,
}

fn call(h_rt: &tokio::runtime::Runtime, app: &Router, req: Request<Body>) -> (u16, Vec<u8>) {
    h_rt.block_on(async {
        let resp = app.clone().oneshot(req).await.expect("infallible");
        let status = resp.status().as_u16();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .expect("the body reads");
        (status, bytes.to_vec())
    })
}

fn post(path: &str, token: Option<&str>, body: Vec<u8>) -> Request<Body> {
    let mut r = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header("content-type", "application/json");
    if let Some(t) = token {
        r = r.header("authorization", format!("Bearer {t}"));
    }
    r.body(Body::from(body)).unwrap()
}

fn harness() -> &'static Harness {
    static H: OnceLock<Harness> = OnceLock::new();
    H.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut config = ServerConfig::for_server_name(
            ServerName::parse(SERVER).unwrap(),
            "127.0.0.1:0".parse().unwrap(),
            "/nonexistent".into(),
        );
        config.rate_limits = RateLimits::unlimited();
        config.op_limits = OpLimits {
            per_hour: u32::MAX,
            per_day: u32::MAX,
        };
        let store = Arc::new(RedbStore::in_memory().unwrap());
        let app = router(AppState::new(config, store).unwrap());

        // A password account (for /account/did) ...
        let reg = json!({"username": "pw", "password": "pw-fuzz-1",
                         "auth": {"type": "m.login.dummy"}});
        let (s, b) = call(
            &rt,
            &app,
            post("/_matrix/client/v3/register", None, reg.to_string().into()),
        );
        assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
        let token = serde_json::from_slice::<Value>(&b).unwrap()["access_token"]
            .as_str()
            .unwrap()
            .to_owned();
        // ... and a portable one, migrated in with its log.
        let alice = Keys::new(1);
        let g = genesis(&alice, &format!("@alice:{SERVER}"), &[SERVER], GENESIS_AT);
        let hosted = g.op.did.clone();
        let m = json!({"did": hosted.as_str(), "log": [g.value], "localpart": "alice"});
        let (s, b) = call(
            &rt,
            &app,
            post("/_roam/v1/migrate", None, m.to_string().into()),
        );
        assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
        let unknown = genesis(
            &Keys::new(3),
            "@carol:elsewhere.test",
            &["elsewhere.test"],
            GENESIS_AT,
        );

        if let Ok(dir) = std::env::var("ROAM_FUZZ_SEEDS") {
            let state = verify_log(std::slice::from_ref(&g), None, roam_fuzz::NOW)
                .unwrap()
                .state;
            let op = next_op(&state, GENESIS_AT + 1000, add_device("FUZZ", 9)).sign(&alice.update);
            let pw_genesis = genesis(
                &Keys::new(2),
                &format!("@pw:{SERVER}"),
                &[SERVER],
                GENESIS_AT,
            );
            let bob = genesis(
                &Keys::new(4),
                &format!("@bob:{SERVER}"),
                &[SERVER],
                GENESIS_AT,
            );
            let seeds: [(u8, Value); 6] = [
                (0, json!({"ops": [op.value]})),
                (1, json!({"user_id": format!("@alice:{SERVER}")})),
                (2, json!({"ops": [pw_genesis.value]})),
                (
                    3,
                    json!({"did": bob.op.did.as_str(), "log": [bob.value], "localpart": "bob"}),
                ),
                (4, json!({"ops": [unknown.value]})),
                (5, json!({"ops": []})),
            ];
            std::fs::create_dir_all(&dir).unwrap();
            for (sel, body) in seeds {
                let mut bytes = vec![sel];
                bytes.extend(body.to_string().into_bytes());
                std::fs::write(format!("{dir}/seed-{sel}"), bytes).unwrap();
            }
        }
        Harness {
            rt,
            app,
            token,
            hosted,
            unknown: unknown.op.did,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let h = harness();
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    let (path, token) = match sel % 6 {
        0 => (format!("/_roam/v1/accounts/{}/ops", h.hosted), None),
        1 => ("/_roam/v1/login/challenge".to_owned(), None),
        2 => ("/_roam/v1/account/did".to_owned(), Some(h.token.as_str())),
        3 => ("/_roam/v1/migrate".to_owned(), None),
        4 => (format!("/_roam/v1/accounts/{}/ops", h.unknown), None),
        _ => ("/_roam/v1/account/did".to_owned(), None),
    };
    let (status, answer) = call(&h.rt, &h.app, post(&path, token, body.to_vec()));
    let text = String::from_utf8_lossy(&answer);
    let json: Value = serde_json::from_slice(&answer).unwrap_or(Value::Null);
    if status >= 500 {
        let unreachable =
            path.ends_with("/migrate") && status == 502 && json["errcode"] == "ROAM_UNREACHABLE";
        assert!(unreachable, "POST {path} → {status}: {text}");
    }
    if status >= 300 {
        assert!(
            json["errcode"].is_string(),
            "POST {path} → {status} without a Matrix error: {text}"
        );
    }
});
