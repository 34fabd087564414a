//! Per-document locks in the worker-private `worker_locks` collection: `{_id: documentId,
//! owner, until}`. Taking a lock is an insert, or the takeover of an expired lock, both atomic
//! on one document, so no two workers ever process entries of the same document at once.
//! Locks expire after `worker.lease` (a crashed worker's are taken over) and are released as
//! soon as a batch ends.

use bson::{doc, oid::ObjectId, DateTime, Document};
use futures::TryStreamExt;
use mongodb::options::IndexOptions;
use mongodb::{Collection, Database, IndexModel};
use std::collections::HashSet;
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
        let held: Vec<ObjectId> = taken.iter().map(|&i| wanted[i]).collect();
        let took = self.take_over(&held, now, until).await?;
        Ok(wanted
            .iter()
            .enumerate()
            .filter(|(i, d)| !taken.contains(i) || took.contains(d))
            .map(|(_, d)| *d)
            .collect())
    }

    /// Takes over the locks of `held` that expired at `now` (a crashed worker's), in two round
    /// trips whatever their number, one when none expired: the update marks the locks it
    /// takes with a token of its own, and the read finds them by it. (A takeover per document
    /// cost a round trip for every document another worker held.)
    async fn take_over(
        &self,
        held: &[ObjectId],
        now: DateTime,
        until: DateTime,
    ) -> mongodb::error::Result<HashSet<ObjectId>> {
        if held.is_empty() {
            return Ok(HashSet::new());
        }
        let token = ObjectId::new();
        let r = self
            .coll
            .update_many(
                doc! {"_id": {"$in": held}, "until": {"$lt": now}},
                doc! {"$set": {"owner": &self.owner, "until": until, "takeover": token}},
            )
            .await?;
        if r.modified_count == 0 {
            return Ok(HashSet::new());
        }
        let rows: Vec<Document> = self
            .coll
            .find(doc! {"_id": {"$in": held}, "takeover": token})
            .projection(doc! {"_id": 1})
            .await?
            .try_collect()
            .await?;
        Ok(rows
            .iter()
            .filter_map(|d| d.get_object_id("_id").ok())
            .collect())
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
