//! Duplicate legacy ids: the records of one id are merged into one document. The winner is the
//! record with the newest (normalised) timestamp, then the latest `_id`; the others are
//! accounted as merged into the winner's contentId.

use bson::oid::ObjectId;
use serde::Serialize;
use std::collections::HashMap;

/// What the merge needs of one migratable record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub oid: ObjectId,
    pub id: String,
    pub time_ms: i64,
    /// The contentHash the record's text would get (for verify).
    pub hash: String,
}

/// Why the winner won.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WinReason {
    NewestTimestamp,
    LatestId,
}

/// A record merged into another of the same id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Merged {
    pub id: String,
    #[serde(serialize_with = "hex")]
    pub oid: ObjectId,
    #[serde(serialize_with = "hex")]
    pub winner: ObjectId,
    pub reason: WinReason,
}

fn hex<S: serde::Serializer>(o: &ObjectId, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&o.to_hex())
}

/// The outcome of the merge of one collection.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Dedup {
    /// Legacy id -> the winning record.
    pub winners: HashMap<String, Summary>,
    pub merged: Vec<Merged>,
}

impl Dedup {
    /// True when `oid` is the winner of its id.
    pub fn is_winner(&self, id: &str, oid: &ObjectId) -> bool {
        self.winners.get(id).is_some_and(|w| w.oid == *oid)
    }

    /// Number of ids that had more than one record.
    pub fn duplicate_ids(&self) -> usize {
        let mut ids: Vec<&str> = self.merged.iter().map(|m| m.id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        ids.len()
    }
}

fn beats(a: &Summary, b: &Summary) -> bool {
    (a.time_ms, a.oid.bytes()) > (b.time_ms, b.oid.bytes())
}

/// Chooses the winner of every id.
pub fn merge(records: Vec<Summary>) -> Dedup {
    let mut winners: HashMap<String, Summary> = HashMap::new();
    let mut losers: Vec<Summary> = Vec::new();
    for r in records {
        match winners.get_mut(&r.id) {
            None => {
                winners.insert(r.id.clone(), r);
            }
            Some(w) if beats(&r, w) => losers.push(std::mem::replace(w, r)),
            Some(_) => losers.push(r),
        }
    }
    let mut merged: Vec<Merged> = losers
        .into_iter()
        .map(|l| {
            let w = &winners[&l.id];
            let reason = if w.time_ms != l.time_ms {
                WinReason::NewestTimestamp
            } else {
                WinReason::LatestId
            };
            Merged {
                id: l.id,
                oid: l.oid,
                winner: w.oid,
                reason,
            }
        })
        .collect();
    merged.sort_by(|a, b| (&a.id, a.oid).cmp(&(&b.id, b.oid)));
    Dedup { winners, merged }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oid(n: u8) -> ObjectId {
        let mut b = [0u8; 12];
        b[11] = n;
        ObjectId::from_bytes(b)
    }

    fn s(id: &str, n: u8, t: i64) -> Summary {
        Summary {
            oid: oid(n),
            id: id.into(),
            time_ms: t,
            hash: String::new(),
        }
    }

    #[test]
    fn unique_ids_all_win() {
        let d = merge(vec![s("a", 1, 10), s("b", 2, 5)]);
        assert_eq!(d.winners.len(), 2);
        assert!(d.merged.is_empty());
        assert_eq!(d.duplicate_ids(), 0);
    }

    #[test]
    fn newest_timestamp_wins_whatever_the_order() {
        for order in [vec![0, 1, 2], vec![2, 1, 0], vec![1, 2, 0]] {
            let all = [s("a", 9, 100), s("a", 3, 300), s("a", 5, 200)];
            let d = merge(order.iter().map(|i| all[*i].clone()).collect());
            assert_eq!(d.winners["a"].oid, oid(3), "{order:?}");
            assert_eq!(d.merged.len(), 2);
            assert!(d.merged.iter().all(|m| m.winner == oid(3)));
            assert!(d
                .merged
                .iter()
                .all(|m| m.reason == WinReason::NewestTimestamp));
        }
    }

    #[test]
    fn equal_timestamps_latest_id_wins() {
        let d = merge(vec![s("a", 7, 100), s("a", 4, 100)]);
        assert_eq!(d.winners["a"].oid, oid(7));
        assert_eq!(d.merged[0].oid, oid(4));
        assert_eq!(d.merged[0].reason, WinReason::LatestId);
        assert!(d.is_winner("a", &oid(7)));
        assert!(!d.is_winner("a", &oid(4)));
        assert_eq!(d.duplicate_ids(), 1);
    }

    #[test]
    fn reasons_are_per_loser() {
        let d = merge(vec![s("a", 1, 100), s("a", 2, 200), s("a", 3, 200)]);
        assert_eq!(d.winners["a"].oid, oid(3));
        let by: HashMap<ObjectId, WinReason> = d.merged.iter().map(|m| (m.oid, m.reason)).collect();
        assert_eq!(by[&oid(1)], WinReason::NewestTimestamp);
        assert_eq!(by[&oid(2)], WinReason::LatestId);
    }
}
