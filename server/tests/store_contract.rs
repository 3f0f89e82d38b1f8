//! The store contract: every test here is written once against `&dyn Store` and runs on
//! both backends, redb (a real file in a temp dir) and PostgreSQL (a fresh database on the
//! server named by `ROAM_TEST_DATABASE_URL`, which `scripts/test.sh` starts; without it the
//! PostgreSQL half fails with a message saying so).

use std::collections::BTreeMap;
use std::sync::Arc;

use ed25519_dalek::SigningKey;
use roam_identity_core::{DeviceId, Did, OpHash, ServerName, UserId};
use roam_server::store::{
    Account, AccountRef, CrossSigningKind, EvidenceCap, KeySignature, KeysUpload, LogCommit,
    LogSummary, NewAccount, NewSession, OneTimeKey, RefreshedTokens, RegistrationToken, ServedKind,
    ServedViews, ServerKeyRecord, SigningSnapshot, Store, StoreError,
};
use serde_json::{Value, json};

fn user(name: &str) -> UserId {
    UserId::parse(&format!("@{name}:test.example")).unwrap()
}

fn device(id: &str) -> DeviceId {
    DeviceId::parse(id).unwrap()
}

fn session(d: &str, token: u8, refresh: Option<u8>) -> NewSession {
    NewSession {
        device_id: device(d),
        display_name: Some(format!("{d} name")),
        token_hash: [token; 32],
        expires_at: Some(10_000),
        refresh_hash: refresh.map(|r| [r; 32]),
        ip: Some("127.0.0.1".into()),
        now: 5,
    }
}

fn new_account(name: &str, s: Option<NewSession>, token: Option<&str>) -> NewAccount {
    NewAccount {
        account: Account {
            user_id: user(name),
            password_hash: Some("$argon2id$x".into()),
            created_at: 5,
            deactivated: false,
        },
        session: s,
        registration_token: token.map(Into::into),
    }
}

fn did(seed: u8) -> Did {
    Did::from_key(&SigningKey::from_bytes(&[seed; 32]).verifying_key()).unwrap()
}

fn op(n: u64) -> (OpHash, Value) {
    let value = json!({"n": n, "kind": "test op"});
    let bytes = serde_json::to_vec(&value).unwrap();
    (OpHash::of_canonical_bytes(&bytes), value)
}

fn commit(d: &Did, expected: Option<OpHash>, ops: &[u64], bind: &[&str]) -> LogCommit {
    let new_ops: Vec<_> = ops.iter().map(|n| op(*n)).collect();
    let head = new_ops.last().map(|(h, _)| *h).or(expected).unwrap();
    LogCommit {
        did: d.clone(),
        expected_head: expected,
        new_ops,
        summary: LogSummary {
            head,
            seq: ops.last().copied().unwrap_or(0),
            servers: vec![ServerName::parse("test.example").unwrap()],
            user_ids: bind.iter().map(|n| user(n)).collect(),
            deactivated: false,
            updated_at: 7,
            devices: None,
        },
        attestations: Some(vec![json!({"att": ops.len()})]),
        bind: bind.iter().map(|n| user(n)).collect(),
        unbind: Vec::new(),
        devices: Vec::new(),
        served: None,
    }
}

/// Answers for `c`'s head, made at `generation`, due at `due_at`; each body names its kind.
fn views(c: &LogCommit, generation: u64, due_at: u64) -> ServedViews {
    ServedViews {
        generation,
        fresh_until: due_at + 1000,
        due_at,
        bodies: ServedKind::ALL.map(|k| format!("{}:{}", k.as_str(), c.summary.seq).into_bytes()),
    }
}

/// A store on a redb file in a fresh temp dir (kept alive by the returned guard).
pub fn redb_file_store() -> (tempfile::TempDir, Arc<dyn Store>) {
    let dir = tempfile::tempdir().unwrap();
    let store = roam_server::RedbStore::open_dir(dir.path()).unwrap();
    (dir, Arc::new(store))
}

/// A store on a fresh PostgreSQL database (its own, so tests run in parallel) on the server
/// `ROAM_TEST_DATABASE_URL` names. `scripts/test.sh` starts one (scripts/pg.sh).
pub fn pg_store() -> Arc<dyn Store> {
    pg_connect(&pg_database())
}

/// A fresh PostgreSQL database of the test's own; its URL.
pub fn pg_database() -> String {
    use roam_server::store::PgStore;
    let url = std::env::var("ROAM_TEST_DATABASE_URL").expect(
        "ROAM_TEST_DATABASE_URL is not set: the PostgreSQL tests need a server; run \
         `eval \"$(bash scripts/pg.sh start)\"` (scripts/test.sh does this)",
    );
    PgStore::create_fresh_database(&url, "roam_t").unwrap()
}

/// A store (a node's pool) on the PostgreSQL database at `url`.
pub fn pg_connect(url: &str) -> Arc<dyn Store> {
    Arc::new(roam_server::store::PgStore::connect(url, 8).unwrap())
}

// --- the contract ---

fn server_key_is_created_once(s: &dyn Store) {
    let first = ServerKeyRecord {
        version: "a_1".into(),
        seed: [1; 32],
        created_at: 1,
    };
    let second = ServerKeyRecord {
        version: "b_2".into(),
        seed: [2; 32],
        created_at: 2,
    };
    assert_eq!(s.server_key_or_insert(first.clone()).unwrap(), first);
    assert_eq!(s.server_key_or_insert(second).unwrap(), first);
    assert!(s.old_server_keys().unwrap().is_empty());
}

fn accounts_sessions_and_tokens(s: &dyn Store) {
    s.create_account(new_account(
        "alice",
        Some(session("DEV1", 1, Some(2))),
        None,
    ))
    .unwrap();
    assert!(matches!(
        s.create_account(new_account("alice", None, None)),
        Err(StoreError::UserInUse(_))
    ));
    let acct = s.account(&user("alice")).unwrap().unwrap();
    assert_eq!(acct.password_hash.as_deref(), Some("$argon2id$x"));
    assert!(s.account(&user("bob")).unwrap().is_none());
    let owner = s.token_owner(&[1; 32]).unwrap().unwrap();
    assert_eq!(
        (owner.device_id.as_str(), owner.expires_at),
        ("DEV1", Some(10_000))
    );
    // A new login on the same device revokes the old tokens and keeps the name.
    let mut again = session("DEV1", 3, None);
    again.display_name = None;
    s.create_session(&user("alice"), again).unwrap();
    assert!(s.token_owner(&[1; 32]).unwrap().is_none());
    assert!(s.token_owner(&[3; 32]).unwrap().is_some());
    let devices = s.devices(&user("alice")).unwrap();
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0].display_name.as_deref(), Some("DEV1 name"));
    assert_eq!(devices[0].last_seen_ip.as_deref(), Some("127.0.0.1"));
    assert!(matches!(
        s.create_session(&user("nobody"), session("X", 9, None)),
        Err(StoreError::NotFound(_))
    ));
    s.set_device_display_name(&user("alice"), &device("DEV1"), Some("phone".into()))
        .unwrap();
    let d = s.device(&user("alice"), &device("DEV1")).unwrap().unwrap();
    assert_eq!(d.display_name.as_deref(), Some("phone"));
    assert!(matches!(
        s.set_device_display_name(&user("alice"), &device("NOPE"), None),
        Err(StoreError::NotFound(_))
    ));
}

fn refresh_tokens_are_single_use(s: &dyn Store) {
    s.create_account(new_account("carol", Some(session("D", 1, Some(2))), None))
        .unwrap();
    let fresh = RefreshedTokens {
        token_hash: [3; 32],
        expires_at: Some(20_000),
        refresh_hash: [4; 32],
        now: 9,
    };
    let owner = s.refresh_session(&[2; 32], fresh.clone()).unwrap().unwrap();
    assert_eq!(owner.expires_at, Some(20_000));
    assert!(s.token_owner(&[1; 32]).unwrap().is_none());
    assert!(s.token_owner(&[3; 32]).unwrap().is_some());
    assert!(s.refresh_session(&[2; 32], fresh).unwrap().is_none());
    // Deleting the device revokes both tokens.
    s.delete_devices(&user("carol"), &[device("D")]).unwrap();
    assert!(s.token_owner(&[3; 32]).unwrap().is_none());
    let later = RefreshedTokens {
        token_hash: [5; 32],
        expires_at: None,
        refresh_hash: [6; 32],
        now: 10,
    };
    assert!(s.refresh_session(&[4; 32], later).unwrap().is_none());
}

fn registration_tokens_are_consumed_with_the_account(s: &dyn Store) {
    s.create_registration_token(RegistrationToken {
        token: "invite-1".into(),
        uses_allowed: Some(1),
        completed: 0,
        expiry_time: None,
        created_at: 1,
    })
    .unwrap();
    assert!(matches!(
        s.create_registration_token(RegistrationToken {
            token: "invite-1".into(),
            uses_allowed: None,
            completed: 0,
            expiry_time: None,
            created_at: 1,
        }),
        Err(StoreError::TokenExists)
    ));
    s.create_account(new_account("dan", None, Some("invite-1")))
        .unwrap();
    assert_eq!(
        s.registration_token("invite-1").unwrap().unwrap().completed,
        1
    );
    // Used up: the registration fails and leaves no account behind.
    assert!(matches!(
        s.create_account(new_account("erin", None, Some("invite-1"))),
        Err(StoreError::TokenInvalid)
    ));
    assert!(s.account(&user("erin")).unwrap().is_none());
    let listed = s.registration_tokens().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].token.len(), 8);
    s.revoke_registration_token(&listed[0].token).unwrap();
    assert!(matches!(
        s.revoke_registration_token("invite-1"),
        Err(StoreError::NotFound(_))
    ));
}

fn otk(id: &str, n: u64) -> OneTimeKey {
    OneTimeKey {
        key_id: id.into(),
        key: json!({"key": n}),
    }
}

fn keys_upload_claim_and_fallback(s: &dyn Store) {
    let (u, d) = (user("frank"), device("F1"));
    s.create_account(new_account("frank", Some(session("F1", 1, None)), None))
        .unwrap();
    let before = s.key_change_position().unwrap();
    let upload = KeysUpload {
        device_keys: Some(json!({"keys": {"ed25519:F1": "abc"}})),
        one_time_keys: vec![
            otk("signed_curve25519:AAAB", 2),
            otk("signed_curve25519:AAAA", 1),
        ],
        fallback_keys: vec![otk("signed_curve25519:FFFF", 9)],
    };
    let counts = s.upload_keys(&u, &d, upload.clone(), 1).unwrap();
    assert_eq!(counts.get("signed_curve25519"), Some(&2));
    // The same upload again is harmless and does not move the key stream.
    let pos = s.key_change_position().unwrap();
    assert!(pos > before);
    s.upload_keys(&u, &d, upload, 2).unwrap();
    assert_eq!(s.key_change_position().unwrap(), pos);
    let conflict = KeysUpload {
        one_time_keys: vec![otk("signed_curve25519:AAAA", 99)],
        ..Default::default()
    };
    assert!(matches!(
        s.upload_keys(&u, &d, conflict, 3),
        Err(StoreError::KeyConflict { .. })
    ));
    assert!(matches!(
        s.upload_keys(&u, &device("GHOST"), KeysUpload::default(), 3),
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(s.device_keys(&u, &[]).unwrap().len(), 1);
    assert_eq!(s.device_keys(&u, &[device("OTHER")]).unwrap().len(), 0);
    assert_eq!(
        s.unused_fallback_key_types(&u, &d).unwrap(),
        ["signed_curve25519"]
    );
    let first = s.claim_key(&u, &d, "signed_curve25519").unwrap().unwrap();
    assert_eq!(first.key_id, "signed_curve25519:AAAA");
    s.claim_key(&u, &d, "signed_curve25519").unwrap().unwrap();
    assert!(s.one_time_key_counts(&u, &d).unwrap().is_empty());
    let fallback = s.claim_key(&u, &d, "signed_curve25519").unwrap().unwrap();
    assert_eq!(fallback.key_id, "signed_curve25519:FFFF");
    assert!(s.unused_fallback_key_types(&u, &d).unwrap().is_empty());
    assert!(s.claim_key(&u, &d, "curve25519").unwrap().is_none());
    assert_eq!(
        s.key_changes(before, s.key_change_position().unwrap())
            .unwrap(),
        std::slice::from_ref(&u)
    );
    s.delete_all_devices(&u).unwrap();
    assert!(s.devices(&u).unwrap().is_empty());
    assert!(s.device_keys(&u, &[]).unwrap().is_empty());
}

fn cross_signing_and_signatures_are_compare_and_set(s: &dyn Store) {
    let (u, other) = (user("gina"), user("hal"));
    s.create_account(new_account("gina", Some(session("G1", 1, None)), None))
        .unwrap();
    let master = json!({"usage": ["master"], "keys": {"ed25519:M": "M"}});
    let keys = vec![(CrossSigningKind::Master, master.clone())];
    assert!(
        s.put_cross_signing_keys(&u, keys.clone(), &BTreeMap::new(), 1)
            .unwrap()
    );
    // A second writer that checked against the old (empty) keys loses.
    assert!(
        !s.put_cross_signing_keys(&u, keys, &BTreeMap::new(), 2)
            .unwrap()
    );
    let stored = s.cross_signing_keys(&u).unwrap();
    assert_eq!(stored.get(&CrossSigningKind::Master), Some(&master));
    let snap = s
        .signing_snapshot(&u, std::slice::from_ref(&other))
        .unwrap();
    assert_eq!(snap.mine, stored);
    let sig = KeySignature {
        target_user: u.clone(),
        target_key: "G1".into(),
        signer_user: u.clone(),
        signer_key_id: "ed25519:M".into(),
        signature: "sig".into(),
    };
    let stale = SigningSnapshot::default();
    assert!(
        !s.add_key_signatures_if(vec![sig.clone()], &stale, std::slice::from_ref(&other), 3)
            .unwrap()
    );
    assert!(
        s.add_key_signatures_if(vec![sig.clone()], &snap, &[other], 3)
            .unwrap()
    );
    assert_eq!(s.key_signatures(&u).unwrap(), std::slice::from_ref(&sig));
    // A new master key drops signatures by and on the old identity.
    let replace = vec![(
        CrossSigningKind::Master,
        json!({"usage": ["master"], "n": 2}),
    )];
    assert!(s.put_cross_signing_keys(&u, replace, &stored, 4).unwrap());
    assert!(s.key_signatures(&u).unwrap().is_empty());
    s.add_key_signatures(vec![sig], 5).unwrap();
    assert_eq!(s.key_signatures(&u).unwrap().len(), 1);
}

fn log_commits_follow_the_head(s: &dyn Store) {
    let d = did(1);
    let c1 = commit(&d, None, &[1, 2], &["ivy"]);
    s.create_account_with_log(new_account("ivy", None, None), c1.clone())
        .unwrap();
    let head = c1.summary.head;
    assert_eq!(s.log_summary(&d).unwrap().unwrap(), c1.summary);
    assert_eq!(s.log_ops(&d).unwrap().len(), 2);
    assert_eq!(s.did_of_user(&user("ivy")).unwrap(), Some(d.clone()));
    assert_eq!(s.held_dids().unwrap(), std::slice::from_ref(&d));
    assert_eq!(s.issued_attestations(&d).unwrap(), [json!({"att": 2})]);
    // A writer that verified against no log (or an old head) is refused.
    assert!(matches!(
        s.commit_log(commit(&d, None, &[3], &[])),
        Err(StoreError::HeadMoved { .. })
    ));
    let mut c2 = commit(&d, Some(head), &[3], &[]);
    c2.devices = vec![(user("ivy"), device("LOGDEV"))];
    s.commit_log(c2.clone()).unwrap();
    assert_eq!(s.log_summary(&d).unwrap().unwrap().head, c2.summary.head);
    assert!(s.device(&user("ivy"), &device("LOGDEV")).unwrap().is_some());
    // The user ID is bound to this DID: another DID cannot take it, and nothing is written.
    let d2 = did(2);
    assert!(matches!(
        s.commit_log(commit(&d2, None, &[10], &["ivy"])),
        Err(StoreError::UserInUse(_))
    ));
    assert!(s.log_summary(&d2).unwrap().is_none());
    let export = s.export_ops(0, 10).unwrap();
    let cursors: Vec<u64> = export.iter().map(|e| e.cursor).collect();
    assert_eq!(cursors, [1, 2, 3]);
    assert_eq!(export[2].op, op(3).1);
    assert_eq!(s.export_ops(2, 10).unwrap().len(), 1);
    assert_eq!(s.export_ops(0, 1).unwrap().len(), 1);
    let mut unbind = commit(&d, Some(c2.summary.head), &[4], &[]);
    unbind.unbind = vec![user("ivy")];
    s.commit_log(unbind).unwrap();
    assert!(s.did_of_user(&user("ivy")).unwrap().is_none());
}

fn a_failed_registration_with_log_writes_nothing(s: &dyn Store) {
    s.create_account(new_account("jay", None, None)).unwrap();
    let d = did(3);
    assert!(matches!(
        s.create_account_with_log(
            new_account("jay", None, None),
            commit(&d, None, &[1], &["jay"])
        ),
        Err(StoreError::UserInUse(_))
    ));
    assert!(s.log_summary(&d).unwrap().is_none());
    assert!(s.export_ops(0, 10).unwrap().is_empty());
}

fn concurrent_commits_on_one_head_let_one_win(s: Arc<dyn Store>) {
    let d = did(4);
    let base = commit(&d, None, &[1], &[]);
    s.commit_log(base.clone()).unwrap();
    let threads: Vec<_> = (0..4u64)
        .map(|i| {
            let (s, c) = (
                Arc::clone(&s),
                commit(&d, Some(base.summary.head), &[100 + i], &[]),
            );
            std::thread::spawn(move || s.commit_log(c))
        })
        .collect();
    let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let won = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(won, 1, "{results:?}");
    assert!(
        results
            .iter()
            .filter_map(|r| r.as_ref().err())
            .all(|e| matches!(e, StoreError::HeadMoved { .. }))
    );
    assert_eq!(s.log_ops(&d).unwrap().len(), 2);
    assert_eq!(s.export_ops(0, 100).unwrap().len(), 2);
}

fn fork_evidence_is_capped(s: &dyn Store) {
    let d = did(5);
    let ops: Vec<_> = (0..5).map(op).collect();
    let cap = EvidenceCap {
        ops: 3,
        bytes: 10_000,
    };
    assert_eq!(s.record_fork(&d, &ops[..2], cap).unwrap(), 2);
    assert_eq!(s.record_fork(&d, &ops, cap).unwrap(), 1);
    assert_eq!(s.fork_evidence(&d).unwrap().len(), 3);
    let tiny = EvidenceCap { ops: 10, bytes: 1 };
    assert_eq!(s.record_fork(&did(6), &ops, tiny).unwrap(), 0);
}

fn migrations_and_op_windows(s: &dyn Store) {
    let d = did(7);
    assert!(s.migration_of(&d).unwrap().is_none());
    s.put_migration("m1", &d, &json!({"id": "m1"})).unwrap();
    s.put_migration("m2", &d, &json!({"id": "m2"})).unwrap();
    assert_eq!(s.migration("m1").unwrap(), Some(json!({"id": "m1"})));
    assert_eq!(s.migration_of(&d).unwrap(), Some(json!({"id": "m2"})));
    s.update_op_window(&d, &mut |t| {
        t.extend([1, 2]);
        true
    })
    .unwrap();
    s.update_op_window(&d, &mut |t| {
        t.push(3);
        false
    })
    .unwrap();
    let mut seen = Vec::new();
    s.update_op_window(&d, &mut |t| {
        seen = t.clone();
        t.clear();
        true
    })
    .unwrap();
    assert_eq!(seen, [1, 2]);
    s.update_op_window(&d, &mut |t| {
        seen = t.clone();
        false
    })
    .unwrap();
    assert!(seen.is_empty());
    s.ping().unwrap();
}

fn served_answers_follow_the_head(s: &dyn Store) {
    let (a, b) = (did(20), did(21));
    let mut ca = commit(&a, None, &[1], &["uma"]);
    ca.served = Some(views(&ca, 50, 500));
    s.create_account_with_log(new_account("uma", None, None), ca.clone())
        .unwrap();
    let cb = commit(&b, None, &[2], &[]);
    s.commit_log(cb.clone()).unwrap();
    let refs = [
        AccountRef::User(user("uma")),
        AccountRef::Did(a.clone()),
        AccountRef::Did(b.clone()),
        AccountRef::User(user("nobody")),
    ];
    let got = s.served(&refs, ServedKind::Log).unwrap();
    let first = got[0].as_ref().expect("answers stored with the commit");
    assert_eq!(
        (&first.did, first.head, first.generation, first.fresh_until),
        (&a, ca.summary.head, 50, 1500)
    );
    assert!(!first.deactivated);
    assert_eq!(first.body, b"log:1");
    assert_eq!(got[1], got[0]);
    // Committed without answers: none stored, and due at once; the unknown user has none.
    assert!(got[2].is_none() && got[3].is_none());
    assert_eq!(s.served_due(0, 10).unwrap(), std::slice::from_ref(&b));
    assert_eq!(s.served_due(500, 10).unwrap(), [b.clone(), a.clone()]);
    assert_eq!(s.served_due(500, 1).unwrap(), std::slice::from_ref(&b));
    // Re-made answers replace the old ones and their due time.
    let mut ca2 = commit(&a, Some(ca.summary.head), &[3], &[]);
    ca2.summary.deactivated = true;
    ca2.served = Some(views(&ca2, 60, 900));
    s.commit_log(ca2.clone()).unwrap();
    let got = s.served(&refs[1..2], ServedKind::DidResolution).unwrap();
    let now = got[0].as_ref().unwrap();
    assert_eq!((now.head, now.generation), (ca2.summary.head, 60));
    assert!(now.deactivated);
    assert_eq!(now.body, b"res:3");
    assert_eq!(s.served_due(500, 10).unwrap(), std::slice::from_ref(&b));
    assert_eq!(s.served_due(900, 10).unwrap(), [b.clone(), a.clone()]);
    // A commit without answers drops them.
    s.commit_log(commit(&a, Some(ca2.summary.head), &[4], &[]))
        .unwrap();
    assert!(s.served(&refs[1..2], ServedKind::Bundle).unwrap()[0].is_none());
    assert_eq!(s.served_due(0, 10).unwrap().len(), 2);
    // A new server key makes every held DID due now, once.
    let mut cb2 = commit(&b, Some(cb.summary.head), &[5], &[]);
    cb2.served = Some(views(&cb2, 70, 800));
    s.commit_log(cb2).unwrap();
    assert_eq!(s.served_due(0, 10).unwrap(), std::slice::from_ref(&a));
    assert_eq!(s.mark_served_due("key_1").unwrap(), 2);
    assert_eq!(s.mark_served_due("key_1").unwrap(), 0);
    assert_eq!(s.served_due(0, 10).unwrap().len(), 2);
    assert_eq!(s.mark_served_due("key_2").unwrap(), 2);
}

fn a_group_commit_applies_each_change_whole_or_not_at_all(s: &dyn Store) {
    let (a, b, c) = (did(22), did(23), did(24));
    let ca = commit(&a, None, &[1], &["vic"]);
    let mut ca2 = commit(&a, Some(ca.summary.head), &[2], &[]);
    ca2.served = Some(views(&ca2, 10, 20));
    let mut taken = commit(&b, None, &[3], &["vic"]);
    taken.served = Some(views(&taken, 10, 20));
    let moved = commit(&c, Some(ca.summary.head), &[4], &[]);
    let stale = commit(&a, Some(ca.summary.head), &[5], &[]);
    let results = s
        .commit_logs(vec![
            ca.clone(),
            ca2.clone(),
            // The same user ID for another DID, in the same transaction: refused.
            taken,
            moved,
            // Verified against a head the batch itself moved: refused.
            stale,
            commit(&c, None, &[6], &[]),
        ])
        .unwrap();
    assert!(results[0].is_ok() && results[1].is_ok() && results[5].is_ok());
    assert!(matches!(results[2], Err(StoreError::UserInUse(_))));
    assert!(matches!(results[3], Err(StoreError::HeadMoved { .. })));
    assert!(matches!(results[4], Err(StoreError::HeadMoved { .. })));
    assert_eq!(s.log_summary(&a).unwrap().unwrap().head, ca2.summary.head);
    assert_eq!(s.log_ops(&a).unwrap().len(), 2);
    assert!(
        s.log_summary(&b).unwrap().is_none(),
        "a refused change left a trace"
    );
    assert!(s.log_ops(&b).unwrap().is_empty());
    assert!(s.issued_attestations(&b).unwrap().is_empty());
    let refs = [AccountRef::Did(b.clone()), AccountRef::Did(a.clone())];
    let served = s.served(&refs, ServedKind::Bundle).unwrap();
    assert!(served[0].is_none());
    assert_eq!(served[1].as_ref().unwrap().body, b"bundle:2");
    assert_eq!(s.log_ops(&c).unwrap().len(), 1);
    assert_eq!(s.did_of_user(&user("vic")).unwrap(), Some(a.clone()));
    let export: Vec<u64> = s
        .export_ops(0, 10)
        .unwrap()
        .iter()
        .map(|e| e.cursor)
        .collect();
    assert_eq!(export, [1, 2, 3]);
    assert!(s.served_due(20, 10).unwrap().contains(&a));
    assert!(!s.served_due(20, 10).unwrap().contains(&b));
    assert!(s.commit_logs(Vec::new()).unwrap().is_empty());
}

/// The devices the account key signed in are kept with the summary.
fn summaries_keep_signed_in_devices(s: &dyn Store) {
    use roam_identity_core::log::DeviceKeys;
    let d = did(70);
    let mut c = commit(&d, None, &[1], &[]);
    let keys = DeviceKeys {
        ed25519: [1; 32],
        curve25519: [2; 32],
    };
    c.summary.devices = Some([(device("PHONE"), keys)].into());
    s.commit_log(c.clone()).unwrap();
    assert_eq!(
        s.log_summary(&d).unwrap().unwrap().devices,
        c.summary.devices
    );
    let mut next = commit(&d, Some(c.summary.head), &[2], &[]);
    next.summary.devices = None;
    s.commit_log(next).unwrap();
    assert_eq!(s.log_summary(&d).unwrap().unwrap().devices, None);
}

/// A device plane exported from one account and imported into another, twice: the repeat
/// adds nothing; keys of another server's user ID are kept under it, as carried.
fn device_planes_are_carried(s: &dyn Store) {
    use roam_server::store::carry::{CarriedBackup, CarriedDevice, CarriedUser, DevicePlane};
    let me = user("carrier");
    s.create_account(new_account("carrier", None, None))
        .unwrap();
    let old = UserId::parse("@carrier:old.example").unwrap();
    let d = did(71);
    let plane = DevicePlane {
        account_data: vec![("m.secret_storage.default_key".into(), json!({"key": "k"}))],
        backup: Some(CarriedBackup {
            algorithm: "m.megolm_backup.v1.curve25519-aes-sha2".into(),
            auth_data: json!({"public_key": "p"}),
            keys: vec![(
                "!r:old.example".into(),
                "s1".into(),
                json!({"first_message_index": 0, "forwarded_count": 0, "is_verified": false, "session_data": {"c": 1}}),
            )],
        }),
        users: vec![CarriedUser {
            user_id: old.clone(),
            cross_signing: [(
                CrossSigningKind::Master,
                json!({"user_id": "@carrier:old.example", "usage": ["master"], "keys": {"ed25519:M": "M"}}),
            )]
            .into(),
            devices: vec![CarriedDevice {
                device_id: device("DEV"),
                display_name: Some("phone".into()),
                keys: json!({"user_id": "@carrier:old.example", "device_id": "DEV"}),
                one_time_keys: vec![otk("signed_curve25519:AAAA", 1)],
                fallback_keys: vec![otk("signed_curve25519:FFFF", 2)],
            }],
            signatures: vec![KeySignature {
                target_user: old.clone(),
                target_key: "M".into(),
                signer_user: old.clone(),
                signer_key_id: "ed25519:DEV".into(),
                signature: "sig".into(),
            }],
        }],
    };
    let out = s.import_device_plane(&me, &d, plane.clone(), 1).unwrap();
    assert_eq!((out.backup_version, out.backup_keys_added), (Some(1), 1));
    assert_eq!((out.account_data, out.devices), (1, 1));
    let again = s.import_device_plane(&me, &d, plane.clone(), 2).unwrap();
    assert_eq!(
        (again.backup_version, again.backup_keys_added),
        (Some(1), 0)
    );
    assert_eq!(s.carried_did(&old).unwrap(), Some(d.clone()));
    assert_eq!(s.carried_did(&me).unwrap(), None);
    let back = s.device_plane(&me, Some(&d)).unwrap();
    assert_eq!(back.account_data, plane.account_data);
    assert_eq!(back.backup, plane.backup);
    assert_eq!(back.users.len(), 2);
    assert_eq!(back.users[0].user_id, me);
    assert_eq!(back.users[1], plane.users[0]);
    // Without the DID, only the account's own keys.
    assert_eq!(s.device_plane(&me, None).unwrap().users.len(), 1);
    assert_eq!(s.backup_version(&me, None).unwrap().unwrap().count, 1);
    assert_eq!(s.device_keys(&old, &[]).unwrap().len(), 1);
}

/// The servers told of a user's device-list changes: remembered once each, per user, up to
/// the cap; a user at the cap keeps its followers and takes no more.
fn remote_followers_are_remembered_up_to_the_cap(s: &dyn Store) {
    use roam_server::store::device_plane::MAX_REMOTE_FOLLOWERS;
    let (ann, ben) = (user("ann"), user("ben"));
    let server = |i: usize| ServerName::parse(&format!("s{i}.example")).unwrap();
    assert!(s.remote_followers(&ann).unwrap().is_empty());
    s.add_remote_follower(&server(1), &[ann.clone(), ben.clone()])
        .unwrap();
    s.add_remote_follower(&server(1), std::slice::from_ref(&ann))
        .unwrap();
    s.add_remote_follower(&server(2), std::slice::from_ref(&ann))
        .unwrap();
    s.add_remote_follower(&server(3), &[]).unwrap();
    assert_eq!(
        s.remote_followers(&ann).unwrap(),
        vec![server(1), server(2)]
    );
    assert_eq!(s.remote_followers(&ben).unwrap(), vec![server(1)]);
    for i in 3..=MAX_REMOTE_FOLLOWERS {
        s.add_remote_follower(&server(i), std::slice::from_ref(&ann))
            .unwrap();
    }
    assert_eq!(
        s.remote_followers(&ann).unwrap().len(),
        MAX_REMOTE_FOLLOWERS
    );
    // One more server: answered by the caller, not remembered; ben still takes it.
    let late = server(MAX_REMOTE_FOLLOWERS + 1);
    s.add_remote_follower(&late, &[ann.clone(), ben.clone()])
        .unwrap();
    let followers = s.remote_followers(&ann).unwrap();
    assert_eq!(followers.len(), MAX_REMOTE_FOLLOWERS);
    assert!(!followers.contains(&late));
    assert_eq!(s.remote_followers(&ben).unwrap(), vec![server(1), late]);
}

macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod redb {
            $(#[test]
            fn $name() {
                let (_dir, store) = super::redb_file_store();
                super::$name(store.as_ref());
            })*
        }
        mod postgres {
            $(#[test]
            fn $name() {
                let store = super::pg_store();
                super::$name(store.as_ref());
            })*
        }
    };
}

contract!(
    server_key_is_created_once,
    accounts_sessions_and_tokens,
    refresh_tokens_are_single_use,
    registration_tokens_are_consumed_with_the_account,
    keys_upload_claim_and_fallback,
    cross_signing_and_signatures_are_compare_and_set,
    log_commits_follow_the_head,
    a_failed_registration_with_log_writes_nothing,
    fork_evidence_is_capped,
    migrations_and_op_windows,
    served_answers_follow_the_head,
    a_group_commit_applies_each_change_whole_or_not_at_all,
    summaries_keep_signed_in_devices,
    device_planes_are_carried,
    remote_followers_are_remembered_up_to_the_cap,
);

#[test]
fn redb_concurrent_commits_on_one_head_let_one_win() {
    let (_dir, store) = redb_file_store();
    concurrent_commits_on_one_head_let_one_win(store);
}

#[test]
fn postgres_concurrent_commits_on_one_head_let_one_win() {
    concurrent_commits_on_one_head_let_one_win(pg_store());
}

#[test]
fn postgres_pool_stats_are_reported() {
    let store = pg_store();
    store.ping().unwrap();
    let stats = store.pool_stats().expect("a PostgreSQL store has a pool");
    assert!(stats.size >= 1 && stats.size <= stats.max, "{stats:?}");
}

#[test]
fn postgres_shared_state_is_capped_expiring_and_single_use() {
    use roam_server::store::{SharedCaps, SharedEntry};
    let s = pg_store();
    assert!(s.is_shared());
    let entry = |id: &str, owner: &str, client: &str, expires_at: u64| SharedEntry {
        kind: "test",
        id: id.into(),
        value: json!({"id": id}),
        expires_at,
        owner: owner.into(),
        client: client.into(),
    };
    let caps = SharedCaps {
        per_owner_client: 2,
        per_client: 3,
        total: 4,
    };
    let insert = |e: SharedEntry| s.shared_insert_capped(e, caps, 100).unwrap();
    assert!(insert(entry("a1", "alice", "10.0.0.1", 1000)));
    assert!(insert(entry("a2", "alice", "10.0.0.1", 1001)));
    // A third for the same pair retires the pair's oldest.
    assert!(insert(entry("a3", "alice", "10.0.0.1", 1002)));
    assert!(s.shared_get("test", "a1", 100).unwrap().is_none());
    assert!(insert(entry("b1", "bob", "10.0.0.1", 1003)));
    // The client is at its cap: refused, and nothing is evicted.
    assert!(!insert(entry("c1", "carol", "10.0.0.1", 1004)));
    assert!(insert(entry("d1", "dan", "10.0.0.2", 1005)));
    // The total is at its cap.
    assert!(!insert(entry("e1", "erin", "10.0.0.3", 1006)));
    assert_eq!(
        s.shared_get("test", "a2", 100).unwrap(),
        Some(json!({"id": "a2"}))
    );
    // Expired at 1001: gone for readers and takers.
    assert!(s.shared_get("test", "a2", 1001).unwrap().is_none());
    assert!(s.shared_take("test", "a2", 1001).unwrap().is_none());
    assert!(s.shared_take("test", "a3", 100).unwrap().is_some());
    assert!(s.shared_take("test", "a3", 100).unwrap().is_none());
    s.shared_put(entry("a3", "", "", 2000)).unwrap();
    assert!(s.shared_get("test", "a3", 1500).unwrap().is_some());
}

/// Two nodes (two pools) on one database count against the same rate-limit bucket.
#[test]
fn postgres_rate_limit_buckets_are_shared_by_nodes() {
    let url = pg_database();
    let (a, b) = (pg_connect(&url), pg_connect(&url));
    // Three tokens, refilled at one a day: the fourth take, on either node, must wait.
    let take = |s: &Arc<dyn Store>, key: &str| s.shared_take_token("test", key, 1.0 / 86_400.0, 3);
    assert_eq!(take(&a, "10.0.0.1").unwrap(), Ok(()));
    assert_eq!(take(&b, "10.0.0.1").unwrap(), Ok(()));
    assert_eq!(take(&a, "10.0.0.1").unwrap(), Ok(()));
    let wait = take(&b, "10.0.0.1").unwrap().unwrap_err();
    assert!(wait > 3_600_000, "{wait} ms");
    assert!(take(&a, "10.0.0.1").unwrap().is_err());
    // Another key and another limiter have buckets of their own.
    assert_eq!(take(&b, "10.0.0.2").unwrap(), Ok(()));
    assert_eq!(
        b.shared_take_token("other", "10.0.0.1", 1.0, 1).unwrap(),
        Ok(())
    );
    // A fast refill: the bucket is soon usable again (a wait of at most a second).
    let fast = |s: &Arc<dyn Store>| s.shared_take_token("fast", "k", 1000.0, 1);
    assert_eq!(fast(&a).unwrap(), Ok(()));
    let mut again = fast(&b).unwrap();
    for _ in 0..100 {
        if again.is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(again.unwrap_err()));
        again = fast(&b).unwrap();
    }
    assert_eq!(again, Ok(()));
    // Many concurrent takes from one bucket on both nodes: exactly `burst` succeed.
    let threads: Vec<_> = (0..16)
        .map(|i| {
            let s = Arc::clone(if i % 2 == 0 { &a } else { &b });
            std::thread::spawn(move || s.shared_take_token("race", "k", 1e-6, 5).unwrap())
        })
        .collect();
    let won = threads
        .into_iter()
        .map(|t| t.join().unwrap())
        .filter(Result::is_ok)
        .count();
    assert_eq!(won, 5);
}

/// A write announced by one node wakes the listeners of another (LISTEN/NOTIFY), not its
/// own.
#[test]
fn postgres_write_announcements_reach_the_other_nodes() {
    use std::sync::mpsc;
    let url = pg_database();
    let (a, b) = (pg_connect(&url), pg_connect(&url));
    let (tx_a, rx_a) = mpsc::channel::<()>();
    let (tx_b, rx_b) = mpsc::channel::<()>();
    let tx_a = std::sync::Mutex::new(tx_a);
    let tx_b = std::sync::Mutex::new(tx_b);
    a.on_remote_writes(Arc::new(move || {
        let _ = tx_a.lock().unwrap().send(());
    }));
    b.on_remote_writes(Arc::new(move || {
        let _ = tx_b.lock().unwrap().send(());
    }));
    let patience = std::time::Duration::from_secs(30);
    // The listeners connect in the background: announce until b hears one.
    let mut heard = false;
    for _ in 0..60 {
        a.announce_write();
        if rx_b
            .recv_timeout(std::time::Duration::from_millis(500))
            .is_ok()
        {
            heard = true;
            break;
        }
    }
    assert!(heard, "node b never heard node a's writes");
    while rx_b.try_recv().is_ok() {}
    b.announce_write();
    rx_a.recv_timeout(patience)
        .expect("node a never heard node b's write");
    // Node a's own announcements do not wake node a.
    while rx_a.try_recv().is_ok() {}
    a.announce_write();
    rx_b.recv_timeout(patience).expect("node b heard nothing");
    assert!(
        rx_a.recv_timeout(std::time::Duration::from_millis(500))
            .is_err()
    );
}

#[test]
fn redb_keeps_shared_state_in_memory() {
    let (_dir, s) = redb_file_store();
    assert!(!s.is_shared());
    assert!(matches!(
        s.shared_get("test", "x", 1),
        Err(StoreError::Unsupported(_))
    ));
    assert!(matches!(
        s.shared_take_token("test", "x", 1.0, 1),
        Err(StoreError::Unsupported(_))
    ));
}

// The device plane's contract (it uses the macro above).
#[path = "store_contract/device_plane.rs"]
mod device_plane;
