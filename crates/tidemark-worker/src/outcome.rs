//! Recording the outcome of a processed batch: documents first (`vectorId`, `indexedVersion`
//! where the version still matches), then the entries (done with a result, retried with
//! backoff, dead with `lastError`, or released), so a done entry implies an updated document.

use crate::process::{EntryInfo, Fate};
use crate::worker::{BatchReport, Inner};
use crate::WorkerError;
use bson::{doc, oid::ObjectId, Document};
use std::collections::HashMap;
use std::time::Duration;
use tidemark_core::{OutboxResult, COLL_DOCUMENTS};

/// Entries retried together: their ids and the server's Retry-After.
type RetryGroup = (Vec<ObjectId>, Option<Duration>);

impl Inner {
    /// Records the outcome of every entry: documents first (vectorId, indexedVersion where the
    /// version still matches), then the entries, so a done entry implies an updated document.
    pub(crate) async fn finish(
        &self,
        fates: HashMap<ObjectId, Fate>,
        info: &HashMap<ObjectId, EntryInfo>,
    ) -> Result<BatchReport, WorkerError> {
        let mut report = BatchReport {
            claimed: fates.len(),
            ..Default::default()
        };
        let mut done: HashMap<&'static str, (OutboxResult, Vec<ObjectId>)> = HashMap::new();
        let mut dead: Vec<(ObjectId, String)> = Vec::new();
        let mut retry: HashMap<(i32, String), RetryGroup> = HashMap::new();
        let mut release = Vec::new();
        let max = self.cfg.worker.max_attempts;
        for (id, fate) in fates {
            match fate {
                Fate::Done(r) => done.entry(r.as_str()).or_insert((r, Vec::new())).1.push(id),
                Fate::Release => release.push(id),
                Fate::Failed(f) => {
                    let n = info.get(&id).map_or(0, |i| i.attempts) + 1;
                    if f.permanent || n >= max {
                        let why = if f.permanent {
                            f.error.clone()
                        } else {
                            format!("gave up after {n} attempts: {}", f.error)
                        };
                        tracing::error!(entry = %id, stage = f.stage, error = %why, "outbox entry is dead");
                        dead.push((id, why));
                    } else {
                        tracing::warn!(entry = %id, stage = f.stage, attempt = n, error = %f.error, "will retry");
                        self.metrics
                            .retries_total
                            .with_label_values(&[f.stage])
                            .inc();
                        let slot = retry
                            .entry((n, f.error))
                            .or_insert((Vec::new(), f.retry_after));
                        slot.0.push(id);
                    }
                }
            }
        }
        self.set_indexed(&done, info).await?;
        let now = bson::DateTime::now().timestamp_millis();
        for (name, (result, ids)) in &done {
            self.mark_done(ids, *result).await?;
            self.metrics
                .entries_processed_total
                .with_label_values(&[name])
                .inc_by(ids.len() as u64);
            for id in ids {
                if let Some(i) = info.get(id) {
                    let ms = (now - i.created.timestamp_millis()).max(0);
                    self.metrics.end_to_end_seconds.observe(ms as f64 / 1000.0);
                }
            }
            match result {
                OutboxResult::Indexed => report.indexed += ids.len(),
                OutboxResult::Unchanged => report.unchanged += ids.len(),
                OutboxResult::Superseded => report.superseded += ids.len(),
                OutboxResult::Deleted => report.deleted += ids.len(),
            }
        }
        for (id, why) in &dead {
            self.mark_dead(std::slice::from_ref(id), why).await?;
        }
        report.dead = dead.len();
        self.metrics
            .entries_processed_total
            .with_label_values(&["dead"])
            .inc_by(dead.len() as u64);
        for ((n, err), (ids, after)) in &retry {
            self.mark_retry(ids, *n, err, *after).await?;
            report.retried += ids.len();
        }
        self.metrics
            .entries_processed_total
            .with_label_values(&["retry"])
            .inc_by(report.retried as u64);
        self.release_entries(&release).await?;
        report.released = release.len();
        Ok(report)
    }

    /// Sets `vectorId` and `indexedVersion` on documents whose indexed/unchanged entry is done,
    /// only where the document's version still equals the entry's.
    ///
    /// One `update` command carrying one single-document statement per document (`multi:
    /// false`, matched by `_id`): one round trip, an `_id` lookup per statement on any server.
    /// Not an `updateMany`, and not a transaction: a multi-document update that meets an
    /// application's uncommitted write waits for that transaction, and the test server
    /// (SecantusDB's Python build) holds its collection lock while it waits, blocking the very
    /// transaction it waits for; a transaction of ours, left open by a worker killed with
    /// SIGKILL, would block the application's writes to those documents until the server
    /// reaps it. A single-document write waits without either effect.
    async fn set_indexed(
        &self,
        done: &HashMap<&'static str, (OutboxResult, Vec<ObjectId>)>,
        info: &HashMap<ObjectId, EntryInfo>,
    ) -> Result<(), WorkerError> {
        let statements: Vec<Document> = done
            .values()
            .filter(|(r, _)| matches!(r, OutboxResult::Indexed | OutboxResult::Unchanged))
            .flat_map(|(_, ids)| ids.iter())
            .filter_map(|id| info.get(id))
            .map(|i| {
                doc! {
                    "q": {"_id": i.document_id, "version": i.version, "indexedVersion": {"$ne": i.version}},
                    "u": [{"$set": {"vectorId": {"$toString": "$_id"}, "indexedVersion": "$version"}}],
                    "multi": false,
                }
            })
            .collect();
        let db = self.store.database();
        for chunk in statements.chunks(1000) {
            let reply = db
                .run_command(doc! {"update": COLL_DOCUMENTS, "updates": chunk, "ordered": false})
                .await?;
            if let Ok(errors) = reply.get_array("writeErrors") {
                if let Some(first) = errors.first() {
                    return Err(WorkerError::WriteErrors(format!(
                        "marking documents indexed: {} statement(s) failed, first: {first}",
                        errors.len()
                    )));
                }
            }
        }
        Ok(())
    }
}
