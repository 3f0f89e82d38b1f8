//! Core primitive benchmarks: raw Ed25519, canonical JSON, signed-JSON verification.
//!
//! Run: `cargo bench -p roam-identity-core --bench core` (add `-- --quick` for a short run).
//! Log-verification benchmarks live in their own bench file.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ed25519_dalek::{Signer, SigningKey};
use roam_identity_core::canonical::{self, NumberPolicy};
use roam_identity_core::{Did, KeyId, OpHash, signed};
use serde_json::{Value, json};

/// A typical ~1 KB signed object: an account operation adding a device with its Matrix
/// device keys (the largest common op shape).
fn typical_object() -> Value {
    let account = SigningKey::from_bytes(&[1u8; 32]);
    let did = Did::from_key(&account.verifying_key()).unwrap();
    let device = SigningKey::from_bytes(&[2u8; 32]);
    let device_key = roam_identity_core::b64::encode(device.verifying_key().as_bytes());
    let prev = OpHash::of_canonical_bytes(b"previous op");
    json!({
        "did": did.as_str(),
        "seq": 7,
        "prev": prev.to_multibase(),
        "created_at": 1_767_225_600_000u64,
        "action": "add_device",
        "device_id": "JLAFKJWSCS",
        "device_keys": {
            "user_id": "@alice:a.example",
            "device_id": "JLAFKJWSCS",
            "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
            "keys": {
                "curve25519:JLAFKJWSCS": "3C5BFWi2Y8MaVvjM8M22DBmh24PmgR0nPvJOIArzgyI",
                "ed25519:JLAFKJWSCS": device_key,
            },
            "signatures": {
                "@alice:a.example": {
                    "ed25519:JLAFKJWSCS": "dSO80A01XiigH3uBiDVx/EjzaoycHcjq9lfQX0uWsqxl2giMIiSPR8a4d291W1ihKJL/a+myXS367WT6NAIcBA"
                }
            }
        },
        "display_name": "Alice's laptop (Firefox on Linux), added while travelling",
        "note": "A free-text field to bring the object to a realistic size for a device op. \
                 Roam ops are capped at 4 KB; most are well under 1 KB, device ops are the largest.",
        "unsigned": { "age": 1234 }
    })
}

fn benches(c: &mut Criterion) {
    let key = SigningKey::from_bytes(&[9u8; 32]);
    let vk = key.verifying_key();
    let obj = typical_object();
    let bytes = canonical::to_canonical_bytes(&obj).unwrap();
    assert!(
        (900..=1300).contains(&bytes.len()),
        "typical object is {} bytes",
        bytes.len()
    );
    let sig = key.sign(&bytes);

    let mut g = c.benchmark_group("ed25519");
    g.throughput(Throughput::Elements(1));
    g.bench_function("sign_1k", |b| b.iter(|| key.sign(black_box(&bytes))));
    g.bench_function("verify_strict_1k", |b| {
        b.iter(|| {
            vk.verify_strict(black_box(&bytes), black_box(&sig))
                .unwrap()
        })
    });
    g.finish();

    let mut g = c.benchmark_group("canonical");
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    g.bench_function("encode_1k", |b| {
        b.iter(|| canonical::encode(black_box(&obj), NumberPolicy::Strict).unwrap())
    });
    let text = serde_json::to_vec_pretty(&obj).unwrap();
    g.bench_function("parse_strict_1k", |b| {
        b.iter(|| canonical::parse_strict(black_box(&text)).unwrap())
    });
    g.finish();

    let kid = KeyId::parse("ed25519:1").unwrap();
    let did = Did::from_key(&vk).unwrap();
    let mut signed_obj = obj.clone();
    signed::sign(&mut signed_obj, did.as_str(), &kid, &key).unwrap();
    signed::verify(&signed_obj, did.as_str(), &kid, &vk).unwrap();

    let mut g = c.benchmark_group("signed");
    g.throughput(Throughput::Elements(1));
    g.bench_function("sign_1k", |b| {
        b.iter(|| {
            let mut o = obj.clone();
            signed::sign(&mut o, did.as_str(), &kid, &key).unwrap();
            o
        })
    });
    g.bench_function("verify_1k", |b| {
        b.iter(|| signed::verify(black_box(&signed_obj), did.as_str(), &kid, &vk).unwrap())
    });
    g.finish();
}

criterion_group!(core, benches);
criterion_main!(core);
