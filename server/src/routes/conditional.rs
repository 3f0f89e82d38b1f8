//! HTTP caching of stored answers (spec/api.md, "Caching"): a strong `ETag` naming the head
//! and the generation of the answers, `If-None-Match` → `304 Not Modified`, and
//! `Cache-Control: max-age` no longer than the answers stay true.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use roam_identity_core::Millis;

use crate::store::{Served, ServedKind};

/// The longest a shared cache may keep an answer without asking again: a new op can arrive
/// at any time, so caches revalidate (cheaply, with `If-None-Match`) after this.
pub const MAX_AGE_S: u64 = 60;

/// The strong ETag of a stored answer: head, generation and representation.
pub fn etag(served: &Served, kind: ServedKind) -> String {
    format!(
        "\"{}.{}.{}\"",
        served.head.to_multibase(),
        served.generation,
        kind.as_str()
    )
}

/// True when `If-None-Match` names `tag` (or is `*`). Weak comparison, as RFC 9110 has it
/// for `If-None-Match`: `W/"x"` matches `"x"`.
pub fn not_modified(headers: &HeaderMap, tag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == tag)
}

/// `public, max-age=N`: at most [`MAX_AGE_S`], and never past `fresh_until`.
pub fn cache_control(fresh_until: Millis, now: Millis) -> HeaderValue {
    let left = fresh_until.saturating_sub(now) / 1000;
    let age = left.min(MAX_AGE_S);
    HeaderValue::from_str(&format!("public, max-age={age}"))
        .unwrap_or(HeaderValue::from_static("no-cache"))
}

/// A response with validators: `304` with no body when the client's copy is current, else
/// `status` with `body`.
pub fn respond(
    request: &HeaderMap,
    tag: &str,
    cache: HeaderValue,
    status: StatusCode,
    content_type: &'static str,
    body: Vec<u8>,
) -> Response {
    let fresh = not_modified(request, tag);
    let mut resp = if fresh {
        Response::new(Body::empty())
    } else {
        Response::new(Body::from(body))
    };
    *resp.status_mut() = if fresh {
        StatusCode::NOT_MODIFIED
    } else {
        status
    };
    let h = resp.headers_mut();
    if !fresh {
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    }
    if let Ok(v) = HeaderValue::from_str(tag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::CACHE_CONTROL, cache);
    resp
}

/// [`respond`] for a stored answer.
pub fn respond_served(
    request: &HeaderMap,
    served: Served,
    kind: ServedKind,
    status: StatusCode,
    content_type: &'static str,
    now: Millis,
) -> Response {
    let tag = etag(&served, kind);
    let cache = cache_control(served.fresh_until, now);
    respond(request, &tag, cache, status, content_type, served.body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_lists_and_weak_tags() {
        let mut h = HeaderMap::new();
        assert!(!not_modified(&h, "\"a\""));
        h.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_static("\"b\", W/\"a\""),
        );
        assert!(not_modified(&h, "\"a\""));
        assert!(!not_modified(&h, "\"c\""));
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("*"));
        assert!(not_modified(&h, "\"c\""));
    }

    #[test]
    fn max_age_never_outlives_the_answer() {
        assert_eq!(cache_control(10_000 + 5_500, 10_000), "public, max-age=5");
        assert_eq!(cache_control(10_000_000, 0), "public, max-age=60");
        assert_eq!(cache_control(0, 10_000), "public, max-age=0");
    }
}
