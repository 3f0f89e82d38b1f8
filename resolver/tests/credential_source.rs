//! A binding credential as an additional source (spec §10.5), against origin servers on
//! loopback: it agrees with or is contradicted by an answer that stands on its own, carries
//! the answer only when nothing could be reached, and never outweighs a verified log.

#[path = "support/attest.rs"]
mod attest;
mod support;

use roam_identity_core::UserId;
use roam_resolver::{
    CacheStore, ManualClock, OfferedCredential, ResolveError, ResolveStatus, Resolver, Source,
    resolve_user_with_credentials,
};
use serde_json::{Value, json};
use support::*;

fn offered(credential: Value, doc: Option<Value>, bundle: Option<Value>) -> OfferedCredential {
    OfferedCredential {
        credential,
        from: "alice.vc.json".to_owned(),
        issuer_document: doc,
        bundle,
    }
}

fn codes(r: &roam_resolver::Resolution) -> Vec<&str> {
    r.notices.iter().map(|n| n.code.as_str()).collect()
}

fn unreachable_reasons(got: roam_resolver::ResolveResult) -> String {
    match got {
        Err(ResolveError::Unreachable { tried, .. }) => tried.join("\n"),
        other => panic!("wanted unreachable, got {other:?}"),
    }
}

/// a.test hosts alice; her credential from a.test and her bundle as a.test serves it.
async fn alice_on_a() -> (Origin, UserId, Account, Value, Value) {
    let a = Origin::start("a.test", 40).await;
    let (alice, acct) = alice_account();
    a.host(&alice, &acct);
    let cred = a.credential(&alice, &acct.did(), acct.head(), (NOW - DAY, NOW + DAY));
    let bundle = a.served.lock().unwrap().users[alice.as_str()].clone();
    (a, alice, acct, cred, bundle)
}

#[tokio::test]
async fn a_credential_that_agrees_is_noted_on_the_online_answer() {
    let (a, alice, acct, cred, _) = alice_on_a().await;
    let clock = ManualClock::new(NOW);
    let net = resolver(&[&a], &clock);
    let r = resolve_user_with_credentials(&net, &net, &alice, &[offered(cred, None, None)])
        .await
        .unwrap();
    assert_eq!(r.status, ResolveStatus::Verified);
    assert_eq!(r.did, acct.did());
    assert!(codes(&r).contains(&"credential_agrees"), "{:?}", r.notices);
    assert!(
        a.requests()
            .iter()
            .any(|l| l == "GET /.well-known/did.json"),
        "the issuer's did:web document was not fetched: {:?}",
        a.requests()
    );
}

#[tokio::test]
async fn with_the_origin_down_the_credential_and_its_bundle_carry_the_answer() {
    let (mut a, alice, acct, cred, bundle) = alice_on_a().await;
    let did_doc = a.did_doc();
    a.stop().await;
    let clock = ManualClock::new(NOW);
    let net = resolver(&[&a], &clock);
    let plain = net.resolve_user(&alice).await;
    assert!(
        matches!(plain, Err(ResolveError::Unreachable { .. })),
        "{plain:?}"
    );

    let o = offered(cred, Some(did_doc), Some(bundle));
    let r = resolve_user_with_credentials(&net, &net, &alice, &[o])
        .await
        .unwrap();
    assert_eq!(r.status, ResolveStatus::Credential);
    assert_eq!(r.did, acct.did());
    assert_eq!(r.update_key, acct.key.verifying_key());
    assert!(r.user_ids.contains(&alice));
    match &r.source {
        Source::Credential { issuer, from, log } => {
            assert_eq!(issuer.as_str(), "a.test");
            assert_eq!(from, "alice.vc.json");
            assert!(log.contains("bundle given"), "{log}");
        }
        other => panic!("source {other:?}"),
    }
    let c = codes(&r);
    assert!(
        c.contains(&"binding_from_credential") && c.contains(&"origin_unreachable"),
        "{c:?}"
    );
    let n = r
        .notices
        .iter()
        .find(|n| n.code == "binding_from_credential")
        .unwrap();
    assert_eq!((n.at, n.until), (Some(NOW - DAY), Some(NOW + DAY)));
    assert!(
        r.explanation().contains("credential"),
        "{}",
        r.explanation()
    );
    assert_eq!(r.to_wire().status, "credential");
    let wire = serde_json::to_value(r.to_wire()).unwrap();
    assert_eq!(wire["source"]["kind"], "credential");
}

#[tokio::test]
async fn keys_fetched_earlier_check_the_credential_when_the_issuer_is_down() {
    let (mut a, alice, _acct, cred, bundle) = alice_on_a().await;
    let clock = ManualClock::new(NOW);
    let net = resolver(&[&a], &clock);
    net.resolve_user(&alice).await.unwrap();
    a.stop().await;
    let r = resolve_user_with_credentials(&net, &net, &alice, &[offered(cred, None, Some(bundle))])
        .await
        .unwrap();
    assert_eq!(r.status, ResolveStatus::Credential);
}

#[tokio::test]
async fn without_keys_of_the_issuer_the_credential_carries_nothing() {
    let (mut a, alice, _acct, cred, bundle) = alice_on_a().await;
    a.stop().await;
    let clock = ManualClock::new(NOW);
    let net = resolver(&[&a], &clock);
    let got =
        resolve_user_with_credentials(&net, &net, &alice, &[offered(cred, None, Some(bundle))])
            .await;
    let why = unreachable_reasons(got);
    assert!(
        why.contains("the credential from alice.vc.json: no keys of a.test"),
        "{why}"
    );
}

#[tokio::test]
async fn tampered_expired_and_foreign_credentials_are_refused() {
    let (mut a, alice, acct, cred, bundle) = alice_on_a().await;
    let doc = a.did_doc();
    let b = Origin::start("b.test", 41).await;
    a.stop().await;
    let clock = ManualClock::new(NOW);
    let net = resolver(&[&a], &clock);
    let mut tampered = cred.clone();
    tampered["credentialSubject"]["hosting"] = json!(false);
    let expired = a.credential(&alice, &acct.did(), acct.head(), (NOW - 9 * DAY, NOW - DAY));
    let by_b = b.credential(&alice, &acct.did(), acct.head(), (NOW - DAY, NOW + DAY));
    for (c, d, want) in [
        (tampered, doc.clone(), "bad_proof"),
        (expired, doc.clone(), "expired"),
        // b.test's credential about a user ID of a.test, with b.test's own document.
        (by_b, b.did_doc(), "wrong_issuer"),
        // a.test's credential checked with b.test's document.
        (cred, b.did_doc(), "wrong_issuer"),
    ] {
        let o = offered(c, Some(d), Some(bundle.clone()));
        let why =
            unreachable_reasons(resolve_user_with_credentials(&net, &net, &alice, &[o]).await);
        assert!(why.contains(want), "wanted {want}: {why}");
    }
}

#[tokio::test]
async fn a_log_older_than_the_credentials_head_is_refused() {
    let (mut a, alice, mut acct, _, old_bundle) = alice_on_a().await;
    acct.append(device("PHONE", 60));
    let newer = a.credential(&alice, &acct.did(), acct.head(), (NOW - DAY, NOW + DAY));
    let doc = a.did_doc();
    a.stop().await;
    let clock = ManualClock::new(NOW);
    let net = resolver(&[&a], &clock);
    let o = offered(newer, Some(doc), Some(old_bundle));
    let why = unreachable_reasons(resolve_user_with_credentials(&net, &net, &alice, &[o]).await);
    assert!(why.contains("does not contain the head"), "{why}");
}

#[tokio::test]
async fn a_contradicting_credential_never_outweighs_the_verified_log() {
    let (mut a, alice, acct, _, _) = alice_on_a().await;
    // Another account that also claims alice, and a credential a.test signed for it (say,
    // before alice's user ID was bound to her current account).
    let other = Account::new(8, &alice, &["a.test"]);
    let cred = a.credential(&alice, &other.did(), other.head(), (NOW - DAY, NOW + DAY));
    let other_bundle = a.bundle(
        &other.did(),
        other.values(),
        vec![a.attest(Some(&alice), &other, true)],
        vec![a.key_doc()],
    );
    let clock = ManualClock::new(NOW);
    let store = CacheStore::in_memory().unwrap();

    // Online: the verified log wins, the credential is named as contradicted.
    let net = resolver(&[&a], &clock);
    let cached = cached_on(net.clone(), &store, &clock);
    let o = offered(cred.clone(), None, Some(other_bundle.clone()));
    let r = resolve_user_with_credentials(&cached, &net, &alice, std::slice::from_ref(&o))
        .await
        .unwrap();
    assert_eq!((r.status, &r.did), (ResolveStatus::Verified, &acct.did()));
    assert!(
        codes(&r).contains(&"credential_contradicted"),
        "{:?}",
        r.notices
    );
    assert!(
        r.warnings.iter().any(|w| w.contains("the log wins")),
        "{:?}",
        r.warnings
    );

    // Origin down, the cache's verified answer is stale: still the log, not the credential.
    a.stop().await;
    clock.advance(2 * TEST_POLICY.positive_ttl_ms);
    let r = resolve_user_with_credentials(&cached, &net, &alice, std::slice::from_ref(&o))
        .await
        .unwrap();
    assert_eq!((r.status, &r.did), (ResolveStatus::Stale, &acct.did()));
    assert!(
        codes(&r).contains(&"credential_contradicted"),
        "{:?}",
        r.notices
    );

    // Nothing verified at all: the credential's account log must claim alice itself.
    let unclaimed = Account::new(9, &user("@someone:a.test"), &["a.test"]);
    let cred = a.credential(
        &alice,
        &unclaimed.did(),
        unclaimed.head(),
        (NOW - DAY, NOW + DAY),
    );
    let bundle = a.bundle(
        &unclaimed.did(),
        unclaimed.values(),
        vec![],
        vec![a.key_doc()],
    );
    let fresh = resolver(&[&a], &clock);
    let o = offered(cred, Some(a.did_doc()), Some(bundle));
    let why =
        unreachable_reasons(resolve_user_with_credentials(&fresh, &fresh, &alice, &[o]).await);
    assert!(why.contains("does not claim @alice:a.test"), "{why}");
}

#[tokio::test]
async fn a_reachable_server_that_denies_the_user_outweighs_a_credential() {
    let (a, alice, _acct, cred, bundle) = alice_on_a().await;
    a.unpublish_user(&alice);
    let clock = ManualClock::new(NOW);
    let net = resolver(&[&a], &clock);
    let got =
        resolve_user_with_credentials(&net, &net, &alice, &[offered(cred, None, Some(bundle))])
            .await;
    assert!(matches!(got, Err(ResolveError::NotFound { .. })), "{got:?}");
}

#[tokio::test]
async fn without_a_bundle_the_credentials_did_is_resolved_from_what_is_known() {
    let (mut a, alice, acct, cred, _) = alice_on_a().await;
    let doc = a.did_doc();
    a.stop().await;
    // A LAN peer that knows alice's account by its DID only (404 for the user ID).
    let b = a.bundle(&acct.did(), acct.values(), vec![], vec![a.key_doc()]);
    let peer = serve_router(axum::Router::new().route(
        "/_roam/v1/accounts/{did}",
        axum::routing::get(move || {
            let b = b.clone();
            async move { axum::Json(b) }
        }),
    ))
    .await;
    let clock = ManualClock::new(NOW);
    let net = resolver_with(&[&a], &clock, |c| c.lan_peers.push(peer.clone()));
    let r = resolve_user_with_credentials(&net, &net, &alice, &[offered(cred, Some(doc), None)])
        .await
        .unwrap();
    assert_eq!(r.status, ResolveStatus::Credential);
    match &r.source {
        Source::Credential { log, .. } => assert!(log.ends_with("(lan)"), "{log}"),
        other => panic!("source {other:?}"),
    }
}
