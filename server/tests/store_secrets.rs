//! Registration tokens at rest: hashed, listed by ID, revocable by token or ID, and tokens
//! stored in the clear by earlier versions re-keyed by their hash on open.

use redb::{ReadableDatabase, ReadableTable};
use roam_server::RedbStore;
use roam_server::store::{RegistrationToken, Store, tables};

fn token(text: &str) -> RegistrationToken {
    RegistrationToken {
        token: text.into(),
        uses_allowed: Some(2),
        completed: 0,
        expiry_time: None,
        created_at: 1,
    }
}

#[test]
fn tokens_are_hashed_listed_by_id_and_revocable_by_id() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open_dir(dir.path()).unwrap();
    store
        .create_registration_token(token("first-token"))
        .unwrap();
    store
        .create_registration_token(token("second-token"))
        .unwrap();
    let listed = store.registration_tokens().unwrap();
    assert_eq!(listed.len(), 2);
    assert!(
        listed
            .iter()
            .all(|t| t.token.len() == 8 && !t.token.contains("token"))
    );
    assert!(store.registration_token("first-token").unwrap().is_some());
    let id = store
        .registration_token("second-token")
        .unwrap()
        .unwrap()
        .token;
    store.revoke_registration_token(&id).unwrap();
    assert!(store.registration_token("second-token").unwrap().is_none());
    store.revoke_registration_token("first-token").unwrap();
    assert!(store.registration_tokens().unwrap().is_empty());
}

#[test]
fn plain_tokens_of_earlier_versions_are_rekeyed() {
    let dir = tempfile::tempdir().unwrap();
    drop(RedbStore::open_dir(dir.path()).unwrap());
    let path = dir.path().join("roam.redb");
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut t = txn.open_table(tables::REGISTRATION_TOKENS).unwrap();
            let row = r#"{"uses_allowed":null,"completed":0,"expiry_time":null,"created_at":1}"#;
            t.insert("old-plain-token", row).unwrap();
        }
        txn.commit().unwrap();
    }
    let store = RedbStore::open_dir(dir.path()).unwrap();
    assert!(
        store
            .registration_token("old-plain-token")
            .unwrap()
            .is_some()
    );
    drop(store);
    let db = redb::Database::create(&path).unwrap();
    let txn = db.begin_read().unwrap();
    let t = txn.open_table(tables::REGISTRATION_TOKENS).unwrap();
    for entry in t.iter().unwrap() {
        let (k, _) = entry.unwrap();
        assert_eq!(k.value().len(), 64, "{}", k.value());
    }
}
