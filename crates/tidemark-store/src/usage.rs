//! The `usage` collection: embedding API tokens (and their estimated cost) per index and UTC
//! day, added by every worker from its embedders' counters, so `tidemark status` can say what
//! each index spent today across all workers. One document per index and day,
//! `{_id: "<index>|<YYYY-MM-DD>", index, day, tokens, cost, updatedAt}`, grown with `$inc`.

use crate::StoreError;
use bson::{doc, DateTime, Document};
use futures::TryStreamExt;
use mongodb::{Collection, Database};

/// The MongoDB collection of usage counters.
pub const COLL_USAGE: &str = "usage";

/// What one index spent on one day.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DayUsage {
    pub index: String,
    pub tokens: u64,
    pub cost: f64,
}

/// The UTC day of `at`, `YYYY-MM-DD`.
pub fn day_of(at: DateTime) -> String {
    at.try_to_rfc3339_string()
        .map(|s| s[..10].to_string())
        .unwrap_or_default()
}

/// The usage counters of one database.
#[derive(Clone)]
pub struct Usage {
    coll: Collection<Document>,
}

impl Usage {
    pub fn new(db: &Database) -> Usage {
        Usage {
            coll: db.collection(COLL_USAGE),
        }
    }

    /// Adds `tokens` and `cost` to `index` on `day`.
    pub async fn add(
        &self,
        index: &str,
        day: &str,
        tokens: u64,
        cost: f64,
    ) -> Result<(), StoreError> {
        self.coll
            .update_one(
                doc! {"_id": format!("{index}|{day}")},
                doc! {
                    "$inc": {"tokens": tokens as i64, "cost": cost},
                    "$set": {"index": index, "day": day, "updatedAt": DateTime::now()},
                },
            )
            .upsert(true)
            .await?;
        Ok(())
    }

    /// Every index's usage on `day`, by index name.
    pub async fn on(&self, day: &str) -> Result<Vec<DayUsage>, StoreError> {
        let docs: Vec<Document> = self
            .coll
            .find(doc! {"day": day})
            .sort(doc! {"index": 1})
            .await?
            .try_collect()
            .await?;
        Ok(docs
            .into_iter()
            .map(|d| DayUsage {
                index: d.get_str("index").unwrap_or_default().to_string(),
                tokens: match d.get("tokens") {
                    Some(bson::Bson::Int64(n)) => *n as u64,
                    Some(bson::Bson::Int32(n)) => *n as u64,
                    _ => 0,
                },
                cost: d.get_f64("cost").unwrap_or(0.0),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_day_is_the_utc_date() {
        // 2026-12-01T23:59:59.999Z and one millisecond later.
        let t = DateTime::from_millis(1_796_169_599_999);
        assert_eq!(day_of(t), "2026-12-01");
        assert_eq!(
            day_of(DateTime::from_millis(1_796_169_600_000)),
            "2026-12-02"
        );
    }
}
