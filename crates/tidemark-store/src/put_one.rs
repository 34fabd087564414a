//! The single-document `put` in three round trips, like a bare transaction of two inserts:
//! read the latest outbox entry of the `contentId` (one index seek on `{contentId, version}`),
//! write the document and its entry together (one `bulkWrite` command on MongoDB 8.0+, two
//! writes before), commit.
//!
//! The latest entry says what the stored document should be: after an `upsert` entry of
//! version v the document exists with `_id = documentId` and version v; after a `delete` entry
//! (or none) there is no document and the next version is v + 1 (versions keep increasing
//! across a delete and re-put). The write checks that guess (the update is filtered on `_id`
//! and version; the insert meets the unique `contentId` index). When the guess is wrong (a
//! document written around the outbox, entries expired by the audit-trail TTL, a concurrent
//! writer), the transaction is retried on the general path, which reads the document itself.
//!
//! `Store::put_batch` (here) sends one document down this path and several down `write`'s.

use crate::mongo_error::{self, DUPLICATE_KEY};
use crate::txn::{TxnBody, TxnError};
use crate::write::{Prepared, PutBatch, Slot};
use crate::{txn, NewDocument, PutOutcome, StoreError};
use bson::{doc, DateTime, Document};
use mongodb::error::ErrorKind;
use mongodb::options::{InsertOneModel, UpdateOneModel, WriteModel};
use mongodb::{ClientSession, Namespace};
use std::sync::atomic::{AtomicBool, Ordering};
use tidemark_core::{content_hash, Op, OutboxEntry, COLL_DOCUMENTS, COLL_OUTBOX};

/// Whether the server accepts the `bulkWrite` command (MongoDB 8.0+), learnt on first use.
pub(crate) const BULK_UNKNOWN: u8 = 0;
const BULK_YES: u8 = 1;
pub(crate) const BULK_NO: u8 = 2;

pub(crate) struct PutOne<'s> {
    pub(crate) batch: PutBatch<'s>,
    /// Set when the outbox did not describe the stored document: later attempts read it.
    careful: AtomicBool,
}

impl<'s> PutOne<'s> {
    pub(crate) fn new(batch: PutBatch<'s>) -> Self {
        debug_assert_eq!(batch.items.len(), 1);
        PutOne {
            batch,
            careful: AtomicBool::new(false),
        }
    }

    /// Gives up the guess: this and every later attempt take the general path.
    fn read_instead(&self, why: String) -> TxnError {
        self.careful.store(true, Ordering::Relaxed);
        TxnError::Retry(why)
    }
}

impl TxnBody for PutOne<'_> {
    type Out = Vec<PutOutcome>;

    async fn committed(&self, out: &Vec<PutOutcome>) -> bool {
        self.batch.committed(out).await
    }

    async fn run(&self, session: &mut ClientSession) -> Result<Vec<PutOutcome>, TxnError> {
        if self.careful.load(Ordering::Relaxed) {
            return self.batch.run(session).await;
        }
        let store = self.batch.store;
        let p = &self.batch.items[0];
        let cid = p.doc.content_id.as_str();
        let latest = store
            .raw(COLL_OUTBOX)
            .find_one(doc! {"contentId": cid})
            .sort(doc! {"version": -1})
            .projection(doc! {"_id": 0, "documentId": 1, "op": 1, "version": 1})
            .session(&mut *session)
            .await?;
        let (slot, stored) = match latest {
            Some(e) => {
                let (Ok(id), Ok(op), Some(version)) = (
                    e.get_object_id("documentId"),
                    e.get_str("op"),
                    e.get("version").and_then(crate::write::as_i64),
                ) else {
                    return Err(self.read_instead(format!(
                        "latest outbox entry of `{cid}` does not follow the contract: {e}"
                    )));
                };
                if op == "upsert" {
                    (Slot::stored(id, version), true)
                } else {
                    (Slot::fresh(version), false)
                }
            }
            None => (Slot::fresh(0), false),
        };
        let version = slot.version + 1;
        let entry = OutboxEntry::new_pending(slot.id, cid, Op::Upsert, version, &p.hash)
            .with_new_document(!stored && self.batch.store.marks_new_documents());
        let outcome = PutOutcome {
            document_id: slot.id,
            content_id: cid.to_string(),
            version,
            outbox_id: entry.id,
            content_hash: p.hash.clone(),
        };
        let now = p.doc.timestamp.unwrap_or_else(DateTime::now);
        let document = if stored {
            DocWrite::Update {
                filter: doc! {"_id": slot.id, "contentId": cid, "version": slot.version},
                update: p.update(version, now),
            }
        } else {
            DocWrite::Insert(to_doc(&p.record(slot.id, version, now))?)
        };
        let entry = to_doc(&entry)?;
        match self.write(session, document, entry).await? {
            Written::Ok => Ok(vec![outcome]),
            Written::NotAsExpected(why) => Err(self.read_instead(format!("`{cid}`: {why}"))),
        }
    }
}

enum DocWrite {
    Insert(Document),
    Update { filter: Document, update: Document },
}

enum Written {
    Ok,
    /// The stored document is not what the outbox said (nothing matched, or it exists).
    NotAsExpected(String),
}

impl Written {
    /// The update matched nothing: the document is not at the version the outbox shows.
    fn behind() -> Written {
        Written::NotAsExpected("the stored document is not at the outbox's latest version".into())
    }
}

impl PutOne<'_> {
    /// The document write and the entry insert, in one `bulkWrite` when the server has it.
    async fn write(
        &self,
        session: &mut ClientSession,
        document: DocWrite,
        entry: Document,
    ) -> Result<Written, TxnError> {
        let store = self.batch.store;
        let support = store.bulk_write.load(Ordering::Relaxed);
        if support != BULK_NO {
            let ns = |coll: &str| Namespace {
                db: store.db.name().to_string(),
                coll: coll.to_string(),
            };
            let first: WriteModel = match &document {
                DocWrite::Insert(d) => InsertOneModel::builder()
                    .namespace(ns(COLL_DOCUMENTS))
                    .document(d.clone())
                    .build()
                    .into(),
                DocWrite::Update { filter, update } => UpdateOneModel::builder()
                    .namespace(ns(COLL_DOCUMENTS))
                    .filter(filter.clone())
                    .update(update.clone())
                    .build()
                    .into(),
            };
            let second: WriteModel = InsertOneModel::builder()
                .namespace(ns(COLL_OUTBOX))
                .document(entry.clone())
                .build()
                .into();
            match store
                .client
                .bulk_write([first, second])
                .session(&mut *session)
                .await
            {
                Ok(r) => {
                    store.bulk_write.store(BULK_YES, Ordering::Relaxed);
                    if matches!(document, DocWrite::Update { .. }) && r.matched_count != 1 {
                        return Ok(Written::behind());
                    }
                    return Ok(Written::Ok);
                }
                Err(e) if matches!(*e.kind, ErrorKind::IncompatibleServer { .. }) => {
                    // Refused by the driver before anything was sent; the transaction is intact.
                    tracing::debug!(error = %e, "server has no bulkWrite; writing separately");
                    store.bulk_write.store(BULK_NO, Ordering::Relaxed);
                }
                Err(e) => {
                    // Only a duplicate on the document (write 0) says the guess was wrong.
                    let document_exists = matches!(&*e.kind, ErrorKind::BulkWrite(b)
                        if b.write_errors.get(&0).is_some_and(|w| w.code == DUPLICATE_KEY));
                    if document_exists {
                        return Err(self.read_instead(format!(
                            "a stored document the outbox did not show: {e}"
                        )));
                    }
                    return Err(e.into());
                }
            }
        }
        let documents = store.raw(COLL_DOCUMENTS);
        match document {
            DocWrite::Insert(d) => {
                if let Err(e) = documents.insert_one(d).session(&mut *session).await {
                    if mongo_error::is_duplicate_key(&e) {
                        return Err(self.read_instead(format!(
                            "a stored document the outbox did not show: {e}"
                        )));
                    }
                    return Err(e.into());
                }
            }
            DocWrite::Update { filter, update } => {
                let r = documents
                    .update_one(filter, update)
                    .session(&mut *session)
                    .await?;
                if r.matched_count != 1 {
                    return Ok(Written::behind());
                }
            }
        }
        store
            .raw(COLL_OUTBOX)
            .insert_one(entry)
            .session(&mut *session)
            .await?;
        Ok(Written::Ok)
    }
}

fn to_doc<T: serde::Serialize>(v: &T) -> Result<Document, TxnError> {
    bson::to_document(v).map_err(|e| TxnError::Fatal(StoreError::from(e)))
}

impl crate::Store {
    /// One transaction for a chunk of already validated documents.
    pub(crate) async fn put_batch(
        &self,
        docs: Vec<NewDocument>,
    ) -> Result<Vec<PutOutcome>, StoreError> {
        let mut items = Vec::with_capacity(docs.len());
        for doc in docs {
            let metadata = match bson::to_bson(&doc.metadata)? {
                bson::Bson::Document(d) => d,
                _ => return Err(StoreError::validation("metadata", "must be a JSON object")),
            };
            let hash = content_hash(&doc.content);
            items.push(Prepared {
                doc,
                metadata,
                hash,
            });
        }
        let batch = PutBatch { store: self, items };
        if batch.items.len() == 1 {
            let one = PutOne::new(batch);
            return txn::run(&self.client, self.retry, &self.retries, "put", &one).await;
        }
        txn::run(&self.client, self.retry, &self.retries, "put_many", &batch).await
    }
}
