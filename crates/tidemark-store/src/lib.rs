//! tidemark-store: the writer library applications link.
//!
//! A document and its outbox entry are written in ONE MongoDB multi-document transaction, so
//! the worker can never miss a change and never sees a change that did not commit.
//!
//! ```no_run
//! # async fn demo(cfg: tidemark_core::Config) -> Result<(), tidemark_store::StoreError> {
//! use tidemark_store::{Consistency, NewDocument, Store};
//! let store = Store::connect(&cfg).await?;
//! store.ensure_schema().await?;
//! let doc = NewDocument::new("faq-1", "faq", "How do I reset my password?")
//!     .with_metadata(serde_json::json!({"lang": "en"}));
//! let out = store.put(doc.clone()).await?; // returns after the commit (Eventual)
//! // Or wait until the worker has indexed it:
//! let timeout = std::time::Duration::from_secs(10);
//! store.put_with(doc, Consistency::VectorVisible { timeout }).await?;
//! # Ok(()) }
//! ```
//!
//! Ordering across delete and re-put: versions of a `contentId` keep increasing. A put of a
//! new document takes `1 + max(version)` over the outbox entries of that `contentId`; an update
//! takes `document.version + 1`; a delete writes its entry at `document.version + 1`. Every
//! incarnation also gets a fresh `_id` (the vector id), so entries of a deleted incarnation
//! refer to a document id that no longer exists and can only ever remove that old vector.
//! (Should all entries of a deleted incarnation have expired through the retention TTL, the
//! version restarts at 1 — still safe, because the `_id` differs.)
//!
//! Modules:
//! - `validate`: [`NewDocument`] and the input rules (field named in every error)
//! - `put_one`: the three-round-trip single put, and the dispatch of `put_batch`
//! - `write`: the general put of many documents, delete, re-enqueue
//! - `txn`: running a transaction with the driver specification's retry rules
//! - [`mongo_error`]: every MongoDB error code and label check, in one place
//! - [`outbox`]: the outbox repository ([`Outbox`]): claims, marks and counts by status
//! - `schema`: collections and indexes; `visible`: waiting for `VectorVisible`
//! - [`indexes`]: the index definitions; [`usage`]: embedding API tokens per index and day

mod error;
pub mod indexes;
pub mod mongo_error;
pub mod mongo_text;
pub mod outbox;
mod put_one;
mod schema;
mod txn;
pub mod usage;
mod validate;
mod visible;
mod write;

pub use error::StoreError;
pub use outbox::{Outbox, OutboxCounts};
pub use schema::INDEX_NAMES;
pub use txn::RetryPolicy;
pub use validate::{validate, validate_content_id, NewDocument};

use bson::oid::ObjectId;
use bson::Document;
use mongodb::{Client, Collection, Database};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tidemark_core::config::Limits;
use tidemark_core::{
    Config, DocumentRecord, OutboxEntry, SyncState, COLL_DOCUMENTS, COLL_OUTBOX, COLL_SYNC_STATE,
};

/// When a write call returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Consistency {
    /// After the MongoDB commit (the default).
    #[default]
    Eventual,
    /// After the worker marked the outbox entry done (or `timeout`, with `StoreError::NotVisible`).
    VectorVisible { timeout: Duration },
}

/// Result of a committed put.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PutOutcome {
    #[serde(serialize_with = "ser_oid_hex")]
    pub document_id: ObjectId,
    pub content_id: String,
    pub version: i64,
    #[serde(serialize_with = "ser_oid_hex")]
    pub outbox_id: ObjectId,
    pub content_hash: String,
}

/// Result of a committed delete.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteOutcome {
    #[serde(serialize_with = "ser_oid_hex")]
    pub document_id: ObjectId,
    pub version: i64,
    #[serde(serialize_with = "ser_oid_hex")]
    pub outbox_id: ObjectId,
}

fn ser_oid_hex<S: serde::Serializer>(id: &ObjectId, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&id.to_hex())
}

/// Handle on the tidemark collections of one database. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    client: Client,
    db: Database,
    limits: Limits,
    retention: Duration,
    retry: RetryPolicy,
    /// Transactions attempts that were retried (shared by clones).
    retries: Arc<AtomicU64>,
    /// Whether the server takes the `bulkWrite` command (learnt on first use; see `put_one`).
    bulk_write: Arc<AtomicU8>,
    /// Whether entries of documents a put creates say `newDocument` (see
    /// [`Store::copying_vectors`]).
    mark_new: bool,
}

impl Store {
    /// Connects to `cfg.mongodb.uri` and uses the database `cfg.mongodb.database`.
    pub async fn connect(cfg: &Config) -> Result<Store, StoreError> {
        let client = Client::with_uri_str(&cfg.mongodb.uri).await?;
        tracing::debug!(uri = %tidemark_core::redact_uri(&cfg.mongodb.uri), database = %cfg.mongodb.database, "store connected");
        Ok(Store::new(client, &cfg.mongodb.database, cfg))
    }

    /// Uses an existing client (e.g. one shared with the application).
    pub fn new(client: Client, database: &str, cfg: &Config) -> Store {
        let db = client.database(database);
        Store {
            client,
            db,
            limits: cfg.limits.clone(),
            retention: cfg.outbox.retention,
            retry: RetryPolicy::default(),
            retries: Arc::new(AtomicU64::new(0)),
            bulk_write: Arc::new(AtomicU8::new(put_one::BULK_UNKNOWN)),
            mark_new: true,
        }
    }

    /// For a writer that puts vectors into the index itself for the documents it creates (a
    /// migration copying legacy vectors): its entries never say `newDocument`, so the worker
    /// reads the stored vectors and reuses them instead of embedding again.
    pub fn copying_vectors(mut self) -> Store {
        self.mark_new = false;
        self
    }

    /// Whether a put's entry of a document it inserted says `newDocument`.
    pub(crate) fn marks_new_documents(&self) -> bool {
        self.mark_new
    }

    /// Writes a document and its outbox entry with two commands instead of one `bulkWrite`, as
    /// on servers before MongoDB 8.0 (which the store detects by itself). For servers that
    /// claim 8.0 but do not implement `bulkWrite` well, and for tests of that path.
    pub fn with_separate_writes(mut self) -> Store {
        self.bulk_write = Arc::new(AtomicU8::new(put_one::BULK_NO));
        self
    }

    /// Replaces the transaction retry bounds.
    pub fn with_retry_policy(mut self, retry: RetryPolicy) -> Store {
        self.retry = retry;
        self
    }

    /// How many transaction attempts this store (and its clones) retried so far, e.g. after
    /// write conflicts between concurrent writers of one document.
    pub fn transaction_retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn documents(&self) -> Collection<DocumentRecord> {
        self.db.collection(COLL_DOCUMENTS)
    }

    pub fn outbox(&self) -> Collection<OutboxEntry> {
        self.db.collection(COLL_OUTBOX)
    }

    /// The outbox repository (claims, marks and counts by status).
    pub fn outbox_repo(&self) -> Outbox {
        Outbox::new(&self.db)
    }

    pub fn sync_state(&self) -> Collection<SyncState> {
        self.db.collection(COLL_SYNC_STATE)
    }

    pub(crate) fn raw(&self, name: &str) -> Collection<Document> {
        self.db.collection(name)
    }

    /// Writes (inserts or updates) one document and its `upsert` outbox entry in one
    /// transaction; returns after the commit.
    pub async fn put(&self, doc: NewDocument) -> Result<PutOutcome, StoreError> {
        self.put_with(doc, Consistency::Eventual).await
    }

    /// Like `put`, then waits according to `level`.
    pub async fn put_with(
        &self,
        doc: NewDocument,
        level: Consistency,
    ) -> Result<PutOutcome, StoreError> {
        validate(&doc, &self.limits)?;
        let mut out = self.put_batch(vec![doc]).await?;
        let out = out.pop().expect("one outcome per document");
        if let Consistency::VectorVisible { timeout } = level {
            self.wait_visible(out.outbox_id, timeout).await?;
        }
        Ok(out)
    }

    /// Writes many documents, each with its outbox entry, in as few transactions as the size
    /// bound `limits.max_batch_bytes` allows (one transaction per chunk, in input order).
    /// All documents are validated before anything is written (the field of a rejected one is
    /// prefixed with its index, e.g. `[3].content`). A `contentId` appearing several times gets
    /// one entry per occurrence with increasing versions; the document ends as the last one.
    /// If a later chunk fails, `StoreError::BatchFailed` says how many were committed.
    pub async fn put_many(&self, docs: Vec<NewDocument>) -> Result<Vec<PutOutcome>, StoreError> {
        for (i, d) in docs.iter().enumerate() {
            if let Err(StoreError::Validation { field, reason }) = validate(d, &self.limits) {
                return Err(StoreError::Validation {
                    field: format!("[{i}].{field}"),
                    reason,
                });
            }
        }
        let total = docs.len();
        let mut outcomes = Vec::with_capacity(total);
        let mut chunk = Vec::new();
        let mut chunk_bytes = 0;
        let mut rest = docs.into_iter().peekable();
        while let Some(d) = rest.next() {
            chunk_bytes += d.approx_bytes();
            chunk.push(d);
            let full = rest
                .peek()
                .is_some_and(|n| chunk_bytes + n.approx_bytes() > self.limits.max_batch_bytes);
            if full || rest.peek().is_none() {
                let committed = outcomes.len();
                match self.put_batch(std::mem::take(&mut chunk)).await {
                    Ok(out) => outcomes.extend(out),
                    Err(e) if committed > 0 => {
                        return Err(StoreError::BatchFailed {
                            committed,
                            total,
                            source: Box::new(e),
                        })
                    }
                    Err(e) => return Err(e),
                }
                chunk_bytes = 0;
            }
        }
        Ok(outcomes)
    }

    /// Reads the current document of `content_id`.
    pub async fn get(&self, content_id: &str) -> Result<Option<DocumentRecord>, StoreError> {
        validate_content_id(content_id, &self.limits)?;
        Ok(self
            .documents()
            .find_one(bson::doc! {"contentId": content_id})
            .await?)
    }
}
