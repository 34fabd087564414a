//! tidemark-store: see the crate description.
