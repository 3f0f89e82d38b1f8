//! Account-log verification: a 100-op log, with batch and with single signature checks,
//! beside raw Ed25519 verification of the same number of signatures, so the overhead of
//! everything that is not the signature math can be read as a ratio.
//!
//! Run: `cargo bench -p roam-identity-core --bench log`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use ed25519_dalek::{Signer, SigningKey};
use roam_identity_core::log::{self, Action, SignatureCheck, SignedOp, genesis_op, next_op};
use roam_identity_core::{DeviceId, KeyCommitment, ServerName, UserId};

const NOW: u64 = 1_800_000_000_000;

/// 100 ops: genesis, then moves, device adds and revokes, and a rotate halfway.
fn hundred_op_log() -> Vec<SignedOp> {
    let k0 = SigningKey::from_bytes(&[1; 32]);
    let k1 = SigningKey::from_bytes(&[2; 32]);
    let k2 = SigningKey::from_bytes(&[3; 32]);
    let g = genesis_op(
        &k0.verifying_key(),
        KeyCommitment::to_key(&k1.verifying_key()),
        UserId::parse("@alice:a.example").unwrap(),
        vec![ServerName::parse("a.example").unwrap()],
        NOW - 1_000_000,
    )
    .unwrap();
    let mut ops = vec![g.sign(&k0)];
    let mut state = log::verify_log(&ops, None, NOW).unwrap().state;
    let mut key = k0;
    for i in 1..100u64 {
        let action = match i % 5 {
            _ if i == 50 => Action::Rotate {
                update_key: k1.verifying_key(),
                next_key: KeyCommitment::to_key(&k2.verifying_key()),
            },
            0 => Action::Move {
                servers: vec![ServerName::parse(&format!("s{i}.example")).unwrap()],
            },
            1 | 2 => Action::AddDevice {
                device_id: DeviceId::parse(&format!("D{i}")).unwrap(),
                keys: log::DeviceKeys {
                    ed25519: [i as u8; 32],
                    curve25519: [i as u8; 32],
                },
            },
            _ => Action::RevokeDevice {
                device_id: DeviceId::parse(&format!("D{}", i - 2)).unwrap(),
            },
        };
        if i == 50 {
            key = k1.clone();
        }
        let op = next_op(&state, NOW - 1_000_000 + i, action).sign(&key);
        ops.push(op);
        state = log::verify_log(&ops, None, NOW).unwrap().state;
    }
    ops
}

fn bench(c: &mut Criterion) {
    let ops = hundred_op_log();
    assert_eq!(ops.len(), 100);
    let mut g = c.benchmark_group("log_100_ops");
    g.bench_function("verify_batch", |b| {
        b.iter(|| log::verify_log_with(black_box(&ops), None, NOW, SignatureCheck::Batch).unwrap())
    });
    g.bench_function("verify_single", |b| {
        b.iter(|| log::verify_log_with(black_box(&ops), None, NOW, SignatureCheck::Single).unwrap())
    });
    let values: Vec<_> = ops.iter().map(|o| o.value.clone()).collect();
    g.bench_function("parse_and_verify_batch", |b| {
        b.iter(|| log::verify_values(black_box(&values), None, NOW).unwrap())
    });
    // The floor: 100 raw verify_strict calls over 100 messages of similar size.
    let key = SigningKey::from_bytes(&[1; 32]);
    let msgs: Vec<Vec<u8>> = ops.iter().map(|o| o.canonical_bytes()).collect();
    let sigs: Vec<_> = msgs.iter().map(|m| key.sign(m)).collect();
    let vk = key.verifying_key();
    g.bench_function("raw_verify_strict_x100", |b| {
        b.iter(|| {
            for (m, s) in msgs.iter().zip(&sigs) {
                vk.verify_strict(black_box(m), s).unwrap();
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
