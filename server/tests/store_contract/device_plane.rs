//! The contract of the device plane (`DevicePlaneStore`, `KeyBackupStore` and the account
//! methods that come with them), run on redb and on PostgreSQL like the rest of the suite.

use roam_server::store::device_plane::{
    MAX_ACCOUNT_DATA_TYPES, MAX_FILTERS, MAX_INBOX, Profile, ToDeviceMessage, TxnKey,
};
use roam_server::store::key_backup::BackupScope;
use roam_server::store::{Store, StoreError};
use serde_json::{Value, json};

use super::{commit, device, did, new_account, pg_store, redb_file_store, session, user};

fn txn(sender: &str, id: &str) -> TxnKey {
    TxnKey {
        sender: user(sender),
        device_id: device("SENDER"),
        txn_id: id.into(),
    }
}

fn message(to: &str, dev: &str, n: u64) -> ToDeviceMessage {
    ToDeviceMessage {
        user_id: user(to),
        device_id: device(dev),
        event: json!({"sender": "@a:test.example", "type": "m.test", "content": {"n": n}}),
    }
}

fn to_device_is_idempotent_and_deleted_after_ack(s: &dyn Store) {
    let t1 = txn("a", "t1");
    let batch = vec![message("b", "BDEV", 1), message("b", "BDEV", 2)];
    assert!(s.send_to_device(&t1, batch.clone()).unwrap());
    // The same transaction again (a retried request) stores nothing.
    assert!(!s.send_to_device(&t1, batch).unwrap());
    let got = s
        .take_to_device(&user("b"), &device("BDEV"), 0, 100)
        .unwrap();
    let contents: Vec<&Value> = got.iter().map(|(_, e)| &e["content"]["n"]).collect();
    assert_eq!(contents, [&json!(1), &json!(2)]);
    let (p1, p2) = (got[0].0, got[1].0);
    assert!(p1 < p2);
    assert_eq!(s.sync_positions().unwrap().messages, p2);
    // Not acknowledged yet: delivered again, at most `limit` at a time.
    assert_eq!(
        s.take_to_device(&user("b"), &device("BDEV"), 0, 1)
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        s.take_to_device(&user("b"), &device("BDEV"), 0, 9)
            .unwrap()
            .len(),
        2
    );
    // Coming back with p1 acknowledges (deletes) the first.
    let rest = s
        .take_to_device(&user("b"), &device("BDEV"), p1, 9)
        .unwrap();
    assert_eq!(rest.iter().map(|r| r.0).collect::<Vec<_>>(), [p2]);
    assert_eq!(
        s.take_to_device(&user("b"), &device("BDEV"), 0, 9)
            .unwrap()
            .len(),
        1
    );
    assert!(
        s.take_to_device(&user("b"), &device("BDEV"), p2, 9)
            .unwrap()
            .is_empty()
    );
    assert!(
        s.take_to_device(&user("b"), &device("BDEV"), 0, 9)
            .unwrap()
            .is_empty()
    );
    // Another device and another sender device's transaction with the same ID are their own.
    let mut other = txn("a", "t1");
    other.device_id = device("OTHER");
    assert!(
        s.send_to_device(&other, vec![message("b", "B2", 3)])
            .unwrap()
    );
    assert!(
        s.take_to_device(&user("b"), &device("BDEV"), 0, 9)
            .unwrap()
            .is_empty()
    );
    let got = s.take_to_device(&user("b"), &device("B2"), 0, 9).unwrap();
    assert_eq!(got.len(), 1);
    assert!(got[0].0 > p2, "positions are never reused");
}

fn a_full_inbox_refuses_the_whole_transaction(s: &dyn Store) {
    let full: Vec<_> = (0..MAX_INBOX as u64)
        .map(|n| message("b", "FULL", n))
        .collect();
    assert!(s.send_to_device(&txn("a", "fill"), full).unwrap());
    let before = s.sync_positions().unwrap().messages;
    let more = vec![message("b", "ROOMY", 0), message("b", "FULL", 0)];
    assert!(matches!(
        s.send_to_device(&txn("a", "more"), more.clone()),
        Err(StoreError::CapReached(_))
    ));
    // Nothing of it was stored, not even the transaction ID or the message that fitted.
    assert_eq!(s.sync_positions().unwrap().messages, before);
    assert!(
        s.take_to_device(&user("b"), &device("ROOMY"), 0, 9)
            .unwrap()
            .is_empty()
    );
    // Once the device has taken its messages, the same transaction goes through.
    s.take_to_device(&user("b"), &device("FULL"), before, 1)
        .unwrap();
    assert!(s.send_to_device(&txn("a", "more"), more).unwrap());
    assert_eq!(
        s.take_to_device(&user("b"), &device("ROOMY"), 0, 9)
            .unwrap()
            .len(),
        1
    );
}

fn account_data_since_shares_the_message_stream(s: &dyn Store) {
    let u = user("ada");
    assert!(s.account_data(&u, "m.x").unwrap().is_none());
    let p1 = s.put_account_data(&u, "m.b", json!({"v": 1})).unwrap();
    let p2 = s.put_account_data(&u, "m.a", json!({"v": 2})).unwrap();
    assert!(p1 < p2);
    let all: Vec<String> = s
        .account_data_since(&u, 0)
        .unwrap()
        .into_iter()
        .map(|r| r.0)
        .collect();
    assert_eq!(all, ["m.a", "m.b"]);
    assert_eq!(
        s.account_data_since(&u, p1).unwrap(),
        [("m.a".to_owned(), json!({"v": 2}))]
    );
    assert!(s.account_data_since(&u, p2).unwrap().is_empty());
    // A to-device message takes the next position of the same stream.
    assert!(
        s.send_to_device(&txn("a", "x"), vec![message("ada", "D", 1)])
            .unwrap()
    );
    let (pos, _) = s.take_to_device(&u, &device("D"), 0, 9).unwrap()[0].clone();
    assert_eq!(pos, p2 + 1);
    let p3 = s.put_account_data(&u, "m.b", json!({"v": 3})).unwrap();
    assert_eq!(p3, pos + 1);
    assert_eq!(s.sync_positions().unwrap().messages, p3);
    assert_eq!(
        s.account_data_since(&u, p2).unwrap(),
        [("m.b".to_owned(), json!({"v": 3}))]
    );
    assert_eq!(s.account_data(&u, "m.b").unwrap(), Some(json!({"v": 3})));
    assert!(s.account_data(&user("other"), "m.b").unwrap().is_none());
    // The cap counts types: a known type can always be replaced, a new one is refused.
    for n in 2..MAX_ACCOUNT_DATA_TYPES {
        s.put_account_data(&u, &format!("t.{n:04}"), json!({}))
            .unwrap();
    }
    let before = s.sync_positions().unwrap().messages;
    assert!(matches!(
        s.put_account_data(&u, "t.new", json!({})),
        Err(StoreError::CapReached(_))
    ));
    assert_eq!(s.sync_positions().unwrap().messages, before);
    s.put_account_data(&u, "m.a", json!({"v": 4})).unwrap();
    assert_eq!(
        s.account_data_since(&u, 0).unwrap().len(),
        MAX_ACCOUNT_DATA_TYPES
    );
}

fn filters_profiles_and_caps(s: &dyn Store) {
    let (u, v) = (user("fred"), user("gina"));
    assert_eq!(s.put_filter(&u, json!({"room": {}})).unwrap(), "0000");
    assert_eq!(s.put_filter(&u, json!({"n": 1})).unwrap(), "0001");
    assert_eq!(s.put_filter(&v, json!({"n": 2})).unwrap(), "0000");
    assert_eq!(s.filter(&u, "0001").unwrap(), Some(json!({"n": 1})));
    assert_eq!(s.filter(&v, "0000").unwrap(), Some(json!({"n": 2})));
    assert!(s.filter(&u, "0002").unwrap().is_none());
    for _ in 2..MAX_FILTERS {
        s.put_filter(&u, json!({})).unwrap();
    }
    assert!(matches!(
        s.put_filter(&u, json!({})),
        Err(StoreError::CapReached(_))
    ));
    assert!(
        s.filter(&u, &format!("{MAX_FILTERS:04}"))
            .unwrap()
            .is_none()
    );

    assert_eq!(s.profile(&u).unwrap(), Profile::default());
    let full = Profile {
        displayname: Some("Fred".into()),
        avatar_url: Some("mxc://test.example/a".into()),
    };
    s.set_profile(&u, full.clone()).unwrap();
    assert_eq!(s.profile(&u).unwrap(), full);
    let half = Profile {
        displayname: Some("F".into()),
        avatar_url: None,
    };
    s.set_profile(&u, half.clone()).unwrap();
    assert_eq!(s.profile(&u).unwrap(), half);
    assert_eq!(s.profile(&v).unwrap(), Profile::default());
}

fn device_list_changes_follow_tracked_users(s: &dyn Store) {
    let (me, b, c) = (user("me"), user("bea"), user("cy"));
    let start = s.sync_positions().unwrap().keys;
    // Tracking oneself is implied and not stored.
    s.track_users(&me, &[b.clone(), me.clone(), b.clone()])
        .unwrap();
    let p1 = s.mark_keys_changed(&b).unwrap();
    let p2 = s.mark_keys_changed(&c).unwrap();
    assert_eq!((p1, p2), (start + 1, start + 2));
    assert_eq!(s.sync_positions().unwrap().keys, p2);
    assert_eq!(s.key_change_position().unwrap(), p2);
    assert_eq!(
        s.device_list_changes(&me, start, p2).unwrap(),
        std::slice::from_ref(&b)
    );
    assert!(s.device_list_changes(&me, p1, p2).unwrap().is_empty());
    assert!(s.device_list_changes(&me, p2, p1).unwrap().is_empty());
    s.track_users(&me, std::slice::from_ref(&c)).unwrap();
    let p3 = s.mark_keys_changed(&me).unwrap();
    s.mark_keys_changed(&b).unwrap();
    let p5 = s.mark_keys_changed(&c).unwrap();
    assert_eq!(
        s.device_list_changes(&me, start, p5).unwrap(),
        [b.clone(), c.clone(), me.clone()]
    );
    assert_eq!(
        s.device_list_changes(&me, p3 - 1, p3).unwrap(),
        std::slice::from_ref(&me)
    );
    // Others see only what concerns them.
    assert_eq!(
        s.device_list_changes(&b, start, p5).unwrap(),
        std::slice::from_ref(&b)
    );
    // A log commit with new ops changes the device lists of every bound user.
    let d = did(20);
    s.commit_log(commit(&d, None, &[1], &["lou"])).unwrap();
    let p6 = s.sync_positions().unwrap().keys;
    assert_eq!(p6, p5 + 1);
    assert_eq!(s.key_changes(p5, p6).unwrap(), [user("lou")]);
}

fn password_change_and_deactivation(s: &dyn Store) {
    let u = user("dee");
    s.create_account(new_account("dee", Some(session("D1", 1, None)), None))
        .unwrap();
    s.create_session(&u, session("D2", 2, None)).unwrap();
    s.create_session(&u, session("D3", 3, None)).unwrap();
    s.set_password(&u, "$argon2id$new".into(), Some(&device("D2")), false)
        .unwrap();
    assert_eq!(s.devices(&u).unwrap().len(), 3);
    s.set_password(&u, "$argon2id$newer".into(), Some(&device("D2")), true)
        .unwrap();
    let left: Vec<String> = s
        .devices(&u)
        .unwrap()
        .iter()
        .map(|d| d.device_id.to_string())
        .collect();
    assert_eq!(left, ["D2"]);
    assert!(s.token_owner(&[1; 32]).unwrap().is_none());
    assert!(s.token_owner(&[2; 32]).unwrap().is_some());
    let acct = s.account(&u).unwrap().unwrap();
    assert_eq!(
        (acct.password_hash.as_deref(), acct.deactivated),
        (Some("$argon2id$newer"), false)
    );
    assert!(matches!(
        s.set_password(&user("nobody"), "x".into(), None, true),
        Err(StoreError::NotFound(_))
    ));
    // A removed device's undelivered messages go with it.
    assert!(
        s.send_to_device(&txn("a", "d"), vec![message("dee", "D2", 1)])
            .unwrap()
    );
    s.delete_devices(&u, &[device("D2")]).unwrap();
    s.create_session(&u, session("D2", 4, None)).unwrap();
    assert!(
        s.take_to_device(&u, &device("D2"), 0, 9)
            .unwrap()
            .is_empty()
    );

    s.set_profile(
        &u,
        Profile {
            displayname: Some("Dee".into()),
            avatar_url: None,
        },
    )
    .unwrap();
    s.put_account_data(&u, "m.push_rules", json!({})).unwrap();
    let v = s.create_backup_version(&u, ALG.into(), json!({})).unwrap();
    s.put_backup_keys(&u, v, vec![("!r".into(), "s".into(), key(1, false))])
        .unwrap();
    s.deactivate_account(&u).unwrap();
    let acct = s.account(&u).unwrap().unwrap();
    assert_eq!((acct.password_hash, acct.deactivated), (None, true));
    assert!(s.devices(&u).unwrap().is_empty());
    assert!(s.token_owner(&[4; 32]).unwrap().is_none());
    assert_eq!(s.profile(&u).unwrap(), Profile::default());
    assert!(s.account_data_since(&u, 0).unwrap().is_empty());
    assert!(s.backup_version(&u, None).unwrap().is_none());
    assert!(matches!(
        s.create_session(&u, session("D9", 9, None)),
        Err(StoreError::Deactivated)
    ));
    // The user ID stays taken.
    assert!(matches!(
        s.create_account(new_account("dee", None, None)),
        Err(StoreError::UserInUse(_))
    ));
    assert!(matches!(
        s.deactivate_account(&user("nobody")),
        Err(StoreError::NotFound(_))
    ));
}

const ALG: &str = "m.megolm_backup.v1.curve25519-aes-sha2";

fn key(index: u64, verified: bool) -> Value {
    json!({"first_message_index": index, "forwarded_count": 0, "is_verified": verified,
           "session_data": {"c": index}})
}

fn backup_versions_are_never_reused(s: &dyn Store) {
    let u = user("kim");
    assert!(s.backup_version(&u, None).unwrap().is_none());
    assert!(matches!(
        s.put_backup_keys(&u, 1, vec![]),
        Err(StoreError::NotFound(_))
    ));
    let v1 = s
        .create_backup_version(&u, ALG.into(), json!({"k": 1}))
        .unwrap();
    assert_eq!(v1, 1);
    let got = s.backup_version(&u, None).unwrap().unwrap();
    assert_eq!(
        (got.version, got.algorithm.as_str(), got.etag, got.count),
        (v1, ALG, 0, 0)
    );
    assert_eq!(got.auth_data, json!({"k": 1}));
    s.update_backup_version(&u, v1, json!({"k": 2})).unwrap();
    assert_eq!(
        s.backup_version(&u, Some(v1)).unwrap().unwrap().auth_data,
        json!({"k": 2})
    );
    let v2 = s.create_backup_version(&u, ALG.into(), json!({})).unwrap();
    assert_eq!(s.backup_version(&u, None).unwrap().unwrap().version, v2);
    assert!(matches!(
        s.put_backup_keys(&u, v1, vec![]),
        Err(StoreError::WrongBackupVersion { current: Some(c) }) if c == v2
    ));
    s.delete_backup_version(&u, v2).unwrap();
    assert!(s.backup_version(&u, Some(v2)).unwrap().is_none());
    assert_eq!(s.backup_version(&u, None).unwrap().unwrap().version, v1);
    for bad in [
        s.delete_backup_version(&u, v2),
        s.update_backup_version(&u, v2, json!({})),
        s.update_backup_version(&u, 99, json!({})),
        s.backup_keys(&u, v2, &BackupScope::All).map(|_| ()),
    ] {
        assert!(matches!(bad, Err(StoreError::NotFound(_))), "{bad:?}");
    }
    let v3 = s.create_backup_version(&u, ALG.into(), json!({})).unwrap();
    assert_eq!(v3, v2 + 1);
    // Another user's numbers are their own.
    assert_eq!(
        s.create_backup_version(&user("lee"), ALG.into(), json!({}))
            .unwrap(),
        1
    );
}

fn backup_keys_keep_the_better_one(s: &dyn Store) {
    let u = user("max");
    let v = s.create_backup_version(&u, ALG.into(), json!({})).unwrap();
    let put = |keys: Vec<(&str, &str, Value)>| {
        let keys = keys
            .into_iter()
            .map(|(r, sid, k)| (r.to_owned(), sid.to_owned(), k))
            .collect();
        s.put_backup_keys(&u, v, keys).unwrap()
    };
    let first = put(vec![("!r1", "s1", key(5, false))]);
    assert_eq!((first.count, first.etag), (1, 1));
    // Worse (later index): kept out, etag unchanged.
    assert_eq!(put(vec![("!r1", "s1", key(9, false))]).etag, 1);
    // Better (earlier index), then verified beats unverified.
    assert_eq!(put(vec![("!r1", "s1", key(2, false))]).etag, 2);
    let last = put(vec![("!r1", "s1", key(7, true))]);
    assert_eq!((last.count, last.etag), (1, 3));
    // In one upload, a later duplicate competes with the earlier one.
    let many = put(vec![
        ("!r1", "s2", key(4, false)),
        ("!r1", "s2", key(3, false)),
        ("!r1", "s2", key(8, false)),
        ("!r2", "s1", key(1, false)),
        ("!r1", "s1", key(0, false)),
    ]);
    assert_eq!((many.count, many.etag), (3, 4));
    assert_eq!(s.backup_version(&u, None).unwrap().unwrap(), many);
    let all = s.backup_keys(&u, v, &BackupScope::All).unwrap();
    let ids: Vec<(&str, &str)> = all
        .iter()
        .map(|(r, s, _)| (r.as_str(), s.as_str()))
        .collect();
    assert_eq!(ids, [("!r1", "s1"), ("!r1", "s2"), ("!r2", "s1")]);
    assert_eq!(all[0].2, key(7, true));
    assert_eq!(all[1].2, key(3, false));
    let room = BackupScope::Room("!r1".into());
    assert_eq!(s.backup_keys(&u, v, &room).unwrap().len(), 2);
    let one = BackupScope::Session("!r2".into(), "s1".into());
    assert_eq!(
        s.backup_keys(&u, v, &one).unwrap(),
        [("!r2".into(), "s1".into(), key(1, false))]
    );
    // Deleting keys changes count and etag; deleting nothing changes neither.
    let after = s.delete_backup_keys(&u, v, &room).unwrap();
    assert_eq!((after.count, after.etag), (1, 5));
    let same = s.delete_backup_keys(&u, v, &room).unwrap();
    assert_eq!((same.count, same.etag), (1, 5));
    let gone = s.delete_backup_keys(&u, v, &one).unwrap();
    assert_eq!((gone.count, gone.etag), (0, 6));
    assert!(s.backup_keys(&u, v, &BackupScope::All).unwrap().is_empty());
    // A deleted version's keys go with it.
    put(vec![("!r3", "s", key(1, false))]);
    s.delete_backup_version(&u, v).unwrap();
    let v2 = s.create_backup_version(&u, ALG.into(), json!({})).unwrap();
    assert!(s.backup_keys(&u, v2, &BackupScope::All).unwrap().is_empty());
    assert!(matches!(
        s.delete_backup_keys(&u, v, &BackupScope::All),
        Err(StoreError::NotFound(_))
    ));
}

contract!(
    to_device_is_idempotent_and_deleted_after_ack,
    account_data_since_shares_the_message_stream,
    filters_profiles_and_caps,
    device_list_changes_follow_tracked_users,
    password_change_and_deactivation,
    backup_versions_are_never_reused,
    backup_keys_keep_the_better_one,
);

/// PostgreSQL only: filling an inbox to the cap costs redb a range count per message
/// (minutes in a debug build); the rule is the same code path on both.
#[test]
fn postgres_a_full_inbox_refuses_the_whole_transaction() {
    a_full_inbox_refuses_the_whole_transaction(pg_store().as_ref());
}
