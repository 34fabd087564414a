//! `backfill`: enqueue `upsert` outbox entries for documents, in `_id` order and in batches,
//! resumable after an interruption, each document enqueued at most once per run.
//!
//! A run keeps a checkpoint in `sync_state` under `_id: "backfill:<run>"`: its options, the
//! last document `_id` it has passed, counters, `startedAt`/`updatedAt` and, at the end,
//! `completedAt`. Each batch's outbox entries and the checkpoint advance are written in ONE
//! transaction, and the checkpoint update is conditional on the `lastId` the batch started
//! from, so a crash at any point either wrote both or neither, and two processes running the
//! same run cannot both enqueue a batch. A restart with the same run id continues after the
//! last committed batch. A completed run does nothing again unless `restart` is set (which
//! deletes the checkpoint first). The default run id is derived from the options
//! (`all` or `missing`, plus `-type-<T>`), so re-running the same command resumes.
//!
//! A run covers the documents there were when it started: up to their largest `_id` then,
//! kept in the checkpoint as `untilId`. Later documents were enqueued by their own writes (and
//! reach every index live by then), so a run behind a busy writer still ends. An index build
//! (`for_index`) follows the head instead, a bounded number of passes, so that the workers can
//! leave the live changes ahead of it to it (see `follow` and `tidemark_core::build_cursor`).
//!
//! Selection: all documents (optionally of one `type`), for a full re-embed; or with
//! `missing_only`, documents that have no vector: `indexedVersion` absent or below `version`,
//! or no vector with their id (chunked: no chunk 0) in the Chroma collection of the configured
//! model (checked per batch by id). In `missing_only` mode, documents with a pending outbox entry are skipped:
//! the worker is about to index them anyway.
//! Entries carry the document's version and hash as read inside the transaction.
//! `max_pending` and `max_lag` throttle (see `throttle`): before each batch the run waits while
//! more entries than that are pending (an index build counts its own only) or live entries have
//! waited longer, so a re-embed of millions of documents neither floods the outbox nor delays
//! the applications' changes.

mod commit;
mod select;

use crate::{rfc3339, Ops, OpsError, Progress};
use bson::{doc, oid::ObjectId, Bson, DateTime, Document};
pub(crate) use commit::{commit_batch, Step};
use futures::TryStreamExt;
use select::select;
use serde::Serialize;
use tidemark_core::build_cursor::{checkpoint_id, fields};
use tidemark_core::{COLL_DOCUMENTS, COLL_SYNC_STATE};

pub use tidemark_core::build_cursor::CHECKPOINT_PREFIX;

/// How to backfill.
#[derive(Debug, Clone)]
pub struct BackfillOptions {
    /// Only documents of this `type`.
    pub doc_type: Option<String>,
    /// Only documents without a vector (see the module doc); otherwise all.
    pub missing_only: bool,
    /// Documents read per batch (one transaction per batch).
    pub batch_size: usize,
    /// Stop after this many batches (the run stays resumable).
    pub max_batches: Option<u64>,
    /// Before each batch, wait while more than this many entries are pending, so a large
    /// backfill does not flood the outbox faster than the workers drain it. With
    /// `for_index`, only that index's entries count (the build's own: live writes must not
    /// stop a build, and they wait behind at most this many build entries).
    pub max_pending: Option<u64>,
    /// Run id; defaults to one derived from the options.
    pub run_id: Option<String>,
    /// Forget the checkpoint of this run and start from the beginning.
    pub restart: bool,
    /// Before each batch, wait while the live entries due (those applications wrote) have
    /// waited longer than this, or one done in the last two seconds took longer from commit
    /// to done: the run yields to them.
    pub max_lag: Option<std::time::Duration>,
    /// Entries for this index definition only (an index build: the other live indexes hold
    /// these documents already, so the workers leave them alone there).
    pub for_index: Option<String>,
}

impl Default for BackfillOptions {
    fn default() -> Self {
        BackfillOptions {
            doc_type: None,
            missing_only: false,
            batch_size: 500,
            max_batches: None,
            max_pending: None,
            run_id: None,
            restart: false,
            max_lag: None,
            for_index: None,
        }
    }
}

impl BackfillOptions {
    /// The throttle these options describe.
    pub fn throttle(&self) -> crate::throttle::Throttle {
        crate::throttle::Throttle {
            max_pending: self.max_pending,
            max_lag: self.max_lag,
            index: self.for_index.clone(),
        }
    }

    /// The run id used: the explicit one or `all`/`missing` plus `-type-<T>`.
    pub fn effective_run_id(&self) -> String {
        if let Some(r) = &self.run_id {
            return r.clone();
        }
        let mut s = if self.missing_only { "missing" } else { "all" }.to_string();
        if let Some(t) = &self.doc_type {
            s.push_str("-type-");
            s.push_str(t);
        }
        s
    }
}

/// What a backfill call did.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BackfillReport {
    pub run_id: String,
    /// This call continued an earlier, interrupted call of the run.
    pub resumed: bool,
    /// The run had already completed; nothing was done (use restart).
    pub already_completed: bool,
    /// The run reached the end of the documents.
    pub completed: bool,
    /// Documents read by this call.
    pub scanned: u64,
    /// Entries written by this call.
    pub enqueued: u64,
    /// Batches committed by this call.
    pub batches: u64,
    /// Over the whole run (all calls).
    pub total_scanned: u64,
    pub total_enqueued: u64,
    /// Last document `_id` passed (where a resume continues).
    pub last_id: Option<String>,
    pub started_at: String,
}

fn int(d: &Document, k: &str) -> u64 {
    match d.get(k) {
        Some(Bson::Int64(i)) => *i as u64,
        Some(Bson::Int32(i)) => *i as u64,
        _ => 0,
    }
}

/// Reads or creates the checkpoint; checks that its options match.
async fn load_checkpoint(
    ops: &Ops,
    id: &str,
    opts: &BackfillOptions,
) -> Result<(Document, bool), OpsError> {
    let coll = ops.store.database().collection::<Document>(COLL_SYNC_STATE);
    if opts.restart {
        coll.delete_one(doc! {"_id": id}).await?;
    }
    let type_bson = opts
        .doc_type
        .clone()
        .map(Bson::String)
        .unwrap_or(Bson::Null);
    if let Some(cp) = coll.find_one(doc! {"_id": id}).await? {
        let same_type = cp.get("type").cloned().unwrap_or(Bson::Null) == type_bson;
        let same_mode = cp.get_bool("missingOnly").ok() == Some(opts.missing_only);
        if !(same_type && same_mode) {
            return Err(OpsError::Conflict(format!(
                "backfill run `{}` was started with other options (type {:?}, missingOnly {:?}); \
                 use the same options, another run id, or restart",
                &id[CHECKPOINT_PREFIX.len()..],
                cp.get("type"),
                cp.get_bool("missingOnly").ok()
            )));
        }
        return Ok((cp, true));
    }
    let now = DateTime::now();
    let until = last_document_id(ops, &opts.doc_type).await?;
    let cp = doc! {
        "_id": id,
        "kind": "backfill",
        "type": type_bson,
        "missingOnly": opts.missing_only,
        fields::UNTIL_ID: until.map(Bson::ObjectId).unwrap_or(Bson::Null),
        fields::LAST_ID: Bson::Null,
        // An index build follows the head, so that live changes ahead of it are left to it.
        fields::FOLLOWS: opts.for_index.is_some(),
        "scanned": 0_i64,
        "enqueued": 0_i64,
        "batches": 0_i64,
        "startedAt": now,
        "updatedAt": now,
    };
    match coll.insert_one(cp.clone()).await {
        Ok(_) => Ok((cp, false)),
        Err(e) if is_duplicate(&e) => {
            let cp = coll.find_one(doc! {"_id": id}).await?.ok_or_else(|| {
                OpsError::Conflict("backfill checkpoint vanished while starting".into())
            })?;
            Ok((cp, true))
        }
        Err(e) => Err(e.into()),
    }
}

/// Records that the run reached its end (if its checkpoint is still at `last`).
async fn finish(
    ops: &Ops,
    cp_id: &str,
    last: Option<ObjectId>,
    mut report: BackfillReport,
) -> Result<BackfillReport, OpsError> {
    ops.store
        .database()
        .collection::<Document>(COLL_SYNC_STATE)
        .update_one(
            doc! {"_id": cp_id, fields::LAST_ID: last.map(Bson::ObjectId).unwrap_or(Bson::Null)},
            doc! {"$set": {fields::COMPLETED_AT: DateTime::now(), "updatedAt": DateTime::now()}},
        )
        .await?;
    report.completed = true;
    Ok(report)
}

/// The largest document `_id` (of `doc_type`, if given) now: where a new run stops.
pub(crate) async fn last_document_id(
    ops: &Ops,
    doc_type: &Option<String>,
) -> Result<Option<ObjectId>, OpsError> {
    let last = ops
        .store
        .database()
        .collection::<Document>(COLL_DOCUMENTS)
        .find_one(of_type(doc_type))
        .sort(doc! {"_id": -1})
        .projection(doc! {"_id": 1})
        .await?;
    Ok(last.and_then(|d| d.get_object_id("_id").ok()))
}

/// The documents a run selects from: all, or those of `doc_type`.
pub(crate) fn of_type(doc_type: &Option<String>) -> Document {
    match doc_type {
        Some(t) => doc! {"type": t},
        None => doc! {},
    }
}

/// The documents of `base` after `after` (exclusive) up to `until` (inclusive), by `_id`.
pub(crate) fn in_range(
    base: &Document,
    after: Option<ObjectId>,
    until: Option<ObjectId>,
) -> Document {
    let mut range = doc! {};
    if let Some(a) = after {
        range.insert("$gt", a);
    }
    if let Some(u) = until {
        range.insert("$lte", u);
    }
    let mut filter = base.clone();
    if !range.is_empty() {
        filter.insert("_id", range);
    }
    filter
}

fn is_duplicate(e: &mongodb::error::Error) -> bool {
    tidemark_store::mongo_error::is_duplicate_key(e)
}

/// Runs (or resumes) a backfill; see the module doc.
pub async fn backfill(
    ops: &Ops,
    opts: &BackfillOptions,
    progress: &dyn Progress,
) -> Result<BackfillReport, OpsError> {
    let run = opts.effective_run_id();
    if run.is_empty() {
        return Err(OpsError::Invalid("run id must not be empty".into()));
    }
    let cp_id = checkpoint_id(&run);
    let (cp, resumed) = load_checkpoint(ops, &cp_id, opts).await?;
    let mut report = BackfillReport {
        run_id: run.clone(),
        resumed,
        total_scanned: int(&cp, "scanned"),
        total_enqueued: int(&cp, "enqueued"),
        last_id: cp.get_object_id(fields::LAST_ID).ok().map(|i| i.to_hex()),
        started_at: cp
            .get_datetime("startedAt")
            .map(|t| rfc3339(*t))
            .unwrap_or_default(),
        ..Default::default()
    };
    if cp.contains_key(fields::COMPLETED_AT) {
        report.already_completed = true;
        report.completed = true;
        return Ok(report);
    }
    let Some(mut pos) = Position::of(&cp) else {
        let last = cp.get_object_id(fields::LAST_ID).ok();
        return finish(ops, &cp_id, last, report).await;
    };
    let base = of_type(&opts.doc_type);
    let scan = Scan {
        ops,
        opts,
        exists: ops.index_exists().await?,
        at: crate::follow::Bound {
            cp_id: &cp_id,
            base: &base,
            doc_type: &opts.doc_type,
            batch: opts.batch_size.clamp(1, 5000),
        },
    };
    let docs = ops.store.database().collection::<Document>(COLL_DOCUMENTS);
    let total = docs
        .count_documents(in_range(&base, None, pos.until))
        .await?;
    progress.phase("backfill", Some(total));
    progress.inc(report.total_scanned.min(total));
    let throttle = opts.throttle();
    loop {
        if opts.max_batches.is_some_and(|m| report.batches >= m) {
            break;
        }
        pos.pass_held += throttle.wait(ops).await?;
        let page = scan.page(&pos).await?;
        let Some(page_last) = page.last().and_then(|d| d.get_object_id("_id").ok()) else {
            if pos.follows && !pos.sealed && scan.at.reached(ops, &mut pos, progress).await? {
                continue;
            }
            report = finish(ops, &cp_id, pos.last, report).await?;
            report.enqueued += scan.after_finish(&pos).await?;
            break;
        };
        let n = scan.commit(&pos, &page, page_last).await?;
        pos.last = Some(page_last);
        pos.pass_docs += page.len() as u64;
        report.batches += 1;
        report.scanned += page.len() as u64;
        report.enqueued += n;
        report.total_scanned += page.len() as u64;
        report.total_enqueued += n;
        report.last_id = Some(page_last.to_hex());
        progress.inc(page.len() as u64);
        tracing::debug!(run = %run, enqueued = n, last = %page_last, "backfill batch committed");
    }
    tracing::info!(run = %run, scanned = report.scanned, enqueued = report.enqueued, completed = report.completed, "backfill stopped");
    Ok(report)
}

/// What a run's pages need: the options, whether the index exists (for `missing_only`), and
/// where the run's range ends (`follow`).
struct Scan<'a> {
    ops: &'a Ops,
    opts: &'a BackfillOptions,
    exists: bool,
    at: crate::follow::Bound<'a>,
}

impl Scan<'_> {
    /// The next page of documents after `pos` within its bound.
    async fn page(&self, pos: &Position) -> Result<Vec<Document>, OpsError> {
        let docs = self
            .ops
            .store
            .database()
            .collection::<Document>(COLL_DOCUMENTS);
        Ok(docs
            .find(in_range(self.at.base, pos.last, pos.until))
            .sort(doc! {"_id": 1})
            .limit(self.at.batch as i64)
            .projection(doc! {"version": 1, "indexedVersion": 1})
            .await?
            .try_collect()
            .await?)
    }

    /// Enqueues the page's chosen documents and moves the checkpoint past it; for an index
    /// build, then the documents committed inside its range after it was read (see `follow`).
    async fn commit(
        &self,
        pos: &Position,
        page: &[Document],
        page_last: ObjectId,
    ) -> Result<u64, OpsError> {
        let (ops, for_index) = (self.ops, self.opts.for_index.as_deref());
        let chosen = select(ops, self.exists, page, self.opts.missing_only).await?;
        let step = Step::Move {
            from: pos.last,
            to: page_last,
            scanned: page.len() as u64,
        };
        let n = commit_batch(ops, self.at.cp_id, step, &chosen, for_index).await?;
        if for_index.is_none() {
            return Ok(n);
        }
        let read: Vec<ObjectId> = page
            .iter()
            .filter_map(|d| d.get_object_id("_id").ok())
            .collect();
        let late = self
            .at
            .enqueue_late(ops, pos.last, page_last, &read, for_index);
        Ok(n + late.await?)
    }

    /// For an index build that just completed: the documents committed within its range
    /// after its last page was read (see `follow`).
    async fn after_finish(&self, pos: &Position) -> Result<u64, OpsError> {
        match (self.opts.for_index.as_deref(), pos.until) {
            (Some(ix), Some(until)) => {
                let late = self
                    .at
                    .enqueue_late(self.ops, pos.last, until, &[], Some(ix));
                late.await
            }
            _ => Ok(0),
        }
    }
}

/// Where a run's scan stands: its last `_id`, its bound, and (a build that follows the head,
/// see `follow`) its passes.
pub(crate) struct Position {
    pub last: Option<ObjectId>,
    /// None: a checkpoint written before runs had a bound (scan to the end).
    pub until: Option<ObjectId>,
    pub follows: bool,
    pub sealed: bool,
    pub passes: u32,
    /// Documents this call scanned in the current pass.
    pub pass_docs: u64,
    /// When this call's current pass began, and how long the throttle held it since.
    pub pass_started: std::time::Instant,
    pub pass_held: std::time::Duration,
}

impl Position {
    /// A new pass begins now.
    pub(crate) fn next_pass(&mut self) {
        self.passes += 1;
        self.pass_docs = 0;
        self.pass_started = std::time::Instant::now();
        self.pass_held = std::time::Duration::ZERO;
    }

    /// The position a checkpoint records; None when the run has nothing to scan (there were
    /// no documents when it started, and it does not follow the head).
    fn of(cp: &Document) -> Option<Position> {
        let c = tidemark_core::build_cursor::BuildCursor::from_checkpoint(cp);
        let until = match cp.get(fields::UNTIL_ID) {
            Some(Bson::ObjectId(u)) => Some(*u),
            // No documents when it started: a following run begins at the head.
            Some(Bson::Null) if c.follows => Some(ObjectId::from_bytes([0; 12])),
            Some(Bson::Null) => return None,
            _ => None,
        };
        Some(Position {
            last: c.last,
            until,
            follows: c.follows,
            sealed: c.sealed,
            passes: 0,
            pass_docs: 0,
            pass_started: std::time::Instant::now(),
            pass_held: std::time::Duration::ZERO,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_follow_the_options() {
        let mut o = BackfillOptions::default();
        assert_eq!(o.effective_run_id(), "all");
        o.missing_only = true;
        o.doc_type = Some("faq".into());
        assert_eq!(o.effective_run_id(), "missing-type-faq");
        o.run_id = Some("x".into());
        assert_eq!(o.effective_run_id(), "x");
        assert_eq!(checkpoint_id("x"), "backfill:x");
    }

    #[test]
    fn pages_stay_within_the_type_and_the_bound() {
        let (a, u) = (ObjectId::new(), ObjectId::new());
        let base = of_type(&Some("faq".into()));
        assert_eq!(in_range(&base, None, None), doc! {"type": "faq"});
        assert_eq!(
            in_range(&base, Some(a), Some(u)),
            doc! {"type": "faq", "_id": {"$gt": a, "$lte": u}}
        );
        assert_eq!(
            in_range(&of_type(&None), None, Some(u)),
            doc! {"_id": {"$lte": u}}
        );
    }
}
