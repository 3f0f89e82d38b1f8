//! Durable op appends per second at 1, 8 and 64 concurrent clients: each client submits
//! signed ops through the portable-account service (verify, encode the stored answers,
//! commit) to a redb file in a temporary directory, each acknowledged only once durable —
//! concurrent appends share commits (group commit). Each append is the genesis of a new
//! account log naming this server; the ops are signed before the clock starts.
//!
//! Run with `cargo bench -p roam-server --bench appends` (optionally `-- N` appends per level).
//! With `ROAM_BENCH_DATABASE_URL=postgres://…` (a server, e.g. scripts/pg.sh's) the appends go
//! to a fresh database there instead: each acknowledged once PostgreSQL committed it.

use std::sync::Arc;
use std::time::Instant;

use ed25519_dalek::SigningKey;
use roam_identity_core::log::genesis_op;
use roam_identity_core::{KeyCommitment, ServerName, UserId};
use roam_server::config::ServerConfig;
use roam_server::{AppState, RedbStore};
use serde_json::Value;

const SERVER: &str = "bench.test";

/// `n` signed genesis ops of distinct accounts, starting at `first`.
fn geneses(first: u32, n: u32) -> Vec<(roam_identity_core::Did, Value)> {
    let now = roam_server::clock::now_ms();
    (first..first + n)
        .map(|i| {
            let mut seed = [0u8; 32];
            seed[..4].copy_from_slice(&i.to_le_bytes());
            seed[31] = 1;
            let key = SigningKey::from_bytes(&seed);
            seed[31] = 2;
            let next = SigningKey::from_bytes(&seed);
            let op = genesis_op(
                &key.verifying_key(),
                KeyCommitment::to_key(&next.verifying_key()),
                UserId::parse(&format!("@u{i}:{SERVER}")).unwrap(),
                vec![ServerName::parse(SERVER).unwrap()],
                now - 1000,
            )
            .unwrap()
            .sign(&key);
            (op.op.did.clone(), op.value)
        })
        .collect()
}

async fn level(state: &AppState, clients: usize, per_level: u32, first: u32) -> f64 {
    let per_client = per_level / clients as u32;
    let work: Vec<_> = (0..clients)
        .map(|c| geneses(first + c as u32 * per_client, per_client))
        .collect();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for ops in work {
        let state = state.clone();
        tasks.push(tokio::spawn(async move {
            for (did, op) in ops {
                state.portable().apply_ops(&did, vec![op]).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    (per_client * clients as u32) as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let per_level: u32 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(3072);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig::for_server_name(
        ServerName::parse(SERVER).unwrap(),
        "127.0.0.1:0".parse().unwrap(),
        dir.path().to_owned(),
    );
    let (store, what): (Arc<dyn roam_server::Store>, _) =
        match std::env::var("ROAM_BENCH_DATABASE_URL") {
            Ok(url) => {
                use roam_server::store::PgStore;
                let url = PgStore::create_fresh_database(&url, "roam_bench_appends").unwrap();
                let pool = config.database_pool_size;
                (
                    Arc::new(PgStore::connect(&url, pool).unwrap()),
                    "PostgreSQL",
                )
            }
            Err(_) => (
                Arc::new(RedbStore::open_dir(dir.path()).unwrap()),
                "redb file",
            ),
        };
    let state = AppState::new(config, store).unwrap();
    println!(
        "durable op appends ({per_level} per level, {what}, {} cores):",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let mut first = 0;
    let mut base = None;
    for clients in [1, 8, 64] {
        let rate = rt.block_on(level(&state, clients, per_level, first));
        first += per_level;
        let ratio = rate / *base.get_or_insert(rate);
        println!("  {clients:>2} clients: {rate:>8.0} appends/s  ({ratio:.2}× one client)");
    }
}
