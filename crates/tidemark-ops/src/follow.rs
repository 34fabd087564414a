//! Index builds that follow the head of `documents`, so that live changes ahead of them can be
//! left to them (the rule the worker applies is `tidemark_core::build_cursor`).
//!
//! A build's checkpoint says `follows`: when the scan reaches its bound (`untilId`) it moves
//! the bound to the newest document and scans on, pass after pass, while each pass is at most
//! seven eighths of the one before, or while its throttle holds it back (see [`at_bound`]).
//! Then it seals: `sealedAt` is written first, the newest document is read
//! after it and becomes the final bound, so every document a worker left to the build before
//! the seal is within the final pass, and every one written after it is written live.
//!
//! Each step that takes documents out of what the workers leave to the build is followed by a
//! look at exactly those documents ([`late`]): a document committed after the scan read its
//! page but before the checkpoint moved past it (its `_id` inside the page's range: ObjectIds
//! of several writers interleave within a second) may have been left to the build by a worker
//! that read the old checkpoint. Such a document is enqueued too. One committed after the look
//! is seen by the workers with the checkpoint already past it, so they write it live.

use crate::backfill::{commit_batch, in_range, last_document_id, Position, Step};
use crate::{Ops, OpsError, Progress};
use bson::{doc, oid::ObjectId, Bson, DateTime, Document};
use futures::TryStreamExt;
use std::time::Duration;
use tidemark_core::build_cursor::fields;
use tidemark_core::{COLL_DOCUMENTS, COLL_SYNC_STATE};

/// At most this many passes before a build seals (each one over the documents written during
/// the one before).
pub(crate) const MAX_PASSES: u32 = 16;

/// What a following build does when its scan reached its bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AtBound {
    /// Move the bound to the newest document and scan on.
    Extend,
    /// Stop following: the final pass covers what is left.
    Seal,
}

/// The decision at the bound: `new_docs` were written since the pass began, which scanned
/// `last_pass`; this would be pass `passes + 1`; `pressed`: the build's throttle held the pass
/// back (see [`pressed`]). A build extends while it gains on the writers (each pass at most seven
/// eighths of the last, so all of them together take at most eight times the first) and the
/// rest is more than one batch. Once sealed, a change to a document written after the seal
/// costs a write to both indexes again, so a build follows as long as it converges in bounded
/// time. It also follows, without gaining, while pressed: a build that neither gains nor finds
/// the workers free got about as much of them as the live writes did, and after a seal each
/// live write costs two vector writes, more than the workers have (up to [`MAX_PASSES`]; it
/// seals at the first bound where the writers let up).
pub(crate) fn at_bound(
    new_docs: u64,
    last_pass: u64,
    passes: u32,
    batch: usize,
    pressed: bool,
) -> AtBound {
    let gaining = new_docs.saturating_mul(8) <= last_pass.saturating_mul(7);
    if new_docs <= batch as u64 || passes >= MAX_PASSES || !(gaining || pressed) {
        AtBound::Seal
    } else {
        AtBound::Extend
    }
}

/// The share of a pass the throttle held from which the build is pressed (see [`at_bound`]):
/// for that long the workers had not taken its pending entries yet, or live entries had waited
/// or taken longer than the throttle's bound.
pub(crate) const PRESSED_SHARE: f64 = 0.05;

/// Whether a pass that took `elapsed` and was held `held` by its throttle was pressed.
pub(crate) fn pressed(held: Duration, elapsed: Duration) -> bool {
    !elapsed.is_zero() && held.as_secs_f64() >= PRESSED_SHARE * elapsed.as_secs_f64()
}

/// The documents of `base` in `(from, to]` other than `seen`: those a step that moved the
/// build past them has not enqueued (see the module doc).
pub(crate) async fn late(
    ops: &Ops,
    base: &Document,
    from: Option<ObjectId>,
    to: ObjectId,
    seen: &[ObjectId],
) -> Result<Vec<ObjectId>, OpsError> {
    let mut filter = in_range(base, from, Some(to));
    if let Ok(range) = filter.get_document_mut("_id") {
        range.insert("$nin", seen);
    }
    let found: Vec<Document> = ops
        .store
        .database()
        .collection::<Document>(COLL_DOCUMENTS)
        .find(filter)
        .projection(doc! {"_id": 1})
        .await?
        .try_collect()
        .await?;
    Ok(found
        .iter()
        .filter_map(|d| d.get_object_id("_id").ok())
        .collect())
}

/// Sets the run's bound to `until` (and seals it, with `seal`) if its checkpoint is still at
/// `last` and not completed; false when it moved on.
pub(crate) async fn set_bound(
    ops: &Ops,
    cp_id: &str,
    last: Option<ObjectId>,
    until: Option<ObjectId>,
    seal: bool,
) -> Result<bool, OpsError> {
    let now = DateTime::now();
    let mut set = doc! {
        fields::UNTIL_ID: until.map(Bson::ObjectId).unwrap_or(Bson::Null),
        "updatedAt": now,
    };
    if seal {
        set.insert(fields::SEALED_AT, now);
    }
    let moved = ops
        .store
        .database()
        .collection::<Document>(COLL_SYNC_STATE)
        .update_one(
            doc! {
                "_id": cp_id,
                fields::LAST_ID: last.map(Bson::ObjectId).unwrap_or(Bson::Null),
                fields::COMPLETED_AT: {"$exists": false},
            },
            doc! {"$set": set},
        )
        .await?;
    Ok(moved.matched_count == 1)
}

/// A following run at the end of its range: what deciding and enqueueing there needs.
pub(crate) struct Bound<'a> {
    pub cp_id: &'a str,
    /// The documents the run selects from, and their `type` when it has one.
    pub base: &'a Document,
    pub doc_type: &'a Option<String>,
    pub batch: usize,
}

impl Bound<'_> {
    fn moved_on(&self) -> OpsError {
        OpsError::Conflict(format!(
            "the checkpoint `{}` moved on (another process runs this build, or it completed)",
            self.cp_id
        ))
    }

    /// Documents of the run in `(from, to]`.
    async fn count(
        &self,
        ops: &Ops,
        from: Option<ObjectId>,
        to: ObjectId,
    ) -> Result<u64, OpsError> {
        let docs = ops.store.database().collection::<Document>(COLL_DOCUMENTS);
        Ok(docs
            .count_documents(in_range(self.base, from, Some(to)))
            .await?)
    }

    /// The scan reached the bound of a run that follows the head: moves the bound to the
    /// newest document (true: scan on), or seals the run and moves the bound one last time,
    /// to the newest document read after the seal (true when there is a final pass to scan).
    pub async fn reached(
        &self,
        ops: &Ops,
        pos: &mut Position,
        progress: &dyn Progress,
    ) -> Result<bool, OpsError> {
        let head = last_document_id(ops, self.doc_type).await?;
        let new_docs = match head {
            Some(h) if head > pos.until => self.count(ops, pos.until, h).await?,
            _ => 0,
        };
        let elapsed = pos.pass_started.elapsed();
        let pressed = pressed(pos.pass_held, elapsed);
        tracing::debug!(
            documents = new_docs,
            pass = pos.pass_docs,
            ?elapsed,
            held = ?pos.pass_held,
            pressed,
            "index build at its bound"
        );
        let decision = at_bound(new_docs, pos.pass_docs, pos.passes, self.batch, pressed);
        if decision == AtBound::Extend {
            if !set_bound(ops, self.cp_id, pos.last, head, false).await? {
                return Err(self.moved_on());
            }
            pos.until = head;
            pos.next_pass();
            tracing::debug!(
                passes = pos.passes,
                documents = new_docs,
                "index build follows the head"
            );
            progress.phase(
                "backfill: documents written during the build",
                Some(new_docs),
            );
            return Ok(true);
        }
        // Seal first, then read the head: a document a worker left to the build before the
        // seal exists by then, so it is within the final bound.
        if !set_bound(ops, self.cp_id, pos.last, pos.until, true).await? {
            return Err(self.moved_on());
        }
        pos.sealed = true;
        let head = last_document_id(ops, self.doc_type).await?;
        let Some(h) = head.filter(|_| head > pos.until) else {
            return Ok(false);
        };
        if !set_bound(ops, self.cp_id, pos.last, head, false).await? {
            return Err(self.moved_on());
        }
        let n = self.count(ops, pos.until, h).await?;
        pos.until = head;
        tracing::debug!(documents = n, "index build sealed; the final pass");
        progress.phase("backfill: the final pass", Some(n));
        Ok(true)
    }

    /// Enqueues the documents in `(from, to]` other than `seen` (see [`late`]); how many.
    pub async fn enqueue_late(
        &self,
        ops: &Ops,
        from: Option<ObjectId>,
        to: ObjectId,
        seen: &[ObjectId],
        for_index: Option<&str>,
    ) -> Result<u64, OpsError> {
        let found = late(ops, self.base, from, to, seen).await?;
        if found.is_empty() {
            return Ok(0);
        }
        tracing::debug!(
            documents = found.len(),
            "index build: documents committed behind its scan"
        );
        commit_batch(ops, self.cp_id, Step::Stay, &found, for_index).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_build_follows_while_it_gains_on_the_writers_or_is_pressed() {
        let (seal, extend) = (AtBound::Seal, AtBound::Extend);
        let cases = [
            // (written during the pass, the pass, passes so far, batch, pressed, decision)
            (0, 20_000, 1, 64, false, seal),
            (64, 20_000, 1, 64, false, seal),
            (65, 20_000, 1, 64, false, extend),
            (12_000, 20_000, 1, 64, false, extend),
            (17_500, 20_000, 1, 64, false, extend),
            (17_501, 20_000, 1, 64, false, seal),
            (20_000, 20_000, 1, 64, false, seal),
            (25_000, 20_000, 1, 64, false, seal),
            (500, 1_000, MAX_PASSES - 1, 64, false, extend),
            (500, 1_000, MAX_PASSES, 64, false, seal),
            // a resumed run that scanned little in this call gives up following early
            (100, 50, 0, 64, false, seal),
            // pressed: it follows without gaining, up to the last pass
            (21_000, 20_000, 1, 64, true, extend),
            (40_000, 20_000, 3, 64, true, extend),
            (100, 50, 0, 64, true, extend),
            (21_000, 20_000, MAX_PASSES - 1, 64, true, extend),
            (21_000, 20_000, MAX_PASSES, 64, true, seal),
            // what is left fits in a batch: the final pass is short whatever the pressure
            (64, 20_000, 1, 64, true, seal),
            (0, 0, 1, 64, true, seal),
        ];
        for (new_docs, pass, passes, batch, pressed, want) in cases {
            assert_eq!(
                at_bound(new_docs, pass, passes, batch, pressed),
                want,
                "{new_docs} new after a pass of {pass}, {passes} passes, pressed {pressed}"
            );
        }
    }

    #[test]
    fn a_pass_is_pressed_from_a_twentieth_held_by_its_throttle() {
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        assert!(!pressed(s(0), s(100)));
        assert!(!pressed(ms(4_900), s(100)));
        assert!(pressed(s(5), s(100)));
        assert!(pressed(s(90), s(100)));
        assert!(!pressed(s(0), s(0)), "a pass of no time was not held");
    }
}
