//! Hand-off: while an index is being built, an application's write is carried out in the
//! indexes search can read (the active one, and a retired one kept for rollback) and its part
//! for the building index is handed to the build's queue, as a new outbox entry for that index
//! only. The write is done (visible in search, `Consistency::VectorVisible` returns) as soon as
//! the active index has it; the building index gets it with the build's own upserts, in the
//! same requests, instead of one more upsert on the live write's path. Nothing is lost: the
//! new entry is inserted before the live one is marked done, so a crash between the two only
//! repeats the hand-off (the second entry is coalesced or `unchanged`).

use crate::plan::Outcome;
use bson::{oid::ObjectId, DateTime};
use std::collections::HashMap;
use tidemark_core::{OutboxEntry, OutboxResult, OutboxStatus};

/// One lane as the hand-off sees it: the index's name and whether it is being built.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LaneKind<'a> {
    pub name: &'a str,
    pub building: bool,
}

/// The entries whose part for building indexes is handed off, with those indexes' names: an
/// entry some readable (not building) lane carries out and some building lane needs. An
/// entry only building lanes need (the build's own) is carried out there, as before.
pub(crate) fn handoffs(
    primary: &[OutboxEntry],
    lanes: &[LaneKind<'_>],
) -> HashMap<ObjectId, Vec<String>> {
    let mut out = HashMap::new();
    for e in primary {
        let readable = lanes.iter().any(|l| !l.building && e.applies_to(l.name));
        let building: Vec<String> = lanes
            .iter()
            .filter(|l| l.building && e.applies_to(l.name))
            .map(|l| l.name.to_string())
            .collect();
        if readable && !building.is_empty() {
            out.insert(e.id, building);
        }
    }
    out
}

/// Whether an entry that ended with `outcome` in the readable lanes hands its building part
/// on. A failed or released entry does not (it is tried again whole, its building part too);
/// a superseded one leaves the work to the newer entry, which is handed off in its turn.
pub(crate) fn hands_on(outcome: Option<&Outcome>) -> bool {
    matches!(
        outcome,
        Some(Outcome::Done(
            OutboxResult::Indexed | OutboxResult::Unchanged | OutboxResult::Deleted
        ))
    )
}

/// The entry that carries `e`'s write to `indexes`: pending, due now, never delivered, naming
/// `e` in `handoffOf`. It keeps `e`'s commit time, so its lag is the building index's
/// commit-to-done lag.
pub(crate) fn entry_for(e: &OutboxEntry, indexes: Vec<String>) -> OutboxEntry {
    OutboxEntry {
        id: ObjectId::new(),
        status: OutboxStatus::Pending,
        attempts: 0,
        next_attempt_at: DateTime::now(),
        lease: None,
        done_at: None,
        result: None,
        last_error: None,
        error_history: Vec::new(),
        deliveries: 0,
        indexes,
        handoff_of: Some(e.id),
        ..e.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Failure;
    use tidemark_core::Op;

    fn entry(doc: u8) -> OutboxEntry {
        let mut b = [0u8; 12];
        b[11] = doc;
        OutboxEntry::new_pending(ObjectId::from_bytes(b), "c", Op::Upsert, 1, "h")
    }

    const MAIN: LaneKind<'static> = LaneKind {
        name: "main",
        building: false,
    };
    const OLD: LaneKind<'static> = LaneKind {
        name: "old",
        building: false,
    };
    const V2: LaneKind<'static> = LaneKind {
        name: "v2",
        building: true,
    };
    const V3: LaneKind<'static> = LaneKind {
        name: "v3",
        building: true,
    };

    #[test]
    fn a_live_entry_hands_its_building_part_on() {
        let live = entry(1);
        let got = handoffs(std::slice::from_ref(&live), &[MAIN, V2, V3]);
        assert_eq!(
            got.get(&live.id),
            Some(&vec!["v2".to_string(), "v3".into()])
        );
    }

    #[test]
    fn nothing_is_handed_on_without_a_build() {
        let live = entry(1);
        assert!(handoffs(std::slice::from_ref(&live), &[MAIN]).is_empty());
        assert!(handoffs(&[live], &[MAIN, OLD]).is_empty());
    }

    #[test]
    fn a_builds_own_entry_is_carried_out_in_its_lane() {
        let build = entry(1).for_index("v2");
        assert!(handoffs(&[build], &[MAIN, V2]).is_empty());
    }

    #[test]
    fn an_entry_for_a_retired_and_a_building_index_hands_on_the_building_part() {
        let mut e = entry(1).for_index("old");
        e.indexes.push("v2".into());
        let got = handoffs(std::slice::from_ref(&e), &[MAIN, OLD, V2, V3]);
        assert_eq!(got.get(&e.id), Some(&vec!["v2".to_string()]));
    }

    #[test]
    fn only_a_done_entry_hands_on() {
        let done = |r| Some(Outcome::Done(r));
        assert!(hands_on(done(OutboxResult::Indexed).as_ref()));
        assert!(hands_on(done(OutboxResult::Unchanged).as_ref()));
        assert!(hands_on(done(OutboxResult::Deleted).as_ref()));
        assert!(!hands_on(done(OutboxResult::Superseded).as_ref()));
        assert!(!hands_on(Some(&Outcome::Release)));
        let failed = Outcome::Failed(Failure::transient("embed", "down".into()));
        assert!(!hands_on(Some(&failed)));
        assert!(!hands_on(None));
    }

    #[test]
    fn the_new_entry_is_fresh_and_keeps_the_commit_time() {
        let mut e = entry(1);
        e.attempts = 3;
        e.deliveries = 2;
        e.status = OutboxStatus::Pending;
        e.last_error = Some("earlier".into());
        e.created_at = DateTime::from_millis(1_000);
        e.new_document = true;
        let n = entry_for(&e, vec!["v2".into()]);
        assert_ne!(n.id, e.id);
        assert_eq!(n.indexes, vec!["v2".to_string()]);
        assert_eq!(n.handoff_of, Some(e.id));
        assert_eq!((n.attempts, n.deliveries), (0, 0));
        assert!(n.last_error.is_none() && n.lease.is_none() && n.done_at.is_none());
        assert_eq!(n.created_at, e.created_at);
        assert_eq!((n.document_id, n.version), (e.document_id, e.version));
        assert!(
            n.new_document,
            "no vector of a new document is in the building index either"
        );
        assert!(n.next_attempt_at.timestamp_millis() > 1_000);
    }
}
