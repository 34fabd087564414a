//! `Consistency::VectorVisible`: waiting until the worker has marked an outbox entry done.
//!
//! A change stream on the outbox filtered to the entry's `_id` wakes the waiter as soon as the
//! entry changes; a poll (100 ms growing to 1 s) runs alongside, so a server without change
//! streams, or a stream that fails, only adds latency. The entry is read once after the stream
//! is opened, so a change made before it opened is not missed.

use crate::{Store, StoreError};
use bson::oid::ObjectId;
use bson::{doc, Document};
use futures::StreamExt;
use std::time::{Duration, Instant};
use tidemark_core::COLL_OUTBOX;

enum State {
    Done,
    Pending,
    Dead(String),
}

impl Store {
    /// Waits until the outbox entry `outbox_id` is `done`. Errors: `NotVisible` on timeout (the
    /// document IS committed), `VectorFailed` if the entry went `dead`, `UnknownEntry` if it
    /// does not exist. An entry done as `superseded` counts as visible: a newer version of the
    /// document was written and its own entry carries the work.
    pub async fn wait_visible(
        &self,
        outbox_id: ObjectId,
        timeout: Duration,
    ) -> Result<(), StoreError> {
        let start = Instant::now();
        let deadline = tokio::time::Instant::now() + timeout;
        let outbox = self.raw(COLL_OUTBOX);
        let mut stream = match outbox
            .watch()
            .pipeline([doc! {"$match": {"documentKey._id": outbox_id}}])
            .await
        {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::debug!(error = %e, "change stream unavailable; polling the outbox entry");
                None
            }
        };
        let mut poll = Duration::from_millis(100);
        loop {
            let entry = outbox
                .find_one(doc! {"_id": outbox_id})
                .await?
                .ok_or(StoreError::UnknownEntry(outbox_id))?;
            match state(&entry) {
                State::Done => return Ok(()),
                State::Dead(last_error) => {
                    let (content_id, document_id, version) = ids(&entry);
                    return Err(StoreError::VectorFailed {
                        content_id,
                        document_id,
                        outbox_id,
                        version,
                        last_error,
                    });
                }
                State::Pending => {}
            }
            if tokio::time::Instant::now() >= deadline {
                let (content_id, document_id, version) = ids(&entry);
                return Err(StoreError::NotVisible {
                    content_id,
                    document_id,
                    outbox_id,
                    version,
                    waited: start.elapsed(),
                });
            }
            let wake = (tokio::time::Instant::now() + poll).min(deadline);
            let mut stream_failed = false;
            match stream.as_mut() {
                Some(s) => {
                    tokio::select! {
                        ev = s.next() => match ev {
                            // The entry changed: read it again at the top of the loop.
                            Some(Ok(_)) => {}
                            Some(Err(e)) => {
                                tracing::debug!(error = %e, "change stream failed; polling only");
                                stream_failed = true;
                            }
                            None => stream_failed = true,
                        },
                        _ = tokio::time::sleep_until(wake) => {}
                    }
                }
                None => tokio::time::sleep_until(wake).await,
            }
            if stream_failed {
                stream = None;
            }
            poll = (poll * 2).min(Duration::from_secs(1));
        }
    }
}

fn state(entry: &Document) -> State {
    match entry.get_str("status") {
        Ok("done") => State::Done,
        Ok("dead") => State::Dead(
            entry
                .get_str("lastError")
                .unwrap_or("no lastError recorded")
                .to_string(),
        ),
        _ => State::Pending,
    }
}

fn ids(entry: &Document) -> (String, ObjectId, i64) {
    (
        entry.get_str("contentId").unwrap_or_default().to_string(),
        entry.get_object_id("documentId").unwrap_or_default(),
        entry.get_i64("version").unwrap_or_default(),
    )
}
