//! The embedders the benchmark runs alone, in process: the hashing embedder and the local model.

use crate::BenchError;
use std::path::Path;
use std::sync::Arc;
use tidemark_embed::SharedEmbedder;

/// The hashing embedder of `dimension` (the same vectors the worker computes).
pub fn hash(dimension: usize) -> Result<SharedEmbedder, BenchError> {
    Ok(Arc::new(tidemark_embed::hash::HashEmbedder::new(dimension)))
}

/// all-MiniLM-L6-v2 from `dir`.
pub fn local(dir: &Path) -> Result<SharedEmbedder, BenchError> {
    Ok(Arc::new(tidemark_embed::local::LocalEmbedder::load(dir)?))
}
