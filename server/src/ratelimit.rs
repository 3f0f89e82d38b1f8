//! Token-bucket rate limiting keyed by a string (an IP address or a user ID).
//!
//! Small and in-process on purpose: the limits protect the argon2 endpoints of one server.
//! A deployment with several replicas would need a shared limiter; this one would then still
//! cap each replica.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use crate::config::RateLimit;

/// Buckets above this count get pruned of full (idle) buckets.
const PRUNE_AT: usize = 10_000;

#[derive(Debug)]
pub struct RateLimiter {
    limit: RateLimit,
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl RateLimiter {
    pub fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `key`, or says how many milliseconds until one is available.
    pub fn check(&self, key: &str) -> Result<(), u64> {
        self.check_at(key, Instant::now())
    }

    fn check_at(&self, key: &str, now: Instant) -> Result<(), u64> {
        let burst = f64::from(self.limit.burst);
        let rate = self.limit.per_second.max(f64::MIN_POSITIVE);
        // A poisoned lock only means another request panicked mid-update; the map is still
        // a valid map of buckets.
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= PRUNE_AT {
            buckets.retain(|_, b| {
                b.tokens + now.duration_since(b.updated).as_secs_f64() * rate < burst
            });
        }
        let bucket = buckets.entry(key.to_owned()).or_insert(Bucket {
            tokens: burst,
            updated: now,
        });
        let refilled =
            (bucket.tokens + now.duration_since(bucket.updated).as_secs_f64() * rate).min(burst);
        bucket.updated = now;
        if refilled >= 1.0 {
            bucket.tokens = refilled - 1.0;
            Ok(())
        } else {
            bucket.tokens = refilled;
            let wait = ((1.0 - refilled) / rate * 1000.0).ceil();
            Err(if wait.is_finite() {
                wait.clamp(1.0, 86_400_000.0) as u64
            } else {
                86_400_000
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_refill() {
        let rl = RateLimiter::new(RateLimit {
            per_second: 2.0,
            burst: 2,
        });
        let t0 = Instant::now();
        assert!(rl.check_at("a", t0).is_ok());
        assert!(rl.check_at("a", t0).is_ok());
        let wait = rl.check_at("a", t0).unwrap_err();
        assert_eq!(wait, 500);
        // Other keys have their own bucket.
        assert!(rl.check_at("b", t0).is_ok());
        assert!(rl.check_at("a", t0 + Duration::from_millis(500)).is_ok());
        assert!(rl.check_at("a", t0 + Duration::from_millis(500)).is_err());
    }
}
