//! Core of tidemark: the outbox contract shared by writers and the worker, configuration,
//! content hashing and the naming rules for Chroma collections and vector ids.
//!
//! Nothing here performs I/O; every other crate depends on this one and on nothing above it.
//!
//! - [`contract`]: the `documents` / `outbox` / `sync_state` shapes, statuses and results
//! - [`config`]: the TOML configuration, its defaults and validation by key
//! - [`vector_meta`]: the metadata keys of a vector and how a document becomes them
//! - [`index`]: the [`VectorIndex`] trait (the vector store seam) and its types
//! - [`hash`], [`ids`]: content hashing, collection naming, vector ids
//! - [`chunk`], [`template`]: splitting long documents, the text each vector embeds
//! - [`build_cursor`]: where an index build stands, and which live changes it covers itself
//! - [`redact`]: credentials removed from URIs before they are shown

pub mod build_cursor;
pub mod chunk;
pub mod chunking;
pub mod config;
pub mod contract;
pub mod error_text;
pub mod hash;
pub mod ids;
pub mod index;
pub mod index_def;
pub mod redact;
pub mod template;
pub mod vector_meta;

pub use config::{Config, ConfigError};
pub use contract::{
    DocumentRecord, Lease, Op, OutboxEntry, OutboxResult, OutboxStatus, SyncState, COLL_DOCUMENTS,
    COLL_OUTBOX, COLL_SYNC_STATE, SCHEMA_VERSION,
};
pub use hash::content_hash;
pub use ids::{collection_name, model_slug, vector_id};
pub use index::{
    Hit, IndexError, MetadataWrite, ScanCursor, ScanPage, StoredVector, VectorIndex, VectorWrite,
};
pub use redact::redact_uri;
pub use vector_meta::{flatten_metadata, metadata_equal, vector_metadata, Metadata, SYSTEM_KEYS};
