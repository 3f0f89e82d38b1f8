//! mDNS announce and browse on this host: a node announced on `_roam._tcp.local` shows up in
//! another node's LAN peer list.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use roam_resolver::lan::{MdnsAnnouncer, MdnsBrowser};
use roam_resolver::{ManualClock, NetworkResolver, ResolverConfig};

#[tokio::test]
async fn an_announced_node_is_discovered() {
    let port = 47_123;
    let announcer =
        MdnsAnnouncer::announce("roam-test-node", &[IpAddr::V4(Ipv4Addr::LOCALHOST)], port)
            .unwrap();
    let resolver =
        NetworkResolver::new(ResolverConfig::default(), Arc::new(ManualClock::new(0))).unwrap();
    let browser = MdnsBrowser::start(resolver.lan_peers().clone()).unwrap();
    let found = tokio::time::timeout(Duration::from_secs(10), async {
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
    drop(announcer);
    assert!(
        found.is_ok(),
        "the announced node was not discovered within 10 s"
    );
}
