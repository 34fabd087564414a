//! tidemark-worker: the daemon that keeps the vector index consistent with the MongoDB outbox.
//!
//! It tails the outbox's change stream (resuming from the position in `sync_state`) only to
//! lower latency; the outbox itself is the source of truth, swept at start, periodically and
//! after every stream error. Work flows through a pipeline of small stages:
//!
//! ```text
//! claim (claim.rs, locks.rs) -> plan (plan.rs, pure) -> embed + write (execute.rs, VectorIndex)
//!       -> record (record.rs)            all of one batch: batch.rs; claims kept alive: lease.rs
//! ```
//!
//! - `worker`: the [`Worker`] handle; builds the pieces and hands each stage what it needs
//! - `run`: the long-running loop, batches in flight, the bounded graceful stop ([`StopReport`])
//! - `claim`, `locks`, `lease`: due entries, per-document locks, lease renewal during a batch
//! - `plan`: pure decisions — coalesce, superseded, delete, unchanged, metadata-only, embed
//! - `execute`: the embedder and the [`tidemark_core::VectorIndex`] calls, with isolation
//! - `record`: documents marked indexed, then entries done / retried / dead / released
//! - `stream`, `positions`: the change stream and its saved position
//! - `lanes`: the further live indexes (builds, retired ones); `handoff`: a live write's part
//!   for a building index, handed to the build's queue; `usage`: tokens per index/day
//! - `metrics`, `server`, `backoff`, `report`: Prometheus, `/metrics` `/healthz` `/readyz`,
//!   retry delays, the report types
//!
//! A new vector store is one `VectorIndex` implementation (see `tidemark_chroma::ChromaIndex`);
//! a new embedder one `tidemark_embed::Embedder`; chunking is one more way for `plan::Shape` to
//! turn a document into pieces.
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
mod batch;
mod claim;
mod execute;
mod gauges;
mod handoff;
mod lanes;
mod lease;
mod linger;
mod locks;
mod metrics;
mod plan;
mod positions;
mod record;
mod report;
mod run;
mod server;
mod slots;
mod stream;
mod usage;
mod window;
mod worker;

pub use backoff::{retry_delay, retry_delay_now};
pub use locks::COLL_LOCKS;
pub use metrics::{render as render_metrics, Metrics};
pub use report::{BatchReport, WorkerStats};
pub use run::StopReport;
pub use server::serve_http;
pub use tidemark_core::vector_meta::{
    flatten_metadata, metadata_equal, vector_metadata, SYSTEM_KEYS,
};
pub use worker::Worker;

/// Errors that stop a worker call (per-entry failures are recorded on the entries instead).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkerError {
    #[error("{}", tidemark_store::mongo_text::describe(.0))]
    Mongo(#[from] mongodb::error::Error),
    /// A write the server answered with per-statement errors.
    #[error("mongodb write: {0}")]
    WriteErrors(String),
    #[error("store: {0}")]
    Store(#[from] tidemark_store::StoreError),
    #[error("vector index: {0}")]
    Index(#[from] tidemark_core::IndexError),
    #[error("chroma: {0}")]
    Chroma(#[from] tidemark_chroma::ChromaError),
    #[error("embedder: {0}")]
    Embed(#[from] tidemark_embed::EmbedError),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("{0}")]
    Config(#[from] tidemark_core::ConfigError),
    /// The worker will not write (e.g. its configuration disagrees with the active index).
    #[error("{0}")]
    Refused(String),
    #[error("http server on {addr}: {reason}")]
    Http { addr: String, reason: String },
}
