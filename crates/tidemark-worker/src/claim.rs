//! Claiming work and recording outcomes in MongoDB.
//!
//! Claiming is per document. A worker first finds due pending entries (`nextAttemptAt <= now`,
//! no live lease), then takes a lock per document in `worker_locks` (`_id` = documentId; an
//! insert, or a takeover of an expired lock, both atomic on one document), then sets its lease
//! on every due pending entry of the documents it locked. Documents locked by another worker are
//! skipped, so no two workers ever process entries of the same document at the same time, even
//! when a new entry of that document arrives mid-batch. Locks and leases expire after
//! `worker.lease`, so a crashed worker's claims are taken over; they are released at once when
//! a batch ends. Outcomes are written only where the entry still carries this worker's lease.

use crate::worker::Inner;
use crate::WorkerError;
use bson::{doc, oid::ObjectId, DateTime, Document};
use futures::TryStreamExt;
use mongodb::error::ErrorKind;
use mongodb::options::IndexOptions;
use mongodb::{Collection, IndexModel};
use std::time::{Duration, Instant};
use tidemark_core::{OutboxEntry, OutboxResult, COLL_OUTBOX, COLL_SYNC_STATE};

/// Worker-private collection of per-document locks: `{_id: documentId, owner, until}`.
pub const COLL_LOCKS: &str = "worker_locks";

pub(crate) struct Claimed {
    pub entries: Vec<OutboxEntry>,
    /// Documents this worker locked (to release after the batch).
    pub docs: Vec<ObjectId>,
    /// Due entries skipped because their document is locked by another worker.
    pub blocked: usize,
    pub at: Instant,
}

fn later(now: DateTime, d: Duration) -> DateTime {
    DateTime::from_millis(now.timestamp_millis() + d.as_millis() as i64)
}

impl Inner {
    pub(crate) fn raw_outbox(&self) -> Collection<Document> {
        self.store.database().collection(COLL_OUTBOX)
    }

    pub(crate) fn locks(&self) -> Collection<Document> {
        self.store.database().collection(COLL_LOCKS)
    }

    /// TTL index that removes lock documents long after they expired (crashed workers).
    pub(crate) async fn ensure_lock_index(&self) -> Result<(), WorkerError> {
        let opts = IndexOptions::builder()
            .name("until_ttl".to_string())
            .expire_after(Duration::from_secs(3600))
            .build();
        self.locks()
            .create_index(
                IndexModel::builder()
                    .keys(doc! {"until": 1})
                    .options(opts)
                    .build(),
            )
            .await?;
        Ok(())
    }

    /// Pending entries that are due and not leased by a live worker.
    fn due_filter(now: DateTime) -> Document {
        doc! {
            "status": "pending",
            "nextAttemptAt": {"$lte": now},
            "$or": [{"lease": null}, {"lease.until": {"$lt": now}}],
        }
    }

    /// Whether any entry is due (what a claim would find).
    pub(crate) async fn anything_due(&self) -> Result<bool, WorkerError> {
        let first = self
            .raw_outbox()
            .find_one(Self::due_filter(DateTime::now()))
            .projection(doc! {"_id": 1})
            .await?;
        Ok(first.is_some())
    }

    /// Locks up to `limit` documents with due entries and leases their entries.
    pub(crate) async fn claim(&self, limit: usize) -> Result<Claimed, WorkerError> {
        let at = Instant::now();
        let now = DateTime::now();
        let until = later(now, self.cfg.worker.lease);
        let due = Self::due_filter(now);
        let cands: Vec<Document> = self
            .raw_outbox()
            .find(due)
            .sort(doc! {"nextAttemptAt": 1})
            .limit((limit * 2) as i64)
            .projection(doc! {"documentId": 1})
            .await?
            .try_collect()
            .await?;
        let mut wanted: Vec<ObjectId> = Vec::new();
        for c in &cands {
            if let Ok(id) = c.get_object_id("documentId") {
                if !wanted.contains(&id) && wanted.len() < limit {
                    wanted.push(id);
                }
            } else if let Ok(id) = c.get_object_id("_id") {
                self.dead_raw(id, "invalid outbox entry: documentId is not an ObjectId")
                    .await?;
            }
        }
        let docs = self.lock_docs(&wanted, now, until).await?;
        let blocked = cands
            .iter()
            .filter(|c| {
                c.get_object_id("documentId")
                    .is_ok_and(|d| wanted.contains(&d) && !docs.contains(&d))
            })
            .count();
        if docs.is_empty() {
            return Ok(Claimed {
                entries: Vec::new(),
                docs,
                blocked,
                at,
            });
        }
        let mine = doc! {"documentId": {"$in": &docs}, "status": "pending"};
        let mut set_lease = mine.clone();
        set_lease.insert("nextAttemptAt", doc! {"$lte": now});
        self.raw_outbox()
            .update_many(
                set_lease,
                doc! {"$set": {"lease": {"owner": &self.owner, "until": until}}},
            )
            .await?;
        let mut leased = mine;
        leased.insert("lease.owner", &self.owner);
        let raw: Vec<Document> = self.raw_outbox().find(leased).await?.try_collect().await?;
        let mut entries = Vec::with_capacity(raw.len());
        for d in raw {
            let id = d.get_object_id("_id").ok();
            match bson::from_document::<OutboxEntry>(d) {
                Ok(e) => entries.push(e),
                Err(err) => {
                    if let Some(id) = id {
                        self.dead_raw(id, &format!("invalid outbox entry: {err}"))
                            .await?;
                    }
                }
            }
        }
        Ok(Claimed {
            entries,
            docs,
            blocked,
            at,
        })
    }

    async fn lock_docs(
        &self,
        wanted: &[ObjectId],
        now: DateTime,
        until: DateTime,
    ) -> Result<Vec<ObjectId>, WorkerError> {
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<Document> = wanted
            .iter()
            .map(|d| doc! {"_id": d, "owner": &self.owner, "until": until})
            .collect();
        let mut taken: Vec<usize> = Vec::new();
        match self.locks().insert_many(rows).ordered(false).await {
            Ok(_) => return Ok(wanted.to_vec()),
            Err(e) => match *e.kind {
                ErrorKind::InsertMany(ref ime) if ime.write_concern_error.is_none() => {
                    for we in ime.write_errors.iter().flatten() {
                        if we.code != 11000 {
                            return Err(e.clone().into());
                        }
                        taken.push(we.index);
                    }
                }
                _ => return Err(e.into()),
            },
        }
        let mut got = Vec::with_capacity(wanted.len());
        for (i, d) in wanted.iter().enumerate() {
            if !taken.contains(&i) {
                got.push(*d);
                continue;
            }
            // Held before: take it over only if it expired.
            let r = self
                .locks()
                .find_one_and_update(
                    doc! {"_id": d, "until": {"$lt": now}},
                    doc! {"$set": {"owner": &self.owner, "until": until}},
                )
                .await?;
            if r.is_some() {
                got.push(*d);
            }
        }
        Ok(got)
    }

    /// Releases document locks held by this worker.
    pub(crate) async fn release_docs(&self, docs: &[ObjectId]) {
        if docs.is_empty() {
            return;
        }
        if let Err(e) = self
            .locks()
            .delete_many(doc! {"_id": {"$in": docs}, "owner": &self.owner})
            .await
        {
            tracing::warn!(error = %e, "releasing document locks failed; they expire by themselves");
        }
    }

    /// Hands back every lease and lock of this worker (shutdown).
    pub(crate) async fn release_all(&self) {
        let r = self
            .raw_outbox()
            .update_many(
                doc! {"status": "pending", "lease.owner": &self.owner},
                doc! {"$unset": {"lease": ""}},
            )
            .await;
        if let Err(e) = r {
            tracing::warn!(error = %e, "releasing leases failed; they expire by themselves");
        }
        if let Err(e) = self.locks().delete_many(doc! {"owner": &self.owner}).await {
            tracing::warn!(error = %e, "releasing document locks failed");
        }
    }

    /// Hands back the leases of these entries without counting an attempt.
    pub(crate) async fn release_entries(&self, ids: &[ObjectId]) -> Result<(), WorkerError> {
        if ids.is_empty() {
            return Ok(());
        }
        self.raw_outbox()
            .update_many(
                doc! {"_id": {"$in": ids}, "status": "pending", "lease.owner": &self.owner},
                doc! {"$unset": {"lease": ""}},
            )
            .await?;
        Ok(())
    }

    /// Marks entries done with `result` (only those still leased by this worker).
    pub(crate) async fn mark_done(
        &self,
        ids: &[ObjectId],
        result: OutboxResult,
    ) -> Result<(), WorkerError> {
        if ids.is_empty() {
            return Ok(());
        }
        self.raw_outbox()
            .update_many(
                doc! {"_id": {"$in": ids}, "status": "pending", "lease.owner": &self.owner},
                doc! {
                    "$set": {"status": "done", "doneAt": DateTime::now(), "result": result.as_str()},
                    "$unset": {"lease": ""},
                },
            )
            .await?;
        Ok(())
    }

    /// Ends entries as dead with `error`.
    pub(crate) async fn mark_dead(&self, ids: &[ObjectId], error: &str) -> Result<(), WorkerError> {
        if ids.is_empty() {
            return Ok(());
        }
        self.raw_outbox()
            .update_many(
                doc! {"_id": {"$in": ids}, "status": "pending", "lease.owner": &self.owner},
                doc! {
                    "$set": {"status": "dead", "lastError": error},
                    "$inc": {"attempts": 1},
                    "$unset": {"lease": ""},
                },
            )
            .await?;
        Ok(())
    }

    /// Schedules another attempt of entries that all failed their `attempts`-th attempt.
    pub(crate) async fn mark_retry(
        &self,
        ids: &[ObjectId],
        attempts: i32,
        error: &str,
        retry_after: Option<Duration>,
    ) -> Result<(), WorkerError> {
        if ids.is_empty() {
            return Ok(());
        }
        let w = &self.cfg.worker;
        let delay =
            crate::backoff::retry_delay_now(attempts, w.backoff_base, w.backoff_max, retry_after);
        let next = later(DateTime::now(), delay);
        self.raw_outbox()
            .update_many(
                doc! {"_id": {"$in": ids}, "status": "pending", "lease.owner": &self.owner},
                doc! {
                    "$set": {"nextAttemptAt": next, "lastError": error},
                    "$inc": {"attempts": 1},
                    "$unset": {"lease": ""},
                },
            )
            .await?;
        Ok(())
    }

    /// Dead entry that cannot even be parsed (no lease needed: nobody can process it).
    async fn dead_raw(&self, id: ObjectId, error: &str) -> Result<(), WorkerError> {
        tracing::error!(entry = %id, error, "outbox entry violates the contract");
        self.raw_outbox()
            .update_one(
                doc! {"_id": id, "status": "pending"},
                doc! {"$set": {"status": "dead", "lastError": error}, "$unset": {"lease": ""}},
            )
            .await?;
        self.metrics
            .entries_processed_total
            .with_label_values(&["dead"])
            .inc();
        Ok(())
    }

    /// Time until the earliest pending entry becomes due (None when nothing is pending).
    pub(crate) async fn next_due_in(&self) -> Result<Option<Duration>, WorkerError> {
        let first = self
            .raw_outbox()
            .find_one(doc! {"status": "pending"})
            .sort(doc! {"nextAttemptAt": 1})
            .projection(doc! {"nextAttemptAt": 1, "lease": 1})
            .await?;
        let Some(d) = first else { return Ok(None) };
        let now = DateTime::now().timestamp_millis();
        let mut at = d
            .get_datetime("nextAttemptAt")
            .map(|t| t.timestamp_millis())
            .unwrap_or(now);
        if let Ok(l) = d.get_document("lease") {
            if let Ok(u) = l.get_datetime("until") {
                at = at.max(u.timestamp_millis());
            }
        }
        Ok(Some(Duration::from_millis((at - now).max(0) as u64)))
    }

    pub(crate) async fn refresh_gauges(&self) -> Result<(), WorkerError> {
        let ob = self.raw_outbox();
        let pending = ob.count_documents(doc! {"status": "pending"}).await?;
        let dead = ob.count_documents(doc! {"status": "dead"}).await?;
        let oldest = ob
            .find_one(doc! {"status": "pending"})
            .sort(doc! {"createdAt": 1})
            .projection(doc! {"createdAt": 1})
            .await?;
        let lag = oldest
            .and_then(|d| d.get_datetime("createdAt").ok().copied())
            .map(|t| {
                (DateTime::now().timestamp_millis() - t.timestamp_millis()).max(0) as f64 / 1000.0
            })
            .unwrap_or(0.0);
        let m = &self.metrics;
        m.outbox_pending.set(pending as i64);
        m.outbox_dead.set(dead as i64);
        m.outbox_lag_seconds.set(lag);
        m.resume_token_age_seconds
            .set(self.saved_at.lock().unwrap().elapsed().as_secs_f64());
        Ok(())
    }

    /// Saves the change stream position of the worker group (if it moved).
    pub(crate) async fn save_token(&self, pos: crate::stream::StreamPosition) {
        if self.saved_token.lock().unwrap().as_ref() == Some(&pos) {
            return;
        }
        let Ok(token) = bson::to_document(&pos.token) else {
            return;
        };
        let mut set = doc! {"resumeToken": token, "updatedAt": DateTime::now()};
        match pos.event.as_ref().map(bson::to_document) {
            Some(Ok(event)) => set.insert("eventToken", event),
            _ => set.insert("eventToken", bson::Bson::Null),
        };
        let r = self
            .store
            .database()
            .collection::<Document>(COLL_SYNC_STATE)
            .update_one(doc! {"_id": &self.cfg.worker.group}, doc! {"$set": set})
            .upsert(true)
            .await;
        match r {
            Ok(_) => {
                *self.saved_token.lock().unwrap() = Some(pos);
                *self.saved_at.lock().unwrap() = Instant::now();
            }
            Err(e) => tracing::warn!(error = %e, "saving the resume token failed"),
        }
    }
}
