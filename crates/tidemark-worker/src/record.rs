//! Recording a batch's outcomes: documents first (`vectorId`, `indexedVersion` where the
//! version still matches), then the entries (done with a result, retried with backoff, dead
//! with `lastError`, or released), so a done entry implies an updated document. The entries
//! that carry a live write on to a building index (see `handoff`) are inserted before the
//! live ones are marked done.

use crate::metrics::Metrics;
use crate::plan::Outcome;
use crate::report::BatchReport;
use crate::WorkerError;
use bson::{doc, oid::ObjectId, DateTime, Document};
use mongodb::Database;
use std::collections::HashMap;
use std::time::Duration;
use tidemark_core::config::WorkerConfig;
use tidemark_core::{OutboxEntry, OutboxResult, COLL_DOCUMENTS};
use tidemark_store::outbox::{later, Outbox};

/// What the bookkeeping needs to know about each claimed entry.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EntryInfo {
    pub created: DateTime,
    pub attempts: i32,
    pub document_id: ObjectId,
    pub version: i64,
    /// Whether the active index carries this entry out (`indexedVersion` records only it).
    pub active: bool,
}

impl EntryInfo {
    pub fn of(entries: &[OutboxEntry]) -> HashMap<ObjectId, EntryInfo> {
        entries
            .iter()
            .map(|e| {
                let i = EntryInfo {
                    created: e.created_at,
                    attempts: e.attempts,
                    document_id: e.document_id,
                    version: e.version,
                    active: true,
                };
                (e.id, i)
            })
            .collect()
    }
}

/// Entries retried together: their ids and the server's Retry-After.
type RetryGroup = (Vec<ObjectId>, Option<Duration>);

/// Outcomes sorted into the writes that record them.
#[derive(Default)]
struct Sorted {
    done: HashMap<&'static str, (OutboxResult, Vec<ObjectId>)>,
    dead: Vec<(ObjectId, String)>,
    retry: HashMap<(i32, String), RetryGroup>,
    release: Vec<ObjectId>,
}

/// What recording needs: the database, the outbox, this worker's name and retry settings.
pub(crate) struct Recorder<'a> {
    pub db: &'a Database,
    pub outbox: &'a Outbox,
    pub owner: &'a str,
    pub cfg: &'a WorkerConfig,
    pub metrics: &'a Metrics,
}

impl Recorder<'_> {
    /// Records the outcome of every entry of a batch.
    pub async fn record(
        &self,
        outcomes: HashMap<ObjectId, Outcome>,
        info: &HashMap<ObjectId, EntryInfo>,
        handoffs: Vec<OutboxEntry>,
    ) -> Result<BatchReport, WorkerError> {
        let mut report = BatchReport {
            claimed: outcomes.len(),
            handed_off: handoffs.len(),
            ..Default::default()
        };
        let s = self.sort(outcomes, info);
        self.set_indexed(&s.done, info).await?;
        self.hand_off(handoffs).await?;
        for (name, (result, ids)) in &s.done {
            self.outbox.mark_done(ids, self.owner, *result).await?;
            self.observe_done(name, ids, info);
            report.count(*result, ids.len());
        }
        for (id, why) in &s.dead {
            self.outbox
                .mark_dead(std::slice::from_ref(id), self.owner, why)
                .await?;
        }
        report.dead = s.dead.len();
        self.processed("dead", s.dead.len());
        for ((n, err), (ids, after)) in &s.retry {
            let w = self.cfg;
            let delay = crate::backoff::retry_delay_now(*n, w.backoff_base, w.backoff_max, *after);
            let next = later(DateTime::now(), delay);
            self.outbox.mark_retry(ids, self.owner, next, err).await?;
            report.retried += ids.len();
        }
        self.processed("retry", report.retried);
        self.outbox.release(&s.release, self.owner).await?;
        report.released = s.release.len();
        Ok(report)
    }

    fn sort(
        &self,
        outcomes: HashMap<ObjectId, Outcome>,
        info: &HashMap<ObjectId, EntryInfo>,
    ) -> Sorted {
        let mut s = Sorted::default();
        for (id, outcome) in outcomes {
            let f = match outcome {
                Outcome::Done(r) => {
                    s.done
                        .entry(r.as_str())
                        .or_insert((r, Vec::new()))
                        .1
                        .push(id);
                    continue;
                }
                Outcome::Release => {
                    s.release.push(id);
                    continue;
                }
                Outcome::Failed(f) => f,
            };
            let n = info.get(&id).map_or(0, |i| i.attempts) + 1;
            if f.permanent || n >= self.cfg.max_attempts {
                let why = if f.permanent {
                    f.error.clone()
                } else {
                    format!("gave up after {n} attempts: {}", f.error)
                };
                tracing::error!(entry = %id, stage = f.stage, error = %why, "outbox entry is dead");
                s.dead.push((id, why));
            } else {
                tracing::warn!(entry = %id, stage = f.stage, attempt = n, error = %f.error, "will retry");
                self.metrics
                    .retries_total
                    .with_label_values(&[f.stage])
                    .inc();
                let slot = s
                    .retry
                    .entry((n, f.error))
                    .or_insert((Vec::new(), f.retry_after));
                slot.0.push(id);
            }
        }
        s
    }

    /// Inserts the entries that carry live writes on to building indexes.
    async fn hand_off(&self, entries: Vec<OutboxEntry>) -> Result<(), WorkerError> {
        if entries.is_empty() {
            return Ok(());
        }
        for e in &entries {
            for i in &e.indexes {
                self.metrics.handoffs_total.with_label_values(&[i]).inc();
            }
        }
        self.outbox.insert(entries).await?;
        Ok(())
    }

    fn processed(&self, result: &str, n: usize) {
        self.metrics
            .entries_processed_total
            .with_label_values(&[result])
            .inc_by(n as u64);
    }

    fn observe_done(&self, name: &str, ids: &[ObjectId], info: &HashMap<ObjectId, EntryInfo>) {
        self.processed(name, ids.len());
        let now = DateTime::now().timestamp_millis();
        for i in ids.iter().filter_map(|id| info.get(id)) {
            let ms = (now - i.created.timestamp_millis()).max(0);
            self.metrics.end_to_end_seconds.observe(ms as f64 / 1000.0);
        }
    }

    /// Sets `vectorId` and `indexedVersion` on documents whose indexed/unchanged entry is done
    /// in the active index, only where the document's version still equals the entry's.
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
            .filter(|i| i.active)
            .map(|i| {
                doc! {
                    "q": {"_id": i.document_id, "version": i.version, "indexedVersion": {"$ne": i.version}},
                    "u": [{"$set": {"vectorId": {"$toString": "$_id"}, "indexedVersion": "$version"}}],
                    "multi": false,
                }
            })
            .collect();
        for chunk in statements.chunks(1000) {
            let reply = self
                .db
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
