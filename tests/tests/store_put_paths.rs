//! `Store::put` reads only the latest outbox entry of a `contentId` and takes the stored
//! document to be what that entry says. These tests, against the real replica set, check that
//! the guess is right in normal use (no retried transaction), and that every way the outbox can
//! disagree with the stored document (a document written around the outbox, entries expired by
//! the audit-trail TTL, a document removed around the outbox) still ends with the right version
//! and `_id`, through one retried transaction on the general path. Each runs twice: writing
//! with one `bulkWrite` (MongoDB 8.0+) and with two separate writes (older servers).

use crate::store_support;

use bson::{doc, oid::ObjectId, DateTime, Document};
use store_support::{all_entries, drop_db, fresh_store};
use tidemark_core::{content_hash, DocumentRecord, Op, COLL_DOCUMENTS};
use tidemark_store::{NewDocument, Store};

fn nd(cid: &str, text: &str) -> NewDocument {
    NewDocument::new(cid, "t", text)
}

/// Retried transactions caused by `f`.
async fn retries_of<T>(store: &Store, f: impl std::future::Future<Output = T>) -> (T, u64) {
    let before = store.transaction_retries();
    let out = f.await;
    (out, store.transaction_retries() - before)
}

/// A fresh store; `separate`: without `bulkWrite`.
async fn store_for(prefix: &str, separate: bool) -> Store {
    let (store, _) = fresh_store(prefix).await;
    if separate {
        store.with_separate_writes()
    } else {
        store
    }
}

fn raw_documents(store: &Store) -> mongodb::Collection<Document> {
    store.database().collection(COLL_DOCUMENTS)
}

#[tokio::test]
async fn the_outbox_guess_holds_in_normal_use() {
    for separate in [false, true] {
        let store = store_for("st_guess", separate).await;
        let (r, n) = retries_of(&store, async {
            let a = store.put(nd("g", "one")).await.unwrap();
            let b = store.put(nd("g", "two")).await.unwrap();
            store.delete("g").await.unwrap().unwrap();
            let c = store.put(nd("g", "three")).await.unwrap();
            let d = store.put(nd("g", "four")).await.unwrap();
            (a, b, c, d)
        })
        .await;
        let (a, b, c, d) = r;
        assert_eq!(
            n, 0,
            "no transaction retried in normal use (separate writes: {separate})"
        );
        assert_eq!((a.version, b.version, c.version, d.version), (1, 2, 4, 5));
        assert_eq!(a.document_id, b.document_id);
        assert_ne!(c.document_id, a.document_id);
        assert_eq!(c.document_id, d.document_id);
        let doc = store.get("g").await.unwrap().unwrap();
        assert_eq!(
            (doc.id, doc.version, doc.content.as_str()),
            (d.document_id, 5, "four")
        );
        drop_db(&store).await;
    }
}

#[tokio::test]
async fn a_document_written_around_the_outbox_is_updated_not_duplicated() {
    for separate in [false, true] {
        let store = store_for("st_guess_ins", separate).await;
        // Inserted straight into MongoDB at version 5: no outbox entry says it exists.
        let id = ObjectId::new();
        let record = DocumentRecord {
            id,
            content_id: "a".into(),
            doc_type: "t".into(),
            content: "direct".into(),
            metadata: Document::new(),
            timestamp: DateTime::now(),
            version: 5,
            content_hash: content_hash("direct"),
            vector_id: None,
            indexed_version: None,
        };
        store.documents().insert_one(&record).await.unwrap();

        let (out, n) = retries_of(&store, store.put(nd("a", "through tidemark"))).await;
        let out = out.unwrap();
        assert_eq!(
            n, 1,
            "one retry on the general path (separate writes: {separate})"
        );
        assert_eq!((out.document_id, out.version), (id, 6));
        let doc = store.get("a").await.unwrap().unwrap();
        assert_eq!((doc.version, doc.content.as_str()), (6, "through tidemark"));
        let entries = all_entries(&store).await;
        assert_eq!(entries.len(), 1);
        assert_eq!((entries[0].document_id, entries[0].version), (id, 6));
        drop_db(&store).await;
    }
}

#[tokio::test]
async fn a_version_bumped_around_the_outbox_is_continued() {
    for separate in [false, true] {
        let store = store_for("st_guess_upd", separate).await;
        let first = store.put(nd("b", "one")).await.unwrap();
        raw_documents(&store)
            .update_one(doc! {"contentId": "b"}, doc! {"$set": {"version": 9_i64}})
            .await
            .unwrap();

        let (out, n) = retries_of(&store, store.put(nd("b", "two"))).await;
        let out = out.unwrap();
        assert_eq!(n, 1, "separate writes: {separate}");
        assert_eq!((out.document_id, out.version), (first.document_id, 10));
        assert_eq!(store.get("b").await.unwrap().unwrap().version, 10);
        drop_db(&store).await;
    }
}

#[tokio::test]
async fn expired_entries_do_not_restart_the_versions() {
    for separate in [false, true] {
        let store = store_for("st_guess_ttl", separate).await;
        store.put(nd("c", "one")).await.unwrap();
        let second = store.put(nd("c", "two")).await.unwrap();
        // What the TTL index on doneAt does to an old audit trail.
        store
            .outbox()
            .delete_many(doc! {"contentId": "c"})
            .await
            .unwrap();

        let (out, n) = retries_of(&store, store.put(nd("c", "three"))).await;
        let out = out.unwrap();
        assert_eq!(n, 1, "separate writes: {separate}");
        assert_eq!((out.document_id, out.version), (second.document_id, 3));
        let entries = all_entries(&store).await;
        assert_eq!(entries.len(), 1);
        assert_eq!((entries[0].op, entries[0].version), (Op::Upsert, 3));
        drop_db(&store).await;
    }
}

#[tokio::test]
async fn a_document_removed_around_the_outbox_is_created_above_its_old_versions() {
    for separate in [false, true] {
        let store = store_for("st_guess_del", separate).await;
        store.put(nd("d", "one")).await.unwrap();
        let second = store.put(nd("d", "two")).await.unwrap();
        raw_documents(&store)
            .delete_one(doc! {"contentId": "d"})
            .await
            .unwrap();

        let (out, n) = retries_of(&store, store.put(nd("d", "again"))).await;
        let out = out.unwrap();
        assert_eq!(n, 1, "separate writes: {separate}");
        assert_ne!(out.document_id, second.document_id, "a new incarnation");
        assert_eq!(out.version, 3, "above every version of the old incarnation");
        let doc = store.get("d").await.unwrap().unwrap();
        assert_eq!((doc.id, doc.version), (out.document_id, 3));
        drop_db(&store).await;
    }
}
