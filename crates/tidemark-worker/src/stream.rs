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

use crate::worker::Inner;
use bson::{doc, Document};
use futures::FutureExt;
use mongodb::change_stream::event::ResumeToken;
use mongodb::error::ErrorKind;
use std::sync::Arc;
use std::time::Duration;
use tidemark_core::{COLL_OUTBOX, COLL_SYNC_STATE};
use tokio::sync::watch;

/// Server error codes meaning the resume point is gone from the oplog.
const HISTORY_LOST: &[i32] = &[280, 286];

/// Where the change stream stands: saved in `sync_state` as `resumeToken` and `eventToken`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StreamPosition {
    /// The stream's latest resume token (post-batch when the server sends one).
    pub token: ResumeToken,
    /// The `_id` of the last event delivered, the fallback when `token` is refused.
    pub event: Option<ResumeToken>,
}

fn read_token(row: &Document, key: &str) -> Option<ResumeToken> {
    let t = row.get_document(key).ok()?.clone();
    match bson::from_document::<ResumeToken>(t) {
        Ok(tok) => Some(tok),
        Err(e) => {
            tracing::warn!(error = %e, key, "saved resume token is unreadable; ignoring it");
            None
        }
    }
}

async fn load_position(inner: &Inner) -> Option<StreamPosition> {
    let row = inner
        .store
        .database()
        .collection::<Document>(COLL_SYNC_STATE)
        .find_one(doc! {"_id": &inner.cfg.worker.group})
        .await
        .ok()
        .flatten()?;
    let event = read_token(&row, "eventToken");
    match read_token(&row, "resumeToken") {
        Some(token) => Some(StreamPosition { token, event }),
        None => event.map(|e| StreamPosition {
            token: e.clone(),
            event: Some(e),
        }),
    }
}

fn command_code(e: &mongodb::error::Error) -> i32 {
    match e.kind.as_ref() {
        ErrorKind::Command(c) => c.code,
        _ => 0,
    }
}

fn restart(inner: &Inner, reason: &str) {
    inner
        .metrics
        .change_stream_restarts_total
        .with_label_values(&[reason])
        .inc();
    inner.wake.notify_one();
}

type Stream = mongodb::change_stream::ChangeStream<
    mongodb::change_stream::event::ChangeStreamEvent<Document>,
>;

/// The reason a failed resume is counted under, or `None` when the failure is not the
/// server refusing the token (a connection problem: retry the same position).
fn refusal(e: &mongodb::error::Error) -> Option<&'static str> {
    if !matches!(*e.kind, ErrorKind::Command(_)) {
        return None;
    }
    Some(if HISTORY_LOST.contains(&command_code(e)) {
        "history_lost"
    } else {
        "invalid_token"
    })
}

pub(crate) async fn stream_loop(inner: Arc<Inner>, mut stop: watch::Receiver<bool>) {
    let outbox = inner.store.database().collection::<Document>(COLL_OUTBOX);
    let mut pos = load_position(&inner).await;
    if let Some(p) = &pos {
        *inner.saved_token.lock().unwrap() = Some(p.clone());
    }
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
        let mut stream: Stream = match opened {
            Ok(s) => s,
            Err(e) => {
                if let (true, Some(reason)) = (pos.is_some(), refusal(&e)) {
                    tracing::warn!(error = %e, code = command_code(&e), reason, "cannot resume the change stream; restarting from now and sweeping");
                    restart(&inner, reason);
                    pos = None;
                    continue;
                }
                tracing::warn!(error = %e, "cannot open the change stream; retrying");
                restart(&inner, "stream_error");
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
        inner.wake.notify_one();
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
                    *inner.seen_token.lock().unwrap() = pos.clone();
                    inner.wake.notify_one();
                }
                Ok(None) => {
                    if let Some(t) = stream.resume_token() {
                        let event = pos.take().and_then(|p| p.event);
                        pos = Some(StreamPosition { token: t, event });
                        *inner.seen_token.lock().unwrap() = pos.clone();
                    }
                }
                Err(e) => {
                    let code = command_code(&e);
                    let reason = if HISTORY_LOST.contains(&code) {
                        "history_lost"
                    } else {
                        "stream_error"
                    };
                    tracing::warn!(error = %e, reason, "change stream failed; reopening and sweeping");
                    restart(&inner, reason);
                    if reason == "history_lost" {
                        pos = None;
                    }
                    break;
                }
            }
        }
    }
}
