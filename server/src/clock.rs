//! The wall clock, in one place: every "now" of the server comes from [`now_ms`], and the
//! pure decisions below it take time as a parameter instead of reading the clock.

use roam_identity_core::Millis;

/// Wall-clock milliseconds since the Unix epoch.
pub fn now_ms() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or(0)
}
