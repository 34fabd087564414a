//! Hand-off: while an index is being built, an application's write is written to the indexes
//! search can read (the active one, and a retired one kept for rollback) and to the building
//! one side by side, and is done when all have it. When its part for the building index
//! fails, or has not finished [`HANDOFF_AFTER`] after the readable indexes', that part is
//! handed to the build's queue as a new outbox entry for the building index only: the write
//! is done (visible in search, `Consistency::VectorVisible` returns) once the active index has
//! it, so a failing or slow building index never holds live writes. A batch claimed while
//! live writes queue up behind the worker (`claim::live_behind`) hands those parts on without
//! writing them: two writes per change is more than the vector store takes then. Nothing is
//! lost: the new entry is inserted before the live one is marked done, so a crash between the
//! two only repeats the hand-off (the second entry is coalesced or `unchanged`). In the common
//! case (the building index as quick as the active one) nothing is handed on and no write is
//! added.

use crate::plan::Outcome;
use bson::{oid::ObjectId, DateTime};
use std::collections::HashMap;
use std::time::Duration;
use tidemark_core::build_cursor::BuildCursor;
use tidemark_core::{OutboxEntry, OutboxResult, OutboxStatus};

/// How long a live entry's part for a building index may take after the readable indexes
/// have it before it is handed on: about one more Chroma upsert of a busy batch. That part
/// waits for the write slot like a build's upsert (nobody searches the index yet), so when the
/// vector store is saturated it is handed on after this, instead of holding the live write
/// (which the application may be waiting for) or taking the slot from a readable index's.
pub(crate) const HANDOFF_AFTER: Duration = Duration::from_millis(300);

/// One lane as the hand-off sees it: the index's name, whether it is being built and, when
/// its build runs, where the build stands.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LaneKind<'a> {
    pub name: &'a str,
    pub building: bool,
    pub cursor: Option<BuildCursor>,
}

impl LaneKind<'_> {
    /// Whether this lane writes `e`: the entry is for this index, and it is not a change its
    /// build will read by itself (a document the build has not passed yet; see
    /// `tidemark_core::build_cursor`).
    pub fn needs(&self, e: &OutboxEntry) -> bool {
        e.applies_to(self.name)
            && !self
                .cursor
                .is_some_and(|c| c.leaves_to_build(&e.document_id, e.op))
    }
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
        let readable = lanes.iter().any(|l| !l.building && l.needs(e));
        let building: Vec<String> = lanes
            .iter()
            .filter(|l| l.building && l.needs(e))
            .map(|l| l.name.to_string())
            .collect();
        if readable && !building.is_empty() {
            out.insert(e.id, building);
        }
    }
    out
}

/// Whether an entry hands its building part on: it ended with `readable` in the readable
/// lanes and `building` in the building ones (`None`: they had not finished in time). Only a
/// done entry does, and only when its building part is not done too. A failed or released
/// entry does not (it is tried again whole, its building part too); a superseded one leaves
/// the work to the newer entry.
pub(crate) fn hands_on(readable: Option<&Outcome>, building: Option<Option<&Outcome>>) -> bool {
    let done = matches!(
        readable,
        Some(Outcome::Done(
            OutboxResult::Indexed | OutboxResult::Unchanged | OutboxResult::Deleted
        ))
    );
    done && !matches!(building, Some(Some(Outcome::Done(_))))
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
        cursor: None,
    };
    const OLD: LaneKind<'static> = LaneKind {
        name: "old",
        building: false,
        cursor: None,
    };
    const V2: LaneKind<'static> = LaneKind {
        name: "v2",
        building: true,
        cursor: None,
    };
    const V3: LaneKind<'static> = LaneKind {
        name: "v3",
        building: true,
        cursor: None,
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
    fn a_change_the_build_will_read_is_not_handed_on_nor_written() {
        let behind = entry(1);
        let ahead = entry(9);
        let mut gone = entry(9);
        gone.op = tidemark_core::Op::Delete;
        let v2 = LaneKind {
            cursor: Some(BuildCursor {
                last: Some(behind.document_id),
                follows: true,
                ..Default::default()
            }),
            ..V2
        };
        let got = handoffs(&[behind.clone(), ahead.clone(), gone.clone()], &[MAIN, v2]);
        assert!(got.contains_key(&behind.id), "the build passed it");
        assert!(!got.contains_key(&ahead.id), "the build will read it");
        assert!(got.contains_key(&gone.id), "a delete is never left to it");
        assert!(!v2.needs(&ahead) && v2.needs(&behind) && MAIN.needs(&ahead));
    }

    fn done(r: OutboxResult) -> Option<Outcome> {
        Some(Outcome::Done(r))
    }

    #[test]
    fn only_a_done_entry_hands_on() {
        let late = None;
        assert!(hands_on(done(OutboxResult::Indexed).as_ref(), late));
        assert!(hands_on(done(OutboxResult::Unchanged).as_ref(), late));
        assert!(hands_on(done(OutboxResult::Deleted).as_ref(), late));
        assert!(!hands_on(done(OutboxResult::Superseded).as_ref(), late));
        assert!(!hands_on(Some(&Outcome::Release), late));
        let failed = Outcome::Failed(Failure::transient("embed", "down".into()));
        assert!(!hands_on(Some(&failed), late));
        assert!(!hands_on(None, late));
    }

    #[test]
    fn a_building_part_that_is_done_is_not_handed_on() {
        let indexed = done(OutboxResult::Indexed);
        let r = indexed.as_ref();
        assert!(!hands_on(r, Some(indexed.as_ref())));
        assert!(!hands_on(r, Some(done(OutboxResult::Unchanged).as_ref())));
    }

    #[test]
    fn a_building_part_that_failed_lagged_or_was_released_is_handed_on() {
        let indexed = done(OutboxResult::Indexed);
        let r = indexed.as_ref();
        let failed = Outcome::Failed(Failure::transient("embed", "503".into()));
        assert!(hands_on(r, Some(Some(&failed))));
        assert!(hands_on(r, Some(Some(&Outcome::Release))));
        assert!(hands_on(r, None), "not finished in time");
        assert!(hands_on(r, Some(None)), "no outcome at all");
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
