//! Per-DID limits on new account-log ops, so one account cannot flood a server (or a log)
//! with operations: a sliding hour window and a sliding day window.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use roam_identity_core::Millis;

const HOUR: Millis = 3600 * 1000;
const DAY: Millis = 24 * HOUR;

pub use crate::config::OpLimits;

/// Sliding-window counters per DID, in memory.
#[derive(Debug, Default)]
pub struct OpRateLimiter {
    limits: OpLimits,
    seen: Mutex<HashMap<String, VecDeque<Millis>>>,
}

impl OpRateLimiter {
    pub fn new(limits: OpLimits) -> Self {
        Self {
            limits,
            seen: Mutex::default(),
        }
    }

    /// Admits ops new to this server. Only fresh ones (created in the last 24 hours) count:
    /// replicating an old log to a new server (migration, forwarding) is not flooding.
    pub fn admit_ops(
        &self,
        did: &str,
        ops: &[roam_identity_core::log::SignedOp],
        now: Millis,
    ) -> Result<(), u64> {
        let fresh = ops.iter().filter(|o| o.op.created_at + DAY > now).count();
        self.admit(did, fresh, now)
    }

    /// Records `n` new ops for `did` at `now` if that stays within the limits; otherwise
    /// records nothing and returns how long to wait (ms).
    pub fn admit(&self, did: &str, n: usize, now: Millis) -> Result<(), u64> {
        if n == 0 {
            return Ok(());
        }
        let mut map = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let q = map.entry(did.to_owned()).or_default();
        while q.front().is_some_and(|&t| t + DAY <= now) {
            q.pop_front();
        }
        let in_hour = q.iter().filter(|&&t| t + HOUR > now).count();
        let n32 = u32::try_from(n).unwrap_or(u32::MAX);
        let over_hour = in_hour as u32 + n32 > self.limits.per_hour;
        let over_day = q.len() as u32 + n32 > self.limits.per_day;
        if over_hour || over_day {
            // Wait until enough old entries leave the window that blocks.
            let wait = if over_day {
                q.front().map_or(DAY, |&t| t + DAY - now)
            } else {
                q.iter()
                    .find(|&&t| t + HOUR > now)
                    .map_or(HOUR, |&t| t + HOUR - now)
            };
            return Err(wait.max(1));
        }
        q.extend(std::iter::repeat_n(now, n));
        if map.len() > 100_000 {
            map.retain(|_, q| q.back().is_some_and(|&t| t + DAY > now));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hour_and_day_windows() {
        let l = OpRateLimiter::new(OpLimits {
            per_hour: 3,
            per_day: 5,
        });
        assert!(l.admit("d", 3, 0).is_ok());
        let wait = l.admit("d", 1, 1000).unwrap_err();
        assert_eq!(wait, HOUR - 1000);
        assert!(l.admit("other", 3, 1000).is_ok());
        assert!(l.admit("d", 2, HOUR).is_ok());
        // Day cap: 5 used.
        assert!(l.admit("d", 1, 2 * HOUR).is_err());
        assert!(l.admit("d", 1, DAY).is_ok());
        assert!(l.admit("d", 0, DAY).is_ok());
    }
}
