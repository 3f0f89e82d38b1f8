//! The `roam` CLI driven as a user would, against real `roam serve` processes on loopback
//! ports with temporary data directories.
//!
//! - `journey`: key new → account create → login (device signed) → a second user resolves →
//!   migrate A→B → resolve shows B → stop A → still verified via B → stop B → `--offline`
//!   answers `stale` from the cache → a LAN peer answers `lan` → rotate → a thief with a copy
//!   of the keystore moves the account → recover supersedes the thief's branch.
//! - `errors_are_clear`: wrong passphrase, missing keystore, unreachable server.
//! - `half_done_migration_resumes`: the new server drops the connection mid-migration; a
//!   re-run of the same command finishes.
//! - `claim_an_existing_account_and_carry_the_keystore`: a password-proven claim, and an
//!   export that carries the encrypted keystore.
//! - `lan_serve_is_found_by_lan_peers`: mDNS announce and browse.
//! - `own_changes_show_at_once_and_the_phrase_recovers`: after migrate, servers set, rotate
//!   and recover, `roam resolve` without `--max-age 0` shows the change from the local cache;
//!   `rotate`/`recover --phrase` read the 24 words from stdin, and refuse a stale phrase, an
//!   unknown word and a bad checksum.
//!
//! Servers, users and helpers are in `support/`.

mod support;

use std::net::TcpStream;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Server, User, flaky_proxy, free_port, post_json, resolve, resolve_fails, strs};
#[test]
fn journey() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let mut a = Server::start(root, "a.test");
    let mut b = Server::start(root, "b.test");
    let overrides = vec![a.override_arg(), b.override_arg()];
    let alice = User::new(root, "alice", &overrides);
    let bob = User::new(root, "bob", &overrides);
    let ks = alice.path("alice.json");
    let ks = ks.to_str().unwrap();
    let recovery = format!("{ks}.recovery.json");

    // key new: the DID on stdout, the keystore and the recovery file written, private.
    let out = alice.ok(&["key", "new", "--keystore", ks]);
    let did = out.trim().to_owned();
    assert!(did.starts_with("did:key:z6Mk"), "{out}");
    assert!(Path::new(&recovery).exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for f in [ks, recovery.as_str()] {
            let mode = std::fs::metadata(f).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "{f} is readable by others");
        }
    }
    // A second key new does not overwrite it.
    let err = alice.fails(3, &["key", "new", "--keystore", ks]);
    assert!(err.contains("already exists"), "{err}");

    // account create: user ID and DID.
    let out = alice.create_account(ks, &a.url(), "alice");
    assert!(out.contains("@alice:a.test") && out.contains(&did), "{out}");

    // login: a device ID, signed into the log.
    let device = alice
        .ok(&["login", "--keystore", ks, "--homeserver", &a.url()])
        .trim()
        .to_owned();
    assert!(!device.is_empty());
    let show = alice.json(&["account", "show", "--keystore", ks, "--json"]);
    assert_eq!(strs(&show["devices"]), vec![device.clone()]);
    assert_eq!(show["server_views"][0]["server"], "a.test");
    assert_eq!(show["server_views"][0]["in_sync"], true, "{show}");
    assert_eq!(
        show["server_views"][0]["attestations"][0]["user_id"], "@alice:a.test",
        "{show}"
    );
    let devices = alice.json(&["device", "list", "--keystore", ks, "--json"]);
    assert_eq!(devices["devices"][0]["device_id"], device.as_str());
    assert_eq!(devices["devices"][0]["signed_in_log"], true);
    assert_eq!(devices["devices"][0]["on_server"], true);

    // A second login is a second device; revoking the first signs it out of the log and
    // deletes it on the server.
    let first = device;
    let device = alice
        .ok(&["login", "--keystore", ks, "--homeserver", &a.url()])
        .trim()
        .to_owned();
    assert_ne!(device, first);
    let out = alice.run(&["device", "revoke", &first, "--keystore", ks]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains(&format!("revoked {first}")), "{stdout}");
    assert!(
        !stderr.contains("password was used"),
        "key UIA should do: {stderr}"
    );
    let devices = alice.json(&["device", "list", "--keystore", ks, "--json"]);
    let listed: Vec<&str> = devices["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["device_id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, vec![device.as_str()], "{devices}");
    let err = alice.fails(6, &["device", "revoke", &first, "--keystore", ks]);
    assert!(err.contains("device list"), "{err}");

    // Bob resolves Alice.
    let bob_cache = bob.path("cache-bob");
    let r = resolve(&bob, "@alice:a.test", &bob_cache, &["--max-age", "0"]);
    assert_eq!(r["status"], "verified", "{r}");
    assert_eq!(r["did"], did.as_str());
    assert_eq!(strs(&r["servers"]), vec!["a.test"]);
    assert!(r["devices"].get(&device).is_some(), "{r}");

    // migrate A → B.
    let out = alice.ok(&["migrate", "--keystore", ks, "--to", &b.url()]);
    assert!(out.contains("b.test"), "{out}");
    let show = alice.json(&["account", "show", "--keystore", ks, "--json"]);
    assert_eq!(strs(&show["servers"]), vec!["b.test"]);
    assert_eq!(
        strs(&show["user_ids"]),
        vec!["@alice:a.test", "@alice:b.test"]
    );
    assert!(show["pending_migration"].is_null());
    // Devices move with the log.
    assert_eq!(strs(&show["devices"]), vec![device.clone()]);

    // Resolve shows B, through the old name (A forwards) and the new one.
    let r = resolve(&bob, "@alice:a.test", &bob_cache, &["--max-age", "0"]);
    assert_eq!(r["status"], "verified", "{r}");
    assert_eq!(strs(&r["servers"]), vec!["b.test"], "{r}");
    let r = resolve(&bob, "@alice:b.test", &bob_cache, &["--max-age", "0"]);
    assert_eq!(r["status"], "verified", "{r}");
    assert_eq!(r["did"], did.as_str());

    // Stop A: still verified via B.
    a.stop();
    let r = resolve(&bob, "@alice:b.test", &bob_cache, &["--max-age", "0"]);
    assert_eq!(r["status"], "verified", "{r}");
    let r = resolve(&bob, &did, &bob_cache, &["--max-age", "0"]);
    assert_eq!(r["status"], "verified", "{r}");
    assert_eq!(strs(&r["servers"]), vec!["b.test"]);

    // Stop B: offline, the cache answers stale, in plain words.
    b.stop();
    let r = resolve(
        &bob,
        "@alice:b.test",
        &bob_cache,
        &["--offline", "--max-age", "0"],
    );
    assert_eq!(r["status"], "stale", "{r}");
    assert_eq!(r["did"], did.as_str());
    assert!(
        r["explanation"]
            .as_str()
            .unwrap()
            .contains("cannot be reached"),
        "{r}"
    );
    let text = bob.ok(&[
        "resolve",
        "@alice:b.test",
        "--cache",
        bob_cache.to_str().unwrap(),
        "--offline",
    ]);
    assert!(text.contains("status:") && text.contains(&did), "{text}");

    // A LAN peer (Bob's node, sharing his cache) answers Carol, who has never resolved Alice.
    let lan_port = free_port();
    let mut lan = bob
        .cmd(&[
            "lan",
            "serve",
            "--cache",
            bob_cache.to_str().unwrap(),
            "--listen",
            &format!("127.0.0.1:{lan_port}"),
            "--no-announce",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", lan_port)).is_err() {
        assert!(Instant::now() < deadline, "lan serve did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let carol = User::new(root, "carol", &overrides);
    let peer = format!("http://127.0.0.1:{lan_port}");
    let r = resolve(
        &carol,
        "@alice:b.test",
        &carol.path("cache-carol"),
        &["--offline", "--lan-peer", &peer],
    );
    assert_eq!(r["status"], "lan", "{r}");
    assert_eq!(r["did"], did.as_str());
    let _ = lan.kill();
    let _ = lan.wait();

    // Rotate (servers back): a new update key, a new recovery file.
    a.restart();
    b.restart();
    let before = std::fs::read_to_string(&recovery).unwrap();
    let old_key = show["update_key"].as_str().unwrap().to_owned();
    alice.ok(&["rotate", "--keystore", ks]);
    assert_ne!(
        std::fs::read_to_string(&recovery).unwrap(),
        before,
        "no new recovery file"
    );
    let show = alice.json(&["account", "show", "--keystore", ks, "--json"]);
    let rotated_key = show["update_key"].as_str().unwrap().to_owned();
    assert_ne!(rotated_key, old_key);
    let r = resolve(&bob, "@alice:b.test", &bob_cache, &["--max-age", "0"]);
    assert_eq!(r["status"], "verified", "{r}");
    assert_eq!(r["update_key"], rotated_key.as_str());

    // Compromise: a thief with a copy of the keystore (and the passphrase) moves the account.
    let thief = User {
        home: alice.home.clone(),
        pass: alice.pass.clone(),
        overrides: overrides.clone(),
    };
    let stolen = alice.path("stolen.json");
    std::fs::copy(ks, &stolen).unwrap();
    let stolen = stolen.to_str().unwrap();
    thief.ok(&["servers", "set", "--keystore", stolen, &a.url()]);
    let r = resolve(&bob, "@alice:b.test", &bob_cache, &["--max-age", "0"]);
    assert_eq!(
        strs(&r["servers"]),
        vec!["a.test"],
        "the thief's move should be visible: {r}"
    );
    let show = alice.json(&["account", "show", "--keystore", ks, "--json"]);
    assert_eq!(
        show["ops_not_signed_here"].as_array().unwrap().len(),
        1,
        "{show}"
    );

    // Recover: the committed key supersedes the thief's branch everywhere.
    let out = alice.ok(&["recover", "--keystore", ks, "--recovery", &recovery]);
    assert!(
        out.contains("recovered") && out.contains("superseded 1"),
        "{out}"
    );
    let r = resolve(&bob, "@alice:b.test", &bob_cache, &["--max-age", "0"]);
    assert_eq!(r["status"], "verified", "{r}");
    assert_eq!(strs(&r["servers"]), vec!["b.test"], "{r}");
    assert_ne!(
        r["update_key"],
        rotated_key.as_str(),
        "the thief's key must no longer control the account"
    );
    let recovered_key = r["update_key"].as_str().unwrap().to_owned();
    // The thief shares Alice's HOME, so his move went into her default cache too (verified:
    // it was the log's state then); her recover replaced it there, no --max-age 0 needed.
    let mine = alice.json(&["resolve", "@alice:b.test", "--json"]);
    assert_eq!(mine["update_key"], recovered_key.as_str(), "{mine}");
    assert_eq!(strs(&mine["servers"]), vec!["b.test"], "{mine}");
    // The thief's next op changes nothing.
    let _ = thief.run(&["claim", "@mallory:a.test", "--keystore", stolen]);
    let r = resolve(&bob, "@alice:b.test", &bob_cache, &["--max-age", "0"]);
    assert_eq!(r["update_key"], recovered_key.as_str(), "{r}");
    assert!(
        !strs(&r["user_ids"]).contains(&"@mallory:a.test".to_owned()),
        "{r}"
    );

    // Release the old user ID: it no longer resolves to the account.
    alice.ok(&["release", "@alice:a.test", "--keystore", ks]);
    let v = resolve_fails(&bob, 6, "@alice:a.test", &bob_cache, &["--max-age", "0"]);
    assert_eq!(v["error"], "unbound", "{v}");
    let r = resolve(&bob, "@alice:b.test", &bob_cache, &["--max-age", "0"]);
    assert_eq!(strs(&r["user_ids"]), vec!["@alice:b.test"], "{r}");

    // Export, and import into a server the log names.
    let export = alice.path("alice-export.json");
    alice.ok(&[
        "export",
        "--keystore",
        ks,
        "--out",
        export.to_str().unwrap(),
    ]);
    let import = |url: &str| {
        alice.run(&[
            "import",
            "--in",
            export.to_str().unwrap(),
            "--homeserver",
            url,
            "--json",
        ])
    };
    // Anyone can check the export offline: the state, the bindings and who hosts it.
    let report = alice.json(&["verify", export.to_str().unwrap(), "--json"]);
    assert_eq!(report["kind"], "export", "{report}");
    assert_eq!(report["state"]["head"], r["head"], "{report}");
    assert_eq!(
        report["bindings"]["@alice:b.test"]["status"], "current",
        "{report}"
    );
    assert_eq!(report["hosting"]["b.test"]["status"], "current", "{report}");
    let out = import(&b.url());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let imported: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(imported["did"], did.as_str());
    assert_eq!(imported["head"], r["head"], "{imported}");
    assert_eq!(strs(&imported["servers"]), vec!["b.test"]);
    // The export carries every op any server held (the thief's superseded claim too, as
    // evidence); a second import has nothing new.
    let again: Value = serde_json::from_slice(&import(&b.url()).stdout).unwrap();
    assert_eq!(again["new_ops"], 0, "{again}");
    // A server the log does not name is refused, with what to do.
    let out = import(&a.url());
    assert_eq!(out.status.code(), Some(5));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not name a.test"));
}

#[test]
fn errors_are_clear() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let user = User::new(root, "dave", &[]);
    let ks = user.path("dave.json");
    let ks = ks.to_str().unwrap();

    // Missing keystore: exit 3, and what to do.
    let err = user.fails(3, &["account", "show", "--keystore", ks]);
    assert!(
        err.contains("no such file") && err.contains("roam key new"),
        "{err}"
    );

    user.ok(&["key", "new", "--keystore", ks]);

    // Wrong passphrase: exit 3, the file is unchanged.
    let before = std::fs::read(ks).unwrap();
    let wrong = User {
        home: user.home.clone(),
        pass: "not it".into(),
        overrides: vec![],
    };
    let err = wrong.fails(3, &["account", "show", "--keystore", ks]);
    assert!(err.contains("wrong passphrase"), "{err}");
    assert_eq!(std::fs::read(ks).unwrap(), before);

    // No passphrase and no terminal: said so.
    let out = user
        .cmd(&["account", "show", "--keystore", ks])
        .env_remove("ROAM_PASSPHRASE")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ROAM_PASSPHRASE"));

    // Unreachable server: exit 4, the keystore keeps no half-made account.
    let closed = format!("http://127.0.0.1:{}", free_port());
    let err = user.fails(
        4,
        &[
            "account",
            "create",
            "--keystore",
            ks,
            "--homeserver",
            &closed,
            "--user",
            "dave",
        ],
    );
    assert!(
        err.contains("cannot reach") && err.contains("hint"),
        "{err}"
    );
    let err = user.fails(1, &["account", "show", "--keystore", ks]);
    assert!(err.contains("roam account create"), "{err}");

    // Resolution with nothing reachable and nothing cached: exit 4, JSON error on stdout.
    let v = resolve_fails(&user, 4, "@nobody:a.test", &user.path("c"), &["--offline"]);
    assert_eq!(v["error"], "unreachable");
}

#[test]
fn half_done_migration_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let mut a = Server::start(root, "a.test");
    let b = Server::start(root, "b.test");
    let allow = Arc::new(AtomicUsize::new(0));
    let proxy = flaky_proxy(b.port, allow.clone());
    let b_via_proxy = format!("http://127.0.0.1:{proxy}");
    let overrides = vec![a.override_arg(), format!("b.test={b_via_proxy}")];
    let erin = User::new(root, "erin", &overrides);
    let ks = erin.path("erin.json");
    let ks = ks.to_str().unwrap();
    erin.new_account(ks, &a.url(), "erin");
    erin.ok(&["login", "--keystore", ks, "--homeserver", &a.url()]);
    // The old server is gone for good: the migration needs nothing from it.
    let a_url = a.url();
    a.stop();

    // B answers who it is, then goes away: the migration stops after signing, exit 7.
    allow.store(1, Ordering::SeqCst);
    let out = erin.run(&["migrate", "--keystore", ks, "--to", &b_via_proxy]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(7),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert!(stdout.contains("[done] sign"), "{stdout}");
    assert!(
        stderr.contains("submit") && stderr.contains("re-run"),
        "{stderr}"
    );
    let show = erin.json(&["account", "show", "--keystore", ks, "--json"]);
    assert_eq!(show["pending_migration"]["to_server"], "b.test", "{show}");
    let signed = show["seq"].as_u64().unwrap();

    // Another target is refused while this one is unfinished.
    let err = erin.fails(1, &["migrate", "--keystore", ks, "--to", &a_url]);
    assert!(err.contains("unfinished"), "{err}");

    // B is back: the same command finishes without signing anything new.
    allow.store(usize::MAX, Ordering::SeqCst);
    let out = erin.ok(&["migrate", "--keystore", ks, "--to", &b_via_proxy]);
    assert!(out.contains("[done earlier] sign"), "{out}");
    assert!(
        out.contains("[skipped] notify: a.test: not updated"),
        "{out}"
    );
    assert!(out.contains("migrated"), "{out}");
    let show = erin.json(&["account", "show", "--keystore", ks, "--json"]);
    assert!(show["pending_migration"].is_null(), "{show}");
    assert_eq!(
        show["seq"].as_u64().unwrap(),
        signed,
        "the re-run signed new ops"
    );
    assert_eq!(strs(&show["servers"]), vec!["b.test"]);
    let b_view = show["server_views"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["server"] == "b.test")
        .cloned()
        .unwrap();
    assert_eq!(b_view["in_sync"], true, "{show}");
    // A finished migration re-run is refused as nothing to do.
    let err = erin.fails(1, &["migrate", "--keystore", ks, "--to", &b_via_proxy]);
    assert!(err.contains("already hosted"), "{err}");
}

#[test]
fn claim_an_existing_account_and_carry_the_keystore() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let a = Server::start(root, "a.test");
    let frank = User::new(root, "frank", &[a.override_arg()]);
    let ks = frank.path("frank.json");
    let ks = ks.to_str().unwrap();
    frank.new_account(ks, &a.url(), "frank");
    // An older, plain Matrix account of Frank's on the same server.
    let (status, v) = post_json(
        a.port,
        "/_matrix/client/v3/register",
        &serde_json::json!({"username": "frankie", "password": "old pw", "auth": {"type": "m.login.dummy"}}),
    );
    assert_eq!(status, 200, "{v}");
    // Claiming it without proof: in the log, but not attested.
    let out = frank.ok(&["claim", "@frankie:a.test", "--keystore", ks]);
    assert!(
        out.contains("does not attest") || out.contains("no such user"),
        "{out}"
    );
    frank.ok(&["release", "@frankie:a.test", "--keystore", ks]);
    // With the account's password: the server adopts the DID and attests the binding.
    let out = frank.ok(&[
        "claim",
        "@frankie:a.test",
        "--keystore",
        ks,
        "--homeserver",
        &a.url(),
        "--password",
        "old pw",
    ]);
    assert!(out.contains("@frankie:a.test is bound"), "{out}");
    let r = resolve(
        &frank,
        "@frankie:a.test",
        &frank.path("cache"),
        &["--max-age", "0"],
    );
    assert_eq!(r["status"], "verified", "{r}");
    assert!(
        strs(&r["user_ids"]).contains(&"@frankie:a.test".to_owned()),
        "{r}"
    );
    // Both user IDs are claimed by the one DID. (The homeserver currently stops attesting
    // @frank:a.test once @frankie:a.test adopts the DID — reported to the server's owner —
    // so only the log's side is checked for it here.)
    let show = frank.json(&["account", "show", "--keystore", ks, "--json"]);
    assert_eq!(
        strs(&show["user_ids"]),
        vec!["@frank:a.test", "@frankie:a.test"]
    );

    // The export can carry the (still encrypted) keystore to another machine.
    let export = frank.path("frank-export.json");
    let export = export.to_str().unwrap();
    frank.ok(&[
        "export",
        "--keystore",
        ks,
        "--out",
        export,
        "--include-secrets",
    ]);
    let text = std::fs::read_to_string(export).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["keystore"]["type"], "roam.keystore");
    assert!(v["keystore"]["sealed"]["ciphertext"].is_string(), "{v}");
    let restored = frank.path("restored.json");
    let restored = restored.to_str().unwrap();
    frank.ok(&[
        "import",
        "--in",
        export,
        "--homeserver",
        &a.url(),
        "--keystore",
        restored,
    ]);
    let show = frank.json(&["account", "show", "--keystore", restored, "--json"]);
    assert_eq!(show["did"], r["did"]);
    // Without --include-secrets there is nothing to restore.
    let plain = frank.path("plain-export.json");
    frank.ok(&["export", "--keystore", ks, "--out", plain.to_str().unwrap()]);
    let err = frank.fails(
        2,
        &[
            "import",
            "--in",
            plain.to_str().unwrap(),
            "--homeserver",
            &a.url(),
            "--keystore",
            frank.path("again.json").to_str().unwrap(),
        ],
    );
    assert!(err.contains("--include-secrets"), "{err}");
}

#[test]
fn lan_serve_is_found_by_lan_peers() {
    let tmp = tempfile::tempdir().unwrap();
    let grace = User::new(tmp.path(), "grace", &[]);
    let port = free_port();
    let mut node = grace
        .cmd(&[
            "lan",
            "serve",
            "--cache",
            grace.path("cache").to_str().unwrap(),
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The node announces a loopback address: mDNS peers are trusted only on a local
    // interface's subnet, never loopback, unless private fetches are allowed.
    let peers = grace.json(&[
        "lan",
        "peers",
        "--wait",
        "5",
        "--json",
        "--allow-private-fetch",
    ]);
    let _ = node.kill();
    let _ = node.wait();
    let wanted = format!("http://127.0.0.1:{port}/");
    assert!(
        strs(&peers["peers"]).contains(&wanted),
        "{wanted} not announced: {peers}"
    );
}

/// The words of a phrase block `roam` printed on stderr (the numbered lines under
/// "Recovery phrase"), numbers included: `--phrase` skips them.
fn phrase_block(stderr: &str) -> String {
    let block: Vec<&str> = stderr
        .lines()
        .skip_while(|l| !l.starts_with("Recovery phrase"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .collect();
    assert_eq!(block.len(), 4, "no phrase block in: {stderr}");
    block.join("\n")
}

#[test]
fn own_changes_show_at_once_and_the_phrase_recovers() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let a = Server::start(root, "a.test");
    let b = Server::start(root, "b.test");
    let henry = User::new(root, "henry", &[a.override_arg(), b.override_arg()]);
    let ivy = User::new(root, "ivy", &[a.override_arg(), b.override_arg()]);
    let ks = henry.path("henry.json");
    let ks = ks.to_str().unwrap();
    let me = "@henry:b.test";

    // key new --json carries the phrase the text shows (and none with --no-phrase).
    let created = henry.json(&["key", "new", "--keystore", ks, "--json"]);
    let phrase = created["recovery_phrase"].as_str().unwrap().to_owned();
    assert_eq!(phrase.split(' ').count(), 24, "{created}");
    let other = henry.path("other.json");
    let quiet = henry.json(&[
        "key",
        "new",
        "--keystore",
        other.to_str().unwrap(),
        "--json",
        "--no-phrase",
    ]);
    assert!(quiet["recovery_phrase"].is_null(), "{quiet}");
    henry.create_account(ks, &a.url(), "henry");
    // The default cache answers within its TTL (600 s): each change must land in it. The
    // login signed a device in, and the cache has it already.
    let device = henry.ok(&["login", "--keystore", ks, "--homeserver", &a.url()]);
    let mine = |subject: &str| henry.json(&["resolve", subject, "--json"]);
    let r = mine("@henry:a.test");
    assert_eq!(r["status"], "cached", "{r}");
    assert_eq!(strs(&r["servers"]), vec!["a.test"]);
    assert!(r["devices"].get(device.trim()).is_some(), "{r}");

    // Ivy, who resolved Henry before the move, keeps her cached answer for its TTL: only the
    // cache of the user who made the change is brought up to date.
    let ivy_cache = ivy.path("cache");
    resolve(&ivy, "@henry:a.test", &ivy_cache, &[]);

    henry.ok(&["migrate", "--keystore", ks, "--to", &b.url()]);
    let r = mine(me);
    assert_eq!(r["status"], "cached", "{r}");
    assert_eq!(strs(&r["servers"]), vec!["b.test"], "{r}");
    let theirs = resolve(&ivy, "@henry:a.test", &ivy_cache, &[]);
    assert_eq!(theirs["status"], "cached", "{theirs}");
    assert_eq!(strs(&theirs["servers"]), vec!["a.test"], "{theirs}");

    henry.ok(&["servers", "set", "--keystore", ks, &b.url(), &a.url()]);
    let r = mine(me);
    assert_eq!(r["status"], "cached", "{r}");
    assert_eq!(strs(&r["servers"]), vec!["b.test", "a.test"], "{r}");

    // Rotate with the phrase piped on stdin: a new key, and a new phrase shown once.
    let out = henry.ok_input(&["rotate", "--keystore", ks, "--phrase"], &phrase);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let new_phrase = phrase_block(&stderr);
    assert!(stderr.contains("not encrypted"), "{stderr}");
    let show = henry.json(&["account", "show", "--keystore", ks, "--json"]);
    let r = mine(me);
    assert_eq!(r["status"], "cached", "{r}");
    assert_eq!(r["update_key"], show["update_key"], "{r}");

    // The old phrase no longer works; a wrong word is named; a bad checksum is said.
    let recover = ["recover", "--keystore", ks, "--phrase"];
    let err = henry.fails_input(3, &recover, &phrase);
    assert!(err.contains("not the committed next key"), "{err}");
    let mut words: Vec<&str> = phrase.split(' ').collect();
    words[6] = "abacus";
    let err = henry.fails_input(3, &recover, &words.join(" "));
    assert!(
        err.contains("word 7 \"abacus\" is not in the BIP39 English list"),
        "{err}"
    );
    words[6] = if words[5] == "zoo" { "abandon" } else { "zoo" };
    let err = henry.fails_input(3, &recover, &words.join(" "));
    assert!(
        err.contains("checksum") || err.contains("not the committed"),
        "{err}"
    );

    // Recover with the new phrase, as numbered lines.
    let out = henry.ok_input(&recover, &new_phrase);
    assert!(String::from_utf8_lossy(&out.stdout).contains("recovered"));
    let show = henry.json(&["account", "show", "--keystore", ks, "--json"]);
    let r = mine(me);
    assert_eq!(r["update_key"], show["update_key"], "{r}");
}

#[test]
fn migration_to_a_token_server_needs_its_token() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let a = Server::start(root, "a.test");
    let mut b = Server::start_with(root, "b.test", "registration = \"token\"\n");
    // Tokens are made with the server stopped (one process per redb file).
    b.stop();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_roam"))
        .args(["admin", "token", "create", "--uses", "1", "--data-dir"])
        .arg(b.data_dir())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    b.restart();
    let gina = User::new(root, "gina", &[a.override_arg(), b.override_arg()]);
    let ks = gina.path("gina.json");
    let ks = ks.to_str().unwrap();
    gina.new_account(ks, &a.url(), "gina");
    // Without the token the new server creates no account: the migration stops, resumable.
    let out = gina.run(&["migrate", "--keystore", ks, "--to", &b.url()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("token"), "{stderr}");
    // With it, the same command finishes the move.
    let args = [
        "migrate",
        "--keystore",
        ks,
        "--to",
        &b.url(),
        "--registration-token",
        &token,
    ];
    let out = gina.ok(&args);
    assert!(out.contains("[done]"), "{out}");
    let shown = gina.json(&["account", "show", "--keystore", ks, "--json"]);
    assert_eq!(shown["servers"][0], "b.test", "{shown}");
}
