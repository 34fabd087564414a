//! The embedders the benchmark runs alone, in process: the hashing embedder and the local model.

use crate::BenchError;
use std::path::Path;
use tidemark_embed::SharedEmbedder;

/// The hashing embedder of `dimension` (the same vectors the worker computes).
pub fn hash(dimension: usize) -> Result<SharedEmbedder, BenchError> {
    let _ = dimension;
    Err(BenchError::Setup(
        "the hashing embedder has not landed yet".into(),
    ))
}

/// all-MiniLM-L6-v2 from `dir`.
pub fn local(dir: &Path) -> Result<SharedEmbedder, BenchError> {
    let _ = dir;
    Err(BenchError::Setup(
        "the local embedder has not landed yet".into(),
    ))
}
