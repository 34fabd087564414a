//! The change stream on the outbox: a latency optimisation, never the source of truth.
//!
//! Watches inserts and updates that set `status` back to `pending` (a replayed dead entry),
//! resuming after the token saved in `sync_state`. Every event wakes the batch loop and moves
//! the "seen" token; the loop saves it only once everything claimable was processed. When the
//! saved token cannot be resumed from (history lost, invalid token) the stream restarts from
//! now and the loop sweeps the outbox, so no entry is missed; each restart is counted in
//! `tidemark_change_stream_restarts_total{reason}`.

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

async fn load_token(inner: &Inner) -> Option<ResumeToken> {
    let row = inner
        .store
        .database()
        .collection::<Document>(COLL_SYNC_STATE)
        .find_one(doc! {"_id": &inner.cfg.worker.group})
        .await
        .ok()
        .flatten()?;
    let t = row.get_document("resumeToken").ok()?.clone();
    match bson::from_document::<ResumeToken>(t) {
        Ok(tok) => Some(tok),
        Err(e) => {
            tracing::warn!(error = %e, "saved resume token is unreadable; starting from now");
            None
        }
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

pub(crate) async fn stream_loop(inner: Arc<Inner>, mut stop: watch::Receiver<bool>) {
    let outbox = inner.store.database().collection::<Document>(COLL_OUTBOX);
    let mut token = load_token(&inner).await;
    if let Some(t) = &token {
        *inner.saved_token.lock().unwrap() = Some(t.clone());
    }
    let pipeline = vec![doc! {"$match": {"$or": [
        {"operationType": "insert"},
        {"operationType": "replace", "fullDocument.status": "pending"},
        {"operationType": "update", "updateDescription.updatedFields.status": "pending"},
    ]}}];
    let mut backoff = Duration::from_millis(200);
    loop {
        if *stop.borrow() {
            return;
        }
        let opened = match &token {
            Some(t) => {
                outbox
                    .watch()
                    .pipeline(pipeline.clone())
                    .resume_after(t.clone())
                    .await
            }
            None => outbox.watch().pipeline(pipeline.clone()).await,
        };
        let mut stream = match opened {
            Ok(s) => s,
            Err(e) => {
                let server_said_no = matches!(*e.kind, ErrorKind::Command(_));
                if token.is_some() && server_said_no {
                    let code = command_code(&e);
                    let reason = if HISTORY_LOST.contains(&code) {
                        "history_lost"
                    } else {
                        "invalid_token"
                    };
                    tracing::warn!(error = %e, code, reason, "cannot resume the change stream; restarting from now and sweeping");
                    restart(&inner, reason);
                    token = None;
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
                Ok(Some(_event)) => {
                    token = stream.resume_token();
                    *inner.seen_token.lock().unwrap() = token.clone();
                    inner.wake.notify_one();
                }
                Ok(None) => {
                    if let Some(t) = stream.resume_token() {
                        token = Some(t.clone());
                        *inner.seen_token.lock().unwrap() = Some(t);
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
                        token = None;
                    }
                    break;
                }
            }
        }
    }
}
