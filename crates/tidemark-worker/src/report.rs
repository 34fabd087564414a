//! What the worker reports: [`BatchReport`] (what a batch or a drain did, by outcome) and
//! [`WorkerStats`] (counters of this process's work), both plain values for tests and benches.

use tidemark_core::OutboxResult;

/// What one batch (or a drain) did, by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchReport {
    /// Entries claimed and handled.
    pub claimed: usize,
    /// Due entries seen but left alone because another worker holds their document.
    pub blocked: usize,
    pub indexed: usize,
    pub unchanged: usize,
    pub superseded: usize,
    pub deleted: usize,
    pub dead: usize,
    pub retried: usize,
    /// Entries handed back without an attempt (lease about to expire, shutdown).
    pub released: usize,
    /// Entries inserted to carry live writes on to a building index (see `handoff`).
    pub handed_off: usize,
}

impl BatchReport {
    pub(crate) fn add(&mut self, o: &BatchReport) {
        self.claimed += o.claimed;
        self.blocked += o.blocked;
        self.indexed += o.indexed;
        self.unchanged += o.unchanged;
        self.superseded += o.superseded;
        self.deleted += o.deleted;
        self.dead += o.dead;
        self.retried += o.retried;
        self.released += o.released;
        self.handed_off += o.handed_off;
    }

    /// Counts `n` entries done with `result`.
    pub(crate) fn count(&mut self, result: OutboxResult, n: usize) {
        match result {
            OutboxResult::Indexed => self.indexed += n,
            OutboxResult::Unchanged => self.unchanged += n,
            OutboxResult::Superseded => self.superseded += n,
            OutboxResult::Deleted => self.deleted += n,
        }
    }
}

/// Counters of work done by this worker process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerStats {
    /// Texts sent to the embedder (a metadata-only change adds nothing here).
    pub texts_embedded: u64,
    /// Records upserted into the vector index.
    pub vectors_upserted: u64,
    /// Records whose metadata alone was updated.
    pub metadata_updates: u64,
    pub batches: u64,
    /// Most vector writes this worker had in flight at once (bounded by
    /// `worker.vector_writes`).
    pub max_vector_writes_in_flight: u64,
}
