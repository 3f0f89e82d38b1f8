//! What the CLI tests share: `roam serve` processes on loopback ports ([`Server`]), one
//! user's `roam` with their own HOME and passphrase ([`User`]), and small helpers (a free
//! port, a flaky proxy, a plain HTTP POST, resolving as JSON).
//!
//! Each test binary uses only some of it.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

pub fn free_port() -> u16 {
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
pub struct Server {
    pub name: String,
    pub port: u16,
    data: PathBuf,
    config: PathBuf,
    child: Option<Child>,
}

impl Server {
    pub fn start(root: &Path, name: &str) -> Self {
        Self::start_with(root, name, "")
    }

    /// A server whose TOML config has `extra` lines before the rate limits.
    pub fn start_with(root: &Path, name: &str, extra: &str) -> Self {
        let data = root.join(format!("data-{name}"));
        let config = root.join(format!("{name}.toml"));
        std::fs::write(&config, format!("{extra}{RATE_LIMITS}")).unwrap();
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

    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn override_arg(&self) -> String {
        format!("{}={}", self.name, self.url())
    }

    pub fn restart(&mut self) {
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

    pub fn stop(&mut self) {
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
pub struct User {
    pub home: PathBuf,
    pub pass: String,
    pub overrides: Vec<String>,
}

impl User {
    pub fn new(root: &Path, name: &str, overrides: &[String]) -> Self {
        let home = root.join(name);
        std::fs::create_dir_all(&home).unwrap();
        Self {
            home,
            pass: format!("{name} passphrase"),
            overrides: overrides.to_vec(),
        }
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.home.join(file)
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
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

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run roam")
    }

    /// Runs with `input` on standard input (a pipe, not a terminal).
    pub fn run_input(&self, args: &[&str], input: &str) -> Output {
        let mut child = self
            .cmd(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run roam");
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(input.as_bytes()).unwrap();
        drop(stdin);
        child.wait_with_output().unwrap()
    }

    /// Runs and requires success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        String::from_utf8(succeeded(args, self.run(args)).stdout).unwrap()
    }

    /// Runs with `input` on standard input and requires success; returns the whole output.
    pub fn ok_input(&self, args: &[&str], input: &str) -> Output {
        succeeded(args, self.run_input(args, input))
    }

    /// Runs and requires failure with `code`; returns stderr.
    pub fn fails(&self, code: i32, args: &[&str]) -> String {
        failed(code, args, self.run(args))
    }

    /// Runs with `input` on standard input and requires failure with `code`; returns stderr.
    pub fn fails_input(&self, code: i32, args: &[&str], input: &str) -> String {
        failed(code, args, self.run_input(args, input))
    }

    /// `key new` and `account create` on `homeserver` as `localpart`.
    pub fn new_account(&self, ks: &str, homeserver: &str, localpart: &str) {
        self.ok(&["key", "new", "--keystore", ks]);
        self.create_account(ks, homeserver, localpart);
    }

    /// `account create` on `homeserver` as `localpart`; returns stdout.
    pub fn create_account(&self, ks: &str, homeserver: &str, localpart: &str) -> String {
        self.ok(&[
            "account",
            "create",
            "--keystore",
            ks,
            "--homeserver",
            homeserver,
            "--user",
            localpart,
        ])
    }

    pub fn json(&self, args: &[&str]) -> Value {
        let out = self.ok(args);
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("roam {}: not JSON ({e}): {out}", args.join(" ")))
    }
}

fn succeeded(args: &[&str], out: Output) -> Output {
    assert!(
        out.status.success(),
        "roam {} failed ({:?}):\nstdout: {}\nstderr: {}",
        args.join(" "),
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn failed(code: i32, args: &[&str], out: Output) -> String {
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

pub fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

/// `roam resolve SUBJECT --json --cache CACHE EXTRA…`, which must succeed: the answer.
pub fn resolve(user: &User, subject: &str, cache: &Path, extra: &[&str]) -> Value {
    user.json(&resolve_args(subject, cache, extra))
}

/// The same, which must fail with exit `code`: the JSON error it prints on stdout.
pub fn resolve_fails(user: &User, code: i32, subject: &str, cache: &Path, extra: &[&str]) -> Value {
    let args = resolve_args(subject, cache, extra);
    let out = user.run(&args);
    assert_eq!(
        out.status.code(),
        Some(code),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn resolve_args<'a>(subject: &'a str, cache: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "resolve",
        subject,
        "--json",
        "--cache",
        cache.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    args
}

/// A TCP proxy to `target` that forwards the first `allow` connections and closes the
/// following ones at once (a server going away mid-operation), until `allow` is raised.
pub fn flaky_proxy(target: u16, allow: Arc<AtomicUsize>) -> u16 {
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

/// POSTs JSON over plain HTTP/1.0 (enough for loopback test servers).
pub fn post_json(port: u16, path: &str, body: &Value) -> (u16, Value) {
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
