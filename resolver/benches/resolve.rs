//! Criterion benchmarks: a cached in-process resolve (µs) and a cold resolve across two
//! in-process servers on loopback (ms), the second following a move to the new primary.

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use roam_identity_core::log::Action;
use roam_resolver::{CachePolicy, CacheStore, Cached, ManualClock, ResolveStatus, Resolver};
use support::*;

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (a, b, alice) = rt.block_on(async {
        let a = Origin::start("a.test", 1).await;
        let b = Origin::start("b.test", 2).await;
        let alice = user("@alice:a.test");
        let mut acct = Account::new(7, &alice, &["a.test"]);
        acct.append(device("PHONE", 3));
        acct.append(Action::Move {
            servers: vec![name("b.test"), name("a.test")],
        });
        a.host(&alice, &acct);
        acct.append(device("LAPTOP", 4));
        b.publish_log(&acct.did(), acct.values());
        (a, b, alice)
    });
    let clock = ManualClock::new(NOW);

    let cached = Cached::new(
        resolver(&[&a, &b], &clock),
        CacheStore::in_memory().unwrap(),
        Arc::new(clock.clone()),
        CachePolicy {
            positive_ttl_ms: u64::MAX / 4,
            negative_ttl_ms: 1000,
        },
    );
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
