//! The change stream's position in `sync_state`: loaded at start, remembered as events arrive
//! ("seen"), and saved only at points where everything seen before it was done ("saved").
//! `sync_state` holds `resumeToken` (the stream's post-batch token) and `eventToken` (the
//! last event's `_id`, the fallback when a server refuses its own post-batch token).

use bson::{doc, Bson, DateTime, Document};
use mongodb::change_stream::event::ResumeToken;
use mongodb::{Collection, Database};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tidemark_core::COLL_SYNC_STATE;

/// Where the change stream stands: saved in `sync_state` as `resumeToken` and `eventToken`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StreamPosition {
    /// The stream's latest resume token (post-batch when the server sends one).
    pub token: ResumeToken,
    /// The `_id` of the last event delivered, the fallback when `token` is refused.
    pub event: Option<ResumeToken>,
}

/// The positions of one worker group.
pub(crate) struct Positions {
    coll: Collection<Document>,
    group: String,
    seen: Mutex<Option<StreamPosition>>,
    saved: Mutex<Option<StreamPosition>>,
    saved_at: Mutex<Instant>,
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

impl Positions {
    pub fn new(db: &Database, group: &str) -> Positions {
        Positions {
            coll: db.collection(COLL_SYNC_STATE),
            group: group.to_string(),
            seen: Mutex::new(None),
            saved: Mutex::new(None),
            saved_at: Mutex::new(Instant::now()),
        }
    }

    /// The saved position of the group, if any (and remembers it as saved).
    pub async fn load(&self) -> Option<StreamPosition> {
        let row = self
            .coll
            .find_one(doc! {"_id": &self.group})
            .await
            .ok()
            .flatten()?;
        let event = read_token(&row, "eventToken");
        let pos = match read_token(&row, "resumeToken") {
            Some(token) => Some(StreamPosition { token, event }),
            None => event.map(|e| StreamPosition {
                token: e.clone(),
                event: Some(e),
            }),
        };
        *self.saved.lock().unwrap() = pos.clone();
        pos
    }

    /// The latest position the stream delivered.
    pub fn seen(&self) -> Option<StreamPosition> {
        self.seen.lock().unwrap().clone()
    }

    pub fn set_seen(&self, pos: Option<StreamPosition>) {
        *self.seen.lock().unwrap() = pos;
    }

    /// Time since the position was last saved (or since start).
    pub fn age(&self) -> Duration {
        self.saved_at.lock().unwrap().elapsed()
    }

    /// Saves `pos` for the group (if it moved).
    pub async fn save(&self, pos: StreamPosition) {
        if self.saved.lock().unwrap().as_ref() == Some(&pos) {
            return;
        }
        let Ok(token) = bson::to_document(&pos.token) else {
            return;
        };
        let mut set = doc! {"resumeToken": token, "updatedAt": DateTime::now()};
        match pos.event.as_ref().map(bson::to_document) {
            Some(Ok(event)) => set.insert("eventToken", event),
            _ => set.insert("eventToken", Bson::Null),
        };
        let r = self
            .coll
            .update_one(doc! {"_id": &self.group}, doc! {"$set": set})
            .upsert(true)
            .await;
        match r {
            Ok(_) => {
                *self.saved.lock().unwrap() = Some(pos);
                *self.saved_at.lock().unwrap() = Instant::now();
            }
            Err(e) => tracing::warn!(error = %e, "saving the resume token failed"),
        }
    }
}
