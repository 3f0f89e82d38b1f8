//! Group commit of account-log changes: concurrent writers queue their commits, and whoever
//! holds the leader lock writes everything queued in one durable transaction
//! ([`crate::store::LogStore::commit_logs`]). Each writer is answered only after the
//! transaction holding its commit is on disk. With one writer at a time this is one commit
//! per change; under load the batch grows to what arrived during the previous commit, so
//! the disk syncs once for many changes.

use std::sync::Mutex;

use tokio::sync::oneshot;

use crate::store::{Db, LogCommit, StoreError, StoreResult};

type Waiting = (LogCommit, oneshot::Sender<StoreResult<()>>);

/// The queue and the leader lock.
#[derive(Debug, Default)]
pub struct GroupCommit {
    queue: Mutex<Vec<Waiting>>,
    leader: tokio::sync::Mutex<()>,
}

/// Most commits written in one transaction.
const MAX_BATCH: usize = 256;

fn lost() -> StoreError {
    StoreError::Backend {
        context: "group commit",
        source: "the batch holding this commit was lost".into(),
    }
}

impl GroupCommit {
    /// Commits `commit`, possibly with others, and returns once it is durable (or refused).
    pub async fn commit(&self, db: &Db, commit: LogCommit) -> StoreResult<()> {
        let (tx, mut rx) = oneshot::channel();
        self.queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((commit, tx));
        loop {
            let guard = self.leader.lock().await;
            match rx.try_recv() {
                // A leader before us wrote it.
                Ok(result) => return result,
                Err(oneshot::error::TryRecvError::Closed) => return Err(lost()),
                Err(oneshot::error::TryRecvError::Empty) => {}
            }
            let batch: Vec<Waiting> = {
                let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
                let n = q.len().min(MAX_BATCH);
                q.drain(..n).collect()
            };
            if batch.is_empty() {
                // A leader that was dropped took ours; its blocking task still answers.
                drop(guard);
                return rx.await.unwrap_or_else(|_| Err(lost()));
            }
            // The answers are sent from the blocking task itself, so a writer is answered even
            // if this (leader) request is dropped meanwhile.
            db.run(move |s| {
                write_batch(s, batch);
                Ok(())
            })
            .await?;
            drop(guard);
            if let Ok(result) = rx.try_recv() {
                return result;
            }
        }
    }
}

/// Writes one batch and answers each writer.
fn write_batch(store: &dyn crate::store::Store, batch: Vec<Waiting>) {
    let (commits, senders): (Vec<LogCommit>, Vec<_>) = batch.into_iter().unzip();
    match store.commit_logs(commits) {
        Ok(results) => {
            for (tx, r) in senders.into_iter().zip(results) {
                let _ = tx.send(r);
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "group commit failed");
            for tx in senders {
                let _ = tx.send(Err(StoreError::Backend {
                    context: "group commit",
                    source: e.to_string().into(),
                }));
            }
        }
    }
}
