//! `ensure_schema`: creates the collections and every index the system needs, idempotently.
//!
//! - `documents`: unique `contentId`;
//! - `outbox`: `{status, nextAttemptAt}` (the worker's sweep), `{status, createdAt}` (the lag:
//!   the oldest pending entry, read every second by each worker), `{documentId, version: -1}` and
//!   `{contentId, version: -1}` (per-document lookups, the next version after a delete), and a
//!   TTL index on `doneAt` that keeps done entries for `outbox.retention` (the audit trail).
//!   Pending and dead entries have no `doneAt`, so the TTL never removes them.
//!
//! A changed retention is applied to the existing TTL index with `collMod`.

use crate::{Store, StoreError};
use bson::{doc, Document};
use mongodb::options::IndexOptions;
use mongodb::IndexModel;
use tidemark_core::{COLL_DOCUMENTS, COLL_OUTBOX, COLL_SYNC_STATE};

/// Names of the indexes `ensure_schema` creates, as (collection, index name).
pub const INDEX_NAMES: &[(&str, &str)] = &[
    (COLL_DOCUMENTS, "contentId_unique"),
    (COLL_OUTBOX, "status_nextAttemptAt"),
    (COLL_OUTBOX, "status_createdAt"),
    (COLL_OUTBOX, "documentId_version"),
    (COLL_OUTBOX, "contentId_version"),
    (COLL_OUTBOX, TTL_INDEX),
];

const TTL_INDEX: &str = "doneAt_ttl";

fn index(keys: Document, name: &str, unique: bool) -> IndexModel {
    let mut opts = IndexOptions::builder().name(name.to_string()).build();
    if unique {
        opts.unique = Some(true);
    }
    IndexModel::builder().keys(keys).options(opts).build()
}

impl Store {
    /// Creates the collections (transactions need them to exist on older servers) and indexes.
    /// Safe to call on every start.
    pub async fn ensure_schema(&self) -> Result<(), StoreError> {
        let existing = self.db.list_collection_names().await?;
        for name in [COLL_DOCUMENTS, COLL_OUTBOX, COLL_SYNC_STATE] {
            if !existing.iter().any(|n| n == name) {
                if let Err(e) = self.db.create_collection(name).await {
                    // NamespaceExists (48): created concurrently by another process.
                    if crate::mongo_error::code(&e) != Some(crate::mongo_error::NAMESPACE_EXISTS) {
                        return Err(e.into());
                    }
                }
            }
        }
        self.raw(COLL_DOCUMENTS)
            .create_index(index(doc! {"contentId": 1}, "contentId_unique", true))
            .await?;
        let outbox = self.raw(COLL_OUTBOX);
        outbox
            .create_indexes([
                index(
                    doc! {"status": 1, "nextAttemptAt": 1},
                    "status_nextAttemptAt",
                    false,
                ),
                index(
                    doc! {"status": 1, "createdAt": 1},
                    "status_createdAt",
                    false,
                ),
                index(
                    doc! {"documentId": 1, "version": -1},
                    "documentId_version",
                    false,
                ),
                index(
                    doc! {"contentId": 1, "version": -1},
                    "contentId_version",
                    false,
                ),
            ])
            .await?;
        self.ensure_ttl().await
    }

    async fn ensure_ttl(&self) -> Result<(), StoreError> {
        let secs = self.retention.as_secs().max(1) as i64;
        let outbox = self.raw(COLL_OUTBOX);
        let mut current = None;
        let mut cursor = outbox.list_indexes().await?;
        use futures::TryStreamExt;
        while let Some(ix) = cursor.try_next().await? {
            let name = ix.options.as_ref().and_then(|o| o.name.clone());
            if name.as_deref() == Some(TTL_INDEX) {
                current = Some(
                    ix.options
                        .and_then(|o| o.expire_after)
                        .map(|d| d.as_secs() as i64),
                );
            }
        }
        match current {
            Some(Some(s)) if s == secs => Ok(()),
            Some(_) => {
                let r = self
                    .db
                    .run_command(doc! {
                        "collMod": COLL_OUTBOX,
                        "index": {"name": TTL_INDEX, "expireAfterSeconds": secs},
                    })
                    .await;
                if let Err(e) = r {
                    tracing::warn!(error = %e, "collMod of the TTL index failed; recreating it");
                    outbox.drop_index(TTL_INDEX).await?;
                    self.create_ttl(secs).await?;
                }
                tracing::info!(retention_secs = secs, "outbox retention changed");
                Ok(())
            }
            None => self.create_ttl(secs).await,
        }
    }

    async fn create_ttl(&self, secs: i64) -> Result<(), StoreError> {
        let opts = IndexOptions::builder()
            .name(TTL_INDEX.to_string())
            .expire_after(std::time::Duration::from_secs(secs as u64))
            .build();
        self.raw(COLL_OUTBOX)
            .create_index(
                IndexModel::builder()
                    .keys(doc! {"doneAt": 1})
                    .options(opts)
                    .build(),
            )
            .await?;
        Ok(())
    }
}
