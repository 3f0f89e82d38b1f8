//! Criterion benchmarks: a cached in-process resolve (µs) and a cold resolve across two
//! in-process servers on loopback (ms), the second following a move to the new primary.

#[path = "../tests/support/attest.rs"]
mod attest;
#[path = "../tests/support/mod.rs"]
mod support;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use roam_resolver::{CacheStore, ManualClock, ResolveStatus, Resolver};
use support::*;

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (a, b, alice) = rt.block_on(two_servers_with_moved_alice());
    let clock = ManualClock::new(NOW);

    let store = CacheStore::in_memory().unwrap();
    let cached = cached_with(resolver(&[&a, &b], &clock), &store, &clock, KEEP_FOREVER);
    rt.block_on(cached.resolve_user(&alice)).unwrap();
    c.bench_function("resolve_user/cached", |bench| {
        bench.iter(|| {
            let r = rt.block_on(cached.resolve_user(&alice)).unwrap();
            assert_eq!(r.status, ResolveStatus::Cached);
        })
    });

    c.bench_function("resolve_user/cold_two_servers", |bench| {
        bench.iter_batched(
            || resolver(&[&a, &b], &clock),
            |res| {
                let r = rt.block_on(res.resolve_user(&alice)).unwrap();
                assert_eq!(r.status, ResolveStatus::Verified);
            },
            BatchSize::PerIteration,
        )
    });

    let warm = resolver(&[&a, &b], &clock);
    rt.block_on(warm.resolve_user(&alice)).unwrap();
    c.bench_function("resolve_user/uncached_warm_keys_two_servers", |bench| {
        bench.iter(|| {
            let r = rt.block_on(warm.resolve_user(&alice)).unwrap();
            assert_eq!(r.status, ResolveStatus::Verified);
        })
    });
}

criterion_group!(group, benches);
criterion_main!(group);
