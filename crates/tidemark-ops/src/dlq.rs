//! Dead letters: outbox entries with `status: "dead"` (a permanent error or too many attempts).
//!
//! - [`list`]: newest first (by `_id`, i.e. creation), in pages: pass the last id of a page as
//!   `before` to get the next one.
//! - [`show`]: the whole entry as JSON (relaxed extended JSON).
//! - [`retry`] / [`retry_all`]: back to `pending` with `attempts: 0`, `nextAttemptAt: now`, no
//!   lease, and `lastError` appended to `errorHistory` (earlier errors are never lost). Only
//!   dead entries change; others are reported as skipped. `retry_all` walks the dead entries
//!   once in `_id` order, so an entry that dies again during the walk is not retried twice.
//! - [`purge`]: deletes dead entries whose last attempt (`nextAttemptAt`, which is the due
//!   time of the attempt that killed it, or of the last retry) and creation are both older than
//!   the given age. Pending and done entries are never touched.

use tidemark_core::OutboxStatus;
use crate::{ago, rfc3339, Ops, OpsError};
use bson::{doc, oid::ObjectId, Bson, DateTime, Document};
use futures::TryStreamExt;
use serde::Serialize;
use std::time::Duration;
use tidemark_core::COLL_OUTBOX;

/// One dead entry in a listing.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DeadEntry {
    pub id: String,
    pub content_id: String,
    pub document_id: String,
    pub op: String,
    pub version: i64,
    pub attempts: i64,
    pub created_at: String,
    pub last_attempt_at: String,
    pub last_error: Option<String>,
    /// Errors of earlier lives (before retries).
    pub previous_errors: usize,
}

/// A page of dead entries.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DeadPage {
    /// All dead entries (not only this page).
    pub total: u64,
    pub entries: Vec<DeadEntry>,
    /// Pass as `before` for the next page; `None` on the last page.
    pub next_before: Option<String>,
}

fn int(d: &Document, k: &str) -> i64 {
    match d.get(k) {
        Some(Bson::Int32(i)) => *i as i64,
        Some(Bson::Int64(i)) => *i,
        Some(Bson::Double(f)) => *f as i64,
        _ => 0,
    }
}

fn date(d: &Document, k: &str) -> String {
    d.get_datetime(k).map(|t| rfc3339(*t)).unwrap_or_default()
}

fn dead_entry(d: &Document) -> DeadEntry {
    DeadEntry {
        id: d
            .get_object_id("_id")
            .map(|i| i.to_hex())
            .unwrap_or_default(),
        content_id: d.get_str("contentId").unwrap_or_default().to_string(),
        document_id: d
            .get_object_id("documentId")
            .map(|i| i.to_hex())
            .unwrap_or_default(),
        op: d.get_str("op").unwrap_or_default().to_string(),
        version: int(d, "version"),
        attempts: int(d, "attempts"),
        created_at: date(d, "createdAt"),
        last_attempt_at: date(d, "nextAttemptAt"),
        last_error: d.get_str("lastError").ok().map(str::to_string),
        previous_errors: d.get_array("errorHistory").map(|a| a.len()).unwrap_or(0),
    }
}

fn outbox(ops: &Ops) -> mongodb::Collection<Document> {
    ops.store.database().collection(COLL_OUTBOX)
}

/// One page of dead entries, newest first, strictly older than `before` when given.
pub async fn list(ops: &Ops, limit: usize, before: Option<ObjectId>) -> Result<DeadPage, OpsError> {
    let limit = limit.clamp(1, 10_000);
    let coll = outbox(ops);
    let total = coll.count_documents(doc! {"status": OutboxStatus::Dead}).await?;
    let mut filter = doc! {"status": OutboxStatus::Dead};
    if let Some(b) = before {
        filter.insert("_id", doc! {"$lt": b});
    }
    let mut cursor = coll
        .find(filter)
        .sort(doc! {"_id": -1})
        .limit(limit as i64 + 1)
        .projection(doc! {"lease": 0})
        .await?;
    let mut entries = Vec::new();
    let mut more = false;
    while let Some(d) = cursor.try_next().await? {
        if entries.len() == limit {
            more = true;
            break;
        }
        entries.push(dead_entry(&d));
    }
    let next_before = if more {
        entries.last().map(|e| e.id.clone())
    } else {
        None
    };
    Ok(DeadPage {
        total,
        entries,
        next_before,
    })
}

/// The whole entry (any status) as relaxed extended JSON, `None` when there is no such entry.
pub async fn show(ops: &Ops, id: ObjectId) -> Result<Option<serde_json::Value>, OpsError> {
    let d = outbox(ops).find_one(doc! {"_id": id}).await?;
    Ok(d.map(|d| Bson::Document(d).into_relaxed_extjson()))
}

/// What a retry did.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RetryReport {
    /// Entries put back to pending.
    pub retried: Vec<String>,
    /// Ids given that are not dead entries (unknown, or pending/done).
    pub skipped: Vec<String>,
}

/// The update of a retry: a pipeline, so `lastError` moves into `errorHistory` atomically.
fn retry_update(now: DateTime) -> Vec<Document> {
    vec![
        doc! {"$set": {
            "errorHistory": {"$concatArrays": [
                {"$ifNull": ["$errorHistory", []]},
                {"$cond": [{"$eq": [{"$type": "$lastError"}, "string"]}, ["$lastError"], []]},
            ]},
            "status": OutboxStatus::Pending,
            "attempts": 0_i32,
            "nextAttemptAt": now,
        }},
        doc! {"$unset": ["lease", "lastError", "doneAt", "result"]},
    ]
}

/// Puts the given dead entries back to pending (see the module doc).
pub async fn retry(ops: &Ops, ids: &[ObjectId]) -> Result<RetryReport, OpsError> {
    let coll = outbox(ops);
    let mut report = RetryReport::default();
    for chunk in ids.chunks(1000) {
        let dead: Vec<ObjectId> = coll
            .distinct("_id", doc! {"_id": {"$in": chunk}, "status": OutboxStatus::Dead})
            .await?
            .into_iter()
            .filter_map(|b| b.as_object_id())
            .collect();
        if !dead.is_empty() {
            coll.update_many(
                doc! {"_id": {"$in": &dead}, "status": OutboxStatus::Dead},
                retry_update(DateTime::now()),
            )
            .await?;
        }
        for id in chunk {
            if dead.contains(id) {
                report.retried.push(id.to_hex());
            } else {
                report.skipped.push(id.to_hex());
            }
        }
    }
    tracing::info!(
        retried = report.retried.len(),
        skipped = report.skipped.len(),
        "dead entries retried"
    );
    Ok(report)
}

/// Puts every dead entry back to pending, `batch` at a time; returns how many.
pub async fn retry_all(
    ops: &Ops,
    batch: usize,
    progress: &dyn crate::Progress,
) -> Result<u64, OpsError> {
    let coll = outbox(ops);
    let total = coll.count_documents(doc! {"status": OutboxStatus::Dead}).await?;
    progress.phase("retry", Some(total));
    let mut last: Option<ObjectId> = None;
    let mut n = 0;
    loop {
        let mut filter = doc! {"status": OutboxStatus::Dead};
        if let Some(l) = last {
            filter.insert("_id", doc! {"$gt": l});
        }
        let ids: Vec<ObjectId> = coll
            .find(filter)
            .sort(doc! {"_id": 1})
            .limit(batch.max(1) as i64)
            .projection(doc! {"_id": 1})
            .await?
            .try_collect::<Vec<Document>>()
            .await?
            .iter()
            .filter_map(|d| d.get_object_id("_id").ok())
            .collect();
        let Some(&l) = ids.last() else { break };
        last = Some(l);
        let r = coll
            .update_many(
                doc! {"_id": {"$in": &ids}, "status": OutboxStatus::Dead},
                retry_update(DateTime::now()),
            )
            .await?;
        n += r.modified_count;
        progress.inc(ids.len() as u64);
    }
    tracing::info!(retried = n, "all dead entries retried");
    Ok(n)
}

/// Deletes dead entries older than `older_than` (see the module doc); returns how many.
pub async fn purge(ops: &Ops, older_than: Duration) -> Result<u64, OpsError> {
    let cutoff = ago(older_than);
    let r = outbox(ops)
        .delete_many(doc! {
            "status": OutboxStatus::Dead,
            "nextAttemptAt": {"$lt": cutoff},
            "createdAt": {"$lt": cutoff},
        })
        .await?;
    tracing::info!(deleted = r.deleted_count, older_than = %humantime::format_duration(older_than), "dead entries purged");
    Ok(r.deleted_count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_update_resets_and_keeps_history() {
        let u = retry_update(DateTime::from_millis(0));
        let set = u[0].get_document("$set").unwrap();
        assert_eq!(set.get_str("status").unwrap(), "pending");
        assert_eq!(set.get_i32("attempts").unwrap(), 0);
        assert!(set.contains_key("errorHistory"));
        let unset = u[1].get_array("$unset").unwrap();
        assert!(unset.contains(&Bson::String("lease".into())));
        assert!(unset.contains(&Bson::String("lastError".into())));
    }
}
