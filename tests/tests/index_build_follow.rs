//! An index build covers the live changes ahead of it (`tidemark_core::build_cursor`), with
//! the real binaries and services: while a build is paused part-way, a worker writes a change
//! to a document the build has passed to the building index at once, leaves a change to a
//! document ahead of it (and a new document) to the build, and writes a delete either way;
//! once the build has run to its end, the building index equals MongoDB. The backfill side:
//! a build follows documents written while it runs, pass after pass while it gains on them,
//! then seals, and enqueues every document exactly once; held back by its throttle, it
//! follows on without gaining instead of sealing. A worker that is behind hands its
//! live writes' parts for the building index to the build's queue instead of writing them.

use crate::worker_support;

use bson::{doc, oid::ObjectId, Document};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;
use tidemark_core::build_cursor::{build_run_id, checkpoint_id, BuildCursor};
use tidemark_core::config::EmbedderKind;
use tidemark_core::Op;
use tidemark_e2e::procs::{self, WorkerProc};
use tidemark_ops::backfill::{backfill, BackfillOptions};
use tidemark_ops::Progress;
use tidemark_store::NewDocument;
use worker_support::{assert_drained, test_config, Env, HashPair};

fn ok(config: &Path, args: &[&str]) -> String {
    let out = procs::run(config, args, &[]);
    let (o, e) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "{args:?}: {o}\n{e}");
    o.to_string()
}

fn text(i: usize, edit: &str) -> String {
    format!(
        "note {i} {edit}: the ferry leaves pier {i} at {} past",
        i % 60
    )
}

async fn cursor(env: &Env, index: &str) -> BuildCursor {
    let id = checkpoint_id(&build_run_id(index));
    let states = env.store.database().collection::<Document>("sync_state");
    let cp = states.find_one(doc! {"_id": id}).await.unwrap();
    BuildCursor::from_checkpoint(&cp.expect("the build's checkpoint"))
}

/// The content hash `v2` holds for a document, if it holds it.
async fn hash_in(env: &Env, coll: &str, id: &ObjectId) -> Option<String> {
    let got = env.chroma.get(coll, &[id.to_hex()], false).await.unwrap();
    got.first().map(|r| {
        let m = r.metadata.as_ref().and_then(|m| m.get("contentHash"));
        let h = m.and_then(|v| v.as_str());
        h.unwrap_or_default().to_string()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_changes_ahead_of_a_build_are_left_to_it_and_it_covers_them() {
    let mut a = test_config("ix_follow");
    a.embedder.provider = EmbedderKind::Hash;
    a.embedder.dimension = 64;
    let metrics = format!("127.0.0.1:{}", tidemark_e2e::servers::free_port());
    a.metrics.addr = metrics.clone();
    let mut b = a.clone();
    b.metrics.addr = String::new();
    b.embedder.dimension = 32;
    let mut env = Env::with_config(a.clone()).await;
    env.model = "hash-64".into();
    let dir = tidemark_e2e::servers::temp_dir("ix_follow");
    let (cfg_a, cfg_b) = (
        procs::write_config(&a, &dir.join("a")),
        procs::write_config(&b, &dir.join("b")),
    );
    let docs: Vec<_> = (0..30)
        .map(|i| NewDocument::new(format!("n{i}"), "note", text(i, "first")))
        .collect();
    let put = env.store.put_many(docs).await.unwrap();
    let mut worker = WorkerProc::spawn(&cfg_a, "warn,tidemark_worker=info");
    assert_drained(&env.store, Duration::from_secs(60), "the corpus").await;

    ok(&cfg_b, &["index", "create", "v2"]);
    let build = ["index", "build", "v2", "--batch-size", "5"];
    let paused = [&build[..], &["--max-batches", "2"]].concat();
    ok(&cfg_b, &paused);
    assert_drained(&env.store, Duration::from_secs(60), "the first batches").await;
    let c = cursor(&env, "v2").await;
    // The build goes in `_id` order.
    let mut put = put;
    put.sort_by_key(|p| p.document_id);
    let (behind, ahead, gone) = (&put[2], &put[20], &put[25]);
    let (behind, ahead, gone) = (
        (behind.document_id, behind.content_id.clone()),
        (ahead.document_id, ahead.content_id.clone()),
        (gone.document_id, gone.content_id.clone()),
    );
    assert!(c.follows && !c.sealed && !c.completed, "{c:?}");
    assert!(!c.leaves_to_build(&behind.0, Op::Upsert), "{c:?}");
    assert!(c.leaves_to_build(&ahead.0, Op::Upsert), "{c:?}");

    let edit = |cid: &str| NewDocument::new(cid, "note", text(cid.len(), cid));
    env.store.put(edit(&behind.1)).await.unwrap();
    env.store.put(edit(&ahead.1)).await.unwrap();
    env.store.delete(&gone.1).await.unwrap();
    let new = env
        .store
        .put(NewDocument::new("fresh", "note", text(99, "new")))
        .await
        .unwrap();
    assert_drained(&env.store, Duration::from_secs(60), "the live writes").await;

    let v2 = format!("{}__hash-32__v2", a.chroma.namespace);
    let v2 = env.chroma.get_collection(&v2).await.unwrap().unwrap().id;
    let second = |cid: &str| Some(tidemark_core::content_hash(&text(cid.len(), cid)));
    let written = hash_in(&env, &v2, &behind.0).await;
    assert_eq!(written, second(&behind.1), "written live");
    assert_eq!(
        hash_in(&env, &v2, &ahead.0).await,
        None,
        "left to the build"
    );
    assert_eq!(hash_in(&env, &v2, &gone.0).await, None);
    assert_eq!(
        hash_in(&env, &v2, &new.document_id).await,
        None,
        "left to the build"
    );
    let main = env.vectors().await;
    assert_eq!(
        main.len(),
        30,
        "main has every live write: 30 - 1 deleted + 1 new"
    );
    let left = procs::metric(&metrics, "tidemark_left_to_build_total{index=\"v2\"}").await;
    assert_eq!(left, Some(2.0), "the update ahead and the new document");

    let done = ok(&cfg_b, &build);
    assert!(done.contains("build complete"), "{done}");
    assert_drained(&env.store, Duration::from_secs(60), "the build").await;
    let built = hash_in(&env, &v2, &ahead.0).await;
    assert_eq!(built, second(&ahead.1), "the build wrote it as it is");
    assert!(hash_in(&env, &v2, &new.document_id).await.is_some());
    let c = cursor(&env, "v2").await;
    assert!(c.sealed && c.completed, "{c:?}");
    ok(&cfg_a, &["verify", "--index", "v2"]);
    worker.sigterm();
    let _ = worker.wait_exit(Duration::from_secs(15)).await;
    env.cleanup().await;
}

/// The phases a backfill announced.
#[derive(Default)]
struct Phases(Mutex<Vec<String>>);

impl Progress for Phases {
    fn phase(&self, name: &str, _total: Option<u64>) {
        self.0.lock().unwrap().push(name.to_string());
    }
}

async fn raw_documents(env: &Env, prefix: &str, n: usize) {
    let docs: Vec<Document> = (0..n)
        .map(|i| {
            let t = text(i, prefix);
            doc! {"_id": ObjectId::new(), "contentId": format!("{prefix}-{i}"), "type": "note",
            "content": &t, "metadata": {}, "timestamp": bson::DateTime::now(),
            "version": 1_i64, "contentHash": tidemark_core::content_hash(&t)}
        })
        .collect();
    let coll = env.store.database().collection::<Document>("documents");
    coll.insert_many(docs).await.unwrap();
}

/// Ops over the test's store and namespace, hashing embedder.
fn hash_ops(env: &Env, cfg: &tidemark_core::Config) -> tidemark_ops::Ops {
    tidemark_ops::Ops::new(
        env.store.clone(),
        env.chroma.clone(),
        &cfg.chroma.namespace,
        "hash",
    )
}

/// The build's entries per contentId.
async fn enqueued(env: &Env) -> std::collections::HashMap<String, usize> {
    let entries = tidemark_e2e::outbox_entries(&env.store, doc! {"indexes": "v2"}).await;
    let mut out = std::collections::HashMap::new();
    for e in entries {
        *out.entry(e.content_id).or_insert(0) += 1;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_follows_new_documents_while_it_gains_then_seals() {
    let cfg = test_config("ix_follow_passes");
    let env = Env::with_config(cfg.clone()).await;
    let ops = hash_ops(&env, &cfg);
    let opts = |max_batches| BackfillOptions {
        batch_size: 5,
        max_batches,
        for_index: Some("v2".into()),
        run_id: Some(build_run_id("v2")),
        ..Default::default()
    };
    raw_documents(&env, "old", 20).await;
    backfill(&ops, &opts(Some(1)), &Phases::default())
        .await
        .unwrap();
    // Written after the build started: ahead of it, fewer than it scans in the next pass and
    // more than a batch, so it follows them; then nothing new: it seals and ends.
    raw_documents(&env, "mid", 8).await;
    let phases = Phases::default();
    let r = backfill(&ops, &opts(None), &phases).await.unwrap();
    assert!(r.completed, "{r:?}");
    assert_eq!(
        *phases.0.lock().unwrap(),
        vec!["backfill", "backfill: documents written during the build"]
    );
    let counts = enqueued(&env).await;
    assert_eq!(counts.len(), 28, "{counts:?}");
    assert!(counts.values().all(|n| *n == 1), "{counts:?}");
    let c = cursor(&env, "v2").await;
    assert!(c.sealed && c.completed && c.follows, "{c:?}");

    // Not gaining: a new run meets as many new documents as it scanned, seals at once, and
    // its final pass covers them.
    let restart = BackfillOptions {
        restart: true,
        run_id: Some(build_run_id("v3")),
        for_index: Some("v3".into()),
        max_batches: Some(1),
        batch_size: 5,
        ..Default::default()
    };
    backfill(&ops, &restart, &Phases::default()).await.unwrap();
    raw_documents(&env, "late", 40).await;
    let phases = Phases::default();
    let rest = BackfillOptions {
        restart: false,
        max_batches: None,
        ..restart
    };
    let r = backfill(&ops, &rest, &phases).await.unwrap();
    assert!(r.completed, "{r:?}");
    assert_eq!(
        *phases.0.lock().unwrap(),
        vec!["backfill", "backfill: the final pass"]
    );
    assert_eq!(
        r.total_enqueued, 68,
        "28 before and 40 after its start: {r:?}"
    );
    env.cleanup().await;
}

/// A build that live writes hold back follows on without gaining instead of sealing: after a
/// seal each live write goes to both indexes, and the workers have no room for that already.
/// Here an application's write waits unclaimed for over a second (no worker runs), so the
/// build's throttle holds it for most of its pass; then the write is marked done (as a worker
/// would), but slowly, so the throttle keeps yielding for two more seconds. More documents
/// were written during the pass than it scanned, yet the build extends. It seals at the next
/// bound, where nothing new came.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_held_back_by_live_writes_follows_instead_of_sealing() {
    let cfg = test_config("ix_follow_pressed");
    let env = Env::with_config(cfg.clone()).await;
    let ops = hash_ops(&env, &cfg);
    let opts = |max_batches, max_lag| BackfillOptions {
        batch_size: 5,
        max_batches,
        max_lag,
        for_index: Some("v2".into()),
        run_id: Some(build_run_id("v2")),
        ..Default::default()
    };
    raw_documents(&env, "old", 20).await;
    backfill(&ops, &opts(Some(1), None), &Phases::default())
        .await
        .unwrap();

    let app = env
        .store
        .put(NewDocument::new("app-1", "note", text(1, "app")))
        .await
        .unwrap();
    raw_documents(&env, "late", 40).await;
    let outbox = env.store.database().collection::<Document>("outbox");
    let worker = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let done = doc! {"status": "done", "doneAt": bson::DateTime::now()};
        let r = outbox
            .update_one(doc! {"_id": app.outbox_id}, doc! {"$set": done})
            .await
            .unwrap();
        assert_eq!(r.modified_count, 1);
    });
    // Due for over the throttle's half second before the build resumes.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let phases = Phases::default();
    let lag = Some(Duration::from_millis(500));
    let r = backfill(&ops, &opts(None, lag), &phases).await.unwrap();
    worker.await.unwrap();
    assert!(r.completed, "{r:?}");
    assert_eq!(
        *phases.0.lock().unwrap(),
        vec!["backfill", "backfill: documents written during the build"],
        "pressed and not gaining (41 new after a pass of 15): it follows, no final pass"
    );
    let counts = enqueued(&env).await;
    assert_eq!(counts.len(), 61, "20 + 40 + the application's: {counts:?}");
    assert!(counts.values().all(|n| *n == 1), "{counts:?}");
    let c = cursor(&env, "v2").await;
    assert!(c.sealed && c.completed && c.follows, "{c:?}");
    env.cleanup().await;
}

/// A worker that is behind (the live entries it claims had been due over half a second) does
/// not write their parts for a building index: two writes per change is more than the vector
/// store takes then, so those parts go to the build's queue at once, as entries of their own,
/// and reach the new index from there. Here the writes are made while no worker runs, then
/// one starts: every write of that backlog is handed on. A write made once it has caught up
/// is written to both indexes in its own batch, with nothing handed on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_behind_hands_its_writes_for_a_building_index_on() {
    let HashPair {
        env,
        a,
        cfg_a,
        cfg_b,
    } = HashPair::new("ix_behind").await;
    // A first run records `main`; v2 is created and built (no documents yet) meanwhile.
    let mut first = WorkerProc::spawn(&cfg_a, "warn,tidemark_worker=info");
    assert!(
        first
            .wait_log("worker started", Duration::from_secs(30))
            .await,
        "{}",
        first.log_tail(10)
    );
    ok(&cfg_b, &["index", "create", "v2"]);
    let built = ok(&cfg_b, &["index", "build", "v2"]);
    assert!(built.contains("build complete"), "{built}");
    first.sigterm();
    let _ = first.wait_exit(Duration::from_secs(15)).await;

    let docs: Vec<_> = (0..12)
        .map(|i| NewDocument::new(format!("n{i}"), "note", text(i, "queued")))
        .collect();
    let put = env.store.put_many(docs).await.unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let mut worker = WorkerProc::spawn(&cfg_a, "warn,tidemark_worker=info");
    assert_drained(&env.store, Duration::from_secs(60), "the backlog").await;
    let handed = tidemark_e2e::outbox_entries(&env.store, doc! {"indexes": "v2"}).await;
    let mut of: Vec<_> = handed.iter().filter_map(|e| e.handoff_of).collect();
    let mut live: Vec<_> = put.iter().map(|p| p.outbox_id).collect();
    of.sort();
    live.sort();
    assert_eq!(
        of, live,
        "every queued write was handed on once: {handed:?}"
    );

    let late = env
        .store
        .put(NewDocument::new("late", "note", text(99, "caught up")))
        .await
        .unwrap();
    assert_drained(&env.store, Duration::from_secs(60), "the late write").await;
    let handed = tidemark_e2e::outbox_entries(&env.store, doc! {"indexes": "v2"}).await;
    assert_eq!(handed.len(), 12, "the late write was handed on: {handed:?}");
    let v2 = format!("{}__hash-32__v2", a.chroma.namespace);
    let v2 = env.chroma.get_collection(&v2).await.unwrap().unwrap();
    assert_eq!(
        env.chroma.count(&v2.id).await.unwrap(),
        13,
        "v2 has them all"
    );
    assert!(hash_in(&env, &v2.id, &late.document_id).await.is_some());
    assert_eq!(env.vectors().await.len(), 13, "main has them all");
    worker.sigterm();
    let _ = worker.wait_exit(Duration::from_secs(15)).await;
    env.cleanup().await;
}
