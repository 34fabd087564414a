//! tidemark-store writes against the real replica set: atomicity of document + outbox entry,
//! concurrent puts on one contentId, delete then re-put ordering, put_many, reindex, schema.

use crate::store_support;

use bson::{doc, oid::ObjectId, Document};
use futures::TryStreamExt;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use store_support::{all_documents, all_entries, counts, drop_db, fresh_store};
use tidemark_core::{content_hash, Op, OutboxStatus, COLL_OUTBOX};
use tidemark_store::{NewDocument, Store, StoreError, INDEX_NAMES};

#[tokio::test]
async fn put_writes_document_and_entry_then_update_bumps_version() {
    let (store, _) = fresh_store("st_put").await;
    let a = store
        .put(
            NewDocument::new("k1", "note", "first")
                .with_metadata(serde_json::json!({"lang": "en", "n": {"x": 1}})),
        )
        .await
        .unwrap();
    assert_eq!(a.version, 1);
    assert_eq!(a.content_hash, content_hash("first"));
    let b = store
        .put(NewDocument::new("k1", "note", "second"))
        .await
        .unwrap();
    assert_eq!(b.version, 2);
    assert_eq!(b.document_id, a.document_id, "an update keeps the _id");

    let doc = store.get("k1").await.unwrap().unwrap();
    assert_eq!((doc.version, doc.content.as_str()), (2, "second"));
    assert_eq!(doc.content_hash, content_hash("second"));
    assert!(doc.metadata.is_empty(), "metadata is replaced, not merged");
    let entries = all_entries(&store).await;
    assert_eq!(entries.len(), 2);
    for (e, out) in entries.iter().zip([&a, &b]) {
        assert_eq!(e.id, out.outbox_id);
        assert_eq!(e.document_id, a.document_id);
        assert_eq!(e.op, Op::Upsert);
        assert_eq!(e.status, OutboxStatus::Pending);
        assert_eq!(e.version, out.version);
        assert_eq!(e.content_hash, out.content_hash);
        assert_eq!(e.schema_version, tidemark_core::SCHEMA_VERSION);
    }
    assert!(store.get("missing").await.unwrap().is_none());
    drop_db(&store).await;
}

#[tokio::test]
async fn failure_after_the_document_write_leaves_neither_document_nor_entry() {
    let (store, _) = fresh_store("st_atomic").await;
    store
        .put(NewDocument::new("x", "t", "original"))
        .await
        .unwrap();
    // Make the outbox insert (the write AFTER the document write) fail for contentIds that
    // already have an entry: a unique index on outbox.contentId, plus an orphan entry for "y".
    let orphan = tidemark_core::OutboxEntry::new_pending(ObjectId::new(), "y", Op::Delete, 1, "h");
    store.outbox().insert_one(&orphan).await.unwrap();
    store
        .database()
        .collection::<Document>(COLL_OUTBOX)
        .create_index(
            mongodb::IndexModel::builder()
                .keys(doc! {"contentId": 1})
                .options(
                    mongodb::options::IndexOptions::builder()
                        .unique(true)
                        .name("test_unique".to_string())
                        .build(),
                )
                .build(),
        )
        .await
        .unwrap();
    let docs_before = all_documents(&store).await;
    let entries_before = all_entries(&store).await;

    // Update path: the document update happens, then the entry insert fails.
    let err = store
        .put(NewDocument::new("x", "t", "changed"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Mongo(_)), "{err}");
    // Insert path: the document insert happens, then the entry insert fails.
    let err = store
        .put(NewDocument::new("y", "t", "new"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Mongo(_)), "{err}");
    // Batch: the first document is fine, the second's entry fails: nothing of the batch stays.
    let err = store
        .put_many(vec![
            NewDocument::new("z", "t", "fine"),
            NewDocument::new("y", "t", "new"),
        ])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Mongo(_)), "{err}");

    assert_eq!(all_documents(&store).await, docs_before);
    assert_eq!(all_entries(&store).await, entries_before);
    assert_eq!(store.get("x").await.unwrap().unwrap().content, "original");
    assert!(store.get("y").await.unwrap().is_none());
    assert!(store.get("z").await.unwrap().is_none());
    drop_db(&store).await;
}

#[tokio::test]
async fn concurrent_puts_on_one_content_id_get_distinct_versions() {
    let (store, _) = fresh_store("st_conc").await;
    const N: usize = 8;
    const M: usize = 10;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..N {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut versions = Vec::new();
            for m in 0..M {
                let out = store
                    .put(NewDocument::new("hot", "t", format!("task {t} put {m}")))
                    .await
                    .expect("put under contention succeeds after retries");
                versions.push(out.version);
            }
            versions
        }));
    }
    let mut returned = BTreeSet::new();
    for t in tasks {
        for v in t.await.unwrap() {
            assert!(returned.insert(v), "version {v} returned twice");
        }
    }
    let total = (N * M) as i64;
    eprintln!(
        "{} contended puts in {:?}, {} transaction retries",
        N * M,
        start.elapsed(),
        store.transaction_retries()
    );
    assert_eq!(returned, (1..=total).collect::<BTreeSet<_>>());
    assert!(
        store.transaction_retries() > 0,
        "the writers never conflicted, so the retry path was not exercised"
    );
    let doc = store.get("hot").await.unwrap().unwrap();
    assert_eq!(doc.version, total);
    let entries = all_entries(&store).await;
    assert_eq!(entries.len(), N * M);
    let versions: BTreeSet<i64> = entries.iter().map(|e| e.version).collect();
    assert_eq!(versions, (1..=total).collect::<BTreeSet<_>>());
    assert!(entries.iter().all(|e| e.document_id == doc.id));
    assert_eq!(counts(&store).await.0, 1);
    drop_db(&store).await;
}

#[tokio::test]
async fn delete_then_reput_gets_a_new_id_and_higher_versions() {
    let (store, _) = fresh_store("st_del").await;
    let v1 = store.put(NewDocument::new("d", "t", "one")).await.unwrap();
    let v2 = store.put(NewDocument::new("d", "t", "two")).await.unwrap();
    let del = store.delete("d").await.unwrap().expect("document existed");
    assert_eq!(del.document_id, v1.document_id);
    assert_eq!(del.version, 3, "the delete is a new version");
    assert!(store.get("d").await.unwrap().is_none());
    assert!(
        store.delete("d").await.unwrap().is_none(),
        "deleting again writes nothing"
    );

    let again = store
        .put(NewDocument::new("d", "t", "three"))
        .await
        .unwrap();
    assert_ne!(
        again.document_id, v1.document_id,
        "a new incarnation gets a fresh _id"
    );
    assert_eq!(
        again.version, 4,
        "versions keep increasing across delete + re-put"
    );
    let v5 = store.put(NewDocument::new("d", "t", "four")).await.unwrap();
    assert_eq!((v5.version, v5.document_id), (5, again.document_id));

    let entries = all_entries(&store).await;
    let shape: Vec<(i64, Op, ObjectId)> = entries
        .iter()
        .map(|e| (e.version, e.op, e.document_id))
        .collect();
    assert_eq!(
        shape,
        vec![
            (1, Op::Upsert, v1.document_id),
            (2, Op::Upsert, v2.document_id),
            (3, Op::Delete, v1.document_id),
            (4, Op::Upsert, again.document_id),
            (5, Op::Upsert, again.document_id),
        ]
    );
    // An old-incarnation entry points at a document that no longer exists (so the worker can
    // only delete the old vector id), and its version is below every new-incarnation version.
    let old_ids: Vec<_> = entries
        .iter()
        .filter(|e| e.document_id == v1.document_id)
        .collect();
    for e in &old_ids {
        assert!(store
            .documents()
            .find_one(doc! {"_id": e.document_id})
            .await
            .unwrap()
            .is_none());
        assert!(e.version < again.version);
    }
    assert_eq!(
        entries[2].content_hash,
        content_hash("two"),
        "delete entry carries the last hash"
    );
    drop_db(&store).await;
}

#[tokio::test]
async fn put_many_writes_everything_consistently_and_faster_than_single_puts() {
    let (store, _) = fresh_store("st_many").await;
    // Interleaved rounds (200 documents in one put_many, then 10 single puts), so that load
    // from other tests on the shared server hits both measurements alike.
    let (mut many, mut single) = (Duration::ZERO, Duration::ZERO);
    let mut out = Vec::new();
    for round in 0..5 {
        let docs: Vec<NewDocument> = (0..200)
            .map(|i| {
                let n = round * 200 + i;
                NewDocument::new(format!("b{n:04}"), "bulk", format!("bulk text number {n}"))
            })
            .collect();
        let t = Instant::now();
        let chunk = store.put_many(docs).await.unwrap();
        many += t.elapsed();
        assert_eq!(chunk.len(), 200);
        out.extend(chunk);
        let t = Instant::now();
        for i in 0..10 {
            let n = round * 10 + i;
            store
                .put(NewDocument::new(format!("s{n:03}"), "single", "x"))
                .await
                .unwrap();
        }
        single += t.elapsed();
    }
    assert!(out.iter().all(|o| o.version == 1));
    let many_per_doc = many / 1000;
    let single_per_doc = single / 50;
    eprintln!("put_many: {many_per_doc:?}/doc; put: {single_per_doc:?}/doc");
    assert!(
        many_per_doc * 2 < single_per_doc,
        "put_many ({many_per_doc:?}/doc) should be far faster than put ({single_per_doc:?}/doc)"
    );

    let docs = all_documents(&store).await;
    let entries = all_entries(&store).await;
    assert_eq!((docs.len(), entries.len()), (1050, 1050));
    for (d, e) in docs.iter().zip(&entries) {
        assert_eq!(
            (e.document_id, &e.content_id, e.version, &e.content_hash),
            (d.id, &d.content_id, d.version, &d.content_hash)
        );
    }
    for (o, d) in out.iter().zip(docs.iter()) {
        assert_eq!((o.document_id, &o.content_id), (d.id, &d.content_id));
    }
    drop_db(&store).await;
}

#[tokio::test]
async fn put_many_duplicates_get_increasing_versions_and_last_wins() {
    let (store, _) = fresh_store("st_dup").await;
    store.put(NewDocument::new("a", "t", "a0")).await.unwrap();
    let out = store
        .put_many(vec![
            NewDocument::new("a", "t", "a1"),
            NewDocument::new("b", "t", "b1"),
            NewDocument::new("a", "t", "a2"),
            NewDocument::new("b", "t", "b2"),
            NewDocument::new("a", "t", "a3"),
        ])
        .await
        .unwrap();
    let got: Vec<(&str, i64)> = out
        .iter()
        .map(|o| (o.content_id.as_str(), o.version))
        .collect();
    assert_eq!(got, vec![("a", 2), ("b", 1), ("a", 3), ("b", 2), ("a", 4)]);
    let a = store.get("a").await.unwrap().unwrap();
    assert_eq!((a.version, a.content.as_str()), (4, "a3"));
    let b = store.get("b").await.unwrap().unwrap();
    assert_eq!((b.version, b.content.as_str()), (2, "b2"));
    let entries = all_entries(&store).await;
    let hashes: Vec<(&str, i64, String)> = entries
        .iter()
        .map(|e| (e.content_id.as_str(), e.version, e.content_hash.clone()))
        .collect();
    assert_eq!(hashes[3], ("a", 4, content_hash("a3")));
    assert_eq!(entries.len(), 6);
    drop_db(&store).await;
}

#[tokio::test]
async fn put_many_splits_into_bounded_transactions() {
    let (store, mut cfg) = fresh_store("st_chunk").await;
    cfg.limits.max_content_bytes = 1000;
    cfg.limits.max_batch_bytes = 4000;
    let small = Store::new(store.client().clone(), &cfg.mongodb.database, &cfg);
    let docs: Vec<NewDocument> = (0..40)
        .map(|i| NewDocument::new(format!("c{i:02}"), "t", "x".repeat(900)))
        .collect();
    let out = small.put_many(docs).await.unwrap();
    assert_eq!(out.len(), 40);
    // ~1100 bytes per document: at most 3 per transaction, so at least 14 transactions.
    let (d, e) = counts(&store).await;
    assert_eq!((d, e), (40, 40));
    drop_db(&store).await;
}

#[tokio::test]
async fn enqueue_reindex_writes_entries_at_current_versions() {
    let (store, _) = fresh_store("st_reidx").await;
    let a = store.put(NewDocument::new("a", "t", "a")).await.unwrap();
    store.put(NewDocument::new("a", "t", "a2")).await.unwrap();
    let n = store
        .enqueue_reindex(&[a.document_id, ObjectId::new()])
        .await
        .unwrap();
    assert_eq!(n, 1, "ids that do not exist are skipped");
    let entries = all_entries(&store).await;
    let last = entries.last().unwrap();
    assert_eq!(
        (last.version, last.op, last.content_hash.clone()),
        (2, Op::Upsert, content_hash("a2"))
    );
    assert_eq!(entries.len(), 3);
    drop_db(&store).await;
}

#[tokio::test]
async fn ensure_schema_is_idempotent_and_applies_retention() {
    let (store, mut cfg) = fresh_store("st_schema").await;
    store.ensure_schema().await.unwrap();
    let names = |coll: &'static str| {
        let store = store.clone();
        async move {
            let ix: Vec<mongodb::IndexModel> = store
                .database()
                .collection::<Document>(coll)
                .list_indexes()
                .await
                .unwrap()
                .try_collect()
                .await
                .unwrap();
            ix
        }
    };
    let mut all = Vec::new();
    for coll in ["documents", "outbox"] {
        for ix in names(coll).await {
            all.push((
                coll,
                ix.options
                    .as_ref()
                    .and_then(|o| o.name.clone())
                    .unwrap_or_default(),
                ix,
            ));
        }
    }
    for (coll, name) in INDEX_NAMES {
        assert!(
            all.iter().any(|(c, n, _)| c == coll && n == name),
            "missing index {coll}.{name}"
        );
    }
    let unique = all
        .iter()
        .find(|(_, n, _)| n == "contentId_unique")
        .unwrap();
    assert_eq!(unique.2.options.as_ref().unwrap().unique, Some(true));
    let ttl = |all: &Vec<(&str, String, mongodb::IndexModel)>| {
        all.iter()
            .find(|(_, n, _)| n == "doneAt_ttl")
            .unwrap()
            .2
            .options
            .as_ref()
            .unwrap()
            .expire_after
    };
    assert_eq!(ttl(&all), Some(Duration::from_secs(7 * 24 * 3600)));

    cfg.outbox.retention = Duration::from_secs(3600);
    let changed = Store::new(store.client().clone(), &cfg.mongodb.database, &cfg);
    changed.ensure_schema().await.unwrap();
    let all: Vec<_> = names("outbox")
        .await
        .into_iter()
        .map(|ix| {
            (
                "outbox",
                ix.options
                    .as_ref()
                    .and_then(|o| o.name.clone())
                    .unwrap_or_default(),
                ix,
            )
        })
        .collect();
    assert_eq!(ttl(&all), Some(Duration::from_secs(3600)));
    drop_db(&store).await;
}

#[tokio::test]
async fn exhausted_retries_fail_cleanly_and_write_nothing() {
    let (store, _) = fresh_store("st_exhaust").await;
    let impatient = store
        .clone()
        .with_retry_policy(tidemark_store::RetryPolicy {
            max_attempts: 1,
            base_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(1),
        });
    let mut tasks = Vec::new();
    for t in 0..8 {
        let s = impatient.clone();
        tasks.push(tokio::spawn(async move {
            let mut results = Vec::new();
            for m in 0..5 {
                results.push(
                    s.put(NewDocument::new("contended", "t", format!("{t}/{m}")))
                        .await,
                );
            }
            results
        }));
    }
    let (mut ok, mut exhausted) = (0i64, 0);
    for t in tasks {
        for r in t.await.unwrap() {
            match r {
                Ok(_) => ok += 1,
                Err(StoreError::RetriesExhausted { attempts: 1, .. }) => exhausted += 1,
                Err(e) => panic!("unexpected error: {e}"),
            }
        }
    }
    assert!(
        exhausted > 0,
        "8 writers on one document with no retries must conflict"
    );
    // Every failed call left nothing behind: versions and entries count only the successes.
    assert_eq!(store.get("contended").await.unwrap().unwrap().version, ok);
    assert_eq!(counts(&store).await, (1, ok as u64));
    drop_db(&store).await;
}
