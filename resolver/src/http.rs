//! Fetching with guard rails: the SSRF guard, timeouts, size caps, redirect and concurrency
//! limits. Every byte the resolver reads from the network comes through [`SafeClient`].
//!
//! The address check runs after DNS resolution (a custom reqwest resolver drops non-public
//! addresses), for IP-literal URLs before connecting, and again on every redirect hop; proxies
//! are disabled because a proxy would resolve names where the check cannot see them.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, RwLock};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::redirect;
use roam_identity_core::canonical;
use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use url::{Host, Url};

use crate::config::ResolverConfig;

/// Why a fetch failed. Messages name the URL so they can go into warnings as they are.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// The SSRF guard refused the target (or a redirect hop, or what a name resolved to).
    #[error("refused to fetch {url}: {reason}")]
    Blocked { url: String, reason: String },
    /// The request did not finish in time.
    #[error("{url}: timed out")]
    Timeout { url: String },
    /// Connection, DNS or protocol failure.
    #[error("{url}: {reason}")]
    Network { url: String, reason: String },
    /// The server answered with a non-success status.
    #[error("{url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    /// The body was larger than the configured cap.
    #[error("{url}: response is larger than {limit} bytes")]
    TooLarge { url: String, limit: usize },
    /// More redirects than allowed.
    #[error("{url}: more than {limit} redirects")]
    TooManyRedirects { url: String, limit: usize },
    /// The body is not strict JSON (duplicate keys, floats, unsafe integers are refused).
    #[error("{url}: body is not valid JSON: {reason}")]
    Json { url: String, reason: String },
}

impl FetchError {
    /// True for a definite answer from the server that it does not have the resource.
    pub fn is_not_found(&self) -> bool {
        matches!(self, FetchError::Status { status: 404, .. })
    }
}

/// True for addresses a resolver must not fetch from unless told to: loopback, private,
/// link-local, multicast, unspecified, broadcast, shared (CGNAT), documentation, benchmarking
/// and reserved ranges, and IPv6 forms that embed such an IPv4 address.
pub fn is_forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_forbidden_v4(v4),
        IpAddr::V6(v6) => is_forbidden_v6(v6),
    }
}

fn is_forbidden_v4(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_documentation()
        || o[0] == 0 // "this network"
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // 100.64.0.0/10 shared address space
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // 192.0.0.0/24 IETF protocol assignments
        || (o[0] == 198 && (o[1] & 0xfe) == 18) // 198.18.0.0/15 benchmarking
        || o[0] >= 240 // reserved
}

fn is_forbidden_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_forbidden_v4(v4);
    }
    let embedded_v4 =
        |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
        || (s[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
        || (s[0] & 0xffc0) == 0xfec0 // deprecated site-local fec0::/10
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        // IPv4-compatible ::a.b.c.d (deprecated, but some stacks still route it)
        || (s[..6].iter().all(|&x| x == 0) && is_forbidden_v4(embedded_v4(s[6], s[7])))
        // NAT64 64:ff9b::/96 reaches the embedded IPv4 address
        || (s[0] == 0x64 && s[1] == 0xff9b && s[2..6].iter().all(|&x| x == 0)
            && is_forbidden_v4(embedded_v4(s[6], s[7])))
        // 6to4 2002::/16 embeds an IPv4 address in bits 16..48
        || (s[0] == 0x2002 && is_forbidden_v4(embedded_v4(s[1], s[2])))
}

/// The SSRF guard's view of the world: whether private targets are allowed at all, and which
/// targets were trusted explicitly (override targets, configured or discovered LAN peers).
/// In offline mode ([`AddressPolicy::lan_only`]) it refuses every origin that is not a LAN
/// peer, whatever its address: that is what keeps an offline resolver off the network.
#[derive(Debug, Default)]
pub struct AddressPolicy {
    allow_private: bool,
    lan_only: bool,
    trusted_hosts: RwLock<HashSet<String>>,
    trusted_origins: RwLock<HashSet<(String, u16)>>,
    lan_origins: RwLock<HashSet<(String, u16)>>,
    /// Origins of peers learned by mDNS: trusted (and LAN peers) only while announced.
    discovered_origins: RwLock<HashSet<(String, u16)>>,
}

/// Why [`AddressPolicy::check_url`] refused a URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// Not `http` or `https`.
    #[error("scheme {0:?} is not http(s)")]
    Scheme(String),
    /// Offline, and the origin is not a LAN peer.
    #[error("offline: {0} is not a LAN peer, and an offline resolver asks nobody else")]
    NotALanPeer(String),
    /// The URL names no host.
    #[error("URL has no host")]
    NoHost,
    /// A non-public address that nobody trusted explicitly.
    #[error("{0} is a loopback, private, link-local, multicast or reserved address")]
    Forbidden(IpAddr),
}

/// The guard's refusal, carried through reqwest's error chain so it can be recognised.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Blocked(String);

impl AddressPolicy {
    /// A policy; `allow_private` turns the guard off.
    pub fn new(allow_private: bool) -> Self {
        Self {
            allow_private,
            ..Self::default()
        }
    }

    /// Offline mode: only origins added with [`Self::trust_lan_peer`] may be fetched from (on
    /// every request and every redirect hop); everything else is refused before connecting.
    pub fn lan_only(mut self, lan_only: bool) -> Self {
        self.lan_only = lan_only;
        self
    }

    /// True in offline mode.
    pub fn is_lan_only(&self) -> bool {
        self.lan_only
    }

    /// True when the guard is off (`allow_private`).
    pub fn allows_private(&self) -> bool {
        self.allow_private
    }

    /// Trusts a peer learned by mDNS (already checked by the caller) until
    /// [`Self::withdraw_discovered_peer`]; explicit trust is kept apart and never withdrawn.
    pub(crate) fn trust_discovered_peer(&self, url: &Url) {
        if let Some(origin) = origin_key(url) {
            write_lock(&self.discovered_origins).insert(origin);
        }
    }

    /// Withdraws the trust given by [`Self::trust_discovered_peer`].
    pub(crate) fn withdraw_discovered_peer(&self, url: &Url) {
        if let Some(origin) = origin_key(url) {
            write_lock(&self.discovered_origins).remove(&origin);
        }
    }

    fn discovered(&self, url: &Url) -> bool {
        origin_key(url).is_some_and(|o| read_lock(&self.discovered_origins).contains(&o))
    }

    /// Trusts a LAN peer's origin like [`Self::trust`], and lets it through in offline mode.
    pub fn trust_lan_peer(&self, url: &Url) {
        self.trust(url);
        if let Some(origin) = origin_key(url) {
            write_lock(&self.lan_origins).insert(origin);
        }
    }

    /// Trusts the origin of `url` explicitly (and, for a DNS name, that name resolving to a
    /// private address): used for override targets and LAN peers, which an operator chose.
    pub fn trust(&self, url: &Url) {
        if let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) {
            let host = host.to_ascii_lowercase();
            if let Some(Host::Domain(_)) = url.host() {
                write_lock(&self.trusted_hosts).insert(host.clone());
            }
            write_lock(&self.trusted_origins).insert((host, port));
        }
    }

    fn origin_trusted(&self, url: &Url) -> bool {
        match (url.host_str(), url.port_or_known_default()) {
            (Some(h), Some(p)) => {
                read_lock(&self.trusted_origins).contains(&(h.to_ascii_lowercase(), p))
            }
            _ => false,
        }
    }

    fn host_trusted(&self, host: &str) -> bool {
        read_lock(&self.trusted_hosts).contains(&host.to_ascii_lowercase())
    }

    /// Checks a URL before connecting (and on each redirect hop): scheme, and for IP
    /// literals the address itself. DNS names are checked after resolution.
    pub fn check_url(&self, url: &Url) -> Result<(), Refused> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Refused::Scheme(url.scheme().to_owned()));
        }
        if self.lan_only
            && !origin_key(url).is_some_and(|o| read_lock(&self.lan_origins).contains(&o))
            && !self.discovered(url)
        {
            return Err(Refused::NotALanPeer(url.origin().ascii_serialization()));
        }
        let ip = match url.host() {
            Some(Host::Ipv4(ip)) => IpAddr::V4(ip),
            Some(Host::Ipv6(ip)) => IpAddr::V6(ip),
            Some(Host::Domain(_)) => return Ok(()),
            None => return Err(Refused::NoHost),
        };
        if self.allow_private
            || !is_forbidden(ip)
            || self.origin_trusted(url)
            || self.discovered(url)
        {
            Ok(())
        } else {
            Err(Refused::Forbidden(ip))
        }
    }
}

/// `(host, port)` of a URL, the host lowercased.
fn origin_key(url: &Url) -> Option<(String, u16)> {
    Some((
        url.host_str()?.to_ascii_lowercase(),
        url.port_or_known_default()?,
    ))
}

fn read_lock<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    // A panic while holding the lock cannot leave a HashSet half-updated in a way that
    // matters here, so a poisoned lock is still usable.
    l.read().unwrap_or_else(|e| e.into_inner())
}

fn write_lock<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

/// A reqwest DNS resolver that resolves with the system resolver and then drops every
/// non-public address (unless allowed), so a name cannot smuggle a request to 127.0.0.1.
#[derive(Debug, Clone)]
struct GuardedDns {
    policy: Arc<AddressPolicy>,
}

impl Resolve for GuardedDns {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let all: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if policy.allow_private || policy.host_trusted(&host) {
                return Ok(Box::new(all.into_iter()) as Addrs);
            }
            let (public, private): (Vec<SocketAddr>, Vec<SocketAddr>) =
                all.into_iter().partition(|a| !is_forbidden(a.ip()));
            if public.is_empty() {
                let shown = private
                    .first()
                    .map(|a| a.ip().to_string())
                    .unwrap_or_else(|| "nothing".to_owned());
                let err: Box<dyn std::error::Error + Send + Sync> = Box::new(Blocked(format!(
                    "{host} resolves to {shown}, which is not a public address"
                )));
                return Err(err);
            }
            Ok(Box::new(public.into_iter()) as Addrs)
        })
    }
}

/// Limits requests in flight per origin, so one slow or hostile server cannot hold every
/// connection of the resolver.
#[derive(Debug)]
struct OriginLimiter {
    per_origin: usize,
    semaphores: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl OriginLimiter {
    async fn acquire(&self, url: &Url) -> Option<OwnedSemaphorePermit> {
        let sem = {
            let mut map = self.semaphores.lock().unwrap_or_else(|e| e.into_inner());
            map.entry(url.origin().ascii_serialization())
                .or_insert_with(|| Arc::new(Semaphore::new(self.per_origin.max(1))))
                .clone()
        };
        sem.acquire_owned().await.ok()
    }
}

/// The resolver's HTTP client.
#[derive(Debug, Clone)]
pub struct SafeClient {
    client: reqwest::Client,
    policy: Arc<AddressPolicy>,
    limiter: Arc<OriginLimiter>,
    max_body_bytes: usize,
    max_redirects: usize,
    validators: Arc<Mutex<Validators>>,
}

/// The ETags and bodies of recent answers, by URL, so a revalidation can ask
/// `If-None-Match` and reuse the body on `304`. Bounded: [`VALIDATORS_MAX`] entries, bodies of
/// at most [`VALIDATOR_BODY_MAX`] bytes; the oldest entry leaves first.
#[derive(Debug, Default)]
struct Validators {
    by_url: HashMap<String, (String, Arc<Value>)>,
    order: std::collections::VecDeque<String>,
}

const VALIDATORS_MAX: usize = 1024;
const VALIDATOR_BODY_MAX: usize = 256 * 1024;

impl Validators {
    fn get(&self, url: &str) -> Option<(String, Arc<Value>)> {
        self.by_url.get(url).cloned()
    }

    fn put(&mut self, url: String, etag: String, body: Arc<Value>) {
        if self.by_url.insert(url.clone(), (etag, body)).is_none() {
            self.order.push_back(url);
        }
        while self.order.len() > VALIDATORS_MAX {
            if let Some(old) = self.order.pop_front() {
                self.by_url.remove(&old);
            }
        }
    }
}

impl SafeClient {
    /// Builds the client from the configuration; override targets and listed LAN peers are
    /// trusted explicitly. With `config.offline` the client fetches from LAN peers only.
    pub fn new(config: &ResolverConfig) -> Result<Self, FetchError> {
        let policy = Arc::new(AddressPolicy::new(config.allow_private).lan_only(config.offline));
        for url in config.overrides.values() {
            policy.trust(url);
        }
        for url in &config.lan_peers {
            policy.trust_lan_peer(url);
        }
        let max_redirects = config.max_redirects;
        let redirect_policy = {
            let policy = policy.clone();
            redirect::Policy::custom(move |attempt| {
                if attempt.previous().len() > max_redirects {
                    let msg = format!("more than {max_redirects} redirects");
                    return attempt.error(TooManyRedirects(msg));
                }
                match policy.check_url(attempt.url()) {
                    Ok(()) => attempt.follow(),
                    Err(reason) => {
                        let msg = format!("redirect to {}: {reason}", attempt.url());
                        attempt.error(Blocked(msg))
                    }
                }
            })
        };
        let client = reqwest::Client::builder()
            .no_proxy()
            .dns_resolver(GuardedDns {
                policy: policy.clone(),
            })
            .redirect(redirect_policy)
            .timeout(config.request_timeout)
            .connect_timeout(config.connect_timeout)
            .user_agent(concat!("roam-resolver/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| FetchError::Network {
                url: String::new(),
                reason: format!("cannot build HTTP client: {e}"),
            })?;
        Ok(Self {
            client,
            policy,
            limiter: Arc::new(OriginLimiter {
                per_origin: config.per_origin_concurrency,
                semaphores: Mutex::new(HashMap::new()),
            }),
            max_body_bytes: config.max_body_bytes,
            max_redirects,
            validators: Arc::default(),
        })
    }

    /// GETs `url` as [`SafeClient::get_json`] does, revalidating: when an earlier answer
    /// from `url` carried an `ETag`, the request sends it in `If-None-Match` and a `304 Not
    /// Modified` answers with that earlier body (which the caller verifies like any other).
    pub async fn get_json_revalidated(&self, url: &Url) -> Result<Value, FetchError> {
        let key = url.to_string();
        let known = self
            .validators
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key);
        let mut request = self
            .client
            .get(url.clone())
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some((etag, _)) = &known {
            request = request.header(reqwest::header::IF_NONE_MATCH, etag.as_str());
        }
        let resp = self.send_checked(url, request).await?;
        if resp.status() == reqwest::StatusCode::NOT_MODIFIED
            && let Some((_, body)) = known
        {
            return Ok(Value::clone(&body));
        }
        let etag = resp
            .headers()
            .get(reqwest::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .filter(|t| t.starts_with('"'))
            .map(str::to_owned);
        let bytes = self.read_body(url, resp).await?;
        let value = canonical::parse_strict(&bytes).map_err(|e| FetchError::Json {
            url: key.clone(),
            reason: e.to_string(),
        })?;
        if let Some(etag) = etag.filter(|_| bytes.len() <= VALIDATOR_BODY_MAX) {
            let mut v = self.validators.lock().unwrap_or_else(|p| p.into_inner());
            v.put(key, etag, Arc::new(value.clone()));
        }
        Ok(value)
    }

    /// The guard, to trust targets found later (mDNS-discovered peers).
    pub fn policy(&self) -> &Arc<AddressPolicy> {
        &self.policy
    }

    /// GETs `url` and parses the body as strict JSON; non-2xx statuses are errors.
    pub async fn get_json(&self, url: &Url) -> Result<Value, FetchError> {
        let body = self.get_bytes(url).await?;
        canonical::parse_strict(&body).map_err(|e| FetchError::Json {
            url: url.to_string(),
            reason: e.to_string(),
        })
    }

    /// GETs `url` and returns the body, at most `max_body_bytes` of it.
    pub async fn get_bytes(&self, url: &Url) -> Result<Vec<u8>, FetchError> {
        let request = self
            .client
            .get(url.clone())
            .header(reqwest::header::ACCEPT, "application/json");
        self.send(url, request).await
    }

    /// POSTs `body` as JSON to `url` and parses the answer as strict JSON. The same guard,
    /// limits and redirect checks apply as for GET (homeservers forwarding signed ops to
    /// each other use this).
    pub async fn post_json(&self, url: &Url, body: &Value) -> Result<Value, FetchError> {
        let request = self
            .client
            .post(url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .json(body);
        let bytes = self.send(url, request).await?;
        canonical::parse_strict(&bytes).map_err(|e| FetchError::Json {
            url: url.to_string(),
            reason: e.to_string(),
        })
    }

    /// Sends `method` to `url` with an optional JSON body and `Authorization` header (signed
    /// server-server requests) and parses the answer as strict JSON. Same guard and limits.
    pub async fn request_json(
        &self,
        method: reqwest::Method,
        url: &Url,
        body: Option<&Value>,
        authorization: Option<&str>,
    ) -> Result<Value, FetchError> {
        let mut request = self
            .client
            .request(method, url.clone())
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(b) = body {
            request = request.json(b);
        }
        if let Some(a) = authorization {
            request = request.header(reqwest::header::AUTHORIZATION, a);
        }
        let bytes = self.send(url, request).await?;
        canonical::parse_strict(&bytes).map_err(|e| FetchError::Json {
            url: url.to_string(),
            reason: e.to_string(),
        })
    }

    /// Sends a request built for `url` through the guard and reads a capped body.
    async fn send(
        &self,
        url: &Url,
        request: reqwest::RequestBuilder,
    ) -> Result<Vec<u8>, FetchError> {
        let resp = self.send_checked(url, request).await?;
        if resp.status() == reqwest::StatusCode::NOT_MODIFIED {
            return Err(FetchError::Status {
                url: url.to_string(),
                status: 304,
            });
        }
        self.read_body(url, resp).await
    }

    /// Sends a request through the guard and the per-origin limit; a status other than
    /// success or `304` is an error.
    async fn send_checked(
        &self,
        url: &Url,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, FetchError> {
        let shown = url.to_string();
        self.policy
            .check_url(url)
            .map_err(|refused| FetchError::Blocked {
                url: shown.clone(),
                reason: refused.to_string(),
            })?;
        let _permit = self.limiter.acquire(url).await;
        let resp = request.send().await.map_err(|e| self.classify(&shown, e))?;
        let status = resp.status();
        if !status.is_success() && status != reqwest::StatusCode::NOT_MODIFIED {
            return Err(FetchError::Status {
                url: shown,
                status: status.as_u16(),
            });
        }
        Ok(resp)
    }

    /// Reads at most `max_body_bytes` of an answer.
    async fn read_body(
        &self,
        url: &Url,
        mut resp: reqwest::Response,
    ) -> Result<Vec<u8>, FetchError> {
        let shown = url.to_string();
        let limit = self.max_body_bytes;
        if resp.content_length().is_some_and(|n| n > limit as u64) {
            return Err(FetchError::TooLarge { url: shown, limit });
        }
        // Content-Length may be absent or lie: count what actually arrives.
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| self.classify(&shown, e))? {
            if body.len() + chunk.len() > limit {
                return Err(FetchError::TooLarge { url: shown, limit });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    fn classify(&self, url: &str, e: reqwest::Error) -> FetchError {
        let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(err) = cur {
            if let Some(b) = err.downcast_ref::<Blocked>() {
                return FetchError::Blocked {
                    url: url.to_owned(),
                    reason: b.0.clone(),
                };
            }
            if err.downcast_ref::<TooManyRedirects>().is_some() {
                return FetchError::TooManyRedirects {
                    url: url.to_owned(),
                    limit: self.max_redirects,
                };
            }
            cur = err.source();
        }
        if e.is_timeout() {
            return FetchError::Timeout {
                url: url.to_owned(),
            };
        }
        let mut reason = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            reason.push_str(": ");
            reason.push_str(&s.to_string());
            src = s.source();
        }
        FetchError::Network {
            url: url.to_owned(),
            reason,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct TooManyRedirects(String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_addresses() {
        for s in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "224.0.0.251",
            "0.0.0.0",
            "255.255.255.255",
            "100.64.0.1",
            "198.18.0.1",
            "240.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "ff02::fb",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
            "2002:c0a8:0101::1",
            "2001:db8::1",
        ] {
            assert!(is_forbidden(s.parse().unwrap()), "{s} should be forbidden");
        }
        for s in [
            "93.184.216.34",
            "1.1.1.1",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(!is_forbidden(s.parse().unwrap()), "{s} should be allowed");
        }
    }

    #[test]
    fn url_check_honours_trust_and_allow_private() {
        let p = AddressPolicy::new(false);
        let local = Url::parse("http://127.0.0.1:8081/x").unwrap();
        assert!(p.check_url(&local).is_err());
        assert!(
            p.check_url(&Url::parse("http://[::1]:80/").unwrap())
                .is_err()
        );
        assert!(
            p.check_url(&Url::parse("file:///etc/passwd").unwrap())
                .is_err()
        );
        assert!(
            p.check_url(&Url::parse("https://example.com/").unwrap())
                .is_ok()
        );
        p.trust(&Url::parse("http://127.0.0.1:8081").unwrap());
        assert!(p.check_url(&local).is_ok());
        // Trust is per origin: another port on the same address stays refused.
        assert!(
            p.check_url(&Url::parse("http://127.0.0.1:22/").unwrap())
                .is_err()
        );
        assert!(
            AddressPolicy::new(true)
                .check_url(&Url::parse("http://10.0.0.1/").unwrap())
                .is_ok()
        );
    }

    #[test]
    fn lan_only_refuses_everything_but_lan_peers() {
        let p = AddressPolicy::new(true).lan_only(true);
        let peer = Url::parse("http://192.168.1.20:8450").unwrap();
        let overridden = Url::parse("http://127.0.0.1:8081").unwrap();
        p.trust(&overridden);
        p.trust_lan_peer(&peer);
        assert!(
            p.check_url(&peer.join("/_roam/v1/users/x").unwrap())
                .is_ok()
        );
        for refused in [
            "https://a.example/.well-known/matrix/server",
            "https://93.184.216.34:8448/_matrix/key/v2/server",
            "http://127.0.0.1:8081/_roam/v1/users/x",
            "http://192.168.1.20:8451/",
        ] {
            let err = p.check_url(&Url::parse(refused).unwrap()).unwrap_err();
            assert!(matches!(err, Refused::NotALanPeer(_)), "{refused}: {err}");
            assert!(err.to_string().starts_with("offline:"), "{refused}: {err}");
        }
        let online = AddressPolicy::new(true);
        assert!(
            online
                .check_url(&Url::parse("https://a.example/").unwrap())
                .is_ok()
        );
    }
}
