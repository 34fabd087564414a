//! Embedders: turn texts into vectors. One trait, three providers:
//! - `local`: all-MiniLM-L6-v2 in process (candle + tokenizers), from a model folder;
//! - `openai`: any OpenAI-compatible `/v1/embeddings` endpoint (also `tidemark embed serve`);
//! - `hash`: feature hashing, deterministic and NOT semantic, for load tests.
//!
//! Errors say whether a retry can help (`EmbedError::is_transient`).

use std::sync::Arc;

/// Errors of an embedder. Transient ones (network, 429, 5xx) are worth retrying later;
/// permanent ones (bad input, auth, dimension mismatch) are not.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error("embedder temporarily unavailable: {0}")]
    Transient(String),
    #[error("embedder rejected the request: {0}")]
    Permanent(String),
    #[error("embedder configuration: {0}")]
    Config(String),
}

impl EmbedError {
    pub fn is_transient(&self) -> bool {
        matches!(self, EmbedError::Transient(_))
    }
}

/// Turns a batch of texts into one vector each, in order.
#[async_trait::async_trait]
pub trait Embedder: Send + Sync {
    /// The model id, used in the Chroma collection name and in each vector's metadata.
    fn model_id(&self) -> &str;
    /// Length of every vector this embedder returns.
    fn dimension(&self) -> usize;
    /// Embeds `texts` (any count; providers split into batches of their own maximum size).
    /// Returns exactly one vector of `dimension()` floats per text, in order.
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError>;
}

/// A shared embedder.
pub type SharedEmbedder = Arc<dyn Embedder>;
