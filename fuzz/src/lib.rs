//! What the fuzz targets share: a fixed, valid account log signed with fixed keys, the time
//! every target verifies at, and a tiny byte reader for structured mutations.

use ed25519_dalek::SigningKey;
use roam_identity_core::log::{Action, DeviceKeys, SignedOp, genesis_op, next_op, verify_log};
use roam_identity_core::{DeviceId, KeyCommitment, Millis, ServerName, UserId};
use serde_json::Value;

/// The time the identity-core targets verify at (the vectors' `now`).
pub const NOW: Millis = 1_800_000_000_000;
/// When the fixed log's genesis was made; each later op is one second after the previous.
pub const GENESIS_AT: Millis = 1_760_000_000_000;

/// An account's keys: the update key and the committed next key, from fixed seeds.
#[derive(Debug)]
pub struct Keys {
    pub update: SigningKey,
    pub next: SigningKey,
}

impl Keys {
    pub fn new(seed: u8) -> Self {
        Keys {
            update: SigningKey::from_bytes(&[seed; 32]),
            next: SigningKey::from_bytes(&[seed.wrapping_add(100); 32]),
        }
    }
}

fn name(s: &str) -> ServerName {
    ServerName::parse(s).unwrap()
}

/// A genesis for `user` on `servers`, signed with `keys`, made at `at`.
pub fn genesis(keys: &Keys, user: &str, servers: &[&str], at: Millis) -> SignedOp {
    genesis_op(
        &keys.update.verifying_key(),
        KeyCommitment::to_key(&keys.next.verifying_key()),
        UserId::parse(user).unwrap(),
        servers.iter().map(|s| name(s)).collect(),
        at,
    )
    .unwrap()
    .sign(&keys.update)
}

/// Signs `action` on top of `ops` with `key`, one second after the head.
pub fn append(ops: &mut Vec<SignedOp>, action: Action, key: &SigningKey) {
    let state = verify_log(ops, None, NOW).unwrap().state;
    let at = ops.last().unwrap().op.created_at + 1000;
    ops.push(next_op(&state, at, action).sign(key));
}

/// An `add_device` with Matrix keys from a fixed seed.
pub fn add_device(device_id: &str, seed: u8) -> Action {
    let key = SigningKey::from_bytes(&[seed; 32]).verifying_key();
    Action::AddDevice {
        device_id: DeviceId::parse(device_id).unwrap(),
        keys: DeviceKeys {
            ed25519: key.to_bytes(),
            curve25519: key.to_montgomery().to_bytes(),
        },
    }
}

/// A valid log that uses every action but deactivate: genesis, claim, add_device, move,
/// rotate (signed by the committed key), revoke_device, release.
pub fn sample_log() -> Vec<SignedOp> {
    let k = Keys::new(1);
    let after = Keys::new(101); // update = the committed next key of `k`
    let mut ops = vec![genesis(&k, "@alice:a.example", &["a.example"], GENESIS_AT)];
    let claim = || Action::Claim {
        user_id: UserId::parse("@alice:b.example").unwrap(),
    };
    append(&mut ops, claim(), &k.update);
    append(&mut ops, add_device("PHONE", 7), &k.update);
    append(
        &mut ops,
        Action::Move {
            servers: vec![name("a.example"), name("b.example")],
        },
        &k.update,
    );
    append(
        &mut ops,
        Action::Rotate {
            update_key: after.update.verifying_key(),
            next_key: KeyCommitment::to_key(&after.next.verifying_key()),
        },
        &after.update,
    );
    append(
        &mut ops,
        Action::RevokeDevice {
            device_id: DeviceId::parse("PHONE").unwrap(),
        },
        &after.update,
    );
    append(
        &mut ops,
        Action::Release {
            user_id: UserId::parse("@alice:b.example").unwrap(),
        },
        &after.update,
    );
    ops
}

/// The fixed log as wire objects.
pub fn sample_values() -> Vec<Value> {
    sample_log().into_iter().map(|o| o.value).collect()
}

/// Reads fuzz bytes as a stream of small decisions; zeros once exhausted.
#[derive(Debug)]
pub struct Bytes<'a>(pub &'a [u8]);

impl Bytes<'_> {
    pub fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }

    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (usize::from(self.u8()) << 8 | usize::from(self.u8())) % n
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Up to `max` bytes.
    pub fn take(&mut self, max: usize) -> &[u8] {
        let n = self.below(max + 1).min(self.0.len());
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a
    }
}

/// What every log target checks of a list of wire objects, besides "no panic":
/// - `verify_values` answers exactly what parsing each op then `verify_log` answers;
/// - batch and single signature checking answer the same (they must accept the same logs);
/// - an accepted log: its chain alone re-verifies to the same state, and the same ops in
///   reverse order verify to the same state (order and repeats do not matter, §5.3).
pub fn check_log(values: &[Value]) {
    use roam_identity_core::log::{SignatureCheck, verify_log_with, verify_values};
    let direct = verify_values(values, None, NOW);
    let parsed: Result<Vec<SignedOp>, _> = values
        .iter()
        .map(|v| SignedOp::from_value(v.clone()))
        .collect();
    let Ok(ops) = parsed else {
        assert!(direct.is_err(), "a log with an unparsable op was accepted");
        return;
    };
    for op in &ops {
        check_op(op);
    }
    let batch = verify_log_with(&ops, None, NOW, SignatureCheck::Batch);
    let single = verify_log_with(&ops, None, NOW, SignatureCheck::Single);
    assert_eq!(batch, single, "batch and single signature checks disagree");
    if values.len() <= roam_identity_core::log::MAX_LOG_OPS {
        assert_eq!(direct, batch, "verify_values and verify_log disagree");
    }
    let Ok(verified) = batch else {
        return;
    };
    let chain = verify_values(&verified.chain_values(), Some(&verified.state.did), NOW)
        .expect("the chosen chain of an accepted log verifies");
    assert_eq!(
        chain.state, verified.state,
        "the chain alone gives another state"
    );
    let mut reversed = values.to_vec();
    reversed.reverse();
    let again = verify_values(&reversed, None, NOW).expect("an accepted log, reversed, verifies");
    assert_eq!(again.state, verified.state, "op order changed the state");
}

/// An op that parsed: its canonical bytes parse back to the same op, with the same hash.
pub fn check_op(op: &SignedOp) {
    let bytes = op.canonical_bytes();
    assert!(!bytes.is_empty(), "a parsed op has canonical bytes");
    let again = SignedOp::from_json(&bytes).expect("an op's canonical bytes parse");
    assert_eq!(&again, op, "an op's canonical bytes parse to another op");
}
