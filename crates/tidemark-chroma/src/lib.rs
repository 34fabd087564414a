//! tidemark-chroma: a small client of the Chroma v2 HTTP API (reqwest + serde).
//!
//! Collections live under a configurable tenant and database; record calls use the collection's
//! UUID. Embeddings are sent base64-encoded (little-endian f32), which Chroma parses about 2.5x
//! faster than JSON arrays. Upserts are split into requests below the server's 40 MiB body cap
//! and its maximum batch size; duplicate ids inside one call are rejected before sending.
//! Errors say whether a retry can help: connection failures, timeouts, 429 and 5xx are
//! [`ChromaError::Transient`] (or [`ChromaError::Throttled`] with the server's Retry-After);
//! other 4xx answers (e.g. a dimension mismatch) are [`ChromaError::Permanent`] with the
//! server's message.

//!
//! - `client`: [`ChromaClient`], one method per v2 call
//! - `index`: [`ChromaIndex`], the `tidemark_core::VectorIndex` implementation
//! - `split`: request splitting under the body and batch caps

mod catalog;
mod client;
mod index;
mod split;

pub use catalog::{CollectionInfo, FullRecord};
pub use client::ChromaClient;
pub use index::ChromaIndex;
pub use split::{encode_embedding, split_batches};

use std::time::Duration;

/// Metadata of one vector: Chroma accepts string, integer, float and boolean values.
pub use tidemark_core::vector_meta::Metadata;

/// The server rejects bodies above 40 MiB; stay well below it.
pub const DEFAULT_MAX_BODY_BYTES: usize = 32 * 1024 * 1024;
/// Chroma 1.5's `max_batch_size` (from `/api/v2/pre-flight-checks`).
pub const DEFAULT_MAX_BATCH_RECORDS: usize = 5000;

/// Where the server is and how to talk to it.
#[derive(Debug, Clone)]
pub struct ChromaOptions {
    pub url: String,
    pub tenant: String,
    pub database: String,
    /// Sent as `Authorization: Bearer <token>` when set. Never logged.
    pub auth_token: Option<String>,
    pub timeout: Duration,
    /// Upper bound of one request body; larger upserts are split.
    pub max_body_bytes: usize,
    /// Upper bound of records in one request.
    pub max_batch_records: usize,
}

impl Default for ChromaOptions {
    fn default() -> Self {
        ChromaOptions {
            url: tidemark_core::config::DEFAULT_CHROMA_URL.to_string(),
            tenant: "default_tenant".into(),
            database: "default_database".into(),
            auth_token: None,
            timeout: Duration::from_secs(30),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_batch_records: DEFAULT_MAX_BATCH_RECORDS,
        }
    }
}

impl ChromaOptions {
    /// Options for a server at `url` with the default tenant and database.
    pub fn new(url: &str) -> Self {
        ChromaOptions {
            url: url.to_string(),
            ..Default::default()
        }
    }

    /// From the configuration; the token is read from the environment variable named by
    /// `cfg.auth_token_env` (if any).
    pub fn from_config(cfg: &tidemark_core::config::ChromaConfig) -> Self {
        let auth_token = if cfg.auth_token_env.is_empty() {
            None
        } else {
            std::env::var(&cfg.auth_token_env)
                .ok()
                .filter(|t| !t.is_empty())
        };
        ChromaOptions {
            url: cfg.url.clone(),
            tenant: cfg.tenant.clone(),
            database: cfg.database.clone(),
            auth_token,
            timeout: cfg.timeout,
            ..Default::default()
        }
    }
}

/// A collection: its UUID (used by record calls) and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collection {
    pub id: String,
    pub name: String,
}

/// A vector to write.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorRecord {
    pub id: String,
    pub embedding: Vec<f32>,
    pub metadata: Metadata,
}

/// A vector as read back.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRecord {
    pub id: String,
    pub metadata: Option<Metadata>,
    pub embedding: Option<Vec<f32>>,
}

/// One nearest neighbour of a query.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryHit {
    pub id: String,
    pub distance: f32,
    pub metadata: Option<Metadata>,
}

/// Errors of the client.
#[derive(Debug, thiserror::Error)]
pub enum ChromaError {
    /// Network failure, timeout or a 5xx answer: worth retrying later.
    #[error("{0}")]
    Transient(String),
    /// 429 or 503 with a `Retry-After` header: retry no earlier than `retry_after`.
    #[error("chroma is throttling (retry after {retry_after:?}): {message}")]
    Throttled {
        retry_after: Duration,
        message: String,
    },
    /// The server rejected the request (4xx other than 429), e.g. a dimension mismatch.
    #[error("chroma rejected the request ({status}): {message}")]
    Permanent { status: u16, message: String },
    /// The request was invalid before sending (duplicate ids, mismatched lengths, bad URL).
    #[error("invalid chroma request: {0}")]
    Invalid(String),
}

impl ChromaError {
    /// True when a later retry can succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ChromaError::Transient(_) | ChromaError::Throttled { .. }
        )
    }

    /// The delay the server asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ChromaError::Throttled { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }
}
