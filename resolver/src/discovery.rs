//! Finding a server's base URL: overrides first, then Matrix server discovery.
//!
//! `GET https://{name}/.well-known/matrix/server` → `{"m.server": "host[:port]"}`, else the
//! name itself on port 8448. IP literals and names with an explicit port skip the well-known
//! lookup, as in Matrix. Overrides map a name straight to a base URL (tests, private setups).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use roam_identity_core::{Millis, ServerName};
use url::Url;

use crate::http::SafeClient;

/// The Matrix federation port, used when discovery names none.
pub const DEFAULT_PORT: u16 = 8448;

/// Server name → base URL, with a cache of well-known answers.
#[derive(Debug)]
pub struct Discovery {
    overrides: BTreeMap<ServerName, Url>,
    ttl_ms: Millis,
    cache: Mutex<HashMap<ServerName, (Url, Millis)>>,
}

impl Discovery {
    /// Discovery with these overrides; well-known answers are reused for `ttl_ms`.
    pub fn new(overrides: BTreeMap<ServerName, Url>, ttl_ms: Millis) -> Self {
        Self {
            overrides,
            ttl_ms,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The base URL (no trailing path) for `server`.
    pub async fn base_url(&self, client: &SafeClient, server: &ServerName, now: Millis) -> Url {
        if let Some(u) = self.overrides.get(server) {
            return u.clone();
        }
        if let Some((u, until)) = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(server)
            && *until > now
        {
            return u.clone();
        }
        if server.is_ip_literal() || server.port().is_some() {
            return direct(server);
        }
        let well_known = Url::parse(&format!(
            "https://{}/.well-known/matrix/server",
            server.host()
        ));
        let delegated = match well_known {
            Ok(url) => match client.get_json(&url).await {
                Ok(v) => v
                    .get("m.server")
                    .and_then(|s| s.as_str())
                    .and_then(|s| ServerName::parse(s).ok()),
                Err(e) => {
                    tracing::debug!(%server, error = %e, "no usable .well-known/matrix/server");
                    None
                }
            },
            Err(_) => None,
        };
        match delegated {
            Some(target) => {
                let base = direct(&target);
                self.cache.lock().unwrap_or_else(|e| e.into_inner()).insert(
                    server.clone(),
                    (base.clone(), now.saturating_add(self.ttl_ms)),
                );
                base
            }
            // Matrix falls back to the name itself; not cached, so a well-known that appears
            // later is picked up.
            None => direct(server),
        }
    }
}

/// `https://host:port` for a server name (port 8448 when none is given).
fn direct(server: &ServerName) -> Url {
    let port = server.port().unwrap_or(DEFAULT_PORT);
    // A parsed ServerName is a valid host, so this URL always parses.
    Url::parse(&format!("https://{}:{port}", server.host()))
        .unwrap_or_else(|_| unreachable!("a ServerName is a valid URL host"))
}

/// Percent-encodes one path segment: everything but RFC 3986 unreserved characters, so
/// `@alice:a.example` travels as `%40alice%3Aa.example`.
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Why a `NAME=URL` override was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OverrideError {
    #[error("{0:?} is not NAME=URL (e.g. a.example=http://127.0.0.1:8081)")]
    NoEquals(String),
    #[error("server name {name:?}: {reason}")]
    BadName { name: String, reason: String },
    #[error("{url:?} is not a URL: {reason} (e.g. https://matrix.example.org)")]
    BadUrl { url: String, reason: String },
    #[error("{0:?} is not an http(s) URL with a host")]
    NotHttp(String),
}

/// Parses a base URL given by a person or a config file: `http(s)://host[:port][/prefix]`.
pub fn parse_base_url(s: &str) -> Result<Url, OverrideError> {
    let url = Url::parse(s.trim()).map_err(|e| OverrideError::BadUrl {
        url: s.to_owned(),
        reason: e.to_string(),
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(OverrideError::NotHttp(s.to_owned()));
    }
    Ok(url)
}

/// Parses one federation override, `NAME=URL` (`b.test=http://127.0.0.1:8009`): the one
/// parser behind `--federation-override`, `ROAM_*` variables and `[federation_overrides]`.
pub fn parse_override(pair: &str) -> Result<(ServerName, Url), OverrideError> {
    let (name, url) = pair
        .split_once('=')
        .ok_or_else(|| OverrideError::NoEquals(pair.to_owned()))?;
    let name = ServerName::parse(name.trim()).map_err(|e| OverrideError::BadName {
        name: name.to_owned(),
        reason: e.to_string(),
    })?;
    Ok((name, parse_base_url(url)?))
}

/// `{base}/{segments…}` with each segment percent-encoded.
pub fn endpoint(base: &Url, segments: &[&str]) -> Url {
    let mut url = base.clone();
    let mut path = url.path().trim_end_matches('/').to_owned();
    for s in segments {
        path.push('/');
        path.push_str(&encode_segment(s));
    }
    url.set_path(&path);
    url.set_query(None);
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_encode_ids() {
        let base = Url::parse("http://127.0.0.1:8081").unwrap();
        let u = endpoint(&base, &["_roam", "v1", "users", "@alice:a.example"]);
        assert_eq!(
            u.as_str(),
            "http://127.0.0.1:8081/_roam/v1/users/%40alice%3Aa.example"
        );
        let base = Url::parse("https://h.example/prefix/").unwrap();
        let u = endpoint(&base, &["x", "a/b"]);
        assert_eq!(u.as_str(), "https://h.example/prefix/x/a%2Fb");
    }

    #[test]
    fn direct_urls() {
        assert_eq!(
            direct(&ServerName::parse("a.example").unwrap()).as_str(),
            "https://a.example:8448/"
        );
        assert_eq!(
            direct(&ServerName::parse("a.example:443").unwrap()).as_str(),
            "https://a.example/"
        );
        assert_eq!(
            direct(&ServerName::parse("[::1]:9").unwrap()).as_str(),
            "https://[::1]:9/"
        );
    }
}
