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

/// The peers to ask when the origin cannot be reached (offline: the only ones asked). Adding a peer also trusts it as a
/// fetch target (LAN peers live on private addresses); its bundles are still verified.
#[derive(Debug, Clone)]
pub struct LanPeers {
    peers: Arc<RwLock<BTreeSet<Url>>>,
    policy: Arc<AddressPolicy>,
}

impl LanPeers {
    pub(crate) fn new(policy: Arc<AddressPolicy>) -> Self {
        Self {
            peers: Arc::default(),
            policy,
        }
    }

    /// Adds a peer by base URL (also allowing it as a target in offline mode).
    pub fn add(&self, url: Url) {
        self.policy.trust_lan_peer(&url);
        self.peers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(url);
    }

    /// Removes a peer.
    pub fn remove(&self, url: &Url) {
        self.peers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(url);
    }

    /// The peers now.
    pub fn list(&self) -> Vec<Url> {
        self.peers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    /// True when there is no peer.
    pub fn is_empty(&self) -> bool {
        self.peers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
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
    /// Starts browsing; resolved services are added to `peers` as `http://addr:port`.
    pub fn start(peers: LanPeers) -> Result<Self, LanError> {
        let daemon = ServiceDaemon::new()?;
        let events = daemon.browse(SERVICE_TYPE)?;
        let task = tokio::spawn(async move {
            let mut by_name: HashMap<String, Vec<Url>> = HashMap::new();
            while let Ok(event) = events.recv_async().await {
                match event {
                    ServiceEvent::ServiceResolved(svc) => {
                        let urls: Vec<Url> = svc
                            .get_addresses()
                            .iter()
                            .map(|a| a.to_ip_addr())
                            .filter_map(|ip| peer_url(ip, svc.get_port()))
                            .collect();
                        for u in &urls {
                            peers.add(u.clone());
                        }
                        by_name.insert(svc.get_fullname().to_owned(), urls);
                    }
                    ServiceEvent::ServiceRemoved(_, fullname) => {
                        for u in by_name.remove(&fullname).unwrap_or_default() {
                            peers.remove(&u);
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

fn peer_url(ip: IpAddr, port: u16) -> Option<Url> {
    let host = match ip {
        IpAddr::V4(v4) => v4.to_string(),
        // Link-local IPv6 would need a zone ID in the URL; skip those.
        IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80 => return None,
        IpAddr::V6(v6) => format!("[{v6}]"),
    };
    Url::parse(&format!("http://{host}:{port}")).ok()
}
