//! The transactional writes: put (one or many documents), delete, and re-enqueueing documents
//! for indexing. Each runs as one transaction through `txn::run`, so a document change and its
//! outbox entry commit together or not at all.

use crate::mongo_error;
use crate::txn::{self, TxnBody, TxnError};
use crate::{DeleteOutcome, NewDocument, PutOutcome, Store, StoreError};
use bson::oid::ObjectId;
use bson::{doc, DateTime, Document};
use mongodb::ClientSession;
use std::collections::HashMap;
use tidemark_core::{DocumentRecord, Op, OutboxEntry, COLL_DOCUMENTS, COLL_OUTBOX};

/// A validated document with its BSON metadata and hash computed once, outside the retry loop.
pub(crate) struct Prepared {
    pub(crate) doc: NewDocument,
    pub(crate) metadata: Document,
    pub(crate) hash: String,
}

impl Prepared {
    /// The `$set` that moves a stored document to this content at `version`.
    pub(crate) fn update(&self, version: i64, now: DateTime) -> Document {
        doc! {"$set": {
            "type": &self.doc.doc_type,
            "content": &self.doc.content,
            "metadata": self.metadata.clone(),
            "timestamp": self.doc.timestamp.unwrap_or(now),
            "version": version,
            "contentHash": &self.hash,
        }}
    }

    /// The document row of a new incarnation `id` at `version`.
    pub(crate) fn record(&self, id: ObjectId, version: i64, now: DateTime) -> DocumentRecord {
        DocumentRecord {
            id,
            content_id: self.doc.content_id.clone(),
            doc_type: self.doc.doc_type.clone(),
            content: self.doc.content.clone(),
            metadata: self.metadata.clone(),
            timestamp: self.doc.timestamp.unwrap_or(now),
            version,
            content_hash: self.hash.clone(),
            vector_id: None,
            indexed_version: None,
        }
    }
}

/// The general put: reads the stored documents (and, for new ones, the highest outbox
/// version) of a whole batch, then writes them and their entries.
pub(crate) struct PutBatch<'s> {
    pub(crate) store: &'s Store,
    pub(crate) items: Vec<Prepared>,
}

/// State of one `contentId` while a batch is planned.
pub(crate) struct Slot {
    pub(crate) id: ObjectId,
    /// Version of the stored document before this transaction (None: not stored).
    stored_version: Option<i64>,
    /// The last version assigned (the stored one, or the highest of an earlier incarnation).
    pub(crate) version: i64,
    /// Index in `items` of the last occurrence (the document's final state).
    last: usize,
}

impl Slot {
    /// A stored document `id` at `version`.
    pub(crate) fn stored(id: ObjectId, version: i64) -> Slot {
        Slot {
            id,
            stored_version: Some(version),
            version,
            last: 0,
        }
    }

    /// A document to create, its versions continuing after `base`.
    pub(crate) fn fresh(base: i64) -> Slot {
        Slot {
            id: ObjectId::new(),
            stored_version: None,
            version: base,
            last: 0,
        }
    }
}

impl TxnBody for PutBatch<'_> {
    type Out = Vec<PutOutcome>;

    /// The attempt committed if its first outbox entry is there (entry ids are new in every
    /// attempt, and a transaction commits all of its writes or none).
    async fn committed(&self, out: &Vec<PutOutcome>) -> bool {
        let Some(first) = out.first() else {
            return false;
        };
        let found = self
            .store
            .outbox()
            .find_one(doc! {"_id": first.outbox_id})
            .await;
        matches!(found, Ok(Some(_)))
    }

    async fn run(&self, session: &mut ClientSession) -> Result<Vec<PutOutcome>, TxnError> {
        let documents = self.store.raw(COLL_DOCUMENTS);
        let outbox = self.store.outbox();
        let mut ids: Vec<&str> = self
            .items
            .iter()
            .map(|p| p.doc.content_id.as_str())
            .collect();
        ids.sort_unstable();
        ids.dedup();

        // Current documents and, for contentIds without one, the highest version any earlier
        // incarnation used (so versions keep increasing across delete + re-put).
        let mut slots: HashMap<String, Slot> = HashMap::new();
        let mut cursor = documents
            .find(doc! {"contentId": {"$in": &ids}})
            .projection(doc! {"_id": 1, "contentId": 1, "version": 1})
            .session(&mut *session)
            .await?;
        while let Some(d) = cursor.next(&mut *session).await {
            let d = d?;
            let (Ok(id), Ok(cid), Ok(version)) = (
                d.get_object_id("_id"),
                d.get_str("contentId"),
                d.get_i64("version"),
            ) else {
                return Err(TxnError::Fatal(StoreError::validation(
                    "documents",
                    format!("stored document {d} does not follow the contract (_id, contentId, int64 version)"),
                )));
            };
            slots.insert(cid.to_string(), Slot::stored(id, version));
        }
        drop(cursor);
        let new_ids: Vec<&str> = ids
            .iter()
            .copied()
            .filter(|c| !slots.contains_key(*c))
            .collect();
        if !new_ids.is_empty() {
            let mut maxes = self
                .store
                .raw(COLL_OUTBOX)
                .aggregate([
                    doc! {"$match": {"contentId": {"$in": &new_ids}}},
                    doc! {"$group": {"_id": "$contentId", "v": {"$max": "$version"}}},
                ])
                .session(&mut *session)
                .await?;
            let mut max_of: HashMap<String, i64> = HashMap::new();
            while let Some(d) = maxes.next(&mut *session).await {
                let d = d?;
                if let (Ok(cid), Some(v)) = (d.get_str("_id"), d.get("v").and_then(as_i64)) {
                    max_of.insert(cid.to_string(), v);
                }
            }
            for cid in new_ids {
                let base = max_of.get(cid).copied().unwrap_or(0);
                slots.insert(cid.to_string(), Slot::fresh(base));
            }
        }

        // One entry per occurrence, versions increasing in input order.
        let mut entries = Vec::with_capacity(self.items.len());
        let mut outcomes = Vec::with_capacity(self.items.len());
        for (i, p) in self.items.iter().enumerate() {
            let slot = slots
                .get_mut(&p.doc.content_id)
                .expect("slot for every contentId");
            slot.version += 1;
            slot.last = i;
            // A document this transaction inserts has no vector yet, whichever of its
            // occurrences the entry is.
            let created = slot.stored_version.is_none() && self.store.marks_new_documents();
            let entry = OutboxEntry::new_pending(
                slot.id,
                &p.doc.content_id,
                Op::Upsert,
                slot.version,
                &p.hash,
            )
            .with_new_document(created);
            outcomes.push(PutOutcome {
                document_id: slot.id,
                content_id: p.doc.content_id.clone(),
                version: slot.version,
                outbox_id: entry.id,
                content_hash: p.hash.clone(),
            });
            entries.push(entry);
        }

        let now = DateTime::now();
        let mut inserts = Vec::new();
        for (cid, slot) in &slots {
            let p = &self.items[slot.last];
            match slot.stored_version {
                Some(old) => {
                    let r = documents
                        .update_one(
                            doc! {"_id": slot.id, "version": old},
                            p.update(slot.version, now),
                        )
                        .session(&mut *session)
                        .await?;
                    if r.matched_count != 1 {
                        return Err(TxnError::Retry(format!(
                            "document `{cid}` changed concurrently"
                        )));
                    }
                }
                None => inserts.push(p.record(slot.id, slot.version, now)),
            }
        }
        if !inserts.is_empty() {
            let r = self
                .store
                .documents()
                .insert_many(inserts)
                .session(&mut *session)
                .await;
            if let Err(e) = r {
                // A concurrent writer created the document first: the next attempt updates it.
                if mongo_error::is_duplicate_key(&e) {
                    return Err(TxnError::Retry(format!(
                        "a concurrent put created the document first: {e}"
                    )));
                }
                return Err(e.into());
            }
        }
        outbox.insert_many(entries).session(&mut *session).await?;
        Ok(outcomes)
    }
}

pub(crate) fn as_i64(b: &bson::Bson) -> Option<i64> {
    match b {
        bson::Bson::Int64(v) => Some(*v),
        bson::Bson::Int32(v) => Some(i64::from(*v)),
        _ => None,
    }
}

struct Delete<'s> {
    store: &'s Store,
    content_id: &'s str,
}

impl TxnBody for Delete<'_> {
    type Out = Option<DeleteOutcome>;

    async fn run(&self, session: &mut ClientSession) -> Result<Option<DeleteOutcome>, TxnError> {
        let documents = self.store.documents();
        let Some(current) = documents
            .find_one(doc! {"contentId": self.content_id})
            .session(&mut *session)
            .await?
        else {
            return Ok(None);
        };
        let r = documents
            .delete_one(doc! {"_id": current.id, "version": current.version})
            .session(&mut *session)
            .await?;
        if r.deleted_count != 1 {
            return Err(TxnError::Retry(format!(
                "document `{}` changed concurrently",
                self.content_id
            )));
        }
        let version = current.version + 1;
        let entry = OutboxEntry::new_pending(
            current.id,
            self.content_id,
            Op::Delete,
            version,
            &current.content_hash,
        );
        let outbox_id = entry.id;
        self.store
            .outbox()
            .insert_one(entry)
            .session(&mut *session)
            .await?;
        Ok(Some(DeleteOutcome {
            document_id: current.id,
            version,
            outbox_id,
        }))
    }
}

struct Reindex<'s> {
    store: &'s Store,
    ids: &'s [ObjectId],
}

impl TxnBody for Reindex<'_> {
    type Out = usize;

    async fn run(&self, session: &mut ClientSession) -> Result<usize, TxnError> {
        let mut cursor = self
            .store
            .documents()
            .find(doc! {"_id": {"$in": self.ids}})
            .session(&mut *session)
            .await?;
        let mut entries = Vec::new();
        while let Some(d) = cursor.next(&mut *session).await {
            let d = d?;
            entries.push(OutboxEntry::new_pending(
                d.id,
                &d.content_id,
                Op::Upsert,
                d.version,
                &d.content_hash,
            ));
        }
        drop(cursor);
        let n = entries.len();
        if n > 0 {
            self.store
                .outbox()
                .insert_many(entries)
                .session(&mut *session)
                .await?;
        }
        Ok(n)
    }
}

impl Store {
    /// Removes the document of `content_id` and writes its `delete` outbox entry in one
    /// transaction. `None` (and nothing written) when there is no such document.
    pub async fn delete(&self, content_id: &str) -> Result<Option<DeleteOutcome>, StoreError> {
        crate::validate_content_id(content_id, &self.limits)?;
        txn::run(
            &self.client,
            self.retry,
            &self.retries,
            "delete",
            &Delete {
                store: self,
                content_id,
            },
        )
        .await
    }

    /// For repair/backfill: in one transaction, an `upsert` outbox entry at the document's
    /// CURRENT version and hash for each existing document id (ids that no longer exist are
    /// skipped). Returns the number of entries written.
    pub async fn enqueue_reindex(&self, document_ids: &[ObjectId]) -> Result<usize, StoreError> {
        if document_ids.is_empty() {
            return Ok(0);
        }
        txn::run(
            &self.client,
            self.retry,
            &self.retries,
            "enqueue_reindex",
            &Reindex {
                store: self,
                ids: document_ids,
            },
        )
        .await
    }
}
