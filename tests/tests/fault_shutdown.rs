//! SIGTERM while a dependency is unreachable: the `tidemark worker` must be gone within
//! `worker.shutdown_deadline` + 1 s whatever it cannot reach: MongoDB killed, Chroma's port
//! closed, the embedder hanging. (Issue 19: with MongoDB down the worker took 90-125 s
//! against a 20 s deadline; these tests fail until the worker core bounds every step.)

use crate::fault_support;

use fault_support::FaultEnv;
use std::time::Duration;
use tidemark_core::config::EmbedderKind;
use tidemark_e2e::procs::{EmbedServer, WorkerProc};
use tidemark_e2e::proxy::{Fault, FaultProxy};
use tidemark_e2e::servers::MongoOptions;

const DEADLINE: Duration = Duration::from_secs(3);

/// SIGTERM, then the exit must come within the deadline + 1 s.
async fn assert_stops_in_time(mut w: WorkerProc, what: &str) {
    w.sigterm();
    let bound = DEADLINE + Duration::from_secs(1);
    match w.wait_exit(bound).await {
        Some((status, took)) => {
            eprintln!("{what}: exited {status} {took:?} after SIGTERM");
            let log = w.log_tail(5);
            assert!(took <= bound, "{what}: {took:?} after SIGTERM; log:\n{log}");
        }
        None => {
            let log = w.log_tail(15);
            w.kill9();
            panic!("{what}: worker still running {bound:?} after SIGTERM (deadline {DEADLINE:?}); log:\n{log}");
        }
    }
}

async fn started(w: &WorkerProc) {
    assert!(
        w.wait_log("worker started", Duration::from_secs(30)).await,
        "worker did not start; log:\n{}",
        w.log_tail(20)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_mongodb_is_down_exits_within_the_deadline() {
    let mut env = FaultEnv::with(
        "fsd_mongo",
        MongoOptions::default(),
        &tidemark_e2e::chroma_url(),
    )
    .await;
    let (w, _) = env.spawn_worker_with(|c| c.worker.shutdown_deadline = DEADLINE);
    started(&w).await;
    env.put_docs("a", 20, "before the outage").await;
    env.assert_consistent_within(Duration::from_secs(30)).await;
    env.put_docs("b", 50, "written as the server dies").await;
    env.server.kill9();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_stops_in_time(w, "MongoDB down").await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_chroma_is_down_exits_within_the_deadline() {
    let env = FaultEnv::with(
        "fsd_chroma",
        MongoOptions::default(),
        &tidemark_e2e::chroma_url(),
    )
    .await;
    let proxy = FaultProxy::start(&tidemark_e2e::chroma_url()).await;
    let url = proxy.url();
    let (w, _) = env.spawn_worker_with(|c| {
        c.worker.shutdown_deadline = DEADLINE;
        c.chroma.url = url;
    });
    started(&w).await;
    env.put_docs("a", 20, "before the outage").await;
    env.assert_consistent_within(Duration::from_secs(30)).await;
    drop(proxy); // Chroma's port closes: connection refused
    env.put_docs("b", 50, "written while Chroma is down").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_stops_in_time(w, "Chroma down").await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_the_embedder_hangs_exits_within_the_deadline() {
    let env = FaultEnv::with(
        "fsd_embed",
        MongoOptions::default(),
        &tidemark_e2e::chroma_url(),
    )
    .await;
    let server = EmbedServer::start(&env.dir.join("embed")).await;
    let proxy = FaultProxy::start(&server.url()).await;
    proxy.always("/v1/embeddings", Fault::Hang);
    let url = proxy.url();
    let (w, _) = env.spawn_worker_with(|c| {
        c.worker.shutdown_deadline = DEADLINE;
        c.embedder.provider = EmbedderKind::Openai;
        c.embedder.base_url = url;
        c.embedder.model = "all-MiniLM-L6-v2".into();
        c.embedder.dimension = 384;
        c.embedder.timeout = Duration::from_secs(30);
    });
    started(&w).await;
    env.put_docs("a", 10, "the embedder hangs").await;
    let hanging = tidemark_e2e::wait_until(Duration::from_secs(20), || async {
        proxy.count("hang") > 0
    })
    .await;
    assert!(
        hanging,
        "the worker never called the embedder; log:\n{}",
        w.log_tail(20)
    );
    assert_stops_in_time(w, "embedder hanging").await;
    env.cleanup().await;
}
