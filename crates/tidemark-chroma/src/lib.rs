//! tidemark-chroma: see the crate description.
