//! Request extractors that fail with Matrix errors instead of axum's plain-text rejections;
//! one function ([`body_rejection`]) maps a body that could not be read to its error.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use roam_identity_core::{DeviceId, UserId};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::config::IpCidr;
use crate::error::AppError;
use crate::secrets;
use crate::state::AppState;

/// A raw body under the route's size cap; over it → `M_TOO_LARGE` (as Matrix JSON).
#[derive(Debug)]
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, AppError> {
        Bytes::from_request(req, state)
            .await
            .map(RawBody)
            .map_err(body_rejection)
    }
}

/// The one mapping of a body that could not be read to a Matrix error.
fn body_rejection(rejection: BytesRejection) -> AppError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        AppError::BodyTooLarge
    } else {
        AppError::BadJson(rejection.body_text())
    }
}

/// A JSON object body. Unparseable → `M_NOT_JSON`; valid JSON that is not an object or does
/// not fit `T` → `M_BAD_JSON`; over the body cap → `M_TOO_LARGE`.
#[derive(Debug)]
pub struct MatrixJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for MatrixJson<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, AppError> {
        let RawBody(bytes) = RawBody::from_request(req, state).await?;
        parse_object(&bytes).map(MatrixJson)
    }
}

/// Parses a request body the way [`MatrixJson`] does.
pub fn parse_object<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, AppError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|_| AppError::NotJson)?;
    if !value.is_object() {
        return Err(AppError::BadJson("Content must be a JSON object.".into()));
    }
    from_body_value(value)
}

/// Reads a parsed body as `T`; a body that does not fit → `M_BAD_JSON`.
pub fn from_body_value<T: DeserializeOwned>(value: Value) -> Result<T, AppError> {
    serde_json::from_value(value)
        .map_err(|e| AppError::BadJson(format!("Invalid request body: {e}")))
}

/// The decoded query string; repeated keys keep the last value.
#[derive(Debug, Default)]
pub struct QueryParams(pub HashMap<String, String>);

impl QueryParams {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    pub fn require(&self, key: &str) -> Result<&str, AppError> {
        self.get(key).ok_or_else(|| {
            AppError::MissingParam(format!("Missing string query parameter {key:?}"))
        })
    }
}

impl<S: Send + Sync> FromRequestParts<S> for QueryParams {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, AppError> {
        Ok(Self(query_map(parts)))
    }
}

fn query_map(parts: &Parts) -> HashMap<String, String> {
    parts
        .uri
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default()
}

/// The client's address as the edge decided it ([`client_addr`]), put in the request's
/// extensions by the router's outermost middleware.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

/// The client's address: the socket peer, or, when the peer is one of the `trusted`
/// proxies, the address the proxies name. `X-Forwarded-For` (or, without it, `Forwarded`)
/// is read from the right, skipping trusted hops: the first address a trusted proxy saw
/// that is not itself a trusted proxy is the client. Entries a client prepended are never
/// reached; an unreadable entry stops the walk at the last trusted hop.
pub fn client_addr(peer: IpAddr, headers: &HeaderMap, trusted: &[IpCidr]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    let mut addr = peer.to_canonical();
    if !is_trusted(addr) {
        return addr;
    }
    for hop in forwarded_chain(headers).iter().rev() {
        match hop {
            Some(ip) => {
                addr = ip.to_canonical();
                if !is_trusted(addr) {
                    break;
                }
            }
            None => break,
        }
    }
    addr
}

/// The forwarding chain, leftmost (farthest) first; `None` for an entry that is not an
/// address (`unknown`, an obfuscated name, garbage).
fn forwarded_chain(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let xff: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if !xff.is_empty() {
        return xff
            .iter()
            .flat_map(|v| v.split(','))
            .map(parse_hop)
            .collect();
    }
    headers
        .get_all(axum::http::header::FORWARDED)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|element| {
            element
                .split(';')
                .find_map(|pair| {
                    let (k, v) = pair.split_once('=')?;
                    k.trim().eq_ignore_ascii_case("for").then_some(v)
                })
                .and_then(parse_hop)
        })
        .collect()
}

/// `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1`, `"[2001:db8::1]:4711"`.
fn parse_hop(text: &str) -> Option<IpAddr> {
    let t = text.trim().trim_matches('"');
    if let Ok(ip) = t.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sa) = t.parse::<SocketAddr>() {
        return Some(sa.ip());
    }
    t.strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .and_then(|r| r.parse().ok())
}

/// The rate-limit bucket of an address: IPv4 addresses on their own, IPv6 addresses by
/// their /64 (one customer's allocation; anything finer is free to an attacker).
pub fn bucket_key(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let net = Ipv6Addr::from_bits(v6.to_bits() & !((1u128 << 64) - 1));
            format!("{net}/64")
        }
    }
}

/// The client's address (see [`ClientAddr`]; the socket peer when the edge middleware did
/// not run), with its rate-limit bucket; `None` under `oneshot` tests.
#[derive(Debug, Clone)]
pub struct ClientIp(pub Option<String>, String);

impl ClientIp {
    fn new(addr: Option<IpAddr>) -> Self {
        Self(
            addr.map(|a| a.to_string()),
            // Unknown addresses share one bucket.
            addr.map_or_else(|| "unknown".to_owned(), bucket_key),
        )
    }

    /// The rate-limit key: the address, or its /64 for IPv6.
    pub fn key(&self) -> &str {
        &self.1
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self::new(client_addr_of(parts)))
    }
}

fn client_addr_of(parts: &Parts) -> Option<IpAddr> {
    parts
        .extensions
        .get::<ClientAddr>()
        .map(|ClientAddr(a)| *a)
        .or_else(|| {
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(addr)| addr.ip().to_canonical())
        })
}

/// A request made with a valid access token. Handlers that need a user take this; there is
/// no "maybe authenticated" path to forget a check on.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub user_id: UserId,
    pub device_id: DeviceId,
}

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let token = access_token(parts)?.ok_or(AppError::MissingToken)?;
        let hash = secrets::token_hash(&token);
        let owner = state.db(move |s| s.token_owner(&hash)).await?;
        let owner = owner.ok_or(AppError::UnknownToken)?;
        if owner
            .expires_at
            .is_some_and(|t| t <= crate::clock::now_ms())
        {
            return Err(AppError::ExpiredToken);
        }
        Ok(Self {
            user_id: owner.user_id,
            device_id: owner.device_id,
        })
    }
}

/// The token from `Authorization: Bearer …` or, failing that, the `access_token` query
/// parameter, as Matrix allows both.
fn access_token(parts: &Parts) -> Result<Option<String>, AppError> {
    if let Some(value) = parts.headers.get(axum::http::header::AUTHORIZATION) {
        let text = value.to_str().map_err(|_| AppError::UnknownToken)?;
        return match text.strip_prefix("Bearer ") {
            Some(token) if !token.trim().is_empty() => Ok(Some(token.trim().to_owned())),
            // Synapse treats a malformed Authorization header as a missing token.
            _ => Err(AppError::MissingToken),
        };
    }
    Ok(query_map(parts)
        .remove("access_token")
        .filter(|t| !t.is_empty()))
}

/// One path parameter as text. A segment that is not valid UTF-8 after percent-decoding
/// answers `M_INVALID_PARAM` as Matrix JSON instead of axum's plain-text rejection.
#[derive(Debug)]
pub struct PathParam(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathParam {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
        axum::extract::Path::<String>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(s)| PathParam(s))
            .map_err(|e| {
                AppError::InvalidParam(format!("Invalid path parameter: {}", e.body_text()))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn forwarded_addresses_only_from_trusted_peers() {
        let trusted: Vec<IpCidr> = vec!["10.0.0.0/8".parse().unwrap()];
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let h = headers(&[("x-forwarded-for", "198.51.100.1, 192.0.2.7")]);
        assert_eq!(
            client_addr(ip("203.0.113.5"), &h, &trusted),
            ip("203.0.113.5")
        );
        assert_eq!(client_addr(ip("10.1.1.1"), &h, &trusted), ip("192.0.2.7"));
        let h = headers(&[("x-forwarded-for", "192.0.2.7, 10.2.2.2")]);
        assert_eq!(client_addr(ip("10.1.1.1"), &h, &trusted), ip("192.0.2.7"));
        let h = headers(&[("x-forwarded-for", "junk")]);
        assert_eq!(client_addr(ip("10.1.1.1"), &h, &trusted), ip("10.1.1.1"));
        let h = headers(&[(
            "forwarded",
            "for=192.0.2.60;proto=http, for=\"[2001:db8::1]:4711\"",
        )]);
        assert_eq!(client_addr(ip("10.1.1.1"), &h, &trusted), ip("2001:db8::1"));
        assert_eq!(bucket_key(ip("2001:db8:1:2:3:4:5:6")), "2001:db8:1:2::/64");
        assert_eq!(bucket_key(ip("::ffff:192.0.2.1")), "192.0.2.1");
    }
}
