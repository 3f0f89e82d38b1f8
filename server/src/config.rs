//! Server configuration: built-in defaults, then a TOML file, then `ROAM_*` environment
//! variables and command-line flags (clap merges those two, flags winning).
//!
//! The defaults run a private server on a laptop: `localhost:8008` on loopback, open
//! registration (safe only because nothing else can reach loopback), data in `./.roam-data`.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use roam_identity_core::ServerName;
use serde::Deserialize;

/// Who may register.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RegistrationMode {
    /// Anyone, after the `m.login.dummy` stage.
    Open,
    /// Only with a registration token (`m.login.registration_token`).
    Token,
    /// Nobody.
    Closed,
}

impl std::fmt::Display for RegistrationMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Open => "open",
            Self::Token => "token",
            Self::Closed => "closed",
        })
    }
}

impl std::str::FromStr for RegistrationMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "open" => Ok(Self::Open),
            "token" => Ok(Self::Token),
            "closed" => Ok(Self::Closed),
            other => Err(format!(
                "registration mode {other:?} is not one of open, token, closed"
            )),
        }
    }
}

/// A token bucket: `burst` requests at once, refilled at `per_second`.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst: u32,
}

/// How many new account-log ops one DID may add (enforced by `portable::oprate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OpLimits {
    pub per_hour: u32,
    pub per_day: u32,
}

impl Default for OpLimits {
    fn default() -> Self {
        Self {
            per_hour: 10,
            per_day: 30,
        }
    }
}

/// Limits on the endpoints that cost an argon2 hash or invite guessing.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimits {
    pub register_per_ip: RateLimit,
    pub login_per_ip: RateLimit,
    pub login_per_account: RateLimit,
    /// Key-login challenges (`POST /_roam/v1/login/challenge`), per client address.
    #[serde(default = "default_challenge_per_ip")]
    pub challenge_per_ip: RateLimit,
    /// Every request that is not a GET, HEAD or OPTIONS under `/_matrix/client` and
    /// `/_roam/v1`, per client address.
    #[serde(default = "default_write_per_ip")]
    pub write_per_ip: RateLimit,
    /// The routes that check a password through user-interactive authentication (device
    /// deletion, cross-signing upload), per client address.
    #[serde(default = "default_uia_per_ip")]
    pub uia_per_ip: RateLimit,
}

fn default_write_per_ip() -> RateLimit {
    // Ten writes a second sustained, bursts of 100: a busy client syncing keys is never
    // slowed, a script hammering the API from one address is.
    RateLimit {
        per_second: 10.0,
        burst: 100,
    }
}

fn default_uia_per_ip() -> RateLimit {
    // Like the login limit: a password guess every few seconds at most.
    RateLimit {
        per_second: 0.17,
        burst: 10,
    }
}

fn default_challenge_per_ip() -> RateLimit {
    // One per second sustained, bursts of 20: a client doing a few key operations in a row
    // is never slowed, a flood is.
    RateLimit {
        per_second: 1.0,
        burst: 20,
    }
}

impl Default for RateLimits {
    fn default() -> Self {
        // Synapse's defaults for rc_registration and rc_login, roughly.
        Self {
            register_per_ip: RateLimit {
                per_second: 0.17,
                burst: 3,
            },
            login_per_ip: RateLimit {
                per_second: 0.17,
                burst: 5,
            },
            login_per_account: RateLimit {
                per_second: 0.17,
                burst: 5,
            },
            challenge_per_ip: default_challenge_per_ip(),
            write_per_ip: default_write_per_ip(),
            uia_per_ip: default_uia_per_ip(),
        }
    }
}

impl RateLimits {
    /// Limits high enough never to trigger, for tests that are not about rate limiting.
    pub fn unlimited() -> Self {
        let none = RateLimit {
            per_second: 1e9,
            burst: u32::MAX,
        };
        Self {
            register_per_ip: none,
            login_per_ip: none,
            login_per_account: none,
            challenge_per_ip: none,
            write_per_ip: none,
            uia_per_ip: none,
        }
    }
}

/// The effective configuration of one server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub server_name: ServerName,
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// `postgres://…`: keep the store in PostgreSQL (several nodes may share it) instead of
    /// redb in `data_dir`.
    pub database_url: Option<String>,
    /// Connections each node keeps to PostgreSQL at most.
    pub database_pool_size: u32,
    /// What `/.well-known/matrix/client` advertises as `m.homeserver.base_url`.
    pub public_base_url: String,
    /// What `/.well-known/matrix/server` advertises as `m.server`.
    pub federation_address: String,
    pub registration: RegistrationMode,
    /// Cap on request bodies; larger ones get `M_TOO_LARGE`.
    pub max_body_bytes: usize,
    pub rate_limits: RateLimits,
    /// How long a fetched server key document may be cached by others.
    pub key_validity_ms: u64,
    /// Server name → base URL for server-to-server calls, bypassing discovery (tests,
    /// private deployments). Override targets may be private addresses.
    pub federation_overrides: std::collections::BTreeMap<ServerName, url::Url>,
    /// Let server-to-server calls reach loopback, private and link-local addresses.
    pub allow_private_fetch: bool,
    /// Per-DID limits on new account-log ops.
    pub op_limits: OpLimits,
    /// How long access tokens live (ms); `None` (the default): until logout.
    pub access_token_lifetime_ms: Option<u64>,
    /// The HTTP edge: timeouts, load shedding, which peers may name the client address.
    pub edge: EdgeConfig,
}

/// Bounds on what one request or connection may cost.
#[derive(Debug, Clone, PartialEq)]
pub struct EdgeConfig {
    /// A request not answered within this gets `503 M_LIMIT_EXCEEDED` (the handler is
    /// dropped; a store write already handed to the blocking pool still completes or not,
    /// atomically).
    pub request_timeout: Duration,
    /// A connection that has not sent a complete request head within this is closed
    /// (slowloris); also how long an idle keep-alive connection stays open.
    pub header_read_timeout: Duration,
    /// Requests handled at once; more are shed with `503 M_LIMIT_EXCEEDED` and `Retry-After`.
    pub max_concurrent_requests: usize,
    /// Peers (reverse proxies) whose `X-Forwarded-For` / `Forwarded` headers name the client
    /// address; from anyone else the socket address counts.
    pub trusted_proxies: Vec<IpCidr>,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(30),
            header_read_timeout: Duration::from_secs(10),
            max_concurrent_requests: 512,
            trusted_proxies: Vec::new(),
        }
    }
}

/// An address range in CIDR notation (`10.0.0.0/8`, `fd00::/8`); a bare address is a /32
/// or /128.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpCidr {
    addr: IpAddr,
    prefix: u8,
}

impl IpCidr {
    /// The prefix length: 0 matches every address of the family.
    pub fn prefix_len(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` is inside the range (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => prefix_eq(
                u128::from(net.to_bits()),
                u128::from(ip.to_bits()),
                32,
                self.prefix,
            ),
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_eq(net.to_bits(), ip.to_bits(), 128, self.prefix)
            }
            _ => false,
        }
    }
}

fn prefix_eq(a: u128, b: u128, bits: u8, prefix: u8) -> bool {
    let shift = u32::from(bits - prefix.min(bits));
    a.checked_shr(shift).unwrap_or(0) == b.checked_shr(shift).unwrap_or(0)
}

impl std::str::FromStr for IpCidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .trim()
            .parse()
            .map_err(|e| format!("{s:?} is not an address or CIDR range: {e}"))?;
        let addr = addr.to_canonical();
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: prefix length must be 0..={max}"))?,
        };
        Ok(Self { addr, prefix })
    }
}

impl std::fmt::Display for IpCidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl<'de> Deserialize<'de> for IpCidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl ServerConfig {
    /// Defaults for a server called `server_name`; the addresses follow from it.
    pub fn for_server_name(server_name: ServerName, listen: SocketAddr, data_dir: PathBuf) -> Self {
        let public_base_url = default_base_url(&server_name);
        let federation_address = default_federation_address(&server_name, listen);
        Self {
            server_name,
            listen,
            data_dir,
            database_url: None,
            database_pool_size: 16,
            public_base_url,
            federation_address,
            registration: RegistrationMode::Open,
            max_body_bytes: 1024 * 1024,
            rate_limits: RateLimits::default(),
            key_validity_ms: 7 * 24 * 3600 * 1000,
            federation_overrides: Default::default(),
            allow_private_fetch: false,
            op_limits: Default::default(),
            access_token_lifetime_ms: None,
            edge: EdgeConfig::default(),
        }
    }
}

fn default_base_url(server_name: &ServerName) -> String {
    // A name with an explicit port is a development setup without TLS in front of it.
    if server_name.port().is_some() {
        format!("http://{server_name}")
    } else {
        format!("https://{server_name}")
    }
}

fn default_federation_address(server_name: &ServerName, listen: SocketAddr) -> String {
    match server_name.port() {
        Some(_) => server_name.to_string(),
        None => format!("{}:{}", server_name.host(), listen.port()),
    }
}

/// Why the configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("server_name {value:?}: {source}")]
    ServerName {
        value: String,
        source: roam_identity_core::IdError,
    },
    #[error("listen address {value:?} is not host:port: {message}")]
    Listen { value: String, message: String },
    #[error("registration: {0}")]
    Registration(String),
    #[error(
        "federation override {0:?}: expected NAME=URL, e.g. b.test=http://127.0.0.1:8009 ({1})"
    )]
    FederationOverride(String, String),
    #[error("database_url: expected postgres://user:password@host:port/database")]
    DatabaseUrl,
}

/// The TOML file's shape. Every key is optional; unknown keys are an error so typos show.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub server_name: Option<String>,
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    /// `postgres://user:password@host:port/database`: the store in PostgreSQL.
    pub database_url: Option<String>,
    /// Connections to PostgreSQL per node (default 16).
    pub database_pool_size: Option<u32>,
    pub public_base_url: Option<String>,
    pub federation_address: Option<String>,
    pub registration: Option<RegistrationMode>,
    pub max_body_bytes: Option<usize>,
    pub key_validity_hours: Option<u64>,
    pub rate_limits: Option<RateLimits>,
    /// `name = "http://host:port"` pairs, like `--federation-override name=URL`.
    pub federation_overrides: Option<std::collections::BTreeMap<String, String>>,
    pub allow_private_fetch: Option<bool>,
    pub op_limits: Option<OpLimits>,
    pub access_token_lifetime_ms: Option<u64>,
    /// Seconds a request may take before it is answered `503` (default 30).
    pub request_timeout_secs: Option<u64>,
    /// Seconds a connection may take to send a request head (default 10).
    pub header_read_timeout_secs: Option<u64>,
    /// Requests handled at once before new ones are shed (default 512).
    pub max_concurrent_requests: Option<usize>,
    /// CIDR ranges of reverse proxies whose forwarding headers are believed.
    pub trusted_proxies: Option<Vec<IpCidr>>,
}

impl FileConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }
}

/// Values given on the command line or in the environment; they override the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub server_name: Option<String>,
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub public_base_url: Option<String>,
    pub registration: Option<String>,
    /// `NAME=URL` pairs; added to (and winning over) the file's.
    pub federation_overrides: Vec<String>,
    pub allow_private_fetch: bool,
}

pub const DEFAULT_SERVER_NAME: &str = "localhost:8008";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8008";
pub const DEFAULT_DATA_DIR: &str = ".roam-data";

/// Merges defaults, the file and the overrides into the effective configuration.
pub fn resolve(file: FileConfig, over: Overrides) -> Result<ServerConfig, ConfigError> {
    let mut edge = EdgeConfig::default();
    apply_edge(&mut edge, &file);
    let name = over
        .server_name
        .or(file.server_name)
        .unwrap_or_else(|| DEFAULT_SERVER_NAME.into());
    let server_name = ServerName::parse(&name).map_err(|source| ConfigError::ServerName {
        value: name.clone(),
        source,
    })?;
    let listen_text = over
        .listen
        .or(file.listen)
        .unwrap_or_else(|| DEFAULT_LISTEN.into());
    let listen: SocketAddr =
        listen_text
            .parse()
            .map_err(|e: std::net::AddrParseError| ConfigError::Listen {
                value: listen_text.clone(),
                message: e.to_string(),
            })?;
    let data_dir = over
        .data_dir
        .or(file.data_dir)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    let mut config = ServerConfig::for_server_name(server_name, listen, data_dir);
    config.edge = edge;
    apply_database(
        &mut config,
        file.database_url,
        file.database_pool_size,
        over.database_url,
    )?;
    if let Some(url) = over.public_base_url.or(file.public_base_url) {
        config.public_base_url = url.trim_end_matches('/').to_owned();
    }
    if let Some(addr) = file.federation_address {
        config.federation_address = addr;
    }
    if let Some(mode) = over.registration {
        config.registration = mode.parse().map_err(ConfigError::Registration)?;
    } else if let Some(mode) = file.registration {
        config.registration = mode;
    }
    if let Some(n) = file.max_body_bytes {
        config.max_body_bytes = n;
    }
    if let Some(h) = file.key_validity_hours {
        config.key_validity_ms = h.saturating_mul(3600 * 1000);
    }
    if let Some(limits) = file.rate_limits {
        config.rate_limits = limits;
    }
    if let Some(limits) = file.op_limits {
        config.op_limits = limits;
    }
    if let Some(ms) = file.access_token_lifetime_ms {
        config.access_token_lifetime_ms = Some(ms);
    }
    let pairs = file
        .federation_overrides
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .chain(over.federation_overrides);
    for pair in pairs {
        let (name, url) = parse_override(&pair)?;
        config.federation_overrides.insert(name, url);
    }
    config.allow_private_fetch =
        over.allow_private_fetch || file.allow_private_fetch.unwrap_or(false);
    Ok(config)
}

fn apply_database(
    config: &mut ServerConfig,
    file_url: Option<String>,
    pool_size: Option<u32>,
    over: Option<String>,
) -> Result<(), ConfigError> {
    let url = over.or(file_url);
    if let Some(url) = url.filter(|u| !u.is_empty()) {
        let scheme_ok = url.starts_with("postgres://") || url.starts_with("postgresql://");
        if !scheme_ok {
            return Err(ConfigError::DatabaseUrl);
        }
        config.database_url = Some(url);
    }
    if let Some(n) = pool_size {
        config.database_pool_size = n.clamp(1, 1000);
    }
    Ok(())
}

fn apply_edge(edge: &mut EdgeConfig, file: &FileConfig) {
    if let Some(s) = file.request_timeout_secs {
        edge.request_timeout = Duration::from_secs(s.max(1));
    }
    if let Some(s) = file.header_read_timeout_secs {
        edge.header_read_timeout = Duration::from_secs(s.max(1));
    }
    if let Some(n) = file.max_concurrent_requests {
        edge.max_concurrent_requests = n.max(1);
    }
    if let Some(list) = &file.trusted_proxies {
        edge.trusted_proxies = list.clone();
    }
}

/// Parses `NAME=URL` (`b.test=http://127.0.0.1:8009`) with the resolver's one parser.
pub fn parse_override(pair: &str) -> Result<(ServerName, url::Url), ConfigError> {
    roam_resolver::discovery::parse_override(pair)
        .map_err(|e| ConfigError::FederationOverride(pair.to_owned(), e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_then_file_then_overrides() {
        let c = resolve(FileConfig::default(), Overrides::default()).unwrap();
        assert_eq!(c.server_name.as_str(), "localhost:8008");
        assert_eq!(c.public_base_url, "http://localhost:8008");
        assert_eq!(c.federation_address, "localhost:8008");
        assert_eq!(c.registration, RegistrationMode::Open);

        let file: FileConfig = toml::from_str(
            "server_name = \"a.example\"\nregistration = \"token\"\n[rate_limits]\nlogin_per_ip = { per_second = 1.0, burst = 2 }\n",
        )
        .unwrap();
        let over = Overrides {
            listen: Some("0.0.0.0:9000".into()),
            registration: Some("closed".into()),
            ..Default::default()
        };
        let c = resolve(file, over).unwrap();
        assert_eq!(c.server_name.as_str(), "a.example");
        assert_eq!(c.public_base_url, "https://a.example");
        assert_eq!(c.federation_address, "a.example:9000");
        assert_eq!(c.registration, RegistrationMode::Closed);
        assert_eq!(c.rate_limits.login_per_ip.burst, 2);
        assert_eq!(
            c.rate_limits.register_per_ip,
            RateLimits::default().register_per_ip
        );
    }

    #[test]
    fn edge_settings_and_cidrs() {
        let file: FileConfig = toml::from_str(
            "request_timeout_secs = 5\nheader_read_timeout_secs = 2\nmax_concurrent_requests = 7\ntrusted_proxies = [\"10.0.0.0/8\", \"::1\"]\n[rate_limits]\nwrite_per_ip = { per_second = 1.0, burst = 3 }\n",
        )
        .unwrap();
        let c = resolve(file, Overrides::default()).unwrap();
        assert_eq!(c.edge.request_timeout, Duration::from_secs(5));
        assert_eq!(c.edge.header_read_timeout, Duration::from_secs(2));
        assert_eq!(c.edge.max_concurrent_requests, 7);
        assert_eq!(c.rate_limits.write_per_ip.burst, 3);
        assert_eq!(c.rate_limits.uia_per_ip, RateLimits::default().uia_per_ip);
        let [net, lo] = c.edge.trusted_proxies[..] else {
            panic!("two ranges")
        };
        assert!(net.contains("10.1.2.3".parse().unwrap()));
        assert!(net.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!net.contains("11.0.0.1".parse().unwrap()));
        assert!(lo.contains("::1".parse().unwrap()));
        assert!(!lo.contains("::2".parse().unwrap()));
        let all: IpCidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("203.0.113.9".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<IpCidr>().is_err());
        assert!("nonsense".parse::<IpCidr>().is_err());
        assert!(toml::from_str::<FileConfig>("trusted_proxies = [\"1.2.3.4/99\"]").is_err());
    }

    #[test]
    fn bad_values_are_reported() {
        assert!(toml::from_str::<FileConfig>("server_nam = \"x\"").is_err());
        let over = Overrides {
            server_name: Some("bad name".into()),
            ..Default::default()
        };
        assert!(matches!(
            resolve(FileConfig::default(), over),
            Err(ConfigError::ServerName { .. })
        ));
        let over = Overrides {
            registration: Some("maybe".into()),
            ..Default::default()
        };
        assert!(matches!(
            resolve(FileConfig::default(), over),
            Err(ConfigError::Registration(_))
        ));
    }
}
