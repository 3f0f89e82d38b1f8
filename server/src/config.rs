//! Server configuration: built-in defaults, then a TOML file, then `ROAM_*` environment
//! variables and command-line flags (clap merges those two, flags winning).
//!
//! The defaults run a private server on a laptop: `localhost:8008` on loopback, open
//! registration (safe only because nothing else can reach loopback), data in `./.roam-data`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

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
        }
    }
}

/// The effective configuration of one server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub server_name: ServerName,
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
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
}

/// The TOML file's shape. Every key is optional; unknown keys are an error so typos show.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub server_name: Option<String>,
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
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
