//! The device plane over real HTTP (issue 12): `/sync` with long-polling, to-device
//! messages, device-list changes, global account data, filters, profiles, the start-up
//! endpoints, password change and deactivation. The flows that touch the store run on redb
//! and on PostgreSQL.

mod common;

use std::time::{Duration, Instant};

use common::{Backend, C, Client, assert_err, device_keys, start, start_on};
use ed25519_dalek::SigningKey;
use serde_json::{Value, json};

fn uid(localpart: &str) -> String {
    format!("@{localpart}:{}", common::SERVER_NAME)
}

async fn sync(c: &Client, since: Option<&str>, timeout_ms: u64) -> Value {
    let mut path = format!("{C}/sync?timeout={timeout_ms}");
    if let Some(s) = since {
        path.push_str(&format!("&since={s}"));
    }
    let (s, v) = c.get(&path).await;
    assert_eq!(s, 200, "{v}");
    v
}

fn to_device(v: &Value) -> Vec<Value> {
    v["to_device"]["events"].as_array().unwrap().clone()
}

fn next(v: &Value) -> String {
    v["next_batch"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn to_device_messages_arrive_once_through_sync() {
    to_device_messages_arrive_once_through_sync_on(Backend::Redb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn to_device_messages_arrive_once_through_sync_on_postgres() {
    to_device_messages_arrive_once_through_sync_on(Backend::postgres()).await;
}

async fn to_device_messages_arrive_once_through_sync_on(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let server = start_on(&backend, dir.path(), |_| {}).await;
    let anon = server.client();
    anon.register("alice", "pw-alice-1").await;
    anon.register("bob", "pw-bob-1").await;
    let (alice, _) = anon.login("alice", "pw-alice-1", Some("ALAPTOP")).await;
    let (bob1, _) = anon.login("bob", "pw-bob-1", Some("BPHONE")).await;
    let (bob2, _) = anon.login("bob", "pw-bob-1", Some("BLAPTOP")).await;

    let first = sync(&bob1, None, 0).await;
    assert_eq!(first["rooms"]["join"], json!({}), "{first}");
    assert!(first["device_one_time_keys_count"].is_object(), "{first}");
    let since = next(&first);

    // A long-poll that is woken by the message.
    let waiting = {
        let (bob1, since) = (bob1.clone(), since.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            (sync(&bob1, Some(&since), 20_000).await, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let body = json!({"messages": {uid("bob"): {"*": {"hello": "all devices"}}}});
    let path = format!("{C}/sendToDevice/m.roam.test/txn1");
    assert_eq!(alice.put(&path, body.clone()).await.0, 200);
    // The same transaction again: not delivered twice.
    assert_eq!(alice.put(&path, body).await.0, 200);
    let (woken, waited) = waiting.await.unwrap();
    assert!(
        waited < Duration::from_secs(15),
        "the long-poll was not woken"
    );
    let events = to_device(&woken);
    assert_eq!(events.len(), 1, "{woken}");
    assert_eq!(events[0]["sender"], uid("alice"));
    assert_eq!(events[0]["type"], "m.roam.test");
    assert_eq!(events[0]["content"]["hello"], "all devices");

    // Not acknowledged: the same token gives it again; the next token does not.
    assert_eq!(to_device(&sync(&bob1, Some(&since), 0).await).len(), 1);
    let after = sync(&bob1, Some(&next(&woken)), 0).await;
    assert!(to_device(&after).is_empty(), "{after}");
    // Acknowledged and deleted: even the old token no longer finds it.
    assert!(to_device(&sync(&bob1, Some(&since), 0).await).is_empty());
    // The other device got its own copy.
    assert_eq!(to_device(&sync(&bob2, None, 0).await).len(), 1);

    // One device by ID.
    let body = json!({"messages": {uid("bob"): {"BLAPTOP": {"n": 2}}}});
    let (s, _) = alice
        .put(&format!("{C}/sendToDevice/m.roam.test/txn2"), body)
        .await;
    assert_eq!(s, 200);
    assert!(to_device(&sync(&bob1, Some(&next(&after)), 0).await).is_empty());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_tokens_survive_a_restart() {
    sync_tokens_survive_a_restart_on(Backend::Redb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_tokens_survive_a_restart_on_postgres() {
    sync_tokens_survive_a_restart_on(Backend::postgres()).await;
}

async fn sync_tokens_survive_a_restart_on(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let server = start_on(&backend, dir.path(), |_| {}).await;
    let anon = server.client();
    anon.register("carol", "pw-carol-1").await;
    let (carol, _) = anon.login("carol", "pw-carol-1", Some("CDEV")).await;
    let token = next(&sync(&carol, None, 0).await);
    let access = carol.token.clone().unwrap();
    server.stop().await;

    let server = start_on(&backend, dir.path(), |_| {}).await;
    let carol = server.client().with_token(&access);
    let body = json!({"messages": {uid("carol"): {"CDEV": {"after": "restart"}}}});
    let (s, _) = carol
        .put(&format!("{C}/sendToDevice/m.roam.test/t1"), body)
        .await;
    assert_eq!(s, 200);
    let v = sync(&carol, Some(&token), 0).await;
    assert_eq!(to_device(&v)[0]["content"]["after"], "restart", "{v}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_list_changes_reach_those_who_track_the_user() {
    device_list_changes_reach_those_who_track_the_user_on(Backend::Redb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_list_changes_reach_those_who_track_the_user_on_postgres() {
    device_list_changes_reach_those_who_track_the_user_on(Backend::postgres()).await;
}

async fn device_list_changes_reach_those_who_track_the_user_on(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let server = start_on(&backend, dir.path(), |_| {}).await;
    let anon = server.client();
    for u in ["dave", "erin", "frank"] {
        anon.register(u, &format!("pw-{u}-1")).await;
    }
    let (dave, _) = anon.login("dave", "pw-dave-1", Some("DDEV")).await;
    let (erin, _) = anon.login("erin", "pw-erin-1", Some("EDEV")).await;
    let (frank, _) = anon.login("frank", "pw-frank-1", Some("FDEV")).await;
    // Erin queries Dave's keys: she now follows his device list. Frank does not.
    let (s, _) = erin
        .post(
            &format!("{C}/keys/query"),
            json!({"device_keys": {uid("dave"): []}}),
        )
        .await;
    assert_eq!(s, 200);
    let erin_since = next(&sync(&erin, None, 0).await);
    let frank_since = next(&sync(&frank, None, 0).await);
    let dave_since = next(&sync(&dave, None, 0).await);
    let keys = device_keys(&uid("dave"), "DDEV", &SigningKey::from_bytes(&[5; 32]));
    let (s, v) = dave
        .post(
            &format!("{C}/keys/upload"),
            json!({"device_keys": keys, "one_time_keys": {"signed_curve25519:AAAA": {"key": "x"}}}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let v = sync(&erin, Some(&erin_since), 5_000).await;
    assert_eq!(v["device_lists"]["changed"], json!([uid("dave")]), "{v}");
    let v = sync(&frank, Some(&frank_since), 0).await;
    assert_eq!(v["device_lists"]["changed"], json!([]), "{v}");
    let v = sync(&dave, Some(&dave_since), 0).await;
    assert_eq!(v["device_lists"]["changed"], json!([uid("dave")]), "{v}");
    assert_eq!(
        v["device_one_time_keys_count"]["signed_curve25519"], 1,
        "{v}"
    );
    // `/keys/changes` takes sync tokens.
    let (s, v) = erin
        .get(&format!(
            "{C}/keys/changes?from={erin_since}&to={}",
            next(&v)
        ))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["changed"], json!([uid("dave")]), "{v}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_data_and_filters() {
    account_data_and_filters_on(Backend::Redb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_data_and_filters_on_postgres() {
    account_data_and_filters_on(Backend::postgres()).await;
}

async fn account_data_and_filters_on(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let server = start_on(&backend, dir.path(), |_| {}).await;
    let anon = server.client();
    let gina = anon.register("gina", "pw-gina-1").await;
    let hank = anon.register("hank", "pw-hank-1").await;
    let path = format!(
        "{C}/user/{}/account_data/m.secret_storage.default_key",
        uid("gina")
    );
    assert_err(&gina.get(&path).await, 404, "M_NOT_FOUND");
    let content = json!({"key": "abc"});
    assert_eq!(gina.put(&path, content.clone()).await.0, 200);
    assert_eq!(gina.get(&path).await, (200, content.clone()));
    // Nobody else reads or writes it.
    assert_err(&hank.get(&path).await, 403, "M_FORBIDDEN");
    assert_err(&hank.put(&path, json!({})).await, 403, "M_FORBIDDEN");
    let fully_read = format!("{C}/user/{}/account_data/m.fully_read", uid("gina"));
    assert_err(&gina.put(&fully_read, json!({})).await, 400, "M_BAD_JSON");

    let first = sync(&gina, None, 0).await;
    let events = first["account_data"]["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{first}");
    assert_eq!(events[0]["type"], "m.secret_storage.default_key");
    assert_eq!(events[0]["content"], content);
    let other = format!(
        "{C}/user/{}/account_data/m.cross_signing.master",
        uid("gina")
    );
    assert_eq!(gina.put(&other, json!({"encrypted": {}})).await.0, 200);
    let v = sync(&gina, Some(&next(&first)), 0).await;
    let events = v["account_data"]["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "only what changed: {v}");
    assert_eq!(events[0]["type"], "m.cross_signing.master");

    // A stored filter that keeps only m.secret_storage.* account data.
    let filter = json!({"account_data": {"types": ["m.secret_storage.*"]}});
    let (s, v) = gina
        .post(&format!("{C}/user/{}/filter", uid("gina")), filter.clone())
        .await;
    assert_eq!(s, 200, "{v}");
    let id = v["filter_id"].as_str().unwrap().to_owned();
    let get = format!("{C}/user/{}/filter/{id}", uid("gina"));
    assert_eq!(gina.get(&get).await, (200, filter));
    assert_err(&hank.get(&get).await, 403, "M_FORBIDDEN");
    let missing = format!("{C}/user/{}/filter/9999", uid("gina"));
    assert_err(&gina.get(&missing).await, 404, "M_NOT_FOUND");
    let (s, v) = gina.get(&format!("{C}/sync?filter={id}")).await;
    assert_eq!(s, 200, "{v}");
    let events = v["account_data"]["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{v}");
    assert_eq!(events[0]["type"], "m.secret_storage.default_key");
    let bad = gina
        .post(
            &format!("{C}/user/{}/filter", uid("gina")),
            json!({"account_data": {"types": "nope"}}),
        )
        .await;
    assert_err(&bad, 400, "M_BAD_JSON");
    assert_err(
        &gina.get(&format!("{C}/sync?since=garbage")).await,
        400,
        "M_INVALID_PARAM",
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_endpoints_and_profiles() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {}).await;
    let anon = server.client();
    let ivan = anon.register("ivan", "pw-ivan-1").await;
    let (s, v) = ivan.get(&format!("{C}/capabilities")).await;
    assert_eq!(s, 200);
    assert_eq!(v["capabilities"]["m.change_password"]["enabled"], true);
    let (s, v) = ivan.get(&format!("{C}/pushrules/")).await;
    assert_eq!(s, 200);
    // Every predefined rule of the specification, in its order (matrix-js-sdk checks for them
    // on start-up and warns about each one missing).
    let ids = |kind: &str| -> Vec<String> {
        let rules = v["global"][kind].as_array().unwrap();
        rules
            .iter()
            .map(|r| r["rule_id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        ids("override"),
        [
            ".m.rule.master",
            ".m.rule.suppress_notices",
            ".m.rule.invite_for_me",
            ".m.rule.member_event",
            ".m.rule.is_user_mention",
            ".m.rule.contains_display_name",
            ".m.rule.is_room_mention",
            ".m.rule.roomnotif",
            ".m.rule.tombstone",
            ".m.rule.reaction",
            ".m.rule.room.server_acl",
            ".m.rule.suppress_edits",
        ]
    );
    assert_eq!(ids("content"), [".m.rule.contains_user_name"]);
    assert_eq!(v["global"]["content"][0]["pattern"], "ivan");
    assert_eq!(
        ids("underride"),
        [
            ".m.rule.call",
            ".m.rule.encrypted_room_one_to_one",
            ".m.rule.room_one_to_one",
            ".m.rule.message",
            ".m.rule.encrypted",
        ]
    );
    assert_eq!(
        ivan.get(&format!("{C}/voip/turnServer")).await,
        (200, json!({}))
    );
    assert_eq!(
        ivan.get(&format!("{C}/thirdparty/protocols")).await,
        (200, json!({}))
    );
    assert_err(
        &anon.get(&format!("{C}/capabilities")).await,
        401,
        "M_MISSING_TOKEN",
    );

    let profile = format!("{C}/profile/{}", uid("ivan"));
    assert_eq!(ivan.get(&profile).await, (200, json!({})));
    let (s, _) = ivan
        .put(
            &format!("{profile}/displayname"),
            json!({"displayname": "Ivan"}),
        )
        .await;
    assert_eq!(s, 200);
    let (s, _) = ivan
        .put(
            &format!("{profile}/avatar_url"),
            json!({"avatar_url": "mxc://x/y"}),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        anon.get(&profile).await,
        (
            200,
            json!({"displayname": "Ivan", "avatar_url": "mxc://x/y"})
        )
    );
    assert_eq!(
        anon.get(&format!("{profile}/displayname")).await,
        (200, json!({"displayname": "Ivan"}))
    );
    let bad = ivan
        .put(
            &format!("{profile}/avatar_url"),
            json!({"avatar_url": "http://x"}),
        )
        .await;
    assert_err(&bad, 400, "M_BAD_JSON");
    let judy = anon.register("judy", "pw-judy-1").await;
    let theft = judy
        .put(
            &format!("{profile}/displayname"),
            json!({"displayname": "Not Ivan"}),
        )
        .await;
    assert_err(&theft, 403, "M_FORBIDDEN");
    let nobody = format!("{C}/profile/{}", uid("nobody"));
    assert_err(&anon.get(&nobody).await, 404, "M_NOT_FOUND");
    server.stop().await;
}

fn password_auth(user: &str, password: &str, session: &Value) -> Value {
    json!({"type": "m.login.password", "session": session,
        "identifier": {"type": "m.id.user", "user": user}, "password": password})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_change_and_deactivation() {
    password_change_and_deactivation_on(Backend::Redb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_change_and_deactivation_on_postgres() {
    password_change_and_deactivation_on(Backend::postgres()).await;
}

async fn password_change_and_deactivation_on(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let server = start_on(&backend, dir.path(), |_| {}).await;
    let anon = server.client();
    anon.register("kate", "pw-kate-1").await;
    let (kate, _) = anon.login("kate", "pw-kate-1", Some("KMAIN")).await;
    let (other, _) = anon.login("kate", "pw-kate-1", Some("KOTHER")).await;
    let change = format!("{C}/account/password");
    let (s, v) = kate
        .post(&change, json!({"new_password": "pw-kate-2"}))
        .await;
    assert_eq!(s, 401, "{v}");
    let wrong =
        json!({"new_password": "pw-kate-2", "auth": password_auth("kate", "nope", &v["session"])});
    assert_eq!(kate.post(&change, wrong).await.0, 401);
    let right = json!({"new_password": "pw-kate-2", "auth": password_auth("kate", "pw-kate-1", &v["session"])});
    let (s, v) = kate.post(&change, right).await;
    assert_eq!(s, 200, "{v}");
    // The other device is logged out; this one is not.
    let whoami = format!("{C}/account/whoami");
    assert_err(&other.get(&whoami).await, 401, "M_UNKNOWN_TOKEN");
    assert_eq!(kate.get(&whoami).await.0, 200);
    let login = |pw: &str| json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "kate"}, "password": pw});
    assert_err(
        &anon.post(&format!("{C}/login"), login("pw-kate-1")).await,
        403,
        "M_FORBIDDEN",
    );
    assert_eq!(
        anon.post(&format!("{C}/login"), login("pw-kate-2")).await.0,
        200
    );

    let deactivate = format!("{C}/account/deactivate");
    let (s, v) = kate.post(&deactivate, json!({})).await;
    assert_eq!(s, 401, "{v}");
    let body = json!({"auth": password_auth("kate", "pw-kate-2", &v["session"])});
    let (s, v) = kate.post(&deactivate, body).await;
    assert_eq!(s, 200, "{v}");
    assert_err(&kate.get(&whoami).await, 401, "M_UNKNOWN_TOKEN");
    assert_err(
        &anon.post(&format!("{C}/login"), login("pw-kate-2")).await,
        403,
        "M_FORBIDDEN",
    );
    // The user ID stays taken.
    let (s, v) = anon
        .get(&format!("{C}/register/available?username=kate"))
        .await;
    assert_err(&(s, v), 400, "M_USER_IN_USE");
    let state = server.state.clone();
    let kate_id = roam_identity_core::UserId::parse(&uid("kate")).unwrap();
    assert!(
        state
            .store()
            .account(&kate_id)
            .unwrap()
            .unwrap()
            .deactivated
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn to_device_bad_input_is_refused_with_errcodes() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {}).await;
    let lena = server.client().register("lena", "pw-lena-1").await;
    let send = |txn: &str| format!("{C}/sendToDevice/m.x/{txn}");
    assert_err(
        &lena.put(&send("a"), json!({})).await,
        400,
        "M_MISSING_PARAM",
    );
    assert_err(
        &lena.put(&send("b"), json!({"messages": []})).await,
        400,
        "M_BAD_JSON",
    );
    assert_err(
        &lena
            .put(&send("c"), json!({"messages": {"not-a-user": {}}}))
            .await,
        400,
        "M_INVALID_PARAM",
    );
    assert_err(
        &lena
            .put(&send("d"), json!({"messages": {uid("lena"): {"*": 5}}}))
            .await,
        400,
        "M_BAD_JSON",
    );
    let long = "x".repeat(300);
    assert_err(
        &lena.put(&send(&long), json!({"messages": {}})).await,
        400,
        "M_INVALID_PARAM",
    );
    assert_err(
        &server
            .client()
            .put(&send("e"), json!({"messages": {}}))
            .await,
        401,
        "M_MISSING_TOKEN",
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_backup_versions_and_keys() {
    key_backup_versions_and_keys_on(Backend::Redb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_backup_versions_and_keys_on_postgres() {
    key_backup_versions_and_keys_on(Backend::postgres()).await;
}

async fn key_backup_versions_and_keys_on(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let server = start_on(&backend, dir.path(), |_| {}).await;
    let anon = server.client();
    let mia = anon.register("mia", "pw-mia-1").await;
    let other = anon.register("ned", "pw-ned-1").await;
    let version = format!("{C}/room_keys/version");
    assert_err(&mia.get(&version).await, 404, "M_NOT_FOUND");
    let algorithm = "m.megolm_backup.v1.curve25519-aes-sha2";
    let (s, v) = mia
        .post(
            &version,
            json!({"algorithm": algorithm, "auth_data": {"public_key": "abc"}}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let v1 = v["version"].as_str().unwrap().to_owned();
    let (s, v) = mia.get(&version).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["version"].as_str(), v["count"].as_u64()),
        (Some(v1.as_str()), Some(0))
    );
    assert_err(&other.get(&version).await, 404, "M_NOT_FOUND");

    let key = |index: u64| json!({"first_message_index": index, "forwarded_count": 0, "is_verified": false, "session_data": {"ciphertext": format!("c{index}")}});
    let keys = format!("{C}/room_keys/keys?version={v1}");
    let body = json!({"rooms": {"!room:x": {"sessions": {"s1": key(3), "s2": key(0)}}}});
    let (s, v) = mia.put(&keys, body).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["count"], 2);
    let etag = v["etag"].clone();
    // A worse copy of s1 changes nothing; a better one replaces it.
    let one = format!("{C}/room_keys/keys/!room:x/s1?version={v1}");
    let (s, v) = mia.put(&one, key(9)).await;
    assert_eq!((s, &v["etag"]), (200, &etag), "{v}");
    let (s, v) = mia.put(&one, key(1)).await;
    assert_eq!(s, 200);
    assert_ne!(v["etag"], etag);
    assert_eq!(mia.get(&one).await, (200, key(1)));
    let (s, v) = mia.get(&keys).await;
    assert_eq!(s, 200);
    assert_eq!(v["rooms"]["!room:x"]["sessions"]["s2"], key(0), "{v}");
    let room = format!("{C}/room_keys/keys/!room:x?version={v1}");
    assert_eq!(
        mia.get(&room).await.1["sessions"]
            .as_object()
            .unwrap()
            .len(),
        2
    );

    // A new version becomes current: uploads to the old one are refused.
    let (_, v) = mia
        .post(
            &version,
            json!({"algorithm": algorithm, "auth_data": {"public_key": "def"}}),
        )
        .await;
    let v2 = v["version"].as_str().unwrap().to_owned();
    let (s, v) = mia.put(&one, key(0)).await;
    assert_err(&(s, v.clone()), 403, "M_WRONG_ROOM_KEYS_VERSION");
    assert_eq!(v["current_version"], v2.as_str());
    // The old version's keys stay readable until it is deleted.
    assert_eq!(mia.get(&one).await.0, 200);
    let old = format!("{C}/room_keys/version/{v1}");
    let change = json!({"algorithm": "other", "auth_data": {}});
    assert_err(&mia.put(&old, change).await, 400, "M_INVALID_PARAM");
    let change =
        json!({"algorithm": algorithm, "auth_data": {"public_key": "abc", "signatures": {}}});
    assert_eq!(mia.put(&old, change).await.0, 200);
    let (s, _) = mia.send(reqwest::Method::DELETE, &old, None).await;
    assert_eq!(s, 200);
    assert_err(&mia.get(&old).await, 404, "M_NOT_FOUND");
    assert_err(&mia.get(&one).await, 404, "M_NOT_FOUND");
    let (s, v) = mia.get(&version).await;
    assert_eq!((s, v["version"].as_str()), (200, Some(v2.as_str())));

    // Bad input.
    let v2keys = format!("{C}/room_keys/keys?version={v2}");
    let bad = json!({"rooms": {"!r:x": {"sessions": {"s": {"first_message_index": -1}}}}});
    assert_err(&mia.put(&v2keys, bad).await, 400, "M_BAD_JSON");
    assert_err(
        &mia.put(&format!("{C}/room_keys/keys"), json!({"rooms": {}}))
            .await,
        400,
        "M_MISSING_PARAM",
    );
    assert_err(
        &mia.post(&version, json!({"algorithm": algorithm})).await,
        400,
        "M_MISSING_PARAM",
    );
    // Deleting a room's keys.
    let (s, _) = mia
        .put(
            &v2keys,
            json!({"rooms": {"!r:x": {"sessions": {"a": key(0), "b": key(0)}}}}),
        )
        .await;
    assert_eq!(s, 200);
    let (s, v) = mia
        .send(
            reqwest::Method::DELETE,
            &format!("{C}/room_keys/keys/!r:x?version={v2}"),
            None,
        )
        .await;
    assert_eq!((s, v["count"].as_u64()), (200, Some(0)), "{v}");
    server.stop().await;
}

/// A device signed into a portable account's log (an `add_device` op, no Matrix key upload)
/// is a device-list change for the users who follow that account.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_log_device_ops_are_device_list_changes() {
    account_log_device_ops_are_device_list_changes_on(Backend::Redb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_log_device_ops_are_device_list_changes_on_postgres() {
    account_log_device_ops_are_device_list_changes_on(Backend::postgres()).await;
}

async fn account_log_device_ops_are_device_list_changes_on(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let server = start_on(&backend, dir.path(), |_| {}).await;
    let anon = server.client();
    let mut owner = common::Owner::new(41, &uid("olga"), &[common::SERVER_NAME]);
    let (s, v) = anon
        .post(
            &format!("{C}/register"),
            json!({"username": "olga", "auth": {"type": "m.login.dummy"},
                   "org.roam.genesis": owner.ops[0].value, "inhibit_login": true}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let pete = anon.register("pete", "pw-pete-1").await;
    let (s, _) = pete
        .post(
            &format!("{C}/keys/query"),
            json!({"device_keys": {uid("olga"): []}}),
        )
        .await;
    assert_eq!(s, 200);
    let since = next(&sync(&pete, None, 0).await);
    let op = owner.sign(common::add_device("OLGAPHONE", 42));
    let (s, v) = anon
        .post(
            &format!("/_roam/v1/accounts/{}/ops", owner.did()),
            json!({"ops": [op]}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let v = sync(&pete, Some(&since), 5_000).await;
    assert_eq!(v["device_lists"]["changed"], json!([uid("olga")]), "{v}");
    server.stop().await;
}
