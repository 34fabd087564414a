//! `Consistency::VectorVisible`: with no worker running the put times out with the documented
//! error (the document IS committed); when the entry is marked done (here by the test, standing
//! in for the worker's ack) the put returns promptly; a dead entry is reported as such.

use crate::store_support;

use bson::{doc, DateTime};
use std::time::{Duration, Instant};
use store_support::{drop_db, fresh_store};
use tidemark_store::{Consistency, NewDocument, Store, StoreError};

async fn mark_after(store: Store, content_id: &'static str, delay: Duration, set: bson::Document) {
    tokio::time::sleep(delay).await;
    let r = store
        .outbox()
        .update_one(
            doc! {"contentId": content_id, "status": "pending"},
            doc! {"$set": set},
        )
        .await
        .unwrap();
    assert_eq!(r.modified_count, 1);
}

#[tokio::test]
async fn times_out_without_a_worker_saying_the_document_is_committed() {
    let (store, _) = fresh_store("st_vis_to").await;
    let start = Instant::now();
    let err = store
        .put_with(
            NewDocument::new("v1", "t", "waiting"),
            Consistency::VectorVisible {
                timeout: Duration::from_millis(1500),
            },
        )
        .await
        .unwrap_err();
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_millis(1500) && elapsed < Duration::from_secs(6),
        "{elapsed:?}"
    );
    let StoreError::NotVisible {
        ref content_id,
        document_id,
        outbox_id,
        version,
        waited,
    } = err
    else {
        panic!("expected NotVisible, got {err:?}");
    };
    assert!(err.is_committed_but_pending());
    assert_eq!((content_id.as_str(), version), ("v1", 1));
    assert!(waited >= Duration::from_millis(1500));
    let msg = err.to_string();
    assert!(msg.contains("IS committed"), "{msg}");
    assert!(msg.contains("still pending"), "{msg}");
    assert!(
        msg.contains(&document_id.to_hex()) && msg.contains(&outbox_id.to_hex()),
        "{msg}"
    );
    // ... and it really is committed.
    let stored = store.get("v1").await.unwrap().unwrap();
    assert_eq!(stored.id, document_id);
    let entry = store
        .outbox()
        .find_one(doc! {"_id": outbox_id})
        .await
        .unwrap()
        .unwrap();
    assert_eq!(entry.document_id, document_id);
    drop_db(&store).await;
}

#[tokio::test]
async fn returns_once_the_entry_is_marked_done() {
    let (store, _) = fresh_store("st_vis_ok").await;
    let acker = tokio::spawn(mark_after(
        store.clone(),
        "v2",
        Duration::from_millis(900),
        doc! {"status": "done", "doneAt": DateTime::now(), "result": "indexed"},
    ));
    let start = Instant::now();
    let out = store
        .put_with(
            NewDocument::new("v2", "t", "soon visible"),
            Consistency::VectorVisible {
                timeout: Duration::from_secs(20),
            },
        )
        .await
        .unwrap();
    let elapsed = start.elapsed();
    acker.await.unwrap();
    eprintln!("visible {elapsed:?} after the put started (ack at 900ms)");
    assert_eq!(out.version, 1);
    assert!(
        elapsed >= Duration::from_millis(900),
        "returned before the ack: {elapsed:?}"
    );
    // Polling alone (checks ~100, 300, 700, 1500 ms after the commit) would notice at ~1.5 s;
    // the change stream on the entry notices at once.
    assert!(
        elapsed < Duration::from_millis(1400),
        "took {elapsed:?} after a 900ms ack: the change stream did not wake the waiter"
    );
    // Already done: returns at once.
    let t = Instant::now();
    store
        .wait_visible(out.outbox_id, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(t.elapsed() < Duration::from_secs(1));
    drop_db(&store).await;
}

#[tokio::test]
async fn dead_entry_and_unknown_entry_are_reported() {
    let (store, _) = fresh_store("st_vis_dead").await;
    tokio::spawn(mark_after(
        store.clone(),
        "v3",
        Duration::from_millis(300),
        doc! {"status": "dead", "lastError": "dimension mismatch: 3 != 384"},
    ));
    let err = store
        .put_with(
            NewDocument::new("v3", "t", "doomed"),
            Consistency::VectorVisible {
                timeout: Duration::from_secs(20),
            },
        )
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, StoreError::VectorFailed { .. }), "{err:?}");
    assert!(
        msg.contains("IS committed") && msg.contains("dimension mismatch"),
        "{msg}"
    );
    let err = store
        .wait_visible(bson::oid::ObjectId::new(), Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::UnknownEntry(_)), "{err:?}");
    drop_db(&store).await;
}
