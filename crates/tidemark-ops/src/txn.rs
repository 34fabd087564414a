//! A multi-document transaction with the driver specification's retry rules: the whole body is
//! retried on `TransientTransactionError` (e.g. a write conflict), only the commit on
//! `UnknownTransactionCommitResult`; attempts are bounded and spaced by a short jittered pause.

use futures::future::BoxFuture;
use mongodb::error::Error as MongoError;
use mongodb::{Client, ClientSession};
use std::time::Duration;
use tidemark_store::mongo_error;

const MAX_ATTEMPTS: u32 = 30;

/// Outcome of one transaction body: commit, or abort with a value (nothing written).
pub(crate) enum Body<T> {
    Commit(T),
    Abort(T),
}

fn pause(attempt: u32) -> Duration {
    let cap = 5u64.saturating_mul(1 << attempt.min(6)).min(200);
    Duration::from_millis(rand::random_range(1..=cap))
}

fn transient(e: &MongoError) -> bool {
    mongo_error::is_transient_transaction(e)
}

/// Runs `body` inside a transaction until it commits, aborts on purpose, fails for good, or the
/// attempts are used up. The body must derive its writes from reads made inside the transaction.
pub(crate) async fn run<T, F>(client: &Client, mut body: F) -> Result<T, MongoError>
where
    F: for<'s> FnMut(&'s mut ClientSession) -> BoxFuture<'s, Result<Body<T>, MongoError>>,
{
    let mut session = client.start_session().await?;
    let mut attempt = 0;
    loop {
        attempt += 1;
        session
            .start_transaction()
            .read_concern(mongodb::options::ReadConcern::snapshot())
            .write_concern(
                mongodb::options::WriteConcern::builder()
                    .w(mongodb::options::Acknowledgment::Majority)
                    .journal(true)
                    .build(),
            )
            .await?;
        match body(&mut session).await {
            Ok(Body::Abort(v)) => {
                let _ = session.abort_transaction().await;
                return Ok(v);
            }
            Ok(Body::Commit(v)) => {
                let mut commit_attempt = 0;
                loop {
                    commit_attempt += 1;
                    match session.commit_transaction().await {
                        Ok(()) => return Ok(v),
                        Err(e)
                            if mongo_error::is_unknown_commit(&e)
                                && commit_attempt < MAX_ATTEMPTS =>
                        {
                            tokio::time::sleep(pause(commit_attempt)).await;
                        }
                        Err(e) if transient(&e) && attempt < MAX_ATTEMPTS => {
                            tracing::debug!(error = %e, attempt, "transaction commit failed; retrying");
                            break;
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
            Err(e) => {
                let _ = session.abort_transaction().await;
                if !(transient(&e) && attempt < MAX_ATTEMPTS) {
                    return Err(e);
                }
                tracing::debug!(error = %e, attempt, "transaction failed; retrying");
            }
        }
        tokio::time::sleep(pause(attempt)).await;
    }
}
