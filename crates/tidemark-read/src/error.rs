//! Errors of the read API. Each says what failed in one line; `NotIndexed` says plainly that
//! the write it waited for IS committed.

use crate::filter::FilterError;
use bson::oid::ObjectId;
use std::time::Duration;

/// Everything a `Reader` call can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The filter could not be understood (names the path).
    #[error("{0}")]
    Filter(#[from] FilterError),
    /// The query is unusable (empty text, wrong vector length, k of 0).
    #[error("invalid query: {0}")]
    InvalidQuery(String),
    /// `search` needs an embedder (the reader was built without one).
    #[error("this reader has no embedder, so it cannot search")]
    NoEmbedder,
    #[error("cannot embed the query: {0}")]
    Embed(#[from] tidemark_embed::EmbedError),
    #[error("vector index: {0}")]
    Vectors(String),
    #[error("{}", tidemark_store::mongo_text::describe(.0))]
    Mongo(#[from] mongodb::error::Error),
    #[error("{0}")]
    Store(#[from] tidemark_store::StoreError),
    /// Read-your-writes timed out: the write IS committed, its vector is not indexed yet.
    #[error(
        "version {version} of document {document_id} IS committed but not indexed after \
         {waited:?} (is `tidemark worker` running?)"
    )]
    NotIndexed {
        document_id: ObjectId,
        version: i64,
        waited: Duration,
    },
    /// Read-your-writes: the worker gave up on the write (`dead`; see `tidemark dlq`).
    #[error(
        "version {version} of document {document_id} IS committed but the worker could not index \
         it: {last_error}"
    )]
    IndexFailed {
        document_id: ObjectId,
        version: i64,
        last_error: String,
    },
}
