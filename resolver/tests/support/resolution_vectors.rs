//! The generator of `spec/vectors/resolution.json` (spec §10.4): fixed seeds, fixed times,
//! so the output is the same on every machine. The expectations are written here from the
//! rules of §10, not computed by `roam_resolver::decide`, which the vector test then checks.
//!
//! Write the file with `cargo run -p roam-resolver --example gen-resolution-vectors`.

use std::collections::BTreeMap;

use roam_identity_core::bundle::Bundle;
use roam_identity_core::did::encode_multikey;
use roam_identity_core::log::{self, AccountState, Action, DeviceKeys, SignedOp};
use roam_identity_core::server_keys::{self, ServerSigningKey};
use roam_identity_core::{
    DeviceId, Did, KeyCommitment, KeyId, Millis, OpHash, ServerName, SigningKey, UserId,
};
use serde_json::{Value, json};

use crate::attest::signed_attestation;

/// Where the file lives, relative to the repository root.
pub const PATH: &str = "spec/vectors/resolution.json";
/// The command that writes it.
pub const GENERATOR: &str = "cargo run -p roam-resolver --example gen-resolution-vectors";

const NOW: Millis = 1_800_000_000_000;
const DAY: Millis = 24 * 3600 * 1000;
const HOUR: Millis = 3600 * 1000;
const TTL: Millis = 10 * 60 * 1000;

fn name(s: &str) -> ServerName {
    ServerName::parse(s).unwrap()
}

fn user(s: &str) -> UserId {
    UserId::parse(s).unwrap()
}

/// A homeserver's signing key and key document.
struct Server {
    name: ServerName,
    key: ServerSigningKey,
    doc: Value,
}

impl Server {
    fn new(n: &str, seed: u8) -> Self {
        let key = ServerSigningKey {
            key_id: KeyId::ed25519("a_1").unwrap(),
            key: SigningKey::from_bytes(&[seed; 32]),
        };
        let doc = server_keys::build(&name(n), &key, &BTreeMap::new(), NOW + 30 * DAY).unwrap();
        Self {
            name: name(n),
            key,
            doc,
        }
    }

    fn attest(
        &self,
        user: Option<&UserId>,
        did: &Did,
        head: OpHash,
        issued_at: Millis,
        valid_until: Millis,
    ) -> Value {
        let signer = (&self.name, &self.key);
        signed_attestation(signer, (user, did, head), true, (issued_at, valid_until))
    }

    /// A bundle as this server serves it, with its own key document.
    fn bundle(&self, did: &Did, ops: &[&SignedOp], attestations: Vec<Value>, at: Millis) -> Value {
        Bundle {
            did: did.clone(),
            log: ops.iter().map(|o| o.value.clone()).collect(),
            attestations,
            server_keys: vec![self.doc.clone()],
            fetched_at: at,
            source: self.name.to_string(),
        }
        .to_value()
    }
}

fn device(id: &str, seed: u8) -> Action {
    Action::AddDevice {
        device_id: DeviceId::parse(id).unwrap(),
        keys: DeviceKeys {
            ed25519: SigningKey::from_bytes(&[seed; 32])
                .verifying_key()
                .to_bytes(),
            curve25519: [seed; 32],
        },
    }
}

fn state(ops: &[&SignedOp]) -> AccountState {
    let ops: Vec<SignedOp> = ops.iter().map(|o| (*o).clone()).collect();
    log::verify_log(&ops, None, NOW).unwrap().state
}

fn origin(server: &str, answer: Value) -> Value {
    json!({"server": server, "role": "origin", "answer": answer})
}

fn account(server: &str, answer: Value) -> Value {
    json!({"server": server, "role": "account", "answer": answer})
}

/// The origin a.test is unreachable; the account's server b.test answers `answer`.
fn a_down_then_b(answer: Value) -> Vec<Value> {
    vec![
        origin("a.test", json!("unreachable")),
        account("b.test", answer),
    ]
}

/// The notice that the origin a.test could not be reached.
fn a_unreachable() -> Value {
    notice("origin_unreachable", Some("a.test"), None, None, None)
}

fn served(bundle: Value) -> Value {
    json!({ "bundle": bundle })
}

fn notice(
    code: &str,
    server: Option<&str>,
    at: Option<Millis>,
    until: Option<Millis>,
    head: Option<&OpHash>,
) -> Value {
    let mut n = json!({ "code": code });
    if let Some(s) = server {
        n["server"] = json!(s);
    }
    if let Some(t) = at {
        n["at"] = json!(t);
    }
    if let Some(t) = until {
        n["until"] = json!(t);
    }
    if let Some(h) = head {
        n["head"] = json!(h.to_string());
    }
    n
}

/// The expected answer about an account in state `st`.
fn answer(
    status: &str,
    user_id: Option<&str>,
    st: &AccountState,
    user_ids: &[&str],
    verified_at: Millis,
    source: &str,
    notices: Vec<Value>,
) -> Value {
    json!({
        "status": status,
        "user_id": user_id,
        "did": st.did.as_str(),
        "update_key": encode_multikey(&st.update_key),
        "servers": st.servers.iter().map(ServerName::as_str).collect::<Vec<_>>(),
        "user_ids": user_ids,
        "head": st.head.to_string(),
        "seq": st.seq,
        "deactivated": st.deactivated,
        "verified_at": verified_at,
        "source": source,
        "notices": notices,
    })
}

fn vector(name: &str, comment: &str, input: Value, outcome: Result<Value, Value>) -> Value {
    let mut v = json!({"name": name, "comment": comment, "input": input});
    match outcome {
        Ok(expected) => {
            v["valid"] = json!(true);
            v["expected"] = expected;
        }
        Err(error) => {
            v["valid"] = json!(false);
            v["error"] = error;
        }
    }
    v
}

fn input(subject: &str, now: Millis, cached: Value, sources: Vec<Value>) -> Value {
    json!({"subject": subject, "now": now, "ttl_ms": TTL, "cached": cached, "sources": sources})
}

fn cached(verified_at: Millis, source: &str, bundle: Value) -> Value {
    json!({"verified_at": verified_at, "source": source, "bundle": bundle})
}

fn sorted_pair(a: &OpHash, b: &OpHash) -> Value {
    let mut v = [a.to_string(), b.to_string()];
    v.sort();
    json!(v)
}

/// The whole file.
#[allow(clippy::vec_init_then_push)] // one vector per statement reads better
pub fn generate() -> Value {
    let a = Server::new("a.test", 1);
    let b = Server::new("b.test", 2);
    let alice = user("@alice:a.test");
    let key = SigningKey::from_bytes(&[7; 32]);
    let recovery = SigningKey::from_bytes(&[107; 32]);
    let t0 = NOW - 30 * DAY;
    let g = log::genesis_op(
        &key.verifying_key(),
        KeyCommitment::to_key(&recovery.verifying_key()),
        alice.clone(),
        vec![name("a.test"), name("b.test")],
        t0,
    )
    .unwrap()
    .sign(&key);
    let did = g.op.did.clone();
    let d1 = log::next_op(&state(&[&g]), t0 + 1000, device("PHONE", 3)).sign(&key);
    let d2 = log::next_op(&state(&[&g, &d1]), t0 + 2000, device("LAPTOP", 4)).sign(&key);
    // A sibling of d1 (same prev, same key epoch): equivocation with d1.
    let d1x = log::next_op(&state(&[&g]), t0 + 1500, device("TABLET", 5)).sign(&key);
    // The owner's recovery: a rotate signed by the committed key, forking from the genesis.
    let rot = log::next_op(
        &state(&[&g]),
        t0 + 3000,
        Action::Rotate {
            update_key: recovery.verifying_key(),
            next_key: KeyCommitment::to_key(&SigningKey::from_bytes(&[200; 32]).verifying_key()),
        },
    )
    .sign(&recovery);
    let claim_b = log::next_op(
        &state(&[&g, &d1]),
        t0 + 2000,
        Action::Claim {
            user_id: user("@alice:b.test"),
        },
    )
    .sign(&key);
    let release_a = log::next_op(
        &state(&[&g, &d1, &claim_b]),
        t0 + 3000,
        Action::Release {
            user_id: alice.clone(),
        },
    )
    .sign(&key);

    let s1 = state(&[&g, &d1]);
    let s2 = state(&[&g, &d1, &d2]);
    let s_rot = state(&[&g, &d1, &d2, &rot]);
    let (h1, h2) = (s1.head, s2.head);
    let att_a = |head: OpHash| a.attest(Some(&alice), &did, head, NOW - DAY, NOW + 6 * DAY);
    let att_b = |head: OpHash| b.attest(None, &did, head, NOW - DAY, NOW + 6 * DAY);
    let hour_ago = NOW - HOUR;
    let cached1 = cached(
        hour_ago,
        "a.test",
        a.bundle(&did, &[&g, &d1], vec![att_a(h1)], hour_ago),
    );
    let cached2 = cached(
        hour_ago,
        "a.test",
        a.bundle(&did, &[&g, &d1, &d2], vec![att_a(h2)], hour_ago),
    );
    let b_serves =
        |ops: &[&SignedOp], head: OpHash| served(b.bundle(&did, ops, vec![att_b(head)], NOW));
    let alice_s = alice.as_str();
    let alice_input = |cached: Value, sources: Vec<Value>| input(alice_s, NOW, cached, sources);
    let alice_answer =
        |status: &str, st: &AccountState, verified_at: Millis, source: &str, notices| {
            answer(
                status,
                Some(alice_s),
                st,
                &[alice_s],
                verified_at,
                source,
                notices,
            )
        };
    let mut vectors = Vec::new();

    vectors.push(vector(
        "verified_fresh",
        "Nothing cached; the origin (also the account's primary) serves a bundle whose attestation binds the user ID now: verified, from a.test, no notices.",
        alice_input(Value::Null,
            vec![origin("a.test", served(a.bundle(&did, &[&g, &d1, &d2], vec![att_a(h2)], NOW)))],
        ),
        Ok(alice_answer("verified", &s2, NOW, "a.test", vec![])),
    ));
    vectors.push(vector(
        "cached_within_ttl",
        "Verified a minute ago, TTL ten minutes: the cached answer, nobody asked.",
        alice_input(
            cached(
                NOW - 60_000,
                "a.test",
                a.bundle(&did, &[&g, &d1], vec![att_a(h1)], NOW - 60_000),
            ),
            vec![],
        ),
        Ok(alice_answer("cached", &s1, NOW - 60_000, "a.test", vec![])),
    ));
    vectors.push(vector(
        "stale_nobody_reachable",
        "Verified an hour ago; the origin and the account's other server are both unreachable: the cached answer, stale, naming both.",
        alice_input(cached1.clone(),
            a_down_then_b(json!("unreachable")),
        ),
        Ok(alice_answer("stale", &s1, hour_ago,
            "a.test",
            vec![
                a_unreachable(),
                notice("server_unreachable", Some("b.test"), None, None, None),
            ],
        )),
    ));
    vectors.push(vector(
        "failover_by_user_id",
        "The origin a.test is down; the cached log names b.test as backup, which serves a newer log. The binding rests on a.test's attestation verified an hour ago and valid for six more days: verified, source b.test, saying who confirmed the log, when, and until when the binding holds.",
        alice_input(cached1.clone(),
            a_down_then_b(b_serves(&[&g, &d1, &d2], h2)),
        ),
        Ok(alice_answer("verified", &s2, NOW,
            "b.test",
            vec![
                a_unreachable(),
                notice("log_confirmed", Some("b.test"), Some(NOW), None, Some(&h2)),
                notice("binding_from_attestation", Some("a.test"), Some(NOW - DAY), Some(NOW + 6 * DAY), None),
            ],
        )),
    ));
    let old = NOW - 8 * DAY;
    vectors.push(vector(
        "failover_binding_expired",
        "As failover_by_user_id, but a.test's attestation expired yesterday: b.test still confirms the newer log, yet the binding is not confirmed now — stale, as of the last online verification, with binding_expired.",
        alice_input(cached(
                old,
                "a.test",
                a.bundle(
                    &did,
                    &[&g, &d1],
                    vec![a.attest(Some(&alice), &did, h1, old - 1000, NOW - DAY)],
                    old,
                ),
            ),
            a_down_then_b(b_serves(&[&g, &d1, &d2], h2)),
        ),
        Ok(alice_answer("stale", &s2, old,
            "b.test",
            vec![
                a_unreachable(),
                notice("log_confirmed", Some("b.test"), Some(NOW), None, Some(&h2)),
                notice("binding_expired", Some("a.test"), None, Some(NOW - DAY), None),
            ],
        )),
    ));
    vectors.push(vector(
        "failover_backup_behind",
        "The origin is down and b.test serves an older log than the one cached: the cached head is kept (no downgrade), and since nobody confirmed it now the answer is stale.",
        alice_input(cached2.clone(),
            a_down_then_b(b_serves(&[&g, &d1], h1)),
        ),
        Ok(alice_answer("stale", &s2, hour_ago,
            "b.test",
            vec![
                a_unreachable(),
                notice("downgrade_refused", Some("b.test"), None, None, Some(&h1)),
                notice("binding_from_attestation", Some("a.test"), Some(NOW - DAY), Some(NOW + 6 * DAY), None),
            ],
        )),
    ));
    vectors.push(vector(
        "no_downgrade",
        "The origin answers with an older head than the one cached: the cached answer is kept, stale, with downgrade_refused naming the head served.",
        alice_input(cached2.clone(),
            vec![origin("a.test", served(a.bundle(&did, &[&g, &d1], vec![att_a(h1)], NOW)))],
        ),
        Ok(alice_answer("stale", &s2, hour_ago,
            "a.test",
            vec![notice("downgrade_refused", Some("a.test"), None, None, Some(&h1))],
        )),
    ));
    vectors.push(vector(
        "recovery",
        "The cached head is on a branch a recovery rotate (signed by the committed key, forking from the genesis) superseded: the rotate's chain replaces it, verified, with recovered naming the old head.",
        alice_input(cached2.clone(),
            vec![origin(
                "a.test",
                served(a.bundle(&did, &[&g, &d1, &d2, &rot], vec![att_a(s_rot.head)], NOW)),
            )],
        ),
        Ok(alice_answer("verified", &s_rot, NOW,
            "a.test",
            vec![notice("recovered", None, None, None, Some(&h2))],
        )),
    ));
    vectors.push(vector(
        "equivocation_at_origin",
        "The origin serves two ops of one key epoch on the same prev: equivocation, both ops as evidence, no side picked.",
        alice_input(Value::Null,
            vec![origin("a.test", served(a.bundle(&did, &[&g, &d1, &d1x], vec![att_a(h1)], NOW)))],
        ),
        Err(json!({"class": "equivocation", "evidence": sorted_pair(&d1.hash, &d1x.hash)})),
    ));
    vectors.push(vector(
        "equivocation_in_failover",
        "The origin is down; b.test serves a branch that conflicts with the cached log (a sibling of the cached head): the union is equivocation.",
        alice_input(cached1.clone(),
            a_down_then_b(b_serves(&[&g, &d1x], d1x.hash)),
        ),
        Err(json!({"class": "equivocation", "evidence": sorted_pair(&d1.hash, &d1x.hash)})),
    ));
    vectors.push(vector(
        "failover_released",
        "The origin is down; b.test serves newer ops in which the owner released @alice:a.test: unbound (the log, signed by the owner, says so; no attestation can bind it).",
        alice_input(cached1.clone(),
            a_down_then_b(b_serves(&[&g, &d1, &claim_b, &release_a], release_a.hash)),
        ),
        Err(json!({"class": "unbound"})),
    ));
    vectors.push(vector(
        "not_found",
        "The origin answers 404: not_found.",
        input(
            "@nobody:a.test",
            NOW,
            Value::Null,
            vec![origin("a.test", json!("not_found"))],
        ),
        Err(json!({"class": "not_found"})),
    ));
    vectors.push(vector(
        "unreachable_without_cache",
        "The origin is down and nothing is cached: no DID is known, so no account server can be asked — unreachable.",
        alice_input(Value::Null,
            vec![origin("a.test", json!("unreachable"))],
        ),
        Err(json!({"class": "unreachable"})),
    ));
    vectors.push(vector(
        "did_via_backup",
        "A DID, nothing cached: a.test (primary) is down, b.test serves the account. Verified from b.test; no user ID is bound, since only a.test could attest @alice:a.test.",
        input(
            did.as_str(),
            NOW,
            Value::Null,
            vec![
                account("a.test", json!("unreachable")),
                account("b.test", b_serves(&[&g, &d1, &d2], h2)),
            ],
        ),
        Ok(answer(
            "verified",
            None,
            &s2,
            &[],
            NOW,
            "b.test",
            vec![notice("server_unreachable", Some("a.test"), None, None, None)],
        )),
    ));

    // A second account on three servers: a.test (origin, primary), b.test, c.test.
    let carol = user("@carol:a.test");
    let carol_key = SigningKey::from_bytes(&[9; 32]);
    let cg = log::genesis_op(
        &carol_key.verifying_key(),
        KeyCommitment::to_key(&SigningKey::from_bytes(&[109; 32]).verifying_key()),
        carol.clone(),
        vec![name("a.test"), name("b.test"), name("c.test")],
        t0,
    )
    .unwrap()
    .sign(&carol_key);
    let carol_did = cg.op.did.clone();
    let cd1 = log::next_op(&state(&[&cg]), t0 + 1000, device("PHONE", 6)).sign(&carol_key);
    let cs0 = state(&[&cg]);
    let cs1 = state(&[&cg, &cd1]);
    let c = Server::new("c.test", 3);
    vectors.push(vector(
        "failover_next_backup",
        "Three servers; the origin a.test is down, the first backup b.test does not know the account (404), the second backup c.test serves a newer log: verified from c.test, naming every server asked.",
        input(
            carol.as_str(),
            NOW,
            cached(
                hour_ago,
                "a.test",
                a.bundle(
                    &carol_did,
                    &[&cg],
                    vec![a.attest(Some(&carol), &carol_did, cs0.head, NOW - DAY, NOW + 6 * DAY)],
                    hour_ago,
                ),
            ),
            vec![
                origin("a.test", json!("unreachable")),
                account("b.test", json!("not_found")),
                account(
                    "c.test",
                    served(c.bundle(
                        &carol_did,
                        &[&cg, &cd1],
                        vec![c.attest(None, &carol_did, cs1.head, NOW - DAY, NOW + 6 * DAY)],
                        NOW,
                    )),
                ),
            ],
        ),
        Ok(answer(
            "verified",
            Some(carol.as_str()),
            &cs1,
            &[carol.as_str()],
            NOW,
            "c.test",
            vec![
                a_unreachable(),
                notice("server_not_found", Some("b.test"), None, None, None),
                notice("log_confirmed", Some("c.test"), Some(NOW), None, Some(&cs1.head)),
                notice("binding_from_attestation", Some("a.test"), Some(NOW - DAY), Some(NOW + 6 * DAY), None),
            ],
        )),
    ));

    json!({
        "description": "Resolution answer vectors (spec §10.4): given the cache's record (or none), what each source asked returned (in the order asked: a bundle, \"unreachable\" or \"not_found\"), now and the cache TTL, the answer — status, account, servers, head, update key, source, notices (stable codes with their fields) — or the error class (with the two conflicting op hashes, sorted, for equivocation).",
        "generator": GENERATOR,
        "now": NOW,
        "vectors": vectors,
    })
}
