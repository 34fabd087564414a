//! Measurement 1, the write path: `Store::put` against a raw driver transaction of the same two
//! inserts (document + outbox entry), the same transaction with the version read `put` makes,
//! and a plain single insert, interleaved in rounds so that a noisy machine slows them alike; then `put_many` at a few batch sizes.

use crate::report::Report;
use crate::stats::rate;
use crate::{data, BenchError, Ctx};
use bson::oid::ObjectId;
use bson::DateTime;
use mongodb::options::{Acknowledgment, ReadConcern, WriteConcern};
use std::time::{Duration, Instant};
use tidemark_core::{content_hash, DocumentRecord, Op, OutboxEntry};
use tidemark_store::{NewDocument, Store};

/// Runs measurement 1 in the database `<name>_write`.
pub async fn run(ctx: &Ctx, report: &mut Report) -> Result<(), BenchError> {
    let c = &ctx.counts;
    let store = ctx.store("write").await?;
    let rounds = c.write_rounds.max(1);
    let per_round = (c.write_ops / rounds).max(1);
    let mut i = 0u64;
    // Warm up connections and the server's caches with a few of each.
    for _ in 0..5 {
        for way in Way::ALL {
            way.write(
                &store,
                &data::document(&format!("warm-{}", way.prefix()), i),
            )
            .await?;
        }
        i += 1;
    }
    let mut took = [Duration::ZERO; Way::ALL.len()];
    for _ in 0..rounds {
        for (way, t) in Way::ALL.into_iter().zip(took.iter_mut()) {
            let start = Instant::now();
            for k in 0..per_round as u64 {
                way.write(&store, &data::document(way.prefix(), i + k))
                    .await?;
            }
            *t += start.elapsed();
        }
        i += per_round as u64;
    }
    let [t_put, t_raw, t_read, t_plain] = took;
    let n = per_round * rounds;
    let (put, raw, plain) = (rate(n, t_put), rate(n, t_raw), rate(n, t_plain));
    report.add(
        "write.put_ops_per_s",
        "Store::put (1 doc + outbox, txn)",
        put,
        "ops/s",
    );
    report.add(
        "write.raw_txn_ops_per_s",
        "raw driver txn, same 2 inserts",
        raw,
        "ops/s",
    );
    let raw_read = rate(n, t_read);
    report.add(
        "write.raw_txn_read_ops_per_s",
        "raw txn + the version read put makes",
        raw_read,
        "ops/s",
    );
    report.add(
        "write.put_vs_raw_txn_read",
        "put / (raw txn + version read)",
        put / raw_read,
        "ratio",
    );
    report.add(
        "write.plain_insert_ops_per_s",
        "plain single insert",
        plain,
        "ops/s",
    );
    report.add_min(
        "write.put_vs_raw_txn",
        "put / raw txn",
        put / raw,
        "ratio",
        0.9,
    );
    report.add(
        "write.put_vs_plain_insert",
        "put / plain insert",
        put / plain,
        "ratio",
    );
    report.stage(
        "write",
        "Store::put mean latency",
        t_put.as_secs_f64(),
        n as u64,
    );
    report.stage(
        "write",
        "raw txn mean latency",
        t_raw.as_secs_f64(),
        n as u64,
    );
    report.stage(
        "write",
        "plain insert mean latency",
        t_plain.as_secs_f64(),
        n as u64,
    );
    if put / raw < 0.9 {
        report.note(
            "write: Store::put does more than the raw transaction: inside its transaction it reads the \
             latest outbox entry of the contentId (to assign the next version, which keeps increasing \
             across a delete and re-put) before it writes both in one bulkWrite; the raw transaction \
             only inserts",
        );
    }

    for &size in &c.put_many_sizes {
        let batches = (c.put_many_docs / size).max(1);
        let mut elapsed = Duration::ZERO;
        for b in 0..batches {
            let docs = data::documents(&format!("many{size}"), (b * size) as u64, size);
            let start = Instant::now();
            store.put_many(docs).await?;
            elapsed += start.elapsed();
        }
        report.add(
            &format!("write.put_many_{size}_docs_per_s"),
            &format!("put_many, batches of {size}"),
            rate(batches * size, elapsed),
            "docs/s",
        );
    }
    Ok(())
}

/// The ways of writing one document that the section compares, in the order they run.
#[derive(Debug, Clone, Copy)]
enum Way {
    Put,
    RawTxn,
    RawTxnWithRead,
    PlainInsert,
}

impl Way {
    const ALL: [Way; 4] = [Way::Put, Way::RawTxn, Way::RawTxnWithRead, Way::PlainInsert];

    /// The contentId prefix of its documents.
    fn prefix(self) -> &'static str {
        match self {
            Way::Put => "put",
            Way::RawTxn => "raw",
            Way::RawTxnWithRead => "rawread",
            Way::PlainInsert => "plain",
        }
    }

    async fn write(self, store: &Store, doc: &NewDocument) -> Result<(), BenchError> {
        match self {
            Way::Put => store.put(doc.clone()).await.map(|_| ()).map_err(Into::into),
            Way::RawTxn => raw_transaction(store, doc, false).await,
            Way::RawTxnWithRead => raw_transaction(store, doc, true).await,
            Way::PlainInsert => plain_insert(store, doc).await,
        }
    }
}

/// The baseline: the same two inserts `Store::put` makes for a new document, in one
/// transaction with the same read and write concerns, and nothing else; with `version_read`,
/// first the read `put` makes to order versions (the latest outbox entry of the contentId).
async fn raw_transaction(
    store: &Store,
    doc: &NewDocument,
    version_read: bool,
) -> Result<(), BenchError> {
    let (record, entry) = records(doc)?;
    let mut session = store.client().start_session().await?;
    session
        .start_transaction()
        .read_concern(ReadConcern::snapshot())
        .write_concern(
            WriteConcern::builder()
                .w(Acknowledgment::Majority)
                .journal(true)
                .build(),
        )
        .await?;
    if version_read {
        store
            .outbox()
            .clone_with_type::<bson::Document>()
            .find_one(bson::doc! {"contentId": &doc.content_id})
            .sort(bson::doc! {"version": -1})
            .projection(bson::doc! {"_id": 0, "documentId": 1, "op": 1, "version": 1})
            .session(&mut session)
            .await?;
    }
    store
        .documents()
        .insert_one(&record)
        .session(&mut session)
        .await?;
    store
        .outbox()
        .insert_one(&entry)
        .session(&mut session)
        .await?;
    session.commit_transaction().await?;
    Ok(())
}

/// The floor: one insert of the document alone, no transaction, no outbox.
async fn plain_insert(store: &Store, doc: &NewDocument) -> Result<(), BenchError> {
    let (record, _) = records(doc)?;
    store.documents().insert_one(&record).await?;
    Ok(())
}

/// The document and outbox rows `Store::put` would write for a new document (its entry says
/// `newDocument`, as `put`'s does).
pub fn records(doc: &NewDocument) -> Result<(DocumentRecord, OutboxEntry), BenchError> {
    let id = ObjectId::new();
    let hash = content_hash(&doc.content);
    let metadata = bson::to_document(&doc.metadata)
        .map_err(|e| BenchError::Setup(format!("metadata to BSON: {e}")))?;
    let record = DocumentRecord {
        id,
        content_id: doc.content_id.clone(),
        doc_type: doc.doc_type.clone(),
        content: doc.content.clone(),
        metadata,
        timestamp: DateTime::now(),
        version: 1,
        content_hash: hash.clone(),
        vector_id: None,
        indexed_version: None,
    };
    let entry =
        OutboxEntry::new_pending(id, &doc.content_id, Op::Upsert, 1, &hash).with_new_document(true);
    Ok((record, entry))
}
