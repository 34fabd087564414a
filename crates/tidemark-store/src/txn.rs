//! Running a multi-document transaction with the retry rules of the MongoDB driver
//! specification: the whole transaction is retried on the `TransientTransactionError` label
//! (e.g. a write conflict with a concurrent writer), only the commit is retried on
//! `UnknownTransactionCommitResult`; attempts are bounded and spaced by a small jittered backoff.

use crate::error::StoreError;
use crate::mongo_error;
use mongodb::error::Error as MongoError;
use mongodb::options::{Acknowledgment, ReadConcern, WriteConcern};
use mongodb::{Client, ClientSession};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How a transaction body failed.
#[derive(Debug)]
pub(crate) enum TxnError {
    /// Run the whole transaction again (transient error or a lost race that a fresh read fixes).
    Retry(String),
    /// Give up with this error.
    Fatal(StoreError),
}

impl From<MongoError> for TxnError {
    fn from(e: MongoError) -> Self {
        if is_transient(&e) {
            TxnError::Retry(e.to_string())
        } else {
            TxnError::Fatal(StoreError::Mongo(e))
        }
    }
}

impl From<StoreError> for TxnError {
    fn from(e: StoreError) -> Self {
        TxnError::Fatal(e)
    }
}

/// The body of a transaction: called once per attempt with a session inside a started
/// transaction. It must not commit; it may be run several times, so it must only derive its
/// writes from what it reads inside the transaction.
pub(crate) trait TxnBody: Sync {
    type Out: Send;
    fn run(
        &self,
        session: &mut ClientSession,
    ) -> impl Future<Output = Result<Self::Out, TxnError>> + Send;

    /// Asked when a commit failed: whether this attempt's writes are committed all the same
    /// (a commit that reached the server, whose answer was lost, and whose retry found the
    /// transaction forgotten, e.g. after a restart), so that retrying the whole transaction
    /// would write them twice. Bodies that cannot tell answer false (and are retried).
    fn committed(&self, _out: &Self::Out) -> impl Future<Output = bool> + Send {
        async { false }
    }
}

/// Retry bounds.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts of the whole transaction (and, separately, of the commit).
    pub max_attempts: u32,
    /// First backoff; doubles per attempt up to `max_backoff`, with full jitter.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 60,
            base_backoff: Duration::from_millis(2),
            max_backoff: Duration::from_millis(200),
        }
    }
}

impl RetryPolicy {
    fn delay(&self, attempt: u32) -> Duration {
        let exp = self
            .base_backoff
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.max_backoff);
        let ms = exp.as_millis().max(1) as u64;
        Duration::from_millis(rand::random_range(0..=ms))
    }
}

/// True when the whole transaction should run again.
pub(crate) fn is_transient(e: &MongoError) -> bool {
    mongo_error::is_transient_transaction(e)
}

/// Runs `body` in a transaction until it commits, the error is not retryable, or the policy's
/// attempts are used up. `operation` names the call in errors and logs.
pub(crate) async fn run<B: TxnBody>(
    client: &Client,
    policy: RetryPolicy,
    retries: &AtomicU64,
    operation: &'static str,
    body: &B,
) -> Result<B::Out, StoreError> {
    let mut session = client.start_session().await?;
    let mut last = String::new();
    for attempt in 0..policy.max_attempts {
        if attempt > 0 {
            retries.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(policy.delay(attempt)).await;
        }
        session
            .start_transaction()
            .read_concern(ReadConcern::snapshot())
            .write_concern(
                WriteConcern::builder()
                    .w(Acknowledgment::Majority)
                    .journal(true)
                    .build(),
            )
            .await?;
        let out = match body.run(&mut session).await {
            Ok(out) => out,
            Err(err) => {
                // The server may already have aborted; an abort error changes nothing.
                let _ = session.abort_transaction().await;
                match err {
                    TxnError::Retry(why) => {
                        tracing::debug!(operation, attempt, %why, "retrying transaction");
                        last = why;
                        continue;
                    }
                    TxnError::Fatal(e) => return Err(e),
                }
            }
        };
        match commit(&mut session, policy).await {
            Ok(()) => return Ok(out),
            // The driver retries a commit once by itself, so even an error without the
            // unknown-result label may follow a commit that happened: look before retrying.
            Err(e) if body.committed(&out).await => {
                tracing::info!(operation, attempt, error = %e, "commit reported failed, but its writes are committed; not retrying");
                return Ok(out);
            }
            Err(e) if is_transient(&e) => {
                tracing::debug!(operation, attempt, error = %e, "commit failed transiently; retrying transaction");
                last = e.to_string();
                continue;
            }
            Err(e) => return Err(StoreError::Mongo(e)),
        }
    }
    Err(StoreError::RetriesExhausted {
        operation,
        attempts: policy.max_attempts,
        last,
    })
}

/// Commits, retrying only the commit while its outcome is unknown.
async fn commit(session: &mut ClientSession, policy: RetryPolicy) -> Result<(), MongoError> {
    let mut attempt = 0;
    loop {
        match session.commit_transaction().await {
            Ok(()) => return Ok(()),
            Err(e) if mongo_error::is_unknown_commit(&e) && attempt + 1 < policy.max_attempts => {
                attempt += 1;
                tracing::debug!(attempt, error = %e, "commit result unknown; retrying commit");
                tokio::time::sleep(policy.delay(attempt)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_bounded_and_jittered() {
        let p = RetryPolicy::default();
        for attempt in 0..100 {
            assert!(p.delay(attempt) <= p.max_backoff);
        }
        let distinct: std::collections::HashSet<_> = (0..50).map(|_| p.delay(10)).collect();
        assert!(distinct.len() > 1, "jitter expected");
    }
}
