//! tidemark-worker: see the crate description.
