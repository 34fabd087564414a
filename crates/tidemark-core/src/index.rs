//! The vector store seam: the [`VectorIndex`] trait the worker, ops and search write and read
//! through, and the plain types it speaks. Chroma is one implementation
//! (`tidemark_chroma::ChromaIndex`); another vector store is one more implementation of this
//! trait in one file. A `VectorIndex` is bound to one index (one Chroma collection): one
//! embedding model, one chunking scheme.
//!
//! Semantics every implementation keeps, whatever its store does natively:
//! - `upsert` and `update_metadata` *replace* a record's metadata (keys the caller dropped are
//!   gone afterwards); the caller passes the metadata it last read for the id, if any, so a store
//!   that merges metadata can remove the dropped keys without another read.
//! - deleting absent ids, or the documents of an index that does not exist, succeeds.
//! - an index removed behind the caller's back is looked up (or recreated) again on the next call,
//!   and the failed call reports a transient error.

use crate::vector_meta::Metadata;
use std::time::Duration;

/// A vector to write, replacing whatever the index holds under `id`.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorWrite {
    pub id: String,
    pub embedding: Vec<f32>,
    pub metadata: Metadata,
    /// The metadata last read for `id` (None: not stored, or not read).
    pub previous: Option<Metadata>,
}

/// New metadata for a stored vector (the embedding stays).
#[derive(Debug, Clone, PartialEq)]
pub struct MetadataWrite {
    pub id: String,
    pub metadata: Metadata,
    pub previous: Option<Metadata>,
}

/// A vector as read back: its id and metadata (and the embedding when asked for).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredVector {
    pub id: String,
    pub metadata: Metadata,
    pub embedding: Option<Vec<f32>>,
}

/// One nearest neighbour of a query; `distance` is the store's (cosine distance for Chroma).
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub id: String,
    pub distance: f32,
    pub metadata: Metadata,
}

/// One page of a full scan and where the next one starts (None: the scan is complete).
#[derive(Debug, Clone, PartialEq)]
pub struct ScanPage {
    pub vectors: Vec<StoredVector>,
    pub next: Option<ScanCursor>,
}

/// An opaque scan position; start with `ScanCursor::default()`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanCursor(pub u64);

/// Why a vector store call failed, and whether trying again later can help.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum IndexError {
    /// Network failure, timeout, a 5xx answer, or the index vanished: retry later.
    #[error("{0}")]
    Transient(String),
    /// The store asked to wait: retry no earlier than `retry_after`.
    #[error("{message}")]
    Throttled {
        retry_after: Duration,
        message: String,
    },
    /// The store rejected the request (e.g. a dimension mismatch): retrying cannot help.
    #[error("{0}")]
    Rejected(String),
}

impl IndexError {
    /// True when a later retry can succeed.
    pub fn is_transient(&self) -> bool {
        !matches!(self, IndexError::Rejected(_))
    }

    /// The delay the store asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            IndexError::Throttled { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }
}

/// A vector index: one collection of vectors of one model and chunking scheme.
#[async_trait::async_trait]
pub trait VectorIndex: Send + Sync {
    /// The index's name in the store (the Chroma collection name).
    fn name(&self) -> &str;

    /// Creates the index if needed; returns the store's own id for it.
    async fn ensure(&self) -> Result<String, IndexError>;

    /// Whether the index exists (never creates it).
    async fn exists(&self) -> Result<bool, IndexError>;

    /// The stored vectors among `ids` (metadata only), in no particular order.
    async fn fetch(&self, ids: &[String]) -> Result<Vec<StoredVector>, IndexError>;

    /// Every stored vector whose metadata `documentId` is one of `document_ids` (metadata only).
    async fn fetch_by_document(
        &self,
        document_ids: &[String],
    ) -> Result<Vec<StoredVector>, IndexError>;

    /// Writes `vectors`, replacing records with the same ids.
    async fn upsert(&self, vectors: &[VectorWrite]) -> Result<(), IndexError>;

    /// Replaces the metadata of stored vectors.
    async fn update_metadata(&self, updates: &[MetadataWrite]) -> Result<(), IndexError>;

    /// Deletes the vectors with these ids (absent ids are fine).
    async fn delete(&self, ids: &[String]) -> Result<(), IndexError>;

    /// Deletes every vector of these documents (by metadata `documentId`).
    async fn delete_by_document(&self, document_ids: &[String]) -> Result<(), IndexError>;

    /// One page of all vectors (metadata only), for verify and backfill.
    async fn scan(&self, from: ScanCursor, limit: usize) -> Result<ScanPage, IndexError>;

    /// Number of vectors in the index (0 when it does not exist).
    async fn count(&self) -> Result<u64, IndexError>;

    /// The `k` nearest vectors to `embedding`, nearest first, optionally restricted by a
    /// metadata filter in Chroma's `where` syntax.
    async fn query(
        &self,
        embedding: &[f32],
        k: usize,
        filter: Option<&serde_json::Value>,
    ) -> Result<Vec<Hit>, IndexError>;

    /// Removes the whole index (absent is fine).
    async fn drop_index(&self) -> Result<(), IndexError>;
}
