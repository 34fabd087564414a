//! The worker's core path against the real services: put -> vector with the documented id and
//! metadata, found first by a query with its own text; update re-embeds; a metadata-only change
//! updates metadata without calling the embedder; delete removes the vector; processing the
//! same entries again leaves Chroma identical; versions processed out of order end with the
//! latest in Chroma.

use crate::worker_support;

use bson::doc;
use serde_json::json;
use std::time::Duration;
use tidemark_core::{OutboxResult, OutboxStatus};
use tidemark_store::NewDocument;
use worker_support::{hash_vec, processed, Env};

fn nd(id: &str, content: &str, meta: serde_json::Value) -> NewDocument {
    NewDocument::new(id, "note", content).with_metadata(meta)
}

#[tokio::test]
async fn put_update_metadata_change_and_delete() {
    let env = Env::new("wk_basic").await;
    let w = env.worker();
    w.init().await.unwrap();
    let a = env
        .store
        .put(nd(
            "a",
            "alpha apples in autumn",
            json!({"lang": "en", "n": {"x": 1}, "tags": ["t1"]}),
        ))
        .await
        .unwrap();
    env.store
        .put(nd("b", "bravo boats on the bay", json!({})))
        .await
        .unwrap();
    env.store
        .put(nd("c", "charlie cheese and crackers", json!({})))
        .await
        .unwrap();
    let r = w.drain().await.unwrap();
    assert_eq!(r.indexed, 3, "{r:?}");
    assert_eq!(env.embedder.texts(), 3);

    // The documented id and metadata.
    let vecs = env.vectors().await;
    let (m, emb) = &vecs[&a.document_id.to_hex()];
    assert_eq!(m["documentId"], json!(a.document_id.to_hex()));
    assert_eq!(m["contentId"], json!("a"));
    assert_eq!(m["type"], json!("note"));
    assert_eq!(m["version"], json!(1));
    assert_eq!(m["contentHash"], json!(a.content_hash));
    assert_eq!(m["model"], json!("test-hash-64"));
    assert!(chrono::DateTime::parse_from_rfc3339(m["timestamp"].as_str().unwrap()).is_ok());
    assert_eq!(m["lang"], json!("en"));
    assert_eq!(m["n.x"], json!(1));
    assert_eq!(m["tags"], json!("[\"t1\"]"));
    assert_eq!(emb.len(), worker_support::DIM);
    // A query with the document's own text returns it first.
    let coll = env.collection_id().await;
    let hits = env
        .chroma
        .query(&coll, &hash_vec("alpha apples in autumn"), 3)
        .await
        .unwrap();
    assert_eq!(hits[0].id, a.document_id.to_hex());
    // The document records where its vector is.
    let doc_a = env.store.get("a").await.unwrap().unwrap();
    assert_eq!(doc_a.indexed_version, Some(1));
    assert_eq!(doc_a.vector_id, Some(a.document_id.to_hex()));
    env.assert_consistent().await;

    // Update with new content: re-embedded, new hash and version in Chroma.
    let a2 = env
        .store
        .put(nd(
            "a",
            "alpha apricots in april",
            json!({"lang": "en", "n": {"x": 1}, "tags": ["t1"]}),
        ))
        .await
        .unwrap();
    let r = w.drain().await.unwrap();
    assert_eq!((r.indexed, r.unchanged), (1, 0), "{r:?}");
    assert_eq!(env.embedder.texts(), 4);
    let (m, _) = &env.vectors().await[&a.document_id.to_hex()];
    assert_eq!(m["contentHash"], json!(a2.content_hash));
    assert_eq!(m["version"], json!(2));

    // Metadata-only change: metadata updated (removed keys gone), embedder NOT called.
    let before = w.stats();
    env.store
        .put(nd("a", "alpha apricots in april", json!({"lang": "de"})))
        .await
        .unwrap();
    let r = w.drain().await.unwrap();
    assert_eq!(r.indexed, 1, "{r:?}");
    assert_eq!(
        env.embedder.texts(),
        4,
        "a metadata-only change must not embed"
    );
    assert_eq!(w.stats().texts_embedded, before.texts_embedded);
    assert_eq!(w.stats().metadata_updates, before.metadata_updates + 1);
    let (m, _) = &env.vectors().await[&a.document_id.to_hex()];
    assert_eq!(m["lang"], json!("de"));
    assert_eq!(m["version"], json!(3));
    assert!(
        !m.contains_key("n.x") && !m.contains_key("tags"),
        "stale keys removed: {m:?}"
    );
    env.assert_consistent().await;

    // Delete removes the vector.
    let del = env.store.delete("b").await.unwrap().unwrap();
    let r = w.drain().await.unwrap();
    assert_eq!(r.deleted, 1, "{r:?}");
    assert!(!env.vectors().await.contains_key(&del.document_id.to_hex()));
    let last = env.entries().await.into_iter().last().unwrap();
    assert_eq!(last.status, OutboxStatus::Done);
    assert_eq!(last.result, Some(OutboxResult::Deleted));
    assert!(last.lease.is_none() && last.done_at.is_some());
    assert_eq!(processed(&w, "deleted"), 1);
    env.assert_consistent().await;
    env.cleanup().await;
}

#[tokio::test]
async fn processing_again_leaves_chroma_identical() {
    let env = Env::new("wk_idem").await;
    let w = env.worker();
    w.init().await.unwrap();
    let docs: Vec<_> = (0..40)
        .map(|i| {
            nd(
                &format!("d{i}"),
                &format!("d{i} text number {i}"),
                json!({"i": i, "f": 0.5}),
            )
        })
        .collect();
    env.store.put_many(docs).await.unwrap();
    env.store.delete("d3").await.unwrap();
    w.drain().await.unwrap();
    let first = env.vectors().await;
    let texts = env.embedder.texts();

    // Replay every entry (as after a crash between the Chroma write and the mark-done).
    env.store
        .outbox()
        .update_many(
            doc! {},
            doc! {"$set": {"status": "pending"}, "$unset": {"doneAt": "", "result": ""}},
        )
        .await
        .unwrap();
    let r = w.drain().await.unwrap();
    assert_eq!(r.indexed, 0, "nothing rewritten: {r:?}");
    assert_eq!(r.unchanged, 39, "{r:?}");
    assert_eq!(r.deleted + r.superseded, 2, "{r:?}");
    assert_eq!(env.embedder.texts(), texts, "no embedding on replay");
    assert_eq!(env.vectors().await, first, "Chroma identical after replay");
    env.assert_consistent().await;
    env.cleanup().await;
}

#[tokio::test]
async fn versions_out_of_order_end_with_the_latest() {
    let env = Env::new("wk_order").await;
    let w = env.worker();
    w.init().await.unwrap();
    let v1 = env
        .store
        .put(nd("x", "x first version", json!({})))
        .await
        .unwrap();
    let v2 = env
        .store
        .put(nd("x", "x second version", json!({})))
        .await
        .unwrap();
    let v3 = env
        .store
        .put(nd("x", "x third version", json!({})))
        .await
        .unwrap();
    // Hold back v1 and v2 so that v3 is processed first.
    let later = bson::DateTime::from_millis(bson::DateTime::now().timestamp_millis() + 60_000);
    env.store
        .outbox()
        .update_many(
            doc! {"_id": {"$in": [v1.outbox_id, v2.outbox_id]}},
            doc! {"$set": {"nextAttemptAt": later}},
        )
        .await
        .unwrap();
    let r = w.drain().await.unwrap();
    assert_eq!(r.indexed, 1);
    // Now the older ones arrive: they must not overwrite v3.
    env.store
        .outbox()
        .update_many(
            doc! {"_id": {"$in": [v1.outbox_id, v2.outbox_id]}},
            doc! {"$set": {"nextAttemptAt": bson::DateTime::now()}},
        )
        .await
        .unwrap();
    let r = w.drain().await.unwrap();
    assert_eq!(r.superseded, 2, "{r:?}");
    let (m, emb) = &env.vectors().await[&v3.document_id.to_hex()];
    assert_eq!(m["contentHash"], json!(v3.content_hash));
    assert_eq!(m["version"], json!(3));
    assert_eq!(emb, &hash_vec("x third version"));

    // Several versions in one batch coalesce to the newest; the older end superseded.
    for i in 4..=8 {
        env.store
            .put(nd("x", &format!("x version {i}"), json!({})))
            .await
            .unwrap();
    }
    let before = env.embedder.texts();
    let r = w.drain().await.unwrap();
    assert_eq!((r.indexed, r.superseded), (1, 4), "{r:?}");
    assert_eq!(
        env.embedder.texts(),
        before + 1,
        "only the newest is embedded"
    );
    let (m, _) = &env.vectors().await[&v3.document_id.to_hex()];
    assert_eq!(m["version"], json!(8));
    env.assert_consistent().await;

    // A delete and a re-put: the old incarnation's vector goes, the new one is indexed.
    env.store.delete("x").await.unwrap();
    let again = env.store.put(nd("x", "x reborn", json!({}))).await.unwrap();
    assert_ne!(again.document_id, v1.document_id);
    tokio::time::sleep(Duration::from_millis(10)).await;
    w.drain().await.unwrap();
    let vecs = env.vectors().await;
    assert!(!vecs.contains_key(&v1.document_id.to_hex()));
    assert!(vecs.contains_key(&again.document_id.to_hex()));
    env.assert_consistent().await;
    env.cleanup().await;
}

/// The outbox entry `id`.
async fn entry_of(env: &Env, id: bson::oid::ObjectId) -> tidemark_core::OutboxEntry {
    let e = env.store.outbox().find_one(doc! {"_id": id}).await;
    e.unwrap().expect("the put's entry")
}

/// Documents a put created are indexed without reading Chroma for their stored vectors (their
/// entries say `newDocument`); an update of them reads, and so does a second delivery of a
/// new document's entry (a first one may have written vectors before it was interrupted).
#[tokio::test]
async fn new_documents_skip_the_stored_read_and_everything_else_reads() {
    let env = Env::new("wk_newdoc").await;
    let w = env.worker();
    w.init().await.unwrap();
    let reads = |result: &str| {
        w.metrics()
            .stored_reads_total
            .with_label_values(&[result])
            .get()
    };
    let docs: Vec<_> = (0..20)
        .map(|i| nd(&format!("n{i}"), &format!("new document {i}"), json!({})))
        .collect();
    env.store.put_many(docs).await.unwrap();
    let one = env
        .store
        .put(nd("single", "one put", json!({})))
        .await
        .unwrap();
    let entry = entry_of(&env, one.outbox_id).await;
    assert!(entry.new_document, "put of a new document marks its entry");
    let r = w.drain().await.unwrap();
    assert_eq!(r.indexed, 21, "{r:?}");
    assert_eq!((reads("read"), reads("skipped")), (0, 21));

    for i in 0..5 {
        let u = env
            .store
            .put(nd(&format!("n{i}"), &format!("changed {i}"), json!({})))
            .await
            .unwrap();
        let e = entry_of(&env, u.outbox_id).await;
        assert!(!e.new_document, "an update's entry is not new");
    }
    let r = w.drain().await.unwrap();
    assert_eq!(r.indexed, 5, "{r:?}");
    assert_eq!((reads("read"), reads("skipped")), (5, 21));

    // A second delivery (as after a crash between the Chroma write and the mark): it reads,
    // finds its vectors current and embeds nothing.
    let texts = env.embedder.texts();
    env.store
        .outbox()
        .update_many(
            doc! {"_id": one.outbox_id},
            doc! {"$set": {"status": "pending"}, "$unset": {"doneAt": "", "result": ""}},
        )
        .await
        .unwrap();
    let r = w.drain().await.unwrap();
    assert_eq!(r.unchanged, 1, "{r:?}");
    assert_eq!(
        env.embedder.texts(),
        texts,
        "no embedding on a second delivery"
    );
    assert_eq!((reads("read"), reads("skipped")), (6, 21));
    env.assert_consistent().await;
    env.cleanup().await;
}
