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
use tidemark_core::{OutboxEntry, OutboxResult, OutboxStatus, COLL_OUTBOX};

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

/// One page of the claim query (see [`Outbox::due_page`]).
#[derive(Debug, Default)]
pub struct DuePage {
    /// Due entries not leased by a live worker: `{_id, documentId, nextAttemptAt}`.
    pub rows: Vec<Document>,
    /// `nextAttemptAt` (milliseconds) of each of `rows`, earliest first.
    pub times: Vec<i64>,
    /// How many entries the page found, leased or not (a full page: more may follow).
    pub found: usize,
    /// The last entry's `nextAttemptAt`, where the next page starts.
    pub last: Option<DateTime>,
}

/// Whether `entry` holds a lease that is still live at `now`.
pub fn is_leased(entry: &Document, now: DateTime) -> bool {
    match entry
        .get_document("lease")
        .and_then(|l| l.get_datetime("until"))
    {
        Ok(until) => *until >= now,
        Err(_) => false,
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

    /// Pending entries with `after < nextAttemptAt <= upper`: fields of the
    /// `status_nextAttemptAt` index only. Whether a lease is live is decided by [`is_leased`]
    /// on what this finds, not in the filter: a server may give up the index for a predicate
    /// it does not cover (SecantusDB scans the collection for `lease.until`, 35x slower at
    /// 100,000 pending entries).
    pub fn due_filter(upper: DateTime, after: Option<DateTime>) -> Document {
        let mut range = doc! {"$lte": upper};
        if let Some(a) = after {
            range.insert("$gt", a);
        }
        doc! {"status": PENDING, "nextAttemptAt": range}
    }

    /// Filter of entries with `status`.
    pub fn with_status(status: OutboxStatus) -> Document {
        doc! {"status": status}
    }

    /// Whether any entry is due now (an answer of only live leases counts as yes when it is
    /// full: entries may be due behind them).
    pub async fn anything_due(&self) -> mongodb::error::Result<bool> {
        const PAGE: usize = 16;
        let now = DateTime::now();
        let page = self.due_page(now, now, None, PAGE).await?;
        Ok(!page.rows.is_empty() || page.found == PAGE)
    }

    /// One page of the claim query, earliest first: up to `limit` pending entries with `after <
    /// nextAttemptAt <= min(upper, now)`; `rows` are those not leased by a live worker at
    /// `now` (`{_id, documentId, nextAttemptAt, indexes}`, with their `times`), `found` how many entries
    /// the page held, leased or not.
    pub async fn due_page(
        &self,
        now: DateTime,
        upper: DateTime,
        after: Option<DateTime>,
        limit: usize,
    ) -> mongodb::error::Result<DuePage> {
        let found: Vec<Document> = self
            .coll
            .find(Self::due_filter(upper.min(now), after))
            .sort(doc! {"nextAttemptAt": 1})
            .limit(limit as i64)
            .batch_size(limit.min(u32::MAX as usize) as u32)
            .projection(doc! {"documentId": 1, "nextAttemptAt": 1, "lease": 1, "indexes": 1})
            .await?
            .try_collect()
            .await?;
        let mut page = DuePage {
            found: found.len(),
            ..DuePage::default()
        };
        for mut d in found {
            let at = match d.get("nextAttemptAt") {
                Some(Bson::DateTime(t)) => *t,
                _ => upper,
            };
            page.last = Some(at);
            if !is_leased(&d, now) {
                d.remove("lease");
                page.rows.push(d);
                page.times.push(at.timestamp_millis());
            }
        }
        Ok(page)
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

    /// Inserts new entries (in no particular order; each is a document of its own).
    pub async fn insert(&self, entries: Vec<OutboxEntry>) -> mongodb::error::Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        self.coll
            .clone_with_type::<OutboxEntry>()
            .insert_many(entries)
            .ordered(false)
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

    /// Pending and dead counts and the oldest pending entry's `createdAt`. (The worker's
    /// gauges take the two apart, see `tidemark_worker`'s `gauges`.)
    pub async fn counts(&self) -> mongodb::error::Result<OutboxCounts> {
        let (pending, dead) = self.pending_and_dead().await?;
        Ok(OutboxCounts {
            pending,
            dead,
            oldest_pending: self.oldest_pending(None).await?,
        })
    }

    /// How many entries are pending and how many dead (each count walks its entries on
    /// some servers).
    pub async fn pending_and_dead(&self) -> mongodb::error::Result<(u64, u64)> {
        let pending = self
            .coll
            .count_documents(Self::with_status(PENDING))
            .await?;
        let dead = self
            .coll
            .count_documents(Self::with_status(OutboxStatus::Dead))
            .await?;
        Ok((pending, dead))
    }

    /// `createdAt` of the oldest pending entry. From `hint`, it asks for the oldest entry
    /// created up to each of [`oldest_bounds`] until one is found (the oldest below any bound
    /// is the oldest of all), then for all; each answer costs the pending entries below its
    /// bound on a server that walks the range before the limit.
    pub async fn oldest_pending(
        &self,
        hint: Option<DateTime>,
    ) -> mongodb::error::Result<Option<DateTime>> {
        let oldest_below = |bound: Option<DateTime>| {
            let mut filter = Self::with_status(PENDING);
            if let Some(b) = bound {
                filter.insert("createdAt", doc! {"$lte": b});
            }
            self.coll
                .find_one(filter)
                .sort(doc! {"createdAt": 1})
                .projection(doc! {"createdAt": 1})
        };
        let created = |d: Option<Document>| match d.as_ref().and_then(|d| d.get("createdAt")) {
            Some(Bson::DateTime(t)) => Some(*t),
            _ => None,
        };
        if let Some(h) = hint {
            let now = DateTime::now().timestamp_millis();
            for bound in oldest_bounds(h.timestamp_millis(), now) {
                if let Some(t) = created(oldest_below(Some(DateTime::from_millis(bound))).await?) {
                    return Ok(Some(t));
                }
            }
        }
        Ok(created(oldest_below(None).await?))
    }

    /// How many entries of `docs` are pending.
    pub async fn pending_of_documents(&self, docs: &[ObjectId]) -> mongodb::error::Result<u64> {
        self.coll
            .count_documents(doc! {"documentId": {"$in": docs}, "status": PENDING})
            .await
    }
}

/// The first widening of the oldest-pending search, in milliseconds. A backlog written in
/// bulk holds thousands of entries per second of `createdAt`, and the search pays for every
/// pending entry below its bound: a first step of a second cost a gauge refresh a scan of
/// most of a 20,000-entry backlog, where 16 ms costs a few hundred entries.
const OLDEST_FIRST_STEP_MS: i64 = 16;

/// The `createdAt` bounds the oldest-pending search asks for from `hint` (the previous oldest)
/// up to `now`: `hint` itself, then a distance from it that doubles from
/// [`OLDEST_FIRST_STEP_MS`], so an oldest entry that moved by `d` is found in about
/// `log2(d / 16 ms)` cheap queries.
fn oldest_bounds(hint: i64, now: i64) -> impl Iterator<Item = i64> {
    let mut step = OLDEST_FIRST_STEP_MS;
    let mut bound = hint;
    std::iter::from_fn(move || {
        if bound >= now {
            return None;
        }
        let b = bound;
        bound = bound.saturating_add(step);
        step = step.saturating_mul(2);
        Some(b)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oldest_bounds_start_at_the_hint_and_double_their_distance_until_now() {
        let b: Vec<i64> = oldest_bounds(1_000, 1_200).collect();
        assert_eq!(b, vec![1_000, 1_016, 1_048, 1_112]);
        assert!(
            oldest_bounds(5_000, 5_000).next().is_none(),
            "a hint at now: straight to the unbounded query"
        );
        let far: Vec<i64> = oldest_bounds(0, 3_600_000).collect();
        assert!(far.len() <= 19, "an hour away in {} queries", far.len());
        assert!(far.windows(2).all(|w| w[0] < w[1]));
    }

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
    fn due_filter_uses_the_contract_status_and_only_indexed_fields() {
        let f = Outbox::due_filter(DateTime::from_millis(5), None);
        assert_eq!(f.get_str("status").unwrap(), "pending");
        assert_eq!(
            f.get_document("nextAttemptAt").unwrap(),
            &doc! {"$lte": DateTime::from_millis(5)}
        );
        assert_eq!(f.keys().count(), 2, "status and nextAttemptAt: {f}");
        let paged = Outbox::due_filter(DateTime::from_millis(5), Some(DateTime::from_millis(2)));
        assert_eq!(
            paged.get_document("nextAttemptAt").unwrap(),
            &doc! {"$lte": DateTime::from_millis(5), "$gt": DateTime::from_millis(2)}
        );
    }

    #[test]
    fn a_lease_is_live_until_its_end() {
        let now = DateTime::from_millis(1_000);
        let with =
            |until: i64| doc! {"lease": {"owner": "w", "until": DateTime::from_millis(until)}};
        assert!(is_leased(&with(1_000), now));
        assert!(is_leased(&with(5_000), now));
        assert!(!is_leased(&with(999), now), "an expired lease is free");
        assert!(!is_leased(&doc! {"_id": 1}, now), "no lease");
        assert!(!is_leased(&doc! {"lease": null}, now), "a null lease");
    }
}
