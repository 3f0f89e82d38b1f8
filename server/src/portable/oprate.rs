//! Per-DID limits on new account-log ops, so one account cannot flood a server (or a log)
//! with operations: a sliding hour window and a sliding day window.
//!
//! Ops count by the time they arrive here, never by the `created_at` their signer chose
//! (a backdated op counts like any other), and the windows are kept in the store, so a
//! restart does not reset them.

use roam_identity_core::{Did, Millis};

use crate::store::{Db, StoreResult};

const HOUR: Millis = 3600 * 1000;
const DAY: Millis = 24 * HOUR;

pub use crate::config::OpLimits;

/// The per-DID op limits over the store's windows.
#[derive(Debug, Default, Clone, Copy)]
pub struct OpRateLimiter {
    limits: OpLimits,
}

impl OpRateLimiter {
    pub fn new(limits: OpLimits) -> Self {
        Self { limits }
    }

    /// Records `n` ops of `did` arriving at `now` if that stays within the limits;
    /// otherwise records nothing and returns how long to wait (ms).
    pub async fn admit(
        &self,
        db: &Db,
        did: &Did,
        n: usize,
        now: Millis,
    ) -> StoreResult<Result<(), u64>> {
        if n == 0 {
            return Ok(Ok(()));
        }
        let (limiter, did) = (*self, did.clone());
        db.run(move |s| {
            let mut outcome = Ok(());
            s.update_op_window(&did, &mut |times| {
                outcome = limiter.window(times, n, now);
                true
            })?;
            Ok(outcome)
        })
        .await
    }

    /// The decision on one DID's arrival times (oldest first): drops those older than a
    /// day, then adds `n` arrivals at `now` when both windows allow it.
    pub fn window(&self, times: &mut Vec<Millis>, n: usize, now: Millis) -> Result<(), u64> {
        times.retain(|&t| t + DAY > now);
        let in_hour = times.iter().filter(|&&t| t + HOUR > now).count();
        let n32 = u32::try_from(n).unwrap_or(u32::MAX);
        let over_hour = (in_hour as u32).saturating_add(n32) > self.limits.per_hour;
        let over_day = (times.len() as u32).saturating_add(n32) > self.limits.per_day;
        if over_hour || over_day {
            // Wait until enough old entries leave the window that blocks.
            let wait = if over_day {
                times.first().map_or(DAY, |&t| t + DAY - now)
            } else {
                times
                    .iter()
                    .find(|&&t| t + HOUR > now)
                    .map_or(HOUR, |&t| t + HOUR - now)
            };
            return Err(wait.max(1));
        }
        times.extend(std::iter::repeat_n(now, n));
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
        let (mut d, mut other) = (Vec::new(), Vec::new());
        assert!(l.window(&mut d, 3, 0).is_ok());
        let wait = l.window(&mut d, 1, 1000).unwrap_err();
        assert_eq!(wait, HOUR - 1000);
        assert!(l.window(&mut other, 3, 1000).is_ok());
        assert!(l.window(&mut d, 2, HOUR).is_ok());
        // Day cap: 5 used.
        assert!(l.window(&mut d, 1, 2 * HOUR).is_err());
        assert!(l.window(&mut d, 1, DAY).is_ok());
    }

    #[tokio::test]
    async fn windows_are_stored() {
        let db = Db::new(std::sync::Arc::new(
            crate::store::RedbStore::in_memory().unwrap(),
        ));
        let did = Did::parse("did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK").unwrap();
        let limits = OpLimits {
            per_hour: 2,
            per_day: 5,
        };
        let first = OpRateLimiter::new(limits);
        assert_eq!(first.admit(&db, &did, 2, 1000).await.unwrap(), Ok(()));
        // A new limiter (a restarted server) sees the same windows.
        let second = OpRateLimiter::new(limits);
        assert!(second.admit(&db, &did, 1, 2000).await.unwrap().is_err());
    }
}
