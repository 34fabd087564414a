//! Core of tidemark: the outbox contract shared by writers and the worker, configuration,
//! content hashing and the naming rules for Chroma collections and vector ids.
//!
//! Nothing here performs I/O; every other crate depends on this one and on nothing above it.

pub mod config;
pub mod contract;
pub mod hash;
pub mod ids;
pub mod redact;

pub use config::{Config, ConfigError};
pub use contract::{
    DocumentRecord, Lease, Op, OutboxEntry, OutboxResult, OutboxStatus, SyncState, COLL_DOCUMENTS,
    COLL_OUTBOX, COLL_SYNC_STATE, SCHEMA_VERSION,
};
pub use hash::content_hash;
pub use ids::{collection_name, model_slug, vector_id};
pub use redact::redact_uri;
