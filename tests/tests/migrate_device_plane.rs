//! Migration carries the device plane (issue 12, point 7): a user of a.test sets up what a
//! Matrix client makes — cross-signing keys, secret storage in account data, a key backup
//! with keys, device keys and one-time keys — then moves with the `roam` CLI.
//!
//! - `migrate_carries_the_device_plane`: `roam migrate` (old server up) carries it to b.test:
//!   account data and the backup are the same there, and a user of a third server, c.test,
//!   still reaches the account through its old user ID: the query answers the validly signed
//!   old keys (devices signed into the account log marked as such), a one-time key is
//!   claimed and a to-device message reaches the device on b.test.
//! - `export_then_import_when_the_old_server_is_gone`: `roam export` taken earlier, a.test
//!   gone, `roam migrate` says the device plane was not carried, `roam import` restores it
//!   (the export's bundle binds the old user ID though its server is gone).
//! - `a_forged_or_replayed_import_is_refused`: an import signed by another key, for another
//!   server, too old, tampered with, malformed, with a device not signed by itself, or for an
//!   account not hosted here is refused with its errcode; the export needs a session.
//! - `a_matrix_js_sdk_client_keeps_its_backup_and_identity_across_a_migration`: the same with
//!   a real client (matrix-js-sdk, tests/js-sdk/flow.mjs) making the device plane on a.test
//!   and restoring it on b.test, signed in with the same password.

use std::path::PathBuf;

use ed25519_dalek::SigningKey;
use roam_client::keystore::Keystore;
use roam_client::secret_storage;
use roam_identity_core::device_plane::sign_import;
use roam_identity_core::{KeyId, signed};
use serde_json::{Value, json};

mod common;
use common::{C, Client, Node, cross_signing_key, cs_key_id, device_keys, enc, federation};

const PASS: &str = "alice passphrase";

/// The `roam` CLI as one user: a home directory, the servers' overrides.
struct Cli {
    bin: PathBuf,
    home: tempfile::TempDir,
    overrides: Vec<String>,
}

impl Cli {
    fn new(nodes: &[Node]) -> Self {
        Self {
            bin: common::roam_bin(),
            home: tempfile::tempdir().unwrap(),
            overrides: nodes.iter().map(Node::override_arg).collect(),
        }
    }

    fn keystore(&self) -> PathBuf {
        self.home.path().join("alice.json")
    }

    /// Runs `roam ARGS` with `input` on standard input (off the async workers); returns
    /// success, stdout and stderr.
    async fn run_input(&self, args: &[&str], input: Option<String>) -> (bool, String, String) {
        let mut cmd = std::process::Command::new(&self.bin);
        for o in &self.overrides {
            cmd.arg("--federation-override").arg(o);
        }
        cmd.args(args)
            .env("HOME", self.home.path())
            .env("XDG_CONFIG_HOME", self.home.path().join("config"))
            .env("XDG_CACHE_HOME", self.home.path().join("cache"))
            .env("ROAM_PASSPHRASE", PASS)
            .env("ROAM_PASSWORD", "pw-alice-1")
            .env("ROAM_INSECURE_FAST_KDF", "1")
            .env_remove("ROAM_KEYSTORE")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let out = tokio::task::spawn_blocking(move || {
            use std::io::Write;
            let mut child = cmd.spawn().unwrap();
            let mut stdin = child.stdin.take().unwrap();
            stdin
                .write_all(input.unwrap_or_default().as_bytes())
                .unwrap();
            drop(stdin);
            child.wait_with_output().unwrap()
        })
        .await
        .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    async fn ok(&self, args: &[&str]) -> String {
        self.ok_input(args, None).await
    }

    async fn ok_input(&self, args: &[&str], input: Option<String>) -> String {
        let (ok, out, err) = self.run_input(args, input).await;
        assert!(ok, "roam {}:\n{out}\n{err}", args.join(" "));
        format!("{out}{err}")
    }

    /// `key new`, `account create` as alice and `login` (a device signed into the log).
    async fn create_account(&self, homeserver: &str) {
        let ks = self.keystore();
        let ks = ks.to_str().unwrap();
        self.ok(&["key", "new", "--keystore", ks]).await;
        let create = [
            "account",
            "create",
            "--keystore",
            ks,
            "--homeserver",
            homeserver,
            "--user",
            "alice",
        ];
        self.ok(&create).await;
        self.ok(&["login", "--keystore", ks, "--homeserver", homeserver])
            .await;
    }

    /// `roam migrate --to URL --recovery-key` (the key on standard input): the device plane
    /// is carried and the cross-signing keys re-signed by the same master key. Its output.
    async fn migrate_with_recovery_key(&self, to: &str, recovery_key: String) -> String {
        let ks = self.keystore();
        let args = [
            "migrate",
            "--keystore",
            ks.to_str().unwrap(),
            "--to",
            to,
            "--recovery-key",
        ];
        let out = self.ok_input(&args, Some(recovery_key)).await;
        assert!(out.contains("[done] device-plane"), "{out}");
        assert!(out.contains("signed by the same master key"), "{out}");
        out
    }

    fn load(&self) -> Keystore {
        Keystore::load(&self.keystore(), PASS).unwrap()
    }
}

/// What the test's Matrix client made on a.test, to compare with what b.test holds.
struct Made {
    account_data: Vec<(String, Value)>,
    auth_data: Value,
    sessions: Value,
    master: Value,
    master_key: SigningKey,
    phone_key: SigningKey,
    /// The secret-storage recovery key, as a client shows it.
    recovery_key: String,
}

/// Sets up the device plane of `@alice:a.test`: the CLI's device (in the account log), a
/// second device `PHONE` (not in the log) with a one-time key, cross-signing with the
/// self-signing key signing the CLI's device, secret storage, and a key backup.
async fn set_up(a: &Node, ks: &Keystore) -> Made {
    let alice = a.uid("alice");
    let cli = a
        .client()
        .with_token(ks.secrets.access_token.as_deref().unwrap());
    let (phone, _) = a.client().login("alice", "pw-alice-1", Some("PHONE")).await;
    let phone_key = SigningKey::from_bytes(&[31; 32]);
    let mut otk = json!({"key": "phone-otk"});
    signed::sign(
        &mut otk,
        &alice,
        &KeyId::parse("ed25519:PHONE").unwrap(),
        &phone_key,
    )
    .unwrap();
    let body = json!({"device_keys": device_keys(&alice, "PHONE", &phone_key),
                      "one_time_keys": {"signed_curve25519:AAAAAQ": otk}});
    let (s, v) = phone.post(&format!("{C}/keys/upload"), body).await;
    assert_eq!(s, 200, "{v}");

    let (master_key, ssk, usk) = (
        SigningKey::from_bytes(&[41; 32]),
        SigningKey::from_bytes(&[42; 32]),
        SigningKey::from_bytes(&[43; 32]),
    );
    let master = cross_signing_key(&alice, "master", &master_key);
    let mut self_signing = cross_signing_key(&alice, "self_signing", &ssk);
    let mut user_signing = cross_signing_key(&alice, "user_signing", &usk);
    for k in [&mut self_signing, &mut user_signing] {
        signed::sign(k, &alice, &cs_key_id(&master_key), &master_key).unwrap();
    }
    let body = json!({"master_key": master, "self_signing_key": self_signing,
                      "user_signing_key": user_signing});
    let (s, v) = cli
        .post(&format!("{C}/keys/device_signing/upload"), body)
        .await;
    assert_eq!(s, 200, "{v}");
    // The self-signing key signs the CLI's device keys, as stored.
    let device = ks.public.device_id.clone().unwrap();
    let (s, q) = cli
        .post(
            &format!("{C}/keys/query"),
            json!({"device_keys": {&alice: [&device]}}),
        )
        .await;
    assert_eq!(s, 200, "{q}");
    let mut stored = q["device_keys"][&alice][&device].clone();
    let obj = stored.as_object_mut().unwrap();
    obj.remove("unsigned");
    obj.remove("signatures");
    signed::sign(&mut stored, &alice, &cs_key_id(&ssk), &ssk).unwrap();
    let (s, v) = cli
        .post(
            &format!("{C}/keys/signatures/upload"),
            json!({&alice: {&device: stored}}),
        )
        .await;
    assert_eq!((s, &v["failures"]), (200, &json!({})), "{v}");

    // Secret storage, as a client makes it: the cross-signing private keys encrypted under
    // a recovery key the server never sees.
    let ssss = [51u8; 32];
    let secret = |name: &str, seed: &[u8; 32], iv: u8| {
        let text = roam_identity_core::b64::encode(seed);
        json!({"encrypted": {"K1": secret_storage::encrypt(&ssss, name, text.as_bytes(), [iv; 16])}})
    };
    let check = secret_storage::encrypt(&ssss, "", &[0; 32], [5; 16]);
    let account_data = vec![
        (
            "m.secret_storage.default_key".to_owned(),
            json!({"key": "K1"}),
        ),
        (
            "m.secret_storage.key.K1".to_owned(),
            json!({"algorithm": "m.secret_storage.v1.aes-hmac-sha2", "iv": check["iv"], "mac": check["mac"]}),
        ),
        (
            "m.cross_signing.master".to_owned(),
            secret("m.cross_signing.master", &master_key.to_bytes(), 1),
        ),
        (
            "m.cross_signing.self_signing".to_owned(),
            secret("m.cross_signing.self_signing", &ssk.to_bytes(), 2),
        ),
        (
            "m.cross_signing.user_signing".to_owned(),
            secret("m.cross_signing.user_signing", &usk.to_bytes(), 3),
        ),
        (
            "m.megolm_backup.v1".to_owned(),
            secret("m.megolm_backup.v1", &[61; 32], 4),
        ),
    ];
    for (kind, content) in &account_data {
        let path = format!("{C}/user/{}/account_data/{kind}", enc(&alice));
        let (s, v) = cli.put(&path, content.clone()).await;
        assert_eq!(s, 200, "{v}");
    }

    // A key backup, its auth_data signed by the master key.
    let mut auth_data = json!({"public_key": "YmFja3VwLXB1YmxpYy1rZXk"});
    signed::sign(&mut auth_data, &alice, &cs_key_id(&master_key), &master_key).unwrap();
    let (s, v) = cli
        .post(
            &format!("{C}/room_keys/version"),
            json!({"algorithm": "m.megolm_backup.v1.curve25519-aes-sha2", "auth_data": auth_data}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let version = v["version"].as_str().unwrap().to_owned();
    let sessions = json!({
        "!room:a.test": {"sessions": {
            "s1": {"first_message_index": 0, "forwarded_count": 0, "is_verified": true,
                   "session_data": {"ephemeral": "ZQ", "ciphertext": "Yw", "mac": "bQ"}},
            "s2": {"first_message_index": 3, "forwarded_count": 1, "is_verified": false,
                   "session_data": {"ephemeral": "ZTI", "ciphertext": "YzI", "mac": "bTI"}},
        }},
    });
    let (s, v) = cli
        .put(
            &format!("{C}/room_keys/keys?version={version}"),
            json!({"rooms": sessions}),
        )
        .await;
    assert_eq!((s, &v["count"]), (200, &json!(2)), "{v}");
    Made {
        account_data,
        auth_data,
        sessions,
        master,
        master_key,
        phone_key,
        recovery_key: secret_storage::format_recovery_key(&ssss).to_string(),
    }
}

/// The account on b.test holds what was made on a.test: the same account data, and the
/// backup restorable (same algorithm and `auth_data`, the same keys).
async fn assert_restored(b: &Node, ks: &Keystore, made: &Made) -> Client {
    let alice_b = b.uid("alice");
    assert_eq!(ks.public.user_id.as_deref(), Some(alice_b.as_str()));
    let me = b
        .client()
        .with_token(ks.secrets.access_token.as_deref().unwrap());
    for (kind, content) in &made.account_data {
        let path = format!("{C}/user/{}/account_data/{kind}", enc(&alice_b));
        let (s, v) = me.get(&path).await;
        assert_eq!((s, &v), (200, content), "{kind}");
    }
    let (s, v) = me.get(&format!("{C}/room_keys/version")).await;
    assert_eq!(s, 200, "{v}");
    // The same auth_data (a re-signing adds the master key's signature for the new user ID).
    let mut auth_data = v["auth_data"].clone();
    auth_data["signatures"]
        .as_object_mut()
        .unwrap()
        .remove(&alice_b);
    assert_eq!(auth_data, made.auth_data);
    assert_eq!(v["algorithm"], "m.megolm_backup.v1.curve25519-aes-sha2");
    assert_eq!(v["count"], 2, "{v}");
    let version = v["version"].as_str().unwrap();
    let (s, keys) = me
        .get(&format!("{C}/room_keys/keys?version={version}"))
        .await;
    assert_eq!(s, 200, "{keys}");
    assert_eq!(keys["rooms"], made.sessions);
    me
}

/// What a user of another server gets for `@alice:a.test`: the keys as Alice's clients
/// signed them, the devices signed into the account log marked so.
fn assert_old_keys(q: &Value, alice: &str, cli_device: &str, made: &Made) {
    assert_eq!(q["failures"], json!({}), "{q}");
    let devices = &q["device_keys"][alice];
    let phone = &devices["PHONE"];
    signed::verify(
        phone,
        alice,
        &KeyId::parse("ed25519:PHONE").unwrap(),
        &made.phone_key.verifying_key(),
    )
    .expect("PHONE's keys as it signed them");
    assert_eq!(phone["unsigned"]["io.roam.in_account_log"], false, "{q}");
    let cli = &devices[cli_device];
    assert_eq!(cli["user_id"], alice, "{q}");
    assert_eq!(cli["unsigned"]["io.roam.in_account_log"], true, "{q}");
    let mut master = q["master_keys"][alice].clone();
    master.as_object_mut().unwrap().remove("signatures");
    assert_eq!(master, made.master, "{q}");
    signed::verify(
        &q["self_signing_keys"][alice],
        alice,
        &cs_key_id(&made.master_key),
        &made.master_key.verifying_key(),
    )
    .expect("the self-signing key signed by the master key");
}

/// Under the new user ID, the same master key: cross-signing keys naming it, signed by that
/// master key, and the backup's `auth_data` signed by it for the new user ID.
async fn assert_same_identity(me: &Client, alice_b: &str, made: &Made) {
    let (s, q) = me
        .post(
            &format!("{C}/keys/query"),
            json!({"device_keys": {alice_b: []}}),
        )
        .await;
    assert_eq!(s, 200, "{q}");
    let master = &q["master_keys"][alice_b];
    assert_eq!(master["user_id"], alice_b, "{q}");
    assert_eq!(
        master["keys"], made.master["keys"],
        "the same master key: {q}"
    );
    let (id, key) = (cs_key_id(&made.master_key), made.master_key.verifying_key());
    signed::verify(&q["self_signing_keys"][alice_b], alice_b, &id, &key)
        .expect("the new self-signing key is signed by the same master key");
    signed::verify(&q["user_signing_keys"][alice_b], alice_b, &id, &key)
        .expect("the new user-signing key is signed by the same master key");
    let (_, v) = me.get(&format!("{C}/room_keys/version")).await;
    signed::verify(&v["auth_data"], alice_b, &id, &key)
        .expect("the backup is signed by the master key for the new user ID");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_carries_the_device_plane() {
    let nodes = federation(&["a.test", "b.test", "c.test"]).await;
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    let cli = Cli::new(&nodes);
    cli.create_account(&a.base).await;
    let before = cli.load();
    let device = before
        .public
        .device_id
        .clone()
        .expect("a session on a.test");
    let made = set_up(a, &before).await;

    let out = cli
        .migrate_with_recovery_key(&b.base, made.recovery_key.clone())
        .await;
    assert!(
        out.contains("Matrix password from the keystore is set"),
        "{out}"
    );
    let after = cli.load();
    let me = assert_restored(b, &after, &made).await;
    assert_same_identity(&me, &b.uid("alice"), &made).await;
    // A client without key login signs in to b.test with the password used on a.test, and
    // the migrated session stays logged in.
    let (laptop, _) = b
        .client()
        .login("alice", "pw-alice-1", Some("LAPTOP"))
        .await;
    let (s, v) = laptop.get(&format!("{C}/account/whoami")).await;
    assert_eq!((s, &v["user_id"]), (200, &json!(b.uid("alice"))), "{v}");
    let (s, v) = me.get(&format!("{C}/account/whoami")).await;
    assert_eq!(s, 200, "{v}");

    // Carol, on c.test, reaches Alice through her old user ID: c.test's resolver sends her to
    // b.test, which answers with the keys carried there.
    let alice = a.uid("alice");
    let carol = c.client().register("carol", "pw-carol-1").await;
    let (s, q) = carol
        .post(
            &format!("{C}/keys/query"),
            json!({"device_keys": {&alice: []}}),
        )
        .await;
    assert_eq!(s, 200, "{q}");
    assert_old_keys(&q, &alice, &device, &made);
    let (s, claimed) = carol
        .post(
            &format!("{C}/keys/claim"),
            json!({"one_time_keys": {&alice: {"PHONE": "signed_curve25519"}}}),
        )
        .await;
    assert_eq!(s, 200, "{claimed}");
    let otk = &claimed["one_time_keys"][&alice]["PHONE"]["signed_curve25519:AAAAAQ"];
    assert_eq!(otk["key"], "phone-otk", "{claimed}");

    // A to-device message to the old user ID reaches the device on b.test.
    let (s, first) = me.get(&format!("{C}/sync")).await;
    assert_eq!(s, 200, "{first}");
    let since = first["next_batch"].as_str().unwrap().to_owned();
    let body = json!({"messages": {&alice: {&device: {"hello": "via the old ID"}}}});
    let (s, v) = carol
        .put(&format!("{C}/sendToDevice/m.roam.test/t1"), body)
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, got) = me
        .get(&format!("{C}/sync?since={since}&timeout=5000"))
        .await;
    assert_eq!(s, 200, "{got}");
    let events = got["to_device"]["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{got}");
    assert_eq!(events[0]["sender"], c.uid("carol"));
    assert_eq!(events[0]["content"]["hello"], "via the old ID");

    // The export of b.test carries the old user ID's keys on (a second hop would take them).
    let (s, plane) = me.get("/_roam/v1/device-plane").await;
    assert_eq!(s, 200, "{plane}");
    assert!(plane["users"][&alice]["master_key"].is_object(), "{plane}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_then_import_when_the_old_server_is_gone() {
    let mut nodes = federation(&["a.test", "b.test"]).await;
    let cli = Cli::new(&nodes);
    let ks_path = cli.keystore();
    let ks = ks_path.to_str().unwrap();
    let (a_base, b_base) = (nodes[0].base.clone(), nodes[1].base.clone());
    cli.create_account(&a_base).await;
    let made = set_up(&nodes[0], &cli.load()).await;
    let file = cli.home.path().join("alice-export.json");
    let out = cli
        .ok(&["export", "--keystore", ks, "--out", file.to_str().unwrap()])
        .await;
    assert!(out.contains("the device plane"), "{out}");

    drop(nodes.remove(0)); // a.test is gone
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let b = &nodes[0];
    let out = cli
        .ok(&["migrate", "--keystore", ks, "--to", &b_base])
        .await;
    assert!(out.contains("[skipped] device-plane"), "{out}");
    assert!(out.contains("roam import"), "{out}");
    let out = cli
        .ok(&[
            "import",
            "--in",
            file.to_str().unwrap(),
            "--homeserver",
            &b_base,
            "--sign-with",
            ks,
        ])
        .await;
    assert!(out.contains("device plane restored"), "{out}");
    assert!(out.contains("must re-sign them"), "{out}");
    let after = cli.load();
    let me = assert_restored(b, &after, &made).await;
    // The old user ID's keys are held on b.test, bound by the export's attestations.
    let alice = "@alice:a.test";
    let (s, q) = me
        .post(
            &format!("{C}/keys/query"),
            json!({"device_keys": {alice: []}}),
        )
        .await;
    assert_eq!(s, 200, "{q}");
    let device = after.public.device_id.clone().unwrap();
    assert_old_keys(&q, alice, &device, &made);
    // Importing the same file again changes nothing (no second backup version).
    cli.ok(&[
        "import",
        "--in",
        file.to_str().unwrap(),
        "--homeserver",
        &b_base,
        "--sign-with",
        ks,
    ])
    .await;
    let (_, v) = me.get(&format!("{C}/room_keys/version")).await;
    assert_eq!(v["count"], 2, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_or_replayed_import_is_refused() {
    let nodes = federation(&["b.test"]).await;
    let b = &nodes[0];
    let cli = Cli::new(&nodes);
    cli.create_account(&b.base).await;
    let k = cli.load();
    let did = k.did().unwrap();
    let server = roam_identity_core::ServerName::parse("b.test").unwrap();
    let me = b
        .client()
        .with_token(k.secrets.access_token.as_deref().unwrap());
    let (s, plane) = me.get("/_roam/v1/device-plane").await;
    assert_eq!(s, 200, "{plane}");
    let anon = b.client();
    let post = |req: Value| {
        let anon = anon.clone();
        async move { anon.post("/_roam/v1/device-plane", req).await }
    };
    let now = common::now();
    let sign = |key: &SigningKey, server: &roam_identity_core::ServerName, at: u64, p: Value| {
        sign_import(key, &did, server, at, p, None).unwrap()
    };
    let good = sign(&k.update_key(), &server, now, plane.clone());
    let (s, v) = post(good.clone()).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["user_id"], "@alice:b.test", "{v}");

    let stranger = SigningKey::from_bytes(&[77; 32]);
    common::assert_err(
        &post(sign(&stranger, &server, now, plane.clone())).await,
        403,
        "M_FORBIDDEN",
    );
    let other = roam_identity_core::ServerName::parse("c.test").unwrap();
    common::assert_err(
        &post(sign(&k.update_key(), &other, now, plane.clone())).await,
        400,
        "M_INVALID_PARAM",
    );
    common::assert_err(
        &post(sign(
            &k.update_key(),
            &server,
            now - 3_600_000,
            plane.clone(),
        ))
        .await,
        403,
        "M_FORBIDDEN",
    );
    let mut tampered = good.clone();
    tampered["device_plane"]["account_data"] = json!({"m.evil": {"x": 1}});
    common::assert_err(&post(tampered).await, 403, "M_FORBIDDEN");
    common::assert_err(
        &post(sign(&k.update_key(), &server, now, json!({"type": "x"}))).await,
        400,
        "M_BAD_JSON",
    );
    let mut forged_device = plane.clone();
    forged_device["users"]["@alice:b.test"]["devices"]["FORGED"] = json!({
        "keys": device_keys("@alice:b.test", "FORGED", &stranger),
    });
    forged_device["users"]["@alice:b.test"]["devices"]["FORGED"]["keys"]["device_id"] =
        json!("OTHER");
    common::assert_err(
        &post(sign(&k.update_key(), &server, now, forged_device)).await,
        400,
        "M_INVALID_SIGNATURE",
    );
    let unknown = SigningKey::from_bytes(&[78; 32]);
    let unknown_did = roam_identity_core::Did::from_key(&unknown.verifying_key()).unwrap();
    let req = sign_import(&unknown, &unknown_did, &server, now, plane.clone(), None).unwrap();
    common::assert_err(&post(req).await, 404, "M_NOT_FOUND");
    common::assert_err(&post(json!({"type": "x"})).await, 400, "M_MISSING_PARAM");
    common::assert_err(
        &anon.get("/_roam/v1/device-plane").await,
        401,
        "M_MISSING_TOKEN",
    );
}

/// Runs one part of the js-sdk flow (`mode`) against `base` as alice; `state` carries what
/// the first part made to the second.
async fn run_js_sdk(flow: &std::path::Path, mode: &str, base: &str, state: &std::path::Path) {
    let mut cmd = std::process::Command::new("node");
    cmd.arg(flow)
        .arg(mode)
        .arg(base)
        .args(["alice", "pw-alice-1"])
        .arg(state);
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("running node (`bash .ci/setup-node.sh` installs it): {e}"));
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    println!("{stdout}");
    assert!(
        out.status.success() && stdout.contains(&format!("{} flow passed", &mode[2..])),
        "matrix-js-sdk {mode} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
}

/// A real client around a migration: matrix-js-sdk with its Rust crypto sets up
/// cross-signing, secret storage and a key backup holding a room key on a.test; `roam migrate`
/// moves the account to b.test, given the recovery key the SDK made; there a new
/// matrix-js-sdk device, signed in with the same password, opens secret storage with the
/// recovery key, finds the same cross-signing identity, cross-signs itself and restores the
/// room key from the backup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_matrix_js_sdk_client_keeps_its_backup_and_identity_across_a_migration() {
    let flow = common::js_sdk_flow();
    let nodes = federation(&["a.test", "b.test"]).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let cli = Cli::new(&nodes);
    cli.create_account(&a.base).await;
    let state = cli.home.path().join("js-sdk-state.json");
    run_js_sdk(&flow, "--before-migration", &a.base, &state).await;
    let saved: Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    assert_eq!(saved["userId"], a.uid("alice"));
    let recovery = saved["recovery"]["encodedPrivateKey"]
        .as_str()
        .expect("the recovery key the SDK made")
        .to_owned();

    cli.migrate_with_recovery_key(&b.base, recovery).await;
    run_js_sdk(&flow, "--after-migration", &b.base, &state).await;
}
