//! Errors of the writer library. Each variant names what is wrong; `NotVisible` says plainly
//! that the write IS committed, so callers never retry a write that already happened.

use bson::oid::ObjectId;
use std::time::Duration;

/// Everything a `Store` call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The input was rejected before anything was written.
    #[error("invalid `{field}`: {reason}")]
    Validation { field: String, reason: String },

    /// `Consistency::VectorVisible` timed out. The document is durably stored; only the vector
    /// is not there yet. Writing the document again is NOT needed.
    #[error(
        "document `{content_id}` (id {document_id}, version {version}) IS committed, but its vector \
         is still pending after {waited:?}: the worker has not marked outbox entry {outbox_id} done \
         yet (is `tidemark worker` running?). Do not write the document again; it will be indexed."
    )]
    NotVisible {
        content_id: String,
        document_id: ObjectId,
        outbox_id: ObjectId,
        version: i64,
        waited: Duration,
    },

    /// The worker gave up on the entry (`status: dead`): the document IS committed but its vector
    /// will not appear until the entry is replayed (`tidemark dlq`).
    #[error(
        "document `{content_id}` (id {document_id}, version {version}) IS committed, but the worker \
         marked outbox entry {outbox_id} dead: {last_error}"
    )]
    VectorFailed {
        content_id: String,
        document_id: ObjectId,
        outbox_id: ObjectId,
        version: i64,
        last_error: String,
    },

    /// An outbox entry that `wait_visible` was asked about does not exist.
    #[error("outbox entry {0} does not exist (wrong id, or removed by the retention TTL)")]
    UnknownEntry(ObjectId),

    /// The transaction kept failing with retryable errors (e.g. write conflicts) until the
    /// attempt bound was reached; nothing of this call was committed.
    #[error("{operation}: gave up after {attempts} attempts, nothing was written: {last}")]
    RetriesExhausted {
        operation: &'static str,
        attempts: u32,
        last: String,
    },

    /// A `put_many` split into several transactions failed part way: the first `committed`
    /// documents (in input order) are committed, the rest are not.
    #[error("{committed} of {total} documents were committed before the failure: {source}")]
    BatchFailed {
        committed: usize,
        total: usize,
        source: Box<StoreError>,
    },

    #[error("{}", crate::mongo_text::describe(.0))]
    Mongo(#[from] mongodb::error::Error),

    #[error("cannot convert metadata to BSON: {0}")]
    Bson(#[from] bson::ser::Error),
}

impl StoreError {
    pub(crate) fn validation(field: impl Into<String>, reason: impl Into<String>) -> Self {
        StoreError::Validation {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// True for `NotVisible`: the write succeeded, only the vector is late.
    pub fn is_committed_but_pending(&self) -> bool {
        matches!(self, StoreError::NotVisible { .. })
    }
}
