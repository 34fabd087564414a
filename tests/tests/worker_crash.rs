//! Crash safety of the real `tidemark worker` binary: while 2,400 documents are imported (and
//! some updated and deleted), the worker process is killed with SIGKILL at random moments at
//! least five times and restarted; a final worker drains and stops on SIGTERM with exit 0. At
//! the end every live document has exactly one vector with its latest contentHash, there is no
//! orphan vector and no entry is left pending. And a worker still starting (MongoDB not
//! reachable) stops on SIGTERM at once with exit 0.
//!
//! REQUIRES the binary: `cargo build -p tidemark-cli` before this test (scripts/test does it).

use crate::worker_support;

use rand::Rng;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tidemark_core::config::EmbedderKind;
use tidemark_store::NewDocument;
use worker_support::{count_status, test_config, wait_until, Env};

/// Starts the worker; its stderr goes to `worker.log` beside the config (appended).
fn spawn_worker(config: &std::path::Path) -> Child {
    let bin = tidemark_e2e::tidemark_bin();
    assert!(
        bin.exists(),
        "{} missing: run `cargo build -p tidemark-cli` first",
        bin.display()
    );
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(config.with_file_name("worker.log"))
        .expect("open worker.log");
    Command::new(bin)
        .arg("--config")
        .arg(config)
        .arg("worker")
        .env_remove("MONGODB_URI")
        .env_remove("CHROMA_URL")
        // Warnings, plus the worker's few lifecycle lines ("worker started").
        .env("RUST_LOG", "warn,tidemark_worker=info")
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("start tidemark worker")
}

/// The last 20 lines of a worker log, for failure messages.
fn log_tail(log: &std::path::Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let tail: Vec<&str> = text.lines().rev().take(20).collect();
    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_import_loses_nothing() {
    let mut cfg = test_config("wk_crash");
    cfg.embedder.provider = EmbedderKind::Hash;
    cfg.embedder.dimension = 64;
    cfg.worker.lease = Duration::from_secs(2);
    cfg.worker.sweep_interval = Duration::from_millis(500);
    cfg.log.level = "warn".into();
    let mut env = Env::with_config(cfg.clone()).await;
    env.model = "hash-64".into();
    let dir = std::env::temp_dir().join(&cfg.mongodb.database);
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("tidemark.toml");
    std::fs::write(&config, toml::to_string(&cfg).unwrap()).unwrap();

    // The import runs concurrently with the killing.
    let store = env.store.clone();
    let writer = tokio::spawn(async move {
        for chunk in 0..24 {
            let docs: Vec<_> = (chunk * 100..chunk * 100 + 100)
                .map(|i| NewDocument::new(format!("c{i}"), "t", format!("c{i} imported text {i}")))
                .collect();
            store.put_many(docs).await.unwrap();
            if chunk % 4 == 3 {
                // Update and delete some already imported documents.
                for i in (chunk * 100 - 300..chunk * 100).step_by(7) {
                    let d =
                        NewDocument::new(format!("c{i}"), "t", format!("c{i} updated at {chunk}"));
                    store.put(d).await.unwrap();
                }
                for i in (chunk * 100 - 300..chunk * 100).step_by(31) {
                    store.delete(&format!("c{i}")).await.unwrap();
                }
            }
            tokio::time::sleep(Duration::from_millis(60)).await;
        }
    });

    let mut kills = 0;
    let mut rng = rand::rng();
    // Keep killing until the import is over, at least 5 kills happened, and the killed workers
    // demonstrably did work in between (on a loaded machine a worker may need a while to start).
    let mut done_before = 0;
    while kills < 5 || !writer.is_finished() || done_before == 0 {
        assert!(
            done_before > 0 || kills < 40,
            "the killed workers never completed an entry"
        );
        let mut child = spawn_worker(&config);
        // A random moment; the window widens while killed workers make no progress (a worker
        // on a loaded machine may need seconds for its first batch).
        let stalled = if done_before == 0 { kills } else { 0 };
        let ms: u64 = rng.random_range(400..2000) + 300 * stalled as u64;
        tokio::time::sleep(Duration::from_millis(ms)).await;
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "worker exited early ({status}); its last log lines:\n{}",
                log_tail(&dir.join("worker.log"))
            );
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
        done_before = count_status(&env.store, "done").await;
    }
    writer.await.unwrap();
    assert!(kills >= 5);

    // A last worker drains everything, then stops gracefully on SIGTERM with exit 0 (once it
    // has started: on a fast server the killed workers may have drained everything already).
    let log = dir.join("worker.log");
    let started = |log: &std::path::Path| {
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .matches("worker started")
            .count()
    };
    let started_before = started(&log);
    let mut child = spawn_worker(&config);
    // Wait while the worker makes progress (a loaded CI machine can be slow), but not past a
    // minute without the pending count falling, nor three minutes in all (nextest stops a test
    // at five, without saying why).
    let (t0, mut last_progress, mut last_pending) = (Instant::now(), Instant::now(), u64::MAX);
    let drained = loop {
        let pending = count_status(&env.store, "pending").await;
        let up = started(&log) > started_before;
        if up && pending == 0 {
            break Ok(());
        }
        if pending < last_pending {
            (last_pending, last_progress) = (pending, Instant::now());
        }
        if last_progress.elapsed() > Duration::from_secs(60)
            || t0.elapsed() > Duration::from_secs(180)
        {
            break Err(format!(
                "{pending} pending after {:?} (worker started: {up}, alive: {}); last log lines:\n{}",
                t0.elapsed(),
                child.try_wait().unwrap().is_none(),
                log_tail(&log)
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let st = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let exit = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    if let Err(why) = drained {
        panic!("not drained after the restarts: {why}");
    }
    assert!(exit.success(), "graceful stop exits 0: {exit:?}");
    assert_eq!(count_status(&env.store, "dead").await, 0);
    let docs = env.documents().await;
    assert!(docs.len() > 2000, "{} live documents", docs.len());
    env.assert_consistent().await;
    let _ = std::fs::remove_dir_all(&dir);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_starting_exits_0_at_once() {
    // A loopback port nobody listens on: the worker's start-up waits for server selection.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cfg = test_config("wk_sigterm");
    cfg.mongodb.uri =
        format!("mongodb://127.0.0.1:{port}/?directConnection=true&serverSelectionTimeoutMS=60000");
    let dir = std::env::temp_dir().join(&cfg.mongodb.database);
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("tidemark.toml");
    std::fs::write(&config, toml::to_string(&cfg).unwrap()).unwrap();

    let mut child = spawn_worker(&config);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "the worker should still be waiting for MongoDB"
    );
    let sent = Instant::now();
    let st = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let exit = wait_until(Duration::from_secs(15), || {
        let r = child.try_wait().unwrap();
        async move { r.is_some() }
    })
    .await;
    if !exit {
        child.kill().unwrap();
        child.wait().unwrap();
        panic!("the worker did not stop within 15 s of SIGTERM while starting");
    }
    let status = child.wait().unwrap();
    let log = std::fs::read_to_string(dir.join("worker.log")).unwrap_or_default();
    assert!(
        status.success(),
        "SIGTERM while starting exits 0, got {status}; log:\n{log}"
    );
    assert!(
        log.contains("stopped during start-up"),
        "the worker says it stopped while starting; log:\n{log}"
    );
    assert!(sent.elapsed() < Duration::from_secs(15));
    let _ = std::fs::remove_dir_all(&dir);
}
