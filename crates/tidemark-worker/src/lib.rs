//! tidemark-worker: the daemon that keeps Chroma consistent with the MongoDB outbox.
//!
//! It tails the outbox's change stream (resuming from the token in `sync_state`) only to lower
//! latency; the outbox itself is the source of truth, swept at start, periodically and after
//! every stream error. Entries are claimed with leases, and each document with a short-lived
//! lock in the worker-private `worker_locks` collection, so several workers can run at once
//! without two of them writing the same document concurrently. A claimed batch is coalesced to
//! the newest entry per document, the current documents are read in one query, unchanged
//! vectors are skipped (same `contentHash` and model), metadata-only changes become metadata
//! updates, the rest is embedded and upserted, and the entries are marked done. Failures retry
//! with exponential backoff and jitter via `nextAttemptAt`, or end `dead` with `lastError`.
//!
//! ```no_run
//! # async fn demo(cfg: tidemark_core::Config, store: tidemark_store::Store,
//! #   chroma: tidemark_chroma::ChromaClient, embedder: tidemark_embed::SharedEmbedder)
//! #   -> Result<(), tidemark_worker::WorkerError> {
//! let registry = prometheus::Registry::new();
//! let worker = tidemark_worker::Worker::new(cfg, store, chroma, embedder, &registry)?;
//! worker.run(async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```

mod backoff;
mod claim;
mod lease;
mod metadata;
mod metrics;
mod outcome;
mod process;
mod server;
mod stream;
mod worker;

pub use backoff::{retry_delay, retry_delay_now};
pub use claim::COLL_LOCKS;
pub use metadata::{flatten_metadata, metadata_equal, vector_metadata, SYSTEM_KEYS};
pub use metrics::{render as render_metrics, Metrics};
pub use server::serve_http;
pub use worker::{BatchReport, Worker, WorkerStats};

/// Errors that stop a worker call (per-entry failures are recorded on the entries instead).
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("mongodb: {0}")]
    Mongo(#[from] mongodb::error::Error),
    /// A write the server answered with per-statement errors.
    #[error("mongodb write: {0}")]
    WriteErrors(String),
    #[error("store: {0}")]
    Store(#[from] tidemark_store::StoreError),
    #[error("chroma: {0}")]
    Chroma(#[from] tidemark_chroma::ChromaError),
    #[error("embedder: {0}")]
    Embed(#[from] tidemark_embed::EmbedError),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("http server on {addr}: {reason}")]
    Http { addr: String, reason: String },
}
