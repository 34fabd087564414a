//! Failures stay local and loud: a document the embedder rejects permanently ends dead with its
//! error while the others are indexed; transient failures retry with backoff and end dead after
//! `worker.max_attempts`; two workers on one outbox process every entry once and never embed
//! the same document at the same time.

use crate::worker_support;

use serde_json::json;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tidemark_core::OutboxStatus;
use tidemark_store::NewDocument;
use worker_support::{count_status, processed, test_config, wait_until, Env};

#[tokio::test]
async fn a_poisoned_document_ends_dead_and_the_rest_are_indexed() {
    let env = Env::new("wk_poison").await;
    *env.embedder.poison.lock().unwrap() = Some("POISON".into());
    let w = env.worker();
    w.init().await.unwrap();
    let mut docs: Vec<_> = (0..30)
        .map(|i| NewDocument::new(format!("p{i}"), "t", format!("p{i} fine text")))
        .collect();
    docs[17] = NewDocument::new("p17", "t", "p17 contains POISON here");
    env.store.put_many(docs).await.unwrap();
    let r = w.drain().await.unwrap();
    assert_eq!((r.indexed, r.dead), (29, 1), "{r:?}");
    let entries = env.entries().await;
    let dead: Vec<_> = entries
        .iter()
        .filter(|e| e.status == OutboxStatus::Dead)
        .collect();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].content_id, "p17");
    assert!(
        dead[0].last_error.as_deref().unwrap().contains("POISON"),
        "{:?}",
        dead[0].last_error
    );
    assert_eq!(dead[0].attempts, 1, "permanent errors are not retried");
    assert!(dead[0].lease.is_none());
    assert_eq!(env.vectors().await.len(), 29);
    assert_eq!(processed(&w, "dead"), 1);
    assert_eq!(count_status(&env.store, "pending").await, 0);
    env.cleanup().await;
}

#[tokio::test]
async fn transient_failures_back_off_then_die_after_max_attempts() {
    let mut cfg = test_config("wk_flaky");
    cfg.worker.max_attempts = 3;
    cfg.worker.backoff_base = Duration::from_millis(200);
    let env = Env::with_config(cfg).await;
    *env.embedder.flaky.lock().unwrap() = Some("FLAKY".into());
    let w = env.worker();
    w.init().await.unwrap();
    env.store
        .put(NewDocument::new("ok", "t", "ok text"))
        .await
        .unwrap();
    env.store
        .put(NewDocument::new("bad", "t", "bad FLAKY text"))
        .await
        .unwrap();
    let before = bson::DateTime::now().timestamp_millis();
    // One batch (a drain could reach the retries too on a slow machine).
    let r = w.process_once().await.unwrap();
    assert_eq!(
        r.retried, 2,
        "the batch failed transiently as a whole: {r:?}"
    );
    let e = env.entries().await;
    assert!(e
        .iter()
        .all(|e| e.status == OutboxStatus::Pending && e.attempts == 1));
    // The first retry waits between half and all of backoff_base (200 ms) after the failure,
    // which came after `before`.
    let wait = e[0].next_attempt_at.timestamp_millis() - before;
    assert!(
        wait >= 100,
        "next attempt is scheduled at least 100 ms after the failure ({wait} ms)"
    );
    assert!(e[0].last_error.as_deref().unwrap().contains("FLAKY"));
    // On retry each document is embedded alone: the good one goes through, the bad one keeps
    // failing until max_attempts.
    let ok = wait_until(Duration::from_secs(15), || async {
        w.drain().await.unwrap();
        count_status(&env.store, "pending").await == 0
    })
    .await;
    assert!(ok, "entries should finish");
    let e = env.entries().await;
    let bad = e.iter().find(|e| e.content_id == "bad").unwrap();
    assert_eq!(bad.status, OutboxStatus::Dead);
    assert_eq!(bad.attempts, 3);
    assert!(bad
        .last_error
        .as_deref()
        .unwrap()
        .contains("gave up after 3 attempts"));
    let good = e.iter().find(|e| e.content_id == "ok").unwrap();
    assert_eq!(
        good.status,
        OutboxStatus::Done,
        "not held up by the bad one"
    );
    assert_eq!(good.attempts, 1);
    assert_eq!(env.vectors().await.len(), 1);
    assert!(
        w.metrics()
            .retries_total
            .with_label_values(&["embed"])
            .get()
            >= 2
    );
    env.cleanup().await;
}

#[tokio::test]
async fn two_workers_share_one_outbox_without_touching_a_document_together() {
    let mut cfg = test_config("wk_two");
    cfg.worker.batch_size = 16;
    let env = Env::with_config(cfg).await;
    *env.embedder.delay.lock().unwrap() = Duration::from_millis(5);
    let a = env.worker();
    let b = env.worker();
    a.init().await.unwrap();
    assert_ne!(a.owner(), b.owner());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let run = |w: tidemark_worker::Worker| {
        let mut rx = stop_rx.clone();
        tokio::spawn(async move {
            w.run(async move {
                let _ = rx.wait_for(|s| *s).await;
            })
            .await
        })
    };
    let ta = run(a.clone());
    let tb = run(b.clone());
    // 100 documents, each written 4 times while both workers run.
    for round in 0..4 {
        let docs: Vec<_> = (0..100)
            .map(|i| {
                NewDocument::new(format!("k{i}"), "t", format!("k{i} round {round}"))
                    .with_metadata(json!({"round": round}))
            })
            .collect();
        for chunk in docs.chunks(25) {
            env.store.put_many(chunk.to_vec()).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let drained = wait_until(Duration::from_secs(60), || async {
        count_status(&env.store, "pending").await == 0
    })
    .await;
    stop_tx.send(true).unwrap();
    ta.await.unwrap().unwrap();
    tb.await.unwrap().unwrap();
    assert!(drained, "all entries done");
    assert_eq!(
        env.embedder.overlaps.load(Ordering::SeqCst),
        0,
        "a document was embedded by two workers at once"
    );
    let total = env.entries().await.len() as u64;
    assert_eq!(total, 400);
    let done = |w: &tidemark_worker::Worker| -> u64 {
        ["indexed", "unchanged", "superseded", "deleted"]
            .iter()
            .map(|r| processed(w, r))
            .sum()
    };
    assert_eq!(done(&a) + done(&b), total, "every entry done exactly once");
    assert!(
        done(&a) > 0 && done(&b) > 0,
        "both workers worked: {} / {}",
        done(&a),
        done(&b)
    );
    env.assert_consistent().await;
    let docs = env.documents().await;
    assert!(docs.iter().all(|d| d.version == 4));
    env.cleanup().await;
}
