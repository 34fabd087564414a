//! Which documents of a page a backfill enqueues: all of them, or with `missing_only` those
//! without a current vector and without a pending entry.

use crate::{Ops, OpsError};
use bson::{doc, oid::ObjectId, Bson, Document};
use std::collections::HashSet;
use tidemark_core::{OutboxStatus, COLL_OUTBOX};

/// Which of a page's documents to enqueue.
pub(crate) async fn select(
    ops: &Ops,
    exists: bool,
    page: &[Document],
    missing_only: bool,
) -> Result<Vec<ObjectId>, OpsError> {
    let ids: Vec<ObjectId> = page
        .iter()
        .filter_map(|d| d.get_object_id("_id").ok())
        .collect();
    if !missing_only {
        return Ok(ids);
    }
    // A chunked document counts as present when its first chunk is (verify finds the rest).
    let chunked = ops.text.as_ref().is_some_and(|t| t.chunks.is_some());
    let vector_of = |id: &ObjectId| {
        if chunked {
            tidemark_core::ids::chunk_vector_id(id, 0)
        } else {
            id.to_hex()
        }
    };
    let in_chroma: HashSet<String> = if exists {
        let hex: Vec<String> = ids.iter().map(vector_of).collect();
        ops.index
            .fetch(&hex)
            .await?
            .into_iter()
            .map(|r| r.id)
            .collect()
    } else {
        HashSet::new()
    };
    let version = |d: &Document, k: &str| match d.get(k) {
        Some(Bson::Int64(i)) => Some(*i),
        Some(Bson::Int32(i)) => Some(*i as i64),
        _ => None,
    };
    let missing: Vec<ObjectId> = page
        .iter()
        .filter(|d| {
            let Ok(id) = d.get_object_id("_id") else {
                return false;
            };
            let v = version(d, "version").unwrap_or(0);
            version(d, "indexedVersion").is_none_or(|iv| iv < v)
                || !in_chroma.contains(&vector_of(&id))
        })
        .filter_map(|d| d.get_object_id("_id").ok())
        .collect();
    if missing.is_empty() {
        return Ok(missing);
    }
    let pending: HashSet<ObjectId> = ops
        .store
        .database()
        .collection::<Document>(COLL_OUTBOX)
        .distinct(
            "documentId",
            doc! {"documentId": {"$in": &missing}, "status": OutboxStatus::Pending},
        )
        .await?
        .into_iter()
        .filter_map(|b| b.as_object_id())
        .collect();
    Ok(missing
        .into_iter()
        .filter(|i| !pending.contains(i))
        .collect())
}
