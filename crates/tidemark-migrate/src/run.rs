//! `migrate run`: the checked mapping applied. Per collection, the legacy records are read in
//! `_id` order from the collection's checkpoint on; the winner of each id (see [`crate::dedupe`])
//! is compared with the stored tidemark document of its contentId (type, content hash,
//! metadata, timestamp) and only new or changed ones are written, through `Store::put_many`
//! (document and outbox entry in one transaction), one batch per transaction. After each
//! commit the written documents are recorded in the ledger, legacy vectors are copied where
//! allowed, and the checkpoint moves on. A killed run continues from its checkpoint, and
//! because unchanged records are skipped, no record is ever written twice; a second complete
//! run writes nothing; a later run migrates exactly what was added or changed since (catch-up).
//!
//! Reading and writing run side by side, and two batches are in flight at once: the next
//! batch's lookup and transaction overlap the previous one's ledger rows and vector copy. The
//! checkpoint still moves in order, only past batches that are complete, every 8 batches or
//! every second, so a killed run redoes at most the batches after it (found unchanged, their
//! ledger rows ensured).
//!
//! Vector reuse copies a legacy embedding into tidemark's collection (vector id = the new
//! document's `_id`, the worker's own metadata) only when the legacy document text equals the
//! record's text; the worker then finds the vector current and does not embed it.

use crate::ledger::{Ledger, Row};
use crate::mapping::{CollectionMapping, Mapping};
use crate::record::{normalise, Candidate, Context};
use crate::source::{Scan, Source};
use crate::state::{Checkpoint, State, KIND_CHECKPOINT, KIND_RUN, STATE_COMPLETE, STATE_RUNNING};
use crate::{plan, MigrateError, Progress, Target};
use bson::{doc, oid::ObjectId, DateTime, Document};
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use tidemark_chroma::VectorRecord;
use tidemark_core::{content_hash, DocumentRecord};
use tidemark_store::PutOutcome;

/// How to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Read and compare only; write nothing anywhere.
    pub dry_run: bool,
    /// Records per `put_many` call.
    pub batch_size: usize,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            dry_run: false,
            batch_size: 500,
        }
    }
}

/// What a run did with one collection.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CollectionRun {
    pub collection: String,
    pub records: u64,
    /// Ids to migrate (winners).
    pub migrate: u64,
    pub merged: u64,
    pub skipped: BTreeMap<String, u64>,
    /// Documents written for the first time.
    pub created: u64,
    /// Documents written as a new version (changed since the last run).
    pub updated: u64,
    /// Records whose document is already current (not written).
    pub unchanged: u64,
    /// Records whose contentId holds a document this migration did not write (an application
    /// wrote it): left alone, for a person to decide.
    pub conflicts: u64,
    pub vectors_reused: u64,
    /// Written documents the worker will embed.
    pub vectors_to_embed: u64,
    /// Continued from a checkpoint of an interrupted run.
    pub resumed: bool,
}

/// The JSON audit report of a run.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub migration: String,
    pub run_id: String,
    pub dry_run: bool,
    pub started_at: String,
    pub elapsed_secs: f64,
    pub collections: Vec<CollectionRun>,
    pub totals: CollectionRun,
}

impl RunReport {
    /// Text for a terminal.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "migration `{}` run {}{} in {:.1}s\n",
            self.migration,
            self.run_id,
            if self.dry_run {
                " (dry run: nothing written)"
            } else {
                ""
            },
            self.elapsed_secs
        );
        for c in self.collections.iter().chain(std::iter::once(&self.totals)) {
            let skips: u64 = c.skipped.values().sum();
            s.push_str(&format!(
                "  {:<28} records {:>6}  created {:>6}  updated {:>5}  unchanged {:>6}  conflicts {:>3}  merged {:>4}  skipped {:>4}  vectors reused {:>5}, to embed {:>5}{}\n",
                c.collection, c.records, c.created, c.updated, c.unchanged, c.conflicts, c.merged, skips,
                c.vectors_reused, c.vectors_to_embed, if c.resumed { "  (resumed)" } else { "" }
            ));
        }
        s
    }
}

fn add(total: &mut CollectionRun, c: &CollectionRun) {
    total.records += c.records;
    total.migrate += c.migrate;
    total.merged += c.merged;
    for (k, v) in &c.skipped {
        *total.skipped.entry(k.clone()).or_insert(0) += v;
    }
    total.created += c.created;
    total.updated += c.updated;
    total.unchanged += c.unchanged;
    total.conflicts += c.conflicts;
    total.vectors_reused += c.vectors_reused;
    total.vectors_to_embed += c.vectors_to_embed;
}

/// Batches written at once within one collection (see the module comment).
const IN_FLIGHT: usize = 2;

/// A batch cut by the reader: its records and the last legacy `_id` read when it was cut.
type Cut = (Vec<Candidate>, Option<ObjectId>);

/// The checkpoint moves after this many settled batches, or after [`CHECKPOINT_EVERY`],
/// whichever comes first: a killed run redoes at most that much (found unchanged), and a fast
/// run does not pay a round trip per batch.
const CHECKPOINT_BATCHES: u32 = 8;
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// When the next checkpoint is due (see [`CHECKPOINT_BATCHES`]).
struct Pace {
    settled: u32,
    saved: std::time::Instant,
}

impl Pace {
    fn new() -> Pace {
        Pace {
            settled: 0,
            saved: std::time::Instant::now(),
        }
    }

    /// Counts one settled batch; true when the checkpoint is due (and counts from now).
    fn due(&mut self) -> bool {
        self.settled += 1;
        if self.settled < CHECKPOINT_BATCHES && self.saved.elapsed() < CHECKPOINT_EVERY {
            return false;
        }
        self.settled = 0;
        self.saved = std::time::Instant::now();
        true
    }
}

/// What writing one batch did: its counts (only created/updated/unchanged/conflicts and the
/// vector counts are set), and the last legacy `_id` read when the batch was cut (where its
/// checkpoint points).
#[derive(Debug, Default)]
struct Flushed {
    counts: CollectionRun,
    last: Option<ObjectId>,
}

/// Runs the migration described by `mapping`.
pub async fn run(
    mapping: &Mapping,
    source: &Source,
    target: &Target,
    opts: &RunOptions,
    progress: &dyn Progress,
) -> Result<RunReport, MigrateError> {
    if opts.batch_size == 0 {
        return Err(MigrateError::Invalid(
            "batch size must be at least 1".into(),
        ));
    }
    let started = DateTime::now();
    let clock = std::time::Instant::now();
    let scans = plan::check(mapping, source, &target.model, target.store.limits()).await?;
    if !opts.dry_run {
        target.store.ensure_schema().await?;
        target.ledger().prepare().await?;
    }
    let run_id = ObjectId::new().to_hex();
    let mut collections = Vec::new();
    let mut totals = CollectionRun {
        collection: "total".into(),
        ..Default::default()
    };
    for scan in &scans {
        let m = &mapping.collections[&scan.collection];
        let mut pass = Pass::new(mapping, m, scan, source, target, opts, &run_id).await?;
        progress.phase(&scan.collection, Some(scan.dedup.winners.len() as u64));
        pass.go(progress).await?;
        add(&mut totals, &pass.report);
        collections.push(pass.report);
    }
    let report = RunReport {
        migration: mapping.migration.id.clone(),
        run_id: run_id.clone(),
        dry_run: opts.dry_run,
        started_at: started.try_to_rfc3339_string().unwrap_or_default(),
        elapsed_secs: clock.elapsed().as_secs_f64(),
        collections,
        totals,
    };
    if !opts.dry_run {
        target
            .state()
            .save_report(KIND_RUN, &run_id, &mapping.migration.id, &report)
            .await?;
    }
    tracing::info!(migration = %report.migration, run = %run_id, created = report.totals.created,
        updated = report.totals.updated, unchanged = report.totals.unchanged, "migrate run finished");
    Ok(report)
}

/// The pass over one collection.
struct Pass<'a> {
    migration: &'a str,
    name: &'a str,
    m: &'a CollectionMapping,
    scan: &'a Scan,
    source: &'a Source,
    target: &'a Target,
    opts: &'a RunOptions,
    run_id: &'a str,
    state: State,
    ledger: Ledger,
    /// The legacy Chroma collection's id, when vectors are reused.
    legacy_vectors: Option<String>,
    /// tidemark's collection id (created on first copy).
    target_vectors: tokio::sync::OnceCell<String>,
    report: CollectionRun,
}

impl<'a> Pass<'a> {
    async fn new(
        mapping: &'a Mapping,
        m: &'a CollectionMapping,
        scan: &'a Scan,
        source: &'a Source,
        target: &'a Target,
        opts: &'a RunOptions,
        run_id: &'a str,
    ) -> Result<Pass<'a>, MigrateError> {
        let legacy_vectors = match (
            m.reuse_vectors && !m.skip,
            &source.chroma,
            &m.chroma_collection,
        ) {
            (true, Some(c), Some(name)) => c.get_collection(name).await?.map(|c| c.id),
            _ => None,
        };
        Ok(Pass {
            migration: &mapping.migration.id,
            name: &scan.collection,
            m,
            scan,
            source,
            target,
            opts,
            run_id,
            state: target.state(),
            ledger: target.ledger(),
            legacy_vectors,
            target_vectors: tokio::sync::OnceCell::new(),
            report: CollectionRun {
                collection: scan.collection.clone(),
                records: scan.records,
                migrate: scan.dedup.winners.len() as u64,
                merged: scan.dedup.merged.len() as u64,
                skipped: scan.skip_counts(),
                ..Default::default()
            },
        })
    }

    fn checkpoint(&self, last_id: Option<ObjectId>, state: &str) -> Checkpoint {
        Checkpoint {
            key: Checkpoint::key(self.migration, self.name),
            kind: KIND_CHECKPOINT.into(),
            migration: self.migration.into(),
            collection: self.name.into(),
            run_id: self.run_id.into(),
            last_id,
            state: state.into(),
            updated_at: DateTime::now(),
        }
    }

    /// Where to start: after the checkpoint of an interrupted run, else from the beginning.
    async fn start(&mut self) -> Result<Option<ObjectId>, MigrateError> {
        if self.opts.dry_run {
            return Ok(None);
        }
        let cp = self.state.checkpoint(self.migration, self.name).await?;
        let from = cp
            .filter(|c| c.state == STATE_RUNNING)
            .and_then(|c| c.last_id);
        self.report.resumed = from.is_some();
        self.state
            .save_checkpoint(&self.checkpoint(from, STATE_RUNNING))
            .await?;
        Ok(from)
    }

    async fn go(&mut self, progress: &dyn Progress) -> Result<(), MigrateError> {
        let from = self.start().await?;
        let (done, last) = self.write_all(from, progress).await?;
        add(&mut self.report, &done);
        if !self.opts.dry_run {
            self.state
                .save_checkpoint(&self.checkpoint(last, STATE_COMPLETE))
                .await?;
        }
        Ok(())
    }

    /// Reads the collection from `from` on and writes it in batches, [`IN_FLIGHT`] at once,
    /// moving the checkpoint in order; returns the counts and the last legacy `_id` read. The
    /// reading and the writing are two futures joined, so neither waits on the other's round
    /// trips.
    async fn write_all(
        &self,
        from: Option<ObjectId>,
        progress: &dyn Progress,
    ) -> Result<(CollectionRun, Option<ObjectId>), MigrateError> {
        let (tx, rx) = tokio::sync::mpsc::channel(IN_FLIGHT);
        let (last, total) = futures::try_join!(
            self.read_batches(from, tx, progress),
            self.write_batches(rx)
        )?;
        Ok((total, last))
    }

    /// Reads the legacy records in `_id` order and sends the winners in batches, each with the
    /// last `_id` read when it was cut; returns the last `_id` read.
    async fn read_batches(
        &self,
        from: Option<ObjectId>,
        tx: tokio::sync::mpsc::Sender<Cut>,
        progress: &dyn Progress,
    ) -> Result<Option<ObjectId>, MigrateError> {
        let filter = match from {
            Some(id) => doc! {"_id": {"$gt": id}},
            None => doc! {},
        };
        let limits = self.target.store.limits().clone();
        let cx = Context {
            collection: self.name,
            migration: self.migration,
            mapping: self.m,
            limits: &limits,
        };
        let mut cursor = self
            .source
            .db
            .collection::<Document>(self.name)
            .find(filter)
            .sort(doc! {"_id": 1})
            .batch_size(1000)
            .await?;
        let mut batch = Vec::new();
        let mut last = None;
        while let Some(d) = cursor.try_next().await? {
            last = d.get_object_id("_id").ok().or(last);
            if let Ok(c) = normalise(&d, &cx) {
                if self.scan.dedup.is_winner(&c.id, &c.oid) {
                    batch.push(c);
                }
            }
            if batch.len() >= self.opts.batch_size {
                progress.inc(batch.len() as u64);
                let cut = (std::mem::take(&mut batch), last);
                if tx.send(cut).await.is_err() {
                    return Ok(last); // the writer stopped; its error is the one returned
                }
            }
        }
        progress.inc(batch.len() as u64);
        if !batch.is_empty() {
            // An error here means the writer stopped; its error is the one returned.
            let _ = tx.send((batch, last)).await;
        }
        Ok(last)
    }

    /// Writes the batches as they come, [`IN_FLIGHT`] at once, and settles them in order.
    async fn write_batches(
        &self,
        rx: tokio::sync::mpsc::Receiver<Cut>,
    ) -> Result<CollectionRun, MigrateError> {
        let batches =
            futures::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|cut| (cut, rx)) },
            );
        let flushed = batches
            .map(|(batch, last)| self.flush(batch, last))
            .buffered(IN_FLIGHT);
        futures::pin_mut!(flushed);
        let mut total = CollectionRun::default();
        let mut pace = Pace::new();
        while let Some(f) = flushed.try_next().await? {
            self.settle(f, &mut total, &mut pace).await?;
        }
        Ok(total)
    }

    /// A batch is complete, and so is every batch before it: its counts are added and, when
    /// [`Pace`] says so, the checkpoint moves past it.
    async fn settle(
        &self,
        f: Flushed,
        total: &mut CollectionRun,
        pace: &mut Pace,
    ) -> Result<(), MigrateError> {
        if !self.opts.dry_run && pace.due() {
            self.state
                .save_checkpoint(&self.checkpoint(f.last, STATE_RUNNING))
                .await?;
        }
        add(total, &f.counts);
        Ok(())
    }

    /// The stored documents of the batch's contentIds.
    async fn stored(
        &self,
        batch: &[Candidate],
    ) -> Result<HashMap<String, DocumentRecord>, MigrateError> {
        let ids: Vec<&str> = batch.iter().map(|c| c.doc.content_id.as_str()).collect();
        let docs: Vec<DocumentRecord> = self
            .target
            .store
            .documents()
            .find(doc! {"contentId": {"$in": ids}})
            .await?
            .try_collect()
            .await?;
        Ok(docs
            .into_iter()
            .map(|d| (d.content_id.clone(), d))
            .collect())
    }

    /// Writes one batch (not empty): new and changed records through `put_many`, then their
    /// ledger rows and vector copies. The checkpoint is left to [`Pass::settle`], in order.
    async fn flush(
        &self,
        batch: Vec<Candidate>,
        last: Option<ObjectId>,
    ) -> Result<Flushed, MigrateError> {
        let mut f = Flushed {
            last,
            ..Flushed::default()
        };
        let stored = self.stored(&batch).await?;
        let mut changed = Vec::new();
        let mut current = Vec::new();
        for c in batch {
            match stored.get(&c.doc.content_id) {
                Some(d) if same(d, &c) => current.push((c, d.clone())),
                Some(d) if !self.is_ours(d) => {
                    f.counts.conflicts += 1;
                    tracing::warn!(content_id = %d.content_id, "document not written by this migration: left alone");
                }
                Some(_) => {
                    f.counts.updated += 1;
                    changed.push(c);
                }
                None => {
                    f.counts.created += 1;
                    changed.push(c);
                }
            }
        }
        f.counts.unchanged += current.len() as u64;
        if self.opts.dry_run {
            let reusable = self.reusable(&changed).await?;
            f.counts.vectors_reused += reusable as u64;
            f.counts.vectors_to_embed += (changed.len() - reusable) as u64;
            return Ok(f);
        }
        let docs = changed.iter().map(|c| c.doc.clone()).collect();
        let outcomes = put_many_patiently(&self.target.store, docs).await?;
        let written: Vec<(Candidate, DocumentRecord)> = changed
            .into_iter()
            .zip(outcomes)
            .map(|(c, o)| {
                let d = record_of(&c, &o);
                (c, d)
            })
            .collect();
        let (created, replaced): (Vec<_>, Vec<_>) = written
            .iter()
            .partition(|(c, _)| !stored.contains_key(&c.doc.content_id));
        self.ledger
            .record(
                self.migration,
                self.name,
                created.iter().map(|(_, d)| row(d)).collect(),
                replaced.iter().map(|(_, d)| row(d)).collect(),
            )
            .await?;
        let ours: Vec<&(Candidate, DocumentRecord)> =
            current.iter().filter(|(_, d)| self.is_ours(d)).collect();
        self.ledger
            .ensure(
                self.migration,
                self.name,
                ours.iter().map(|(_, d)| row(d)).collect(),
            )
            .await?;
        let reused = self.copy_vectors(&written).await?;
        f.counts.vectors_reused += reused + self.repair_vectors(&ours).await?;
        f.counts.vectors_to_embed += written.len() as u64 - reused;
        Ok(f)
    }

    fn is_ours(&self, d: &DocumentRecord) -> bool {
        d.metadata
            .get_document(crate::record::LEGACY_KEY)
            .ok()
            .and_then(|l| l.get_str("migration").ok())
            == Some(self.migration)
    }
}

/// The ledger row of a document written.
fn row(d: &DocumentRecord) -> Row {
    Row {
        document_id: d.id,
        content_id: d.content_id.clone(),
        version: d.version,
    }
}

#[path = "run_vectors.rs"]
mod vectors;

/// How long a batch keeps retrying write conflicts (a killed run's open transaction holds its
/// documents until the server aborts it: `transactionLifetimeLimitSeconds`, 60 s by default).
const CONFLICT_PATIENCE: std::time::Duration = std::time::Duration::from_secs(150);

/// `put_many`, retried while it gives up on write conflicts with nothing written.
async fn put_many_patiently(
    store: &tidemark_store::Store,
    docs: Vec<tidemark_store::NewDocument>,
) -> Result<Vec<PutOutcome>, MigrateError> {
    let start = std::time::Instant::now();
    loop {
        match store.put_many(docs.clone()).await {
            Err(tidemark_store::StoreError::RetriesExhausted { last, .. })
                if start.elapsed() < CONFLICT_PATIENCE =>
            {
                tracing::warn!(error = %last, "batch keeps conflicting (a transaction of an interrupted run may still be open on the server); retrying");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
            other => return Ok(other?),
        }
    }
}

/// The stored document is what this record would write.
fn same(d: &DocumentRecord, c: &Candidate) -> bool {
    let meta = match bson::to_bson(&c.doc.metadata) {
        Ok(bson::Bson::Document(m)) => m,
        _ => return false,
    };
    d.doc_type == c.doc.doc_type
        && d.content_hash == content_hash(&c.doc.content)
        && d.timestamp == c.time
        && d.metadata == meta
}

/// The document as `put_many` stored it.
fn record_of(c: &Candidate, o: &PutOutcome) -> DocumentRecord {
    let metadata = match bson::to_bson(&c.doc.metadata) {
        Ok(bson::Bson::Document(m)) => m,
        _ => Document::new(),
    };
    DocumentRecord {
        id: o.document_id,
        content_id: o.content_id.clone(),
        doc_type: c.doc.doc_type.clone(),
        content: c.doc.content.clone(),
        metadata,
        timestamp: c.time,
        version: o.version,
        content_hash: o.content_hash.clone(),
        vector_id: None,
        indexed_version: None,
    }
}

/// A vector copied from the legacy store.
fn vector(d: &DocumentRecord, embedding: Vec<f32>, model: &str) -> VectorRecord {
    VectorRecord {
        id: tidemark_core::vector_id(&d.id),
        embedding,
        metadata: tidemark_worker::vector_metadata(d, model),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checkpoint_is_due_every_eighth_batch() {
        let mut pace = Pace::new();
        let due: Vec<bool> = (0..17).map(|_| pace.due()).collect();
        let at: Vec<usize> = due
            .iter()
            .enumerate()
            .filter(|(_, d)| **d)
            .map(|(i, _)| i + 1)
            .collect();
        assert_eq!(at, vec![8, 16]);
    }

    #[test]
    fn the_checkpoint_is_due_after_a_second_whatever_the_count() {
        let mut pace = Pace::new();
        assert!(!pace.due());
        pace.saved -= CHECKPOINT_EVERY;
        assert!(pace.due(), "a second after the last save");
        assert!(!pace.due(), "counting starts again after a save");
    }
}
