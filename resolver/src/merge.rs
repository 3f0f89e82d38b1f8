//! Merging what several sources said about one account's log.
//!
//! Ops are signed by the account, so the union of every source's ops is the best evidence;
//! identity-core's fork rules then pick the chain (a recovery rotate wins) or report
//! equivocation. A source whose ops do not verify together with what is already held is
//! dropped whole, so one bad source cannot poison the answer.

use std::collections::HashSet;

use roam_identity_core::log::{self, LogError, SignedOp, VerifiedLog};
use roam_identity_core::{Did, Millis, OpHash};
use serde_json::Value;

/// The ops gathered so far for one DID, each held once.
#[derive(Debug, Clone)]
pub struct OpPool {
    did: Did,
    ops: Vec<SignedOp>,
    seen: HashSet<OpHash>,
}

impl OpPool {
    /// An empty pool for `did`.
    pub fn new(did: Did) -> Self {
        Self {
            did,
            ops: Vec::new(),
            seen: HashSet::new(),
        }
    }

    /// Number of distinct ops held.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The ops held.
    pub fn ops(&self) -> &[SignedOp] {
        &self.ops
    }

    /// Adds one source's ops if, together with what the pool holds, they verify. A result of
    /// equivocation still accepts them: both ops of an equivocation are validly signed, and
    /// a later source may bring the recovery rotate that settles it. Returns how many ops
    /// were new.
    pub fn add_source(&mut self, values: &[Value], now: Millis) -> Result<usize, LogError> {
        let mut fresh = Vec::new();
        for (i, v) in values.iter().enumerate() {
            let op = SignedOp::from_value(v.clone()).map_err(|e| log::reindex(e, i))?;
            if !self.seen.contains(&op.hash) && !fresh.iter().any(|o: &SignedOp| o.hash == op.hash)
            {
                fresh.push(op);
            }
        }
        if fresh.is_empty() {
            return Ok(0);
        }
        let mut candidate = self.ops.clone();
        candidate.extend(fresh.iter().cloned());
        match log::verify_log(&candidate, Some(&self.did), now) {
            Ok(_) | Err(LogError::Equivocation { .. }) => {}
            Err(e) => return Err(e),
        }
        let n = fresh.len();
        for op in fresh {
            self.seen.insert(op.hash);
            self.ops.push(op);
        }
        Ok(n)
    }

    /// Verifies everything held as one log.
    pub fn verify(&self, now: Millis) -> Result<VerifiedLog, LogError> {
        log::verify_log(&self.ops, Some(&self.did), now)
    }
}

/// Every op of a verified log (chain and superseded branches) as wire objects, chain first:
/// what a bundle must carry so that anyone can re-run the fork rules.
pub fn all_op_values(log: &VerifiedLog) -> Vec<Value> {
    log.chain
        .iter()
        .chain(log.superseded.iter())
        .map(|o| o.value.clone())
        .collect()
}

/// How a newly verified log relates to a head verified earlier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadRelation {
    /// The earlier head is on the new chain (same head or newer).
    Extends,
    /// The earlier head is held but was superseded by a valid recovery rotate.
    Recovered,
    /// The earlier head is absent: the new log is older or a different history.
    Missing,
}

/// Compares a new verified log with a head verified earlier (the cache's "never downgrade").
pub fn relation_to(log: &VerifiedLog, earlier_head: &OpHash) -> HeadRelation {
    if log.contains(earlier_head) {
        HeadRelation::Extends
    } else if log.superseded.iter().any(|o| &o.hash == earlier_head) {
        HeadRelation::Recovered
    } else {
        HeadRelation::Missing
    }
}
