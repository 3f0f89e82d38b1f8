//! LAN mode: the peers to ask, finding and announcing them with mDNS, and (with the
//! `lan-server` feature) serving this node's verified cache to them.
//!
//! A node answers `GET /_roam/v1/users/{id}` and `/_roam/v1/accounts/{did}` with the bundles
//! it verified online; peers trust none of it and verify every bundle themselves. Peers are
//! found on `_roam._tcp.local` or listed in the configuration. Asking peers, browsing and
//! announcing need no HTTP server; only serving does, so the server part (`lan_router`,
//! `serve`) and its axum dependency are behind the non-default `lan-server` feature.

#[cfg(feature = "lan-server")]
mod server;

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, RwLock};

use mdns_sd::{ServiceDaemon, ServiceEvent, ServiceInfo};
use url::Url;

use crate::http::AddressPolicy;

#[cfg(feature = "lan-server")]
pub use server::{lan_router, serve};

/// The mDNS service type of Roam resolver nodes.
pub const SERVICE_TYPE: &str = "_roam._tcp.local.";

/// Why LAN discovery could not start.
#[derive(Debug, thiserror::Error)]
pub enum LanError {
    #[error("mDNS: {0}")]
    Mdns(#[from] mdns_sd::Error),
}

/// The peers to ask when the origin cannot be reached (offline: the only ones asked).
///
/// Two kinds: peers given explicitly ([`LanPeers::add`], e.g. `--lan-peer URL`), trusted as
/// fetch targets for good, and peers learned by mDNS ([`LanPeers::add_discovered`]), accepted
/// only on this host's own links (see [`acceptable_peer`]) and trusted only until they are
/// withdrawn ([`LanPeers::remove_discovered`]). Their bundles are verified either way.
#[derive(Debug, Clone)]
pub struct LanPeers {
    peers: Arc<RwLock<BTreeSet<Url>>>,
    discovered: Arc<RwLock<BTreeSet<Url>>>,
    policy: Arc<AddressPolicy>,
}

impl LanPeers {
    pub(crate) fn new(policy: Arc<AddressPolicy>) -> Self {
        Self {
            peers: Arc::default(),
            discovered: Arc::default(),
            policy,
        }
    }

    /// Adds a peer chosen by the user, by base URL (also allowing it as a target in offline
    /// mode). Not checked: the user chose it.
    pub fn add(&self, url: Url) {
        self.policy.trust_lan_peer(&url);
        write(&self.peers).insert(url);
    }

    /// Adds a peer learned by mDNS at `ip:port`, if [`acceptable_peer`] accepts its address
    /// given this host's interface subnets `local_nets` (and the allow-private setting).
    pub fn add_discovered(
        &self,
        ip: IpAddr,
        port: u16,
        local_nets: &[(IpAddr, u8)],
    ) -> Result<Url, PeerRefused> {
        acceptable_peer(ip, local_nets, self.policy.allows_private())?;
        let url = peer_url(ip, port).ok_or(PeerRefused::LinkLocal(ip))?;
        self.policy.trust_discovered_peer(&url);
        write(&self.discovered).insert(url.clone());
        Ok(url)
    }

    /// Forgets a peer learned by mDNS and withdraws its trust as a fetch target.
    pub fn remove_discovered(&self, url: &Url) {
        write(&self.discovered).remove(url);
        self.policy.withdraw_discovered_peer(url);
    }

    /// Removes a peer (of either kind; a discovered one also loses its trust).
    pub fn remove(&self, url: &Url) {
        write(&self.peers).remove(url);
        self.remove_discovered(url);
    }

    /// The peers now: the explicit ones, then the discovered ones.
    pub fn list(&self) -> Vec<Url> {
        let explicit = read(&self.peers);
        let mut out: Vec<Url> = explicit.iter().cloned().collect();
        out.extend(
            read(&self.discovered)
                .iter()
                .filter(|u| !explicit.contains(*u))
                .cloned(),
        );
        out
    }

    /// True when there is no peer.
    pub fn is_empty(&self) -> bool {
        read(&self.peers).is_empty() && read(&self.discovered).is_empty()
    }
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

/// Why an address learned by mDNS is not taken as a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PeerRefused {
    #[error("{0} is unspecified")]
    Unspecified(IpAddr),
    #[error("{0} is multicast or broadcast")]
    Multicast(IpAddr),
    #[error("{0} is loopback")]
    Loopback(IpAddr),
    #[error("{0} is link-local")]
    LinkLocal(IpAddr),
    #[error("{0} is on none of this host's interface subnets")]
    NotOnLocalSubnet(IpAddr),
}

/// Whether an address learned by mDNS may become a peer (and so a fetch target).
///
/// Never an unspecified, multicast or broadcast address (not a peer at all). Otherwise, unless
/// `allow` (the allow-private setting), never loopback or link-local (169.254.0.0/16 holds
/// cloud metadata endpoints; fe80::/10), and only an address on the subnet of one of this
/// host's interface addresses `local_nets` (`(address, prefix length)`): anyone on the
/// network can answer mDNS, so an answer must not point the resolver anywhere else.
pub fn acceptable_peer(
    addr: IpAddr,
    local_nets: &[(IpAddr, u8)],
    allow: bool,
) -> Result<(), PeerRefused> {
    let addr = match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    };
    if addr.is_unspecified() {
        return Err(PeerRefused::Unspecified(addr));
    }
    let multicast = match addr {
        IpAddr::V4(v4) => v4.is_multicast() || v4.is_broadcast(),
        IpAddr::V6(v6) => v6.is_multicast(),
    };
    if multicast {
        return Err(PeerRefused::Multicast(addr));
    }
    if allow {
        return Ok(());
    }
    if addr.is_loopback() {
        return Err(PeerRefused::Loopback(addr));
    }
    let link_local = match addr {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    };
    if link_local {
        return Err(PeerRefused::LinkLocal(addr));
    }
    if local_nets
        .iter()
        .any(|&(net, prefix)| same_subnet(addr, net, prefix))
    {
        Ok(())
    } else {
        Err(PeerRefused::NotOnLocalSubnet(addr))
    }
}

/// True when `a` and `b` are of one family and share their first `prefix` bits. A /0 "subnet"
/// (a default route, not a link) matches nothing.
fn same_subnet(a: IpAddr, b: IpAddr, prefix: u8) -> bool {
    fn masked(x: u128, bits: u32, prefix: u8) -> u128 {
        let keep = u32::from(prefix).min(bits);
        if keep == 0 {
            return 0;
        }
        x >> (bits - keep)
    }
    if prefix == 0 {
        return false;
    }
    match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            masked(u32::from(a).into(), 32, prefix) == masked(u32::from(b).into(), 32, prefix)
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            masked(u128::from(a), 128, prefix) == masked(u128::from(b), 128, prefix)
        }
        _ => false,
    }
}

/// This host's interface addresses with their prefix lengths (empty if they cannot be read,
/// which refuses every discovered peer unless private targets are allowed).
pub fn local_networks() -> Vec<(IpAddr, u8)> {
    match if_addrs::get_if_addrs() {
        Ok(ifs) => ifs
            .into_iter()
            .map(|i| match i.addr {
                if_addrs::IfAddr::V4(a) => (IpAddr::V4(a.ip), a.prefixlen),
                if_addrs::IfAddr::V6(a) => (IpAddr::V6(a.ip), a.prefixlen),
            })
            .collect(),
        Err(e) => {
            tracing::warn!("reading interface addresses: {e}; refusing mDNS peers");
            Vec::new()
        }
    }
}

/// An mDNS announcement of this node; withdrawn on [`MdnsAnnouncer::stop`] or drop.
pub struct MdnsAnnouncer {
    daemon: ServiceDaemon,
    fullname: String,
}

impl std::fmt::Debug for MdnsAnnouncer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MdnsAnnouncer")
            .field("fullname", &self.fullname)
            .finish()
    }
}

impl MdnsAnnouncer {
    /// Announces `instance` on `_roam._tcp.local` at `addrs:port`.
    pub fn announce(instance: &str, addrs: &[IpAddr], port: u16) -> Result<Self, LanError> {
        let daemon = ServiceDaemon::new()?;
        let host = format!("{instance}.local.");
        let info = ServiceInfo::new(
            SERVICE_TYPE,
            instance,
            &host,
            addrs,
            port,
            None::<HashMap<String, String>>,
        )?;
        let fullname = info.get_fullname().to_owned();
        daemon.register(info)?;
        Ok(Self { daemon, fullname })
    }

    /// The full service name announced.
    pub fn fullname(&self) -> &str {
        &self.fullname
    }

    /// Withdraws the announcement and stops the daemon.
    pub fn stop(self) {
        // Drop does the work.
    }
}

impl Drop for MdnsAnnouncer {
    fn drop(&mut self) {
        // Best effort: the daemon thread may already be gone.
        let _ = self.daemon.unregister(&self.fullname);
        let _ = self.daemon.shutdown();
    }
}

/// Browses `_roam._tcp.local` and keeps `peers` up to date; stops on drop.
pub struct MdnsBrowser {
    daemon: ServiceDaemon,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for MdnsBrowser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MdnsBrowser").finish_non_exhaustive()
    }
}

impl MdnsBrowser {
    /// Starts browsing; resolved services are added to `peers` as `http://addr:port` when
    /// [`acceptable_peer`] accepts the address, and removed (trust withdrawn) when withdrawn.
    pub fn start(peers: LanPeers) -> Result<Self, LanError> {
        let daemon = ServiceDaemon::new()?;
        let events = daemon.browse(SERVICE_TYPE)?;
        let task = tokio::spawn(async move {
            let mut by_name: HashMap<String, Vec<Url>> = HashMap::new();
            while let Ok(event) = events.recv_async().await {
                match event {
                    ServiceEvent::ServiceResolved(svc) => {
                        // Read per answer: interfaces come and go.
                        let nets = local_networks();
                        let mut urls = Vec::new();
                        for ip in svc.get_addresses().iter().map(|a| a.to_ip_addr()) {
                            match peers.add_discovered(ip, svc.get_port(), &nets) {
                                Ok(u) => urls.push(u),
                                Err(e) => tracing::warn!(
                                    service = svc.get_fullname(),
                                    "mDNS peer address refused: {e}"
                                ),
                            }
                        }
                        // A re-announcement replaces the addresses it had.
                        let old = by_name.insert(svc.get_fullname().to_owned(), urls.clone());
                        for u in old.unwrap_or_default() {
                            if !still_announced(&by_name, &u) {
                                peers.remove_discovered(&u);
                            }
                        }
                    }
                    ServiceEvent::ServiceRemoved(_, fullname) => {
                        for u in by_name.remove(&fullname).unwrap_or_default() {
                            if !still_announced(&by_name, &u) {
                                peers.remove_discovered(&u);
                            }
                        }
                    }
                    _ => {}
                }
            }
        });
        Ok(Self { daemon, task })
    }
}

impl Drop for MdnsBrowser {
    fn drop(&mut self) {
        let _ = self.daemon.stop_browse(SERVICE_TYPE);
        let _ = self.daemon.shutdown();
        self.task.abort();
    }
}

/// True when some service still announces `url` (two names may share an address).
fn still_announced(by_name: &HashMap<String, Vec<Url>>, url: &Url) -> bool {
    by_name.values().any(|urls| urls.contains(url))
}

fn peer_url(ip: IpAddr, port: u16) -> Option<Url> {
    let host = match ip {
        IpAddr::V4(v4) => v4.to_string(),
        // Link-local IPv6 would need a zone ID in the URL; skip those.
        IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80 => return None,
        IpAddr::V6(v6) => format!("[{v6}]"),
    };
    Url::parse(&format!("http://{host}:{port}")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// A host on 192.168.1.10/24 and fd00:1::10/64, with loopback.
    fn nets() -> Vec<(IpAddr, u8)> {
        vec![
            (ip("127.0.0.1"), 8),
            (ip("192.168.1.10"), 24),
            (ip("fd00:1::10"), 64),
        ]
    }

    #[test]
    fn same_subnet_private_peer_is_accepted() {
        assert_eq!(acceptable_peer(ip("192.168.1.77"), &nets(), false), Ok(()));
        assert_eq!(acceptable_peer(ip("fd00:1::77"), &nets(), false), Ok(()));
        assert_eq!(
            acceptable_peer(ip("::ffff:192.168.1.77"), &nets(), false),
            Ok(())
        );
    }

    #[test]
    fn dangerous_or_foreign_addresses_are_refused() {
        let n = nets();
        let refused = |s: &str| acceptable_peer(ip(s), &n, false).unwrap_err();
        assert_eq!(refused("127.0.0.1"), PeerRefused::Loopback(ip("127.0.0.1")));
        assert_eq!(refused("::1"), PeerRefused::Loopback(ip("::1")));
        assert_eq!(
            refused("169.254.169.254"),
            PeerRefused::LinkLocal(ip("169.254.169.254"))
        );
        assert_eq!(refused("fe80::1"), PeerRefused::LinkLocal(ip("fe80::1")));
        assert_eq!(
            refused("224.0.0.1"),
            PeerRefused::Multicast(ip("224.0.0.1"))
        );
        assert_eq!(refused("ff02::fb"), PeerRefused::Multicast(ip("ff02::fb")));
        assert_eq!(
            refused("255.255.255.255"),
            PeerRefused::Multicast(ip("255.255.255.255"))
        );
        assert_eq!(refused("0.0.0.0"), PeerRefused::Unspecified(ip("0.0.0.0")));
        assert_eq!(refused("::"), PeerRefused::Unspecified(ip("::")));
        assert_eq!(
            refused("93.184.216.34"),
            PeerRefused::NotOnLocalSubnet(ip("93.184.216.34"))
        );
        assert_eq!(
            refused("192.168.2.5"),
            PeerRefused::NotOnLocalSubnet(ip("192.168.2.5"))
        );
        assert_eq!(
            refused("10.0.0.5"),
            PeerRefused::NotOnLocalSubnet(ip("10.0.0.5"))
        );
        assert_eq!(
            refused("fd00:2::5"),
            PeerRefused::NotOnLocalSubnet(ip("fd00:2::5"))
        );
        // A default-route-like /0 entry is no link.
        assert_eq!(
            acceptable_peer(ip("10.0.0.5"), &[(ip("10.0.0.1"), 0)], false),
            Err(PeerRefused::NotOnLocalSubnet(ip("10.0.0.5")))
        );
        // No interfaces known: nothing is accepted.
        assert!(acceptable_peer(ip("192.168.1.77"), &[], false).is_err());
    }

    #[test]
    fn allow_private_accepts_other_subnets_but_never_non_unicast() {
        let n = nets();
        for s in ["10.0.0.5", "127.0.0.1", "169.254.169.254", "93.184.216.34"] {
            assert_eq!(acceptable_peer(ip(s), &n, true), Ok(()), "{s}");
        }
        for s in ["0.0.0.0", "224.0.0.1"] {
            assert!(acceptable_peer(ip(s), &n, true).is_err(), "{s}");
        }
    }

    #[test]
    fn discovered_peers_are_checked_and_lose_trust_when_removed() {
        let policy = Arc::new(AddressPolicy::new(false).lan_only(true));
        let peers = LanPeers::new(policy.clone());
        let n = nets();

        assert!(peers.add_discovered(ip("169.254.169.254"), 80, &n).is_err());
        assert!(peers.add_discovered(ip("10.9.9.9"), 8080, &n).is_err());
        assert!(peers.is_empty());
        let refused = Url::parse("http://169.254.169.254/").unwrap();
        assert!(policy.check_url(&refused).is_err());

        let url = peers.add_discovered(ip("192.168.1.77"), 8080, &n).unwrap();
        assert_eq!(peers.list(), vec![url.clone()]);
        let target = url.join("/_roam/v1/users/x").unwrap();
        assert_eq!(policy.check_url(&target), Ok(()));

        peers.remove_discovered(&url);
        assert!(peers.list().is_empty());
        assert!(peers.is_empty());
        assert!(policy.check_url(&target).is_err(), "trust withdrawn");
    }

    #[test]
    fn explicit_peers_are_kept_and_stay_trusted() {
        let policy = Arc::new(AddressPolicy::new(false).lan_only(true));
        let peers = LanPeers::new(policy.clone());
        // An explicit peer may be anywhere the user says, loopback included.
        let explicit = Url::parse("http://127.0.0.1:8448/").unwrap();
        peers.add(explicit.clone());
        assert_eq!(policy.check_url(&explicit), Ok(()));

        // The same origin discovered and then withdrawn does not take the explicit one away.
        let shared = Url::parse("http://192.168.1.77:8080/").unwrap();
        peers.add(shared.clone());
        let found = peers
            .add_discovered(ip("192.168.1.77"), 8080, &nets())
            .unwrap();
        assert_eq!(found, shared);
        assert_eq!(peers.list().len(), 2);
        peers.remove_discovered(&found);
        assert_eq!(peers.list(), vec![explicit.clone(), shared.clone()]);
        assert_eq!(policy.check_url(&shared), Ok(()));

        peers.remove(&explicit);
        assert_eq!(peers.list(), vec![shared]);
    }
}
