//! Token-bucket rate limiting keyed by a string (a client-address bucket or a user ID).
//!
//! On a store several nodes share (PostgreSQL), the buckets live in the store
//! ([`crate::store::Store::shared_take_token`]), so a limit holds for the whole deployment
//! however a load balancer spreads the requests; should the database not answer, each node
//! falls back to its own buckets (below) rather than refusing or waving everything through.
//!
//! Otherwise the buckets are in-process (a single node over redb):
//!
//! Bounded without scans: the keys are spread over [`SHARDS`] mutexes, and each shard keeps
//! two generations of buckets. New and recently used keys live in the current generation;
//! when it is full it becomes the previous one and the old previous generation is dropped
//! (outside the lock). A key used again is moved back into the current generation, so a
//! client in steady use keeps its bucket however many other keys pass through, and the whole
//! limiter never holds more than [`CAPACITY`] buckets. Every call is O(1) amortized.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;
use std::time::Instant;

use crate::config::RateLimit;
use crate::store::Db;

/// Shards, so that unrelated clients rarely wait on the same lock.
const SHARDS: usize = 16;
/// Most buckets held at once, over all shards and both generations.
pub const CAPACITY: usize = 16_384;
const GENERATION: usize = CAPACITY / SHARDS / 2;

#[derive(Debug)]
pub struct RateLimiter {
    limit: RateLimit,
    hasher: RandomState,
    shards: Vec<Mutex<Shard>>,
    /// The shared store and this limiter's name there, when nodes share the store.
    shared: Option<(Db, &'static str)>,
}

#[derive(Debug, Default)]
struct Shard {
    current: HashMap<String, Bucket>,
    previous: HashMap<String, Bucket>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl Shard {
    /// The bucket of `key` in the current generation, moved or created there; returns the
    /// generation to drop (after the lock is released) if this insert filled the current one.
    fn bucket(
        &mut self,
        key: &str,
        fresh: Bucket,
    ) -> (&mut Bucket, Option<HashMap<String, Bucket>>) {
        let mut retired = None;
        if !self.current.contains_key(key) {
            let bucket = self.previous.remove(key).unwrap_or(fresh);
            if self.current.len() >= GENERATION {
                let full = std::mem::take(&mut self.current);
                retired = Some(std::mem::replace(&mut self.previous, full));
            }
            self.current.insert(key.to_owned(), bucket);
        }
        let bucket = self.current.get_mut(key).expect("inserted above");
        (bucket, retired)
    }
}

impl RateLimiter {
    /// A limiter of this process only.
    pub fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            shared: None,
        }
    }

    /// A limiter named `name` whose buckets live in `db` when that store is shared by
    /// several nodes (in this process otherwise).
    pub fn for_store(limit: RateLimit, name: &'static str, db: &Db) -> Self {
        let mut limiter = Self::new(limit);
        if db.store().is_shared() {
            limiter.shared = Some((db.clone(), name));
        }
        limiter
    }

    /// Takes one token for `key`, or says how many milliseconds until one is available.
    pub async fn check(&self, key: &str) -> Result<(), u64> {
        if let Some((db, name)) = &self.shared {
            let (name, owned, limit) = (*name, key.to_owned(), self.limit);
            let taken = db
                .run(move |s| s.shared_take_token(name, &owned, limit.per_second, limit.burst))
                .await;
            match taken {
                Ok(outcome) => return outcome,
                Err(e) => {
                    tracing::warn!(error = %e, limiter = name, "shared rate limit unavailable; using this node's")
                }
            }
        }
        self.check_at(key, Instant::now())
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                let s = s.lock().unwrap();
                s.current.len() + s.previous.len()
            })
            .sum()
    }

    fn check_at(&self, key: &str, now: Instant) -> Result<(), u64> {
        let burst = f64::from(self.limit.burst);
        let rate = self.limit.per_second.max(f64::MIN_POSITIVE);
        let shard = &self.shards[(self.hasher.hash_one(key) % SHARDS as u64) as usize];
        // A poisoned lock only means another request panicked mid-update; the maps are still
        // valid maps of buckets.
        let mut guard = shard.lock().unwrap_or_else(|p| p.into_inner());
        let fresh = Bucket {
            tokens: burst,
            updated: now,
        };
        let (bucket, retired) = guard.bucket(key, fresh);
        let result = take_token(bucket, now, rate, burst);
        drop(guard);
        drop(retired);
        result
    }
}

fn take_token(bucket: &mut Bucket, now: Instant, rate: f64, burst: f64) -> Result<(), u64> {
    let refilled = (bucket.tokens
        + now.saturating_duration_since(bucket.updated).as_secs_f64() * rate)
        .min(burst);
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

    #[test]
    fn the_map_stays_bounded_when_every_bucket_is_in_use() {
        // Many addresses, each with a bucket that is not full (so none is "idle"): the map
        // must still not grow past its capacity.
        let rl = RateLimiter::new(RateLimit {
            per_second: 0.001,
            burst: 5,
        });
        let t0 = Instant::now();
        for i in 0..60_000u32 {
            let _ = rl.check_at(&format!("k{i}"), t0);
        }
        assert!(rl.len() <= CAPACITY, "{} buckets", rl.len());
        // A key in steady use survives the churn and keeps its (empty) bucket.
        let rl = RateLimiter::new(RateLimit {
            per_second: 0.001,
            burst: 1,
        });
        assert!(rl.check_at("victim", t0).is_ok());
        for i in 0..60_000u32 {
            let _ = rl.check_at(&format!("k{i}"), t0);
            if i % 1000 == 0 {
                assert!(rl.check_at("victim", t0).is_err(), "bucket reset at {i}");
            }
        }
    }
}
