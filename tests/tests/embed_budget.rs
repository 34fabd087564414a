//! The embedding API budget against a real `embed serve` (in process, on loopback, serving the
//! hashing model so that its token count and the worker's are the same approximation), with
//! the real worker binary (two batches in flight sharing one budget):
//! - a worker given `max_tokens_per_minute` never sends more in any 60 s window than that,
//!   measured by the server's own count, and still finishes a backlog larger than one minute's
//!   budget;
//! - a server that rate-limits (429 + Retry-After) below what the worker would send: the
//!   worker pauses for the Retry-After instead of retrying in a loop (few 429s in all),
//!   finishes, and no entry ends dead;
//! - what the worker spent is recorded per index and day (`usage`), equal to the server's own
//!   count, and `tidemark status` shows it.

use crate::worker_support;

use std::net::SocketAddr;
use std::time::Duration;
use tidemark_core::config::EmbedderKind;
use tidemark_e2e::procs::{self, WorkerProc};
use tidemark_embed::server_limits::ServerLimits;
use tidemark_store::usage::{day_of, Usage};
use tidemark_store::NewDocument;
use worker_support::{count_status, test_config, wait_until, Env};

const DIM: usize = 16;

async fn start_server(limits: ServerLimits) -> SocketAddr {
    tidemark_e2e::servers::hash_embed_server(DIM, limits).await
}

async fn stats(addr: SocketAddr) -> serde_json::Value {
    reqwest::get(format!("http://{addr}/stats"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// A backlog of `n` documents (about 35 approximate tokens each), drained by the worker binary
/// against `addr` with `tokens_per_minute` as its budget; returns when everything is done.
async fn drain_through(
    prefix: &str,
    addr: SocketAddr,
    n: usize,
    tokens_per_minute: u64,
) -> (Env, std::path::PathBuf) {
    let mut cfg = test_config(prefix);
    cfg.embedder.provider = EmbedderKind::Openai;
    cfg.embedder.base_url = format!("http://{addr}");
    cfg.embedder.model = format!("hash-{DIM}");
    cfg.embedder.dimension = DIM;
    cfg.embedder.batch_size = 4;
    cfg.embedder.max_tokens_per_minute = tokens_per_minute;
    cfg.embedder.max_tokens_per_request = 200;
    cfg.worker.batch_size = 8;
    let env = Env::with_config(cfg).await;
    let docs: Vec<NewDocument> = (0..n)
        .map(|i| {
            NewDocument::new(
                format!("d{i}"),
                "t",
                format!("document {i:03} about the budget of an embedding api call"),
            )
        })
        .collect();
    env.store.put_many(docs).await.unwrap();
    let config = procs::write_config(&env.cfg, &tidemark_e2e::servers::temp_dir(prefix));
    let mut worker = WorkerProc::spawn(&config, "warn,tidemark_worker=info,tidemark_embed=warn");
    let done = wait_until(Duration::from_secs(150), || async {
        count_status(&env.store, "done").await == n as u64
    })
    .await;
    assert!(done, "{prefix}: backlog not done\n{}", worker.log_tail(20));
    worker.sigterm();
    let _ = worker.wait_exit(Duration::from_secs(10)).await;
    assert_eq!(
        count_status(&env.store, "dead").await,
        0,
        "{prefix}: entries dead"
    );
    (env, config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_keeps_to_its_budget_and_to_the_servers_rate_limit() {
    // 1. The worker's own budget: 1,000 tokens per minute; 60 documents of 18 tokens each
    //    (bytes / 3, the approximation both sides use here) are 1,080: more than one minute.
    let own = start_server(ServerLimits::default()).await;
    // 2. The server's limit: 700 tokens per minute, the worker without a budget.
    let limited = start_server(ServerLimits {
        requests_per_minute: 0,
        tokens_per_minute: 700,
    })
    .await;
    let ((a, a_config), (b, _)) = tokio::join!(
        drain_through("eb_own", own, 60, 1000),
        drain_through("eb_429", limited, 60, 0),
    );

    let s = stats(own).await;
    eprintln!("own budget: {s}");
    let total = s["tokens"].as_u64().unwrap();
    assert!(
        total > 1000,
        "the backlog must exceed one minute's budget: {s}"
    );
    assert!(
        s["max_tokens_per_window"].as_u64().unwrap() <= 1000,
        "the worker sent more than its budget in one minute: {s}"
    );
    assert_eq!(s["throttled"], 0, "{s}");
    // The worker recorded what it spent (flushed when it stopped), as the server counted it.
    let today = Usage::new(a.store.database())
        .on(&day_of(bson::DateTime::now()))
        .await
        .unwrap();
    assert_eq!(today.len(), 1, "{today:?}");
    assert_eq!((today[0].index.as_str(), today[0].tokens), ("main", total));
    let out = procs::run(&a_config, &["status"], &[]);
    let text = procs::text(&out);
    assert!(
        text.contains(&format!("main (active, hash-{DIM}, {total} tokens today")),
        "{text}"
    );

    let s = stats(limited).await;
    eprintln!("server limit: {s}");
    let throttled = s["throttled"].as_u64().unwrap();
    assert!(throttled >= 1, "the server never throttled: {s}");
    assert!(
        throttled <= 6,
        "{throttled} requests answered 429: the worker retried instead of waiting: {s}"
    );
    a.cleanup().await;
    b.cleanup().await;
}
