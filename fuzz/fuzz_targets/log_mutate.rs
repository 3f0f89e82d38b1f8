//! Structured mutations of a valid log (`roam_fuzz::sample_log`: genesis, claim, add_device,
//! move, rotate, revoke_device, release): the fuzz bytes pick mutations — drop, repeat or swap
//! ops, drop a field, set a field to another op's value or to a fuzz value, flip a signature
//! character, replace an op with fuzz JSON — then `roam_fuzz::check_log` runs its invariants
//! on the result (no panic, verify_values = parse + verify_log, batch = single, an accepted
//! log's chain and reversal give the same state).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use roam_fuzz::Bytes;
use roam_identity_core::canonical::parse_strict;
use serde_json::{Value, json};

const FIELDS: &[&str] = &[
    "did",
    "seq",
    "prev",
    "created_at",
    "action",
    "signatures",
    "update_key",
    "next_key",
    "user_id",
    "servers",
    "device_id",
    "keys",
    "type",
];

fn base() -> &'static [Value] {
    static LOG: OnceLock<Vec<Value>> = OnceLock::new();
    LOG.get_or_init(roam_fuzz::sample_values)
}

/// A value for a field: another op's, a fixed interesting one, or fuzz JSON.
fn some_value(b: &mut Bytes, ops: &[Value]) -> Value {
    match b.u8() % 12 {
        0 => {
            let other = &ops[b.below(ops.len())];
            other
                .get(FIELDS[b.below(FIELDS.len())])
                .cloned()
                .unwrap_or(Value::Null)
        }
        1 => Value::Null,
        2 => json!(0),
        3 => json!(-1),
        4 => json!((1u64 << 53) - 1),
        5 => json!(b.u8() as u64 * 1000 + roam_fuzz::GENESIS_AT),
        6 => json!(""),
        7 => json!([]),
        8 => json!({}),
        9 => json!(["a.example", "b.example", "a.example"]),
        10 => json!(String::from_utf8_lossy(b.take(64))),
        _ => parse_strict(b.take(256)).unwrap_or(Value::Bool(true)),
    }
}

fn mutate(b: &mut Bytes, ops: &mut Vec<Value>) {
    if ops.is_empty() {
        ops.push(base()[0].clone());
    }
    let i = b.below(ops.len());
    match b.u8() % 9 {
        0 => {
            ops.remove(i);
        }
        1 => {
            let op = ops[i].clone();
            let at = b.below(ops.len() + 1);
            ops.insert(at, op);
        }
        2 => {
            let j = b.below(ops.len());
            ops.swap(i, j);
        }
        3 => {
            if let Some(o) = ops[i].as_object_mut() {
                o.remove(FIELDS[b.below(FIELDS.len())]);
            }
        }
        4 | 5 => {
            let v = some_value(b, ops);
            let field = FIELDS[b.below(FIELDS.len())];
            if let Some(o) = ops[i].as_object_mut() {
                o.insert(field.to_owned(), v);
            }
        }
        6 => {
            // One character of the signature.
            let sig = ops[i]
                .get_mut("signatures")
                .and_then(Value::as_object_mut)
                .and_then(|s| s.values_mut().next())
                .and_then(Value::as_object_mut)
                .and_then(|s| s.values_mut().next());
            if let Some(Value::String(s)) = sig
                && !s.is_empty()
            {
                let mut chars: Vec<char> = s.chars().collect();
                let k = b.below(chars.len());
                let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=";
                chars[k] = char::from(alphabet[b.below(alphabet.len())]);
                *s = chars.into_iter().collect();
            }
        }
        7 => ops[i] = some_value(b, ops),
        _ => ops.truncate(i),
    }
}

fuzz_target!(|data: &[u8]| {
    let mut b = Bytes(data);
    let mut ops = base().to_vec();
    let rounds = 1 + b.u8() % 4;
    for _ in 0..rounds {
        mutate(&mut b, &mut ops);
    }
    roam_fuzz::check_log(&ops);
});
