//! Which base URL answers for a server name.
//!
//! The log names servers (`b.example`), commands take URLs. The directory maps between them,
//! in this order: the `--federation-override NAME=URL` flags, the URLs this keystore has used
//! (recorded when a command was given a URL), then Matrix client discovery
//! (`https://NAME/.well-known/matrix/client`), else `https://NAME`.

use std::collections::BTreeMap;

use roam_identity_core::ServerName;
use url::Url;

use crate::homeserver::{Homeserver, HomeserverError};

/// Server name → base URL.
#[derive(Debug, Clone, Default)]
pub struct ServerDirectory {
    overrides: BTreeMap<ServerName, Url>,
    known: BTreeMap<String, String>,
}

impl ServerDirectory {
    /// A directory with explicit overrides and the URLs a keystore remembers.
    pub fn new(overrides: BTreeMap<ServerName, Url>, known: BTreeMap<String, String>) -> Self {
        Self { overrides, known }
    }

    /// What the keystore should remember (`public.server_urls`).
    pub fn known(&self) -> &BTreeMap<String, String> {
        &self.known
    }

    /// Records that `server` answers at `url`.
    pub fn remember(&mut self, server: &ServerName, url: &Url) {
        self.known.insert(
            server.to_string(),
            url.as_str().trim_end_matches('/').to_owned(),
        );
    }

    /// The base URL without network access, if one is configured or known.
    pub fn configured(&self, server: &ServerName) -> Option<Url> {
        if let Some(u) = self.overrides.get(server) {
            return Some(u.clone());
        }
        self.known
            .get(server.as_str())
            .and_then(|s| Url::parse(s).ok())
    }

    /// The base URL of `server`, discovering it if nothing is configured.
    pub async fn base_url(&self, server: &ServerName) -> Result<Url, HomeserverError> {
        if let Some(u) = self.configured(server) {
            return Ok(u);
        }
        let guess =
            Url::parse(&format!("https://{server}")).map_err(|e| HomeserverError::BadResponse {
                url: server.to_string(),
                reason: format!("not usable as a host name: {e}"),
            })?;
        let hs = Homeserver::new(guess.clone())?;
        Ok(hs.well_known_base_url().await.unwrap_or(guess))
    }

    /// A client for `server`.
    pub async fn homeserver(&self, server: &ServerName) -> Result<Homeserver, HomeserverError> {
        Homeserver::new(self.base_url(server).await?)
    }

    /// Connects to `url`, learns its server name from its signed key document and remembers
    /// the mapping.
    pub async fn identify(
        &mut self,
        url: &Url,
    ) -> Result<(ServerName, Homeserver), HomeserverError> {
        let hs = Homeserver::new(url.clone())?;
        let name = hs.server_name().await?;
        self.remember(&name, url);
        Ok((name, hs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_win_over_known_urls() {
        let a = ServerName::parse("a.test").unwrap();
        let b = ServerName::parse("b.test").unwrap();
        let mut d = ServerDirectory::new(
            BTreeMap::from([(a.clone(), Url::parse("http://127.0.0.1:1").unwrap())]),
            BTreeMap::new(),
        );
        d.remember(&a, &Url::parse("http://127.0.0.1:2/").unwrap());
        d.remember(&b, &Url::parse("http://127.0.0.1:3/").unwrap());
        assert_eq!(d.configured(&a).unwrap().as_str(), "http://127.0.0.1:1/");
        assert_eq!(d.configured(&b).unwrap().as_str(), "http://127.0.0.1:3/");
        assert_eq!(d.known()["b.test"], "http://127.0.0.1:3");
        assert!(
            d.configured(&ServerName::parse("c.test").unwrap())
                .is_none()
        );
    }
}
