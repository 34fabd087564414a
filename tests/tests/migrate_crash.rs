//! kill -9 of `tidemark migrate run` mid-run, then a run to the end gives exactly the
//! target of one clean run: the same documents (content, metadata, timestamp, version 1 each),
//! one outbox entry per document (no record written twice), the same reused vectors, and a
//! clean `migrate verify`.

use crate::migrate_support;

use migrate_support::{inventory, planted, target_view, Tidemark};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Starts a run and kills it (SIGKILL) once the target holds at least `at` documents.
async fn kill_at(tm: &Tidemark, mapping: &str, at: u64) -> u64 {
    let mut child = tm
        .command(&["migrate", "run", "--mapping", mapping, "--batch-size", "40"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let n = tm.count("documents").await;
        if n >= at {
            assert!(
                child.try_wait().unwrap().is_none(),
                "the run ended before it could be killed ({n} documents)"
            );
            child.kill().unwrap();
            child.wait().unwrap();
            return tm.count("documents").await;
        }
        assert!(Instant::now() < deadline, "no progress: {n} documents");
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the run ended ({status}) before it could be killed at {n} documents");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_run_then_again_equals_one_clean_run() {
    let legacy = migrate_support::Legacy::build().await;
    let clean = Tidemark::new("mig_clean").await;
    let killed = Tidemark::new("mig_kill").await;
    let (path, _) = inventory(&clean, &legacy);
    let mapping = path.to_str().unwrap();

    let (code, r) = clean.cli_json(&[
        "migrate",
        "run",
        "--mapping",
        mapping,
        "--batch-size",
        "40",
        "--json",
    ]);
    assert_eq!(code, 0, "{r}");

    // One kill: each leaves a transaction open on the server, which holds its documents until
    // the server aborts it (transactionLifetimeLimitSeconds, 60 s), so the next run waits.
    let second = kill_at(&killed, mapping, 1200).await;
    assert!(
        second < planted::DOCUMENTS,
        "killed after the end: {second}"
    );
    let (code, r) = killed.cli_json(&[
        "migrate",
        "run",
        "--mapping",
        mapping,
        "--batch-size",
        "40",
        "--json",
    ]);
    assert_eq!(code, 0, "{r}");
    let resumed = r["collections"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["resumed"] == true);
    assert!(resumed, "the last run continues from a checkpoint: {r}");
    assert_eq!(
        r["totals"]["created"].as_u64().unwrap() + second,
        planted::DOCUMENTS,
        "{r}"
    );

    assert_eq!(target_view(&killed).await, target_view(&clean).await);
    assert_eq!(
        killed.count("outbox").await,
        planted::DOCUMENTS,
        "a record was written twice"
    );
    let (_, s) = killed.cli_json(&["migrate", "status", "--json"]);
    let recorded: u64 = s["documents"]
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(
        recorded,
        planted::DOCUMENTS,
        "one ledger row per document: {s}"
    );
    assert_eq!(killed.vector_count().await, clean.vector_count().await);
    assert_eq!(killed.vector_count().await, planted::REUSABLE);
    let (code, v) = killed.cli_json(&["migrate", "verify", "--mapping", mapping, "--json"]);
    assert_eq!(code, 0, "{v}");
    legacy.cleanup().await;
    clean.cleanup().await;
    killed.cleanup().await;
}
