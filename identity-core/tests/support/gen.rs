//! Deterministic generator of Roam's own vectors (spec/vectors/*.json).
//!
//! Every key comes from a fixed seed and every time is a constant, so running the generator
//! twice gives the same bytes. `cargo run -p roam-identity-core --example gen-vectors` writes
//! the files; the `vectors` test regenerates them in memory, checks they equal the committed
//! files, and checks every vector against the implementation with an independent loop.

#![allow(dead_code)]

use roam_identity_core::attestation::Attestation;
use roam_identity_core::bundle::Bundle;
use roam_identity_core::log::{Action, DeviceKeys, Operation, SignedOp, genesis_op};
use roam_identity_core::server_keys::{self, ServerSigningKey};
use roam_identity_core::{
    DeviceId, Did, KeyCommitment, KeyId, OpHash, ServerName, SigningKey, UserId, b64, did, signed,
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

    /// Alice's account (genesis by the DID key, committing to the next key, on a.example),
    /// then `steps`.
    fn alice(k: &Keys, steps: Vec<Step>) -> Self {
        let mut c = Chain::genesis(&k.k0, &k.k1, "@alice:a.example", &["a.example"]);
        for step in steps {
            let parent = step.parent.unwrap_or(c.ops.len() - 1);
            c.push_after(parent, step.action, step.key);
        }
        c
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
}

/// The keys of the account-log vectors.
struct Keys {
    /// The DID key.
    k0: SigningKey,
    /// The committed next key.
    k1: SigningKey,
    /// The one after.
    k2: SigningKey,
    /// An attacker's key.
    evil: SigningKey,
}

impl Keys {
    fn new() -> Self {
        Keys {
            k0: key(1),
            k1: key(2),
            k2: key(3),
            evil: key(9),
        }
    }
}

/// One op of a vector's log: `action` signed by `key`, after op number `parent` (by default
/// the op before it).
struct Step<'k> {
    parent: Option<usize>,
    action: Action,
    key: &'k SigningKey,
}

/// An op after the one before it.
fn then(action: Action, key: &SigningKey) -> Step<'_> {
    Step {
        parent: None,
        action,
        key,
    }
}

/// An op after op number `parent`: a fork when that op already has a successor.
fn fork(parent: usize, action: Action, key: &SigningKey) -> Step<'_> {
    Step {
        parent: Some(parent),
        action,
        key,
    }
}

fn claim(u: &str) -> Action {
    Action::Claim { user_id: uid(u) }
}

fn release(u: &str) -> Action {
    Action::Release { user_id: uid(u) }
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
        device_id: DeviceId::parse(id).unwrap(),
        keys: DeviceKeys {
            ed25519: dk.verifying_key().to_bytes(),
            curve25519: dk.verifying_key().to_montgomery().to_bytes(),
        },
    }
}

fn revoke(id: &str) -> Action {
    Action::RevokeDevice {
        device_id: DeviceId::parse(id).unwrap(),
    }
}

/// `n` server names, `s0.example` onwards.
fn server_names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("s{i}.example")).collect()
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

/// A change to an op's wire object.
type Edit = fn(&mut Value);

/// `op`'s wire object changed by `edit` after signing: the signature no longer covers it
/// (or the edit is to the signature itself).
fn edited(op: &SignedOp, edit: impl FnOnce(&mut Value)) -> Value {
    let mut v = op.value.clone();
    edit(&mut v);
    v
}

/// `op` changed by `edit` and signed again by `k`, so that only the edit is wrong.
fn resigned(op: &SignedOp, k: &SigningKey, edit: impl FnOnce(&mut Value)) -> Value {
    resign(edited(op, edit), k)
}

/// The one signature of `op`: its key ID and base64 text.
fn only_signature(op: &SignedOp) -> (String, String) {
    let by_did = op.value["signatures"][op.op.did.as_str()]
        .as_object()
        .unwrap();
    let (kid, sig) = by_did.iter().next().unwrap();
    (kid.clone(), sig.as_str().unwrap().to_owned())
}

/// `op` with its signature text replaced by `text`.
fn with_signature(op: &SignedOp, text: String) -> Value {
    let (kid, _) = only_signature(op);
    edited(op, |o| {
        o["signatures"][op.op.did.as_str()][&kid] = json!(text)
    })
}

/// A second spelling of the signature's bytes: the last base64 character of 64 bytes carries
/// 4 unused bits; set one.
fn signature_with_trailing_bits(op: &SignedOp) -> String {
    let (_, s) = only_signature(op);
    let mut raw = b64::decode(&s).unwrap();
    raw.truncate(64);
    let mut text = b64::encode(&raw);
    let last = text.pop().unwrap();
    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let pos = alphabet.find(last).unwrap();
    text.push(alphabet.as_bytes()[pos | 1] as char);
    text
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
    // §5.3's account state, every field in its order.
    json!({
        "did": g.op.did.as_str(),
        "update_key": did::encode_multikey(&update_key),
        "next_key": next_key.to_string(),
        "user_ids": users,
        "servers": servers,
        "devices": devices,
        "head": head.hash.to_string(),
        "seq": head.op.seq,
        "created_at": g.op.created_at,
        "updated_at": head.op.created_at,
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

/// An invalid vector whose input is `ops`, failing with `class` at the op of position `index`.
fn invalid_ops(name: &str, comment: &str, ops: Vec<Value>, class: &str, index: usize) -> Value {
    invalid_log(name, comment, json!({"ops": ops}), class, Some(index))
}

fn equivocation(name: &str, comment: &str, ops: Vec<Value>, a: &SignedOp, b: &SignedOp) -> Value {
    let mut pair = [a.hash.to_string(), b.hash.to_string()];
    pair.sort();
    json!({"name": name, "comment": comment, "valid": false, "input": {"ops": ops},
           "error": {"class": "equivocation", "evidence": pair}})
}

/// A vector over Alice's log: name, comment, the steps after her genesis, and what the
/// verifier must answer.
type AliceCase<'k, T> = (&'static str, &'static str, Vec<Step<'k>>, T);

/// Invalid vectors over Alice's log whose last op is the one at fault: (name, comment, steps,
/// class).
fn last_op_fails(k: &Keys, cases: Vec<AliceCase<&'static str>>) -> Vec<Value> {
    cases
        .into_iter()
        .map(|(name, comment, steps, class)| {
            let index = steps.len();
            invalid_ops(name, comment, Chain::alice(k, steps).values(), class, index)
        })
        .collect()
}

/// The account-log vectors (spec §5.3), in file order: valid logs first, then the errors
/// roughly in the order verification meets them.
pub fn account_log_vectors() -> Value {
    let k = Keys::new();
    let mut v = valid_log_vectors(&k);
    v.extend(op_vectors(&k));
    v.extend(set_and_link_vectors(&k));
    v.extend(signer_vectors(&k));
    v.extend(fork_vectors(&k));
    v.extend(replay_vectors(&k));
    v.extend(error_order_vectors(&k));
    v.extend(op_member_vectors(&k));
    v.extend(device_key_vectors(&k));
    json!({
        "description": "Account log verification vectors. Input is a set of signed ops (`ops`, wire objects; `ops_raw`, JSON texts parsed strictly; or `ops_repeat`, one op repeated). Valid vectors give the account state of spec/protocol.md §5.3 (did, update_key, next_key, user_ids, servers, devices, head, seq, created_at, updated_at, deactivated, superseded — the last a set); invalid ones the error class (§11) and, where it applies, the input index of the op at fault (its first position when repeated), or for equivocation the two conflicting op hashes (sorted). Which fault is reported when there are several follows §5.3's order.",
        "generator": GENERATOR,
        "now": NOW,
        "keys": {
            "did_key_seed": hex32(1), "next_key_seed": hex32(2), "third_key_seed": hex32(3), "attacker_seed": hex32(9),
            "note": "Ed25519 seeds (RFC 8032 secret keys), hex."
        },
        "vectors": v,
    })
}

/// Valid logs: Alice's ops as input; the chain the verifier must choose and the ops it must
/// supersede (by op number).
fn valid_log_vectors(k: &Keys) -> Vec<Value> {
    let Keys { k0, k1, k2, .. } = k;
    let mut v = straight_logs(
        k,
        vec![
            (
                "genesis_only",
                "A genesis op alone is a complete log.",
                vec![],
            ),
            (
                "claim_and_move",
                "Claim a second user ID, then move with a.example kept as backup.",
                vec![
                    then(claim("@alice:b.example"), k0),
                    then(mv(&["b.example", "a.example"]), k0),
                ],
            ),
            (
                "devices",
                "Sign two devices in, revoke one.",
                vec![
                    then(device("PHONE", 21), k0),
                    then(device("LAPTOP", 22), k0),
                    then(revoke("PHONE"), k0),
                ],
            ),
            (
                "release",
                "Release the genesis user ID; the claimed one stays.",
                vec![
                    then(claim("@alice:b.example"), k0),
                    then(release("@alice:a.example"), k0),
                ],
            ),
            (
                "rotate",
                "Rotate to the committed key; later ops are signed by it.",
                vec![
                    then(claim("@alice:b.example"), k0),
                    then(rotate(k1, k2), k1),
                    then(mv(&["b.example"]), k1),
                ],
            ),
            (
                "rotate_twice",
                "Two rotations in a row; a key may be committed again later.",
                vec![
                    then(rotate(k1, k2), k1),
                    then(rotate(k2, k0), k2),
                    then(claim("@alice:c.example"), k2),
                ],
            ),
            (
                "deactivate",
                "Deactivate ends the log.",
                vec![
                    then(claim("@alice:b.example"), k0),
                    then(Action::Deactivate, k0),
                ],
            ),
            (
                "deactivate_by_committed_key",
                "The committed next key may also deactivate.",
                vec![then(Action::Deactivate, k1)],
            ),
        ],
    );
    let recoveries: Vec<AliceCase<(&[usize], &[usize])>> = vec![
        (
            "recovery_supersedes_attacker",
            "The update key was stolen and used to move the account. The owner's rotate, signed by the committed key, forks from genesis and supersedes both attacker ops; no clock is consulted.",
            vec![
                then(mv(&["evil.example"]), k0),          // 1: attacker
                then(claim("@mallory:evil.example"), k0), // 2: attacker
                fork(0, rotate(k1, k2), k1),              // 3: recovery
                then(mv(&["b.example"]), k1),             // 4: the owner's fix
            ],
            (&[0, 3, 4], &[1, 2]),
        ),
        (
            "recovery_keeps_ops_before_fork",
            "A recovery rotate may fork from any op of the epoch; ops before its fork point stay.",
            vec![
                then(claim("@alice:b.example"), k0), // 1: the owner's
                then(mv(&["evil.example"]), k0),     // 2: attacker
                fork(1, rotate(k1, k2), k1),         // 3: recovery
            ],
            (&[0, 1, 3], &[2]),
        ),
        (
            "recovery_undoes_deactivate",
            "An attacker's deactivate is undone by a recovery rotate forking from before it.",
            vec![then(Action::Deactivate, k0), fork(0, rotate(k1, k2), k1)],
            (&[0, 2], &[1]),
        ),
        (
            "rotate_settles_equivocation",
            "Two conflicting ops of one epoch are equivocation until the owner rotates from one of them; the other is superseded.",
            vec![
                then(claim("@alice:b.example"), k0),
                fork(0, claim("@alice:c.example"), k0),
                fork(1, rotate(k1, k2), k1),
            ],
            (&[0, 1, 3], &[2]),
        ),
    ];
    v.extend(
        recoveries
            .into_iter()
            .map(|(name, comment, steps, (chain, superseded))| {
                let c = Chain::alice(k, steps);
                valid_log(
                    name,
                    comment,
                    c.values(),
                    expected_state(&c, chain, superseded),
                )
            }),
    );

    let c = Chain::alice(
        k,
        vec![
            then(claim("@alice:b.example"), k0),
            then(mv(&["b.example"]), k0),
        ],
    );
    let mut shuffled = c.values();
    shuffled.reverse();
    shuffled.push(c.ops[1].value.clone());
    v.push(valid_log(
        "unordered_with_duplicates",
        "Ops may arrive in any order and repeat; a repeated op is the same op.",
        shuffled,
        expected_state(&c, &[0, 1, 2], &[]),
    ));

    let ten = server_names(10);
    let ten: Vec<&str> = ten.iter().map(String::as_str).collect();
    let ten_servers = vec![then(mv(&ten), k0)];
    v.extend(straight_logs(
        k,
        vec![(
            "ten_servers",
            "Ten servers is the cap, and allowed.",
            ten_servers,
        )],
    ));
    v
}

/// Valid vectors over Alice's log where every op is on the chain and none is superseded:
/// (name, comment, steps).
fn straight_logs(k: &Keys, cases: Vec<(&'static str, &'static str, Vec<Step>)>) -> Vec<Value> {
    cases
        .into_iter()
        .map(|(name, comment, steps)| {
            let chain: Vec<usize> = (0..=steps.len()).collect();
            let c = Chain::alice(k, steps);
            valid_log(name, comment, c.values(), expected_state(&c, &chain, &[]))
        })
        .collect()
}

/// §5.3 phase 1 (each op alone), with the set-level `empty` and `log_too_large` and the replay
/// caps between them, in file order.
fn op_vectors(k: &Keys) -> Vec<Value> {
    let Keys { k0, k1, .. } = k;
    let g = Chain::alice(k, vec![]);
    let g0 = &g.ops[0];
    let other_did = Did::from_key(&k1.verifying_key()).unwrap();
    let (_, signature) = only_signature(g0);
    let commitment = g0.value["next_key"].as_str().unwrap().to_owned();
    let mut v = vec![invalid_log(
        "empty",
        "A log needs at least a genesis op.",
        json!({"ops": []}),
        "empty",
        None,
    )];
    // One genesis op, edited: (name, comment, the op, class).
    let one_op: Vec<(&str, &str, Value, &str)> = vec![
        (
            "seq_not_integer",
            "seq must be an integer.",
            edited(g0, |o| o["seq"] = json!("0")),
            "malformed",
        ),
        (
            "unsigned_op",
            "Every op carries a signature.",
            edited(g0, |o| {
                o.as_object_mut().unwrap().remove("signatures");
            }),
            "malformed",
        ),
        (
            "extra_signature_entity",
            "Exactly one signature entry, under the DID: extra entries would mint ops with new hashes.",
            edited(g0, |o| o["signatures"][other_did.as_str()] = json!({})),
            "malformed",
        ),
        (
            "unknown_action",
            "Actions are a closed set.",
            resigned(g0, k0, |o| o["action"] = json!("transfer")),
            "unknown_action",
        ),
        (
            "unknown_field",
            "Fields are a closed set per action.",
            resigned(g0, k0, |o| o["display_name"] = json!("Alice")),
            "unknown_field",
        ),
        (
            "padded_signature",
            "Base64 must be unpadded.",
            with_signature(g0, format!("{signature}==")),
            "non_canonical",
        ),
        (
            "signature_trailing_bits",
            "Base64 with non-zero trailing bits is a second spelling of the same bytes, refused.",
            with_signature(g0, signature_with_trailing_bits(g0)),
            "non_canonical",
        ),
        (
            "non_canonical_commitment",
            "A multihash with a leading zero byte is not the canonical form.",
            resigned(g0, k0, |o| {
                o["next_key"] = json!(format!("z1{}", &commitment[1..]));
            }),
            "non_canonical",
        ),
        (
            "non_canonical_did",
            "A did:key with extra leading zeros is not canonical.",
            edited(g0, |o| {
                o["did"] = json!(format!("did:key:z1{}", &g0.op.did.fingerprint()[1..]));
            }),
            "non_canonical",
        ),
        (
            "float",
            "Numbers are integers.",
            edited(g0, |o| o["created_at"] = json!(1.5)),
            "float",
        ),
        (
            "integer_out_of_range",
            "Integers stay within ±(2^53−1).",
            edited(g0, |o| o["created_at"] = json!(1u64 << 53)),
            "integer_range",
        ),
    ];
    for (name, comment, op, class) in one_op {
        v.push(invalid_ops(name, comment, vec![op], class, 0));
    }
    v.extend([
        invalid_log(
            "duplicate_key",
            "Duplicate object keys are refused when parsing bytes.",
            json!({"ops_raw": [canonical_text(&g0.value).replacen('{', "{\"seq\":0,", 1)]}),
            "duplicate_key",
            Some(0),
        ),
        invalid_ops(
            "op_too_large",
            "An op's canonical form is at most 4096 bytes (checked before anything else).",
            vec![edited(g0, |o| o["padding"] = json!("x".repeat(4200)))],
            "op_too_large",
            0,
        ),
        invalid_log(
            "log_too_large",
            "A log holds at most 1000 ops.",
            json!({"ops_repeat": {"op": g0.value.clone(), "times": 1001}}),
            "log_too_large",
            None,
        ),
        invalid_ops(
            "too_many_servers",
            "A move lists at most 10 servers.",
            vec![g0.value.clone(), too_many_servers(k)],
            "too_many",
            1,
        ),
    ]);
    v.extend(replay_cap_vectors(k));
    v
}

/// A move after Alice's genesis that lists eleven servers.
fn too_many_servers(k: &Keys) -> Value {
    let mut c = Chain::alice(k, vec![]);
    let op = c.op_after(0, mv(&["a.example"])).sign(&k.k0);
    resigned(&op, &k.k0, |o| o["servers"] = json!(server_names(11)))
}

/// §5.3 phase 5's caps: one op past the cap on claimed user IDs and on devices.
fn replay_cap_vectors(k: &Keys) -> Vec<Value> {
    let claims = (0..10).map(|i| then(claim(&format!("@alice{i}:a.example")), &k.k0));
    let devices = (0..11u8).map(|i| then(device(&format!("D{i}"), 30 + i), &k.k0));
    last_op_fails(
        k,
        vec![
            (
                "too_many_user_ids",
                "An account claims at most 10 user IDs at once.",
                claims.collect(),
                "too_many",
            ),
            (
                "too_many_devices",
                "An account has at most 10 devices at once.",
                devices.collect(),
                "too_many",
            ),
        ],
    )
}

/// §5.3 phase 2: the set (one DID, genesis ⇔ seq 0 ⇔ no prev, not from the future) and the
/// links (`prev` held, seq one more, time not reversed, nothing after a deactivate).
fn set_and_link_vectors(k: &Keys) -> Vec<Value> {
    let Keys { k0, k1, k2, .. } = k;
    let g = Chain::alice(k, vec![]);
    let other = Chain::genesis(k2, k1, "@bob:b.example", &["b.example"]);
    let mut v = vec![
        invalid_ops(
            "wrong_did",
            "Every op must belong to the same DID.",
            vec![g.ops[0].value.clone(), other.ops[0].value.clone()],
            "wrong_did",
            1,
        ),
        invalid_ops(
            "genesis_with_seq",
            "Genesis has seq 0 and no prev.",
            vec![resigned(&g.ops[0], k0, |o| o["seq"] = json!(1))],
            "bad_genesis",
            0,
        ),
    ];
    // Alice's genesis and a claim after it, the claim edited and signed again:
    // (name, comment, edit, class).
    let c = Chain::alice(k, vec![then(claim("@alice:b.example"), k0)]);
    let claim_edits: Vec<(&str, &str, Edit, &str)> = vec![
        (
            "claim_without_prev",
            "Only genesis may omit prev.",
            |o| {
                o.as_object_mut().unwrap().remove("prev");
            },
            "bad_genesis",
        ),
        (
            "unknown_prev",
            "prev must name an op of the log.",
            |o| o["prev"] = json!(OpHash::of_canonical_bytes(b"nothing").to_string()),
            "unknown_prev",
        ),
        (
            "seq_gap",
            "seq is the parent's plus one.",
            |o| o["seq"] = json!(2),
            "seq_gap",
        ),
        (
            "time_reversed",
            "created_at never goes backwards along the chain.",
            |o| o["created_at"] = json!(T0 - 1),
            "time_reversed",
        ),
        (
            "from_future",
            "created_at may be at most 5 minutes ahead of the verifier's clock.",
            |o| o["created_at"] = json!(NOW + 10 * 60 * 1000),
            "from_future",
        ),
    ];
    for (name, comment, edit, class) in claim_edits {
        let ops = vec![c.ops[0].value.clone(), resigned(&c.ops[1], k0, edit)];
        v.push(invalid_ops(name, comment, ops, class, 1));
    }
    v.extend(last_op_fails(
        k,
        vec![
            (
                "after_deactivate",
                "Nothing may follow a deactivate.",
                vec![
                    then(Action::Deactivate, k0),
                    then(claim("@alice:b.example"), k0),
                ],
                "after_deactivate",
            ),
            (
                "rotate_after_deactivate",
                "A recovery rotate must fork from before the deactivate, not follow it.",
                vec![then(Action::Deactivate, k0), then(rotate(k1, k2), k1)],
                "after_deactivate",
            ),
        ],
    ));
    v
}

/// §5.3 phase 3: who must sign each op, and whether the signature verifies.
fn signer_vectors(k: &Keys) -> Vec<Value> {
    let Keys { k0, k1, k2, evil } = k;
    // A claim after genesis signed by a key that is not the update key.
    let claim_signed_by = |signer| vec![then(claim("@alice:b.example"), signer)];
    let cases: Vec<AliceCase<&str>> = vec![
        (
            "wrong_signer",
            "A claim must be signed by the current update key.",
            claim_signed_by(evil),
            "wrong_signer",
        ),
        (
            "committed_key_cannot_claim",
            "The committed next key may rotate or deactivate, nothing else, until it is rotated in.",
            claim_signed_by(k1),
            "wrong_signer",
        ),
        (
            "old_key_after_rotate",
            "After a rotate the old update key signs nothing.",
            vec![
                then(rotate(k1, k2), k1),
                then(claim("@alice:b.example"), k0),
            ],
            "wrong_signer",
        ),
        (
            "commitment_mismatch",
            "A rotate must install the committed key.",
            vec![then(rotate(evil, evil), evil)],
            "commitment_mismatch",
        ),
        (
            "rotate_signed_by_old_key",
            "A rotate is signed by the new (committed) key itself.",
            vec![then(rotate(k1, k2), k0)],
            "wrong_signer",
        ),
    ];
    let mut v = last_op_fails(k, cases);
    let g = Chain::alice(k, vec![]);
    let c = Chain::alice(k, vec![then(claim("@alice:b.example"), k0)]);
    v.extend([
        invalid_ops(
            "genesis_key_mismatch",
            "At genesis the update key is the DID's own key.",
            vec![resigned(&g.ops[0], k0, |o| {
                o["update_key"] = json!(did::encode_multikey(&k1.verifying_key()));
            })],
            "genesis_key_mismatch",
            0,
        ),
        invalid_ops(
            "bad_signature",
            "A field changed after signing breaks the signature.",
            vec![
                c.ops[0].value.clone(),
                edited(&c.ops[1], |o| o["user_id"] = json!("@mallory:b.example")),
            ],
            "bad_signature",
            1,
        ),
    ]);
    v
}

/// §5.3 phase 4: forks no rotate settles are equivocation, with both ops as evidence.
fn fork_vectors(k: &Keys) -> Vec<Value> {
    let Keys { k0, k1, k2, evil } = k;
    // (name, comment, steps, the two conflicting op numbers).
    let cases: Vec<AliceCase<(usize, usize)>> = vec![
        (
            "equivocation_same_prev",
            "Two ops of one epoch with the same prev and no rotate: equivocation, with both ops as evidence.",
            vec![
                then(claim("@alice:b.example"), k0),
                fork(0, mv(&["evil.example"]), k0),
            ],
            (1, 2),
        ),
        (
            "equivocation_two_rotates",
            "Two rotates for one commitment: the committed key itself equivocated.",
            vec![
                then(claim("@alice:b.example"), k0),
                fork(0, rotate(k1, k2), k1),
                fork(1, rotate(k1, evil), k1),
            ],
            (2, 3),
        ),
    ];
    let mut v: Vec<Value> = cases
        .into_iter()
        .map(|(name, comment, steps, (a, b))| {
            let c = Chain::alice(k, steps);
            equivocation(name, comment, c.values(), &c.ops[a], &c.ops[b])
        })
        .collect();
    let c1 = Chain::alice(k, vec![]);
    let c2 = Chain::genesis(k0, k2, "@alice:a.example", &["b.example"]);
    v.push(equivocation(
        "equivocation_two_geneses",
        "Two geneses for one DID with no rotate to choose between them.",
        vec![c1.ops[0].value.clone(), c2.ops[0].value.clone()],
        &c1.ops[0],
        &c2.ops[0],
    ));
    let c = Chain::alice(
        k,
        vec![
            then(rotate(k1, k2), k1),
            then(claim("@alice:b.example"), k1),
            fork(1, claim("@alice:c.example"), k1),
        ],
    );
    v.push(equivocation(
        "equivocation_in_later_epoch",
        "After a rotate, a fork within the new epoch is equivocation too.",
        c.values(),
        &c.ops[2],
        &c.ops[3],
    ));
    v
}

/// §5.3 phase 5: what each action means for the account so far.
fn replay_vectors(k: &Keys) -> Vec<Value> {
    let k0 = &k.k0;
    last_op_fails(
        k,
        vec![
            (
                "already_claimed",
                "A user ID is claimed once.",
                vec![then(claim("@alice:a.example"), k0)],
                "already_claimed",
            ),
            (
                "not_claimed",
                "Only a claimed user ID can be released.",
                vec![then(release("@alice:b.example"), k0)],
                "not_claimed",
            ),
            (
                "device_exists",
                "A device ID is signed in once; revoke it first.",
                vec![then(device("PHONE", 21), k0), then(device("PHONE", 22), k0)],
                "device_exists",
            ),
            (
                "unknown_device",
                "Only a signed-in device can be revoked.",
                vec![then(revoke("PHONE"), k0)],
                "unknown_device",
            ),
        ],
    )
}

/// The hash of a wire op, whatever its signature (for building ops after a tampered one).
fn hash_of(v: &Value) -> OpHash {
    OpHash::of_canonical_bytes(canonical_text(v).as_bytes())
}

/// An op doing `action` after the wire op `parent` (seq + 1, prev = its hash, one minute
/// later), signed by `k`.
fn after_value(parent: &Value, action: Action, k: &SigningKey) -> SignedOp {
    let p = SignedOp::from_value(parent.clone()).unwrap();
    Operation {
        did: p.op.did.clone(),
        seq: p.op.seq + 1,
        prev: Some(hash_of(parent)),
        created_at: p.op.created_at + 60_000,
        action,
    }
    .sign(k)
}

/// `op` with a well-encoded signature by its signer over other bytes: the signature fails.
fn wrong_signature(op: &SignedOp, k: &SigningKey) -> Value {
    use ed25519_dalek::Signer;
    with_signature(op, b64::encode(&k.sign(b"not this op").to_bytes()))
}

/// §5.3's order between checks and between ops: which error, and which op's index, a
/// verifier reports when several rules are broken.
fn error_order_vectors(k: &Keys) -> Vec<Value> {
    let Keys { k0, k1, k2, evil } = k;
    let g0 = Chain::alice(k, vec![]).ops[0].value.clone();
    let bob = Chain::genesis(k2, k1, "@bob:b.example", &["b.example"]).ops[0]
        .value
        .clone();
    // Two claims, both children of the genesis, each edited and signed again.
    let c = Chain::alice(
        k,
        vec![
            then(claim("@alice:b.example"), k0),
            fork(0, claim("@alice:c.example"), k0),
        ],
    );
    let seq_gap = resigned(&c.ops[1], k0, |o| o["seq"] = json!(2));
    let from_future = resigned(&c.ops[2], k0, |o| o["created_at"] = json!(NOW + 600_000));
    let time_reversed = resigned(&c.ops[1], k0, |o| o["created_at"] = json!(T0 - 1));
    let unknown_prev = resigned(&c.ops[2], k0, |o| {
        o["prev"] = json!(OpHash::of_canonical_bytes(b"nothing").to_string())
    });
    let float = edited(&c.ops[2], |o| o["created_at"] = json!(1.5));
    let mut v = vec![
        invalid_ops(
            "phase1_before_phase2",
            "Phase 1 runs over every op before phase 2 starts: op 1 is from another DID (phase 2) but op 2's float (phase 1) is reported.",
            vec![g0.clone(), bob.clone(), float.clone()],
            "float",
            2,
        ),
        invalid_log(
            "log_too_large_before_parsing",
            "The op count is checked before any op is parsed: 1001 copies of an op with a float are log_too_large.",
            json!({"ops_repeat": {"op": float.clone(), "times": 1001}}),
            "log_too_large",
            None,
        ),
        invalid_ops(
            "phase2_set_checks_before_links",
            "Phase 2 makes two passes: the set checks (wrong_did, from_future, bad_genesis) over every op, then the link checks. Op 1's seq_gap is a link fault, op 2's from_future a set fault: from_future at 2 is reported.",
            vec![g0.clone(), seq_gap.clone(), from_future.clone()],
            "from_future",
            2,
        ),
        invalid_ops(
            "phase2_first_op_first",
            "Within a pass, ops are taken in input order and each op gets every check of the pass: op 1 from the future is reported before op 2 of another DID.",
            vec![g0.clone(), from_future.clone(), bob.clone()],
            "from_future",
            1,
        ),
        invalid_ops(
            "links_first_op_first",
            "The link pass also takes ops in input order, all link checks per op: op 1's time_reversed before op 2's unknown_prev.",
            vec![g0.clone(), time_reversed, unknown_prev],
            "time_reversed",
            1,
        ),
        invalid_ops(
            "repeated_op_first_position",
            "A repeated op is one op, named by its first input position.",
            vec![seq_gap.clone(), g0.clone(), seq_gap.clone()],
            "seq_gap",
            0,
        ),
    ];
    // Phase 3 walks the tree, but reports the failing op first in input order.
    let b = Chain::alice(k, vec![then(claim("@alice:b.example"), evil)]).ops[1].clone();
    let a = after_value(&b.value, claim("@alice:c.example"), evil);
    v.push(invalid_ops(
        "signer_error_first_in_input_order",
        "Ops 1 and 2 both have the wrong signer; op 2 is op 1's parent, so a walk from the genesis meets it first, but the op first in input order (1) is reported.",
        vec![g0.clone(), a.value.clone(), b.value.clone()],
        "wrong_signer",
        1,
    ));
    let good_b = Chain::alice(k, vec![then(claim("@alice:b.example"), k0)]).ops[1].clone();
    let bad_b = wrong_signature(&good_b, k0);
    let a = after_value(&bad_b, claim("@alice:c.example"), k0);
    let bad_a = wrong_signature(&a, k0);
    v.push(invalid_ops(
        "bad_signature_first_in_input_order",
        "Ops 1 and 2 both carry signatures that do not verify; op 2 is op 1's parent; op 1, first in input order, is reported.",
        vec![g0.clone(), bad_a, bad_b.clone()],
        "bad_signature",
        1,
    ));
    let wrong = after_value(&bad_b, claim("@alice:c.example"), evil);
    v.push(invalid_ops(
        "signers_before_signatures",
        "Phase 3 checks every op's signer before any signature: op 2's wrong_signer is reported, not op 1's bad_signature.",
        vec![g0.clone(), bad_b, wrong.value.clone()],
        "wrong_signer",
        2,
    ));
    let three = Chain::alice(
        k,
        vec![
            then(claim("@alice:b.example"), k0),
            fork(0, claim("@alice:c.example"), k0),
            fork(0, claim("@alice:d.example"), k0),
        ],
    );
    let mut hashes: Vec<&SignedOp> = three.ops[1..].iter().collect();
    hashes.sort_by_key(|o| o.hash);
    v.push(equivocation(
        "equivocation_three_way",
        "Three ops with the same prev: the evidence is the two with the smallest hashes.",
        three.values(),
        hashes[0],
        hashes[1],
    ));
    v
}

/// §5.3 phase 1 within one op: which member's fault wins, and how the strict parsers'
/// refusals (§2, §3) map to log classes.
fn op_member_vectors(k: &Keys) -> Vec<Value> {
    let k0 = &k.k0;
    let g = Chain::alice(k, vec![]);
    let g0 = &g.ops[0];
    let commitment = g0.value["next_key"].as_str().unwrap().to_owned();
    let (_, signature) = only_signature(g0);
    let mut weak = [0u8; 32];
    weak[0] = 1;
    let weak_multikey =
        did::encode_multikey(&roam_identity_core::VerifyingKey::from_bytes(&weak).unwrap());
    let upper_did = g0.op.did.as_str().replacen("did:key:", "did:KEY:", 1);
    let one_op: Vec<(&str, &str, Value, &str)> = vec![
        (
            "float_before_size",
            "Strict JSON (step 1) before the size cap (step 2).",
            edited(g0, |o| {
                o["created_at"] = json!(1.5);
                o["padding"] = json!("x".repeat(4200));
            }),
            "float",
        ),
        (
            "size_before_unknown_action",
            "The size cap (step 2) before the action (step 3).",
            edited(g0, |o| {
                o["action"] = json!("transfer");
                o["padding"] = json!("x".repeat(4200));
            }),
            "op_too_large",
        ),
        (
            "unknown_action_before_unknown_field",
            "An unknown action is reported before its members are looked at.",
            edited(g0, |o| {
                o["action"] = json!("transfer");
                o["display_name"] = json!("Alice");
            }),
            "unknown_action",
        ),
        (
            "action_not_a_string",
            "An action that is missing or not a string is malformed (step 3).",
            edited(g0, |o| o["action"] = json!(7)),
            "malformed",
        ),
        (
            "unknown_field_before_encodings",
            "Members allowed (step 3) before their encodings (step 4).",
            edited(g0, |o| {
                o["display_name"] = json!("Alice");
                o["next_key"] = json!(format!("z1{}", &commitment[1..]));
            }),
            "unknown_field",
        ),
        (
            "member_order_did_before_seq",
            "Step 4 takes members in a fixed order (did, seq, prev, created_at, the action's fields in §5.1's order, signatures) and reports the first member at fault: a did:web DID (non_canonical) before a string seq (malformed).",
            edited(g0, |o| {
                o["did"] = json!("did:web:a.example");
                o["seq"] = json!("0");
            }),
            "non_canonical",
        ),
        (
            "member_order_seq_before_next_key",
            "A string seq (malformed) is met before a non-canonical next_key.",
            edited(g0, |o| {
                o["seq"] = json!("0");
                o["next_key"] = json!(format!("z1{}", &commitment[1..]));
            }),
            "malformed",
        ),
        (
            "member_order_servers_before_signature",
            "The action's fields come before the signature: servers that is not an array (malformed) before a padded signature (non_canonical).",
            edited(g0, |o| {
                o["servers"] = json!("a.example");
                o["signatures"][g0.op.did.as_str()]
                    .as_object_mut()
                    .unwrap()
                    .values_mut()
                    .for_each(|s| *s = json!(format!("{signature}==")));
            }),
            "malformed",
        ),
        (
            "did_other_method",
            "Inside an op, a string that §3.3 refuses as a DID is non_canonical, whatever §3.3's own class (here method_not_supported).",
            edited(g0, |o| o["did"] = json!("did:web:a.example")),
            "non_canonical",
        ),
        (
            "did_uppercase_method",
            "The method name is lowercase (§3.3): did:KEY is not a DID (not_a_did), non_canonical inside an op.",
            edited(g0, |o| o["did"] = json!(upper_did)),
            "non_canonical",
        ),
        (
            "did_not_a_string",
            "A member of the wrong JSON type is malformed.",
            edited(g0, |o| o["did"] = json!(5)),
            "malformed",
        ),
        (
            "update_key_weak",
            "A small-order update key (§3.3 weak_key) is non_canonical inside an op.",
            resigned(g0, k0, |o| o["update_key"] = json!(weak_multikey)),
            "non_canonical",
        ),
        (
            "servers_duplicate",
            "servers lists distinct names; a repeat is malformed.",
            resigned(g0, k0, |o| o["servers"] = json!(["a.example", "a.example"])),
            "malformed",
        ),
        (
            "servers_empty",
            "servers names at least one server.",
            resigned(g0, k0, |o| o["servers"] = json!([])),
            "malformed",
        ),
        (
            "servers_invalid_name",
            "Every server is a server name (§3.1); A.example is not (uppercase).",
            resigned(g0, k0, |o| o["servers"] = json!(["A.example"])),
            "malformed",
        ),
        (
            "servers_over_cap_with_duplicate",
            "The cap is checked before the items: eleven servers, one repeated, are too_many.",
            resigned(g0, k0, |o| {
                let mut names = server_names(10);
                names.push("s0.example".into());
                o["servers"] = json!(names);
            }),
            "too_many",
        ),
        (
            "user_id_invalid",
            "user_id must be a user ID (§3.1); a trailing dot in its server name is refused.",
            resigned(g0, k0, |o| o["user_id"] = json!("@alice:a.example.")),
            "malformed",
        ),
    ];
    one_op
        .into_iter()
        .map(|(name, comment, op, class)| invalid_ops(name, comment, vec![op], class, 0))
        .collect()
}

/// An Ed25519 public key encoding that is not a curve point.
fn not_a_point() -> [u8; 32] {
    for y in 2u8..=255 {
        let mut bytes = [0u8; 32];
        bytes[0] = y;
        if roam_identity_core::VerifyingKey::from_bytes(&bytes).is_err() {
            return bytes;
        }
    }
    panic!("no invalid point found")
}

/// `add_device`'s `device_keys` (§5.1): each key is 32 bytes in the one base64 spelling, the
/// ed25519 key a usable public key (§3.3 step 5), the curve25519 key a reduced u-coordinate.
fn device_key_vectors(k: &Keys) -> Vec<Value> {
    let k0 = &k.k0;
    let c = Chain::alice(k, vec![then(device("PHONE", 21), k0)]);
    let op = &c.ops[1];
    let ed = op.value["device_keys"]["ed25519"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut weak = [0u8; 32];
    weak[0] = 1;
    let mut p = [0xffu8; 32];
    p[0] = 0xed;
    p[31] = 0x7f;
    let mut trailing = ed.clone();
    let last = trailing.pop().unwrap();
    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    trailing.push(alphabet.as_bytes()[alphabet.find(last).unwrap() | 1] as char);
    let cases: Vec<(&str, &str, Value, &str)> = vec![
        (
            "device_key_padded",
            "Device keys are unpadded base64 (§2.2).",
            json!({"ed25519": format!("{ed}="), "curve25519": op.value["device_keys"]["curve25519"]}),
            "non_canonical",
        ),
        (
            "device_key_trailing_bits",
            "Non-zero trailing bits are a second spelling (§2.2).",
            json!({"ed25519": trailing, "curve25519": op.value["device_keys"]["curve25519"]}),
            "non_canonical",
        ),
        (
            "device_key_short",
            "A device key is 32 bytes; 31 decode but are refused like any bad encoding.",
            json!({"ed25519": b64::encode(&[7u8; 31]), "curve25519": op.value["device_keys"]["curve25519"]}),
            "non_canonical",
        ),
        (
            "device_key_not_a_point",
            "The ed25519 device key must decode to a curve point (§3.3 invalid_point): non_canonical inside an op.",
            json!({"ed25519": b64::encode(&not_a_point()), "curve25519": op.value["device_keys"]["curve25519"]}),
            "non_canonical",
        ),
        (
            "device_key_weak",
            "A small-order ed25519 device key (§3.3 weak_key) is refused.",
            json!({"ed25519": b64::encode(&weak), "curve25519": op.value["device_keys"]["curve25519"]}),
            "non_canonical",
        ),
        (
            "device_curve25519_unreduced",
            "A curve25519 key at or above 2^255 - 19 is a second spelling of a reduced one.",
            json!({"ed25519": ed, "curve25519": b64::encode(&p)}),
            "non_canonical",
        ),
        (
            "device_keys_extra_member",
            "device_keys holds ed25519 and curve25519 only; another member is unknown_field.",
            json!({"ed25519": ed, "curve25519": op.value["device_keys"]["curve25519"], "x448": "AAAA"}),
            "unknown_field",
        ),
        (
            "device_keys_missing_member",
            "Both keys are required; a missing one is malformed.",
            json!({"ed25519": ed}),
            "malformed",
        ),
    ];
    cases
        .into_iter()
        .map(|(name, comment, keys, class)| {
            let bad = resigned(op, k0, |o| o["device_keys"] = keys);
            invalid_ops(name, comment, vec![c.ops[0].value.clone(), bad], class, 1)
        })
        .collect()
}

fn hex32(b: u8) -> String {
    format!("{b:02x}").repeat(32)
}

fn canonical_text(v: &Value) -> String {
    roam_identity_core::canonical::to_canonical_string(v).unwrap()
}

/// A homeserver of the bundle vectors: its name and signing key.
struct Server {
    name: ServerName,
    key: ServerSigningKey,
}

fn server(seed: u8, name: &str) -> Server {
    Server {
        name: sn(name),
        key: ServerSigningKey {
            key_id: KeyId::ed25519("a_1").unwrap(),
            key: key(seed),
        },
    }
}

fn keys_doc(s: &Server) -> Value {
    server_keys::build(&s.name, &s.key, &BTreeMap::new(), NOW + 86_400_000).unwrap()
}

/// `s` attests that it binds `user` to the DID of `head` and hosts it, from `issued_at`
/// until `valid_until`.
fn attest(s: &Server, user: &str, head: &SignedOp, (issued_at, valid_until): (u64, u64)) -> Value {
    Attestation {
        server_name: s.name.clone(),
        user_id: Some(uid(user)),
        did: head.op.did.clone(),
        head: head.hash,
        hosting: true,
        issued_at,
        valid_until,
    }
    .sign(&s.key)
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
    let a = server(11, "a.example");
    let b = server(12, "b.example");
    let mut c = Chain::genesis(&k0, &k1, "@alice:a.example", &["a.example"]);
    c.push(claim("@alice:b.example"), &k0);
    c.push(mv(&["a.example", "b.example"]), &k0);
    let did = c.ops[0].op.did.clone();
    let head = c.ops[2].clone();
    let day = 86_400_000;
    let current = (NOW - day, NOW + day);
    let att_a = attest(&a, "@alice:a.example", &head, current);
    let att_b = attest(&b, "@alice:b.example", &head, current);
    let att_b_old = attest(
        &b,
        "@alice:b.example",
        &head,
        (NOW - 10 * day, NOW - 9 * day),
    );
    let att_b_for_a = attest(&b, "@alice:a.example", &head, current);
    let doc_a = keys_doc(&a);
    let doc_b = keys_doc(&b);
    let mut v = Vec::new();
    let exp = |bound: &[&str], expired: &[&str], missing: &[&str], hosting: &[&str]| json!({"head": head.hash.to_string(), "deactivated": false, "bound": bound, "expired": expired, "unattested": missing, "hosting": hosting});
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
    let att_other = attest(&a, "@bob:a.example", &other.ops[0], current);
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
    v.extend(bundle_decision_vectors(&c, &a, &b));
    json!({
        "description": "Bundle verification vectors: the log, key documents and attestations must all verify; a user ID is bound only when the log claims it and its own domain attests the DID. Expected: `head` is the log's head hash, `deactivated` the account state's flag, `bound` are current two-way bindings, `expired` are claimed IDs whose latest attestation has expired, `unattested` are claimed IDs with none, `hosting` are servers with a current hosting attestation.",
        "generator": GENERATOR,
        "now": NOW,
        "vectors": v,
    })
}

/// The cases §8 and §9 decide beyond the basics: several attestations, window edges, a head
/// not in the log, hosting versus binding, deactivation, required members, caps, duplicate
/// key documents and the order of checks.
fn bundle_decision_vectors(c: &Chain, a: &Server, b: &Server) -> Vec<Value> {
    let k0 = key(1);
    let did = c.ops[0].op.did.clone();
    let head = c.ops[2].clone();
    let day = 86_400_000;
    let current = (NOW - day, NOW + day);
    let att = |s: &Server, user: Option<&str>, hosting: bool, head: OpHash, window: (u64, u64)| {
        Attestation {
            server_name: s.name.clone(),
            user_id: user.map(uid),
            did: did.clone(),
            head,
            hosting,
            issued_at: window.0,
            valid_until: window.1,
        }
        .sign(&s.key)
        .unwrap()
    };
    let att_a = att(a, Some("@alice:a.example"), true, head.hash, current);
    let att_b = att(b, Some("@alice:b.example"), true, head.hash, current);
    let att_b_old = att(
        b,
        Some("@alice:b.example"),
        true,
        head.hash,
        (NOW - 10 * day, NOW - 9 * day),
    );
    let (doc_a, doc_b) = (keys_doc(a), keys_doc(b));
    let bundle =
        |log: Vec<Value>, atts: Vec<Value>, docs: Vec<Value>| bundle_value(&did, log, atts, docs);
    let exp = |head: &SignedOp,
               deactivated: bool,
               bound: &[&str],
               expired: &[&str],
               missing: &[&str],
               hosting: &[&str]| {
        json!({"head": head.hash.to_string(), "deactivated": deactivated, "bound": bound, "expired": expired, "unattested": missing, "hosting": hosting})
    };
    let valid = |name: &str, comment: &str, input: Value, expected: Value| json!({"name": name, "comment": comment, "valid": true, "input": input, "expected": expected});
    let invalid = |name: &str, comment: &str, input: Value, class: &str| json!({"name": name, "comment": comment, "valid": false, "input": input, "error": {"class": class}});
    // The answer when a.example's attestation binds @alice:a.example; `hosting` host.
    let bound_at_a = |hosting: &[&str]| {
        exp(
            &head,
            false,
            &["@alice:a.example"],
            &[],
            &["@alice:b.example"],
            hosting,
        )
    };
    // The answer when no user ID is bound; `hosting` host the account.
    let nothing_bound = |hosting: &[&str]| {
        exp(
            &head,
            false,
            &[],
            &[],
            &["@alice:a.example", "@alice:b.example"],
            hosting,
        )
    };
    // The chain with one attestation of @alice:a.example by a.example, and a.example's keys.
    let attested_by_a = |head: OpHash, hosting: bool, window: (u64, u64)| {
        bundle(
            c.values(),
            vec![att(a, Some("@alice:a.example"), hosting, head, window)],
            vec![doc_a.clone()],
        )
    };
    let usual = || bundle(c.values(), vec![att_a.clone()], vec![doc_a.clone()]);
    let mut deactivated = Chain::genesis(&k0, &key(2), "@alice:a.example", &["a.example"]);
    deactivated.push(claim("@alice:b.example"), &k0);
    deactivated.push(mv(&["a.example", "b.example"]), &k0);
    deactivated.push(Action::Deactivate, &k0);
    let d_head = deactivated.ops[3].clone();
    let mut no_fetched_at = usual();
    no_fetched_at.as_object_mut().unwrap().remove("fetched_at");
    let mut no_source = usual();
    no_source.as_object_mut().unwrap().remove("source");
    let mut source_number = usual();
    source_number["source"] = json!(7);
    let mut extra_member = usual();
    extra_member["note"] = json!("bundles are not signed; other members are ignored");
    let mut wrong_type = usual();
    wrong_type["type"] = json!("roam.attestation");
    let mut tampered_att = att_a.clone();
    tampered_att["valid_until"] = json!(NOW + 2 * day);
    let mut bad_log = c.values();
    bad_log[2]["servers"] = json!(["evil.example"]);
    let mut bad_doc = doc_a.clone();
    bad_doc["valid_until_ts"] = json!(NOW + 400 * day);
    let other = Chain::genesis(&key(3), &key(2), "@bob:a.example", &["a.example"]);
    let foreign = Attestation {
        server_name: a.name.clone(),
        user_id: Some(uid("@bob:a.example")),
        did: other.ops[0].op.did.clone(),
        head: other.ops[0].hash,
        hosting: true,
        issued_at: current.0,
        valid_until: current.1,
    }
    .sign(&a.key)
    .unwrap();
    let a_second_key = Server {
        name: a.name.clone(),
        key: ServerSigningKey {
            key_id: KeyId::ed25519("a_2").unwrap(),
            key: key(13),
        },
    };
    let att_a_by_second = att(
        &a_second_key,
        Some("@alice:a.example"),
        true,
        head.hash,
        current,
    );
    let mut bad_fetched_and_log = bundle(bad_log.clone(), vec![att_a.clone()], vec![doc_a.clone()]);
    bad_fetched_and_log["fetched_at"] = json!("yesterday");
    vec![
        valid(
            "expired_and_current",
            "Several attestations for one user ID: one current attestation makes it bound, whatever expired ones there are.",
            bundle(
                c.values(),
                vec![att_a.clone(), att_b_old.clone(), att_b.clone()],
                vec![doc_a.clone(), doc_b.clone()],
            ),
            exp(
                &head,
                false,
                &["@alice:a.example", "@alice:b.example"],
                &[],
                &[],
                &["a.example", "b.example"],
            ),
        ),
        valid(
            "valid_until_is_now",
            "now == valid_until is inside the window: bound.",
            attested_by_a(head.hash, true, (NOW - day, NOW)),
            bound_at_a(&["a.example"]),
        ),
        valid(
            "head_not_in_log",
            "An attestation's head need not be an op of the bundle's log (the server may have held an op the sender did not): it is what the server saw, not a condition.",
            attested_by_a(OpHash::of_canonical_bytes(b"elsewhere"), true, current),
            bound_at_a(&["a.example"]),
        ),
        valid(
            "binding_without_hosting",
            "hosting: false still binds the user ID; the server just does not host the account.",
            attested_by_a(head.hash, false, current),
            bound_at_a(&[]),
        ),
        valid(
            "hosting_only_attestation",
            "An attestation without user_id says hosting only; it binds nothing.",
            bundle(
                c.values(),
                vec![att(b, None, true, head.hash, current)],
                vec![doc_b.clone()],
            ),
            nothing_bound(&["b.example"]),
        ),
        valid(
            "hosting_by_server_not_in_list",
            "Hosting counts only for servers in the log's list; an attestation by another server is verified but hosts nothing.",
            bundle(
                c.values(),
                vec![att(
                    &server(15, "c.example"),
                    None,
                    true,
                    head.hash,
                    current,
                )],
                vec![keys_doc(&server(15, "c.example"))],
            ),
            nothing_bound(&[]),
        ),
        valid(
            "deactivated_account",
            "A deactivated account's bindings and hosting are computed as for any account; the answer carries deactivated: true.",
            bundle(
                deactivated.values(),
                vec![att(a, Some("@alice:a.example"), true, d_head.hash, current)],
                vec![doc_a.clone()],
            ),
            exp(
                &d_head,
                true,
                &["@alice:a.example"],
                &[],
                &["@alice:b.example"],
                &["a.example"],
            ),
        ),
        valid(
            "source_optional",
            "source is optional.",
            no_source,
            bound_at_a(&["a.example"]),
        ),
        valid(
            "unknown_member_ignored",
            "A bundle is an unsigned container: members other than §8's are ignored.",
            extra_member,
            bound_at_a(&["a.example"]),
        ),
        invalid(
            "fetched_at_required",
            "fetched_at is required.",
            no_fetched_at,
            "malformed",
        ),
        invalid(
            "source_not_a_string",
            "source, when present, is a string.",
            source_number,
            "malformed",
        ),
        invalid(
            "wrong_type",
            "type is roam.bundle.",
            wrong_type,
            "malformed",
        ),
        invalid(
            "too_many_attestations",
            "At most 64 attestations: 65 are too_many.",
            bundle(c.values(), vec![att_a.clone(); 65], vec![doc_a.clone()]),
            "too_many",
        ),
        invalid(
            "too_many_key_documents",
            "At most 64 key documents: 65 are too_many.",
            bundle(c.values(), vec![att_a.clone()], vec![doc_a.clone(); 65]),
            "too_many",
        ),
        invalid(
            "two_key_documents_for_one_server",
            "At most one key document per server (both valid here): otherwise their order would decide which keys count.",
            bundle(
                c.values(),
                vec![att_a.clone()],
                vec![doc_a.clone(), keys_doc(&a_second_key)],
            ),
            "server_keys",
        ),
        invalid(
            "key_document_of_other_key",
            "The attestation is signed by a_2 but the one key document of a.example lists only a_1.",
            bundle(c.values(), vec![att_a_by_second], vec![doc_a.clone()]),
            "attestation",
        ),
        invalid(
            "shape_before_log",
            "The bundle's own members are checked before the log: a bad fetched_at wins over a bad log.",
            bad_fetched_and_log,
            "malformed",
        ),
        invalid(
            "log_before_attestations",
            "The log is checked before key documents and attestations.",
            bundle(
                bad_log.clone(),
                vec![tampered_att.clone()],
                vec![bad_doc.clone()],
            ),
            "bad_signature",
        ),
        invalid(
            "key_documents_before_attestations",
            "Key documents are checked before attestations.",
            bundle(c.values(), vec![foreign.clone()], vec![bad_doc.clone()]),
            "server_keys",
        ),
        invalid(
            "foreign_before_missing_keys",
            "Per attestation: parsed, then about this DID, then its server's keys carried, then verified.",
            bundle(c.values(), vec![foreign], vec![]),
            "foreign_attestation",
        ),
    ]
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
            "uppercase_scheme",
            format!("DID:key:{}", &good[8..]),
            "not_a_did",
        ),
        (
            "method_with_digit",
            "did:key2:z6Mk".into(),
            "method_not_supported",
        ),
        ("empty_method", format!("did::{}", &good[8..]), "not_a_did"),
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
    let depth = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
    let max_depth = depth(64);
    let too_deep = depth(65);
    let deep_after_duplicate = format!("{{\"a\":1,\"a\":{}}}", depth(100));
    // (name, comment, input, outcome): the cases §2.1 decides beyond the table.
    let decided: Vec<(&str, &str, &str, Result<&str, &str>)> = vec![
        (
            "negative_zero_integer",
            "-0 is negative zero, not the integer 0: refused as float.",
            "{\"n\":-0}",
            Err("float"),
        ),
        ("zero", "0 is an integer.", "{\"n\":0}", Ok("{\"n\":0}")),
        (
            "huge_integer",
            "An integer token too large for 64 bits is still an integer: integer_range, not float.",
            "{\"n\":123456789012345678901234567890}",
            Err("integer_range"),
        ),
        (
            "huge_negative_integer",
            "Likewise below -(2^63).",
            "{\"n\":-123456789012345678901234567890}",
            Err("integer_range"),
        ),
        (
            "exponent_overflow",
            "An exponent too large for a double is a float like any exponent.",
            "{\"n\":1E400}",
            Err("float"),
        ),
        (
            "lone_high_surrogate",
            "A \\u escape of a lone high surrogate is not a Unicode scalar value: malformed.",
            "{\"s\":\"\\ud800\"}",
            Err("malformed"),
        ),
        (
            "lone_low_surrogate",
            "A lone low surrogate likewise.",
            "{\"s\":\"\\udc00x\"}",
            Err("malformed"),
        ),
        (
            "surrogate_pair",
            "A surrogate pair escape is one code point, written as itself.",
            "{\"s\":\"\\ud83d\\ude00\"}",
            Ok("{\"s\":\"\u{1F600}\"}"),
        ),
        (
            "byte_order_mark",
            "A leading byte order mark is not JSON whitespace: malformed.",
            "\u{FEFF}{}",
            Err("malformed"),
        ),
        (
            "max_depth",
            "64 nested arrays or objects are allowed.",
            &max_depth,
            Ok(&max_depth),
        ),
        (
            "too_deep",
            "65 nested arrays or objects are malformed.",
            &too_deep,
            Err("malformed"),
        ),
        (
            "duplicate_before_syntax_error",
            "The first fault in text order wins: a duplicate key, then a truncated text.",
            "{\"a\":1,\"a\":2,",
            Err("duplicate_key"),
        ),
        (
            "duplicate_before_float",
            "A duplicate key is met when its key is read, before its value.",
            "{\"a\":1,\"a\":1.5}",
            Err("duplicate_key"),
        ),
        (
            "float_before_duplicate",
            "A float met before the duplicate key wins.",
            "{\"a\":1.5,\"a\":1}",
            Err("float"),
        ),
        (
            "duplicate_before_trailing_data",
            "Trailing data is only met once the value is complete.",
            "{\"a\":1,\"a\":2} x",
            Err("duplicate_key"),
        ),
        (
            "duplicate_before_depth",
            "Depth is met at the opening bracket, after the duplicate key before it.",
            &deep_after_duplicate,
            Err("duplicate_key"),
        ),
        (
            "integer_range_before_float",
            "Numbers are judged in text order.",
            "[9007199254740992,1.5]",
            Err("integer_range"),
        ),
    ];
    let v: Vec<Value> = cases
        .into_iter()
        .map(|(name, input, r)| match r {
            Ok(out) => (name, "Parsed strictly and re-encoded canonically.", input, Ok(out)),
            Err(class) => (name, "Refused by the strict parser for Roam objects.", input, Err(class)),
        })
        .chain(decided)
        .map(|(name, comment, input, r)| match r {
            Ok(out) => json!({"name": name, "comment": comment, "valid": true, "input": input, "expected": out}),
            Err(class) => json!({"name": name, "comment": comment, "valid": false, "input": input, "error": {"class": class}}),
        })
        .collect();
    json!({"description": "Strict JSON parsing and canonical encoding for Roam's own signed objects.", "generator": GENERATOR, "vectors": v})
}

/// §3.1's server names: what is accepted, and what each refusal is.
pub fn server_name_vectors() -> Value {
    let label63 = format!("{}.example", "a".repeat(63));
    let label64 = format!("{}.example", "a".repeat(64));
    // 255 bytes exactly, then one more.
    let long_ok = format!(
        "{}.example{}",
        vec!["a".repeat(63); 3].join("."),
        ".a".repeat(28)
    );
    let too_long = format!("{long_ok}a");
    assert_eq!((long_ok.len(), too_long.len()), (255, 256));
    let valid: Vec<(&str, &str)> = vec![
        ("a.example", "A DNS name."),
        ("a.example:8448", "With a port."),
        ("localhost", "One label is a DNS name too."),
        ("a-b.c-d.example", "Hyphens inside labels."),
        ("1.example", "A numeric label is fine anywhere but last."),
        (
            "x.1a",
            "A last label that is not all digits does not end in a number.",
        ),
        ("x.0x1g", "Not hex after 0x: not a number."),
        ("1.2.3.4", "A dotted-quad IPv4 address."),
        ("1.2.3.4:80", "IPv4 with a port."),
        ("[::1]", "An IPv6 literal in its canonical text."),
        ("[2001:db8::1]:8448", "IPv6 with a port."),
        (
            "[::ffff:102:304]",
            "An IPv4-mapped address in the URL serialisation (no dotted part).",
        ),
        ("[1:0:0:1::1]", "The longest zero run is compressed."),
        ("a.example:65535", "The largest port."),
        (&label63, "A label of 63 bytes."),
        (&long_ok, "255 bytes, the most a server name may have."),
    ];
    let invalid: Vec<(&str, &str, &str)> = vec![
        ("", "empty", "Empty."),
        (&too_long, "too_long", "More than 255 bytes in total."),
        (
            "a.example.",
            "invalid_host",
            "A trailing dot is an empty label; a.example. and a.example would be two names for one host.",
        ),
        ("a..example", "invalid_host", "An empty label."),
        (".a.example", "invalid_host", "Starts with a dot."),
        ("-a.example", "invalid_host", "Starts with a hyphen."),
        (
            "A.example",
            "invalid_host",
            "DNS names are lowercase: one spelling per host (the URL layer lowercases).",
        ),
        (
            "a_b.example",
            "invalid_host",
            "Underscore is not in the grammar.",
        ),
        (&label64, "invalid_host", "A label longer than 63 bytes."),
        (
            "xn--nxasmq6b.example",
            "invalid_host",
            "IDNA A-labels are refused: checking them needs tables the core does not carry.",
        ),
        (
            "x.1",
            "invalid_host",
            "The last label is all digits: a URL parser reads the host as IPv4 and fails.",
        ),
        (
            "x.0x10",
            "invalid_host",
            "The last label is 0x and hex digits: read as IPv4 by a URL parser.",
        ),
        ("x.0x", "invalid_host", "0x alone ends in a number too."),
        (
            "1.2.3",
            "invalid_host",
            "Ends in a number but is not a dotted quad (a URL parser would read 1.2.0.3).",
        ),
        (
            "01.2.3.4",
            "invalid_host",
            "Leading zeros (octal to a URL parser).",
        ),
        (
            "0x7f.0.0.1",
            "invalid_host",
            "Hex IPv4 parts (127.0.0.1 to a URL parser).",
        ),
        ("1.2.3.256", "invalid_host", "An IPv4 part above 255."),
        (
            "[2001:DB8::1]",
            "invalid_host",
            "IPv6 hex digits are lowercase.",
        ),
        (
            "[2001:db8:0:0:0:0:0:1]",
            "invalid_host",
            "IPv6 zero runs are compressed.",
        ),
        (
            "[::ffff:1.2.3.4]",
            "invalid_host",
            "No embedded dotted IPv4 in IPv6 literals.",
        ),
        (
            "[fe80::1%eth0]",
            "invalid_host",
            "Zone IDs are local to one machine; refused.",
        ),
        (
            "[fe80::1%25eth0]",
            "invalid_host",
            "Percent-encoded zone IDs likewise.",
        ),
        ("[::1", "invalid_host", "Unclosed bracket."),
        ("::1", "invalid_host", "IPv6 without brackets."),
        ("a.example:", "invalid_port", "An empty port."),
        ("a.example:0", "invalid_port", "Port 0."),
        ("a.example:65536", "invalid_port", "Above 65535."),
        (
            "a.example:08448",
            "invalid_port",
            "A leading zero: one spelling per port.",
        ),
        ("a.example:+80", "invalid_port", "Digits only."),
        (
            "a_b:0",
            "invalid_port",
            "The port is checked before the host.",
        ),
    ];
    let mut v: Vec<Value> = valid
        .into_iter()
        .map(|(input, comment)| {
            let n = sn(input);
            let name = if input.len() > 40 { format!("valid_long_{}", input.len()) } else { format!("valid_{input}") };
            json!({"name": name, "comment": comment, "valid": true, "input": input,
                   "expected": {"host": n.host(), "port": n.port(), "ip_literal": n.is_ip_literal()}})
        })
        .collect();
    v.extend(invalid.into_iter().map(|(input, class, comment)| {
        let name = match input.len() {
            0 => "invalid_empty".to_owned(),
            41.. => format!("invalid_long_{}", input.len()),
            _ => format!("invalid_{input}"),
        };
        json!({"name": name, "comment": comment, "valid": false, "input": input, "error": {"class": class}})
    }));
    json!({
        "description": "Server names (spec/protocol.md §3.1). Input is the text; a valid name gives its host (IPv6 with brackets), its explicit port or null, and whether the host is an IP literal. Every valid name is a host a WHATWG URL parser accepts in https://NAME/ and serialises back unchanged.",
        "generator": GENERATOR,
        "vectors": v,
    })
}

/// A key document of `name` with `body`'s members, signed by each of `signers`
/// (key ID, key) in turn.
fn signed_doc(name: &str, mut body: Value, signers: &[(&str, &SigningKey)]) -> Value {
    for (kid, k) in signers {
        signed::sign(&mut body, name, &KeyId::parse(kid).unwrap(), k).unwrap();
    }
    body
}

fn b64_key(k: &SigningKey) -> String {
    b64::encode(k.verifying_key().as_bytes())
}

/// `v` with a.example's `ed25519:a_1` signature padded with `==`.
fn pad_signature(mut v: Value) -> Value {
    let sig = &mut v["signatures"]["a.example"]["ed25519:a_1"];
    *sig = json!(format!("{}==", sig.as_str().unwrap()));
    v
}

/// A well-encoded signature that does not verify.
fn junk_signature() -> String {
    use ed25519_dalek::Signer;
    b64::encode(&key(99).sign(b"junk").to_bytes())
}

/// §6's key documents. Input: the server the document is expected from and the document.
pub fn key_document_vectors() -> Value {
    let (k1, k2, old) = (key(11), key(13), key(14));
    let until = NOW + 86_400_000;
    let base = |extra: Value| {
        let mut d = json!({"server_name": "a.example",
            "verify_keys": {"ed25519:a_1": {"key": b64_key(&k1)}},
            "valid_until_ts": until});
        for (m, x) in extra.as_object().unwrap() {
            d[m] = x.clone();
        }
        d
    };
    let one = |extra: Value| signed_doc("a.example", base(extra), &[("ed25519:a_1", &k1)]);
    let two_keys = json!({"verify_keys": {"ed25519:a_1": {"key": b64_key(&k1)}, "ed25519:a_2": {"key": b64_key(&k2)}}});
    let expect = |keys: &[(&str, &SigningKey)], olds: Value, until: u64| {
        let vk: serde_json::Map<String, Value> = keys
            .iter()
            .map(|(id, k)| (id.to_string(), json!(b64_key(k))))
            .collect();
        json!({"verify_keys": vk, "old_verify_keys": olds, "valid_until_ts": until})
    };
    let mut tampered = one(json!({}));
    tampered["valid_until_ts"] = json!(until + 1);
    let mut one_bad = signed_doc(
        "a.example",
        base(two_keys.clone()),
        &[("ed25519:a_1", &k1), ("ed25519:a_2", &k2)],
    );
    one_bad["signatures"]["a.example"]["ed25519:a_2"] = json!(junk_signature());
    let mut extra_sig = one(json!({}));
    extra_sig["signatures"]["a.example"]["ed25519:zz"] = json!(junk_signature());
    let mut weak = [0u8; 32];
    weak[0] = 1;
    let old_entry = json!({"ed25519:old": {"key": b64_key(&old), "expired_ts": NOW - 1000}});
    let valid: Vec<(&str, &str, Value, Value)> = vec![
        (
            "one_key",
            "One current key, signing its document.",
            one(json!({})),
            expect(&[("ed25519:a_1", &k1)], json!({}), until),
        ),
        (
            "two_keys",
            "Every current key signs.",
            signed_doc(
                "a.example",
                base(two_keys.clone()),
                &[("ed25519:a_1", &k1), ("ed25519:a_2", &k2)],
            ),
            expect(
                &[("ed25519:a_1", &k1), ("ed25519:a_2", &k2)],
                json!({}),
                until,
            ),
        ),
        (
            "old_keys",
            "Old keys are listed with their expired_ts and do not sign.",
            one(json!({"old_verify_keys": old_entry})),
            expect(
                &[("ed25519:a_1", &k1)],
                json!({"ed25519:old": {"key": b64_key(&old), "expired_ts": NOW - 1000}}),
                until,
            ),
        ),
        (
            "empty_old_keys",
            "old_verify_keys is optional; an empty object is the same as none.",
            one(json!({"old_verify_keys": {}})),
            expect(&[("ed25519:a_1", &k1)], json!({}), until),
        ),
        (
            "other_algorithm_ignored",
            "Keys of other algorithms are ignored: neither checked nor trusted.",
            one(
                json!({"verify_keys": {"ed25519:a_1": {"key": b64_key(&k1)}, "curve25519:x": {"key": "not even base64!"}}}),
            ),
            expect(&[("ed25519:a_1", &k1)], json!({}), until),
        ),
        (
            "unknown_member_signed",
            "Key documents are a Matrix format: other members are allowed (they are signed like the rest).",
            one(json!({"m.extra": "x"})),
            expect(&[("ed25519:a_1", &k1)], json!({}), until),
        ),
        (
            "past_valid_until",
            "A document past its valid_until_ts still verifies (it should be refetched online).",
            signed_doc(
                "a.example",
                base(json!({"valid_until_ts": NOW - 86_400_000})),
                &[("ed25519:a_1", &k1)],
            ),
            expect(&[("ed25519:a_1", &k1)], json!({}), NOW - 86_400_000),
        ),
        (
            "signature_by_unlisted_key_ignored",
            "A signature under a key ID the document does not list is ignored.",
            extra_sig,
            expect(&[("ed25519:a_1", &k1)], json!({}), until),
        ),
    ];
    let invalid: Vec<(&str, &str, &str, Value, &str)> = vec![
        (
            "wrong_server",
            "The document names another server than the one it was fetched for.",
            "b.example",
            one(json!({})),
            "wrong_server",
        ),
        (
            "missing_server_name",
            "server_name is required.",
            "a.example",
            {
                let mut d = one(json!({}));
                d.as_object_mut().unwrap().remove("server_name");
                d
            },
            "malformed",
        ),
        (
            "missing_valid_until_ts",
            "valid_until_ts is required.",
            "a.example",
            {
                let mut d = base(json!({}));
                d.as_object_mut().unwrap().remove("valid_until_ts");
                signed_doc("a.example", d, &[("ed25519:a_1", &k1)])
            },
            "malformed",
        ),
        (
            "missing_verify_keys",
            "verify_keys is required.",
            "a.example",
            {
                let mut d = base(json!({}));
                d.as_object_mut().unwrap().remove("verify_keys");
                signed_doc("a.example", d, &[("ed25519:a_1", &k1)])
            },
            "malformed",
        ),
        (
            "empty_verify_keys",
            "A document without a current ed25519 key verifies nothing.",
            "a.example",
            one(json!({"verify_keys": {}})),
            "no_keys",
        ),
        (
            "only_other_algorithms",
            "Keys of other algorithms do not count.",
            "a.example",
            one(json!({"verify_keys": {"curve25519:x": {"key": b64_key(&k1)}}})),
            "no_keys",
        ),
        (
            "key_not_signing",
            "Every current key must sign the document.",
            "a.example",
            signed_doc("a.example", base(two_keys.clone()), &[("ed25519:a_1", &k1)]),
            "missing_signature",
        ),
        (
            "one_bad_signature",
            "One signature that does not verify refuses the document, whatever the others.",
            "a.example",
            one_bad,
            "bad_signature",
        ),
        (
            "tampered",
            "A member changed after signing.",
            "a.example",
            tampered,
            "bad_signature",
        ),
        (
            "unsigned",
            "No signatures at all.",
            "a.example",
            base(json!({})),
            "missing_signature",
        ),
        (
            "padded_key",
            "Keys are unpadded base64.",
            "a.example",
            one(json!({"verify_keys": {"ed25519:a_1": {"key": format!("{}=", b64_key(&k1))}}})),
            "malformed",
        ),
        (
            "weak_key",
            "A small-order key is refused.",
            "a.example",
            one(json!({"verify_keys": {"ed25519:a_1": {"key": b64::encode(&weak)}}})),
            "malformed",
        ),
        (
            "old_key_without_expired_ts",
            "An old key needs its expired_ts.",
            "a.example",
            one(json!({"old_verify_keys": {"ed25519:old": {"key": b64_key(&old)}}})),
            "malformed",
        ),
        (
            "old_verify_keys_not_object",
            "old_verify_keys, when present, is an object.",
            "a.example",
            one(json!({"old_verify_keys": []})),
            "malformed",
        ),
        (
            "float_member",
            "Numbers anywhere in the document are safe integers (§2.1); a float is malformed, checked first.",
            "a.example",
            {
                let mut d = one(json!({}));
                d["m.extra"] = json!(1.5);
                d
            },
            "malformed",
        ),
        (
            "padded_signature",
            "Signatures are unpadded base64 (§2.2).",
            "a.example",
            pad_signature(one(json!({}))),
            "non_canonical",
        ),
    ];
    let mut v: Vec<Value> = valid
        .into_iter()
        .map(|(name, comment, doc, exp)| json!({"name": name, "comment": comment, "valid": true, "input": {"server_name": "a.example", "document": doc}, "expected": exp}))
        .collect();
    v.extend(invalid.into_iter().map(|(name, comment, server, doc, class)| {
        json!({"name": name, "comment": comment, "valid": false, "input": {"server_name": server, "document": doc}, "error": {"class": class}})
    }));
    json!({
        "description": "Server key documents (spec/protocol.md §6). Input: `server_name`, the server the document is expected from, and `document`. A valid document gives its current ed25519 keys (key ID to base64), its old keys (key ID to {key, expired_ts}) and valid_until_ts; an invalid one the error class.",
        "generator": GENERATOR,
        "now": NOW,
        "vectors": v,
    })
}

/// §7's attestations, each checked with the key document that comes with it.
pub fn attestation_vectors() -> Value {
    let a = server(11, "a.example");
    let b = server(12, "b.example");
    let k2 = key(13);
    let old = key(14);
    let c = Chain::genesis(&key(1), &key(2), "@alice:a.example", &["a.example"]);
    let head = &c.ops[0];
    let day = 86_400_000;
    let mut olds = BTreeMap::new();
    olds.insert(
        KeyId::ed25519("old").unwrap(),
        roam_identity_core::server_keys::OldKey {
            key: old.verifying_key(),
            expired_ts: NOW - 5 * day,
        },
    );
    let doc_a = server_keys::build(&a.name, &a.key, &olds, NOW + day).unwrap();
    let doc_a2 = signed_doc(
        "a.example",
        json!({"server_name": "a.example",
        "verify_keys": {"ed25519:a_1": {"key": b64_key(&a.key.key)}, "ed25519:a_2": {"key": b64_key(&k2)}},
        "valid_until_ts": NOW + day}),
        &[("ed25519:a_1", &a.key.key), ("ed25519:a_2", &k2)],
    );
    let doc_b = keys_doc(&b);
    let body =
        |user: Option<&str>, hosting: bool, (issued_at, valid_until): (u64, u64)| Attestation {
            server_name: a.name.clone(),
            user_id: user.map(uid),
            did: head.op.did.clone(),
            head: head.hash,
            hosting,
            issued_at,
            valid_until,
        };
    let by_a = |att: Attestation| att.sign(&a.key).unwrap();
    let current = (NOW - day, NOW + day);
    let std = || body(Some("@alice:a.example"), true, current);
    let expect = |att: &Attestation, current: bool| {
        json!({
        "server_name": att.server_name.as_str(), "user_id": att.user_id.as_ref().map(UserId::as_str),
        "did": att.did.as_str(), "head": att.head.to_string(), "hosting": att.hosting,
        "issued_at": att.issued_at, "valid_until": att.valid_until, "current": current})
    };
    let edited_att = |edit: &dyn Fn(&mut Value)| {
        let mut v = std().to_value();
        edit(&mut v);
        signed::sign(&mut v, "a.example", &a.key.key_id, &a.key.key).unwrap();
        v
    };
    let mut two_sigs = std().to_value();
    signed::sign(
        &mut two_sigs,
        "a.example",
        &KeyId::ed25519("a_1").unwrap(),
        &a.key.key,
    )
    .unwrap();
    signed::sign(
        &mut two_sigs,
        "a.example",
        &KeyId::ed25519("a_2").unwrap(),
        &k2,
    )
    .unwrap();
    let mut one_bad = two_sigs.clone();
    one_bad["signatures"]["a.example"]["ed25519:a_2"] = json!(junk_signature());
    let mut unlisted = by_a(std());
    unlisted["signatures"]["a.example"]["ed25519:zz"] = json!(junk_signature());
    let by_old = |issued_at: u64| {
        let mut v = body(Some("@alice:a.example"), true, (issued_at, issued_at + day)).to_value();
        signed::sign(&mut v, "a.example", &KeyId::ed25519("old").unwrap(), &old).unwrap();
        v
    };
    let mut tampered = by_a(std());
    tampered["hosting"] = json!(false);
    let mut unsigned_member = by_a(std());
    unsigned_member["unsigned"] = json!({"age": 5});
    let mut bad_doc = doc_a.clone();
    bad_doc["valid_until_ts"] = json!(NOW + 2 * day);
    let max = 30 * day;
    // (name, comment, attestation, key document, expected or error class).
    type Case<'a> = (&'a str, &'a str, Value, Value, Result<Value, &'a str>);
    let cases: Vec<Case> = vec![
        (
            "current",
            "Binds @alice:a.example and hosts; now is inside the window.",
            by_a(std()),
            doc_a.clone(),
            Ok(expect(&std(), true)),
        ),
        (
            "hosting_only",
            "user_id is optional: a hosting-only statement.",
            by_a(body(None, true, current)),
            doc_a.clone(),
            Ok(expect(&body(None, true, current), true)),
        ),
        (
            "not_hosting",
            "hosting is false: the server binds the user ID but does not serve the account.",
            by_a(body(Some("@alice:a.example"), false, current)),
            doc_a.clone(),
            Ok(expect(
                &body(Some("@alice:a.example"), false, current),
                true,
            )),
        ),
        (
            "now_is_valid_until",
            "The window includes valid_until: issued_at <= now <= valid_until.",
            by_a(body(Some("@alice:a.example"), true, (NOW - day, NOW))),
            doc_a.clone(),
            Ok(expect(
                &body(Some("@alice:a.example"), true, (NOW - day, NOW)),
                true,
            )),
        ),
        (
            "now_is_issued_at",
            "The window includes issued_at.",
            by_a(body(Some("@alice:a.example"), true, (NOW, NOW + day))),
            doc_a.clone(),
            Ok(expect(
                &body(Some("@alice:a.example"), true, (NOW, NOW + day)),
                true,
            )),
        ),
        (
            "expired",
            "Past valid_until it still verifies, but is not current.",
            by_a(body(
                Some("@alice:a.example"),
                true,
                (NOW - 3 * day, NOW - 1),
            )),
            doc_a.clone(),
            Ok(expect(
                &body(Some("@alice:a.example"), true, (NOW - 3 * day, NOW - 1)),
                false,
            )),
        ),
        (
            "issued_within_skew",
            "issued_at up to 5 minutes after now is accepted but not yet current.",
            by_a(body(
                Some("@alice:a.example"),
                true,
                (NOW + 300_000, NOW + day),
            )),
            doc_a.clone(),
            Ok(expect(
                &body(Some("@alice:a.example"), true, (NOW + 300_000, NOW + day)),
                false,
            )),
        ),
        (
            "thirty_days",
            "A window of exactly 30 days is allowed.",
            by_a(body(
                Some("@alice:a.example"),
                true,
                (NOW - day, NOW - day + max),
            )),
            doc_a.clone(),
            Ok(expect(
                &body(Some("@alice:a.example"), true, (NOW - day, NOW - day + max)),
                true,
            )),
        ),
        (
            "unsigned_member",
            "An `unsigned` member is allowed and not signed.",
            unsigned_member,
            doc_a.clone(),
            Ok(expect(&std(), true)),
        ),
        (
            "two_signatures",
            "Every signature by a key the document lists as valid at issued_at must verify; here both do.",
            two_sigs,
            doc_a2.clone(),
            Ok(expect(&std(), true)),
        ),
        (
            "signature_by_unlisted_key_ignored",
            "A signature under a key ID the document does not list is ignored.",
            unlisted,
            doc_a.clone(),
            Ok(expect(&std(), true)),
        ),
        (
            "signed_by_old_key",
            "An old key verifies objects issued before its expired_ts.",
            by_old(NOW - 6 * day),
            doc_a.clone(),
            Ok(expect(
                &body(
                    Some("@alice:a.example"),
                    true,
                    (NOW - 6 * day, NOW - 5 * day),
                ),
                false,
            )),
        ),
        (
            "missing_hosting",
            "hosting is required.",
            edited_att(&|v| {
                v.as_object_mut().unwrap().remove("hosting");
            }),
            doc_a.clone(),
            Err("malformed"),
        ),
        (
            "missing_head",
            "head is required.",
            edited_att(&|v| {
                v.as_object_mut().unwrap().remove("head");
            }),
            doc_a.clone(),
            Err("malformed"),
        ),
        (
            "unknown_member",
            "Members are a closed set (signed or not).",
            edited_att(&|v| v["note"] = json!("hi")),
            doc_a.clone(),
            Err("malformed"),
        ),
        (
            "wrong_type",
            "type is roam.attestation.",
            edited_att(&|v| v["type"] = json!("roam.bundle")),
            doc_a.clone(),
            Err("malformed"),
        ),
        (
            "float",
            "Numbers are integers (§2.1); checked before the signature.",
            {
                let mut f = by_a(std());
                f["issued_at"] = json!(1.5);
                f
            },
            doc_a.clone(),
            Err("malformed"),
        ),
        (
            "user_id_invalid",
            "user_id is a user ID (§3.1).",
            edited_att(&|v| v["user_id"] = json!("@alice:A.example")),
            doc_a.clone(),
            Err("malformed"),
        ),
        (
            "empty_window",
            "valid_until is after issued_at.",
            by_a(body(Some("@alice:a.example"), true, (NOW, NOW))),
            doc_a.clone(),
            Err("bad_window"),
        ),
        (
            "window_too_long",
            "At most 30 days.",
            by_a(body(
                Some("@alice:a.example"),
                true,
                (NOW - day, NOW - day + max + 1),
            )),
            doc_a.clone(),
            Err("bad_window"),
        ),
        (
            "from_future",
            "issued_at more than 5 minutes after now.",
            by_a(body(
                Some("@alice:a.example"),
                true,
                (NOW + 300_001, NOW + day),
            )),
            doc_a.clone(),
            Err("from_future"),
        ),
        (
            "other_servers_keys",
            "Checked with another server's key document.",
            by_a(std()),
            doc_b.clone(),
            Err("wrong_server"),
        ),
        (
            "one_bad_signature",
            "One listed key's signature fails: refused, whatever the others.",
            one_bad,
            doc_a2.clone(),
            Err("bad_signature"),
        ),
        (
            "tampered",
            "A member changed after signing.",
            tampered,
            doc_a.clone(),
            Err("bad_signature"),
        ),
        (
            "padded_signature",
            "Signatures are unpadded base64 (§2.2).",
            pad_signature(by_a(std())),
            doc_a.clone(),
            Err("non_canonical"),
        ),
        (
            "old_key_after_expiry",
            "An old key does not verify objects issued at or after its expired_ts; no other signature.",
            by_old(NOW - 5 * day),
            doc_a.clone(),
            Err("missing_signature"),
        ),
        (
            "bad_key_document",
            "The key document itself does not verify.",
            by_a(std()),
            bad_doc,
            Err("server_keys"),
        ),
    ];
    let v: Vec<Value> = cases
        .into_iter()
        .map(|(name, comment, att, doc, r)| {
            let input = json!({"attestation": att, "server_keys": doc});
            match r {
                Ok(exp) => json!({"name": name, "comment": comment, "valid": true, "input": input, "expected": exp}),
                Err(class) => json!({"name": name, "comment": comment, "valid": false, "input": input, "error": {"class": class}}),
            }
        })
        .collect();
    json!({
        "description": "Attestations (spec/protocol.md §7). Input: `attestation` and `server_keys`, the key document of the server that signed it (verified first as §6 against its own server_name; if it fails, the class is server_keys). A valid attestation gives its members (user_id null when absent) and `current`: whether now is inside [issued_at, valid_until].",
        "generator": GENERATOR,
        "now": NOW,
        "vectors": v,
    })
}

/// Every vector file: (path relative to the repository root, content).
pub fn all() -> Vec<(&'static str, Value)> {
    vec![
        ("spec/vectors/account-log.json", account_log_vectors()),
        ("spec/vectors/bundles.json", bundle_vectors()),
        ("spec/vectors/did-key.json", did_vectors()),
        ("spec/vectors/canonical-json.json", canonical_vectors()),
        ("spec/vectors/server-names.json", server_name_vectors()),
        ("spec/vectors/key-documents.json", key_document_vectors()),
        ("spec/vectors/attestations.json", attestation_vectors()),
    ]
}
