//! Crash safety of the real `roam serve` binary: concurrent registrations, key uploads and
//! account-log writes, the process SIGKILLed mid-stream several times and restarted on the
//! same data directory. Every write that was acknowledged (a 200 received) must be there
//! after the restart, and the store must open cleanly each time. Run on both stores: redb
//! (the process holds the database), and PostgreSQL (a node dies, the database lives on:
//! what a node acknowledged was committed there).

mod common;

use std::path::Path;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Backend, C, Owner, add_device, device_keys, roam_bin, spawn_serve};
use ed25519_dalek::SigningKey;
use serde_json::{Value, json};

const NAME: &str = "crash.test";
const WORKERS: usize = 4;
const CYCLES: usize = 3;

/// Starts `roam serve` with `config` and returns the child and its base URL from the banner.
fn serve(bin: &Path, config: &Path) -> (Child, String) {
    let mut cmd = Command::new(bin);
    cmd.args(["serve", "--config"])
        .arg(config)
        .env("ROAM_LOG", "error");
    spawn_serve(cmd)
}

/// What the server acknowledged, to look for after the crash.
#[derive(Debug, Clone)]
enum Ack {
    /// A registration: the user exists and the token is valid.
    Registered { user: String, token: String },
    /// A device's keys were uploaded.
    Keys {
        user: String,
        device: String,
        token: String,
    },
    /// The DID's log has at least `ops` ops.
    Log { did: String, ops: usize },
}

/// A genesis for `user` with keys derived from `n`.
fn owner(n: u32, user: &str) -> Owner {
    let seed = |tag: u8| {
        let mut s = [tag; 32];
        s[..4].copy_from_slice(&n.to_be_bytes());
        SigningKey::from_bytes(&s)
    };
    Owner::from_keys(seed(1), seed(2), user, &[NAME])
}

/// One request; `None` when the connection failed (the server died mid-request).
async fn call(
    base: &str,
    method: &str,
    path: &str,
    body: Value,
    token: Option<&str>,
) -> Option<(u16, Value)> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut req = http.request(method.parse().unwrap(), format!("{base}{path}"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if method != "GET" {
        req = req.json(&body);
    }
    let resp = req.send().await.ok()?;
    let status = resp.status().as_u16();
    let v = resp.json().await.ok()?;
    Some((status, v))
}

/// Registers, adopts a DID, adds a device op and uploads keys, recording each 200; stops
/// at the first failure (the server was killed).
async fn one_user(base: &str, n: u32, acks: &Mutex<Vec<Ack>>) -> Option<()> {
    let name = format!("u{n}");
    let user = format!("@{name}:{NAME}");
    let body = json!({"username": name, "password": "pw-crash-1"});
    let (_, v) = call(base, "POST", &format!("{C}/register"), body.clone(), None).await?;
    let mut body = body;
    body["auth"] = json!({"type": "m.login.dummy", "session": v["session"]});
    let (s, v) = call(base, "POST", &format!("{C}/register"), body, None).await?;
    if s != 200 {
        eprintln!("register {name}: {s} {v}");
        return None;
    }
    let token = v["access_token"].as_str()?.to_owned();
    let device = v["device_id"].as_str()?.to_owned();
    acks.lock().unwrap().push(Ack::Registered {
        user: user.clone(),
        token: token.clone(),
    });
    let mut o = owner(n, &user);
    let ops = json!({"ops": o.values()});
    let (s, _) = call(base, "POST", "/_roam/v1/account/did", ops, Some(&token)).await?;
    (s == 200).then_some(())?;
    acks.lock().unwrap().push(Ack::Log {
        did: o.did(),
        ops: 1,
    });
    o.sign(add_device("CRASHDEV", (n % 200) as u8 + 1));
    let ops = json!({"ops": o.values()});
    let path = format!("/_roam/v1/accounts/{}/ops", o.did());
    let (s, _) = call(base, "POST", &path, ops, None).await?;
    (s == 200).then_some(())?;
    acks.lock().unwrap().push(Ack::Log {
        did: o.did(),
        ops: 2,
    });
    let key = SigningKey::from_bytes(&[(n % 250) as u8 + 3; 32]);
    let keys = json!({"device_keys": device_keys(&user, &device, &key)});
    let (s, _) = call(
        base,
        "POST",
        &format!("{C}/keys/upload"),
        keys,
        Some(&token),
    )
    .await?;
    (s == 200).then_some(())?;
    acks.lock().unwrap().push(Ack::Keys {
        user,
        device,
        token,
    });
    Some(())
}

/// Checks one acknowledged write against the restarted server.
async fn check(base: &str, ack: &Ack) {
    match ack {
        Ack::Registered { user, token } => {
            let (s, v) = call(
                base,
                "GET",
                &format!("{C}/account/whoami"),
                json!({}),
                Some(token),
            )
            .await
            .unwrap();
            assert_eq!(s, 200, "{user}: {v}");
            assert_eq!(v["user_id"], user.as_str());
        }
        Ack::Keys {
            user,
            device,
            token,
        } => {
            let body = json!({"device_keys": {user.clone(): []}});
            let (s, v) = call(base, "POST", &format!("{C}/keys/query"), body, Some(token))
                .await
                .unwrap();
            assert_eq!(s, 200, "{v}");
            assert!(
                v["device_keys"][user][device].is_object(),
                "{user} {device}: {v}"
            );
        }
        Ack::Log { did, ops } => {
            let (s, v) = call(
                base,
                "GET",
                &format!("/_roam/v1/accounts/{did}"),
                json!({}),
                None,
            )
            .await
            .unwrap();
            assert_eq!(s, 200, "{did}: {v}");
            let len = v["log"].as_array().map_or(0, Vec::len);
            assert!(len >= *ops, "{did}: {len} ops, {ops} acknowledged");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill() {
    acknowledged_writes_survive_sigkill_on(Backend::Redb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill_on_postgres() {
    acknowledged_writes_survive_sigkill_on(Backend::postgres()).await;
}

async fn acknowledged_writes_survive_sigkill_on(backend: Backend) {
    let bin = roam_bin();
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("roam.toml");
    let unlimited = "{ per_second = 1000000.0, burst = 1000000 }";
    let database = match &backend {
        Backend::Redb => String::new(),
        Backend::Postgres(url) => format!("database_url = \"{url}\"\n"),
    };
    std::fs::write(
        &config,
        format!(
            "server_name = \"{NAME}\"\nlisten = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n{database}[rate_limits]\nregister_per_ip = {unlimited}\nlogin_per_ip = {unlimited}\nwrite_per_ip = {unlimited}\n[op_limits]\nper_hour = 100000\nper_day = 100000\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let acks = Arc::new(Mutex::new(Vec::<Ack>::new()));
    let mut next_user = 0u32;
    for cycle in 0..CYCLES {
        let (mut child, base) = serve(&bin, &config);
        // Everything acknowledged before the last kill is still there.
        let before: Vec<Ack> = acks.lock().unwrap().clone();
        for ack in &before {
            check(&base, ack).await;
        }
        let mut workers = Vec::new();
        for w in 0..WORKERS {
            let (base, acks) = (base.clone(), Arc::clone(&acks));
            let first = next_user + (w as u32) * 1000;
            workers.push(tokio::spawn(async move {
                for n in first.. {
                    if one_user(&base, n, &acks).await.is_none() {
                        break;
                    }
                }
            }));
        }
        next_user += WORKERS as u32 * 1000;
        // Once writes flow, kill at a different point of the stream each cycle.
        let flowing = Instant::now();
        while acks.lock().unwrap().len() < before.len() + 2
            && flowing.elapsed() < Duration::from_secs(15)
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(150 + 170 * cycle as u64)).await;
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        for w in workers {
            w.await.unwrap();
        }
        let written = acks.lock().unwrap().len() - before.len();
        assert!(written > 0, "cycle {cycle}: no write was acknowledged");
        eprintln!("cycle {cycle}: {written} writes acknowledged before SIGKILL");
    }
    // A last restart checks the last cycle's writes, then a clean stop releases the store,
    // which opens directly.
    let (mut child, base) = serve(&bin, &config);
    let all: Vec<Ack> = acks.lock().unwrap().clone();
    for ack in &all {
        check(&base, ack).await;
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(child.wait().unwrap().success());
    match backend {
        Backend::Redb => {
            roam_server::RedbStore::open_dir(&dir.path().join("data"))
                .expect("the store opens cleanly");
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "took {:?}",
                started.elapsed()
            );
        }
        Backend::Postgres(url) => {
            let store = roam_server::store::PgStore::connect(&url, 1).expect("the database opens");
            store.ping().unwrap();
            eprintln!("on PostgreSQL: took {:?}", started.elapsed());
        }
    }
}
