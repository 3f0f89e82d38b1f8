//! The `roam` binary itself: `roam serve` with flags, environment and a config file, SIGTERM
//! shutdown, and `roam admin token` on the data directory (refused while the server runs).

mod common;

use std::path::Path;
use std::process::{Child, Command};

use common::{roam_bin, spawn_serve};
use serde_json::{Value, json};

fn roam(bin: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(bin)
        .args(args)
        .env_remove("ROAM_DATA_DIR")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Starts `roam serve` and returns the child and its base URL, read from the banner.
fn serve(bin: &Path, args: &[&str], envs: &[(&str, &str)]) -> (Child, String) {
    let mut cmd = Command::new(bin);
    cmd.arg("serve").args(args).envs(envs.iter().copied());
    spawn_serve(cmd)
}

fn terminate(child: &mut Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(
        exit.success(),
        "roam serve exits cleanly on SIGTERM: {exit}"
    );
}

async fn post(base: &str, path: &str, body: Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test]
async fn serve_and_admin_tokens() {
    let bin = roam_bin();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();

    let (ok, token, err) = roam(
        &bin,
        &[
            "admin",
            "token",
            "create",
            "--data-dir",
            data,
            "--uses",
            "1",
        ],
    );
    assert!(ok, "{err}");
    let token = token.trim().to_owned();
    assert_eq!(token.len(), 16);
    let (ok, list, _) = roam(&bin, &["admin", "token", "list", "--data-dir", data]);
    // The token is shown once, at creation; the list names it by an ID, never in full.
    assert!(
        ok && !list.contains(&token) && list.contains("id ") && list.contains("used 0/1"),
        "{list}"
    );

    let (mut child, base) = serve(
        &bin,
        &[
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data,
            "--server-name",
            "cli.test",
            "--registration",
            "token",
        ],
        &[],
    );
    // The store is locked while the server runs, and the admin command says so.
    let (ok, _, err) = roam(&bin, &["admin", "token", "list", "--data-dir", data]);
    assert!(
        !ok && err.contains("in use by a running roam server"),
        "{err}"
    );

    let register = "/_matrix/client/v3/register";
    let (s, v) = post(&base, register, json!({"username": "carol", "password": "pw", "auth": {"type": "m.login.registration_token", "token": token}})).await;
    assert_eq!(s, 401, "{v}");
    let session = v["session"].clone();
    let (s, v) = post(&base, register, json!({"username": "carol", "password": "pw", "auth": {"type": "m.login.dummy", "session": session}})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["user_id"], "@carol:cli.test");
    terminate(&mut child);

    let (_, list, _) = roam(&bin, &["admin", "token", "list", "--data-dir", data]);
    assert!(
        list.contains("used 1/1") && list.contains("used up"),
        "{list}"
    );
    let (ok, out, _) = roam(
        &bin,
        &["admin", "token", "revoke", "--data-dir", data, &token],
    );
    assert!(ok && out.contains("revoked"));
    let (ok, _, err) = roam(
        &bin,
        &["admin", "token", "revoke", "--data-dir", data, &token],
    );
    assert!(!ok && err.contains("no registration token"), "{err}");

    // Restart configured by a file plus environment; the account is still there.
    let config = dir.path().join("roam.toml");
    std::fs::write(&config, "server_name = \"cli.test\"\nfederation_address = \"cli.test:8448\"\nregistration = \"closed\"\n").unwrap();
    let (mut child, base) = serve(
        &bin,
        &[],
        &[
            ("ROAM_CONFIG", config.to_str().unwrap()),
            ("ROAM_DATA_DIR", data),
            ("ROAM_LISTEN", "127.0.0.1:0"),
        ],
    );
    let (s, v) = post(
        &base,
        "/_matrix/client/v3/login",
        json!({"type": "m.login.password", "user": "carol", "password": "pw"}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = post(
        &base,
        register,
        json!({"username": "dan", "password": "pw"}),
    )
    .await;
    assert_eq!((s, v["errcode"].as_str()), (403, Some("M_FORBIDDEN")));
    let wk: Value = reqwest::get(format!("{base}/.well-known/matrix/server"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(wk, json!({"m.server": "cli.test:8448"}));
    terminate(&mut child);

    // A bad config file is reported, not ignored.
    std::fs::write(&config, "server_nam = \"typo\"\n").unwrap();
    let (ok, _, err) = roam(
        &bin,
        &[
            "serve",
            "--config",
            config.to_str().unwrap(),
            "--data-dir",
            data,
        ],
    );
    assert!(!ok && err.contains("server_nam"), "{err}");
}

/// What [`fill_redb_store`] left in a redb data directory.
struct Filled {
    /// alice's first token, and the token of her second device `PHONE`, which has one
    /// to-device message waiting.
    token: String,
    phone: String,
    did: String,
    verify_keys: Value,
    /// The ETag of dee's bundle: the stored answers of its head.
    etag: String,
    backup_version: String,
}

/// Registers `alice` (password; account data, profile, filter, a key backup, a second
/// device with an undelivered to-device message) and a portable account with a log on a
/// redb server in `data`.
async fn fill_redb_store(data: &Path) -> Filled {
    use common::C;
    let server = common::start_on(&common::Backend::Redb, data, |_| {}).await;
    let anon = server.client();
    let alice = anon.register("alice", "secret-a").await;
    let (phone, _) = anon.login("alice", "secret-a", Some("PHONE")).await;
    let me = "@alice:roam.test";
    let writes = [
        (
            format!("{C}/user/{me}/account_data/m.roam.test"),
            json!({"n": 1}),
        ),
        (
            format!("{C}/profile/{me}/displayname"),
            json!({"displayname": "Alice A"}),
        ),
        (
            format!("{C}/sendToDevice/m.roam.test/t1"),
            json!({"messages": {me: {"PHONE": {"hello": "phone"}}}}),
        ),
    ];
    for (path, body) in writes {
        let (s, v) = alice.put(&path, body).await;
        assert_eq!(s, 200, "{path}: {v}");
    }
    let (s, v) = alice
        .post(
            &format!("{C}/user/{me}/filter"),
            json!({"room": {"timeline": {"limit": 3}}}),
        )
        .await;
    assert_eq!((s, v["filter_id"].as_str()), (200, Some("0000")), "{v}");
    let (s, v) = alice
        .post(
            &format!("{C}/room_keys/version"),
            json!({"algorithm": "m.megolm_backup.v1.curve25519-aes-sha2", "auth_data": {"public_key": "abc"}}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let backup_version = v["version"].as_str().unwrap().to_owned();
    let key = json!({"first_message_index": 1, "forwarded_count": 0, "is_verified": false, "session_data": {"ciphertext": "c"}});
    let (s, v) = alice
        .put(
            &format!("{C}/room_keys/keys/!room:x/s1?version={backup_version}"),
            key,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let owner = common::Owner::new(
        7,
        &format!("@dee:{}", common::SERVER_NAME),
        &[common::SERVER_NAME],
    );
    let (s, v) = anon
        .post(
            "/_matrix/client/v3/register",
            json!({"username": "dee", "auth": {"type": "m.login.dummy"},
                   "org.roam.genesis": owner.ops[0].value, "inhibit_login": true}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (_, keys) = anon.get("/_matrix/key/v2/server").await;
    let did = owner.did().as_str().to_owned();
    let etag = bundle_etag(&server.base, &did).await;
    server.stop().await;
    Filled {
        token: alice.token.clone().unwrap(),
        phone: phone.token.clone().unwrap(),
        did,
        verify_keys: keys["verify_keys"].clone(),
        etag,
        backup_version,
    }
}

/// The ETag of `did`'s bundle on the server at `base`.
async fn bundle_etag(base: &str, did: &str) -> String {
    let r = reqwest::get(format!("{base}/_roam/v1/accounts/{did}"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.headers()["etag"].to_str().unwrap().to_owned()
}

/// `roam admin migrate-store` copies a redb data directory into PostgreSQL (logs verified),
/// runs again without harm (resume), and `roam serve --database-url` then serves the same
/// accounts, tokens, logs and server key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_store_to_postgres_then_serve() {
    let bin = roam_bin();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let filled = fill_redb_store(&data).await;
    let common::Backend::Postgres(url) = common::Backend::postgres() else {
        unreachable!()
    };
    let args = [
        "admin",
        "migrate-store",
        "--from",
        data.to_str().unwrap(),
        "--to",
        &url,
    ];
    let (ok, out, err) = roam(&bin, &args);
    assert!(ok && out.contains("1 account logs verified"), "{out}{err}");
    // Again (as after an interruption): nothing is duplicated or refused.
    let (ok, out, err) = roam(&bin, &args);
    assert!(ok && out.contains("1 account logs verified"), "{out}{err}");

    let (mut child, base) = serve(
        &bin,
        &[
            "--listen",
            "127.0.0.1:0",
            "--server-name",
            common::SERVER_NAME,
            "--database-url",
            &url,
        ],
        &[],
    );
    let client = common::Client {
        http: reqwest::Client::new(),
        base,
        token: None,
    };
    let (s, v) = client
        .with_token(&filled.token)
        .get("/_matrix/client/v3/account/whoami")
        .await;
    assert_eq!(
        (s, v["user_id"].as_str()),
        (200, Some("@alice:roam.test")),
        "{v}"
    );
    let (s, keys) = client.get("/_matrix/key/v2/server").await;
    assert_eq!((s, &keys["verify_keys"]), (200, &filled.verify_keys));
    let did = &filled.did;
    let (s, v) = client.get(&format!("/_roam/v1/accounts/{did}")).await;
    assert_eq!(s, 200, "{v}");
    // The stored answers moved with the log: the same representation, the same ETag.
    assert_eq!(bundle_etag(&client.base, did).await, filled.etag);
    assert_device_plane_copied(&client, &filled).await;
    let (s, health) = client.get("/health").await;
    assert_eq!((s, health.as_str()), (200, Some("OK")));
    client.login("alice", "secret-a", None).await;
    terminate(&mut child);
}

/// The device plane and key backups arrived: account data, profile, filter, the waiting
/// to-device message (delivered to the device it was sent to), the backup and its key.
async fn assert_device_plane_copied(client: &common::Client, filled: &Filled) {
    use common::C;
    let alice = client.with_token(&filled.token);
    let me = "@alice:roam.test";
    let got = alice
        .get(&format!("{C}/user/{me}/account_data/m.roam.test"))
        .await;
    assert_eq!(got, (200, json!({"n": 1})));
    let (s, v) = alice.get(&format!("{C}/profile/{me}/displayname")).await;
    assert_eq!(
        (s, v["displayname"].as_str()),
        (200, Some("Alice A")),
        "{v}"
    );
    let (s, v) = alice.get(&format!("{C}/user/{me}/filter/0000")).await;
    assert_eq!(
        (s, &v["room"]["timeline"]["limit"]),
        (200, &json!(3)),
        "{v}"
    );
    let version = &filled.backup_version;
    let (s, v) = alice.get(&format!("{C}/room_keys/version")).await;
    assert_eq!(
        (s, v["version"].as_str(), v["count"].as_u64()),
        (200, Some(version.as_str()), Some(1)),
        "{v}"
    );
    let (s, v) = alice
        .get(&format!("{C}/room_keys/keys/!room:x/s1?version={version}"))
        .await;
    assert_eq!(
        (s, v["first_message_index"].as_u64()),
        (200, Some(1)),
        "{v}"
    );
    let (s, v) = client
        .with_token(&filled.phone)
        .get(&format!("{C}/sync?timeout=0"))
        .await;
    assert_eq!(s, 200, "{v}");
    let events = v["to_device"]["events"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(events.len(), 1, "{v}");
    assert_eq!(events[0]["content"], json!({"hello": "phone"}));
    // Positions continue after the copied stream: a new write is seen by a later sync.
    let since = v["next_batch"].as_str().unwrap().to_owned();
    let (s, _) = alice
        .put(
            &format!("{C}/user/{me}/account_data/m.roam.test"),
            json!({"n": 2}),
        )
        .await;
    assert_eq!(s, 200);
    let (_, v) = alice
        .get(&format!("{C}/sync?timeout=0&since={since}"))
        .await;
    let data = v["account_data"]["events"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(data.iter().any(|e| e["content"] == json!({"n": 2})), "{v}");
}

/// A log that does not verify stops the copy, naming the DID.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_store_refuses_a_log_that_does_not_verify() {
    use redb::ReadableTable;
    let bin = roam_bin();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let did = fill_redb_store(&data).await.did;
    {
        let db = redb::Database::create(data.join("roam.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut ops = txn.open_table(roam_server::store::tables::LOG_OPS).unwrap();
            let (key, text) = {
                let (k, v) = ops.iter().unwrap().next().unwrap().unwrap();
                let (d, h) = k.value();
                ((d.to_owned(), h.to_owned()), v.value().to_owned())
            };
            let mut op: Value = serde_json::from_str(&text).unwrap();
            op["created_at"] = json!(op["created_at"].as_u64().unwrap_or(0) + 1);
            ops.insert((key.0.as_str(), key.1.as_str()), op.to_string().as_str())
                .unwrap();
        }
        txn.commit().unwrap();
    }
    let common::Backend::Postgres(url) = common::Backend::postgres() else {
        unreachable!()
    };
    let (ok, out, err) = roam(
        &bin,
        &[
            "admin",
            "migrate-store",
            "--from",
            data.to_str().unwrap(),
            "--to",
            &url,
        ],
    );
    assert!(
        !ok && err.contains(&did) && err.contains("does not verify"),
        "{out}{err}"
    );
}
