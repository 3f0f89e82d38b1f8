//! Long-polls: `/sync` and the export's live follow wait for news the same way. A write
//! answered by this process wakes every waiter at once ([`AppState::wake_sync`]); a waiter also
//! looks again every [`POLL_EVERY`] (writes made by other processes on a shared store), and
//! stops [`TIMEOUT_MARGIN`] before the request timeout so it answers 200, not 503.

use std::future::Future;
use std::time::{Duration, Instant};

use crate::error::AppError;
use crate::state::AppState;

/// How often a long-poll looks again without a wake-up.
pub const POLL_EVERY: Duration = Duration::from_secs(1);
/// A long-poll ends this long before the request timeout.
pub const TIMEOUT_MARGIN: Duration = Duration::from_secs(2);

/// Runs `look` until it reports news or `timeout` (capped by the request timeout) has passed,
/// and returns what the last look saw. `look` returns what it saw and whether that is news.
pub async fn long_poll<T, F, Fut>(
    state: &AppState,
    timeout: Duration,
    mut look: F,
) -> Result<T, AppError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(T, bool), AppError>>,
{
    let longest = state
        .config()
        .edge
        .request_timeout
        .saturating_sub(TIMEOUT_MARGIN);
    let deadline = Instant::now() + timeout.min(longest);
    let mut wakes = state.sync_wakes();
    loop {
        wakes.borrow_and_update();
        let (seen, news) = look().await?;
        let left = deadline.saturating_duration_since(Instant::now());
        if news || left.is_zero() {
            return Ok(seen);
        }
        let _ = tokio::time::timeout(left.min(POLL_EVERY), wakes.changed()).await;
    }
}

/// A `timeout` query parameter in milliseconds (absent: 0, answer at once).
pub fn timeout_param(value: Option<&str>) -> Result<Duration, AppError> {
    match value {
        Some(t) => t
            .parse::<u64>()
            .map(Duration::from_millis)
            .map_err(|_| AppError::InvalidParam("timeout must be a number of milliseconds".into())),
        None => Ok(Duration::ZERO),
    }
}
