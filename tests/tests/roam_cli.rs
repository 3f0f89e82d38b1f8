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

/// Registers `alice` (password) and a portable account with a log on a redb server in
/// `data`; returns alice's token, the DID and the server key document.
async fn fill_redb_store(data: &Path) -> (String, String, Value) {
    let server = common::start(data, |_| {}).await;
    let anon = server.client();
    let alice = anon.register("alice", "secret-a").await;
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
    let token = alice.token.clone().unwrap();
    server.stop().await;
    (
        token,
        owner.did().as_str().to_owned(),
        keys["verify_keys"].clone(),
    )
}

/// `roam admin migrate-store` copies a redb data directory into PostgreSQL (logs verified),
/// runs again without harm (resume), and `roam serve --database-url` then serves the same
/// accounts, tokens, logs and server key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_store_to_postgres_then_serve() {
    let bin = roam_bin();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (token, did, verify_keys) = fill_redb_store(&data).await;
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
        .with_token(&token)
        .get("/_matrix/client/v3/account/whoami")
        .await;
    assert_eq!(
        (s, v["user_id"].as_str()),
        (200, Some("@alice:roam.test")),
        "{v}"
    );
    let (s, keys) = client.get("/_matrix/key/v2/server").await;
    assert_eq!((s, &keys["verify_keys"]), (200, &verify_keys));
    let (s, v) = client.get(&format!("/_roam/v1/accounts/{did}")).await;
    assert_eq!(s, 200, "{v}");
    let (s, health) = client.get("/health").await;
    assert_eq!((s, health.as_str()), (200, Some("OK")));
    client.login("alice", "secret-a", None).await;
    terminate(&mut child);
}

/// A log that does not verify stops the copy, naming the DID.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_store_refuses_a_log_that_does_not_verify() {
    use redb::ReadableTable;
    let bin = roam_bin();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (_, did, _) = fill_redb_store(&data).await;
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
