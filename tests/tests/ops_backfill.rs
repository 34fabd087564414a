//! backfill against the real services: interrupted runs (a batch limit, a `kill -9` of the
//! binary, two processes racing on one run) continue after restart, and every selected
//! document gets exactly one outbox entry; `--missing-only` picks documents without a vector
//! (never indexed, or vector deleted from Chroma) and skips the rest and other types; a run
//! ends at the documents there were when it started.

use crate::ops_support;

use bson::{doc, oid::ObjectId, Document};
use futures::TryStreamExt;
use ops_support::OpsEnv;
use serde_json::json;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tidemark_ops::backfill::{backfill, BackfillOptions};
use tidemark_ops::verify::{verify, VerifyOptions};
use tidemark_ops::{NoProgress, OpsError};

/// Inserts documents straight into `documents` (no outbox entry): a legacy import.
async fn insert_raw(env: &OpsEnv, prefix: &str, ty: &str, n: usize) {
    let docs: Vec<Document> = (0..n)
        .map(|i| {
            let text = format!("{prefix} legacy text {i}");
            doc! {
                "_id": ObjectId::new(), "contentId": format!("{prefix}-{i}"), "type": ty,
                "content": &text, "metadata": {}, "timestamp": bson::DateTime::now(),
                "version": 1_i64, "contentHash": tidemark_core::content_hash(&text),
            }
        })
        .collect();
    env.store
        .database()
        .collection::<Document>("documents")
        .insert_many(docs)
        .await
        .unwrap();
}

/// Outbox entries per contentId.
async fn entries_per_doc(env: &OpsEnv) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    let mut c = env
        .store
        .database()
        .collection::<Document>("outbox")
        .find(doc! {})
        .await
        .unwrap();
    while let Some(d) = c.try_next().await.unwrap() {
        *out.entry(d.get_str("contentId").unwrap().to_string())
            .or_insert(0) += 1;
    }
    out
}

/// A backfill run in the background.
fn spawn_backfill(
    env: &OpsEnv,
    opts: BackfillOptions,
) -> tokio::task::JoinHandle<Result<tidemark_ops::backfill::BackfillReport, OpsError>> {
    let ops = env.ops.clone();
    tokio::spawn(async move { backfill(&ops, &opts, &NoProgress).await })
}

/// The options of an index build of `v2` (its run id and entries), batches of 5.
fn build_of_v2() -> BackfillOptions {
    BackfillOptions {
        batch_size: 5,
        for_index: Some("v2".into()),
        run_id: Some("index-v2".into()),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_only_by_type_resumes_after_a_batch_limit_and_enqueues_each_once() {
    let env = OpsEnv::new("ops_backfill").await;
    env.put_docs("a", "a", 12).await;
    env.drain().await;
    let gone = env.doc_id("a-3").await;
    env.chroma_http("delete", json!({"ids": [gone]})).await;
    insert_raw(&env, "raw-a", "a", 20).await;
    insert_raw(&env, "raw-b", "b", 5).await;

    let mut opts = BackfillOptions {
        doc_type: Some("a".into()),
        missing_only: true,
        batch_size: 4,
        max_batches: Some(3),
        ..Default::default()
    };
    let r1 = backfill(&env.ops, &opts, &NoProgress).await.unwrap();
    assert_eq!(r1.run_id, "missing-type-a");
    assert!(!r1.completed && !r1.resumed);
    assert_eq!((r1.batches, r1.scanned, r1.enqueued), (3, 12, 1), "{r1:?}");

    opts.max_batches = None;
    let r2 = backfill(&env.ops, &opts, &NoProgress).await.unwrap();
    assert!(r2.resumed && r2.completed, "{r2:?}");
    assert_eq!((r2.scanned, r2.enqueued), (20, 20));
    assert_eq!((r2.total_scanned, r2.total_enqueued), (32, 21));

    let counts = entries_per_doc(&env).await;
    for i in 0..20 {
        assert_eq!(counts.get(&format!("raw-a-{i}")), Some(&1), "raw-a-{i}");
    }
    assert_eq!(counts.get("a-3"), Some(&2), "put + backfill");
    for i in (0..12).filter(|i| *i != 3) {
        assert_eq!(
            counts.get(&format!("a-{i}")),
            Some(&1),
            "a-{i} already had its vector"
        );
    }
    assert!(
        (0..5).all(|i| !counts.contains_key(&format!("raw-b-{i}"))),
        "other type"
    );

    // The same command again: the run is complete, nothing happens.
    let r3 = backfill(&env.ops, &opts, &NoProgress).await.unwrap();
    assert!(r3.already_completed && r3.enqueued == 0);
    // Other options under this run id are refused.
    let clash = BackfillOptions {
        run_id: Some("missing-type-a".into()),
        ..Default::default()
    };
    let e = backfill(&env.ops, &clash, &NoProgress).await.unwrap_err();
    assert!(matches!(e, OpsError::Conflict(_)), "{e}");

    env.drain().await;
    let v = verify(&env.ops, &VerifyOptions::default(), &NoProgress)
        .await
        .unwrap();
    let mut missing: Vec<_> = v.missing.iter().map(|d| d.content_id.clone()).collect();
    missing.sort();
    assert_eq!(
        missing,
        (0..5).map(|i| format!("raw-b-{i}")).collect::<Vec<_>>()
    );
    assert_eq!(
        v.counts.stale + v.counts.behind + v.counts.orphans,
        0,
        "{v:#?}"
    );

    // --restart: everything of type a is indexed now, so nothing is missing.
    opts.restart = true;
    let r4 = backfill(&env.ops, &opts, &NoProgress).await.unwrap();
    assert!(r4.completed && !r4.resumed);
    assert_eq!((r4.scanned, r4.enqueued), (32, 0));
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_backfill_process_resumes_and_enqueues_each_document_once() {
    let env = OpsEnv::new("ops_backfill_kill").await;
    let n = 800;
    insert_raw(&env, "k", "t", n).await;
    let mut child = std::process::Command::new(tidemark_e2e::tidemark_bin())
        .arg("-c")
        .arg(&env.config_path)
        .args(["backfill", "--batch-size", "5"])
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let sync = env.store.database().collection::<Document>("sync_state");
    let t0 = Instant::now();
    loop {
        let cp = sync.find_one(doc! {"_id": "backfill:all"}).await.unwrap();
        if cp
            .as_ref()
            .is_some_and(|c| c.get_i64("batches").unwrap_or(0) >= 5)
        {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "backfill never progressed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    child.kill().unwrap(); // SIGKILL: no chance to clean up
    child.wait().unwrap();
    // A commit the process sent just before it died may still be applied by the server: read
    // the checkpoint once it has stopped moving.
    let read_cp = || async {
        sync.find_one(doc! {"_id": "backfill:all"})
            .await
            .unwrap()
            .unwrap()
    };
    let mut cp = read_cp().await;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let again = read_cp().await;
        if again.get_i64("enqueued") == cp.get_i64("enqueued") {
            break;
        }
        cp = again;
    }
    assert!(
        !cp.contains_key("completedAt"),
        "killed before the end: {cp}"
    );
    let at_kill = cp.get_i64("enqueued").unwrap() as usize;
    let outbox_at_kill = env.entries(doc! {}).await.len();
    assert_eq!(
        outbox_at_kill, at_kill,
        "checkpoint and entries committed together"
    );
    assert!(at_kill < n);

    let (code, r) = env.cli_json(&["backfill", "--batch-size", "100", "--json"]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["resumed"], true);
    assert_eq!(r["completed"], true);
    assert_eq!(r["enqueued"].as_u64().unwrap() as usize, n - at_kill);
    assert_eq!(r["totalEnqueued"].as_u64().unwrap() as usize, n);
    let counts = entries_per_doc(&env).await;
    assert_eq!(counts.len(), n);
    assert!(
        counts.values().all(|c| *c == 1),
        "a document was enqueued twice"
    );
    let (code, out, _) = env.cli(&["backfill"]);
    assert_eq!(code, 0);
    assert!(out.contains("already completed"), "{out}");
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_on_one_run_never_enqueue_a_document_twice() {
    let env = OpsEnv::new("ops_backfill_race").await;
    insert_raw(&env, "r", "t", 90).await;
    let opts = BackfillOptions {
        batch_size: 3,
        run_id: Some("race".into()),
        ..Default::default()
    };
    let (a, b) = tokio::join!(
        backfill(&env.ops, &opts, &NoProgress),
        backfill(&env.ops, &opts, &NoProgress)
    );
    for r in [&a, &b] {
        if let Err(e) = r {
            assert!(
                matches!(e, OpsError::Conflict(_)),
                "only conflicts may fail: {e}"
            );
        }
    }
    // Whatever happened, finishing the run leaves exactly one entry per document.
    let done = backfill(&env.ops, &opts, &NoProgress).await.unwrap();
    assert!(done.completed);
    assert_eq!(done.total_enqueued, 90);
    let counts = entries_per_doc(&env).await;
    assert_eq!(counts.len(), 90);
    assert!(counts.values().all(|c| *c == 1), "{counts:?}");
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_pending_holds_the_backfill_until_the_worker_drains() {
    let env = OpsEnv::new("ops_backfill_throttle").await;
    insert_raw(&env, "w", "t", 20).await;
    let opts = BackfillOptions {
        batch_size: 5,
        max_pending: Some(0),
        ..Default::default()
    };
    let run = spawn_backfill(&env, opts);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        env.entries(doc! {}).await.len(),
        5,
        "only the first batch may be enqueued while it stays pending"
    );
    assert!(!run.is_finished());
    let t0 = Instant::now();
    while !run.is_finished() {
        env.drain().await;
        assert!(t0.elapsed() < Duration::from_secs(30), "backfill stuck");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = run.await.unwrap().unwrap();
    assert!(r.completed);
    assert_eq!(r.enqueued, 20);
    env.drain().await;
    let v = verify(&env.ops, &VerifyOptions::default(), &NoProgress)
        .await
        .unwrap();
    assert!(!v.has_drift() && v.counts.vectors == 20, "{v:#?}");
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_covers_the_documents_there_were_when_it_started() {
    let env = OpsEnv::new("ops_bf_until").await;
    insert_raw(&env, "old", "a", 10).await;
    let mut opts = BackfillOptions {
        batch_size: 4,
        max_batches: Some(1),
        ..Default::default()
    };
    let first = backfill(&env.ops, &opts, &NoProgress).await.unwrap();
    assert_eq!(first.enqueued, 4, "{first:?}");
    // Documents written after the start (a busy application) are not the run's: their own
    // writes enqueue them, so the run ends instead of chasing them.
    insert_raw(&env, "new", "a", 10).await;
    opts.max_batches = None;
    let rest = backfill(&env.ops, &opts, &NoProgress).await.unwrap();
    assert!(rest.completed, "{rest:?}");
    assert_eq!(
        (rest.total_scanned, rest.total_enqueued),
        (10, 10),
        "{rest:?}"
    );
    let counts = entries_per_doc(&env).await;
    assert!(
        (0..10).all(|i| counts.get(&format!("old-{i}")) == Some(&1)),
        "{counts:?}"
    );
    assert!(
        (0..10).all(|i| !counts.contains_key(&format!("new-{i}"))),
        "{counts:?}"
    );
    env.cleanup().await;
}

/// An index build's backfill (`for_index`) counts only its own pending entries against
/// `max_pending`: live writes nobody has drained yet do not stop it, nor do the entries that
/// hand live writes on to the same index (`handoffOf`). Its entries are for that index only,
/// so a worker with no such index finishes them as `unchanged` without writing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_throttles_on_its_own_entries_and_no_other_index_takes_them() {
    let env = OpsEnv::new("ops_backfill_for_index").await;
    insert_raw(&env, "w", "t", 40).await;
    env.put_docs("live", "t", 15).await; // pending: more than max_pending
    let handed: Vec<_> = env
        .entries(doc! {"indexes": {"$exists": false}})
        .await
        .into_iter()
        .map(|e| tidemark_core::OutboxEntry {
            id: bson::oid::ObjectId::new(),
            handoff_of: Some(e.id),
            ..e.for_index("v2")
        })
        .collect();
    assert_eq!(handed.len(), 15);
    env.store.outbox_repo().insert(handed).await.unwrap(); // v2's, pending, not the build's
    let opts = BackfillOptions {
        max_pending: Some(10),
        ..build_of_v2()
    };
    let run = spawn_backfill(&env, opts);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let built = env
        .entries(doc! {"indexes": "v2", "handoffOf": {"$exists": false}})
        .await;
    assert_eq!(
        built.len(),
        15,
        "batches while at most 10 of its own are pending (0, 5, 10), then it waits"
    );
    assert!(built.iter().all(|e| e.indexes == vec!["v2".to_string()]));
    assert!(!run.is_finished());
    run.abort();

    env.drain().await;
    let done = env.entries(doc! {"indexes": "v2", "status": "done"}).await;
    assert_eq!(done.len(), 30, "the build's 15 and the 15 handed on");
    // The build's entries write nothing; a handed-on one was coalesced with its document's
    // live entry (claimed in the same batch), which carried out the write.
    let wrong: Vec<_> = done
        .iter()
        .filter(|e| e.handoff_of.is_none())
        .filter(|e| e.result != Some(tidemark_core::OutboxResult::Unchanged))
        .map(|e| (&e.content_id, e.result))
        .collect();
    assert!(wrong.is_empty(), "{wrong:?}");
    let coll = env.collection_id().await;
    assert_eq!(
        env.chroma.count(&coll).await.unwrap(),
        15,
        "the active index holds the live writes only"
    );
    env.cleanup().await;
}

/// `max_lag`: a run yields while live entries (an application's, due now) have waited longer
/// than that, and goes on once the workers caught up; its own entries never hold it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_yields_while_live_entries_wait_longer_than_max_lag() {
    let env = OpsEnv::new("ops_backfill_max_lag").await;
    insert_raw(&env, "w", "t", 10).await;
    env.put_docs("live", "t", 3).await;
    tokio::time::sleep(Duration::from_millis(400)).await; // the live entries wait > 200 ms
    let opts = BackfillOptions {
        max_lag: Some(Duration::from_millis(200)),
        ..build_of_v2()
    };
    let run = spawn_backfill(&env, opts);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(!run.is_finished());
    assert!(
        env.entries(doc! {"indexes": "v2"}).await.is_empty(),
        "nothing enqueued while live entries wait"
    );
    env.drain().await;
    let r = tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .expect("the run goes on once the live entries are done")
        .unwrap()
        .unwrap();
    assert!(r.completed);
    let every_document = 13; // the live ones are documents too
    assert_eq!(
        env.entries(doc! {"indexes": "v2"}).await.len(),
        every_document
    );
    env.cleanup().await;
}
