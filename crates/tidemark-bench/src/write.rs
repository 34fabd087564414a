//! Measurement 1, the write path: `Store::put` against a raw driver transaction of the same two
//! inserts (document + outbox entry) and against a plain single insert, interleaved in rounds
//! so that a noisy machine slows all three alike; then `put_many` at a few batch sizes.

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
    let (mut t_put, mut t_raw, mut t_plain) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let mut t_read = Duration::ZERO;
    let mut i = 0u64;
    // Warm up connections and the server's caches with a few of each.
    for _ in 0..5 {
        store.put(data::document("warm-put", i)).await?;
        raw_transaction(&store, &data::document("warm-raw", i), false).await?;
        plain_insert(&store, &data::document("warm-plain", i)).await?;
        i += 1;
    }
    for _ in 0..rounds {
        let start = Instant::now();
        for k in 0..per_round as u64 {
            store.put(data::document("put", i + k)).await?;
        }
        t_put += start.elapsed();
        let start = Instant::now();
        for k in 0..per_round as u64 {
            raw_transaction(&store, &data::document("raw", i + k), false).await?;
        }
        t_raw += start.elapsed();
        let start = Instant::now();
        for k in 0..per_round as u64 {
            raw_transaction(&store, &data::document("rawread", i + k), true).await?;
        }
        t_read += start.elapsed();
        let start = Instant::now();
        for k in 0..per_round as u64 {
            plain_insert(&store, &data::document("plain", i + k)).await?;
        }
        t_plain += start.elapsed();
        i += per_round as u64;
    }
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

/// The document and outbox rows `Store::put` would write for a new document.
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
    let entry = OutboxEntry::new_pending(id, &doc.content_id, Op::Upsert, 1, &hash);
    Ok((record, entry))
}
