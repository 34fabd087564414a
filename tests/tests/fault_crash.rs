//! Servers killed with SIGKILL and restarted on the same port and data: MongoDB during a
//! `tidemark import` with the worker running (the import finishes, every line is committed
//! exactly once, the worker catches up by itself), and Chroma during a drain (nothing lost,
//! nothing dead, Chroma equals MongoDB afterwards).

use crate::fault_support;

use fault_support::{FaultEnv, WRITER};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tidemark_e2e::servers::{ChromaServer, MongoOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongodb_kill_9_during_an_import_with_the_worker_running() {
    let mut env = FaultEnv::with(
        "fc_mongo",
        MongoOptions::default(),
        &tidemark_e2e::chroma_url(),
    )
    .await;
    let (w, _) = env.spawn_worker();
    let lines = 1200;
    let file = env.dir.join("corpus.jsonl");
    let body: String = (0..lines)
        .map(|i| {
            serde_json::json!({"contentId": format!("k{i}"), "type": "t",
                "content": format!("k{i} line {i} of the crash import")})
            .to_string()
                + "\n"
        })
        .collect();
    std::fs::write(&file, body).unwrap();
    let config = env.config_file(WRITER);
    let import = std::process::Command::new(tidemark_e2e::tidemark_bin())
        .arg("--config")
        .arg(&config)
        .args(["import", file.to_str().unwrap(), "--batch", "20"])
        .env_remove("MONGODB_URI")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tidemark import");

    // Kill the server once a part of the import is in.
    let started = tidemark_e2e::wait_until(Duration::from_secs(60), || async {
        env.check_store
            .documents()
            .count_documents(bson::doc! {})
            .await
            .is_ok_and(|n| n >= 200)
    })
    .await;
    assert!(started, "the import did not get going");
    env.server.kill9();
    let down = Instant::now();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    env.server.restart().await;
    eprintln!("MongoDB down for {:?}", down.elapsed());

    let out = tokio::task::spawn_blocking(move || import.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(
        out.status.success(),
        "import failed across the restart: {}",
        tidemark_e2e::procs::text(&out)
    );
    let acked: Vec<(String, i64)> = (0..lines).map(|i| (format!("k{i}"), 1)).collect();
    env.assert_exactly_once(&acked).await;
    let took = env.assert_consistent_within(Duration::from_secs(90)).await;
    eprintln!("worker caught up {took:?} after the import");
    let mut w = w;
    assert!(w.exited().is_none(), "the worker died: {}", w.log_tail(20));
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chroma_kill_9_during_a_drain() {
    let mut chroma = ChromaServer::start().await;
    let env = FaultEnv::with("fc_chroma", MongoOptions::default(), &chroma.url()).await;
    for c in 0..6 {
        env.put_docs(&format!("c{c}_"), 100, "drained across a Chroma crash")
            .await;
    }
    let (w, _) = env.spawn_worker();
    let some = tidemark_e2e::wait_until(Duration::from_secs(60), || async {
        env.check_store
            .outbox()
            .count_documents(bson::doc! {"status": "done"})
            .await
            .is_ok_and(|n| n >= 50)
    })
    .await;
    assert!(some, "the drain did not start; {}", w.log_tail(20));
    chroma.kill9();
    let down = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    chroma.restart().await;
    eprintln!("Chroma down for {:?}", down.elapsed());
    let took = env.assert_consistent_within(Duration::from_secs(90)).await;
    eprintln!("consistent {took:?} after Chroma came back");
    let r = env.report().await;
    assert!(r.dead.is_empty(), "dead after a Chroma crash: {:?}", r.dead);
    env.cleanup().await;
}
