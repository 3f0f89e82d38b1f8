//! Device-list changes of local users, told to the other servers that follow them: a server
//! that asked for a user's keys over federation (`/_matrix/federation/v1/user/keys/query` or
//! `user/devices`) is remembered as a follower of that user (the store's
//! `add_remote_follower`), and each change on the key-change stream is sent to the user's
//! followers as an `m.device_list_update` EDU, which marks the user changed there, so their
//! users see it in `/sync` `device_lists.changed` and query the keys again.
//!
//! One loop per process, woken by every write this node (or, on PostgreSQL, another node)
//! makes, and every few seconds. It starts at the stream position of its start: changes made
//! while no node ran are not sent (a follower learns them on its user's next query). Delivery
//! is best effort, as in Matrix; with several nodes each may send a change, which is harmless
//! (marking a user changed twice is marking it changed).

use std::time::Duration;

use tokio::sync::watch;

use crate::state::AppState;

/// How often the loop looks at the stream without being woken.
const TICK: Duration = Duration::from_secs(5);

/// Runs until `stopped` turns true; a send in progress then is dropped.
pub async fn send_loop(state: AppState, mut stopped: watch::Receiver<bool>) {
    let mut sent = match state.db(|s| Ok(s.sync_positions()?.keys)).await {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, "device-list updates: no stream position; not sending");
            return;
        }
    };
    let mut wakes = state.sync_wakes();
    loop {
        tokio::select! {
            _ = wakes.changed() => {}
            _ = tokio::time::sleep(TICK) => {}
            _ = stopped.changed() => {}
        }
        if *stopped.borrow() {
            return;
        }
        // A stop does not wait for a slow follower: what is unsent now is not sent.
        tokio::select! {
            result = send_changes_after(&state, sent) => match result {
                Ok(now) => sent = now,
                Err(e) => tracing::warn!(error = %e, "device-list updates: reading the stream failed"),
            },
            _ = stopped.changed() => return,
        }
    }
}

/// Sends the changes in `(after, now]` to the followers of the local users they concern;
/// returns `now`.
async fn send_changes_after(state: &AppState, after: u64) -> Result<u64, crate::error::AppError> {
    let own = state.config().server_name.clone();
    let (now, followed) = state
        .db(move |s| {
            let now = s.sync_positions()?.keys;
            let mut followed = Vec::new();
            for user in s.key_changes(after, now)? {
                if user.server_name() != own {
                    continue;
                }
                let servers = s.remote_followers(&user)?;
                if !servers.is_empty() {
                    followed.push((user, servers));
                }
            }
            Ok((now, followed))
        })
        .await?;
    for (user, servers) in followed {
        state
            .remote_keys()
            .send_device_list_update(&user, now, &servers)
            .await;
    }
    Ok(now)
}
