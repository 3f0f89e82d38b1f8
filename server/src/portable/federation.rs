//! Server-to-server calls of portable accounts: fetching a log from another homeserver,
//! forwarding signed ops to the servers an account names, and resolving DIDs this server
//! does not hold.
//!
//! Behind a trait so the service logic does not care how bytes travel; the implementation
//! goes through the resolver's guarded HTTP client (discovery, overrides, SSRF guard,
//! timeouts, size caps), the one client every outgoing fetch of the server uses.

use std::future::Future;
use std::pin::Pin;

use roam_identity_core::server_keys::ServerKeys;
use roam_identity_core::{Did, ServerName, UserId};
use roam_resolver::http::FetchError;
use roam_resolver::{ResolveError, ResolveResult};
use serde_json::Value;

use crate::clock::now_ms;
use crate::config::ServerConfig;

/// Why a server-to-server call failed.
#[derive(Debug, thiserror::Error)]
pub enum FederationError {
    /// This server is configured without federation.
    #[error("federation is disabled; cannot reach {server}")]
    Disabled { server: ServerName },
    /// The other server could not be reached: refused by the SSRF guard, timed out, a
    /// network failure or too many redirects.
    #[error(transparent)]
    Unreachable(FetchError),
    /// The other server answered with an error status.
    #[error("{source}")]
    Refused {
        status: u16,
        #[source]
        source: FetchError,
    },
    /// The other server answered with a body that is too large or not strict JSON.
    #[error(transparent)]
    InvalidBody(FetchError),
    /// The other server answered JSON without the `ops` array a log fetch expects.
    #[error("{server} answered without an `ops` array")]
    MissingOps { server: ServerName },
    /// The other server's signing keys could not be had (to check its request).
    #[error(transparent)]
    Keys(#[from] roam_resolver::keys::KeyFetchError),
}

impl From<FetchError> for FederationError {
    fn from(e: FetchError) -> Self {
        match e {
            FetchError::Status { status, .. } => Self::Refused { status, source: e },
            FetchError::Json { .. } | FetchError::TooLarge { .. } => Self::InvalidBody(e),
            FetchError::Blocked { .. }
            | FetchError::Timeout { .. }
            | FetchError::Network { .. }
            | FetchError::TooManyRedirects { .. } => Self::Unreachable(e),
        }
    }
}

/// Signs an outgoing server-server request: given the method, the request URI (path and
/// query, as sent), the destination and the JSON body, the `Authorization` header value.
pub type RequestSigner = dyn Fn(&str, &str, &ServerName, Option<&Value>) -> String + Send + Sync;

/// A boxed future, so the trait stays object-safe.
pub type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Outgoing server-to-server calls.
pub trait Federation: Send + Sync + std::fmt::Debug {
    /// Every op `server` holds for `did`.
    fn fetch_log<'a>(
        &'a self,
        server: &'a ServerName,
        did: &'a Did,
    ) -> BoxFut<'a, Result<Vec<Value>, FederationError>>;
    /// Posts signed ops to `server`'s `/_roam/v1/accounts/{did}/ops`.
    fn push_ops<'a>(
        &'a self,
        server: &'a ServerName,
        did: &'a Did,
        ops: Vec<Value>,
    ) -> BoxFut<'a, Result<(), FederationError>>;
    /// Resolves a DID this server does not hold, verifying everything.
    fn resolve_did<'a>(&'a self, did: &'a Did) -> BoxFut<'a, ResolveResult>;
    /// Resolves a user ID of another server (where its account is hosted now).
    fn resolve_user<'a>(&'a self, user: &'a UserId) -> BoxFut<'a, ResolveResult>;
    /// Resolves several user IDs of other servers, answering in the same order. The default
    /// asks one by one; [`HttpFederation`] lets the resolver ask the names of one server in
    /// one bulk query.
    fn resolve_users<'a>(&'a self, users: &'a [UserId]) -> BoxFut<'a, Vec<ResolveResult>> {
        Box::pin(async move {
            let mut out = Vec::with_capacity(users.len());
            for u in users {
                out.push(self.resolve_user(u).await);
            }
            out
        })
    }
    /// A Matrix server-server request to `server` (`path`: the path and query under its base
    /// URL), signed with `sign`.
    fn matrix_request<'a>(
        &'a self,
        server: &'a ServerName,
        method: axum::http::Method,
        path: &'a str,
        body: Option<Value>,
        sign: &'a RequestSigner,
    ) -> BoxFut<'a, Result<Value, FederationError>>;
    /// `server`'s current signing keys, fetched from it and verified (cached).
    fn server_keys<'a>(
        &'a self,
        server: &'a ServerName,
    ) -> BoxFut<'a, Result<ServerKeys, FederationError>>;
}

/// A federation that reaches nobody (tests of single servers, or a server configured
/// without federation). Every call fails with a clear reason.
#[derive(Debug, Default)]
pub struct NoFederation;

/// The answer of every call of [`NoFederation`].
fn disabled<'a, T: 'a>(server: &ServerName) -> BoxFut<'a, Result<T, FederationError>> {
    let server = server.clone();
    Box::pin(async move { Err(FederationError::Disabled { server }) })
}

impl Federation for NoFederation {
    fn fetch_log<'a>(
        &'a self,
        server: &'a ServerName,
        _did: &'a Did,
    ) -> BoxFut<'a, Result<Vec<Value>, FederationError>> {
        disabled(server)
    }

    fn push_ops<'a>(
        &'a self,
        server: &'a ServerName,
        _did: &'a Did,
        _ops: Vec<Value>,
    ) -> BoxFut<'a, Result<(), FederationError>> {
        disabled(server)
    }

    fn resolve_did<'a>(&'a self, did: &'a Did) -> BoxFut<'a, ResolveResult> {
        Box::pin(async move {
            Err(ResolveError::NotFound {
                subject: did.to_string(),
                detail: "this server does not hold the DID and federation is disabled".into(),
            })
        })
    }

    fn resolve_user<'a>(&'a self, user: &'a UserId) -> BoxFut<'a, ResolveResult> {
        Box::pin(async move {
            Err(ResolveError::NotFound {
                subject: user.to_string(),
                detail: "federation is disabled".into(),
            })
        })
    }

    fn matrix_request<'a>(
        &'a self,
        server: &'a ServerName,
        _method: axum::http::Method,
        _path: &'a str,
        _body: Option<Value>,
        _sign: &'a RequestSigner,
    ) -> BoxFut<'a, Result<Value, FederationError>> {
        disabled(server)
    }

    fn server_keys<'a>(
        &'a self,
        server: &'a ServerName,
    ) -> BoxFut<'a, Result<ServerKeys, FederationError>> {
        disabled(server)
    }
}

/// Federation over HTTP through the resolver's guarded client: overrides first, then
/// `/.well-known/matrix/server` discovery; private addresses refused unless allowed.
#[derive(Debug)]
pub struct HttpFederation {
    client: roam_resolver::http::SafeClient,
    discovery: roam_resolver::discovery::Discovery,
    resolver: roam_resolver::NetworkResolver,
    /// Servers to ask about a DID nobody named: the configured peers.
    hints: Vec<ServerName>,
}

impl HttpFederation {
    /// Builds the client from the server's configuration.
    pub fn new(config: &ServerConfig) -> Result<Self, roam_resolver::http::FetchError> {
        let rc = roam_resolver::ResolverConfig {
            overrides: config.federation_overrides.clone(),
            allow_private: config.allow_private_fetch,
            // Whole logs travel here: up to 1000 ops of up to 4 KiB.
            max_body_bytes: 4 * 1024 * 1024,
            ..Default::default()
        };
        let hints = rc
            .overrides
            .keys()
            .filter(|s| **s != config.server_name)
            .cloned()
            .collect();
        Ok(Self {
            client: roam_resolver::http::SafeClient::new(&rc)?,
            discovery: roam_resolver::discovery::Discovery::new(
                rc.overrides.clone(),
                rc.discovery_ttl_ms,
            ),
            resolver: roam_resolver::NetworkResolver::new(
                rc,
                std::sync::Arc::new(roam_resolver::SystemClock),
            )?,
            hints,
        })
    }

    async fn url(&self, server: &ServerName, segments: &[&str]) -> url::Url {
        let base = self
            .discovery
            .base_url(&self.client, server, now_ms())
            .await;
        roam_resolver::discovery::endpoint(&base, segments)
    }
}

impl Federation for HttpFederation {
    fn fetch_log<'a>(
        &'a self,
        server: &'a ServerName,
        did: &'a Did,
    ) -> BoxFut<'a, Result<Vec<Value>, FederationError>> {
        Box::pin(async move {
            let url = self
                .url(server, &["_roam", "v1", "accounts", did.as_str(), "log"])
                .await;
            let v = self.client.get_json(&url).await?;
            v.get("ops")
                .and_then(Value::as_array)
                .cloned()
                .ok_or_else(|| FederationError::MissingOps {
                    server: server.clone(),
                })
        })
    }

    fn push_ops<'a>(
        &'a self,
        server: &'a ServerName,
        did: &'a Did,
        ops: Vec<Value>,
    ) -> BoxFut<'a, Result<(), FederationError>> {
        Box::pin(async move {
            let url = self
                .url(server, &["_roam", "v1", "accounts", did.as_str(), "ops"])
                .await;
            self.client
                .post_json(&url, &serde_json::json!({ "ops": ops }))
                .await
                .map(|_| ())
                .map_err(FederationError::from)
        })
    }

    fn resolve_did<'a>(&'a self, did: &'a Did) -> BoxFut<'a, ResolveResult> {
        use roam_resolver::Resolver;
        self.resolver.resolve_did_via(did, &self.hints)
    }

    fn resolve_user<'a>(&'a self, user: &'a UserId) -> BoxFut<'a, ResolveResult> {
        use roam_resolver::Resolver;
        self.resolver.resolve_user(user)
    }

    fn resolve_users<'a>(&'a self, users: &'a [UserId]) -> BoxFut<'a, Vec<ResolveResult>> {
        Box::pin(self.resolver.resolve_users(users))
    }

    fn matrix_request<'a>(
        &'a self,
        server: &'a ServerName,
        method: axum::http::Method,
        path: &'a str,
        body: Option<Value>,
        sign: &'a RequestSigner,
    ) -> BoxFut<'a, Result<Value, FederationError>> {
        Box::pin(async move {
            let base = self
                .discovery
                .base_url(&self.client, server, now_ms())
                .await;
            let url = base.join(path.trim_start_matches('/')).map_err(|e| {
                FederationError::Unreachable(FetchError::Network {
                    url: base.to_string(),
                    reason: format!("bad request path {path:?}: {e}"),
                })
            })?;
            let uri = match url.query() {
                Some(q) => format!("{}?{q}", url.path()),
                None => url.path().to_owned(),
            };
            let auth = sign(method.as_str(), &uri, server, body.as_ref());
            Ok(self
                .client
                .request_json(method, &url, body.as_ref(), Some(&auth))
                .await?)
        })
    }

    fn server_keys<'a>(
        &'a self,
        server: &'a ServerName,
    ) -> BoxFut<'a, Result<ServerKeys, FederationError>> {
        Box::pin(async move { Ok(self.resolver.server_keys(server).await?) })
    }
}
