//! One backfill batch in one transaction: the outbox entries of the documents chosen and the
//! checkpoint moved past them, or neither.

use crate::txn::{self, Body};
use crate::{Ops, OpsError};
use bson::{doc, oid::ObjectId, Bson, DateTime, Document};
use futures::FutureExt;
use tidemark_core::build_cursor::fields;
use tidemark_core::{Op, OutboxEntry, COLL_DOCUMENTS, COLL_OUTBOX, COLL_SYNC_STATE};

/// How a batch moves the checkpoint: from `from` to the page's end `to`, counting `scanned`
/// documents; or not at all (documents found late, see `follow::late`).
pub(crate) enum Step {
    Move {
        from: Option<ObjectId>,
        to: ObjectId,
        scanned: u64,
    },
    Stay,
}

/// One transaction: entries for the `chosen` documents (as they are now, for the index
/// `for_index` only when set) and the checkpoint moved by `step`. Fails with `Conflict` when
/// the checkpoint is no longer where the step starts, or the run completed.
pub(crate) async fn commit_batch(
    ops: &Ops,
    cp_id: &str,
    step: Step,
    chosen: &[ObjectId],
    for_index: Option<&str>,
) -> Result<u64, OpsError> {
    let db = ops.store.database().clone();
    let (filter, set, scanned) = match step {
        Step::Move { from, to, scanned } => (
            doc! {
                "_id": cp_id,
                fields::LAST_ID: from.map(Bson::ObjectId).unwrap_or(Bson::Null),
                fields::COMPLETED_AT: {"$exists": false},
            },
            doc! {fields::LAST_ID: to, "updatedAt": DateTime::now()},
            scanned,
        ),
        Step::Stay => (doc! {"_id": cp_id}, doc! {"updatedAt": DateTime::now()}, 0),
    };
    let batches = i64::from(scanned > 0);
    let out = txn::run(ops.store.client(), |s| {
        let db = db.clone();
        let (filter, set) = (filter.clone(), set.clone());
        let chosen = chosen.to_vec();
        let for_index = for_index.map(str::to_string);
        async move {
            let mut entries = Vec::with_capacity(chosen.len());
            if !chosen.is_empty() {
                let mut raw = db
                    .collection::<Document>(COLL_DOCUMENTS)
                    .find(doc! {"_id": {"$in": &chosen}})
                    .projection(doc! {"contentId": 1, "version": 1, "contentHash": 1})
                    .session(&mut *s)
                    .await?;
                while let Some(d) = raw.next(&mut *s).await {
                    let d = d?;
                    let (Ok(id), Ok(cid), Ok(hash)) = (
                        d.get_object_id("_id"),
                        d.get_str("contentId"),
                        d.get_str("contentHash"),
                    ) else {
                        continue;
                    };
                    let v = match d.get("version") {
                        Some(Bson::Int64(i)) => *i,
                        Some(Bson::Int32(i)) => *i as i64,
                        _ => continue,
                    };
                    let e = OutboxEntry::new_pending(id, cid, Op::Upsert, v, hash);
                    entries.push(match &for_index {
                        Some(name) => e.for_index(name),
                        None => e,
                    });
                }
            }
            let n = entries.len() as u64;
            let moved = db
                .collection::<Document>(COLL_SYNC_STATE)
                .update_one(
                    filter,
                    doc! {
                        "$set": set,
                        "$inc": {"scanned": scanned as i64, "enqueued": n as i64, "batches": batches},
                    },
                )
                .session(&mut *s)
                .await?;
            if moved.matched_count == 0 {
                return Ok(Body::Abort(None));
            }
            if n > 0 {
                db.collection::<OutboxEntry>(COLL_OUTBOX)
                    .insert_many(entries)
                    .session(&mut *s)
                    .await?;
            }
            Ok(Body::Commit(Some(n)))
        }
        .boxed()
    })
    .await?;
    out.ok_or_else(|| {
        OpsError::Conflict(format!(
            "the checkpoint `{cp_id}` moved on (another process runs this backfill, or it completed); nothing was written"
        ))
    })
}
