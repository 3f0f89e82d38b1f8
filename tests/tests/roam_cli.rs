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
