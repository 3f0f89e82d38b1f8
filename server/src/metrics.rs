//! Prometheus metrics: request counts and latencies per route, and the portable-account
//! events an operator watches (ops accepted and refused, forks, migrations, key logins).
//!
//! Plain atomics and one small map behind a mutex: cheap enough for every request, no
//! registry crate. The counters only: the HTTP middleware that feeds [`Metrics::observe`]
//! and `GET /metrics` live with the routes.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds of the latency histogram, in seconds.
const BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

#[derive(Debug, Default)]
struct RouteStats {
    by_status: BTreeMap<u16, u64>,
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum_seconds: f64,
}

/// Every counter the server exports.
#[derive(Debug, Default)]
pub struct Metrics {
    routes: Mutex<BTreeMap<(String, String), RouteStats>>,
    /// Account ops stored (new to this server).
    pub ops_accepted: AtomicU64,
    /// Account ops refused as invalid.
    pub ops_refused: AtomicU64,
    /// Fork attempts refused as equivocation.
    pub forks_refused: AtomicU64,
    /// Migrations completed here.
    pub migrations_completed: AtomicU64,
    /// Successful `m.login.roam.key` logins.
    pub key_logins: AtomicU64,
    /// Requests shed at `edge.max_concurrent_requests`.
    pub requests_shed: AtomicU64,
    /// Requests not answered within `edge.request_timeout`.
    pub requests_timed_out: AtomicU64,
    /// Writes refused by a per-address limit (writes or password checks).
    pub requests_rate_limited: AtomicU64,
    /// Account logs this server verified (writes, and re-making stored answers; never a
    /// read).
    pub log_verifications: AtomicU64,
}

impl Metrics {
    /// Records one request under its route template.
    pub fn observe(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let mut map = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        let s = map
            .entry((method.to_owned(), route.to_owned()))
            .or_default();
        *s.by_status.entry(status).or_default() += 1;
        s.count += 1;
        s.sum_seconds += seconds;
        for (i, b) in BUCKETS.iter().enumerate() {
            if seconds <= *b {
                s.buckets[i] += 1;
            }
        }
    }

    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// The event counters: name, help text, value.
    fn counters(&self) -> [(&'static str, &'static str, &AtomicU64); 9] {
        [
            (
                "roam_account_ops_accepted_total",
                "Account-log ops stored.",
                &self.ops_accepted,
            ),
            (
                "roam_account_ops_refused_total",
                "Account-log ops refused as invalid.",
                &self.ops_refused,
            ),
            (
                "roam_account_forks_refused_total",
                "Op submissions refused as equivocation.",
                &self.forks_refused,
            ),
            (
                "roam_migrations_completed_total",
                "Migrations completed on this server.",
                &self.migrations_completed,
            ),
            (
                "roam_key_proofs_total",
                "Accepted m.login.roam.key proofs (logins and UIA).",
                &self.key_logins,
            ),
            (
                "roam_account_log_verifications_total",
                "Account logs verified (on writes and when re-making stored answers).",
                &self.log_verifications,
            ),
            (
                "roam_http_requests_shed_total",
                "Requests shed at max_concurrent_requests (503).",
                &self.requests_shed,
            ),
            (
                "roam_http_requests_timed_out_total",
                "Requests not answered within request_timeout (503).",
                &self.requests_timed_out,
            ),
            (
                "roam_http_requests_rate_limited_total",
                "Writes refused by a per-address rate limit (429).",
                &self.requests_rate_limited,
            ),
        ]
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP roam_http_requests_total HTTP requests by route and status."
        );
        let _ = writeln!(out, "# TYPE roam_http_requests_total counter");
        let map = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        for ((method, route), s) in map.iter() {
            for (status, n) in &s.by_status {
                let _ = writeln!(
                    out,
                    "roam_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {n}"
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP roam_http_request_duration_seconds Request latency by route."
        );
        let _ = writeln!(out, "# TYPE roam_http_request_duration_seconds histogram");
        for ((method, route), s) in map.iter() {
            let labels = format!("method=\"{method}\",route=\"{route}\"");
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "roam_http_request_duration_seconds_bucket{{{labels},le=\"{b}\"}} {}",
                    s.buckets[i]
                );
            }
            let _ = writeln!(
                out,
                "roam_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                s.count
            );
            let _ = writeln!(
                out,
                "roam_http_request_duration_seconds_sum{{{labels}}} {}",
                s.sum_seconds
            );
            let _ = writeln!(
                out,
                "roam_http_request_duration_seconds_count{{{labels}}} {}",
                s.count
            );
        }
        drop(map);
        for (name, help, c) in self.counters() {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            let _ = writeln!(out, "{name} {}", c.load(Ordering::Relaxed));
        }
        out
    }
}
