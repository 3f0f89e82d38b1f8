//! Latency percentiles and throughput, measured with `Instant` (criterion reports means):
//! cached resolve, cold resolve across two loopback servers, and resolves per second over
//! HTTP with 16 concurrent callers. Run with `cargo bench -p roam-resolver --bench
//! resolve_percentiles`.

#[path = "../tests/support/attest.rs"]
mod attest;
#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use roam_resolver::{CacheStore, ManualClock, Resolver};
use support::*;

fn report(label: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let pct = |p: f64| samples[((samples.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "{label}: n={} p50={:?} p90={:?} p99={:?} max={:?}",
        samples.len(),
        pct(0.50),
        pct(0.90),
        pct(0.99),
        samples[samples.len() - 1]
    );
}

fn main() {
    // `cargo bench` passes --bench; nothing else to parse.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (a, b, alice) = two_servers_with_moved_alice().await;
        let clock = ManualClock::new(NOW);

        let store = CacheStore::in_memory().unwrap();
        let cached = cached_with(resolver(&[&a, &b], &clock), &store, &clock, KEEP_FOREVER);
        cached.resolve_user(&alice).await.unwrap();
        let mut s = Vec::new();
        for _ in 0..5000 {
            let t = Instant::now();
            cached.resolve_user(&alice).await.unwrap();
            s.push(t.elapsed());
        }
        report("cached resolve (in-process, redb in memory)", s);

        let mut s = Vec::new();
        for _ in 0..300 {
            let res = resolver(&[&a, &b], &clock);
            let t = Instant::now();
            res.resolve_user(&alice).await.unwrap();
            s.push(t.elapsed());
        }
        report(
            "cold resolve (new resolver, 2 loopback servers, move followed)",
            s,
        );

        let warm = resolver(&[&a, &b], &clock);
        warm.resolve_user(&alice).await.unwrap();
        let mut s = Vec::new();
        for _ in 0..1000 {
            let t = Instant::now();
            warm.resolve_user(&alice).await.unwrap();
            s.push(t.elapsed());
        }
        report("uncached resolve (keys and connections warm)", s);

        let warm = Arc::new(warm);
        let deadline = Instant::now() + Duration::from_secs(3);
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let (w, alice) = (warm.clone(), alice.clone());
                tokio::spawn(async move {
                    let mut n = 0u64;
                    while Instant::now() < deadline {
                        w.resolve_user(&alice).await.unwrap();
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        let start = Instant::now();
        let mut total = 0;
        for t in tasks {
            total += t.await.unwrap();
        }
        println!(
            "uncached resolves over HTTP, 16 concurrent callers: {:.0}/s",
            total as f64 / start.elapsed().as_secs_f64()
        );
    });
}
