//! The public, language-neutral data contract: the `documents`, `outbox` and `sync_state`
//! collections. Writers in any language produce these shapes; the worker validates them.
//!
//! Field names are camelCase in MongoDB. `schemaVersion` on outbox entries versions the contract.

use bson::{oid::ObjectId, DateTime, Document};
use serde::{Deserialize, Serialize};

/// Version of the outbox entry shape written by this release. The worker rejects entries with a
/// higher version (dead, with a clear error) rather than guessing at their meaning.
pub const SCHEMA_VERSION: i32 = 1;

pub const COLL_DOCUMENTS: &str = "documents";
pub const COLL_OUTBOX: &str = "outbox";
pub const COLL_SYNC_STATE: &str = "sync_state";

/// A row of `documents`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DocumentRecord {
    #[serde(rename = "_id")]
    pub id: ObjectId,
    pub content_id: String,
    #[serde(rename = "type")]
    pub doc_type: String,
    pub content: String,
    pub metadata: Document,
    pub timestamp: DateTime,
    pub version: i64,
    pub content_hash: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vector_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub indexed_version: Option<i64>,
}

/// What an outbox entry asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    Upsert,
    Delete,
}

/// Life cycle of an outbox entry: `pending` until the worker proves the vector store agrees,
/// then `done`; `dead` after a permanent error or too many attempts (replayable).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutboxStatus {
    Pending,
    Done,
    Dead,
}

impl OutboxStatus {
    /// The value stored in `outbox.status`.
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxStatus::Pending => "pending",
            OutboxStatus::Done => "done",
            OutboxStatus::Dead => "dead",
        }
    }
}

impl From<OutboxStatus> for bson::Bson {
    fn from(s: OutboxStatus) -> bson::Bson {
        bson::Bson::String(s.as_str().to_string())
    }
}

/// How a done entry was resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutboxResult {
    /// The vector was written (embedded, or its metadata updated).
    Indexed,
    /// Chroma already held this content hash and metadata: nothing to write.
    Unchanged,
    /// A newer version of the document exists; that version's entry does the work.
    Superseded,
    /// The vector was removed (or was already absent) because the document is gone.
    Deleted,
}

impl OutboxResult {
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxResult::Indexed => "indexed",
            OutboxResult::Unchanged => "unchanged",
            OutboxResult::Superseded => "superseded",
            OutboxResult::Deleted => "deleted",
        }
    }
}

impl From<OutboxResult> for bson::Bson {
    fn from(r: OutboxResult) -> bson::Bson {
        bson::Bson::String(r.as_str().to_string())
    }
}

/// A worker's claim on an entry in progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lease {
    pub owner: String,
    pub until: DateTime,
}

/// A row of `outbox`: the write-ahead log entry and, once done, the audit trail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutboxEntry {
    #[serde(rename = "_id")]
    pub id: ObjectId,
    #[serde(default = "default_schema_version")]
    pub schema_version: i32,
    pub document_id: ObjectId,
    pub content_id: String,
    pub op: Op,
    pub version: i64,
    pub content_hash: String,
    pub status: OutboxStatus,
    pub attempts: i32,
    pub next_attempt_at: DateTime,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<Lease>,
    pub created_at: DateTime,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done_at: Option<DateTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<OutboxResult>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Errors of earlier lives of the entry, kept when a dead entry is replayed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub error_history: Vec<String>,
    /// Set by a writer whose transaction inserted the document row (a new `_id`): no vector
    /// of it can exist, so the worker need not read the stored ones before embedding. Absent
    /// means "may have vectors" (always correct).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub new_document: bool,
    /// How many times a worker leased this entry (added by the worker's claim): above one, an
    /// earlier delivery may have written vectors before it was interrupted.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub deliveries: i32,
    /// The index definitions this entry is for (written by `tidemark index build`, whose
    /// entries only the building index needs). Empty (absent) means every live index, as for
    /// every entry an application writes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub indexes: Vec<String>,
    /// Set by the worker on an entry that carries an application's write on to a building
    /// index: the `_id` of the entry it was handed on from (see `indexes`). An index build
    /// counts only its own entries, not these, against `--max-pending`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handoff_of: Option<ObjectId>,
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}

fn default_schema_version() -> i32 {
    SCHEMA_VERSION
}

impl OutboxEntry {
    /// A fresh pending entry, due now.
    pub fn new_pending(
        document_id: ObjectId,
        content_id: &str,
        op: Op,
        version: i64,
        content_hash: &str,
    ) -> Self {
        let now = DateTime::now();
        OutboxEntry {
            id: ObjectId::new(),
            schema_version: SCHEMA_VERSION,
            document_id,
            content_id: content_id.to_string(),
            op,
            version,
            content_hash: content_hash.to_string(),
            status: OutboxStatus::Pending,
            attempts: 0,
            next_attempt_at: now,
            lease: None,
            created_at: now,
            done_at: None,
            result: None,
            last_error: None,
            error_history: Vec::new(),
            new_document: false,
            deliveries: 0,
            indexes: Vec::new(),
            handoff_of: None,
        }
    }

    /// This entry for the index `name` only (see the field).
    pub fn for_index(mut self, name: &str) -> Self {
        self.indexes = vec![name.to_string()];
        self
    }

    /// Whether an index build enqueued this entry (for some indexes only, not handed on from
    /// a live write): it asks for the document as it is when carried out, whatever version it
    /// read (see `build_cursor`).
    pub fn is_build(&self) -> bool {
        !self.indexes.is_empty() && self.handoff_of.is_none()
    }

    /// Whether the index definition `name` needs this entry.
    pub fn applies_to(&self, name: &str) -> bool {
        self.indexes.is_empty() || self.indexes.iter().any(|i| i == name)
    }

    /// Widens this entry's indexes to also cover `other`'s (coalescing two entries of one
    /// document: the one kept must do the work of both).
    pub fn cover(&mut self, other: &OutboxEntry) {
        if self.indexes.is_empty() {
            return;
        }
        if other.indexes.is_empty() {
            self.indexes.clear();
            return;
        }
        for i in &other.indexes {
            if !self.indexes.contains(i) {
                self.indexes.push(i.clone());
            }
        }
    }

    /// This entry with `newDocument` set to `new` (see the field).
    pub fn with_new_document(mut self, new: bool) -> Self {
        self.new_document = new;
        self
    }

    /// Whether no vector of this entry's document can exist: its writer created the document
    /// and this is the entry's first delivery (a later one may follow a delivery that wrote
    /// vectors and was interrupted before it marked the entry).
    pub fn nothing_stored(&self) -> bool {
        self.new_document && self.deliveries <= 1
    }
}

/// A row of `sync_state`: the change stream position of one worker group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncState {
    /// The worker group name.
    #[serde(rename = "_id")]
    pub id: String,
    pub resume_token: Option<Document>,
    pub updated_at: DateTime,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outbox_entry_round_trips_with_contract_names() {
        let e = OutboxEntry::new_pending(ObjectId::new(), "c1", Op::Upsert, 3, "sha256:00");
        let doc = bson::to_document(&e).unwrap();
        for key in [
            "_id",
            "schemaVersion",
            "documentId",
            "contentId",
            "op",
            "version",
            "contentHash",
            "status",
            "attempts",
            "nextAttemptAt",
            "createdAt",
        ] {
            assert!(doc.contains_key(key), "missing {key}");
        }
        assert_eq!(doc.get_str("op").unwrap(), "upsert");
        assert_eq!(doc.get_str("status").unwrap(), "pending");
        assert!(doc.get_i64("version").is_ok(), "version must be int64");
        assert!(doc.get_i32("attempts").is_ok(), "attempts must be int32");
        let back: OutboxEntry = bson::from_document(doc).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn new_document_is_written_only_when_true() {
        let e = OutboxEntry::new_pending(ObjectId::new(), "c1", Op::Upsert, 1, "h");
        let plain = bson::to_document(&e).unwrap();
        assert!(!plain.contains_key("newDocument"), "{plain}");
        let marked = bson::to_document(&e.clone().with_new_document(true)).unwrap();
        assert_eq!(marked.get_bool("newDocument"), Ok(true));
        let back: OutboxEntry = bson::from_document(marked).unwrap();
        assert!(back.new_document);
        let back: OutboxEntry = bson::from_document(plain).unwrap();
        assert!(!back.new_document, "absent reads as false");
    }

    #[test]
    fn indexes_are_written_only_when_set_and_absent_means_every_index() {
        let e = OutboxEntry::new_pending(ObjectId::new(), "c1", Op::Upsert, 1, "h");
        let plain = bson::to_document(&e).unwrap();
        assert!(!plain.contains_key("indexes"));
        assert!(e.applies_to("main") && e.applies_to("v2"));
        let only = e.clone().for_index("v2");
        let d = bson::to_document(&only).unwrap();
        assert_eq!(d.get_array("indexes").unwrap().len(), 1);
        let back: OutboxEntry = bson::from_document(d).unwrap();
        assert!(back.applies_to("v2"));
        assert!(!back.applies_to("main"));
    }

    #[test]
    fn covering_widens_to_the_union_and_an_untargeted_entry_covers_everything() {
        let e = OutboxEntry::new_pending(ObjectId::new(), "c1", Op::Upsert, 1, "h");
        let mut a = e.clone().for_index("v2");
        a.cover(&e.clone().for_index("v3"));
        assert!(a.applies_to("v2") && a.applies_to("v3") && !a.applies_to("main"));
        a.cover(&e.clone().for_index("v2"));
        assert_eq!(a.indexes, vec!["v2".to_string(), "v3".to_string()]);
        a.cover(&e);
        assert!(a.indexes.is_empty() && a.applies_to("main"));
        let mut all = e.clone();
        all.cover(&e.clone().for_index("v2"));
        assert!(all.indexes.is_empty(), "an entry for every index stays so");
    }

    #[test]
    fn only_a_first_delivery_of_a_new_document_has_nothing_stored() {
        let e = OutboxEntry::new_pending(ObjectId::new(), "c1", Op::Upsert, 1, "h");
        let table = [
            (false, 0, false),
            (false, 1, false),
            (true, 0, true),
            (true, 1, true),
            (true, 2, false),
            (true, 7, false),
        ];
        for (new, deliveries, nothing) in table {
            let mut x = e.clone().with_new_document(new);
            x.deliveries = deliveries;
            assert_eq!(
                x.nothing_stored(),
                nothing,
                "new {new}, deliveries {deliveries}"
            );
        }
    }

    #[test]
    fn entry_without_schema_version_reads_as_v1() {
        let mut doc = bson::to_document(&OutboxEntry::new_pending(
            ObjectId::new(),
            "c",
            Op::Delete,
            1,
            "h",
        ))
        .unwrap();
        doc.remove("schemaVersion");
        let back: OutboxEntry = bson::from_document(doc).unwrap();
        assert_eq!(back.schema_version, 1);
        assert_eq!(back.op, Op::Delete);
    }
}
