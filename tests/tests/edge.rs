//! The HTTP edge against hostile or careless clients: slowloris heads, slow bodies, floods
//! of concurrent requests, per-address write and password limits, and forwarded client
//! addresses believed only from trusted proxies.

mod common;

use std::time::{Duration, Instant};

use common::{C, start};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use roam_server::config::RateLimit;

const STRICT: RateLimit = RateLimit {
    per_second: 0.001,
    burst: 2,
};

fn addr_of(base: &str) -> String {
    base.trim_start_matches("http://").to_owned()
}

/// Reads until the server closes the connection or has sent a Matrix error body.
async fn read_answer(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
        if out.ends_with(b"}") {
            break;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn a_slowloris_head_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |c| {
        c.edge.header_read_timeout = Duration::from_millis(800);
    })
    .await;
    let stream = TcpStream::connect(addr_of(&server.base)).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let started = Instant::now();
    // One byte of a never-ending header every 100 ms, until the server hangs up.
    let writer = tokio::spawn(async move {
        let head = b"GET /health HTTP/1.1\r\nHost: x\r\n";
        let filler =
            b"X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        for b in head.iter().chain(filler.iter().cycle()) {
            if wr.write_all(&[*b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let mut buf = [0u8; 256];
    let closed = tokio::time::timeout(Duration::from_secs(4), async {
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    writer.abort();
    assert!(
        closed.is_ok(),
        "a client dribbling its header was still connected after 4 s"
    );
    assert!(started.elapsed() >= Duration::from_millis(700));
    server.stop().await;
}

#[tokio::test]
async fn a_slow_body_times_out_with_matrix_json() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |c| {
        c.edge.request_timeout = Duration::from_millis(700);
    })
    .await;
    let mut stream = TcpStream::connect(addr_of(&server.base)).await.unwrap();
    // A complete head that promises 100 bytes of body, then only a few of them.
    let head = format!(
        "POST {C}/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"ty"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let text = tokio::time::timeout(Duration::from_secs(4), read_answer(&mut stream))
        .await
        .expect("the server neither answered nor closed within 4 s");
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(text.contains("M_LIMIT_EXCEEDED"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(
        metric(&server, "roam_http_requests_timed_out_total").await,
        1
    );
    server.stop().await;
}

#[tokio::test]
async fn over_the_concurrency_limit_requests_are_shed() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |c| {
        c.edge.max_concurrent_requests = 1;
        c.edge.request_timeout = Duration::from_secs(5);
    })
    .await;
    // One request held open inside the server: its body never finishes.
    let mut held = TcpStream::connect(addr_of(&server.base)).await.unwrap();
    let head = format!(
        "POST {C}/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{"
    );
    held.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let resp = reqwest::get(format!("{}/_matrix/client/versions", server.base))
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    let retry = resp.headers().get("retry-after").cloned();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["errcode"], "M_LIMIT_EXCEEDED", "{body}");
    assert!(body["retry_after_ms"].as_u64().is_some(), "{body}");
    assert!(retry.is_some(), "no Retry-After header");
    // Once the held request is gone, the server answers again.
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (s, _) = server.client().get("/_matrix/client/versions").await;
    assert_eq!(s, 200);
    assert_eq!(metric(&server, "roam_http_requests_shed_total").await, 1);
    server.stop().await;
}

/// One counter's value from `GET /metrics`.
async fn metric(server: &common::TestServer, name: &str) -> u64 {
    let text = reqwest::get(format!("{}/metrics", server.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"))
}

async fn post_from(http: &reqwest::Client, url: &str, forwarded_for: Option<&str>) -> u16 {
    let mut req = http
        .post(url)
        .header("content-type", "application/json")
        .body("{}");
    if let Some(f) = forwarded_for {
        req = req.header("x-forwarded-for", f);
    }
    req.send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn roam_writes_are_limited_per_address_and_spoofing_does_not_help() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |c| c.rate_limits.write_per_ip = STRICT).await;
    let http = reqwest::Client::new();
    let url = format!("{}/_roam/v1/login/challenge", server.base);
    assert_ne!(post_from(&http, &url, Some("192.0.2.1")).await, 429);
    assert_ne!(post_from(&http, &url, Some("192.0.2.2")).await, 429);
    // The peer is not a trusted proxy: a new X-Forwarded-For is no new bucket.
    assert_eq!(post_from(&http, &url, Some("192.0.2.3")).await, 429);
    let (s, v) = server
        .client()
        .post("/_roam/v1/accounts/did:key:x/ops", json!({}))
        .await;
    assert_eq!(s, 429, "{v}");
    assert_eq!(v["errcode"], "M_LIMIT_EXCEEDED");
    // Reads are not writes, a key query by POST neither.
    let (s, _) = server.client().get("/_matrix/client/versions").await;
    assert_eq!(s, 200);
    let (s, _) = server
        .client()
        .post(&format!("{C}/keys/query"), json!({"device_keys": {}}))
        .await;
    assert_ne!(s, 429);
    assert_eq!(
        metric(&server, "roam_http_requests_rate_limited_total").await,
        2
    );
    server.stop().await;
}

#[tokio::test]
async fn a_trusted_proxy_names_the_client_and_ipv6_is_bucketed_by_64() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |c| {
        c.rate_limits.write_per_ip = STRICT;
        c.edge.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    })
    .await;
    let http = reqwest::Client::new();
    let url = format!("{}/_roam/v1/login/challenge", server.base);
    // Each client behind the proxy has its own bucket.
    for client in ["192.0.2.1", "192.0.2.2"] {
        assert_ne!(post_from(&http, &url, Some(client)).await, 429);
        assert_ne!(post_from(&http, &url, Some(client)).await, 429);
        assert_eq!(post_from(&http, &url, Some(client)).await, 429);
    }
    // A client cannot prepend its way out: the proxy appended the address it saw.
    assert_eq!(
        post_from(&http, &url, Some("198.51.100.7, 192.0.2.1")).await,
        429
    );
    // Addresses in one IPv6 /64 share a bucket; the next /64 is another client.
    assert_ne!(post_from(&http, &url, Some("2001:db8:1:2::1")).await, 429);
    assert_ne!(post_from(&http, &url, Some("2001:db8:1:2::2")).await, 429);
    assert_eq!(
        post_from(&http, &url, Some("2001:db8:1:2:ffff::3")).await,
        429
    );
    assert_ne!(post_from(&http, &url, Some("2001:db8:1:3::1")).await, 429);
    server.stop().await;
}

#[tokio::test]
async fn password_uia_routes_have_their_own_limit() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |c| c.rate_limits.uia_per_ip = STRICT).await;
    let alice = server.client().register("alice", "pw-alice-1").await;
    let body = json!({"devices": ["NOPE"], "auth": {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"}, "password": "guess"}});
    for _ in 0..2 {
        let (s, v) = alice
            .post(&format!("{C}/delete_devices"), body.clone())
            .await;
        assert_ne!(s, 429, "{v}");
    }
    let (s, v) = alice.post(&format!("{C}/delete_devices"), body).await;
    assert_eq!(s, 429, "{v}");
    let (s, _) = alice
        .send(reqwest::Method::DELETE, &format!("{C}/devices/NOPE"), None)
        .await;
    assert_eq!(s, 429);
    // Other writes are not password checks.
    let (s, v) = alice
        .put(&format!("{C}/devices/NOPE"), json!({"display_name": "x"}))
        .await;
    assert_ne!(s, 429, "{v}");
    server.stop().await;
}
