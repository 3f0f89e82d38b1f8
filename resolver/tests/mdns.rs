//! mDNS announce and browse on this host: a node announced on `_roam._tcp.local` shows up in
//! another node's LAN peer list when its address is acceptable, and a loopback announcement
//! (not a LAN peer: anyone could announce it to aim the resolver at this host) is taken only
//! when private targets are allowed.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use roam_resolver::lan::{MdnsAnnouncer, MdnsBrowser};
use roam_resolver::{ManualClock, NetworkResolver, ResolverConfig};

/// Browses for `secs` seconds (or until a peer on `port` shows up): whether one did.
async fn discovered(resolver: &NetworkResolver, port: u16, secs: u64) -> bool {
    let browser = MdnsBrowser::start(resolver.lan_peers().clone()).unwrap();
    let found = tokio::time::timeout(Duration::from_secs(secs), async {
        loop {
            if resolver
                .lan_peers()
                .list()
                .iter()
                .any(|u| u.port() == Some(port))
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    drop(browser);
    found.is_ok()
}

#[tokio::test]
async fn an_announced_node_is_discovered_when_private_targets_are_allowed() {
    let port = 47_123;
    let announcer =
        MdnsAnnouncer::announce("roam-test-node", &[IpAddr::V4(Ipv4Addr::LOCALHOST)], port)
            .unwrap();
    let config = ResolverConfig {
        allow_private: true,
        ..ResolverConfig::default()
    };
    let resolver = NetworkResolver::new(config, Arc::new(ManualClock::new(0))).unwrap();
    let found = discovered(&resolver, port, 10).await;
    drop(announcer);
    assert!(found, "the announced node was not discovered within 10 s");
}

#[tokio::test]
async fn a_loopback_announcement_is_not_a_peer_by_default() {
    let port = 47_124;
    let announcer = MdnsAnnouncer::announce(
        "roam-test-loopback",
        &[IpAddr::V4(Ipv4Addr::LOCALHOST)],
        port,
    )
    .unwrap();
    let resolver =
        NetworkResolver::new(ResolverConfig::default(), Arc::new(ManualClock::new(0))).unwrap();
    let found = discovered(&resolver, port, 4).await;
    drop(announcer);
    assert!(!found, "a loopback address learned by mDNS became a peer");
}
