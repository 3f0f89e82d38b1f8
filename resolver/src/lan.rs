//! LAN mode: serving this node's verified cache to peers, and finding peers with mDNS.
//!
//! A node answers `GET /_roam/v1/users/{id}` and `/_roam/v1/accounts/{did}` with the bundles
//! it verified online; peers trust none of it and verify every bundle themselves. Peers are
//! found on `_roam._tcp.local` or listed in the configuration.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use mdns_sd::{ServiceDaemon, ServiceEvent, ServiceInfo};
use roam_identity_core::{Did, UserId};
use serde_json::json;
use tokio::net::TcpListener;
use url::Url;

use crate::cache::CacheStore;
use crate::http::AddressPolicy;

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

fn matrix_error(status: StatusCode, errcode: &str, error: &str) -> Response {
    (
        status,
        axum::Json(json!({"errcode": errcode, "error": error})),
    )
        .into_response()
}

/// The routes a resolver node serves to its LAN peers, from its verified cache.
pub fn lan_router(store: CacheStore) -> Router {
    Router::new()
        .route("/_roam/v1/users/{user_id}", get(user_bundle))
        .route("/_roam/v1/accounts/{did}", get(account_bundle))
        .with_state(store)
}

async fn user_bundle(State(store): State<CacheStore>, Path(user_id): Path<String>) -> Response {
    let Ok(user) = UserId::parse(&user_id) else {
        return matrix_error(
            StatusCode::BAD_REQUEST,
            "M_INVALID_PARAM",
            "not a valid user ID",
        );
    };
    answer(store.bundle_for_user(&user).await)
}

async fn account_bundle(State(store): State<CacheStore>, Path(did): Path<String>) -> Response {
    let Ok(did) = Did::parse(&did) else {
        return matrix_error(
            StatusCode::BAD_REQUEST,
            "M_INVALID_PARAM",
            "not a valid did:key",
        );
    };
    answer(store.bundle_for_did(&did).await)
}

fn answer(r: Result<Option<serde_json::Value>, crate::CacheError>) -> Response {
    match r {
        Ok(Some(bundle)) => axum::Json(bundle).into_response(),
        Ok(None) => matrix_error(
            StatusCode::NOT_FOUND,
            "M_NOT_FOUND",
            "not in this node's cache",
        ),
        Err(e) => {
            // Internal details are logged, never sent to peers.
            tracing::error!(error = %e, "LAN cache read failed");
            matrix_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "M_UNKNOWN",
                "internal error",
            )
        }
    }
}

/// Serves [`lan_router`] on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    store: CacheStore,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, lan_router(store))
        .with_graceful_shutdown(shutdown)
        .await
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
