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

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

const RATE_LIMITS: &str = "[rate_limits]\n\
register_per_ip = { per_second = 1000.0, burst = 1000 }\n\
login_per_ip = { per_second = 1000.0, burst = 1000 }\n\
login_per_account = { per_second = 1000.0, burst = 1000 }\n\
[op_limits]\nper_hour = 1000\nper_day = 1000\n";

/// A `roam serve` process.
struct Server {
    name: String,
    port: u16,
    data: PathBuf,
    config: PathBuf,
    child: Option<Child>,
}

impl Server {
    fn start(root: &Path, name: &str) -> Self {
        let data = root.join(format!("data-{name}"));
        let config = root.join(format!("{name}.toml"));
        std::fs::write(&config, RATE_LIMITS).unwrap();
        let mut s = Self {
            name: name.to_owned(),
            port: free_port(),
            data,
            config,
            child: None,
        };
        s.restart();
        s
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn override_arg(&self) -> String {
        format!("{}={}", self.name, self.url())
    }

    fn restart(&mut self) {
        assert!(self.child.is_none(), "{} is running", self.name);
        let child = Command::new(env!("CARGO_BIN_EXE_roam"))
            .args(["serve", "--server-name", &self.name, "--listen"])
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--data-dir")
            .arg(&self.data)
            .arg("--config")
            .arg(&self.config)
            .env("ROAM_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start roam serve");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(mut c) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = c.write_all(b"GET /health HTTP/1.0\r\n\r\n");
                let mut buf = String::new();
                let _ = c.read_to_string(&mut buf);
                if buf.starts_with("HTTP/1.0 200") || buf.starts_with("HTTP/1.1 200") {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "{} did not start", self.name);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One user's `roam`: their own HOME, passphrase and federation overrides.
struct User {
    home: PathBuf,
    pass: String,
    overrides: Vec<String>,
}

impl User {
    fn new(root: &Path, name: &str, overrides: &[String]) -> Self {
        let home = root.join(name);
        std::fs::create_dir_all(&home).unwrap();
        Self {
            home,
            pass: format!("{name} passphrase"),
            overrides: overrides.to_vec(),
        }
    }

    fn path(&self, file: &str) -> PathBuf {
        self.home.join(file)
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_roam"));
        for o in &self.overrides {
            c.arg("--federation-override").arg(o);
        }
        c.args(args)
            .env("HOME", &self.home)
            .env("XDG_CONFIG_HOME", self.home.join("config"))
            .env("XDG_CACHE_HOME", self.home.join("cache"))
            .env("ROAM_PASSPHRASE", &self.pass)
            .env("ROAM_INSECURE_FAST_KDF", "1")
            .env_remove("ROAM_KEYSTORE")
            .env_remove("ROAM_PASSWORD")
            .current_dir(&self.home)
            .stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run roam")
    }

    /// Runs and requires success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "roam {} failed ({:?}):\nstdout: {}\nstderr: {}",
            args.join(" "),
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs and requires failure with `code`; returns stderr.
    fn fails(&self, code: i32, args: &[&str]) -> String {
        let out = self.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(
            out.status.code(),
            Some(code),
            "roam {}: expected exit {code}\nstdout: {}\nstderr: {stderr}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
        );
        stderr
    }

    fn json(&self, args: &[&str]) -> Value {
        let out = self.ok(args);
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("roam {}: not JSON ({e}): {out}", args.join(" ")))
    }
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

fn resolve(user: &User, subject: &str, cache: &Path, extra: &[&str]) -> Value {
    let cache = cache.to_str().unwrap();
    let mut args = vec!["resolve", subject, "--json", "--cache", cache];
    args.extend_from_slice(extra);
    user.json(&args)
}

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
    let out = alice.ok(&[
        "account",
        "create",
        "--keystore",
        ks,
        "--homeserver",
        &a.url(),
        "--user",
        "alice",
    ]);
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
    let out = bob.run(&[
        "resolve",
        "@alice:a.test",
        "--json",
        "--max-age",
        "0",
        "--cache",
        bob_cache.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(6),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
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
    assert!(!out.status.success());
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
    let out = user.run(&[
        "resolve",
        "@nobody:a.test",
        "--json",
        "--offline",
        "--cache",
        user.path("c").to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["error"], "unreachable");
}

/// A TCP proxy to `target` that forwards the first `allow` connections and closes the
/// following ones at once (a server going away mid-operation), until `allow` is raised.
fn flaky_proxy(target: u16, allow: Arc<AtomicUsize>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(client) = conn else { continue };
            let admitted = allow
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            if !admitted {
                drop(client);
                continue;
            }
            let Ok(upstream) = TcpStream::connect(("127.0.0.1", target)) else {
                continue;
            };
            let (mut c1, mut u1) = (client.try_clone().unwrap(), upstream.try_clone().unwrap());
            let (mut c2, mut u2) = (client, upstream);
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut c1, &mut u1);
                let _ = u1.shutdown(std::net::Shutdown::Write);
            });
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut u2, &mut c2);
                let _ = c2.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    port
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
    erin.ok(&["key", "new", "--keystore", ks]);
    erin.ok(&[
        "account",
        "create",
        "--keystore",
        ks,
        "--homeserver",
        &a.url(),
        "--user",
        "erin",
    ]);
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

/// POSTs JSON over plain HTTP/1.0 (enough for loopback test servers).
fn post_json(port: u16, path: &str, body: &Value) -> (u16, Value) {
    let body = body.to_string();
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        c,
        "POST {path} HTTP/1.0\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = String::new();
    c.read_to_string(&mut resp).unwrap();
    let status = resp[9..12].parse().unwrap();
    let json = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| serde_json::from_str(b).unwrap_or(Value::Null))
        .unwrap_or(Value::Null);
    (status, json)
}

#[test]
fn claim_an_existing_account_and_carry_the_keystore() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let a = Server::start(root, "a.test");
    let frank = User::new(root, "frank", &[a.override_arg()]);
    let ks = frank.path("frank.json");
    let ks = ks.to_str().unwrap();
    frank.ok(&["key", "new", "--keystore", ks]);
    frank.ok(&[
        "account",
        "create",
        "--keystore",
        ks,
        "--homeserver",
        &a.url(),
        "--user",
        "frank",
    ]);
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
    let peers = grace.json(&["lan", "peers", "--wait", "5", "--json"]);
    let _ = node.kill();
    let _ = node.wait();
    let wanted = format!("http://127.0.0.1:{port}/");
    assert!(
        strs(&peers["peers"]).contains(&wanted),
        "{wanted} not announced: {peers}"
    );
}
