//! Where an index build stands, and which live changes it will cover by itself.
//!
//! An index build is a backfill run for one index (`index-<name>`) whose checkpoint lives in
//! `sync_state` as `backfill:index-<name>`. It scans `documents` in `_id` order and enqueues
//! an entry per document for the building index, and each entry is carried out against the
//! document as it is when the worker gets to it. So a change to a document the build has not
//! passed yet needs no write to the building index from the live path: the build will read
//! the document later, change included (the idea of Netflix's DBLog and Debezium's
//! incremental snapshots, turned around: the snapshot covers the log ahead of it). During a
//! build a live write then costs one vector write (the active index), not two.
//!
//! A build follows the head of the collection (`follows`): when it reaches its bound
//! (`untilId`) it moves the bound to the newest document and goes on, so documents created
//! during the build are ahead of it too. To end, it seals (`sealedAt`): from then on only the
//! documents up to the final bound are left to it. [`BuildCursor::leaves_to_build`] is the
//! rule the worker applies, read from the checkpoint after it claimed the entries (so after
//! their commit); the backfill keeps it safe by re-reading, after every step that shrinks the
//! set of documents left to it, the documents that step took out (see `tidemark-ops`).
//! Deletes are never left to the build: a build that was restarted from the beginning may
//! find vectors written before, and a document that is gone cannot be scanned.

use crate::contract::Op;
use bson::{oid::ObjectId, Bson, Document};

/// Prefix of backfill checkpoint ids in `sync_state`.
pub const CHECKPOINT_PREFIX: &str = "backfill:";

/// Checkpoint fields the worker reads (the backfill writes more).
pub mod fields {
    /// The last document `_id` the run has enqueued (null before the first batch).
    pub const LAST_ID: &str = "lastId";
    /// The largest `_id` the run covers now (null: there were no documents).
    pub const UNTIL_ID: &str = "untilId";
    /// The run moves `untilId` to the newest document whenever it reaches it, until sealed.
    pub const FOLLOWS: &str = "follows";
    /// When the run stopped following the head; `untilId` is final after it.
    pub const SEALED_AT: &str = "sealedAt";
    /// When the run reached its end.
    pub const COMPLETED_AT: &str = "completedAt";
}

/// The backfill run id of the build of index `name`.
pub fn build_run_id(name: &str) -> String {
    format!("index-{name}")
}

/// The `sync_state` `_id` of the checkpoint of backfill run `run`.
pub fn checkpoint_id(run: &str) -> String {
    format!("{CHECKPOINT_PREFIX}{run}")
}

/// An index build's position, as its checkpoint records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BuildCursor {
    pub last: Option<ObjectId>,
    pub until: Option<ObjectId>,
    pub follows: bool,
    pub sealed: bool,
    pub completed: bool,
}

impl BuildCursor {
    /// The cursor a checkpoint document describes.
    pub fn from_checkpoint(cp: &Document) -> BuildCursor {
        let id = |k: &str| match cp.get(k) {
            Some(Bson::ObjectId(o)) => Some(*o),
            _ => None,
        };
        BuildCursor {
            last: id(fields::LAST_ID),
            until: id(fields::UNTIL_ID),
            follows: cp.get_bool(fields::FOLLOWS).unwrap_or(false),
            sealed: cp.contains_key(fields::SEALED_AT),
            completed: cp.contains_key(fields::COMPLETED_AT),
        }
    }

    /// Whether the build will still enqueue `document` (it has not passed it, and the
    /// document is within what it covers), so a live `op` on it may be left to the build.
    pub fn leaves_to_build(&self, document: &ObjectId, op: Op) -> bool {
        if op == Op::Delete || self.completed {
            return false;
        }
        if self.last.is_some_and(|l| *document <= l) {
            return false;
        }
        if self.follows && !self.sealed {
            return true;
        }
        self.until.is_some_and(|u| *document <= u)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::{doc, DateTime};

    fn oid(n: u8) -> ObjectId {
        let mut b = [0u8; 12];
        b[11] = n;
        ObjectId::from_bytes(b)
    }

    #[test]
    fn names_follow_the_run() {
        assert_eq!(build_run_id("v2"), "index-v2");
        assert_eq!(checkpoint_id(&build_run_id("v2")), "backfill:index-v2");
    }

    #[test]
    fn reads_a_checkpoint() {
        let cp = doc! {"_id": "backfill:index-v2", "lastId": oid(3), "untilId": oid(9),
        "follows": true, "sealedAt": DateTime::now()};
        let c = BuildCursor::from_checkpoint(&cp);
        assert_eq!(
            c,
            BuildCursor {
                last: Some(oid(3)),
                until: Some(oid(9)),
                follows: true,
                sealed: true,
                completed: false,
            }
        );
        let fresh = doc! {"lastId": Bson::Null, "untilId": Bson::Null};
        assert_eq!(BuildCursor::from_checkpoint(&fresh), BuildCursor::default());
    }

    #[test]
    fn leaves_to_build_table() {
        let following = BuildCursor {
            last: Some(oid(10)),
            until: Some(oid(20)),
            follows: true,
            ..Default::default()
        };
        let sealed = BuildCursor {
            sealed: true,
            ..following
        };
        let bounded = BuildCursor {
            follows: false,
            ..following
        };
        let done = BuildCursor {
            completed: true,
            ..sealed
        };
        let fresh = BuildCursor {
            follows: true,
            ..Default::default()
        };
        let cases: &[(&str, BuildCursor, u8, Op, bool)] = &[
            ("passed", following, 5, Op::Upsert, false),
            ("at the cursor", following, 10, Op::Upsert, false),
            ("ahead, within the bound", following, 15, Op::Upsert, true),
            (
                "ahead of the bound, following",
                following,
                30,
                Op::Upsert,
                true,
            ),
            ("a delete is never left", following, 15, Op::Delete, false),
            ("sealed: within the bound", sealed, 20, Op::Upsert, true),
            ("sealed: past the bound", sealed, 21, Op::Upsert, false),
            (
                "not following: past the bound",
                bounded,
                21,
                Op::Upsert,
                false,
            ),
            ("not following: within", bounded, 11, Op::Upsert, true),
            ("completed", done, 15, Op::Upsert, false),
            (
                "nothing enqueued yet, following",
                fresh,
                1,
                Op::Upsert,
                true,
            ),
            (
                "no bound, not following",
                BuildCursor::default(),
                1,
                Op::Upsert,
                false,
            ),
        ];
        for (what, c, id, op, want) in cases {
            assert_eq!(c.leaves_to_build(&oid(*id), *op), *want, "{what}");
        }
    }
}
