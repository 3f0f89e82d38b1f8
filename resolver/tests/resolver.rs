//! The resolver end to end against in-process origin servers on loopback: every status,
//! every error, the cache rules, LAN answers, and the SSRF guard.

#[path = "support/attest.rs"]
mod attest;
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::response::Redirect;
use axum::routing::get;
use roam_identity_core::bundle;
use roam_identity_core::log::{self, Action};
use roam_identity_core::{KeyCommitment, SigningKey, signed};
use roam_resolver::{
    CachePolicy, CacheStore, Cached, FetchError, ManualClock, ResolveError, ResolveStatus,
    Resolver, ResolverConfig, SafeClient, Source,
};
use serde_json::{Value, json};
use support::*;
use url::Url;

fn cached<R: Resolver>(inner: R, clock: &ManualClock) -> Cached<R> {
    cached_on(inner, &CacheStore::in_memory().unwrap(), clock)
}

// ---- verified answers and following the account's servers --------------------------------

#[tokio::test]
async fn verified_user_with_reverifiable_bundle() {
    let a = Origin::start("a.test", 1).await;
    let (alice, mut acct) = alice_account();
    acct.append(device("PHONE", 9));
    a.host(&alice, &acct);
    let r = resolve_once(&[&a], &alice).await.unwrap();

    assert_eq!(r.status, ResolveStatus::Verified);
    assert_eq!(r.did, acct.did());
    assert_eq!(r.update_key, acct.key.verifying_key());
    assert_eq!(r.servers, vec![name("a.test")]);
    assert_eq!(r.user_ids, vec![alice.clone()]);
    assert_eq!(r.head, acct.head());
    assert_eq!(r.devices.len(), 1);
    assert_eq!(r.verified_at, NOW);
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    assert!(matches!(&r.source, Source::Origin { server, .. } if server == &name("a.test")));
    // The evidence handed back verifies anywhere, offline.
    let vb = bundle::verify(&r.bundle, Some(&acct.did()), NOW).unwrap();
    assert_eq!(vb.log.state.head, acct.head());
    assert!(r.explanation().contains("verified online at"));
    let wire = serde_json::to_value(r.to_wire()).unwrap();
    assert_eq!(wire["status"], "verified");
    assert_eq!(wire["user_id"], "@alice:a.test");
    assert_eq!(wire["update_key"], json!(r.update_key_multikey()));
}

#[tokio::test]
async fn follows_the_move_to_the_new_primary_for_newer_ops() {
    let a = Origin::start("a.test", 1).await;
    let b = Origin::start("b.test", 2).await;
    // a.test recorded the move and still answers for @alice:a.test (a forwarding record).
    let (alice, mut acct) = alice_moved(&a, &["b.test", "a.test"]);
    // b.test has newer ops that a.test never saw.
    acct.append(device("LAPTOP", 5));
    b.publish_log(&acct.did(), acct.values());

    let r = resolve_once(&[&a, &b], &alice).await.unwrap();
    assert_eq!(r.status, ResolveStatus::Verified);
    assert_eq!(r.head, acct.head(), "the op only b.test has must be merged");
    assert_eq!(r.servers, vec![name("b.test"), name("a.test")]);
    assert!(r.devices.keys().any(|d| d.as_str() == "LAPTOP"));
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
}

#[tokio::test]
async fn fails_over_to_a_backup_when_the_primary_is_down() {
    let a = Origin::start("a.test", 1).await;
    let mut b = Origin::start("b.test", 2).await;
    let c = Origin::start("c.test", 3).await;
    let (alice, mut acct) = alice_moved(&a, &["b.test", "c.test"]);
    acct.append(device("TABLET", 4));
    c.publish_log(&acct.did(), acct.values());
    b.stop().await;

    let r = resolve_once(&[&a, &b, &c], &alice).await.unwrap();
    assert_eq!(r.status, ResolveStatus::Verified);
    assert_eq!(r.head, acct.head(), "the backup's newer op must be merged");
    assert!(
        r.warnings.iter().any(|w| w.contains("b.test")),
        "the failed primary is named: {:?}",
        r.warnings
    );
}

#[tokio::test]
async fn a_source_serving_invalid_ops_is_dropped_and_named() {
    let a = Origin::start("a.test", 1).await;
    let b = Origin::start("b.test", 2).await;
    let c = Origin::start("c.test", 3).await;
    let (alice, mut acct) = alice_moved(&a, &["b.test", "c.test"]);
    acct.append(device("TABLET", 4));
    // b.test tampers with the newest op: its signature no longer verifies.
    let mut forged = acct.values();
    let last = forged.last_mut().unwrap();
    last["device_id"] = json!("EVIL");
    b.publish_log(&acct.did(), forged);
    c.publish_log(&acct.did(), acct.values());

    let r = resolve_once(&[&a, &b, &c], &alice).await.unwrap();
    assert_eq!(r.head, acct.head(), "c.test's valid ops are used");
    assert!(!r.devices.keys().any(|d| d.as_str() == "EVIL"));
    assert!(
        r.warnings
            .iter()
            .any(|w| w.contains("b.test") && w.contains("do not verify")),
        "{:?}",
        r.warnings
    );
}

#[tokio::test]
async fn a_recovery_rotate_wins_over_the_compromised_branch() {
    let a = Origin::start("a.test", 1).await;
    let (alice, mut acct) = alice_account();
    let fork_point = acct.state.clone();
    // The (stolen) update key adds a device...
    acct.append(device("THIEF", 66));
    // ...and the owner recovers with the committed key, forking from before it.
    let new_next = SigningKey::from_bytes(&[200; 32]);
    let rotate = log::next_op(
        &fork_point,
        acct.t + 1000,
        Action::Rotate {
            update_key: acct.recovery.verifying_key(),
            next_key: KeyCommitment::to_key(&new_next.verifying_key()),
        },
    )
    .sign(&acct.recovery);
    acct.ops.push(rotate.clone());
    a.host(&alice, &acct);

    let r = resolve_once(&[&a], &alice).await.unwrap();
    assert_eq!(r.head, rotate.hash);
    assert_eq!(r.update_key, acct.recovery.verifying_key());
    assert!(r.devices.is_empty(), "the thief's device was superseded");
    // The superseded op is kept in the bundle as evidence.
    assert_eq!(r.bundle.log.len(), 3);
}

// ---- errors -----------------------------------------------------------------------------

#[tokio::test]
async fn not_found_when_the_origin_has_no_such_user() {
    let a = Origin::start("a.test", 1).await;
    let err = resolve_once(&[&a], &user("@nobody:a.test"))
        .await
        .unwrap_err();
    assert!(matches!(err, ResolveError::NotFound { .. }), "{err:?}");
    assert_eq!(err.class(), "not_found");
}

#[tokio::test]
async fn unbound_unless_both_directions_hold() {
    let a = Origin::start("a.test", 1).await;
    let b = Origin::start("b.test", 2).await;
    let clock = ManualClock::new(NOW);
    let res = resolver(&[&a, &b], &clock);

    // The log claims @alice:a.test, but a.test only attests hosting, not the user ID.
    let (alice, acct) = alice_account();
    let hosting_only = a.attest(None, &acct, true);
    a.publish_user(
        &alice,
        a.bundle(
            &acct.did(),
            acct.values(),
            vec![hosting_only],
            vec![a.key_doc()],
        ),
    );
    assert_unbound(res.resolve_user(&alice).await, "does not attest");

    // b.test attests @bob:b.test for an account whose log never claimed it.
    let bob = user("@bob:b.test");
    let other = Account::new(8, &user("@carol:a.test"), &["b.test"]);
    let att = b.attest(Some(&bob), &other, true);
    b.publish_user_bundle(&bob, &other.did(), other.values(), vec![att]);
    assert_unbound(res.resolve_user(&bob).await, "does not claim");

    // An expired attestation does not bind online.
    let dave = user("@dave:a.test");
    let d = Account::new(9, &dave, &["a.test"]);
    let old = a.attest_at(
        Some(&dave),
        &d.did(),
        d.head(),
        true,
        NOW - 10 * DAY,
        NOW - 9 * DAY,
    );
    a.publish_user_bundle(&dave, &d.did(), d.values(), vec![old]);
    assert_unbound(res.resolve_user(&dave).await, "expired");
}

#[tokio::test]
async fn equivocation_is_reported_with_both_signed_ops() {
    let a = Origin::start("a.test", 1).await;
    let (alice, mut acct) = alice_account();
    let x = acct.sibling(device("ONE", 1), acct.t + 1000);
    let y = acct.sibling(device("TWO", 2), acct.t + 1000);
    acct.ops.push(x.clone());
    acct.ops.push(y.clone());
    let att = a.attest(Some(&alice), &acct, true);
    a.publish_user_bundle(&alice, &acct.did(), acct.values(), vec![att]);
    let err = resolve_once(&[&a], &alice).await.unwrap_err();
    let ResolveError::Equivocation { a: ea, b: eb } = &err else {
        panic!("expected equivocation, got {err:?}");
    };
    let mut got = [ea.hash, eb.hash];
    got.sort();
    let mut want = [x.hash, y.hash];
    want.sort();
    assert_eq!(got, want);
    // The evidence is the signed ops themselves: both verify under the account key.
    for op in [&ea, &eb] {
        let key_id = log::key_id_for(&acct.key.verifying_key());
        signed::verify(
            &op.value,
            acct.did().as_str(),
            &key_id,
            &acct.key.verifying_key(),
        )
        .unwrap();
        assert_eq!(op.op.prev, Some(acct.ops[0].hash));
    }
    let wire = err.to_wire();
    assert_eq!(wire.error, "equivocation");
    assert!(wire.evidence.is_some());
}

#[tokio::test]
async fn invalid_when_the_origin_serves_a_tampered_log() {
    let a = Origin::start("a.test", 1).await;
    let (alice, acct) = alice_account();
    let mut ops = acct.values();
    ops[0]["servers"] = json!(["evil.test"]);
    let att = a.attest(Some(&alice), &acct, true);
    a.publish_user_bundle(&alice, &acct.did(), ops, vec![att]);
    let err = resolve_once(&[&a], &alice).await.unwrap_err();
    assert!(matches!(err, ResolveError::Invalid(_)), "{err:?}");
    assert_eq!(err.class(), "invalid");
}

/// Key documents are only self-signed: a bundle may carry one "for c.test" minted by anyone.
/// Online, c.test's own keys decide, and the bundle is refused.
#[tokio::test]
async fn invalid_when_a_carried_key_document_disagrees_with_the_servers_own() {
    let a = Origin::start("a.test", 1).await;
    let c = Origin::start("c.test", 3).await;
    let alice = user("@alice:a.test");
    let mallory_c = user("@alice:c.test");
    let mut acct = Account::new(7, &alice, &["a.test"]);
    acct.append(Action::Claim {
        user_id: mallory_c.clone(),
    });
    let (forged_doc, forged_att) = minted("c.test", &forger(99), &mallory_c, &acct, NOW - DAY);
    // Offline this bundle verifies: the forged document signs the forged attestation.
    let b = a.bundle(
        &acct.did(),
        acct.values(),
        vec![a.attest(Some(&alice), &acct, true), forged_att],
        vec![a.key_doc(), forged_doc],
    );
    assert!(bundle::verify(&bundle::Bundle::from_value(&b).unwrap(), None, NOW).is_ok());
    a.publish_user(&alice, b);

    let err = resolve_once(&[&a, &c], &alice).await.unwrap_err();
    let ResolveError::Invalid(reason) = &err else {
        panic!("expected invalid, got {err:?}");
    };
    assert!(reason.contains("c.test"), "{reason}");
}

#[tokio::test]
async fn unreachable_when_the_origin_is_down_and_no_peer_is_known() {
    let mut a = Origin::start("a.test", 1).await;
    let alice = user("@alice:a.test");
    let clock = ManualClock::new(NOW);
    let res = resolver(&[&a], &clock);
    a.stop().await;
    let err = res.resolve_user(&alice).await.unwrap_err();
    assert!(
        matches!(&err, ResolveError::Unreachable { tried, .. } if !tried.is_empty()),
        "{err:?}"
    );
    assert_eq!(err.class(), "unreachable");
}

// ---- DID resolution -----------------------------------------------------------------------

#[tokio::test]
async fn resolves_a_did_via_a_hint_and_not_found_elsewhere() {
    let a = Origin::start("a.test", 1).await;
    let b = Origin::start("b.test", 2).await;
    let (alice, acct) = alice_account();
    a.host(&alice, &acct);
    let clock = ManualClock::new(NOW);
    let res = resolver(&[&a, &b], &clock);
    let r = res
        .resolve_did_via(&acct.did(), &[name("a.test")])
        .await
        .unwrap();
    assert_eq!(r.status, ResolveStatus::Verified);
    assert_eq!(r.user_ids, vec![alice.clone()]);
    assert_eq!(r.user_id, Some(alice.clone()));

    let stranger = Account::new(8, &user("@x:b.test"), &["b.test"]);
    let err = res
        .resolve_did_via(&stranger.did(), &[name("b.test")])
        .await
        .unwrap_err();
    assert!(matches!(err, ResolveError::NotFound { .. }), "{err:?}");
    let err = res.resolve_did(&stranger.did()).await.unwrap_err();
    assert!(matches!(err, ResolveError::NotFound { .. }), "{err:?}");
}

// ---- the cache -----------------------------------------------------------------------------

#[tokio::test]
async fn cached_within_ttl_then_stale_when_the_origin_is_gone() {
    let mut a = Origin::start("a.test", 1).await;
    let (alice, acct) = alice_account();
    a.host(&alice, &acct);
    let clock = ManualClock::new(NOW);
    let res = cached(resolver(&[&a], &clock), &clock);

    assert_eq!(
        res.resolve_user(&alice).await.unwrap().status,
        ResolveStatus::Verified
    );
    a.stop().await;
    clock.advance(30_000);
    let r = res.resolve_user(&alice).await.unwrap();
    assert_eq!(r.status, ResolveStatus::Cached, "served without the origin");
    assert_eq!(r.verified_at, NOW);
    let r = res.resolve_did(&acct.did()).await.unwrap();
    assert_eq!(r.status, ResolveStatus::Cached);

    clock.advance(60_000);
    let r = res.resolve_user(&alice).await.unwrap();
    assert_eq!(r.status, ResolveStatus::Stale);
    assert_eq!(r.head, acct.head());
    assert!(!r.warnings.is_empty());
    assert_alice_unconfirmed_since(&r, NOW);
    let r = res.resolve_did(&acct.did()).await.unwrap();
    assert_eq!(r.status, ResolveStatus::Stale);
}

#[tokio::test]
async fn the_cache_refuses_a_downgrade_and_accepts_an_extension() {
    let a = Origin::start("a.test", 1).await;
    let (alice, mut acct) = alice_account();
    let old = acct.clone();
    acct.append(device("PHONE", 3));
    a.host(&alice, &acct);
    let clock = ManualClock::new(NOW);
    let res = cached(resolver(&[&a], &clock), &clock);
    let first = res.resolve_user(&alice).await.unwrap();
    assert_eq!(first.head, acct.head());

    // The origin now serves the older log (a rollback, or an attacker replaying it).
    a.host(&alice, &old);
    clock.advance(61_000);
    let r = res.resolve_user(&alice).await.unwrap();
    assert_eq!(r.head, acct.head(), "the newer cached head is kept");
    assert_eq!(r.status, ResolveStatus::Stale);
    assert!(
        r.warnings.iter().any(|w| w.contains("refused a downgrade")),
        "{:?}",
        r.warnings
    );
    assert_eq!(stored_head(res.store(), &alice).await, acct.head());

    // A log that extends the cached head is accepted and stored.
    acct.append(device("WATCH", 4));
    a.host(&alice, &acct);
    let r = res.resolve_user(&alice).await.unwrap();
    assert_eq!(r.status, ResolveStatus::Verified);
    assert_eq!(r.head, acct.head());
    assert_eq!(stored_head(res.store(), &alice).await, acct.head());
}

#[tokio::test]
async fn negative_answers_are_cached_briefly() {
    let a = Origin::start("a.test", 1).await;
    let alice = user("@alice:a.test");
    let clock = ManualClock::new(NOW);
    let res = cached(resolver(&[&a], &clock), &clock);
    assert!(matches!(
        res.resolve_user(&alice).await,
        Err(ResolveError::NotFound { .. })
    ));

    let acct = Account::new(7, &alice, &["a.test"]);
    a.host(&alice, &acct);
    clock.advance(1_000);
    let err = res.resolve_user(&alice).await.unwrap_err();
    assert!(
        matches!(&err, ResolveError::NotFound { detail, .. } if detail.contains("cached")),
        "within the negative TTL the answer is repeated: {err:?}"
    );
    clock.advance(5_000);
    assert_eq!(
        res.resolve_user(&alice).await.unwrap().status,
        ResolveStatus::Verified
    );
}

#[tokio::test]
async fn the_cache_survives_reopening_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache.redb");
    let mut a = Origin::start("a.test", 1).await;
    let (alice, acct) = alice_account();
    a.host(&alice, &acct);
    let clock = ManualClock::new(NOW);
    let policy = CachePolicy::default();
    {
        let res = Cached::new(
            resolver(&[&a], &clock),
            CacheStore::open(&path).unwrap(),
            Arc::new(clock.clone()),
            policy,
        );
        res.resolve_user(&alice).await.unwrap();
    }
    a.stop().await;
    let res = Cached::new(
        resolver(&[&a], &clock),
        CacheStore::open(&path).unwrap(),
        Arc::new(clock.clone()),
        policy,
    );
    let r = res.resolve_user(&alice).await.unwrap();
    assert_eq!(r.status, ResolveStatus::Cached);
    assert_eq!(r.did, acct.did());
}

// ---- LAN -----------------------------------------------------------------------------------

/// Node A verified @alice online and serves its cache on the LAN; the origin then goes away.
async fn lan_node_with_alice() -> (
    Origin,
    Account,
    ManualClock,
    Url,
    Cached<roam_resolver::NetworkResolver>,
) {
    let a = Origin::start("a.test", 1).await;
    let (alice, mut acct) = alice_account();
    acct.append(device("PHONE", 3));
    a.host(&alice, &acct);
    let clock = ManualClock::new(NOW);
    let node = cached(resolver(&[&a], &clock), &clock);
    node.resolve_user(&alice).await.unwrap();
    let url = serve_router(roam_resolver::lan_router(node.store().clone())).await;
    (a, acct, clock, url, node)
}

#[tokio::test]
async fn a_lan_peer_answers_while_the_origin_is_down() {
    let (mut a, acct, clock, peer, _node) = lan_node_with_alice().await;
    let alice = user("@alice:a.test");
    let b = resolver_with(&[&a], &clock, |c| c.lan_peers = vec![peer.clone()]);
    a.stop().await;
    clock.advance(DAY / 2);

    let r = b.resolve_user(&alice).await.unwrap();
    assert_eq!(r.status, ResolveStatus::Lan);
    assert_eq!(r.did, acct.did());
    assert_eq!(r.head, acct.head());
    assert_eq!(r.user_ids, vec![alice.clone()]);
    assert!(matches!(&r.source, Source::Lan { peers } if peers.len() == 1));
    assert!(
        r.warnings
            .iter()
            .any(|w| w.contains("origin not reachable")),
        "{:?}",
        r.warnings
    );
    assert_alice_unconfirmed_since(&r, NOW - DAY);

    // By DID too.
    let r = b.resolve_did(&acct.did()).await.unwrap();
    assert_eq!(r.status, ResolveStatus::Lan);

    // Offline, an expired attestation still names who was confirmed when.
    clock.advance(3 * DAY);
    let r = b.resolve_user(&alice).await.unwrap();
    assert_eq!(r.status, ResolveStatus::Lan);
}

#[tokio::test]
async fn a_tampered_bundle_from_a_peer_is_rejected_and_named() {
    let (mut a, acct, clock, honest, node) = lan_node_with_alice().await;
    let alice = user("@alice:a.test");
    let mut tampered = node.store().bundle_for_user(&alice).await.unwrap().unwrap();
    tampered["log"][1]["device_id"] = json!("EVIL");
    let liar = serve_user_bundle(tampered).await;
    a.stop().await;

    let both = resolver_with(&[&a], &clock, |c| {
        c.lan_peers = vec![honest.clone(), liar.clone()]
    });
    let r = both.resolve_user(&alice).await.unwrap();
    assert_eq!(r.status, ResolveStatus::Lan);
    assert_eq!(r.head, acct.head());
    assert!(!r.devices.keys().any(|d| d.as_str() == "EVIL"));
    assert!(
        r.warnings
            .iter()
            .any(|w| w.contains(liar.as_str()) && w.contains("rejected")),
        "{:?}",
        r.warnings
    );

    let only_liar = resolver_with(&[&a], &clock, |c| c.lan_peers = vec![liar.clone()]);
    let err = only_liar.resolve_user(&alice).await.unwrap_err();
    assert!(
        matches!(&err, ResolveError::Unreachable { tried, .. } if tried.iter().any(|t| t.contains(liar.as_str()))),
        "{err:?}"
    );
}

/// A peer re-binds @alice:a.test to another account with a key document it minted for
/// a.test. The bundle verifies on its own; a node that fetched a.test's keys earlier refuses it.
#[tokio::test]
async fn a_peer_with_a_minted_key_document_is_rejected_when_real_keys_are_known() {
    let (mut a, _acct, clock, _honest, _node) = lan_node_with_alice().await;
    let alice = user("@alice:a.test");
    let liar = minted_key_peer(&alice, "a.test").await;

    // This node resolved a.test online before, so it knows a.test's real keys.
    let b = resolver_with(&[&a], &clock, |c| c.lan_peers = vec![liar.clone()]);
    b.server_keys(&name("a.test")).await.unwrap();
    a.stop().await;
    let err = b.resolve_user(&alice).await.unwrap_err();
    assert!(
        matches!(&err, ResolveError::Unreachable { tried, .. }
            if tried.iter().any(|t| t.contains(liar.as_str()) && t.contains("disagrees"))),
        "{err:?}"
    );
}

// ---- the SSRF guard ------------------------------------------------------------------------

fn guarded(allow_private: bool) -> SafeClient {
    SafeClient::new(&ResolverConfig {
        allow_private,
        request_timeout: Duration::from_secs(3),
        ..ResolverConfig::default()
    })
    .unwrap()
}

#[tokio::test]
async fn refuses_a_private_address_literal() {
    let a = Origin::start("a.test", 1).await;
    let url = a.base().join("/_matrix/key/v2/server").unwrap();
    let err = guarded(false).get_json(&url).await.unwrap_err();
    assert!(matches!(err, FetchError::Blocked { .. }), "{err:?}");
    // The same request works when private addresses are allowed: the guard is what refused.
    assert!(guarded(true).get_json(&url).await.is_ok());

    // Through the resolver: a user on a loopback server name is unreachable, and says why.
    let clock = ManualClock::new(NOW);
    let res = resolver_with(&[], &clock, |_| {});
    let who = user(&format!("@alice:127.0.0.1:{}", a.addr.port()));
    let err = res.resolve_user(&who).await.unwrap_err();
    assert!(
        matches!(&err, ResolveError::Unreachable { tried, .. } if tried.iter().any(|t| t.contains("refused"))),
        "{err:?}"
    );
}

#[tokio::test]
async fn refuses_a_name_that_resolves_to_loopback() {
    let a = Origin::start("a.test", 1).await;
    let url = Url::parse(&format!(
        "http://localhost:{}/_matrix/key/v2/server",
        a.addr.port()
    ))
    .unwrap();
    let err = guarded(false).get_json(&url).await.unwrap_err();
    assert!(
        matches!(&err, FetchError::Blocked { reason, .. } if reason.contains("not a public address")),
        "{err:?}"
    );
    assert!(guarded(true).get_json(&url).await.is_ok());
}

#[tokio::test]
async fn refuses_a_redirect_to_loopback_and_limits_redirects() {
    let target = Origin::start("a.test", 1).await;
    let to = target
        .base()
        .join("/_matrix/key/v2/server")
        .unwrap()
        .to_string();
    let redirector = serve_router(
        Router::new()
            .route(
                "/hop",
                get(move || {
                    let to = to.clone();
                    async move { Redirect::temporary(&to) }
                }),
            )
            .route("/loop", get(|| async { Redirect::temporary("/loop") })),
    )
    .await;
    // The redirector is trusted explicitly (as an override target would be); its redirect
    // target is not.
    let client = SafeClient::new(&ResolverConfig {
        overrides: [(name("r.test"), redirector.clone())].into_iter().collect(),
        ..ResolverConfig::default()
    })
    .unwrap();
    let err = client
        .get_json(&redirector.join("/hop").unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, FetchError::Blocked { reason, .. } if reason.contains("redirect")),
        "{err:?}"
    );
    assert!(
        guarded(true)
            .get_json(&redirector.join("/hop").unwrap())
            .await
            .is_ok()
    );
    let err = guarded(true)
        .get_json(&redirector.join("/loop").unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(err, FetchError::TooManyRedirects { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn caps_body_size_and_time() {
    let big = "x".repeat(64 * 1024);
    let url = serve_router(
        Router::new()
            .route(
                "/big",
                get(move || {
                    let b = big.clone();
                    async move { b }
                }),
            )
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    "{}"
                }),
            ),
    )
    .await;
    let client = SafeClient::new(&ResolverConfig {
        allow_private: true,
        max_body_bytes: 16 * 1024,
        request_timeout: Duration::from_millis(300),
        ..ResolverConfig::default()
    })
    .unwrap();
    let err = client
        .get_bytes(&url.join("/big").unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::TooLarge { .. }), "{err:?}");
    let err = client
        .get_bytes(&url.join("/slow").unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::Timeout { .. }), "{err:?}");
}

#[tokio::test]
async fn limits_concurrency_per_origin() {
    let in_flight = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (f, p) = (in_flight.clone(), peak.clone());
    let url = serve_router(Router::new().route(
        "/",
        get(move || {
            let (f, p) = (f.clone(), p.clone());
            async move {
                let now = f.fetch_add(1, Ordering::SeqCst) + 1;
                p.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
                f.fetch_sub(1, Ordering::SeqCst);
                "{}"
            }
        }),
    ))
    .await;
    let client = SafeClient::new(&ResolverConfig {
        allow_private: true,
        per_origin_concurrency: 2,
        ..ResolverConfig::default()
    })
    .unwrap();
    let results = futures::future::join_all((0..6).map(|_| client.get_json(&url))).await;
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(peak.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn strict_json_only() {
    let url = serve_router(Router::new().route("/", get(|| async { r#"{"a":1,"a":2}"# }))).await;
    let err = guarded(true).get_json(&url).await.unwrap_err();
    assert!(matches!(err, FetchError::Json { .. }), "{err:?}");
    let _: Value = json!(null);
}
