//! Per-document locks in the worker-private `worker_locks` collection: `{_id: documentId,
//! owner, until}`. Taking a lock is an insert, or the takeover of an expired lock, both atomic
//! on one document, so no two workers ever process entries of the same document at once.
//! Locks expire after `worker.lease` (a crashed worker's are taken over) and are released as
//! soon as a batch ends.

use bson::{doc, oid::ObjectId, DateTime, Document};
use mongodb::options::IndexOptions;
use mongodb::{Collection, Database, IndexModel};
use std::time::Duration;
use tidemark_store::mongo_error;

/// Worker-private collection of per-document locks: `{_id: documentId, owner, until}`.
pub const COLL_LOCKS: &str = "worker_locks";

/// The document locks of one worker (`owner`). Cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct DocLocks {
    coll: Collection<Document>,
    owner: String,
}

impl DocLocks {
    pub fn new(db: &Database, owner: &str) -> DocLocks {
        DocLocks {
            coll: db.collection(COLL_LOCKS),
            owner: owner.to_string(),
        }
    }

    /// TTL index that removes lock documents long after they expired (crashed workers).
    pub async fn ensure_index(&self) -> mongodb::error::Result<()> {
        let opts = IndexOptions::builder()
            .name("until_ttl".to_string())
            .expire_after(Duration::from_secs(3600))
            .build();
        let model = IndexModel::builder()
            .keys(doc! {"until": 1})
            .options(opts)
            .build();
        self.coll.create_index(model).await?;
        Ok(())
    }

    /// Locks as many of `wanted` as are free (or expired at `now`) until `until`; returns them.
    pub async fn lock(
        &self,
        wanted: &[ObjectId],
        now: DateTime,
        until: DateTime,
    ) -> mongodb::error::Result<Vec<ObjectId>> {
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<Document> = wanted
            .iter()
            .map(|d| doc! {"_id": d, "owner": &self.owner, "until": until})
            .collect();
        let taken = match self.coll.insert_many(rows).ordered(false).await {
            Ok(_) => return Ok(wanted.to_vec()),
            Err(e) => match mongo_error::duplicate_indexes(&e) {
                Some(taken) => taken,
                None => return Err(e),
            },
        };
        let mut got = Vec::with_capacity(wanted.len());
        for (i, d) in wanted.iter().enumerate() {
            if !taken.contains(&i) {
                got.push(*d);
                continue;
            }
            // Held before: take it over only if it expired.
            let r = self
                .coll
                .find_one_and_update(
                    doc! {"_id": d, "until": {"$lt": now}},
                    doc! {"$set": {"owner": &self.owner, "until": until}},
                )
                .await?;
            if r.is_some() {
                got.push(*d);
            }
        }
        Ok(got)
    }

    /// Pushes the locks of `docs` to `until`; false when one is no longer ours.
    pub async fn renew(&self, docs: &[ObjectId], until: DateTime) -> mongodb::error::Result<bool> {
        let r = self
            .coll
            .update_many(
                doc! {"_id": {"$in": docs}, "owner": &self.owner},
                doc! {"$set": {"until": until}},
            )
            .await?;
        Ok(r.matched_count as usize == docs.len())
    }

    /// Releases the locks of `docs` held by this worker.
    pub async fn release(&self, docs: &[ObjectId]) -> mongodb::error::Result<()> {
        if docs.is_empty() {
            return Ok(());
        }
        self.coll
            .delete_many(doc! {"_id": {"$in": docs}, "owner": &self.owner})
            .await?;
        Ok(())
    }

    /// Releases every lock this worker holds.
    pub async fn release_all(&self) -> mongodb::error::Result<()> {
        self.coll.delete_many(doc! {"owner": &self.owner}).await?;
        Ok(())
    }
}
