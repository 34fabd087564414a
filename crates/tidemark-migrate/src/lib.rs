//! tidemark-migrate: moves the data of the legacy "dual store" (records in MongoDB
//! `<prefix>_<name>` collections, vectors side by side in Chroma) into tidemark. Nothing here
//! ever writes to the legacy database or the legacy Chroma collections.
//!
//! Modules, in the order a migration uses them:
//! - [`inventory`]: what the legacy side holds, per collection (field roles, time types,
//!   duplicates, images, matching Chroma collection, vector coverage), and a draft mapping;
//! - [`mapping`]: the mapping file (TOML) and its static validation;
//! - [`source`]: read-only access to the legacy stores and the scan shared by the steps below;
//!   built on the pure [`record`] (normalisation, metadata cleaning), [`time`] (timestamps of
//!   every type), [`dedupe`] (duplicate ids), [`roles`] and [`naming`] (Chroma collection rules);
//! - [`plan`]: the mapping validated against the data, and what a run would do;
//! - [`run`]: documents written through `Store::put_many` in batches, a checkpoint per
//!   collection, unchanged records skipped, legacy vectors reused where model and text match;
//! - [`account`]: `status` and `verify` (every legacy record migrated, merged or skipped);
//! - [`rollback`]: removes exactly what one migration created;
//! - [`state`]: checkpoints and reports (`migrations`); [`ledger`]: the documents each
//!   migration wrote (`migration_ledger`, one document per written batch).

pub mod account;
pub mod dedupe;
pub mod inventory;
pub mod ledger;
pub mod mapping;
pub mod naming;
pub mod plan;
pub mod record;
pub mod roles;
pub mod rollback;
pub mod run;
pub mod source;
pub mod state;
pub mod time;

use mapping::TargetModel;
use source::Problem;
use tidemark_chroma::{ChromaClient, ChromaError};
use tidemark_core::Config;
use tidemark_store::{Store, StoreError};

pub use tidemark_ops::{NoProgress, Progress};

/// Errors of a migration step. Each names what failed.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("{0}")]
    Mapping(String),
    #[error("the mapping does not fit the source data: {}", first_problem(.0))]
    Problems(Vec<Problem>),
    #[error("source: {0}")]
    Source(String),
    #[error("{}", tidemark_store::mongo_text::describe(.0))]
    Mongo(#[from] mongodb::error::Error),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("Chroma: {0}")]
    Chroma(#[from] ChromaError),
    #[error("cannot read a stored record: {0}")]
    Decode(String),
    #[error("{0}")]
    Invalid(String),
}

fn first_problem(p: &[Problem]) -> String {
    match p {
        [] => "no problem listed".into(),
        [one] => one.to_string(),
        [first, rest @ ..] => format!("{first} (and {} more)", rest.len()),
    }
}

/// tidemark's embedder model and dimension in a configuration (what the worker will use).
pub fn target_model(cfg: &Config) -> TargetModel {
    TargetModel {
        model: tidemark_ops::model_id(&cfg.embedder),
        dimension: cfg.embedder.dimension,
    }
}

/// The tidemark side: the store, tidemark's Chroma, its namespace and embedder model.
#[derive(Clone)]
pub struct Target {
    pub store: Store,
    pub chroma: ChromaClient,
    pub namespace: String,
    pub model: TargetModel,
}

impl Target {
    /// From a tidemark configuration (nothing contacted yet besides the driver's lazy connect).
    pub async fn connect(cfg: &Config) -> Result<Target, MigrateError> {
        let store = Store::connect(cfg).await?;
        let chroma = ChromaClient::new(tidemark_chroma::ChromaOptions::from_config(&cfg.chroma))?;
        Ok(Target::new(store, chroma, cfg))
    }

    /// The target; its store's entries never say `newDocument`, since the migration copies
    /// legacy vectors for the documents it creates (the worker must read and reuse them).
    pub fn new(store: Store, chroma: ChromaClient, cfg: &Config) -> Target {
        Target {
            store: store.copying_vectors(),
            chroma,
            namespace: cfg.chroma.namespace.clone(),
            model: target_model(cfg),
        }
    }

    /// tidemark's Chroma collection for its model.
    pub fn collection(&self) -> String {
        tidemark_core::collection_name(&self.namespace, &self.model.model)
    }

    pub fn state(&self) -> state::State {
        state::State::new(self.store.database().clone())
    }

    pub fn ledger(&self) -> ledger::Ledger {
        ledger::Ledger::new(self.store.database().clone())
    }
}
