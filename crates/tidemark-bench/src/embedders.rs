//! The embedders the benchmark's sections use in process: the hashing embedder and the local
//! model (the engines side by side are the `embedder` section's, in `engines`).

use crate::BenchError;
use std::sync::Arc;
use tidemark_core::config::EmbedderConfig;
use tidemark_embed::local::LocalEmbedder;
use tidemark_embed::SharedEmbedder;

/// The hashing embedder of `dimension` (the same vectors the worker computes).
pub fn hash(dimension: usize) -> Result<SharedEmbedder, BenchError> {
    Ok(Arc::new(tidemark_embed::hash::HashEmbedder::new(dimension)))
}

/// all-MiniLM-L6-v2 as `cfg` says (folder, engine, runtime library).
pub fn local(cfg: &EmbedderConfig) -> Result<SharedEmbedder, BenchError> {
    Ok(Arc::new(LocalEmbedder::from_config(cfg)?))
}
