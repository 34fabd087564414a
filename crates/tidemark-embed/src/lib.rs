//! Embedders: turn texts into vectors. One trait, three providers:
//! - `local`: all-MiniLM-L6-v2 in process (ONNX Runtime or candle, + tokenizers), from a model
//!   folder;
//! - `openai`: any OpenAI-compatible `/v1/embeddings` endpoint (also `tidemark embed serve`);
//! - `hash`: feature hashing, deterministic and NOT semantic, for load tests.
//!
//! Errors say whether a retry can help (`EmbedError::is_transient`).

pub mod budget;
pub mod hash;
pub mod local;
pub mod metrics;
pub mod onnx;
pub mod openai;
pub mod server;
pub mod server_limits;

use std::sync::Arc;
use tidemark_core::config::{EmbedderConfig, EmbedderKind};

/// Errors of an embedder. Transient ones (network, 429, 5xx) are worth retrying later;
/// permanent ones (bad input, auth, dimension mismatch) are not.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error("embedder unavailable: {0}")]
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
    /// Tokens `text` costs this model, without its special tokens (for chunking). Providers
    /// without a tokenizer here use the stated approximation
    /// ([`tidemark_core::chunk::ApproxCounter`]: one token per three bytes).
    fn count_tokens(&self, text: &str) -> usize {
        tidemark_core::chunk::TokenCounter::count(&tidemark_core::chunk::ApproxCounter, text)
    }
    /// Names the index this embedder serves: the `index` label of its metrics (tokens,
    /// throttled time, cost). Until called, the label is the model id. Providers that count
    /// nothing ignore it.
    fn set_index(&self, _index: &str) {}
    /// Embeds `texts` (any count; providers split into batches of their own maximum size).
    /// Returns exactly one vector of `dimension()` floats per text, in order.
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError>;
}

/// A shared embedder.
pub type SharedEmbedder = Arc<dyn Embedder>;

/// Builds the configured embedder. The local model is loaded here (a missing model folder is a
/// `Config` error naming the file), so a bad configuration fails at start-up.
pub fn from_config(cfg: &EmbedderConfig) -> Result<SharedEmbedder, EmbedError> {
    let embedder: SharedEmbedder = match cfg.provider {
        EmbedderKind::Hash => Arc::new(hash::HashEmbedder::new(cfg.dimension)),
        EmbedderKind::Local => {
            let e = local::LocalEmbedder::from_config(cfg)?;
            if e.dimension() != cfg.dimension {
                return Err(EmbedError::Config(format!(
                    "embedder.dimension is {} but the model in {} produces {}",
                    cfg.dimension,
                    cfg.model_dir.display(),
                    e.dimension()
                )));
            }
            Arc::new(e)
        }
        EmbedderKind::Openai => Arc::new(openai::OpenAiEmbedder::from_config(cfg)?),
    };
    Ok(embedder)
}
