//! Claiming work: find due pending entries, lock their documents, lease their entries.
//!
//! A worker first finds due pending entries (`nextAttemptAt <= now`, no live lease), then takes a
//! lock per document ([`DocLocks`]), then leases every due pending entry of the documents it
//! locked. Documents locked by another worker are skipped ("blocked"), so no two workers process
//! entries of the same document at the same time, even when a new entry of that document
//! arrives mid-batch. An entry that cannot even be parsed ends dead at once. The due entries
//! are asked for within the worker's [`ClaimWindow`], so a claim costs what the batch needs.
//!
//! Among the candidates (a batch and a half, earliest first: [`candidates_for`]), the entries
//! applications wrote come before an index build's (those with `indexes`): a build takes what
//! live writes leave, so it does not delay them by the batches it has queued. Build entries are
//! still taken earliest first whenever the live ones do not fill the batch, unless live writes
//! queue up behind the worker ([`live_behind`]): then a claim takes live entries only.

use crate::locks::DocLocks;
use crate::metrics::Metrics;
use crate::window::{After, ClaimWindow};
use bson::{oid::ObjectId, DateTime, Document};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tidemark_core::OutboxEntry;
use tidemark_store::outbox::{later, Outbox};

/// How many queries one claim makes at most (pages past entries others hold, and widenings).
const MAX_QUERIES: usize = 12;

/// How many due entries a claim of `limit` documents asks for: a batch and a half. The half
/// covers what an index build keeps queued (half a batch by default, `--max-pending`), so the
/// live entries behind it are still among the candidates, and a few documents with several
/// entries. Two batches, as before, made the claim queries of a 20,000-entry drain return
/// 77,617 entries instead of 59,763 (the server's profiler, one run each).
pub(crate) fn candidates_for(limit: usize) -> usize {
    limit + limit.div_ceil(2)
}

/// How long a live entry may have been due when claimed before the worker counts as behind.
pub(crate) const BEHIND_AFTER: Duration = Duration::from_millis(500);

/// Whether the live entries among `cands` (those without `indexes`) queue up behind the
/// worker: the earliest had been due over [`BEHIND_AFTER`] at `now` (milliseconds). Then a
/// claim takes live entries only, and an index build's (its own, and live writes' parts
/// handed on to it) wait until live writes leave the vector store room again; and the batch
/// hands its live entries' parts for building indexes on instead of writing them (see
/// `handoff`): the vector store has no room for two writes per change then.
pub(crate) fn live_behind(cands: &[Document], now: i64) -> bool {
    let behind = BEHIND_AFTER.as_millis() as i64;
    cands
        .iter()
        .filter(|c| !c.contains_key("indexes"))
        .filter_map(|c| c.get_datetime("nextAttemptAt").ok())
        .map(|t| t.timestamp_millis())
        .min()
        .is_some_and(|due| now - due > behind)
}

/// A claimed batch: its entries, the documents locked for it, and what was left to others.
pub(crate) struct Claimed {
    pub entries: Vec<OutboxEntry>,
    /// Documents this worker locked (to release after the batch).
    pub docs: Vec<ObjectId>,
    /// Due entries skipped because their document is locked by another worker.
    pub blocked: usize,
    /// The live entries were behind when claimed ([`live_behind`]).
    pub behind: bool,
    pub at: Instant,
}

/// What claiming needs: the outbox, this worker's locks, the lease length.
pub(crate) struct Claimer<'a> {
    pub outbox: &'a Outbox,
    pub locks: &'a DocLocks,
    pub owner: &'a str,
    pub window: &'a Mutex<ClaimWindow>,
    pub lease: Duration,
    pub metrics: &'a Metrics,
}

impl Claimer<'_> {
    /// Locks up to `limit` documents with due entries and leases their entries.
    pub async fn claim(&self, limit: usize) -> mongodb::error::Result<Claimed> {
        let at = Instant::now();
        let now = DateTime::now();
        let until = later(now, self.lease);
        let mut cands = self.candidates(now, candidates_for(limit)).await?;
        // Live entries first (a stable sort: each kind stays earliest first).
        cands.sort_by_key(|c| c.contains_key("indexes"));
        let live_only = live_behind(&cands, now.timestamp_millis());
        let mut wanted: Vec<ObjectId> = Vec::new();
        for c in &cands {
            if live_only && c.contains_key("indexes") {
                continue;
            }
            if let Ok(id) = c.get_object_id("documentId") {
                if !wanted.contains(&id) && wanted.len() < limit {
                    wanted.push(id);
                }
            } else if let Ok(id) = c.get_object_id("_id") {
                self.invalid(id, "invalid outbox entry: documentId is not an ObjectId")
                    .await?;
            }
        }
        let docs = self.locks.lock(&wanted, now, until).await?;
        let blocked = cands
            .iter()
            .filter(|c| {
                c.get_object_id("documentId")
                    .is_ok_and(|d| wanted.contains(&d) && !docs.contains(&d))
            })
            .count();
        self.metrics.claim_blocked_total.inc_by(blocked as u64);
        let entries = if docs.is_empty() {
            Vec::new()
        } else {
            let raw = self
                .outbox
                .lease_documents(&docs, self.owner, now, until)
                .await?;
            self.parse(raw).await?
        };
        Ok(Claimed {
            entries,
            docs,
            blocked,
            behind: live_only,
            at,
        })
    }

    /// Up to `want` due entries not leased by a live worker, earliest first: one forward scan
    /// of `nextAttemptAt` in pages, within the claim window, which widens when its range holds
    /// too few (entries other batches hold are paged past, not counted); at most
    /// [`MAX_QUERIES`] queries.
    async fn candidates(
        &self,
        now: DateTime,
        want: usize,
    ) -> mongodb::error::Result<Vec<Document>> {
        let now_ms = now.timestamp_millis();
        let window = || self.window.lock().expect("claim window");
        let mut upper = window().upper(now_ms);
        let mut after = None;
        let (mut rows, mut times) = (Vec::new(), Vec::new());
        for _ in 0..MAX_QUERIES {
            let page = self
                .outbox
                .due_page(now, DateTime::from_millis(upper), after, want)
                .await?;
            let more_in_range = page.found == want;
            after = page.last.or(after);
            rows.extend(page.rows);
            times.extend(page.times);
            if rows.len() < want && more_in_range {
                continue;
            }
            let next = window().observe(now_ms, upper, &times, want);
            match next {
                After::Take => return Ok(rows),
                After::Widen => {
                    upper = window().upper(now_ms);
                    self.metrics.claim_widenings_total.inc();
                }
            }
        }
        Ok(rows)
    }

    /// Parses leased entries; one that violates the contract ends dead.
    async fn parse(&self, raw: Vec<Document>) -> mongodb::error::Result<Vec<OutboxEntry>> {
        let mut entries = Vec::with_capacity(raw.len());
        for d in raw {
            let id = d.get_object_id("_id").ok();
            match bson::from_document::<OutboxEntry>(d) {
                Ok(e) => entries.push(e),
                Err(err) => {
                    if let Some(id) = id {
                        self.invalid(id, &format!("invalid outbox entry: {err}"))
                            .await?;
                    }
                }
            }
        }
        Ok(entries)
    }

    async fn invalid(&self, id: ObjectId, error: &str) -> mongodb::error::Result<()> {
        tracing::error!(entry = %id, error, "outbox entry violates the contract");
        self.outbox.mark_invalid(id, error).await?;
        self.metrics
            .entries_processed_total
            .with_label_values(&["dead"])
            .inc();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{candidates_for, live_behind};
    use bson::{doc, DateTime};

    #[test]
    fn live_entries_due_over_half_a_second_make_a_claim_live_only() {
        let at = |ms: i64| DateTime::from_millis(ms);
        let live = |ms| doc! {"nextAttemptAt": at(ms)};
        let build = |ms| doc! {"nextAttemptAt": at(ms), "indexes": ["v2"]};
        let now = 10_000;
        assert!(live_behind(&[live(9_000), build(9_900)], now));
        assert!(!live_behind(&[live(9_600), live(9_900)], now), "due 400 ms");
        assert!(live_behind(&[live(9_900), live(9_400)], now), "due 600 ms");
        assert!(
            !live_behind(&[live(9_700), build(1_000)], now),
            "only live entries count"
        );
        assert!(
            !live_behind(&[build(1_000)], now),
            "no live entry: not behind"
        );
        assert!(!live_behind(&[], now));
    }

    #[test]
    fn a_claim_asks_for_a_batch_and_a_half() {
        assert_eq!(candidates_for(128), 192);
        assert_eq!(candidates_for(1), 2, "one document: one more entry");
        for limit in 1..300 {
            let c = candidates_for(limit);
            assert!(c > limit, "room beyond the batch at {limit}");
            assert!(
                c >= limit + limit / 2,
                "room for a build's default queue (half a batch) at {limit}"
            );
        }
    }
}
