//! The outbox repository: every read and write of `outbox` by status goes through
//! [`Outbox`], with [`OutboxStatus`] and [`OutboxResult`] instead of string literals. The worker
//! claims, renews and marks entries here; `status`, `verify` and `dlq` count and list here; the
//! pending/dead counts and the lag are computed once, in [`Outbox::counts`].
//!
//! Outcomes are written only where the entry is still `pending` and leased by the writing
//! worker, so a worker that lost its lease can never overwrite another's result.

use bson::{doc, oid::ObjectId, Bson, DateTime, Document};
use futures::TryStreamExt;
use mongodb::{Collection, Database};
use std::time::Duration;
use tidemark_core::{OutboxResult, OutboxStatus, COLL_OUTBOX};

const PENDING: OutboxStatus = OutboxStatus::Pending;

/// Pending and dead counts and the age of the oldest pending entry.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct OutboxCounts {
    pub pending: u64,
    pub dead: u64,
    /// `createdAt` of the oldest pending entry.
    pub oldest_pending: Option<DateTime>,
}

impl OutboxCounts {
    /// Outbox lag: the age of the oldest pending entry (zero when nothing is pending).
    pub fn lag(&self, now: DateTime) -> Duration {
        self.oldest_pending
            .map(|t| {
                Duration::from_millis((now.timestamp_millis() - t.timestamp_millis()).max(0) as u64)
            })
            .unwrap_or_default()
    }
}

/// `now + d` as a BSON date.
pub fn later(now: DateTime, d: Duration) -> DateTime {
    DateTime::from_millis(now.timestamp_millis() + d.as_millis() as i64)
}

/// The `outbox` collection, by status. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Outbox {
    coll: Collection<Document>,
}

impl Outbox {
    pub fn new(db: &Database) -> Outbox {
        Outbox {
            coll: db.collection(COLL_OUTBOX),
        }
    }

    /// The raw collection, for queries this type does not name.
    pub fn collection(&self) -> &Collection<Document> {
        &self.coll
    }

    /// Pending entries that are due at `now` and not leased by a live worker.
    pub fn due_filter(now: DateTime) -> Document {
        doc! {
            "status": PENDING,
            "nextAttemptAt": {"$lte": now},
            "$or": [{"lease": null}, {"lease.until": {"$lt": now}}],
        }
    }

    /// Filter of entries with `status`.
    pub fn with_status(status: OutboxStatus) -> Document {
        doc! {"status": status}
    }

    /// Whether any entry is due now.
    pub async fn anything_due(&self) -> mongodb::error::Result<bool> {
        let first = self
            .coll
            .find_one(Self::due_filter(DateTime::now()))
            .projection(doc! {"_id": 1})
            .await?;
        Ok(first.is_some())
    }

    /// Up to `limit` due entries, earliest first: `{_id, documentId}` only.
    pub async fn due(&self, now: DateTime, limit: usize) -> mongodb::error::Result<Vec<Document>> {
        self.coll
            .find(Self::due_filter(now))
            .sort(doc! {"nextAttemptAt": 1})
            .limit(limit as i64)
            .projection(doc! {"documentId": 1})
            .await?
            .try_collect()
            .await
    }

    /// Leases every due pending entry of `docs` to `owner` until `until`; returns the leased
    /// entries (whole documents, parsed by the caller).
    pub async fn lease_documents(
        &self,
        docs: &[ObjectId],
        owner: &str,
        now: DateTime,
        until: DateTime,
    ) -> mongodb::error::Result<Vec<Document>> {
        self.coll
            .update_many(
                doc! {"documentId": {"$in": docs}, "status": PENDING, "nextAttemptAt": {"$lte": now}},
                doc! {
                    "$set": {"lease": {"owner": owner, "until": until}},
                    "$inc": {"deliveries": 1},
                },
            )
            .await?;
        self.coll
            .find(doc! {"documentId": {"$in": docs}, "status": PENDING, "lease.owner": owner})
            .await?
            .try_collect()
            .await
    }

    /// The filter of `ids` still pending and leased by `owner`.
    fn mine(ids: &[ObjectId], owner: &str) -> Document {
        doc! {"_id": {"$in": ids}, "status": PENDING, "lease.owner": owner}
    }

    /// Pushes the leases of `ids` held by `owner` to `until`.
    pub async fn renew(
        &self,
        ids: &[ObjectId],
        owner: &str,
        until: DateTime,
    ) -> mongodb::error::Result<()> {
        self.coll
            .update_many(
                Self::mine(ids, owner),
                doc! {"$set": {"lease.until": until}},
            )
            .await?;
        Ok(())
    }

    /// Marks entries done with `result`.
    pub async fn mark_done(
        &self,
        ids: &[ObjectId],
        owner: &str,
        result: OutboxResult,
    ) -> mongodb::error::Result<()> {
        self.update_mine(
            ids,
            owner,
            doc! {
                "$set": {"status": OutboxStatus::Done, "doneAt": DateTime::now(), "result": result},
                "$unset": {"lease": ""},
            },
        )
        .await
    }

    /// Ends entries as dead with `error` (one more attempt counted).
    pub async fn mark_dead(
        &self,
        ids: &[ObjectId],
        owner: &str,
        error: &str,
    ) -> mongodb::error::Result<()> {
        self.update_mine(
            ids,
            owner,
            doc! {
                "$set": {"status": OutboxStatus::Dead, "lastError": error},
                "$inc": {"attempts": 1},
                "$unset": {"lease": ""},
            },
        )
        .await
    }

    /// Schedules another attempt at `next` (one more attempt counted).
    pub async fn mark_retry(
        &self,
        ids: &[ObjectId],
        owner: &str,
        next: DateTime,
        error: &str,
    ) -> mongodb::error::Result<()> {
        self.update_mine(
            ids,
            owner,
            doc! {
                "$set": {"nextAttemptAt": next, "lastError": error},
                "$inc": {"attempts": 1},
                "$unset": {"lease": ""},
            },
        )
        .await
    }

    /// Hands the leases of `ids` back without counting an attempt.
    pub async fn release(&self, ids: &[ObjectId], owner: &str) -> mongodb::error::Result<()> {
        self.update_mine(ids, owner, doc! {"$unset": {"lease": ""}})
            .await
    }

    /// Hands back every lease `owner` holds.
    pub async fn release_owner(&self, owner: &str) -> mongodb::error::Result<()> {
        self.coll
            .update_many(
                doc! {"status": PENDING, "lease.owner": owner},
                doc! {"$unset": {"lease": ""}},
            )
            .await?;
        Ok(())
    }

    async fn update_mine(
        &self,
        ids: &[ObjectId],
        owner: &str,
        update: Document,
    ) -> mongodb::error::Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        self.coll
            .update_many(Self::mine(ids, owner), update)
            .await?;
        Ok(())
    }

    /// Ends an entry that violates the contract (no lease needed: nobody can process it).
    pub async fn mark_invalid(&self, id: ObjectId, error: &str) -> mongodb::error::Result<()> {
        self.coll
            .update_one(
                doc! {"_id": id, "status": PENDING},
                doc! {"$set": {"status": OutboxStatus::Dead, "lastError": error}, "$unset": {"lease": ""}},
            )
            .await?;
        Ok(())
    }

    /// When the earliest pending entry becomes claimable (its `nextAttemptAt`, or its lease's
    /// end if later); None when nothing is pending.
    pub async fn next_due(&self) -> mongodb::error::Result<Option<DateTime>> {
        let first = self
            .coll
            .find_one(Self::with_status(PENDING))
            .sort(doc! {"nextAttemptAt": 1})
            .projection(doc! {"nextAttemptAt": 1, "lease": 1})
            .await?;
        let Some(d) = first else { return Ok(None) };
        let mut at = d
            .get_datetime("nextAttemptAt")
            .map(|t| t.timestamp_millis())
            .unwrap_or_else(|_| DateTime::now().timestamp_millis());
        if let Ok(u) = d
            .get_document("lease")
            .and_then(|l| l.get_datetime("until"))
        {
            at = at.max(u.timestamp_millis());
        }
        Ok(Some(DateTime::from_millis(at)))
    }

    /// Pending and dead counts and the oldest pending entry's `createdAt`.
    pub async fn counts(&self) -> mongodb::error::Result<OutboxCounts> {
        let pending = self
            .coll
            .count_documents(Self::with_status(PENDING))
            .await?;
        let dead = self
            .coll
            .count_documents(Self::with_status(OutboxStatus::Dead))
            .await?;
        let oldest = self
            .coll
            .find_one(Self::with_status(PENDING))
            .sort(doc! {"createdAt": 1})
            .projection(doc! {"createdAt": 1})
            .await?;
        Ok(OutboxCounts {
            pending,
            dead,
            oldest_pending: oldest.and_then(|d| match d.get("createdAt") {
                Some(Bson::DateTime(t)) => Some(*t),
                _ => None,
            }),
        })
    }

    /// How many entries of `docs` are pending.
    pub async fn pending_of_documents(&self, docs: &[ObjectId]) -> mongodb::error::Result<u64> {
        self.coll
            .count_documents(doc! {"documentId": {"$in": docs}, "status": PENDING})
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_is_the_age_of_the_oldest_pending_entry() {
        let now = DateTime::from_millis(10_000);
        let c = OutboxCounts {
            pending: 2,
            dead: 0,
            oldest_pending: Some(DateTime::from_millis(7_500)),
        };
        assert_eq!(c.lag(now), Duration::from_millis(2_500));
        assert_eq!(OutboxCounts::default().lag(now), Duration::ZERO);
        let future = OutboxCounts {
            oldest_pending: Some(DateTime::from_millis(12_000)),
            ..c
        };
        assert_eq!(
            future.lag(now),
            Duration::ZERO,
            "clock skew never goes negative"
        );
    }

    #[test]
    fn due_filter_uses_the_contract_status() {
        let f = Outbox::due_filter(DateTime::from_millis(1));
        assert_eq!(f.get_str("status").unwrap(), "pending");
    }
}
