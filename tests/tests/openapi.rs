//! Conformance of a real homeserver to `spec/openapi.json`:
//!
//! - every path and method of the spec is routed (never `M_UNRECOGNIZED`) and answers only
//!   documented statuses and errcodes (`x-errcodes`);
//! - the main success path of every `/_roam/v1` operation (register with a genesis → bundle →
//!   log → ops → export → challenge → key login → migrate/status → forks → identifiers, plus
//!   adopting a DID), and of every Matrix client-server, key, discovery, health and metrics
//!   endpoint, answers a body that validates against the documented schema;
//! - every route of `server/src/routes/mod.rs` is documented, and every documented one is
//!   routed (`/_matrix/client/r0` serves the v3 routes and is documented once, as v3).
//!
//! The validator covers the JSON Schema subset the spec is restricted to (`type`,
//! `required`, `properties`, `additionalProperties`, `items`, `enum`, `oneOf`, `$ref`,
//! `minimum`, `maximum`, plus annotations); any other keyword in the spec fails the test.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use common::{
    Owner, SERVER_NAME, TestServer, add_device, assert_err, enc, move_to, now, start,
    start_federated,
};
use ed25519_dalek::{Signer, SigningKey};
use roam_identity_core::log::{Action, next_op};
use roam_identity_core::login::login_message;
use roam_identity_core::{ServerName, UserId, b64};
use roam_server::RegistrationMode;
use roam_server::portable::oprate::OpLimits;
use serde_json::{Value, json};

const METHODS: &[&str] = &["get", "put", "post", "delete", "patch"];
/// Keywords the validator checks.
const VALIDATED: &[&str] = &[
    "type",
    "required",
    "properties",
    "additionalProperties",
    "items",
    "enum",
    "oneOf",
    "$ref",
    "minimum",
    "maximum",
];
/// Keywords that only annotate.
const ANNOTATIONS: &[&str] = &[
    "description",
    "title",
    "default",
    "example",
    "examples",
    "discriminator",
];

fn load_spec() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../spec/openapi.json");
    let text = std::fs::read_to_string(path).expect("spec/openapi.json");
    serde_json::from_str(&text).expect("spec/openapi.json is JSON")
}

// ---------------------------------------------------------------------------------------
// The schema subset.

/// Resolves a local `$ref` (`#/components/schemas/X`).
fn resolve<'a>(spec: &'a Value, reference: &str) -> &'a Value {
    let pointer = reference
        .strip_prefix('#')
        .unwrap_or_else(|| panic!("only local $ref: {reference}"));
    spec.pointer(pointer)
        .unwrap_or_else(|| panic!("dangling $ref {reference}"))
}

fn type_matches(t: &str, v: &Value) -> bool {
    match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        other => panic!("unknown type {other:?} in the spec"),
    }
}

/// Validates `v` against `schema`; the error names the JSON path at fault.
fn validate(spec: &Value, schema: &Value, v: &Value, at: &str) -> Result<(), String> {
    let s = schema
        .as_object()
        .unwrap_or_else(|| panic!("schema at {at} is not an object"));
    for k in s.keys() {
        assert!(
            VALIDATED.contains(&k.as_str()) || ANNOTATIONS.contains(&k.as_str()),
            "schema keyword {k:?} (at {at}) is outside the subset the spec is kept to"
        );
    }
    if let Some(r) = s.get("$ref") {
        validate(spec, resolve(spec, r.as_str().unwrap()), v, at)?;
    }
    if let Some(t) = s.get("type") {
        let ok = match t {
            Value::String(t) => type_matches(t, v),
            Value::Array(ts) => ts.iter().any(|t| type_matches(t.as_str().unwrap(), v)),
            _ => panic!("bad type keyword at {at}"),
        };
        if !ok {
            return Err(format!("{at}: expected type {t}, got {v}"));
        }
    }
    if let Some(e) = s.get("enum")
        && !e.as_array().unwrap().contains(v)
    {
        return Err(format!("{at}: {v} is not one of {e}"));
    }
    if let Some(n) = v.as_f64() {
        if let Some(min) = s.get("minimum").and_then(Value::as_f64)
            && n < min
        {
            return Err(format!("{at}: {n} < minimum {min}"));
        }
        if let Some(max) = s.get("maximum").and_then(Value::as_f64)
            && n > max
        {
            return Err(format!("{at}: {n} > maximum {max}"));
        }
    }
    if let Some(obj) = v.as_object() {
        if let Some(req) = s.get("required") {
            for r in req.as_array().unwrap() {
                let r = r.as_str().unwrap();
                if !obj.contains_key(r) {
                    return Err(format!("{at}: missing required property {r:?} in {v}"));
                }
            }
        }
        let props = s.get("properties").and_then(Value::as_object);
        for (k, val) in obj {
            match props.and_then(|p| p.get(k)) {
                Some(ps) => validate(spec, ps, val, &format!("{at}.{k}"))?,
                None => match s.get("additionalProperties") {
                    Some(Value::Bool(false)) => {
                        return Err(format!("{at}: property {k:?} is not allowed"));
                    }
                    Some(ap @ Value::Object(_)) => validate(spec, ap, val, &format!("{at}.{k}"))?,
                    _ => {}
                },
            }
        }
    }
    if let (Some(items), Some(arr)) = (s.get("items"), v.as_array()) {
        for (i, item) in arr.iter().enumerate() {
            validate(spec, items, item, &format!("{at}[{i}]"))?;
        }
    }
    if let Some(one_of) = s.get("oneOf") {
        let errors: Vec<String> = one_of
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|sub| validate(spec, sub, v, at).err())
            .collect();
        let matched = one_of.as_array().unwrap().len() - errors.len();
        if matched != 1 {
            return Err(format!(
                "{at}: {matched} branches of oneOf match {v} (need exactly 1): {errors:?}"
            ));
        }
    }
    Ok(())
}

/// Walks every schema of the spec (components and inline), checking the keyword subset.
fn lint_schema(spec: &Value, schema: &Value, at: &str) {
    let s = schema
        .as_object()
        .unwrap_or_else(|| panic!("schema at {at} is not an object"));
    for (k, v) in s {
        assert!(
            VALIDATED.contains(&k.as_str()) || ANNOTATIONS.contains(&k.as_str()),
            "schema keyword {k:?} (at {at}) is outside the subset the spec is kept to"
        );
        match k.as_str() {
            "$ref" => {
                resolve(spec, v.as_str().unwrap());
            }
            "properties" => {
                for (p, ps) in v.as_object().unwrap() {
                    lint_schema(spec, ps, &format!("{at}.{p}"));
                }
            }
            "items" => lint_schema(spec, v, &format!("{at}[]")),
            "additionalProperties" if v.is_object() => lint_schema(spec, v, &format!("{at}.*")),
            "oneOf" => {
                for (i, sub) in v.as_array().unwrap().iter().enumerate() {
                    lint_schema(spec, sub, &format!("{at}.oneOf[{i}]"));
                }
            }
            "required" => {
                let props = s.get("properties").and_then(Value::as_object);
                for r in v.as_array().unwrap() {
                    assert!(
                        props.is_some_and(|p| p.contains_key(r.as_str().unwrap())),
                        "{at}: required {r} is not among the properties"
                    );
                }
            }
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------------------
// Checking answers against the spec.

/// One HTTP answer.
#[derive(Debug)]
struct Answer {
    status: u16,
    content_type: String,
    headers: reqwest::header::HeaderMap,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }
}

struct Conformance {
    spec: Value,
    base: String,
    http: reqwest::Client,
    /// (method, path template) → statuses seen.
    seen: Mutex<BTreeMap<(String, String), BTreeSet<u16>>>,
}

impl Conformance {
    fn operation(&self, method: &str, template: &str) -> &Value {
        self.spec["paths"]
            .get(template)
            .and_then(|p| p.get(method))
            .unwrap_or_else(|| panic!("{} {template} is not in the spec", method.to_uppercase()))
    }

    async fn raw(
        &self,
        method: &str,
        path: &str,
        body: Option<String>,
        token: Option<&str>,
        accept: Option<&str>,
    ) -> Answer {
        let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let mut req = self.http.request(m, format!("{}{path}", self.base));
        match token {
            // A server-server request carries its X-Matrix signature instead.
            Some(t) if t.starts_with("X-Matrix ") => req = req.header("authorization", t),
            Some(t) => req = req.bearer_auth(t),
            None => {}
        }
        if let Some(a) = accept {
            req = req.header("accept", a);
        }
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let content_type = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap()
            .trim()
            .to_owned();
        Answer {
            status,
            content_type,
            headers,
            text: resp.text().await.unwrap(),
        }
    }

    /// Sends a request for the operation `method template` to `path` and checks the answer
    /// against the spec: a routed path, a documented status, a documented errcode, a body
    /// that validates against the documented schema of its media type.
    async fn call(
        &self,
        method: &str,
        template: &str,
        path: &str,
        body: Option<String>,
        token: Option<&str>,
        accept: Option<&str>,
    ) -> Answer {
        let a = self.raw(method, path, body, token, accept).await;
        self.check(method, template, &a);
        a
    }

    async fn get(&self, template: &str, path: &str) -> (u16, Value) {
        let a = self.call("get", template, path, None, None, None).await;
        (a.status, a.json())
    }

    async fn post(&self, template: &str, path: &str, body: Value) -> (u16, Value) {
        let a = self
            .call("post", template, path, Some(body.to_string()), None, None)
            .await;
        (a.status, a.json())
    }

    async fn post_auth(
        &self,
        template: &str,
        path: &str,
        body: Value,
        token: &str,
    ) -> (u16, Value) {
        let a = self
            .call(
                "post",
                template,
                path,
                Some(body.to_string()),
                Some(token),
                None,
            )
            .await;
        (a.status, a.json())
    }

    fn check(&self, method: &str, template: &str, a: &Answer) {
        let what = format!(
            "{} {template} → {}: {}",
            method.to_uppercase(),
            a.status,
            {
                let mut t = a.text.clone();
                t.truncate(600);
                t
            }
        );
        let body = a.json();
        assert!(
            !(matches!(a.status, 404 | 405) && body["errcode"] == "M_UNRECOGNIZED"),
            "route not recognised: {what}"
        );
        let op = self.operation(method, template);
        let resp = op["responses"]
            .get(a.status.to_string())
            .unwrap_or_else(|| panic!("undocumented status: {what}"));
        if let Some(code) = body.get("errcode").and_then(Value::as_str) {
            let codes = resp
                .get("x-errcodes")
                .and_then(Value::as_array)
                .unwrap_or_else(|| panic!("errcode {code} where the spec lists none: {what}"));
            assert!(
                codes.iter().any(|c| c == code),
                "undocumented errcode {code} (documented: {resp_codes}): {what}",
                resp_codes = Value::Array(codes.clone())
            );
        }
        let Some(content) = resp.get("content").and_then(Value::as_object) else {
            return;
        };
        let media = content.get(&a.content_type).unwrap_or_else(|| {
            panic!(
                "content type {:?} not documented ({:?}): {what}",
                a.content_type,
                content.keys().collect::<Vec<_>>()
            )
        });
        if let Some(line_schema) = media.get("x-line-schema") {
            for (i, line) in a.text.lines().enumerate() {
                let v: Value = serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("line {i} is not JSON ({e}): {what}"));
                if let Err(e) = validate(&self.spec, line_schema, &v, &format!("line{i}")) {
                    panic!("schema mismatch: {e}\n{what}");
                }
            }
        } else {
            // A text body (`/health`, `/metrics`) is checked as a JSON string.
            let v: Value = if a.content_type.starts_with("text/") {
                Value::String(a.text.clone())
            } else {
                serde_json::from_str(&a.text)
                    .unwrap_or_else(|e| panic!("body is not JSON ({e}): {what}"))
            };
            if let Err(e) = validate(&self.spec, &media["schema"], &v, "$") {
                panic!("schema mismatch: {e}\n{what}");
            }
        }
        self.seen
            .lock()
            .unwrap()
            .entry((method.to_owned(), template.to_owned()))
            .or_default()
            .insert(a.status);
    }

    /// Every (method, template) of the spec.
    fn operations(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (template, item) in self.spec["paths"].as_object().unwrap() {
            for m in METHODS {
                if item.get(*m).is_some() {
                    out.push(((*m).to_owned(), template.clone()));
                }
            }
        }
        out
    }
}

/// The device plane's endpoints (`/sync`, to-device, account data, filters, start-up
/// endpoints, profiles), each succeeding once with dave's token.
async fn device_plane_calls(t: &Conformance, token: &str, device: &str) {
    const V3: &str = "/_matrix/client/v3";
    let me = enc(&uid("dave"));
    let sync = format!("{V3}/sync");
    let first = t.matrix_at(token, "get", &sync, &sync, None).await;
    let since = first["next_batch"].as_str().unwrap().to_owned();
    let send = format!("{V3}/sendToDevice/{{event_type}}/{{txn_id}}");
    let body = json!({"messages": {uid("dave"): {device: {"hello": 1}}}});
    t.matrix_at(
        token,
        "put",
        &send,
        &format!("{V3}/sendToDevice/m.roam.test/t1"),
        Some(body),
    )
    .await;
    let got = t
        .matrix_at(
            token,
            "get",
            &sync,
            &format!("{sync}?since={since}&timeout=5000"),
            None,
        )
        .await;
    assert_eq!(
        got["to_device"]["events"][0]["content"]["hello"], 1,
        "{got}"
    );
    let data = format!("{V3}/user/{{user_id}}/account_data/{{type}}");
    let data_path = format!("{V3}/user/{me}/account_data/m.secret_storage.default_key");
    t.matrix_at(token, "put", &data, &data_path, Some(json!({"key": "k1"})))
        .await;
    t.matrix_at(token, "get", &data, &data_path, None).await;
    let filter = format!("{V3}/user/{{user_id}}/filter");
    let body = json!({"account_data": {"types": ["m.secret_storage.*"]}});
    let id = t
        .matrix_at(
            token,
            "post",
            &filter,
            &format!("{V3}/user/{me}/filter"),
            Some(body),
        )
        .await["filter_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let one = format!("{V3}/user/{{user_id}}/filter/{{filter_id}}");
    t.matrix_at(
        token,
        "get",
        &one,
        &format!("{V3}/user/{me}/filter/{id}"),
        None,
    )
    .await;
    for path in [
        "capabilities",
        "pushrules/",
        "voip/turnServer",
        "thirdparty/protocols",
    ] {
        let p = format!("{V3}/{path}");
        t.matrix_at(token, "get", &p, &p, None).await;
    }
    for (field, value) in [
        ("displayname", "Dave"),
        ("avatar_url", "mxc://roam.test/dave"),
    ] {
        let template = format!("{V3}/profile/{{user_id}}/{field}");
        let path = format!("{V3}/profile/{me}/{field}");
        t.matrix_at(token, "put", &template, &path, Some(json!({field: value})))
            .await;
        t.matrix_at(token, "get", &template, &path, None).await;
    }
    let profile = format!("{V3}/profile/{{user_id}}");
    t.matrix_at(token, "get", &profile, &format!("{V3}/profile/{me}"), None)
        .await;
}

/// The server name of the second homeserver in the conformance test.
const ORIGIN: &str = "origin.test";

/// Every server-server operation succeeding once, signed by the `origin` server's key.
async fn federation_calls(t: &Conformance, origin: &TestServer, device: &str) {
    let key = origin.state.signer().key().clone();
    let (from, to) = (
        ServerName::parse(ORIGIN).unwrap(),
        ServerName::parse(SERVER_NAME).unwrap(),
    );
    let signed = |method: &str, path: &str, body: Option<&Value>| {
        let obj = roam_identity_core::xmatrix::request_object(method, path, &from, &to, body);
        roam_identity_core::xmatrix::sign_request(&obj, &from, &to, &key.key_id, &key.signing_key)
            .unwrap()
    };
    const F: &str = "/_matrix/federation/v1";
    let dave = uid("dave");
    let devices = format!("{F}/user/devices/{}", enc(&dave));
    let auth = signed("GET", &devices, None);
    let a = t
        .call(
            "get",
            &format!("{F}/user/devices/{{user_id}}"),
            &devices,
            None,
            Some(&auth),
            None,
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    let calls = [
        (
            "POST",
            format!("{F}/user/keys/query"),
            format!("{F}/user/keys/query"),
            json!({"device_keys": {dave.clone(): []}}),
        ),
        (
            "POST",
            format!("{F}/user/keys/claim"),
            format!("{F}/user/keys/claim"),
            json!({"one_time_keys": {dave.clone(): {device: "signed_curve25519"}}}),
        ),
        (
            "PUT",
            format!("{F}/send/{{txn_id}}"),
            format!("{F}/send/t1"),
            json!({"origin": ORIGIN, "origin_server_ts": now(), "pdus": [], "edus": [
                {"edu_type": "m.direct_to_device", "content": {"sender": format!("@eve:{ORIGIN}"), "type": "m.roam.test", "message_id": "m1",
                    "messages": {dave.clone(): {device: {"hello": "from origin"}}}}},
                {"edu_type": "m.device_list_update", "content": {"user_id": format!("@eve:{ORIGIN}"), "device_id": "EVE", "stream_id": 1, "prev_id": [], "deleted": false}},
            ]}),
        ),
    ];
    for (method, template, path, body) in calls {
        let auth = signed(method, &path, Some(&body));
        let a = t
            .call(
                &method.to_lowercase(),
                &template,
                &path,
                Some(body.to_string()),
                Some(&auth),
                None,
            )
            .await;
        assert_eq!(a.status, 200, "{method} {path}: {}", a.text);
    }
}

/// Every `/room_keys` operation succeeding once with dave's token.
async fn key_backup_calls(t: &Conformance, token: &str) {
    const V: &str = "/_matrix/client/v3/room_keys/version";
    const K: &str = "/_matrix/client/v3/room_keys/keys";
    let body = json!({"algorithm": "m.megolm_backup.v1.curve25519-aes-sha2", "auth_data": {"public_key": "pk"}});
    let created = t.matrix(token, "post", V, Some(body.clone())).await;
    let v = created["version"].as_str().unwrap().to_owned();
    t.matrix(token, "get", V, None).await;
    let one = format!("{V}/{{version}}");
    let at = format!("{V}/{v}");
    t.matrix_at(token, "get", &one, &at, None).await;
    t.matrix_at(token, "put", &one, &at, Some(body)).await;
    let data = json!({"first_message_index": 0, "forwarded_count": 0, "is_verified": true, "session_data": {"ciphertext": "c"}});
    let room = "!room:roam.test";
    let scopes = [
        (
            K.to_owned(),
            K.to_owned(),
            json!({"rooms": {room: {"sessions": {"s1": data.clone()}}}}),
        ),
        (
            format!("{K}/{{room_id}}"),
            format!("{K}/{room}"),
            json!({"sessions": {"s2": data.clone()}}),
        ),
        (
            format!("{K}/{{room_id}}/{{session_id}}"),
            format!("{K}/{room}/s3"),
            data,
        ),
    ];
    for (template, path, body) in &scopes {
        let path = format!("{path}?version={v}");
        t.matrix_at(token, "put", template, &path, Some(body.clone()))
            .await;
        t.matrix_at(token, "get", template, &path, None).await;
    }
    for (template, path, _) in scopes.iter().rev() {
        let path = format!("{path}?version={v}");
        t.matrix_at(token, "delete", template, &path, None).await;
    }
    t.matrix_at(token, "delete", &one, &at, None).await;
}

// ---------------------------------------------------------------------------------------
// The user's side.

fn uid(local: &str) -> String {
    format!("@{local}:{SERVER_NAME}")
}

const OPS: &str = "/_roam/v1/accounts/{did}/ops";
const LOGIN: &str = "/_matrix/client/v3/login";
const CHALLENGE: &str = "/_roam/v1/login/challenge";
const IDENT: &str = "/1.0/identifiers/{did}";
const MIGRATE: &str = "/_roam/v1/migrate";
const DEVICE_PLANE: &str = "/_roam/v1/device-plane";

/// The device plane of a migrated account: exported with its session, imported signed by
/// its update key; a request signed by another key is refused.
async fn device_plane_move(t: &Conformance, owner: &Owner, token: &str) {
    let a = t
        .call("get", DEVICE_PLANE, DEVICE_PLANE, None, Some(token), None)
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    let plane = a.json();
    let did = roam_identity_core::Did::parse(&owner.did()).unwrap();
    let server = ServerName::parse(SERVER_NAME).unwrap();
    let sign = |key: &SigningKey| {
        roam_identity_core::device_plane::sign_import(
            key,
            &did,
            &server,
            now(),
            plane.clone(),
            None,
        )
        .unwrap()
    };
    let (s, r) = t
        .post(DEVICE_PLANE, DEVICE_PLANE, sign(&owner.update))
        .await;
    assert_eq!(s, 200, "{r}");
    let answer = t
        .post(
            DEVICE_PLANE,
            DEVICE_PLANE,
            sign(&SigningKey::from_bytes(&[5; 32])),
        )
        .await;
    assert_err(&answer, 403, "M_FORBIDDEN");
    let answer = t.post(DEVICE_PLANE, DEVICE_PLANE, json!({})).await;
    assert_err(&answer, 400, "M_MISSING_PARAM");
}

impl Conformance {
    async fn key_login(&self, user: &str, key: &SigningKey) -> (u16, Value) {
        let (s, c) = self
            .post(CHALLENGE, CHALLENGE, json!({"user_id": user}))
            .await;
        assert_eq!(s, 200, "{c}");
        let challenge = c["challenge"].as_str().unwrap();
        let server = ServerName::parse(SERVER_NAME).unwrap();
        let msg = login_message(challenge, &server, &UserId::parse(user).unwrap());
        self.post(
            LOGIN,
            LOGIN,
            json!({
                "type": "m.login.roam.key",
                "identifier": {"type": "m.id.user", "user": user},
                "challenge": challenge,
                "signature": b64::encode(&key.sign(&msg).to_bytes()),
            }),
        )
        .await
    }

    /// A Matrix call with an access token at the template's own path, which must succeed.
    async fn matrix(
        &self,
        token: &str,
        method: &str,
        template: &str,
        body: Option<Value>,
    ) -> Value {
        self.matrix_at(token, method, template, template, body)
            .await
    }

    /// A Matrix call with an access token, which must succeed.
    async fn matrix_at(
        &self,
        token: &str,
        method: &str,
        template: &str,
        path: &str,
        body: Option<Value>,
    ) -> Value {
        let body = body.or_else(|| (method != "get").then(|| json!({})));
        let a = self
            .call(
                method,
                template,
                path,
                body.map(|b| b.to_string()),
                Some(token),
                None,
            )
            .await;
        assert_eq!(
            a.status,
            200,
            "{} {path}: {}",
            method.to_uppercase(),
            a.text
        );
        a.json()
    }

    async fn push(&self, did: &str, ops: Vec<Value>) -> (u16, Value) {
        self.post(
            OPS,
            &format!("/_roam/v1/accounts/{did}/ops"),
            json!({ "ops": ops }),
        )
        .await
    }
}

// ---------------------------------------------------------------------------------------
// (c) The router source.

/// The `(METHOD, path)` pairs that `server/src/routes/mod.rs` routes, read from its
/// `.route("…", …)` calls (nested routers resolved by function name; the legacy r0 prefix
/// folded into v3).
fn router_routes() -> BTreeSet<(String, String)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../server/src/routes/mod.rs");
    let src = std::fs::read_to_string(path).expect("server/src/routes/mod.rs");
    let fn_body = |name: &str| -> String {
        let start = src
            .find(&format!("fn {name}("))
            .unwrap_or_else(|| panic!("fn {name} not found in routes/mod.rs"));
        let open = start + src[start..].find('{').unwrap();
        let mut depth = 0;
        for (i, c) in src[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        return src[open..open + i].to_owned();
                    }
                }
                _ => {}
            }
        }
        panic!("unbalanced fn {name}");
    };
    let mut out = BTreeSet::new();
    let router = fn_body("router");
    collect_routes(&router, "", &mut out);
    // `.nest("/_roam/v1", roam_routes())` and any other nest under a documented prefix.
    let mut rest = router.as_str();
    let mut nested = 0;
    while let Some(i) = rest.find(".nest(") {
        rest = rest[i + 6..].trim_start();
        let Some(quoted) = rest.strip_prefix('"') else {
            continue;
        };
        let prefix = &quoted[..quoted.find('"').unwrap()];
        let after = quoted[prefix.len() + 1..].trim_start_matches([',', ' ', '\n']);
        let func = &after[..after.find('(').unwrap()];
        if prefix == LEGACY_PREFIX {
            // The r0 prefix serves the v3 handlers (documented once, under v3).
            assert_eq!(
                func, "client_routes",
                "{LEGACY_PREFIX} must serve the v3 routes"
            );
            continue;
        }
        collect_routes(&fn_body(func), prefix, &mut out);
        nested += 1;
    }
    assert!(nested >= 2, "no nested routers found in routes/mod.rs");
    out
}

/// `/_matrix/client/r0` serves exactly the `/_matrix/client/v3` routes; the spec documents
/// them once, under v3 (see the spec's `info.description`).
const LEGACY_PREFIX: &str = "/_matrix/client/r0";

fn collect_routes(body: &str, prefix: &str, out: &mut BTreeSet<(String, String)>) {
    let mut rest = body;
    while let Some(i) = rest.find(".route(") {
        rest = rest[i + 7..].trim_start();
        let Some(quoted) = rest.strip_prefix('"') else {
            continue;
        };
        let path = &quoted[..quoted.find('"').unwrap()];
        // The call's arguments, up to the matching parenthesis.
        let mut depth = 1;
        let mut end = rest.len();
        for (j, c) in rest.char_indices() {
            match c {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        end = j;
                        break;
                    }
                }
                _ => {}
            }
        }
        let args = &rest[..end];
        let mut found = false;
        for m in METHODS {
            let needle = format!("{m}(");
            let mut from = 0;
            while let Some(k) = args[from..].find(&needle) {
                let at = from + k;
                let prev = args[..at].chars().next_back().unwrap_or(' ');
                if !(prev.is_alphanumeric() || prev == '_') {
                    out.insert((m.to_string(), format!("{prefix}{path}")));
                    found = true;
                }
                from = at + needle.len();
            }
        }
        assert!(found, "no method found for route {prefix}{path}");
    }
}

#[test]
fn every_route_of_the_router_is_documented() {
    let spec = load_spec();
    let routed = router_routes();
    for probe in [
        ("post", "/_roam/v1/accounts/{did}/ops"),
        ("get", "/_matrix/client/v3/devices/{device_id}"),
        ("get", "/metrics"),
    ] {
        assert!(
            routed.contains(&(probe.0.into(), probe.1.into())),
            "the router parser found {routed:?}"
        );
    }
    let mut documented = BTreeSet::new();
    for (template, item) in spec["paths"].as_object().unwrap() {
        for m in METHODS {
            if item.get(*m).is_some() {
                documented.insert((m.to_string(), template.clone()));
            }
        }
    }
    let missing: Vec<_> = routed.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "routed but not in spec/openapi.json: {missing:?}"
    );
    let extra: Vec<_> = documented.difference(&routed).collect();
    assert!(extra.is_empty(), "in the spec but not routed: {extra:?}");
}

#[test]
fn spec_stays_within_the_schema_subset() {
    let spec = load_spec();
    assert_eq!(spec["openapi"], "3.1.0");
    for (name, s) in spec["components"]["schemas"].as_object().unwrap() {
        lint_schema(&spec, s, name);
    }
    for (template, item) in spec["paths"].as_object().unwrap() {
        for m in METHODS {
            let Some(op) = item.get(*m) else { continue };
            let at = format!("{m} {template}");
            for p in op["parameters"].as_array().into_iter().flatten() {
                lint_schema(&spec, &p["schema"], &at);
                if p["in"] == "path" {
                    assert!(
                        template.contains(&format!("{{{}}}", p["name"].as_str().unwrap())),
                        "{at}: path parameter {} not in the template",
                        p["name"]
                    );
                }
            }
            if let Some(b) = op.get("requestBody") {
                for media in b["content"].as_object().unwrap().values() {
                    lint_schema(&spec, &media["schema"], &at);
                }
            }
            let responses = op["responses"].as_object().unwrap();
            assert!(!responses.is_empty(), "{at}: no responses");
            for (status, r) in responses {
                assert!(
                    r.get("description").is_some(),
                    "{at} {status}: no description"
                );
                let is_error = !status.starts_with('2');
                let content = r["content"].as_object();
                for (ct, media) in content.into_iter().flatten() {
                    lint_schema(&spec, &media["schema"], &format!("{at} {status} {ct}"));
                    if let Some(ls) = media.get("x-line-schema") {
                        lint_schema(&spec, ls, &format!("{at} {status} lines"));
                    }
                    if is_error && ct == "application/json" {
                        let codes = r["x-errcodes"].as_array();
                        assert!(
                            codes.is_some_and(|c| !c.is_empty()),
                            "{at} {status}: a Matrix error without x-errcodes"
                        );
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// (a) and (b) against a running server.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_conforms_to_the_spec() {
    let dir = tempfile::tempdir().unwrap();
    // Another homeserver whose signed server-server requests the tested one checks.
    let origin_dir = tempfile::tempdir().unwrap();
    let origin = start(origin_dir.path(), |c| {
        c.server_name = ServerName::parse(ORIGIN).unwrap();
    })
    .await;
    let origin_url = url::Url::parse(&origin.base).unwrap();
    let server = start_federated(dir.path(), |c| {
        c.op_limits = OpLimits {
            per_hour: 1000,
            per_day: 1000,
        };
        c.federation_overrides
            .insert(ServerName::parse(ORIGIN).unwrap(), origin_url);
    })
    .await;
    let t = Conformance {
        spec: load_spec(),
        base: server.base.clone(),
        http: reqwest::Client::new(),
        seen: Mutex::default(),
    };

    // --- Registration with a genesis op: UIA first, then the account with its DID.
    let mut alice = Owner::new(1, &uid("alice"), &[SERVER_NAME]);
    let did = alice.did();
    let reg = "/_matrix/client/v3/register";
    let body = json!({"username": "alice", "org.roam.genesis": alice.ops[0].value});
    let (s, uia) = t.post(reg, reg, body.clone()).await;
    assert_eq!(s, 401, "{uia}");
    let mut body = body;
    body["auth"] = json!({"type": "m.login.dummy", "session": uia["session"]});
    let (s, r) = t.post(reg, reg, body).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["org.roam.did"], did.as_str());
    assert!(r["access_token"].is_string());
    // The same DID again: refused before UIA.
    let (s, r) = t
        .post(
            reg,
            reg,
            json!({"username": "alice2", "org.roam.genesis": alice.ops[0].value}),
        )
        .await;
    assert_eq!(s, 400, "{r}");

    // --- Bundles and the log.
    let (s, b) = t
        .get(
            "/_roam/v1/users/{user_id}",
            &format!("/_roam/v1/users/{}", enc(&uid("alice"))),
        )
        .await;
    assert_eq!((s, &b["did"]), (200, &json!(did)), "{b}");
    let (s, b) = t
        .get(
            "/_roam/v1/accounts/{did}",
            &format!("/_roam/v1/accounts/{did}"),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["attestations"][0]["user_id"], uid("alice").as_str());
    let log = "/_roam/v1/accounts/{did}/log";
    let (s, l) = t
        .get(log, &format!("/_roam/v1/accounts/{did}/log?since=0"))
        .await;
    assert_eq!((s, l["ops"].as_array().unwrap().len()), (200, 1), "{l}");
    let (s, l) = t
        .get(log, &format!("/_roam/v1/accounts/{did}/log?since=1"))
        .await;
    assert_eq!((s, l["ops"].as_array().unwrap().len()), (200, 0), "{l}");
    assert_eq!(
        t.get(log, &format!("/_roam/v1/accounts/{did}/log?since=x"))
            .await
            .0,
        400
    );

    // --- Key login, then a device signed into the log.
    let (s, flows) = t.get(LOGIN, LOGIN).await;
    assert_eq!(s, 200);
    assert!(flows.to_string().contains("m.login.roam.key"), "{flows}");
    let (s, login) = t.key_login(&uid("alice"), &alice.update).await;
    assert_eq!(s, 200, "{login}");
    let device = login["device_id"].as_str().unwrap().to_owned();
    let op = alice.sign(add_device(&device, 42));
    let (s, r) = t.push(&did, vec![op.clone()]).await;
    assert_eq!(
        (s, r["accepted"].as_array().unwrap().len()),
        (200, 1),
        "{r}"
    );
    let (s, r) = t.push(&did, vec![op]).await;
    assert_eq!((s, r["known"].as_array().unwrap().len()), (200, 1), "{r}");
    // A replayed or wrong signature.
    let (s, e) = t
        .key_login(&uid("alice"), &SigningKey::from_bytes(&[9; 32]))
        .await;
    assert_eq!(
        (s, e["errcode"].as_str()),
        (403, Some("M_FORBIDDEN")),
        "{e}"
    );

    // --- Body caps: 4 MiB on /ops (a 2 MiB body is read and refused on its content).
    let padded = |n: usize| json!({"ops": [{"padding": "x".repeat(n)}]}).to_string();
    let ops_path = format!("/_roam/v1/accounts/{did}/ops");
    let a = t
        .call("post", OPS, &ops_path, Some(padded(2 << 20)), None, None)
        .await;
    assert_eq!(a.status, 400, "{}", a.text);
    let a = t
        .call("post", OPS, &ops_path, Some(padded(5 << 20)), None, None)
        .await;
    assert_eq!(a.status, 413, "{}", a.text);

    // --- Export: JSON lines, resumable.
    let export = "/_roam/v1/export";
    let a = t
        .call("get", export, "/_roam/v1/export?limit=1", None, None, None)
        .await;
    assert_eq!(
        (a.status, a.content_type.as_str()),
        (200, "application/x-ndjson")
    );
    assert_eq!(a.text.lines().count(), 1);
    let first: Value = serde_json::from_str(a.text.lines().next().unwrap()).unwrap();
    assert_eq!(
        a.headers["x-roam-next-cursor"].to_str().unwrap(),
        first["cursor"].as_str().unwrap()
    );
    let a = t
        .call(
            "get",
            export,
            &format!(
                "/_roam/v1/export?after={}",
                first["cursor"].as_str().unwrap()
            ),
            None,
            None,
            None,
        )
        .await;
    assert_eq!((a.status, a.text.lines().count()), (200, 1), "{}", a.text);
    for bad in ["after=x", "limit=0", "limit=10001"] {
        let a = t
            .call(
                "get",
                export,
                &format!("/_roam/v1/export?{bad}"),
                None,
                None,
                None,
            )
            .await;
        assert_eq!(a.status, 400, "{bad}");
    }

    // --- Migration in: bob's log names this server and claims @bob here.
    let bob = Owner::new(2, &uid("bob"), &[SERVER_NAME]);
    let bob_did = bob.did();
    let (s, m) = t
        .post(
            MIGRATE,
            MIGRATE,
            json!({"did": bob_did, "log": bob.values(), "localpart": "bob"}),
        )
        .await;
    assert_eq!((s, &m["state"]), (200, &json!("complete")), "{m}");
    let id = m["id"].as_str().unwrap();
    let (s, st) = t
        .get("/_roam/v1/migrate/{id}", &format!("/_roam/v1/migrate/{id}"))
        .await;
    assert_eq!((s, &st["id"]), (200, &m["id"]), "{st}");
    let (s, bob_login) = t.key_login(&uid("bob"), &bob.update).await;
    assert_eq!(s, 200, "{bob_login}");
    device_plane_move(&t, &bob, bob_login["access_token"].as_str().unwrap()).await;
    // Without the log, the old server must be reached: 502 here (no federation).
    let carol = Owner::new(3, &uid("carol"), &[SERVER_NAME]);
    let (s, e) = t
        .post(
            MIGRATE,
            MIGRATE,
            json!({"did": carol.did(), "from": "old.test", "localpart": "carol"}),
        )
        .await;
    assert_eq!(
        (s, e["errcode"].as_str()),
        (502, Some("ROAM_UNREACHABLE")),
        "{e}"
    );
    let answer = t
        .post(
            MIGRATE,
            MIGRATE,
            json!({"did": bob_did, "log": bob.values(), "localpart": "robert"}),
        )
        .await;
    assert_err(&answer, 403, "M_FORBIDDEN");

    // --- Forks: a second op on the same prev is refused with both ops, kept as evidence.
    let st = alice.state();
    let x = next_op(&st, now(), move_to(&[SERVER_NAME, "b.test"])).sign(&alice.update);
    let y = next_op(&st, now(), move_to(&[SERVER_NAME, "c.test"])).sign(&alice.update);
    assert_eq!(t.push(&did, vec![x.value.clone()]).await.0, 200);
    alice.ops.push(x);
    let (s, e) = t.push(&did, vec![y.value]).await;
    assert_eq!((s, e["errcode"].as_str()), (409, Some("ROAM_FORK")), "{e}");
    assert_eq!(e["evidence"].as_array().unwrap().len(), 2);
    let forks = "/_roam/v1/accounts/{did}/forks";
    let (s, f) = t
        .get(forks, &format!("/_roam/v1/accounts/{did}/forks"))
        .await;
    assert_eq!(s, 200, "{f}");
    assert!(!f["evidence"].as_array().unwrap().is_empty(), "{f}");
    let (s, f) = t
        .get(forks, &format!("/_roam/v1/accounts/{bob_did}/forks"))
        .await;
    assert_eq!((s, f["evidence"].as_array().unwrap().len()), (200, 0));

    // --- Bulk query: stored bundles by user ID and DID, unknown names listed.
    let query = "/_roam/v1/query";
    let body = json!({"user_ids": [uid("bob"), uid("nobody")], "dids": [did]});
    let (s, q) = t.post(query, query, body).await;
    assert_eq!(s, 200, "{q}");
    assert_eq!(q["not_found"], json!([uid("nobody")]), "{q}");

    // --- Adopting a DID: an account registered with a password.
    let dave_client = server.client().register("dave", "pw-dave-123").await;
    let dave_token = dave_client.token.clone().unwrap();
    let dave = Owner::new(4, &uid("dave"), &[SERVER_NAME]);
    let adopt = "/_roam/v1/account/did";
    let (s, r) = t
        .post_auth(adopt, adopt, json!({"ops": dave.values()}), &dave_token)
        .await;
    assert_eq!((s, &r["did"]), (200, &json!(dave.did())), "{r}");
    let (s, e) = t
        .post_auth(adopt, adopt, json!({"ops": dave.values()}), &dave_token)
        .await;
    assert_eq!(
        (s, e["errcode"].as_str()),
        (400, Some("M_USER_IN_USE")),
        "{e}"
    );
    let (s, e) = t.post(adopt, adopt, json!({"ops": dave.values()})).await;
    assert_eq!(
        (s, e["errcode"].as_str()),
        (401, Some("M_MISSING_TOKEN")),
        "{e}"
    );

    // --- The Matrix client-server endpoints, with dave's password account.
    let dave_device = t
        .matrix(
            &dave_token,
            "get",
            "/_matrix/client/v3/account/whoami",
            None,
        )
        .await["device_id"]
        .as_str()
        .unwrap()
        .to_owned();
    t.matrix(&dave_token, "get", "/_matrix/client/v3/devices", None)
        .await;
    let one = "/_matrix/client/v3/devices/{device_id}";
    let one_path = format!("/_matrix/client/v3/devices/{dave_device}");
    t.matrix_at(&dave_token, "get", one, &one_path, None).await;
    t.matrix_at(
        &dave_token,
        "put",
        one,
        &one_path,
        Some(json!({"display_name": "laptop"})),
    )
    .await;
    let keys = [
        ("/_matrix/client/v3/keys/upload", json!({})),
        (
            "/_matrix/client/v3/keys/query",
            json!({"device_keys": {uid("dave"): []}}),
        ),
        (
            "/_matrix/client/v3/keys/claim",
            json!({"one_time_keys": {}}),
        ),
        ("/_matrix/client/v3/keys/device_signing/upload", json!({})),
        ("/_matrix/client/v3/keys/signatures/upload", json!({})),
    ];
    for (path, body) in keys {
        t.matrix(&dave_token, "post", path, Some(body)).await;
    }
    let changes = "/_matrix/client/v3/keys/changes";
    t.matrix_at(
        &dave_token,
        "get",
        changes,
        &format!("{changes}?from=0"),
        None,
    )
    .await;
    device_plane_calls(&t, &dave_token, &dave_device).await;
    key_backup_calls(&t, &dave_token).await;
    federation_calls(&t, &origin, &dave_device).await;
    let available = "/_matrix/client/v3/register/available";
    let a = t
        .call(
            "get",
            available,
            &format!("{available}?username=free"),
            None,
            None,
            None,
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    // UIA: deleting devices needs the password. A second and a third device, by login.
    // Logs Dave in on `device` (asking for a refresh token if `refresh`); the answer.
    let login = |device: &'static str, refresh: bool| {
        let t = &t;
        async move {
            let (s, r) = t
                .post(
                    LOGIN,
                    LOGIN,
                    json!({"type": "m.login.password", "password": "pw-dave-123",
                           "identifier": {"type": "m.id.user", "user": "dave"},
                           "device_id": device, "refresh_token": refresh}),
                )
                .await;
            assert_eq!(s, 200, "{r}");
            r
        }
    };
    let login_device = |device: &'static str| {
        let login = &login;
        async move {
            login(device, false).await["access_token"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let password_auth = |session: &Value| {
        json!({"type": "m.login.password", "password": "pw-dave-123", "session": session,
               "identifier": {"type": "m.id.user", "user": "dave"}})
    };
    login_device("SECOND").await;
    // A login that asks for a refresh token, and the exchange (the old one is used up).
    let r = login("REFRESHED", true).await;
    const REFRESH: &str = "/_matrix/client/v3/refresh";
    let body = json!({"refresh_token": r["refresh_token"]});
    let (s, fresh) = t.post(REFRESH, REFRESH, body.clone()).await;
    assert_eq!(s, 200, "{fresh}");
    let (s, again) = t.post(REFRESH, REFRESH, body).await;
    assert_eq!(
        (s, &again["errcode"]),
        (401, &json!("M_UNKNOWN_TOKEN")),
        "{again}"
    );
    let second = "/_matrix/client/v3/devices/SECOND";
    let a = t
        .call(
            "delete",
            one,
            second,
            Some("{}".into()),
            Some(&dave_token),
            None,
        )
        .await;
    assert_eq!(a.status, 401, "{}", a.text);
    let body = json!({"auth": password_auth(&a.json()["session"])});
    t.matrix_at(&dave_token, "delete", one, second, Some(body))
        .await;
    login_device("THIRD").await;
    let many = "/_matrix/client/v3/delete_devices";
    let a = t
        .call(
            "post",
            many,
            many,
            Some(json!({"devices": ["THIRD"]}).to_string()),
            Some(&dave_token),
            None,
        )
        .await;
    assert_eq!(a.status, 401, "{}", a.text);
    let body = json!({"devices": ["THIRD"], "auth": password_auth(&a.json()["session"])});
    t.matrix(&dave_token, "post", many, Some(body)).await;
    let fourth = login_device("FOURTH").await;
    t.matrix(&fourth, "post", "/_matrix/client/v3/logout", None)
        .await;
    // Server-level documents.
    for path in [
        "/_matrix/client/versions",
        "/.well-known/matrix/server",
        "/.well-known/matrix/client",
        "/health",
        "/metrics",
    ] {
        let a = t.call("get", path, path, None, None, None).await;
        assert_eq!(a.status, 200, "{path}: {}", a.text);
    }
    let by_id = "/_matrix/key/v2/server/{key_id}";
    let a = t
        .call(
            "get",
            by_id,
            "/_matrix/key/v2/server/ed25519:x",
            None,
            None,
            None,
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text);

    // --- DID resolution, both representations, and its errors.
    let ident = |d: &str| format!("/1.0/identifiers/{d}");
    let a = t.call("get", IDENT, &ident(&did), None, None, None).await;
    assert_eq!(
        (a.status, a.content_type.as_str()),
        (200, "application/did-resolution"),
        "{}",
        a.text
    );
    let res = a.json();
    assert_eq!(
        res["didDocument"]["alsoKnownAs"],
        json!(["matrix:u/alice:roam.test"])
    );
    assert_eq!(
        res["didDocumentMetadata"]["versionId"],
        alice.state().head.to_string().as_str()
    );
    let a = t
        .call(
            "get",
            IDENT,
            &ident(&did),
            None,
            None,
            Some("application/did+ld+json"),
        )
        .await;
    assert_eq!(
        (a.status, a.content_type.as_str()),
        (200, "application/did+ld+json")
    );
    assert_eq!(a.json()["id"], did.as_str());
    for (d, want) in [
        ("did:key:z6Mk".to_owned(), 400),
        ("did:web:example.com".to_owned(), 501),
        (Owner::new(77, &uid("x"), &[SERVER_NAME]).did(), 404),
    ] {
        let a = t.call("get", IDENT, &ident(&d), None, None, None).await;
        assert_eq!(a.status, want, "{d}: {}", a.text);
        assert!(a.json()["didResolutionMetadata"]["error"].is_object());
    }

    // --- Server keys.
    let keys = "/_matrix/key/v2/server";
    assert_eq!(t.get(keys, keys).await.0, 200);

    // --- (a) Every documented operation, probed with a minimal request: routed, and only
    // documented statuses and errcodes.
    let mut sample = BTreeMap::new();
    sample.insert("{did}", did.clone());
    sample.insert("{user_id}", enc(&uid("alice")));
    sample.insert("{id}", id.to_owned());
    sample.insert("{device_id}", dave_device.clone());
    sample.insert("{key_id}", "ed25519:a_1".to_owned());
    sample.insert("{event_type}", "m.roam.test".to_owned());
    sample.insert("{txn_id}", "probe".to_owned());
    sample.insert("{type}", "m.secret_storage.default_key".to_owned());
    sample.insert("{filter_id}", "0000".to_owned());
    sample.insert("{version}", "1".to_owned());
    sample.insert("{room_id}", "!room:roam.test".to_owned());
    sample.insert("{session_id}", "session1".to_owned());
    let stranger = Owner::new(88, &uid("stranger"), &[SERVER_NAME]).did();
    for (method, template) in t.operations() {
        let mut path = template.clone();
        for (k, v) in &sample {
            path = path.replace(k, v);
        }
        assert!(
            !path.contains('{'),
            "no sample for a parameter of {template}"
        );
        let body = (method != "get").then(|| "{}".to_owned());
        t.call(&method, &template, &path, body.clone(), None, None)
            .await;
        // With unknown identifiers as well.
        let unknown = template
            .replace("{did}", &stranger)
            .replace("{user_id}", &enc(&uid("nobody")))
            .replace("{id}", "000000000000000000000000")
            .replace("{device_id}", "NODEVICE")
            .replace("{key_id}", "ed25519:none");
        t.call(&method, &template, &unknown, body, None, None).await;
        // Not JSON, where a body is read.
        if method == "post" {
            t.call(
                &method,
                &template,
                &path,
                Some("{not json".into()),
                None,
                None,
            )
            .await;
        }
    }

    // --- Moves and deactivation, last: they end the accounts' life here.
    let (s, r) = t.push(&bob_did, vec![]).await;
    assert_eq!(s, 400, "{r}");
    let mv = alice.sign(move_to(&["elsewhere.test"]));
    let (s, r) = t.push(&did, vec![mv]).await;
    assert_eq!(s, 200, "{r}");
    let (s, e) = t.key_login(&uid("alice"), &alice.update).await;
    assert_eq!((s, e["errcode"].as_str()), (403, Some("ROAM_MOVED")), "{e}");
    assert_eq!(e["servers"], json!(["elsewhere.test"]));
    let mut bob = bob;
    let deact = bob.sign(Action::Deactivate);
    assert_eq!(t.push(&bob_did, vec![deact]).await.0, 200);
    let (s, e) = t.key_login(&uid("bob"), &bob.update).await;
    assert_eq!(
        (s, e["errcode"].as_str()),
        (403, Some("ROAM_DEACTIVATED")),
        "{e}"
    );
    let a = t
        .call("get", IDENT, &ident(&bob_did), None, None, None)
        .await;
    assert_eq!(a.status, 410, "{}", a.text);
    assert_eq!(a.json()["didDocumentMetadata"]["deactivated"], true);

    // --- Registration tokens, on a server that uses them.
    let token_dir = tempfile::tempdir().unwrap();
    let token_server = start(token_dir.path(), |c| {
        c.registration = RegistrationMode::Token;
    })
    .await;
    let validity = "/_matrix/client/v1/register/m.login.registration_token/validity";
    let t2 = Conformance {
        spec: load_spec(),
        base: token_server.base.clone(),
        http: reqwest::Client::new(),
        seen: Mutex::default(),
    };
    let a = t2
        .call(
            "get",
            validity,
            &format!("{validity}?token=nope"),
            None,
            None,
            None,
        )
        .await;
    assert_eq!(
        (a.status, &a.json()["valid"]),
        (200, &json!(false)),
        "{}",
        a.text
    );
    t.seen.lock().unwrap().extend(t2.seen.into_inner().unwrap());
    token_server.stop().await;
    // Dave's password changes (his other sessions stay: `logout_devices` false).
    let password = "/_matrix/client/v3/account/password";
    let change = json!({"new_password": "pw-dave-456", "logout_devices": false});
    let a = t
        .call(
            "post",
            password,
            password,
            Some(change.to_string()),
            Some(&dave_token),
            None,
        )
        .await;
    assert_eq!(a.status, 401, "{}", a.text);
    let mut change = change;
    change["auth"] = password_auth(&a.json()["session"]);
    t.matrix(&dave_token, "post", password, Some(change)).await;
    // Last for dave: every session ends, then the account.
    t.matrix(&dave_token, "post", "/_matrix/client/v3/logout/all", None)
        .await;
    let (s, r) = t
        .post(
            LOGIN,
            LOGIN,
            json!({"type": "m.login.password", "password": "pw-dave-456",
                   "identifier": {"type": "m.id.user", "user": "dave"}}),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    let last = r["access_token"].as_str().unwrap().to_owned();
    let deactivate = "/_matrix/client/v3/account/deactivate";
    let a = t
        .call(
            "post",
            deactivate,
            deactivate,
            Some("{}".into()),
            Some(&last),
            None,
        )
        .await;
    assert_eq!(a.status, 401, "{}", a.text);
    let auth = json!({"type": "m.login.password", "password": "pw-dave-456", "session": a.json()["session"],
                      "identifier": {"type": "m.id.user", "user": "dave"}});
    t.matrix(&last, "post", deactivate, Some(json!({"auth": auth})))
        .await;

    // --- Coverage: every operation answered, and succeeded at least once.
    let seen = t.seen.lock().unwrap().clone();
    for op in t.operations() {
        let statuses = seen.get(&op).cloned().unwrap_or_default();
        assert!(
            statuses.iter().any(|s| (200..300).contains(s)),
            "{} {}: no successful answer checked (saw {statuses:?})",
            op.0.to_uppercase(),
            op.1
        );
    }
    server.stop().await;
}
