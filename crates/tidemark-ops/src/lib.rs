//! tidemark-ops: what an operator runs when something looks off, as a library (the `tidemark`
//! CLI is a thin layer over it, and the tests call it directly).
//!
//! - [`status`]: outbox counts, lag, throughput, leases, resume token age; healthy or not.
//! - [`verify`]: compares documents with the Chroma collection of the configured model and
//!   reports drift by contentId; with a repair mode it enqueues reindex entries (through the
//!   store's transactional path) and deletes orphan vectors.
//! - [`dlq`]: dead letters: list, show, retry (history kept), purge.
//! - [`backfill`]: enqueue entries for documents without vectors (or all), resumable.
//!
//! Everything streams in pages (keyset pagination on `_id`, the vector index read by ids per
//! page or scanned), so memory stays bounded however many documents there are. Vectors are
//! reached through `tidemark_core::VectorIndex` only; outbox counts through the store's
//! `Outbox` repository.

pub mod backfill;
pub mod dlq;
mod follow;
pub mod indexes;
pub mod status;
pub mod throttle;
mod txn;
pub mod verify;
pub mod verify_chunks;

use bson::oid::ObjectId;
use std::sync::Arc;
use tidemark_chroma::{ChromaClient, ChromaError, ChromaIndex, ChromaOptions};
use tidemark_core::config::EmbedderConfig;
use tidemark_core::Config;
use tidemark_core::{IndexError, VectorIndex};
use tidemark_store::{Store, StoreError};

/// Errors of the operations. Each names what failed.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error("{}", tidemark_store::mongo_text::describe(.0))]
    Mongo(#[from] mongodb::error::Error),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("Chroma: {0}")]
    Chroma(#[from] ChromaError),
    #[error("vector index: {0}")]
    Index(#[from] IndexError),
    #[error("cannot read a stored record: {0}")]
    Decode(String),
    #[error("{0}")]
    NotFound(String),
    #[error("invalid argument: {0}")]
    Invalid(String),
    #[error("conflict: {0}")]
    Conflict(String),
}

/// Receives progress of a long operation (the CLI draws a bar; tests ignore it).
pub trait Progress: Send + Sync {
    /// A new phase starts, with its total when known.
    fn phase(&self, _name: &str, _total: Option<u64>) {}
    /// `n` more items of the current phase are done.
    fn inc(&self, _n: u64) {}
}

/// No progress reporting.
pub struct NoProgress;
impl Progress for NoProgress {}

/// The model id the worker uses for a configuration (and so the Chroma collection it writes):
/// `all-MiniLM-L6-v2` for the local model, `embedder.model` for an OpenAI-compatible endpoint,
/// `hash-<dimension>` for the hashing embedder. Matches `Embedder::model_id()` of each provider
/// without loading a model.
pub fn model_id(cfg: &EmbedderConfig) -> String {
    cfg.model_id()
}

/// Handles the operations need: the store, the vector index, and which collection/model the
/// worker writes.
#[derive(Clone)]
pub struct Ops {
    pub store: Store,
    pub index: Arc<dyn VectorIndex>,
    /// Chroma collection name: `<namespace>__<model-slug>`.
    pub collection: String,
    /// Model id expected in each vector's `model` metadata.
    pub model: String,
    /// Template and chunking settings vectors must have been made with (None: the default).
    pub text: Option<tidemark_core::chunking::TextSettings>,
}

impl Ops {
    /// From explicit parts (e.g. a test with its own embedder's model id).
    pub fn new(store: Store, chroma: ChromaClient, namespace: &str, model: &str) -> Ops {
        let collection = tidemark_core::collection_name(namespace, model);
        let index: Arc<dyn VectorIndex> = Arc::new(ChromaIndex::new(chroma, collection.clone()));
        Ops {
            store,
            index,
            collection,
            model: model.to_string(),
            text: None,
        }
    }

    /// Expects vectors made with `text` (template and chunking) settings.
    pub fn with_text_settings(
        mut self,
        text: Option<tidemark_core::chunking::TextSettings>,
    ) -> Ops {
        self.text = text;
        self
    }

    /// Connects to MongoDB and prepares the Chroma client of a configuration (nothing is
    /// contacted yet besides the MongoDB driver's lazy connection).
    pub async fn connect(cfg: &Config) -> Result<Ops, OpsError> {
        let store = Store::connect(cfg).await?;
        let chroma = ChromaClient::new(ChromaOptions::from_config(&cfg.chroma))?;
        let text = cfg
            .chunking
            .resolve(&cfg.embedder)
            .map_err(|e| OpsError::Invalid(e.to_string()))?;
        Ok(Ops::new(
            store,
            chroma,
            &cfg.chroma.namespace,
            &model_id(&cfg.embedder),
        )
        .with_text_settings(text))
    }

    /// Whether the index exists (it does not before anything was indexed).
    pub async fn index_exists(&self) -> Result<bool, OpsError> {
        Ok(self.index.exists().await?)
    }
}

/// RFC 3339 text of a BSON date.
pub(crate) fn rfc3339(dt: bson::DateTime) -> String {
    dt.try_to_rfc3339_string()
        .unwrap_or_else(|_| dt.timestamp_millis().to_string())
}

/// Seconds from `dt` until now (never negative).
pub(crate) fn age_secs(dt: bson::DateTime) -> f64 {
    (bson::DateTime::now().timestamp_millis() - dt.timestamp_millis()).max(0) as f64 / 1000.0
}

/// `now - d` as a BSON date.
pub(crate) fn ago(d: std::time::Duration) -> bson::DateTime {
    bson::DateTime::from_millis(bson::DateTime::now().timestamp_millis() - d.as_millis() as i64)
}

/// Parses a 24-hex-digit id, naming the argument on error.
pub fn parse_id(s: &str) -> Result<ObjectId, OpsError> {
    ObjectId::parse_str(s.trim())
        .map_err(|_| OpsError::Invalid(format!("`{s}` is not an id (24 hex digits)")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidemark_core::config::EmbedderKind;

    #[test]
    fn model_ids_match_the_providers() {
        let mut e = EmbedderConfig::default();
        assert_eq!(model_id(&e), "all-MiniLM-L6-v2");
        e.provider = EmbedderKind::Hash;
        e.dimension = 64;
        assert_eq!(model_id(&e), "hash-64");
        e.provider = EmbedderKind::Openai;
        e.model = "text-embedding-3-small".into();
        assert_eq!(model_id(&e), "text-embedding-3-small");
    }

    #[test]
    fn ids_parse_or_say_why() {
        assert!(parse_id("65f0c0ffee00000000000001").is_ok());
        let e = parse_id("nope").unwrap_err().to_string();
        assert!(e.contains("`nope`"), "{e}");
    }
}
