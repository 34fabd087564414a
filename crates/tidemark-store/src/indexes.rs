//! The `indexes` collection: the stored index definitions (see `tidemark_core::index_def`).
//! A fresh install's first definition is made from its configuration; `create` adds one to
//! build, `activate` makes one the index search reads (the previous active one is retired and
//! stays live), `drop` forgets a retired one. When two are briefly active (an activation
//! between its two updates) the most recently activated wins.

use crate::mongo_error;
use crate::StoreError;
use bson::{doc, DateTime};
use futures::TryStreamExt;
use mongodb::{Collection, Database};
use tidemark_core::index_def::{valid_name, IndexDef, IndexState, COLL_INDEXES};
use tidemark_core::Config;

/// The name of an install's first index.
pub const FIRST_INDEX: &str = "main";

/// The index definitions of one database.
#[derive(Clone)]
pub struct Indexes {
    coll: Collection<IndexDef>,
}

fn invalid(field: &str, reason: impl Into<String>) -> StoreError {
    StoreError::Validation {
        field: field.into(),
        reason: reason.into(),
    }
}

impl Indexes {
    pub fn new(db: &Database) -> Indexes {
        Indexes {
            coll: db.collection(COLL_INDEXES),
        }
    }

    /// Every definition, oldest first.
    pub async fn list(&self) -> Result<Vec<IndexDef>, StoreError> {
        Ok(self
            .coll
            .find(doc! {})
            .sort(doc! {"createdAt": 1})
            .await?
            .try_collect()
            .await?)
    }

    pub async fn get(&self, name: &str) -> Result<Option<IndexDef>, StoreError> {
        Ok(self.coll.find_one(doc! {"_id": name}).await?)
    }

    /// The active definition (the most recently activated, should two be active).
    pub async fn active(&self) -> Result<Option<IndexDef>, StoreError> {
        Ok(self
            .coll
            .find_one(doc! {"state": IndexState::Active.as_str()})
            .sort(doc! {"activatedAt": -1})
            .await?)
    }

    /// The active definition; on a fresh install, the first one, made from `cfg`.
    pub async fn ensure_initial(&self, cfg: &Config) -> Result<IndexDef, StoreError> {
        if let Some(a) = self.active().await? {
            return Ok(a);
        }
        let first = IndexDef::from_config(cfg, FIRST_INDEX, IndexState::Active, true);
        match self.coll.insert_one(&first).await {
            Ok(_) => Ok(first),
            // Another process made it first (or an old `main` exists): read what is there.
            Err(e) if mongo_error::is_duplicate_key(&e) => match self.active().await? {
                Some(a) => Ok(a),
                None => Err(invalid(
                    "indexes",
                    "no index is active (activate one with `tidemark index activate NAME`)",
                )),
            },
            Err(e) => Err(e.into()),
        }
    }

    /// Adds a definition to build. Refuses a bad or taken name and a collection in use.
    pub async fn create(&self, def: &IndexDef) -> Result<(), StoreError> {
        if !valid_name(&def.name) {
            return Err(invalid(
                "name",
                format!(
                    "`{}` is not an index name (letters, digits, `-`, `_`; at most 40)",
                    def.name
                ),
            ));
        }
        if let Some(other) = self
            .coll
            .find_one(doc! {"collection": &def.collection})
            .await?
        {
            return Err(invalid(
                "name",
                format!("index `{}` already writes {}", other.name, def.collection),
            ));
        }
        match self.coll.insert_one(def).await {
            Ok(_) => Ok(()),
            Err(e) if mongo_error::is_duplicate_key(&e) => Err(invalid(
                "name",
                format!("an index named `{}` exists", def.name),
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// Makes `name` the active index; the one active before is retired (and stays live).
    pub async fn activate(&self, name: &str) -> Result<IndexDef, StoreError> {
        let Some(def) = self.get(name).await? else {
            return Err(invalid("name", format!("no index named `{name}`")));
        };
        let now = DateTime::now();
        self.coll
            .update_one(
                doc! {"_id": name},
                doc! {"$set": {"state": IndexState::Active.as_str(), "activatedAt": now},
                "$unset": {"retiredAt": ""}},
            )
            .await?;
        self.coll
            .update_many(
                doc! {"_id": {"$ne": name}, "state": IndexState::Active.as_str()},
                doc! {"$set": {"state": IndexState::Retired.as_str(), "retiredAt": now}},
            )
            .await?;
        Ok(IndexDef {
            state: IndexState::Active,
            activated_at: Some(now),
            retired_at: None,
            ..def
        })
    }

    /// Forgets a retired definition (its collection is removed by the caller first).
    pub async fn remove_retired(&self, name: &str) -> Result<(), StoreError> {
        let r = self
            .coll
            .delete_one(doc! {"_id": name, "state": {"$ne": IndexState::Active.as_str()}})
            .await?;
        if r.deleted_count == 0 {
            return Err(invalid(
                "name",
                format!("no index `{name}` that is not active"),
            ));
        }
        Ok(())
    }

    /// Records the build's backfill run and whether it reached the end.
    pub async fn set_build(&self, name: &str, run: &str, complete: bool) -> Result<(), StoreError> {
        self.coll
            .update_one(
                doc! {"_id": name},
                doc! {"$set": {"buildRun": run, "buildComplete": complete}},
            )
            .await?;
        Ok(())
    }
}
