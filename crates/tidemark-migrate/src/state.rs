//! What a migration keeps on the tidemark side (never in the legacy database), beside the
//! ledger of the documents it wrote ([`crate::ledger`]): `migrations`, one checkpoint per
//! (migration, collection) — the last legacy `_id` whose batch committed, and whether the
//! collection's pass completed — plus the JSON report of every run and rollback, for audit.

use crate::MigrateError;
use bson::{doc, oid::ObjectId, DateTime, Document};
use futures::TryStreamExt;
use mongodb::Database;
use serde::{Deserialize, Serialize};

pub const COLL_MIGRATIONS: &str = "migrations";

/// Checkpoint states.
pub const STATE_RUNNING: &str = "running";
pub const STATE_COMPLETE: &str = "complete";

/// Kinds of rows in `migrations`.
pub const KIND_CHECKPOINT: &str = "checkpoint";
pub const KIND_RUN: &str = "run";
pub const KIND_ROLLBACK: &str = "rollback";

/// Where the pass over one legacy collection stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Checkpoint {
    #[serde(rename = "_id")]
    pub key: String,
    pub kind: String,
    pub migration: String,
    pub collection: String,
    pub run_id: String,
    /// The last legacy `_id` of a committed batch (`None`: from the start).
    pub last_id: Option<ObjectId>,
    pub state: String,
    pub updated_at: DateTime,
}

impl Checkpoint {
    pub fn key(migration: &str, collection: &str) -> String {
        format!("{KIND_CHECKPOINT}:{migration}:{collection}")
    }
}

/// Handle on `migrations`.
#[derive(Clone)]
pub struct State {
    db: Database,
}

impl State {
    pub fn new(db: Database) -> State {
        State { db }
    }

    fn migrations(&self) -> mongodb::Collection<Document> {
        self.db.collection(COLL_MIGRATIONS)
    }

    pub async fn checkpoint(
        &self,
        migration: &str,
        collection: &str,
    ) -> Result<Option<Checkpoint>, MigrateError> {
        let key = Checkpoint::key(migration, collection);
        let d = self.migrations().find_one(doc! {"_id": key}).await?;
        d.map(bson::from_document)
            .transpose()
            .map_err(|e| MigrateError::Decode(format!("checkpoint: {e}")))
    }

    pub async fn save_checkpoint(&self, cp: &Checkpoint) -> Result<(), MigrateError> {
        let d = bson::to_document(cp).map_err(|e| MigrateError::Decode(e.to_string()))?;
        self.migrations()
            .replace_one(doc! {"_id": &cp.key}, d)
            .upsert(true)
            .await?;
        Ok(())
    }

    pub async fn checkpoints(
        &self,
        migration: Option<&str>,
    ) -> Result<Vec<Checkpoint>, MigrateError> {
        let mut filter = doc! {"kind": KIND_CHECKPOINT};
        if let Some(m) = migration {
            filter.insert("migration", m);
        }
        let docs: Vec<Document> = self
            .migrations()
            .find(filter)
            .sort(doc! {"_id": 1})
            .await?
            .try_collect()
            .await?;
        docs.into_iter()
            .map(|d| bson::from_document(d).map_err(|e| MigrateError::Decode(e.to_string())))
            .collect()
    }

    pub async fn delete_checkpoints(&self, migration: &str) -> Result<u64, MigrateError> {
        let r = self
            .migrations()
            .delete_many(doc! {"kind": KIND_CHECKPOINT, "migration": migration})
            .await?;
        Ok(r.deleted_count)
    }

    /// Keeps a report (`kind` run or rollback) as JSON-shaped BSON.
    pub async fn save_report(
        &self,
        kind: &str,
        id: &str,
        migration: &str,
        report: &impl Serialize,
    ) -> Result<(), MigrateError> {
        let body = bson::to_bson(report).map_err(|e| MigrateError::Decode(e.to_string()))?;
        self.migrations()
            .insert_one(doc! {
                "_id": format!("{kind}:{id}"), "kind": kind, "migration": migration,
                "at": DateTime::now(), "report": body,
            })
            .await?;
        Ok(())
    }

    /// The latest reports of a kind (newest first), optionally of one migration.
    pub async fn reports(
        &self,
        kind: &str,
        migration: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Document>, MigrateError> {
        let mut filter = doc! {"kind": kind};
        if let Some(m) = migration {
            filter.insert("migration", m);
        }
        Ok(self
            .migrations()
            .find(filter)
            .sort(doc! {"at": -1})
            .limit(limit)
            .await?
            .try_collect()
            .await?)
    }
}
