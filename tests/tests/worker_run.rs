//! The long-running loop: the change stream wakes the worker; a clean restart resumes from the
//! saved position without restarting the stream; a resume token that is invalid
//! (or gone) restarts the stream from now, counts the restart and misses nothing; SIGTERM-style
//! shutdown returns within the deadline with leases and locks released and the token saved;
//! `/metrics`, `/healthz` and `/readyz` answer; several batches in flight in one worker
//! overlap without ever touching one document twice at once.

use crate::worker_support;

use bson::{doc, Document};
use futures::StreamExt;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tidemark_core::COLL_SYNC_STATE;
use tidemark_store::NewDocument;
use tidemark_worker::Worker;
use worker_support::{count_status, processed, test_config, wait_until, Env};

fn spawn_run(
    w: &Worker,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<tidemark_worker::StopReport, tidemark_worker::WorkerError>>,
) {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let w = w.clone();
    let h = tokio::spawn(async move {
        w.run(async move {
            let _ = rx.await;
        })
        .await
    });
    (tx, h)
}

fn docs(prefix: &str, n: usize) -> Vec<NewDocument> {
    (0..n)
        .map(|i| {
            NewDocument::new(
                format!("{prefix}{i}"),
                "t",
                format!("{prefix}{i} body text"),
            )
        })
        .collect()
}

async fn saved_token(env: &Env) -> Option<Document> {
    let row = env
        .store
        .database()
        .collection::<Document>(COLL_SYNC_STATE)
        .find_one(doc! {"_id": &env.cfg.worker.group})
        .await
        .unwrap()?;
    row.get_document("resumeToken").ok().cloned()
}

/// Overwrites the saved stream position of the test's worker group.
async fn save_position(env: &Env, resume_token: Document, event_token: Document) {
    env.store
        .database()
        .collection::<Document>(COLL_SYNC_STATE)
        .update_one(
            doc! {"_id": &env.cfg.worker.group},
            doc! {"$set": {"resumeToken": resume_token, "eventToken": event_token}},
        )
        .await
        .unwrap();
}

/// How often `w` restarted its change stream from now for `reason`.
fn restarts(w: &Worker, reason: &str) -> u64 {
    w.metrics()
        .change_stream_restarts_total
        .with_label_values(&[reason])
        .get()
}

/// A worker with a long sweep interval (only the change stream delivers new writes quickly)
/// drains 20 documents and stops; returns the saved resume token.
async fn first_worker_drains_and_saves(prefix: &str) -> (Env, Document) {
    let mut cfg = test_config(prefix);
    cfg.worker.sweep_interval = Duration::from_secs(60);
    let env = Env::with_config(cfg).await;
    let w1 = env.worker();
    let (stop, h) = spawn_run(&w1);
    env.store.put_many(docs("a", 20)).await.unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || async {
            count_status(&env.store, "done").await == 20
        })
        .await
    );
    stop.send(()).unwrap();
    h.await.unwrap().unwrap();
    let token = saved_token(&env)
        .await
        .expect("token saved on a drained point");
    (env, token)
}

#[tokio::test]
async fn invalid_resume_token_restarts_from_now_and_misses_nothing() {
    let (env, token) = first_worker_drains_and_saves("wk_token").await;

    // Written while no worker runs, then the token is damaged.
    env.store.put_many(docs("b", 30)).await.unwrap();
    // Both the post-batch token and the last event's token (the fallback).
    save_position(
        &env,
        doc! {"_data": "82FFFFFFFF000000012B0229296E04"},
        doc! {"_data": "82FFFFFFFE000000012B0229296E04"},
    )
    .await;
    let w2 = env.worker();
    let (stop, h) = spawn_run(&w2);
    env.store.put_many(docs("c", 10)).await.unwrap();
    let all = wait_until(Duration::from_secs(20), || async {
        count_status(&env.store, "done").await == 60
    })
    .await;
    let invalid_token_restarts = restarts(&w2, "invalid_token");
    // New writes after the restart are seen by the new stream.
    env.store.put_many(docs("d", 5)).await.unwrap();
    let more = wait_until(Duration::from_secs(20), || async {
        count_status(&env.store, "done").await == 65
    })
    .await;
    stop.send(()).unwrap();
    h.await.unwrap().unwrap();
    assert!(all && more, "no entry missed");
    assert_eq!(
        invalid_token_restarts, 1,
        "the invalid token is counted once"
    );
    let new_token = saved_token(&env).await.unwrap();
    assert_ne!(new_token, token);
    assert_ne!(
        new_token.get_str("_data").ok(),
        Some("82FFFFFFFF000000012B0229296E04")
    );
    env.assert_consistent().await;

    // The token is gone entirely: start from now, sweep, nothing missed.
    env.store
        .database()
        .collection::<Document>(COLL_SYNC_STATE)
        .delete_many(doc! {})
        .await
        .unwrap();
    env.store.put_many(docs("e", 10)).await.unwrap();
    let w3 = env.worker();
    let (stop, h) = spawn_run(&w3);
    let ok = wait_until(Duration::from_secs(20), || async {
        count_status(&env.store, "done").await == 75
    })
    .await;
    stop.send(()).unwrap();
    h.await.unwrap().unwrap();
    assert!(ok);
    env.assert_consistent().await;
    env.cleanup().await;
}

#[tokio::test]
async fn a_clean_restart_resumes_from_the_saved_token() {
    let (env, _) = first_worker_drains_and_saves("wk_resume").await;

    // The position a worker holds when the last thing its stream scanned was DDL in the same
    // database (here a collection created): the post-batch token moves past it, and some
    // servers mint that token with the `db.$cmd` namespace and then refuse to resume from it.
    // The last event's own token is the fallback.
    let mut stream = env.store.outbox().watch().await.unwrap();
    env.store
        .put(NewDocument::new("x0", "t", "x0 body text"))
        .await
        .unwrap();
    let event = tokio::time::timeout(Duration::from_secs(20), stream.next())
        .await
        .expect("event within 20s")
        .expect("stream open")
        .unwrap();
    env.store
        .database()
        .create_collection("ddl_after_the_event")
        .await
        .unwrap();
    let mut post_batch = stream.resume_token().expect("a token after an event");
    let mut last_event = event.id;
    let deadline = Instant::now() + Duration::from_secs(5);
    while post_batch == last_event && Instant::now() < deadline {
        // One full run (of many) saw another outbox event here, under the load of the whole
        // suite; what it was is printed, and the last event seen stays the fallback.
        if let Some(other) = stream.next_if_any().await.unwrap() {
            eprintln!("another outbox event after x0: {other:?}");
            last_event = other.id;
        }
        post_batch = stream.resume_token().unwrap();
    }
    drop(stream);
    save_position(
        &env,
        bson::to_document(&post_batch).unwrap(),
        bson::to_document(&last_event).unwrap(),
    )
    .await;

    // Written while no worker runs; the next worker resumes the stream where the last left it.
    env.store.put_many(docs("b", 15)).await.unwrap();
    let w2 = env.worker();
    let (stop, h) = spawn_run(&w2);
    env.store.put_many(docs("c", 10)).await.unwrap();
    let ok = wait_until(Duration::from_secs(20), || async {
        count_status(&env.store, "done").await == 46
    })
    .await;
    stop.send(()).unwrap();
    h.await.unwrap().unwrap();
    assert!(ok, "no entry missed");
    assert_eq!(
        restarts(&w2, "invalid_token"),
        0,
        "the saved position was resumed"
    );
    assert_eq!(restarts(&w2, "history_lost"), 0);
    env.assert_consistent().await;
    env.cleanup().await;
}

#[tokio::test]
async fn shutdown_releases_leases_and_returns_within_the_deadline() {
    let mut cfg = test_config("wk_stop");
    cfg.worker.batch_size = 8;
    cfg.worker.shutdown_deadline = Duration::from_secs(3);
    cfg.worker.lease = Duration::from_secs(60);
    let env = Env::with_config(cfg).await;
    // A slow embedder: the shutdown arrives mid-batch and the batch cannot finish in time.
    *env.embedder.delay.lock().unwrap() = Duration::from_secs(30);
    let w = env.worker();
    let (stop, h) = spawn_run(&w);
    env.store.put_many(docs("s", 40)).await.unwrap();
    let leased = wait_until(Duration::from_secs(10), || async {
        env.store
            .outbox()
            .count_documents(doc! {"lease.owner": w.owner()})
            .await
            .unwrap()
            > 0
    })
    .await;
    assert!(leased, "the worker claimed a batch");
    let t = Instant::now();
    stop.send(()).unwrap();
    h.await.unwrap().expect("run returns Ok");
    assert!(
        t.elapsed() <= Duration::from_secs(3),
        "stopped in {:?}",
        t.elapsed()
    );
    let held = env
        .store
        .outbox()
        .count_documents(doc! {"lease": {"$ne": null}})
        .await
        .unwrap();
    assert_eq!(held, 0, "leases released");
    let locks = env
        .store
        .database()
        .collection::<Document>(tidemark_worker::COLL_LOCKS)
        .count_documents(doc! {})
        .await
        .unwrap();
    assert_eq!(locks, 0, "document locks released");
    assert_eq!(
        count_status(&env.store, "pending").await,
        40,
        "nothing marked without a write"
    );
    // A new worker picks everything up at once (no waiting for lease expiry).
    *env.embedder.delay.lock().unwrap() = Duration::ZERO;
    let r = env.worker().drain().await.unwrap();
    assert_eq!(r.indexed, 40);
    env.cleanup().await;
}

#[tokio::test]
async fn http_endpoints_answer() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cfg = test_config("wk_http");
    cfg.metrics.addr = format!("127.0.0.1:{port}");
    let env = Env::with_config(cfg).await;
    let w = env.worker();
    let (stop, h) = spawn_run(&w);
    env.store.put_many(docs("h", 5)).await.unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || async {
            count_status(&env.store, "done").await == 5
        })
        .await
    );
    let base = format!("http://127.0.0.1:{port}");
    let get = |p: &str| reqwest::get(format!("{base}{p}"));
    let health = get("/healthz").await.unwrap();
    assert_eq!(health.status(), 200);
    let ready = get("/readyz").await.unwrap();
    assert_eq!(ready.status(), 200);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(
        body,
        serde_json::json!({"mongodb": "ok", "chroma": "ok", "embedder": "ok"})
    );
    let expected = [
        "tidemark_outbox_pending 0",
        "tidemark_outbox_dead 0",
        "tidemark_outbox_lag_seconds 0",
        "tidemark_entries_processed_total{result=\"indexed\"} 5",
        "tidemark_end_to_end_seconds_count",
        "tidemark_embed_seconds_count",
        "tidemark_vector_write_seconds_count",
        "tidemark_batch_size_count",
        "tidemark_resume_token_age_seconds",
        "tidemark_build_info{model=\"test-hash-64\"",
    ];
    // Gauges are refreshed every second (up to every 5 s when their queries are slow); a
    // refresh that began before the entries were marked done can still report them pending,
    // so wait for one that began after.
    let mut text = String::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        text = get("/metrics").await.unwrap().text().await.unwrap();
        if expected.iter().all(|name| text.contains(name)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for name in expected {
        assert!(text.contains(name), "missing {name} in\n{text}");
    }
    stop.send(()).unwrap();
    h.await.unwrap().unwrap();
    env.cleanup().await;
}

#[tokio::test]
async fn batches_in_flight_overlap_but_never_share_a_document() {
    let mut cfg = test_config("wk_lanes");
    cfg.worker.batch_size = 8;
    cfg.worker.concurrency = 3;
    let env = Env::with_config(cfg).await;
    // Slow embedding: a batch is still embedding when the next one is claimed.
    *env.embedder.delay.lock().unwrap() = Duration::from_millis(300);
    let w = env.worker();
    let (tx, h) = spawn_run(&w);
    for round in 0..2 {
        let batch: Vec<NewDocument> = (0..60)
            .map(|i| NewDocument::new(format!("l{i}"), "t", format!("l{i} round {round}")))
            .collect();
        env.store.put_many(batch).await.unwrap();
    }
    let drained = wait_until(Duration::from_secs(90), || async {
        count_status(&env.store, "pending").await == 0
    })
    .await;
    tx.send(()).unwrap();
    h.await.unwrap().unwrap();
    assert!(drained, "all entries done");
    let e = &env.embedder;
    assert_eq!(
        e.overlaps.load(Ordering::SeqCst),
        0,
        "two batches of one worker embedded the same document at once"
    );
    assert!(
        e.max_calls_in_flight.load(Ordering::SeqCst) >= 2,
        "batches never overlapped (max {} embed calls at once)",
        e.max_calls_in_flight.load(Ordering::SeqCst)
    );
    let done: u64 = ["indexed", "unchanged", "superseded", "deleted"]
        .iter()
        .map(|r| processed(&w, r))
        .sum();
    assert_eq!(done, 120, "every entry done exactly once");
    let stats = w.stats();
    assert_eq!(
        stats.max_vector_writes_in_flight, 1,
        "one Chroma write at a time (worker.vector_writes = 1) across three batches in flight"
    );
    env.assert_consistent().await;
    assert!(env.documents().await.iter().all(|d| d.version == 2));
    env.cleanup().await;
}

#[tokio::test]
async fn a_batch_slower_than_its_lease_keeps_its_claims_and_finishes_once() {
    let mut cfg = test_config("wk_renew");
    cfg.worker.lease = Duration::from_secs(3);
    let env = Env::with_config(cfg).await;
    // Embedding one batch takes 2 leases: without renewal the claims would expire, the second
    // worker would take the documents over, and the first would hand its batch back. (A lease
    // of seconds, not less: renewals must get through a busy test server in time.)
    *env.embedder.delay.lock().unwrap() = Duration::from_millis(6000);
    let a = env.worker();
    let b = env.worker();
    a.init().await.unwrap();
    env.store
        .put_many(docs("r", 5).into_iter().collect())
        .await
        .unwrap();
    let (tx_a, ha) = spawn_run(&a);
    let (tx_b, hb) = spawn_run(&b);
    let drained = wait_until(Duration::from_secs(30), || async {
        count_status(&env.store, "pending").await == 0
    })
    .await;
    tx_a.send(()).unwrap();
    tx_b.send(()).unwrap();
    ha.await.unwrap().unwrap();
    hb.await.unwrap().unwrap();
    assert!(drained, "all entries done");
    assert_eq!(env.embedder.overlaps.load(Ordering::SeqCst), 0);
    assert_eq!(
        env.embedder.texts(),
        5,
        "each document embedded once: no claim expired mid-batch"
    );
    assert_eq!(processed(&a, "indexed") + processed(&b, "indexed"), 5);
    env.assert_consistent().await;
    env.cleanup().await;
}
