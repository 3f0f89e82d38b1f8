//! Deterministic generator of Roam's own vectors (spec/vectors/*.json).
//!
//! Every key comes from a fixed seed and every time is a constant, so running the generator
//! twice gives the same bytes. `cargo run -p roam-identity-core --example gen-vectors` writes
//! the files; the `vectors` test regenerates them in memory, checks they equal the committed
//! files, and checks every vector against the implementation with an independent loop.

#![allow(dead_code, clippy::too_many_arguments)]

use roam_identity_core::attestation::Attestation;
use roam_identity_core::bundle::Bundle;
use roam_identity_core::log::{Action, DeviceKeys, Operation, SignedOp, genesis_op};
use roam_identity_core::server_keys::{self, ServerSigningKey};
use roam_identity_core::{
    Did, KeyCommitment, KeyId, ServerName, SigningKey, UserId, b64, did, signed,
};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The verifier's clock for every vector.
pub const NOW: u64 = 1_800_000_000_000;
/// Genesis time of the vectors' accounts.
pub const T0: u64 = 1_790_000_000_000;

pub const GENERATOR: &str = "cargo run -p roam-identity-core --example gen-vectors";

pub fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn uid(s: &str) -> UserId {
    UserId::parse(s).unwrap()
}

fn sn(s: &str) -> ServerName {
    ServerName::parse(s).unwrap()
}

fn commit(k: &SigningKey) -> KeyCommitment {
    KeyCommitment::to_key(&k.verifying_key())
}

/// Builds a chain of ops for one account, tracking seq/prev/time.
struct Chain {
    ops: Vec<SignedOp>,
    t: u64,
}

impl Chain {
    fn genesis(k: &SigningKey, next: &SigningKey, user: &str, servers: &[&str]) -> Self {
        let op = genesis_op(
            &k.verifying_key(),
            commit(next),
            uid(user),
            servers.iter().map(|s| sn(s)).collect(),
            T0,
        )
        .unwrap();
        Chain {
            ops: vec![op.sign(k)],
            t: T0,
        }
    }

    fn op_after(&mut self, parent: usize, action: Action) -> Operation {
        self.t += 60_000;
        let p = &self.ops[parent];
        Operation {
            did: p.op.did.clone(),
            seq: p.op.seq + 1,
            prev: Some(p.hash),
            created_at: self.t,
            action,
        }
    }

    /// Appends `action` after op `parent`, signed by `k`; returns its index.
    fn push_after(&mut self, parent: usize, action: Action, k: &SigningKey) -> usize {
        let op = self.op_after(parent, action);
        self.ops.push(op.sign(k));
        self.ops.len() - 1
    }

    /// Appends after the last op.
    fn push(&mut self, action: Action, k: &SigningKey) -> usize {
        let last = self.ops.len() - 1;
        self.push_after(last, action, k)
    }

    fn values(&self) -> Vec<Value> {
        self.ops.iter().map(|o| o.value.clone()).collect()
    }

    fn pick(&self, idx: &[usize]) -> Vec<Value> {
        idx.iter().map(|&i| self.ops[i].value.clone()).collect()
    }
}

fn claim(u: &str) -> Action {
    Action::Claim { user_id: uid(u) }
}

fn mv(servers: &[&str]) -> Action {
    Action::Move {
        servers: servers.iter().map(|s| sn(s)).collect(),
    }
}

fn rotate(to: &SigningKey, next: &SigningKey) -> Action {
    Action::Rotate {
        update_key: to.verifying_key(),
        next_key: commit(next),
    }
}

fn device(id: &str, seed: u8) -> Action {
    let dk = key(seed);
    Action::AddDevice {
        device_id: roam_identity_core::DeviceId::parse(id).unwrap(),
        keys: DeviceKeys {
            ed25519: dk.verifying_key().to_bytes(),
            curve25519: dk.verifying_key().to_montgomery().to_bytes(),
        },
    }
}

/// Re-signs a wire object as an op signature by `k` over `did` (for hand-made invalid ops).
fn resign(mut v: Value, k: &SigningKey) -> Value {
    let did = v["did"].as_str().unwrap().to_owned();
    if let Some(m) = v.as_object_mut() {
        m.remove("signatures");
    }
    let kid = KeyId::ed25519(&did::encode_multikey(&k.verifying_key())).unwrap();
    signed::sign(&mut v, &did, &kid, k).unwrap();
    v
}

fn expected_state(c: &Chain, chain: &[usize], superseded: &[usize]) -> Value {
    // Replays the intended chain by hand so the expectation does not come from verify_log.
    let g = &c.ops[chain[0]];
    let Action::Genesis {
        update_key,
        next_key,
        user_id,
        servers,
    } = &g.op.action
    else {
        panic!("chain must start at genesis")
    };
    let mut update_key = *update_key;
    let mut next_key = *next_key;
    let mut users = vec![user_id.to_string()];
    let mut servers: Vec<String> = servers.iter().map(|s| s.to_string()).collect();
    let mut devices: BTreeMap<String, Value> = BTreeMap::new();
    let mut deactivated = false;
    for &i in &chain[1..] {
        match &c.ops[i].op.action {
            Action::Claim { user_id } => users.push(user_id.to_string()),
            Action::Release { user_id } => users.retain(|u| u != user_id.as_str()),
            Action::Move { servers: s } => servers = s.iter().map(|s| s.to_string()).collect(),
            Action::Rotate {
                update_key: u,
                next_key: n,
            } => {
                update_key = *u;
                next_key = *n;
            }
            Action::AddDevice { device_id, keys } => {
                devices.insert(
                    device_id.to_string(),
                    json!({"ed25519": b64::encode(&keys.ed25519), "curve25519": b64::encode(&keys.curve25519)}),
                );
            }
            Action::RevokeDevice { device_id } => {
                devices.remove(device_id.as_str());
            }
            Action::Deactivate => deactivated = true,
            Action::Genesis { .. } => panic!("second genesis on chain"),
        }
    }
    let head = &c.ops[*chain.last().unwrap()];
    json!({
        "did": g.op.did.as_str(),
        "head": head.hash.to_string(),
        "seq": head.op.seq,
        "update_key": did::encode_multikey(&update_key),
        "next_key": next_key.to_string(),
        "user_ids": users,
        "servers": servers,
        "devices": devices,
        "deactivated": deactivated,
        "superseded": superseded.iter().map(|&i| c.ops[i].hash.to_string()).collect::<Vec<_>>(),
    })
}

fn valid_log(name: &str, comment: &str, ops: Vec<Value>, expected: Value) -> Value {
    json!({"name": name, "comment": comment, "valid": true, "input": {"ops": ops}, "expected": expected})
}

fn invalid_log(
    name: &str,
    comment: &str,
    input: Value,
    class: &str,
    index: Option<usize>,
) -> Value {
    let mut err = json!({"class": class});
    if let Some(i) = index {
        err["index"] = json!(i);
    }
    json!({"name": name, "comment": comment, "valid": false, "input": input, "error": err})
}

fn equivocation(name: &str, comment: &str, ops: Vec<Value>, a: &SignedOp, b: &SignedOp) -> Value {
    let mut pair = [a.hash.to_string(), b.hash.to_string()];
    pair.sort();
    json!({"name": name, "comment": comment, "valid": false, "input": {"ops": ops},
           "error": {"class": "equivocation", "evidence": pair}})
}

pub fn account_log_vectors() -> Value {
    let k0 = key(1); // the DID key
    let k1 = key(2); // committed next key
    let k2 = key(3); // the one after
    let evil = key(9); // an attacker's key
    let mut v: Vec<Value> = Vec::new();

    // ---- valid ----
    let c = Chain::genesis(&k0, &k1, "@alice:a.example", &["a.example"]);
    v.push(valid_log(
        "genesis_only",
        "A genesis op alone is a complete log.",
        c.values(),
        expected_state(&c, &[0], &[]),
    ));

    let mut c = Chain::genesis(&k0, &k1, "@alice:a.example", &["a.example"]);
    c.push(claim("@alice:b.example"), &k0);
    c.push(mv(&["b.example", "a.example"]), &k0);
    v.push(valid_log(
        "claim_and_move",
        "Claim a second user ID, then move with a.example kept as backup.",
        c.values(),
        expected_state(&c, &[0, 1, 2], &[]),
    ));

    let mut c = Chain::genesis(&k0, &k1, "@alice:a.example", &["a.example"]);
    c.push(device("PHONE", 21), &k0);
    c.push(device("LAPTOP", 22), &k0);
    c.push(
        Action::RevokeDevice {
            device_id: roam_identity_core::DeviceId::parse("PHONE").unwrap(),
        },
        &k0,
    );
    v.push(valid_log(
        "devices",
        "Sign two devices in, revoke one.",
        c.values(),
        expected_state(&c, &[0, 1, 2, 3], &[]),
    ));

    let mut c = Chain::genesis(&k0, &k1, "@alice:a.example", &["a.example"]);
    c.push(claim("@alice:b.example"), &k0);
    c.push(
        Action::Release {
            user_id: uid("@alice:a.example"),
        },
        &k0,
    );
    v.push(valid_log(
        "release",
        "Release the genesis user ID; the claimed one stays.",
        c.values(),
        expected_state(&c, &[0, 1, 2], &[]),
    ));

    let mut c = Chain::genesis(&k0, &k1, "@alice:a.example", &["a.example"]);
    c.push(claim("@alice:b.example"), &k0);
    c.push(rotate(&k1, &k2), &k1);
    c.push(mv(&["b.example"]), &k1);
    v.push(valid_log(
        "rotate",
        "Rotate to the committed key; later ops are signed by it.",
        c.values(),
        expected_state(&c, &[0, 1, 2, 3], &[]),
    ));

    let mut c = Chain::genesis(&k0, &k1, "@alice:a.example", &["a.example"]);
    c.push(rotate(&k1, &k2), &k1);
    c.push(rotate(&k2, &k0), &k2);
    c.push(claim("@alice:c.example"), &k2);
    v.push(valid_log(
        "rotate_twice",
        "Two rotations in a row; a key may be committed again later.",
        c.values(),
        expected_state(&c, &[0, 1, 2, 3], &[]),
    ));

    let mut c = Chain::genesis(&k0, &k1, "@alice:a.example", &["a.example"]);
    c.push(claim("@alice:b.example"), &k0);
    c.push(Action::Deactivate, &k0);
    v.push(valid_log(
        "deactivate",
        "Deactivate ends the log.",
        c.values(),
        expected_state(&c, &[0, 1, 2], &[]),
    ));

    let mut c = Chain::genesis(&k0, &k1, "@alice:a.example", &["a.example"]);
    c.push(Action::Deactivate, &k1);
    v.push(valid_log(
        "deactivate_by_committed_key",
        "The committed next key may also deactivate.",
        c.values(),
        expected_state(&c, &[0, 1], &[]),
    ));

    let mut c = Chain::genesis(&k0, &k1, "@alice:a.example", &["a.example"]);
    let evil_move = c.push(mv(&["evil.example"]), &k0);
    let evil_claim = c.push(claim("@mallory:evil.example"), &k0);
    let rot = c.push_after(0, rotate(&k1, &k2), &k1);
    let fix = c.push_after(rot, mv(&["b.example"]), &k1);
    v.push(valid_log(
        "recovery_supersedes_attacker",
        "The update key was stolen and used to move the account. The owner's rotate, signed by the committed key, forks from genesis and supersedes both attacker ops; no clock is consulted.",
        c.values(),
        expected_state(&c, &[0, rot, fix], &[evil_move, evil_claim]),
    ));

    let mut c = Chain::genesis(&k0, &k1, "@alice:a.example", &["a.example"]);
    let own = c.push(claim("@alice:b.example"), &k0);
    let bad = c.push(mv(&["evil.example"]), &k0);
    let rot = c.push_after(own, rotate(&k1, &k2), &k1);
    v.push(valid_log(
        "recovery_keeps_ops_before_fork",
        "A recovery rotate may fork from any op of the epoch; ops before its fork point stay.",
        c.values(),
        expected_state(&c, &[0, own, rot], &[bad]),
    ));

    let mut c = Chain::genesis(&k0, &k1, "@alice:a.example", &["a.example"]);
    let d = c.push(Action::Deactivate, &k0);
    let rot = c.push_after(0, rotate(&k1, &k2), &k1);
    v.push(valid_log(
        "recovery_undoes_deactivate",
        "An attacker's deactivate is undone by a recovery rotate forking from before it.",
        c.values(),
        expected_state(&c, &[0, rot], &[d]),
    ));

    let mut c = Chain::genesis(&k0, &k1, "@alice:a.example", &["a.example"]);
    let a = c.push(claim("@alice:b.example"), &k0);
    let b = c.push_after(0, claim("@alice:c.example"), &k0);
    let rot = c.push_after(a, rotate(&k1, &k2), &k1);
    v.push(valid_log(
        "rotate_settles_equivocation",
        "Two conflicting ops of one epoch are equivocation until the owner rotates from one of them; the other is superseded.",
        c.values(),
        expected_state(&c, &[0, a, rot], &[b]),
    ));

    let mut c = Chain::genesis(&k0, &k1, "@alice:a.example", &["a.example"]);
    c.push(claim("@alice:b.example"), &k0);
    c.push(mv(&["b.example"]), &k0);
    let mut shuffled = c.values();
    shuffled.reverse();
    shuffled.push(c.ops[1].value.clone());
    v.push(valid_log(
        "unordered_with_duplicates",
        "Ops may arrive in any order and repeat; a repeated op is the same op.",
        shuffled,
        expected_state(&c, &[0, 1, 2], &[]),
    ));

    let ten: Vec<String> = (0..10).map(|i| format!("s{i}.example")).collect();
    let ten_ref: Vec<&str> = ten.iter().map(String::as_str).collect();
    let mut c = Chain::genesis(&k0, &k1, "@alice:a.example", &["a.example"]);
    c.push(mv(&ten_ref), &k0);
    v.push(valid_log(
        "ten_servers",
        "Ten servers is the cap, and allowed.",
        c.values(),
        expected_state(&c, &[0, 1], &[]),
    ));

    // ---- invalid ----
    v.push(invalid_log(
        "empty",
        "A log needs at least a genesis op.",
        json!({"ops": []}),
        "empty",
        None,
    ));

    let g = Chain::genesis(&k0, &k1, "@alice:a.example", &["a.example"]);
    let mut o = g.ops[0].value.clone();
    o["seq"] = json!("0");
    v.push(invalid_log(
        "seq_not_integer",
        "seq must be an integer.",
        json!({"ops": [o]}),
        "malformed",
        Some(0),
    ));

    let mut o = g.ops[0].value.clone();
    o.as_object_mut().unwrap().remove("signatures");
    v.push(invalid_log(
        "unsigned_op",
        "Every op carries a signature.",
        json!({"ops": [o]}),
        "malformed",
        Some(0),
    ));

    let mut o = g.ops[0].value.clone();
    let other_did = Did::from_key(&k1.verifying_key()).unwrap();
    o["signatures"][other_did.as_str()] = json!({});
    v.push(invalid_log(
        "extra_signature_entity",
        "Exactly one signature entry, under the DID: extra entries would mint ops with new hashes.",
        json!({"ops": [o]}),
        "malformed",
        Some(0),
    ));

    let mut o = g.ops[0].value.clone();
    o["action"] = json!("transfer");
    v.push(invalid_log(
        "unknown_action",
        "Actions are a closed set.",
        json!({"ops": [resign(o, &k0)]}),
        "unknown_action",
        Some(0),
    ));

    let mut o = g.ops[0].value.clone();
    o["display_name"] = json!("Alice");
    v.push(invalid_log(
        "unknown_field",
        "Fields are a closed set per action.",
        json!({"ops": [resign(o, &k0)]}),
        "unknown_field",
        Some(0),
    ));

    let mut o = g.ops[0].value.clone();
    let s = o["signatures"][g.ops[0].op.did.as_str()]
        .as_object()
        .unwrap()
        .values()
        .next()
        .unwrap()
        .as_str()
        .unwrap()
        .to_owned();
    let kid = o["signatures"][g.ops[0].op.did.as_str()]
        .as_object()
        .unwrap()
        .keys()
        .next()
        .unwrap()
        .clone();
    o["signatures"][g.ops[0].op.did.as_str()][&kid] = json!(format!("{s}=="));
    v.push(invalid_log(
        "padded_signature",
        "Base64 must be unpadded.",
        json!({"ops": [o]}),
        "non_canonical",
        Some(0),
    ));

    let mut o = g.ops[0].value.clone();
    let mut raw = b64::decode(&s).unwrap();
    raw.truncate(64);
    let mut text = b64::encode(&raw);
    // The last character of 64 bytes in base64 carries 4 unused bits; set one.
    let last = text.pop().unwrap();
    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let pos = alphabet.find(last).unwrap();
    text.push(alphabet.as_bytes()[pos | 1] as char);
    o["signatures"][g.ops[0].op.did.as_str()][&kid] = json!(text);
    v.push(invalid_log(
        "signature_trailing_bits",
        "Base64 with non-zero trailing bits is a second spelling of the same bytes, refused.",
        json!({"ops": [o]}),
        "non_canonical",
        Some(0),
    ));

    let mut o = g.ops[0].value.clone();
    let nk = o["next_key"].as_str().unwrap().to_owned();
    o["next_key"] = json!(format!("z1{}", &nk[1..]));
    v.push(invalid_log(
        "non_canonical_commitment",
        "A multihash with a leading zero byte is not the canonical form.",
        json!({"ops": [resign(o, &k0)]}),
        "non_canonical",
        Some(0),
    ));

    let mut o = g.ops[0].value.clone();
    o["did"] = json!(format!("did:key:z1{}", &g.ops[0].op.did.fingerprint()[1..]));
    v.push(invalid_log(
        "non_canonical_did",
        "A did:key with extra leading zeros is not canonical.",
        json!({"ops": [o]}),
        "non_canonical",
        Some(0),
    ));

    let mut o = g.ops[0].value.clone();
    o["created_at"] = json!(1.5);
    v.push(invalid_log(
        "float",
        "Numbers are integers.",
        json!({"ops": [o]}),
        "float",
        Some(0),
    ));

    let mut o = g.ops[0].value.clone();
    o["created_at"] = json!(9_007_199_254_740_992u64);
    v.push(invalid_log(
        "integer_out_of_range",
        "Integers stay within ±(2^53−1).",
        json!({"ops": [o]}),
        "integer_range",
        Some(0),
    ));

    let text = canonical_text(&g.ops[0].value);
    let dup = text.replacen('{', "{\"seq\":0,", 1);
    v.push(invalid_log(
        "duplicate_key",
        "Duplicate object keys are refused when parsing bytes.",
        json!({"ops_raw": [dup]}),
        "duplicate_key",
        Some(0),
    ));

    let mut o = g.ops[0].value.clone();
    o["padding"] = json!("x".repeat(4200));
    v.push(invalid_log(
        "op_too_large",
        "An op's canonical form is at most 4096 bytes (checked before anything else).",
        json!({"ops": [o]}),
        "op_too_large",
        Some(0),
    ));

    v.push(invalid_log(
        "log_too_large",
        "A log holds at most 1000 ops.",
        json!({"ops_repeat": {"op": g.ops[0].value.clone(), "times": 1001}}),
        "log_too_large",
        None,
    ));

    let eleven: Vec<String> = (0..11).map(|i| format!("s{i}.example")).collect();
    let mut c = Chain::genesis(&k0, &k1, "@alice:a.example", &["a.example"]);
    let mut o = c.op_after(0, mv(&["a.example"])).sign(&k0).value;
    o["servers"] = json!(eleven);
    v.push(invalid_log(
        "too_many_servers",
        "A move lists at most 10 servers.",
        json!({"ops": [g.ops[0].value.clone(), resign(o, &k0)]}),
        "too_many",
        Some(1),
    ));

    let mut c = Chain::genesis(&k0, &k1, "@alice:a.example", &["a.example"]);
    for i in 0..10 {
        c.push(claim(&format!("@alice{i}:a.example")), &k0);
    }
    v.push(invalid_log(
        "too_many_user_ids",
        "An account claims at most 10 user IDs at once.",
        json!({"ops": c.values()}),
        "too_many",
        Some(10),
    ));

    let mut c = Chain::genesis(&k0, &k1, "@alice:a.example", &["a.example"]);
    for i in 0..11 {
        c.push(device(&format!("D{i}"), 30 + i as u8), &k0);
    }
    v.push(invalid_log(
        "too_many_devices",
        "An account has at most 10 devices at once.",
        json!({"ops": c.values()}),
        "too_many",
        Some(11),
    ));

    let other = Chain::genesis(&k2, &k1, "@bob:b.example", &["b.example"]);
    v.push(invalid_log(
        "wrong_did",
        "Every op must belong to the same DID.",
        json!({"ops": [g.ops[0].value.clone(), other.ops[0].value.clone()]}),
        "wrong_did",
        Some(1),
    ));

    let mut o = g.ops[0].value.clone();
    o["seq"] = json!(1);
    v.push(invalid_log(
        "genesis_with_seq",
        "Genesis has seq 0 and no prev.",
        json!({"ops": [resign(o, &k0)]}),
        "bad_genesis",
        Some(0),
    ));

    let mut c = Chain::genesis(&k0, &k1, "@alice:a.example", &["a.example"]);
    c.push(claim("@alice:b.example"), &k0);
    let mut o = c.ops[1].value.clone();
    o.as_object_mut().unwrap().remove("prev");
    v.push(invalid_log(
        "claim_without_prev",
        "Only genesis may omit prev.",
        json!({"ops": [c.ops[0].value.clone(), resign(o, &k0)]}),
        "bad_genesis",
        Some(1),
    ));

    let mut o = c.ops[1].value.clone();
    o["prev"] = json!(roam_identity_core::OpHash::of_canonical_bytes(b"nothing").to_string());
    v.push(invalid_log(
        "unknown_prev",
        "prev must name an op of the log.",
        json!({"ops": [c.ops[0].value.clone(), resign(o, &k0)]}),
        "unknown_prev",
        Some(1),
    ));

    let mut o = c.ops[1].value.clone();
    o["seq"] = json!(2);
    v.push(invalid_log(
        "seq_gap",
        "seq is the parent's plus one.",
        json!({"ops": [c.ops[0].value.clone(), resign(o, &k0)]}),
        "seq_gap",
        Some(1),
    ));

    let mut o = c.ops[1].value.clone();
    o["created_at"] = json!(T0 - 1);
    v.push(invalid_log(
        "time_reversed",
        "created_at never goes backwards along the chain.",
        json!({"ops": [c.ops[0].value.clone(), resign(o, &k0)]}),
        "time_reversed",
        Some(1),
    ));

    let mut o = c.ops[1].value.clone();
    o["created_at"] = json!(NOW + 10 * 60 * 1000);
    v.push(invalid_log(
        "from_future",
        "created_at may be at most 5 minutes ahead of the verifier's clock.",
        json!({"ops": [c.ops[0].value.clone(), resign(o, &k0)]}),
        "from_future",
        Some(1),
    ));

    let mut c = Chain::genesis(&k0, &k1, "@alice:a.example", &["a.example"]);
    c.push(Action::Deactivate, &k0);
    c.push(claim("@alice:b.example"), &k0);
    v.push(invalid_log(
        "after_deactivate",
        "Nothing may follow a deactivate.",
        json!({"ops": c.values()}),
        "after_deactivate",
        Some(2),
    ));

    let mut c = Chain::genesis(&k0, &k1, "@alice:a.example", &["a.example"]);
    c.push(Action::Deactivate, &k0);
    c.push(rotate(&k1, &k2), &k1);
    v.push(invalid_log(
        "rotate_after_deactivate",
        "A recovery rotate must fork from before the deactivate, not follow it.",
        json!({"ops": c.values()}),
        "after_deactivate",
        Some(2),
    ));

    let mut c = Chain::genesis(&k0, &k1, "@alice:a.example", &["a.example"]);
    c.push(claim("@alice:b.example"), &evil);
    v.push(invalid_log(
        "wrong_signer",
        "A claim must be signed by the current update key.",
        json!({"ops": c.values()}),
        "wrong_signer",
        Some(1),
    ));

    let mut c = Chain::genesis(&k0, &k1, "@alice:a.example", &["a.example"]);
    c.push(claim("@alice:b.example"), &k1);
    v.push(invalid_log(
        "committed_key_cannot_claim",
        "The committed next key may rotate or deactivate, nothing else, until it is rotated in.",
        json!({"ops": c.values()}),
        "wrong_signer",
        Some(1),
    ));

    let mut c = Chain::genesis(&k0, &k1, "@alice:a.example", &["a.example"]);
    c.push(rotate(&k1, &k2), &k1);
    c.push(claim("@alice:b.example"), &k0);
    v.push(invalid_log(
        "old_key_after_rotate",
        "After a rotate the old update key signs nothing.",
        json!({"ops": c.values()}),
        "wrong_signer",
        Some(2),
    ));

    let mut c = Chain::genesis(&k0, &k1, "@alice:a.example", &["a.example"]);
    c.push(rotate(&evil, &evil), &evil);
    v.push(invalid_log(
        "commitment_mismatch",
        "A rotate must install the committed key.",
        json!({"ops": c.values()}),
        "commitment_mismatch",
        Some(1),
    ));

    let mut c = Chain::genesis(&k0, &k1, "@alice:a.example", &["a.example"]);
    c.push(rotate(&k1, &k2), &k0);
    v.push(invalid_log(
        "rotate_signed_by_old_key",
        "A rotate is signed by the new (committed) key itself.",
        json!({"ops": c.values()}),
        "wrong_signer",
        Some(1),
    ));

    let mut o = g.ops[0].value.clone();
    o["update_key"] = json!(did::encode_multikey(&k1.verifying_key()));
    v.push(invalid_log(
        "genesis_key_mismatch",
        "At genesis the update key is the DID's own key.",
        json!({"ops": [resign(o, &k0)]}),
        "genesis_key_mismatch",
        Some(0),
    ));

    let mut c = Chain::genesis(&k0, &k1, "@alice:a.example", &["a.example"]);
    c.push(claim("@alice:b.example"), &k0);
    let mut o = c.ops[1].value.clone();
    o["user_id"] = json!("@mallory:b.example");
    v.push(invalid_log(
        "bad_signature",
        "A field changed after signing breaks the signature.",
        json!({"ops": [c.ops[0].value.clone(), o]}),
        "bad_signature",
        Some(1),
    ));

    let mut c = Chain::genesis(&k0, &k1, "@alice:a.example", &["a.example"]);
    let a = c.push(claim("@alice:b.example"), &k0);
    let b = c.push_after(0, mv(&["evil.example"]), &k0);
    v.push(equivocation("equivocation_same_prev", "Two ops of one epoch with the same prev and no rotate: equivocation, with both ops as evidence.", c.values(), &c.ops[a], &c.ops[b]));

    let mut c = Chain::genesis(&k0, &k1, "@alice:a.example", &["a.example"]);
    c.push(claim("@alice:b.example"), &k0);
    let a = c.push_after(0, rotate(&k1, &k2), &k1);
    let b = c.push_after(1, rotate(&k1, &evil), &k1);
    v.push(equivocation(
        "equivocation_two_rotates",
        "Two rotates for one commitment: the committed key itself equivocated.",
        c.values(),
        &c.ops[a],
        &c.ops[b],
    ));

    let c1 = Chain::genesis(&k0, &k1, "@alice:a.example", &["a.example"]);
    let c2 = Chain::genesis(&k0, &k2, "@alice:a.example", &["b.example"]);
    v.push(equivocation(
        "equivocation_two_geneses",
        "Two geneses for one DID with no rotate to choose between them.",
        vec![c1.ops[0].value.clone(), c2.ops[0].value.clone()],
        &c1.ops[0],
        &c2.ops[0],
    ));

    let mut c = Chain::genesis(&k0, &k1, "@alice:a.example", &["a.example"]);
    c.push(rotate(&k1, &k2), &k1);
    let a = c.push(claim("@alice:b.example"), &k1);
    let b = c.push_after(1, claim("@alice:c.example"), &k1);
    v.push(equivocation(
        "equivocation_in_later_epoch",
        "After a rotate, a fork within the new epoch is equivocation too.",
        c.values(),
        &c.ops[a],
        &c.ops[b],
    ));

    let mut c = Chain::genesis(&k0, &k1, "@alice:a.example", &["a.example"]);
    c.push(claim("@alice:a.example"), &k0);
    v.push(invalid_log(
        "already_claimed",
        "A user ID is claimed once.",
        json!({"ops": c.values()}),
        "already_claimed",
        Some(1),
    ));

    let mut c = Chain::genesis(&k0, &k1, "@alice:a.example", &["a.example"]);
    c.push(
        Action::Release {
            user_id: uid("@alice:b.example"),
        },
        &k0,
    );
    v.push(invalid_log(
        "not_claimed",
        "Only a claimed user ID can be released.",
        json!({"ops": c.values()}),
        "not_claimed",
        Some(1),
    ));

    let mut c = Chain::genesis(&k0, &k1, "@alice:a.example", &["a.example"]);
    c.push(device("PHONE", 21), &k0);
    c.push(device("PHONE", 22), &k0);
    v.push(invalid_log(
        "device_exists",
        "A device ID is signed in once; revoke it first.",
        json!({"ops": c.values()}),
        "device_exists",
        Some(2),
    ));

    let mut c = Chain::genesis(&k0, &k1, "@alice:a.example", &["a.example"]);
    c.push(
        Action::RevokeDevice {
            device_id: roam_identity_core::DeviceId::parse("PHONE").unwrap(),
        },
        &k0,
    );
    v.push(invalid_log(
        "unknown_device",
        "Only a signed-in device can be revoked.",
        json!({"ops": c.values()}),
        "unknown_device",
        Some(1),
    ));

    json!({
        "description": "Account log verification vectors. Input is a set of signed ops (`ops`, wire objects; `ops_raw`, JSON texts parsed strictly; or `ops_repeat`, one op repeated). Valid vectors give the expected account state; invalid ones the error class (spec/protocol.md §Errors) and, where it applies, the input index of the op at fault, or for equivocation the two conflicting op hashes (sorted).",
        "generator": GENERATOR,
        "now": NOW,
        "keys": {
            "did_key_seed": hex32(1), "next_key_seed": hex32(2), "third_key_seed": hex32(3), "attacker_seed": hex32(9),
            "note": "Ed25519 seeds (RFC 8032 secret keys), hex."
        },
        "vectors": v,
    })
}

fn hex32(b: u8) -> String {
    format!("{b:02x}").repeat(32)
}

fn canonical_text(v: &Value) -> String {
    roam_identity_core::canonical::to_canonical_string(v).unwrap()
}

fn server(seed: u8, name: &str) -> (ServerName, ServerSigningKey) {
    (
        sn(name),
        ServerSigningKey {
            key_id: KeyId::ed25519("a_1").unwrap(),
            key: key(seed),
        },
    )
}

fn keys_doc(name: &ServerName, k: &ServerSigningKey) -> Value {
    server_keys::build(name, k, &BTreeMap::new(), NOW + 86_400_000).unwrap()
}

fn attest(
    name: &ServerName,
    k: &ServerSigningKey,
    user: Option<&str>,
    did: &Did,
    head: &SignedOp,
    hosting: bool,
    issued_at: u64,
    valid_until: u64,
) -> Value {
    Attestation {
        server_name: name.clone(),
        user_id: user.map(uid),
        did: did.clone(),
        head: head.hash,
        hosting,
        issued_at,
        valid_until,
    }
    .sign(k)
    .unwrap()
}

fn bundle_value(did: &Did, log: Vec<Value>, atts: Vec<Value>, keys: Vec<Value>) -> Value {
    Bundle {
        did: did.clone(),
        log,
        attestations: atts,
        server_keys: keys,
        fetched_at: NOW - 1000,
        source: "a.example".into(),
    }
    .to_value()
}

pub fn bundle_vectors() -> Value {
    let k0 = key(1);
    let k1 = key(2);
    let (a, ka) = server(11, "a.example");
    let (b, kb) = server(12, "b.example");
    let mut c = Chain::genesis(&k0, &k1, "@alice:a.example", &["a.example"]);
    c.push(claim("@alice:b.example"), &k0);
    c.push(mv(&["a.example", "b.example"]), &k0);
    let did = c.ops[0].op.did.clone();
    let head = c.ops[2].clone();
    let day = 86_400_000;
    let att_a = attest(
        &a,
        &ka,
        Some("@alice:a.example"),
        &did,
        &head,
        true,
        NOW - day,
        NOW + day,
    );
    let att_b = attest(
        &b,
        &kb,
        Some("@alice:b.example"),
        &did,
        &head,
        true,
        NOW - day,
        NOW + day,
    );
    let att_b_old = attest(
        &b,
        &kb,
        Some("@alice:b.example"),
        &did,
        &head,
        true,
        NOW - 10 * day,
        NOW - 9 * day,
    );
    let att_b_for_a = attest(
        &b,
        &kb,
        Some("@alice:a.example"),
        &did,
        &head,
        true,
        NOW - day,
        NOW + day,
    );
    let doc_a = keys_doc(&a, &ka);
    let doc_b = keys_doc(&b, &kb);
    let mut v = Vec::new();
    let exp = |bound: &[&str], expired: &[&str], missing: &[&str], hosting: &[&str]| json!({"head": head.hash.to_string(), "bound": bound, "expired": expired, "unattested": missing, "hosting": hosting});
    v.push(json!({"name": "both_bound", "comment": "Each claimed user ID is attested by its own domain; both servers attest hosting.", "valid": true,
        "input": bundle_value(&did, c.values(), vec![att_a.clone(), att_b.clone()], vec![doc_a.clone(), doc_b.clone()]),
        "expected": exp(&["@alice:a.example", "@alice:b.example"], &[], &[], &["a.example", "b.example"])}));
    v.push(json!({"name": "one_side_only", "comment": "The log claims @alice:b.example but b.example has not attested: that user ID is not bound.", "valid": true,
        "input": bundle_value(&did, c.values(), vec![att_a.clone()], vec![doc_a.clone()]),
        "expected": exp(&["@alice:a.example"], &[], &["@alice:b.example"], &["a.example"])}));
    v.push(json!({"name": "wrong_domain_attests", "comment": "b.example attesting @alice:a.example does not bind it: only a.example can.", "valid": true,
        "input": bundle_value(&did, c.values(), vec![att_b_for_a.clone()], vec![doc_b.clone()]),
        "expected": exp(&[], &[], &["@alice:a.example", "@alice:b.example"], &["b.example"])}));
    v.push(json!({"name": "expired_attestation", "comment": "An expired attestation still verifies but only says what was once confirmed.", "valid": true,
        "input": bundle_value(&did, c.values(), vec![att_a.clone(), att_b_old.clone()], vec![doc_a.clone(), doc_b.clone()]),
        "expected": exp(&["@alice:a.example"], &["@alice:b.example"], &[], &["a.example"])}));
    let mut tampered = att_a.clone();
    tampered["valid_until"] = json!(NOW + 20 * day);
    v.push(json!({"name": "tampered_attestation", "comment": "An attestation edited after signing is refused, and with it the bundle.", "valid": false,
        "input": bundle_value(&did, c.values(), vec![tampered], vec![doc_a.clone()]), "error": {"class": "attestation"}}));
    v.push(json!({"name": "missing_server_keys", "comment": "An attestation without its server's key document cannot be checked.", "valid": false,
        "input": bundle_value(&did, c.values(), vec![att_a.clone()], vec![]), "error": {"class": "missing_server_keys"}}));
    let other = Chain::genesis(&key(3), &k1, "@bob:a.example", &["a.example"]);
    let att_other = attest(
        &a,
        &ka,
        Some("@bob:a.example"),
        &other.ops[0].op.did,
        &other.ops[0],
        true,
        NOW - day,
        NOW + day,
    );
    v.push(json!({"name": "foreign_attestation", "comment": "An attestation about another DID does not belong in this bundle.", "valid": false,
        "input": bundle_value(&did, c.values(), vec![att_other], vec![doc_a.clone()]), "error": {"class": "foreign_attestation"}}));
    let mut bad_doc = doc_a.clone();
    bad_doc["valid_until_ts"] = json!(NOW + 400 * day);
    v.push(json!({"name": "tampered_server_keys", "comment": "A key document that does not verify under its own keys is refused.", "valid": false,
        "input": bundle_value(&did, c.values(), vec![att_a.clone()], vec![bad_doc]), "error": {"class": "server_keys"}}));
    let mut bad_log = c.values();
    bad_log[2]["servers"] = json!(["evil.example"]);
    v.push(json!({"name": "tampered_log", "comment": "A bundle whose log does not verify is refused with the log's error.", "valid": false,
        "input": bundle_value(&did, bad_log, vec![att_a.clone()], vec![doc_a.clone()]), "error": {"class": "bad_signature"}}));
    let mut wrong = bundle_value(&did, c.values(), vec![att_a.clone()], vec![doc_a.clone()]);
    wrong["did"] = json!(other.ops[0].op.did.as_str());
    v.push(json!({"name": "bundle_did_mismatch", "comment": "The bundle's did must be the log's.", "valid": false,
        "input": wrong, "error": {"class": "wrong_did"}}));
    json!({
        "description": "Bundle verification vectors: the log, key documents and attestations must all verify; a user ID is bound only when the log claims it and its own domain attests the DID. `bound` are current two-way bindings, `expired` are claimed IDs whose latest attestation has expired, `unattested` are claimed IDs with none, `hosting` are servers with a current hosting attestation.",
        "generator": GENERATOR,
        "now": NOW,
        "vectors": v,
    })
}

pub fn did_vectors() -> Value {
    let mut v = Vec::new();
    for seed in [1u8, 2, 3, 9] {
        let k = key(seed);
        let d = Did::from_key(&k.verifying_key()).unwrap();
        v.push(json!({"name": format!("seed_{seed:02x}"), "comment": "did:key of a fixed seed.", "valid": true,
            "input": d.as_str(), "expected": {"public_key_hex": hex_bytes(k.verifying_key().as_bytes()), "x25519_multikey": d.x25519_multikey()}}));
    }
    let good = Did::from_key(&key(1).verifying_key()).unwrap().to_string();
    let mut weak = [0u8; 32];
    weak[0] = 1;
    let weak_text = format!(
        "did:key:{}",
        did::encode_multikey(&roam_identity_core::VerifyingKey::from_bytes(&weak).unwrap())
    );
    let mut short = vec![0xed, 0x01];
    short.extend_from_slice(&key(1).verifying_key().as_bytes()[..31]);
    let short_key = format!("did:key:z{}", bs58::encode(short).into_string());
    let cases: Vec<(&str, String, &str)> = vec![
        ("empty", String::new(), "not_a_did"),
        ("no_value", "did:key:".into(), "not_base58btc"),
        ("only_multibase_prefix", "did:key:z".into(), "not_ed25519"),
        ("truncated", "did:key:z6Mk".into(), "not_ed25519"),
        ("short_key", short_key, "wrong_length"),
        ("base58_alphabet", "did:key:z0OIl".into(), "bad_base58"),
        (
            "base64_multibase",
            format!("did:key:m{}", &good[9..]),
            "not_base58btc",
        ),
        (
            "other_method",
            "did:web:example.com".into(),
            "method_not_supported",
        ),
        (
            "uppercase_method",
            format!("did:KEY:{}", &good[8..]),
            "not_a_did",
        ),
        (
            "x25519_key",
            "did:key:z6LShs9GGnqk85isEBzzshkuVWrVKsRp24GnDuHk8QWkARMW".into(),
            "not_ed25519",
        ),
        (
            "leading_zero",
            format!("did:key:z1{}", &good[9..]),
            "not_ed25519",
        ),
        (
            "non_canonical_point",
            non_canonical_point(),
            "non_canonical",
        ),
        ("weak_key", weak_text, "weak_key"),
        (
            "too_long",
            format!("did:key:z{}", "1".repeat(200)),
            "too_long",
        ),
    ];
    for (name, input, class) in cases {
        v.push(json!({"name": name, "comment": "Strict did:key parsing refuses this.", "valid": false, "input": input, "error": {"class": class}}));
    }
    json!({"description": "did:key (Ed25519) parsing vectors for Roam's strict parser. Valid inputs give the public key and derived X25519 Multikey; invalid ones the error class.", "generator": GENERATOR, "vectors": v})
}

/// A did:key whose point is encoded with y >= p: decompression accepts it, canonical
/// re-encoding differs.
fn non_canonical_point() -> String {
    for y in 2u8..19 {
        // p = 2^255 - 19; y + p in little-endian: low byte 0xed + y (no carry for y < 19),
        // then 0xff.., top byte 0x7f.
        let mut bytes = [0xffu8; 32];
        bytes[0] = 0xed + y;
        bytes[31] = 0x7f;
        if let Ok(k) = roam_identity_core::VerifyingKey::from_bytes(&bytes)
            && !k.is_weak()
            && k.to_edwards().compress().to_bytes() != bytes
        {
            let mut raw = vec![0xed, 0x01];
            raw.extend_from_slice(&bytes);
            return format!("did:key:z{}", bs58::encode(raw).into_string());
        }
    }
    panic!("no non-canonical point found")
}

fn hex_bytes(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn canonical_vectors() -> Value {
    let cases: Vec<(&str, &str, Result<&str, &str>)> = vec![
        (
            "sorted_compact",
            "{ \"b\": 1, \"a\": [true, null, \"x\"] }",
            Ok("{\"a\":[true,null,\"x\"],\"b\":1}"),
        ),
        (
            "unicode_kept",
            "{\"k\":\"日本\\u8a9e\"}",
            Ok("{\"k\":\"日本語\"}"),
        ),
        (
            "control_escaped",
            "{\"k\":\"\\u0001\\t\"}",
            Ok("{\"k\":\"\\u0001\\t\"}"),
        ),
        (
            "max_safe_integer",
            "{\"n\":9007199254740991,\"m\":-9007199254740991}",
            Ok("{\"m\":-9007199254740991,\"n\":9007199254740991}"),
        ),
        ("float", "{\"n\":1.0}", Err("float")),
        ("exponent", "{\"n\":1e10}", Err("float")),
        ("negative_zero", "{\"n\":-0.0}", Err("float")),
        ("too_big", "{\"n\":9007199254740992}", Err("integer_range")),
        (
            "too_small",
            "{\"n\":-9007199254740992}",
            Err("integer_range"),
        ),
        ("duplicate_key", "{\"a\":1,\"a\":1}", Err("duplicate_key")),
        (
            "nested_duplicate",
            "{\"x\":{\"a\":1,\"b\":2,\"a\":3}}",
            Err("duplicate_key"),
        ),
        ("trailing_garbage", "{} {}", Err("malformed")),
        ("truncated", "{\"a\":", Err("malformed")),
    ];
    let v: Vec<Value> = cases
        .into_iter()
        .map(|(name, input, r)| match r {
            Ok(out) => json!({"name": name, "comment": "Parsed strictly and re-encoded canonically.", "valid": true, "input": input, "expected": out}),
            Err(class) => json!({"name": name, "comment": "Refused by the strict parser for Roam objects.", "valid": false, "input": input, "error": {"class": class}}),
        })
        .collect();
    json!({"description": "Strict JSON parsing and canonical encoding for Roam's own signed objects.", "generator": GENERATOR, "vectors": v})
}

/// Every vector file: (path relative to the repository root, content).
pub fn all() -> Vec<(&'static str, Value)> {
    vec![
        ("spec/vectors/account-log.json", account_log_vectors()),
        ("spec/vectors/bundles.json", bundle_vectors()),
        ("spec/vectors/did-key.json", did_vectors()),
        ("spec/vectors/canonical-json.json", canonical_vectors()),
    ]
}
