//! The change stream on the outbox: a latency optimisation, never the source of truth.
//!
//! Watches inserts and updates that set `status` back to `pending` (a replayed dead entry),
//! resuming after the token saved in `sync_state`. Every event wakes the batch loop and moves
//! the "seen" token; the loop saves it only once everything claimable was processed. When the
//! saved token cannot be resumed from (history lost, invalid token) the stream restarts from
//! now and the loop sweeps the outbox, so no entry is missed; each restart is counted in
//! `tidemark_change_stream_restarts_total{reason}`.
//!
//! The position kept is the stream's post-batch token, plus the token of the last event
//! delivered. Some servers refuse to resume from a post-batch token they minted (the Python
//! SecantusDB stamps it with the `db.$cmd` namespace when the last entry its scan passed was
//! DDL in the database, such as a collection or index created); the last event's token is then
//! tried before the stream restarts from now. Resuming from it replays at most the events
//! after it, which the claim (by status) ignores.

use crate::metrics::Metrics;
use crate::positions::{Positions, StreamPosition};
use bson::{doc, Document};
use futures::FutureExt;
use mongodb::change_stream::event::ResumeToken;
use mongodb::Collection;
use std::sync::Arc;
use std::time::Duration;
use tidemark_store::mongo_error;
use tokio::sync::{watch, Notify};

/// What the stream loop needs: the outbox to watch, where positions live, whom to wake.
pub(crate) struct StreamCtx {
    pub outbox: Collection<Document>,
    pub positions: Arc<Positions>,
    pub wake: Arc<Notify>,
    pub metrics: Metrics,
}

fn command_code(e: &mongodb::error::Error) -> i32 {
    mongo_error::code(e).unwrap_or(0)
}

fn restart(ctx: &StreamCtx, reason: &str) {
    ctx.metrics
        .change_stream_restarts_total
        .with_label_values(&[reason])
        .inc();
    ctx.wake.notify_one();
}

/// The reason a failed resume is counted under, or `None` when the failure is not the
/// server refusing the token (a connection problem: retry the same position).
fn refusal(e: &mongodb::error::Error) -> Option<&'static str> {
    if !mongo_error::is_command_refusal(e) {
        return None;
    }
    Some(if mongo_error::is_history_lost(e) {
        "history_lost"
    } else {
        "invalid_token"
    })
}

/// Watches the outbox until `stop`; wakes the batch loop on every event and stream error.
pub(crate) async fn stream_loop(ctx: StreamCtx, mut stop: watch::Receiver<bool>) {
    let outbox = ctx.outbox.clone();
    let mut pos = ctx.positions.load().await;
    let pipeline = vec![doc! {"$match": {"$or": [
        {"operationType": "insert"},
        {"operationType": "replace", "fullDocument.status": "pending"},
        {"operationType": "update", "updateDescription.updatedFields.status": "pending"},
    ]}}];
    let open = |token: Option<ResumeToken>| {
        let watch = outbox.watch().pipeline(pipeline.clone());
        async move {
            match token {
                Some(t) => watch.resume_after(t).await,
                None => watch.await,
            }
        }
    };
    let mut backoff = Duration::from_millis(200);
    loop {
        if *stop.borrow() {
            return;
        }
        let mut opened = open(pos.as_ref().map(|p| p.token.clone())).await;
        if let (Err(e), Some(p)) = (&opened, &pos) {
            let fallback = p.event.as_ref().filter(|ev| **ev != p.token);
            if let (Some("invalid_token"), Some(ev)) = (refusal(e), fallback) {
                tracing::debug!(error = %e, "the server refused the post-batch token; resuming after the last event");
                opened = open(Some(ev.clone())).await;
            }
        }
        let mut stream = match opened {
            Ok(s) => s,
            Err(e) => {
                if let (true, Some(reason)) = (pos.is_some(), refusal(&e)) {
                    tracing::warn!(error = %e, code = command_code(&e), reason, "cannot resume the change stream; restarting from now and sweeping");
                    restart(&ctx, reason);
                    pos = None;
                    continue;
                }
                tracing::warn!(error = %e, "cannot open the change stream; retrying");
                restart(&ctx, "stream_error");
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        backoff = Duration::from_millis(200);
        // Anything committed before the stream opened is found by the sweep.
        ctx.wake.notify_one();
        loop {
            let next = tokio::select! {
                _ = stop.wait_for(|s| *s).fuse() => return,
                n = stream.next_if_any() => n,
            };
            match next {
                Ok(Some(event)) => {
                    let token = stream.resume_token().unwrap_or_else(|| event.id.clone());
                    pos = Some(StreamPosition {
                        token,
                        event: Some(event.id),
                    });
                    ctx.positions.set_seen(pos.clone());
                    ctx.wake.notify_one();
                }
                Ok(None) => {
                    if let Some(t) = stream.resume_token() {
                        let event = pos.take().and_then(|p| p.event);
                        pos = Some(StreamPosition { token: t, event });
                        ctx.positions.set_seen(pos.clone());
                    }
                }
                Err(e) => {
                    let lost = mongo_error::is_history_lost(&e);
                    let reason = if lost { "history_lost" } else { "stream_error" };
                    tracing::warn!(error = %e, reason, "change stream failed; reopening and sweeping");
                    restart(&ctx, reason);
                    if lost {
                        pos = None;
                    }
                    break;
                }
            }
        }
    }
}
