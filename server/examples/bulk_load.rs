//! Loads N portable accounts into a data directory through the real write path (verify,
//! encode the stored answers, group commit), for the memory benchmark (`bench/memory.sh`):
//! each is a new account log (genesis naming this server), submitted by 64 concurrent
//! writers. Signing happens in the writers, as clients would.
//!
//! Usage: `cargo run --release -p roam-server --example bulk_load -- DATA_DIR N SERVER_NAME`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use ed25519_dalek::SigningKey;
use roam_identity_core::log::genesis_op;
use roam_identity_core::{KeyCommitment, ServerName, UserId};
use roam_server::config::ServerConfig;
use roam_server::{AppState, RedbStore};

const WRITERS: u32 = 64;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir, n, server] = args.as_slice() else {
        eprintln!("usage: bulk_load DATA_DIR N SERVER_NAME");
        std::process::exit(2);
    };
    let n: u32 = n.parse().expect("N is a number");
    let dir = std::path::PathBuf::from(dir);
    let name = ServerName::parse(server).expect("a server name");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let config =
        ServerConfig::for_server_name(name.clone(), "127.0.0.1:0".parse().unwrap(), dir.clone());
    let store = RedbStore::open_dir(&dir).unwrap();
    let state = AppState::new(config, Arc::new(store)).unwrap();
    let next = Arc::new(AtomicU32::new(0));
    let started = Instant::now();
    rt.block_on(async {
        // The answers stored below are made with this server key: record it first, as
        // `roam serve` does, so the next start does not re-make them all.
        state.portable().schedule_for_key().await.unwrap();
        let mut tasks = Vec::new();
        for _ in 0..WRITERS {
            let (state, next, name) = (state.clone(), next.clone(), name.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    let mut seed = [3u8; 32];
                    seed[..4].copy_from_slice(&i.to_le_bytes());
                    let key = SigningKey::from_bytes(&seed);
                    seed[31] = 4;
                    let committed = SigningKey::from_bytes(&seed);
                    let op = genesis_op(
                        &key.verifying_key(),
                        KeyCommitment::to_key(&committed.verifying_key()),
                        UserId::parse(&format!("@user{i}:{name}")).unwrap(),
                        vec![name.clone()],
                        roam_server::clock::now_ms() - 1000,
                    )
                    .unwrap()
                    .sign(&key);
                    let did = op.op.did.clone();
                    state
                        .portable()
                        .apply_ops(&did, vec![op.value])
                        .await
                        .unwrap();
                    if (i + 1) % 10_000 == 0 {
                        eprintln!("{} accounts", i + 1);
                    }
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    let secs = started.elapsed().as_secs_f64();
    println!(
        "loaded {n} accounts in {secs:.1}s ({:.0}/s)",
        n as f64 / secs
    );
}
