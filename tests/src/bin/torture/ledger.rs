//! What the writers were told: every acknowledged `(contentId, version)`, the contentIds whose
//! write failed (it may or may not have committed), and the live ids to update or delete.
//! Checked against the outbox: nothing acknowledged lost, nothing committed twice.

use rand::Rng;
use std::collections::{HashMap, HashSet};
use tidemark_core::OutboxEntry;

/// Violations found by [`Ledger::audit`].
#[derive(Debug, Default, Clone)]
pub struct Audit {
    /// Acknowledged writes without an outbox entry.
    pub lost: Vec<String>,
    /// `(contentId, version)` with more than one entry, or an entry of a write nobody was
    /// told about whose contentId never saw a failed write.
    pub duplicated: Vec<String>,
}

#[derive(Default)]
pub struct Ledger {
    acked: Vec<(String, i64)>,
    unsure: HashSet<String>,
    live: Vec<String>,
    next: usize,
}

impl Ledger {
    /// A fresh contentId.
    pub fn new_id(&mut self) -> String {
        self.next += 1;
        format!("d{}", self.next)
    }

    /// A live contentId, if any.
    pub fn pick_live(&self, rng: &mut impl Rng) -> Option<String> {
        if self.live.is_empty() {
            None
        } else {
            Some(self.live[rng.random_range(0..self.live.len())].clone())
        }
    }

    pub fn put_acked(&mut self, id: &str, version: i64) {
        self.acked.push((id.to_string(), version));
        if !self.live.iter().any(|l| l == id) {
            self.live.push(id.to_string());
        }
    }

    pub fn delete_acked(&mut self, id: &str, version: i64) {
        self.acked.push((id.to_string(), version));
        self.live.retain(|l| l != id);
    }

    /// A write of `id` failed: it may or may not have committed.
    pub fn failed(&mut self, id: &str) {
        self.unsure.insert(id.to_string());
    }

    pub fn acked_count(&self) -> usize {
        self.acked.len()
    }

    /// Compares with every outbox entry.
    pub fn audit(&self, entries: &[OutboxEntry]) -> Audit {
        let mut seen: HashMap<(String, i64), usize> = HashMap::new();
        for e in entries {
            *seen.entry((e.content_id.clone(), e.version)).or_default() += 1;
        }
        let mut a = Audit::default();
        let acked: HashSet<&(String, i64)> = self.acked.iter().collect();
        for k in &self.acked {
            if !seen.contains_key(k) {
                a.lost.push(format!("{} v{}", k.0, k.1));
            }
        }
        for ((id, v), n) in &seen {
            let key = (id.clone(), *v);
            if *n > 1 {
                a.duplicated.push(format!("{id} v{v} x{n}"));
            } else if !acked.contains(&key) && !self.unsure.contains(id) {
                a.duplicated
                    .push(format!("{id} v{v}: committed but never acknowledged"));
            }
        }
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, v: i64) -> OutboxEntry {
        let raw = bson::doc! {
            "_id": bson::oid::ObjectId::new(), "schemaVersion": 1,
            "documentId": bson::oid::ObjectId::new(), "contentId": id, "op": "upsert",
            "version": v, "contentHash": "h", "status": "done", "attempts": 0,
            "nextAttemptAt": bson::DateTime::now(), "createdAt": bson::DateTime::now(),
        };
        bson::from_document(raw).unwrap()
    }

    #[test]
    fn finds_lost_and_duplicated_writes() {
        let mut l = Ledger::default();
        l.put_acked("a", 1);
        l.put_acked("b", 1);
        l.failed("c");
        let audit = l.audit(&[entry("a", 1), entry("a", 1), entry("c", 1), entry("x", 1)]);
        assert_eq!(audit.lost, vec!["b v1"]);
        assert_eq!(audit.duplicated.len(), 2, "{audit:?}");
    }
}
