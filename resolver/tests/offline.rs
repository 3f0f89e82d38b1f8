//! Offline mode (`ResolverConfig::offline`): LAN peers and the cache only. Every origin here
//! is up, hosts the account and is reachable through an override, and counts the requests it
//! receives — so "no request reached it" proves the resolver chose not to ask, not that it
//! could not.

#[path = "support/attest.rs"]
mod attest;
mod support;

use std::time::Duration;

use axum::Router;
use axum::extract::Path;
use axum::response::{IntoResponse, Redirect};
use axum::routing::get;
use roam_identity_core::bundle;
use roam_identity_core::log::Action;
use roam_identity_core::server_keys;
use roam_resolver::keys::KeyFetchError;
use roam_resolver::{
    CacheStore, Cached, FetchError, ManualClock, NetworkResolver, OFFLINE_WARNING, ResolveError,
    ResolveStatus, Resolver, ResolverConfig, SafeClient, Source,
};
use support::*;
use url::Url;

const TTL: u64 = TEST_POLICY.positive_ttl_ms;

/// An offline resolver that *could* reach every origin: overrides to their live addresses,
/// private addresses allowed. Only offline mode keeps it away from them.
fn offline(origins: &[&Origin], clock: &ManualClock, peers: &[Url]) -> NetworkResolver {
    resolver_with(origins, clock, |c| {
        c.offline = true;
        c.allow_private = true;
        c.lan_peers = peers.to_vec();
    })
}

fn assert_untouched(origins: &[&Origin]) {
    for o in origins {
        assert_eq!(
            o.requests(),
            Vec::<String>::new(),
            "{} was asked while offline",
            o.name
        );
    }
}

fn clear(origins: &[&Origin]) {
    for o in origins {
        o.clear_requests();
    }
}

/// A LAN node that verified `acct` online (for `user`) and serves its cache.
async fn lan_node(
    origins: &[&Origin],
    clock: &ManualClock,
    user: &roam_identity_core::UserId,
) -> (Cached<NetworkResolver>, Url) {
    let node = cached_on(
        resolver(origins, clock),
        &CacheStore::in_memory().unwrap(),
        clock,
    );
    assert_eq!(
        node.resolve_user(user).await.unwrap().status,
        ResolveStatus::Verified
    );
    let url = serve_router(roam_resolver::lan_router(node.store().clone())).await;
    (node, url)
}

/// The log names a new primary and a backup the caller never mentioned; all three servers are
/// up. Offline, none of them is asked — not for the bundle, not for newer ops, not for keys.
#[tokio::test]
async fn offline_asks_no_origin_primary_backup_or_key_server() {
    let a = Origin::start("a.test", 1).await;
    let b = Origin::start("b.test", 2).await;
    let c = Origin::start("c.test", 3).await;
    let (alice, mut acct) = alice_account();
    acct.append(Action::Move {
        servers: vec![name("b.test"), name("c.test")],
    });
    a.host(&alice, &acct);
    b.host(&alice, &acct);
    c.host(&alice, &acct);
    let clock = ManualClock::new(NOW);
    let (_node, peer) = lan_node(&[&a, &b, &c], &clock, &alice).await;
    assert!(
        !b.requests().is_empty(),
        "online, the new primary is followed (so the zero below means something)"
    );
    let all = [&a, &b, &c];
    clear(&all);

    let res = offline(&all, &clock, std::slice::from_ref(&peer));
    assert!(res.is_offline());
    let r = res.resolve_user(&alice).await.unwrap();
    assert_eq!(r.status, ResolveStatus::Lan);
    assert_eq!(r.head, acct.head());
    assert_eq!(r.servers, vec![name("b.test"), name("c.test")]);
    assert!(matches!(&r.source, Source::Lan { peers } if peers == &vec![peer.to_string()]));
    assert_eq!(
        r.warnings.first().map(String::as_str),
        Some(OFFLINE_WARNING)
    );
    assert!(
        !r.warnings
            .iter()
            .any(|w| w.contains("origin not reachable")),
        "{:?}",
        r.warnings
    );
    // The evidence is the peer's, verified here: it re-verifies anywhere.
    bundle::verify(&r.bundle, Some(&acct.did()), NOW).unwrap();

    // By DID, with hints naming every server.
    let r = res
        .resolve_did_via(
            &acct.did(),
            &[name("a.test"), name("b.test"), name("c.test")],
        )
        .await
        .unwrap();
    assert_eq!(r.status, ResolveStatus::Lan);
    // Keys: only what was fetched earlier, and nothing was.
    let err = res.server_keys(&name("a.test")).await.unwrap_err();
    assert!(matches!(err, KeyFetchError::Offline { .. }), "{err}");
    assert!(err.to_string().contains("offline"), "{err}");
    // Even the client refuses anything but a LAN peer.
    let err = res
        .client()
        .get_json(&a.base().join("/_matrix/key/v2/server").unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, FetchError::Blocked { reason, .. } if reason.contains("offline")),
        "{err:?}"
    );
    assert_untouched(&all);
}

#[tokio::test]
async fn offline_with_no_peer_answering_is_unreachable_and_asks_nobody() {
    let a = Origin::start("a.test", 1).await;
    let (alice, acct) = alice_account();
    a.host(&alice, &acct);
    let clock = ManualClock::new(NOW);

    // No peer known.
    let res = offline(&[&a], &clock, &[]);
    let err = res.resolve_user(&alice).await.unwrap_err();
    assert!(
        matches!(&err, ResolveError::Unreachable { tried, .. }
            if tried[0].starts_with("offline: no LAN peer answered")),
        "{err:?}"
    );
    let err = res
        .resolve_did_via(&acct.did(), &[name("a.test")])
        .await
        .unwrap_err();
    assert!(matches!(&err, ResolveError::Unreachable { .. }), "{err:?}");

    // A peer that is down, and one that does not know the account.
    let dead = dead_url().await;
    let empty = serve_router(roam_resolver::lan_router(CacheStore::in_memory().unwrap())).await;
    let res = offline(&[&a], &clock, &[dead.clone(), empty.clone()]);
    let err = res.resolve_user(&alice).await.unwrap_err();
    match &err {
        ResolveError::Unreachable { tried, .. } => {
            assert!(
                tried[0].starts_with("offline: no LAN peer answered"),
                "{tried:?}"
            );
            assert!(tried.iter().any(|t| t.contains(dead.as_str())), "{tried:?}");
            assert!(
                tried
                    .iter()
                    .any(|t| t.contains(empty.as_str()) && t.contains("does not know")),
                "{tried:?}"
            );
        }
        other => panic!("{other:?}"),
    }

    // Through the cache, with nothing cached: the same answer, and nothing stored.
    let store = CacheStore::in_memory().unwrap();
    let cached = cached_on(offline(&[&a], &clock, &[]), &store, &clock);
    assert!(cached.is_offline());
    let err = cached.resolve_user(&alice).await.unwrap_err();
    assert!(matches!(&err, ResolveError::Unreachable { .. }), "{err:?}");
    assert_untouched(&[&a]);
}

/// A LAN peer that redirects to the origin does not get the resolver there.
#[tokio::test]
async fn offline_does_not_follow_a_peer_redirect_to_an_origin() {
    let a = Origin::start("a.test", 1).await;
    let (alice, acct) = alice_account();
    a.host(&alice, &acct);
    let origin = a.base();
    let redirector = serve_router(Router::new().route(
        "/_roam/v1/users/{id}",
        get(move |Path(id): Path<String>| {
            let to = origin.join(&format!("/_roam/v1/users/{id}")).unwrap();
            async move { Redirect::temporary(to.as_str()).into_response() }
        }),
    ))
    .await;
    let clock = ManualClock::new(NOW);
    let res = offline(&[&a], &clock, std::slice::from_ref(&redirector));
    let err = res.resolve_user(&alice).await.unwrap_err();
    assert!(
        matches!(&err, ResolveError::Unreachable { tried, .. }
            if tried.iter().any(|t| t.contains(redirector.as_str()) && t.contains("offline"))),
        "{err:?}"
    );
    assert_untouched(&[&a]);

    // Control: a client that is not offline follows that redirect to the origin.
    let online = SafeClient::new(&ResolverConfig {
        allow_private: true,
        request_timeout: Duration::from_secs(3),
        ..ResolverConfig::default()
    })
    .unwrap();
    online
        .get_json(&redirector.join("/_roam/v1/users/@alice:a.test").unwrap())
        .await
        .unwrap();
    assert_eq!(a.requests().len(), 1, "{:?}", a.requests());
}

/// Peers found later (mDNS adds them to `lan_peers()`) are asked; nothing else is.
#[tokio::test]
async fn offline_asks_peers_added_at_run_time() {
    let a = Origin::start("a.test", 1).await;
    let (alice, acct) = alice_account();
    a.host(&alice, &acct);
    let clock = ManualClock::new(NOW);
    let (_node, peer) = lan_node(&[&a], &clock, &alice).await;
    a.clear_requests();

    let res = offline(&[&a], &clock, &[]);
    assert!(res.resolve_user(&alice).await.is_err());
    res.lan_peers().add(peer.clone());
    let r = res.resolve_user(&alice).await.unwrap();
    assert_eq!(r.status, ResolveStatus::Lan);
    assert_eq!(r.head, acct.head());
    assert_untouched(&[&a]);
}

/// Carried key documents are checked against keys known earlier, offline as online.
#[tokio::test]
async fn offline_rejects_a_peer_whose_key_document_disagrees_with_known_keys() {
    let a = Origin::start("a.test", 1).await;
    let alice = user("@alice:a.test");
    let liar = minted_key_peer(&alice, "a.test").await;
    let clock = ManualClock::new(NOW);

    // Without known keys the forged bundle verifies on its own: labelled `lan`, never more.
    let naive = offline(&[&a], &clock, std::slice::from_ref(&liar));
    assert_eq!(
        naive.resolve_user(&alice).await.unwrap().status,
        ResolveStatus::Lan
    );

    // This node knows a.test's real keys (fetched when it was online).
    let res = offline(&[&a], &clock, std::slice::from_ref(&liar));
    let real = server_keys::verify(&a.key_doc(), &name("a.test")).unwrap();
    res.key_cache().insert(real, a.key_doc(), NOW);
    let err = res.resolve_user(&alice).await.unwrap_err();
    assert!(
        matches!(&err, ResolveError::Unreachable { tried, .. }
            if tried.iter().any(|t| t.contains(liar.as_str()) && t.contains("disagrees"))),
        "{err:?}"
    );
    assert_untouched(&[&a]);
}

/// The cache offline: `cached` within the TTL, `stale` past it (saying no server was asked),
/// with the origin up and never asked.
#[tokio::test]
async fn offline_cache_serves_cached_then_stale_without_asking_the_origin() {
    let a = Origin::start("a.test", 1).await;
    let b = Origin::start("b.test", 2).await;
    let (alice, mut acct) = alice_account();
    acct.append(Action::Move {
        servers: vec![name("b.test"), name("a.test")],
    });
    a.host(&alice, &acct);
    b.host(&alice, &acct);
    let clock = ManualClock::new(NOW);
    let store = CacheStore::in_memory().unwrap();
    let online = cached_on(resolver(&[&a, &b], &clock), &store, &clock);
    assert_eq!(
        online.resolve_user(&alice).await.unwrap().status,
        ResolveStatus::Verified
    );
    clear(&[&a, &b]);

    let res = cached_on(offline(&[&a, &b], &clock, &[]), &store, &clock);
    clock.advance(TTL / 2);
    let r = res.resolve_user(&alice).await.unwrap();
    assert_eq!(r.status, ResolveStatus::Cached);
    assert_eq!(
        res.resolve_did(&acct.did()).await.unwrap().status,
        ResolveStatus::Cached
    );

    clock.advance(TTL);
    let r = res.resolve_user(&alice).await.unwrap();
    assert_eq!(r.status, ResolveStatus::Stale);
    assert_eq!(r.head, acct.head());
    assert_eq!(r.warnings, vec![OFFLINE_WARNING.to_owned()]);
    assert_alice_unconfirmed_since(&r, NOW);
    let r = res
        .resolve_did_via(&acct.did(), &[name("a.test")])
        .await
        .unwrap();
    assert_eq!(r.status, ResolveStatus::Stale);
    assert_eq!(
        r.warnings.first().map(String::as_str),
        Some(OFFLINE_WARNING)
    );
    assert_untouched(&[&a, &b]);

    // Nothing cached for another user: the LAN path (no peer) answers unreachable.
    let bob = user("@bob:a.test");
    assert!(matches!(
        res.resolve_user(&bob).await,
        Err(ResolveError::Unreachable { .. })
    ));
    assert_untouched(&[&a, &b]);
}

/// Offline past the TTL, LAN peers are asked: an older head never replaces the cached one, a
/// strictly newer one is answered as `lan` and not stored. The origin is never asked.
#[tokio::test]
async fn offline_cache_never_downgrades_and_takes_newer_lan_evidence_unstored() {
    let a = Origin::start("a.test", 1).await;
    let (alice, mut acct) = alice_account();
    a.host(&alice, &acct);
    let clock = ManualClock::new(NOW);
    // The LAN node saw the account at its first head.
    let (node, peer) = lan_node(&[&a], &clock, &alice).await;
    let h1 = acct.head();
    // This node saw a newer head online.
    acct.append(device("PHONE", 3));
    a.host(&alice, &acct);
    let h2 = acct.head();
    let store = CacheStore::in_memory().unwrap();
    let online = cached_on(resolver(&[&a], &clock), &store, &clock);
    assert_eq!(online.resolve_user(&alice).await.unwrap().head, h2);
    a.clear_requests();

    let res = cached_on(
        offline(&[&a], &clock, std::slice::from_ref(&peer)),
        &store,
        &clock,
    );
    clock.advance(TTL + 1);
    let r = res.resolve_user(&alice).await.unwrap();
    assert_eq!(r.status, ResolveStatus::Stale);
    assert_eq!(r.head, h2, "the peer's older head {h1} must not replace it");
    assert_eq!(
        r.warnings.first().map(String::as_str),
        Some(OFFLINE_WARNING)
    );
    assert!(
        r.warnings.iter().any(|w| w.contains("nothing newer")),
        "{:?}",
        r.warnings
    );
    assert_untouched(&[&a]);

    // The LAN node goes online again and sees an even newer head.
    acct.append(device("WATCH", 4));
    a.host(&alice, &acct);
    let h3 = acct.head();
    assert_eq!(node.resolve_user(&alice).await.unwrap().head, h3);
    a.clear_requests();
    let r = res.resolve_user(&alice).await.unwrap();
    assert_eq!(r.status, ResolveStatus::Lan);
    assert_eq!(r.head, h3);
    assert_eq!(
        r.warnings.first().map(String::as_str),
        Some(OFFLINE_WARNING)
    );
    assert_eq!(
        stored_head(&store, &alice).await,
        h2,
        "LAN evidence is not stored"
    );
    assert_untouched(&[&a]);
}
