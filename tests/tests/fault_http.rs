//! Chroma and the embedder behind the fault proxy (tests/src/proxy.rs), with the real
//! `tidemark worker`: 429 with Retry-After honoured (the delay between attempts measured at
//! the proxy), 500/503 retried with a growing backoff, connection resets and truncated bodies
//! retried, a hang bounded by the request timeout, and a permanent 4xx ending `dead` with the
//! server's message in `lastError` (and replayable once the fault is gone). Each test ends
//! with Chroma equal to MongoDB.

use crate::fault_support;

use fault_support::FaultEnv;
use std::time::Duration;
use tidemark_core::config::EmbedderKind;
use tidemark_e2e::procs::{self, EmbedServer, WorkerProc};
use tidemark_e2e::proxy::{Fault, FaultProxy, Served};
use tidemark_e2e::servers::MongoOptions;

const UPSERT: &str = "/upsert";
const EMBED: &str = "/v1/embeddings";

/// A world whose worker reaches Chroma through a proxy.
async fn chroma_env(prefix: &str) -> (FaultEnv, FaultProxy) {
    let proxy = FaultProxy::start(&tidemark_e2e::chroma_url()).await;
    let env = FaultEnv::with(prefix, MongoOptions::default(), &tidemark_e2e::chroma_url()).await;
    (env, proxy)
}

fn spawn_via(env: &FaultEnv, proxy: &FaultProxy, timeout: Duration) -> WorkerProc {
    let url = proxy.url();
    env.spawn_worker_with(|c| {
        c.chroma.url = url;
        c.chroma.timeout = timeout;
    })
    .0
}

async fn consistent(env: &FaultEnv, w: &WorkerProc, what: &str) -> Duration {
    let (r, took) = tidemark_e2e::consistency::wait_consistent(
        &env.check_store,
        &env.chroma,
        &env.collection(),
        Duration::from_secs(40),
    )
    .await;
    assert!(
        r.is_consistent() && r.dead.is_empty(),
        "{what}: Chroma differs from MongoDB: {r:?}\nworker log:\n{}",
        w.log_tail(30)
    );
    took
}

/// Seconds between consecutive requests.
fn gaps(served: &[Served]) -> Vec<Duration> {
    served.windows(2).map(|w| w[1].at - w[0].at).collect()
}

/// The time from the first request that got `kind` to the next request on the same path.
fn gap_after(served: &[Served], kind: &str) -> Duration {
    let i = served
        .iter()
        .position(|s| s.fault.kind() == kind)
        .unwrap_or_else(|| panic!("no {kind} served: {served:?}"));
    let next = served.get(i + 1).expect("a retry after the fault");
    next.at - served[i].at
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chroma_throttling_honours_retry_after() {
    let (env, proxy) = chroma_env("fh_429").await;
    proxy.schedule(UPSERT, [Fault::throttle(429, 2), Fault::throttle(503, 1)]);
    let w = spawn_via(&env, &proxy, Duration::from_secs(5));
    env.put_docs("t", 3, "throttled").await;
    consistent(&env, &w, "429").await;
    let served = proxy.served_matching(UPSERT);
    let after_429 = gap_after(&served, "status-429");
    let after_503 = gap_after(&served, "status-503");
    eprintln!(
        "retry after 429 (Retry-After 2): {after_429:?}; after 503 (Retry-After 1): {after_503:?}"
    );
    assert!(
        after_429 >= Duration::from_millis(1950),
        "429 retried after {after_429:?}"
    );
    assert!(
        after_429 < Duration::from_secs(6),
        "429 retried only after {after_429:?}"
    );
    assert!(
        after_503 >= Duration::from_millis(950),
        "503 retried after {after_503:?}"
    );
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chroma_server_errors_retry_with_growing_backoff() {
    let (env, proxy) = chroma_env("fh_5xx").await;
    let errors = [500, 503, 500, 503].map(|c| Fault::status(c, "injected server error"));
    proxy.schedule(UPSERT, errors);
    let w = spawn_via(&env, &proxy, Duration::from_secs(5));
    env.put_docs("t", 3, "server errors").await;
    consistent(&env, &w, "5xx").await;
    let served = proxy.served_matching(UPSERT);
    assert!(served.len() >= 5, "4 errors then success: {served:?}");
    let g = gaps(&served[..5]);
    eprintln!("gaps between attempts after 500/503/500/503: {g:?}");
    // backoff_base 100 ms doubling with equal jitter: the 4th retry waits at least 400 ms.
    assert!(
        g[3] >= Duration::from_millis(390),
        "no growing backoff: {g:?}"
    );
    assert!(g[0] >= Duration::from_millis(45), "retried at once: {g:?}");
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chroma_resets_and_truncated_bodies_are_retried() {
    let (env, proxy) = chroma_env("fh_reset").await;
    proxy.schedule(UPSERT, [Fault::Reset, Fault::Truncate]);
    proxy.schedule("/get", [Fault::Truncate, Fault::Reset]);
    let w = spawn_via(&env, &proxy, Duration::from_secs(5));
    env.put_docs("t", 5, "resets").await;
    consistent(&env, &w, "resets").await;
    assert_eq!(
        proxy.pending_faults(),
        0,
        "every fault met: {:?}",
        proxy.served()
    );
    assert_eq!(proxy.count("reset"), 2);
    assert_eq!(proxy.count("truncate"), 2);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chroma_hang_is_bounded_by_the_request_timeout() {
    let (env, proxy) = chroma_env("fh_hang").await;
    proxy.schedule(UPSERT, [Fault::Hang]);
    let w = spawn_via(&env, &proxy, Duration::from_secs(1));
    env.put_docs("t", 3, "hang").await;
    consistent(&env, &w, "hang").await;
    let after = gap_after(&proxy.served_matching(UPSERT), "hang");
    eprintln!("retry after a hang with chroma.timeout 1 s: {after:?}");
    assert!(after >= Duration::from_millis(950), "{after:?}");
    assert!(
        after < Duration::from_secs(5),
        "a hang held the worker {after:?}"
    );
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chroma_permanent_4xx_is_dead_with_the_message_then_replayable() {
    let (env, proxy) = chroma_env("fh_4xx").await;
    let msg = "injected: collection expecting embedding with dimension of 65, got 64";
    proxy.always(UPSERT, Fault::status(400, msg));
    let w = spawn_via(&env, &proxy, Duration::from_secs(5));
    env.put_docs("t", 2, "permanent").await;
    let dead = tidemark_e2e::wait_until(Duration::from_secs(30), || async {
        env.report().await.dead.len() == 2
    })
    .await;
    let r = env.report().await;
    assert!(
        dead,
        "entries not dead after a permanent 400: {r:?}\n{}",
        w.log_tail(20)
    );
    for (id, err) in &r.dead {
        assert!(
            err.contains(msg),
            "{id}: lastError {err:?} lacks the server's message"
        );
    }
    assert_eq!(r.missing.len(), 2, "dead means no vector: {r:?}");
    assert_eq!(r.pending, 0);
    proxy.clear();
    let config = env.config_file("dlq");
    let out = procs::run(&config, &["dlq", "retry", "--all"], &[]);
    assert!(out.status.success(), "dlq retry: {}", procs::text(&out));
    consistent(&env, &w, "after the replay").await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedder_faults_are_retried_bounded_and_permanent_ones_dead() {
    let env = FaultEnv::with(
        "fh_embed",
        MongoOptions::default(),
        &tidemark_e2e::chroma_url(),
    )
    .await;
    let server = EmbedServer::start(&env.dir.join("embed")).await;
    let proxy = FaultProxy::start(&server.url()).await;
    let url = proxy.url();
    let (w, _) = env.spawn_worker_with(|c| {
        c.embedder.provider = EmbedderKind::Openai;
        c.embedder.base_url = url;
        c.embedder.model = "all-MiniLM-L6-v2".into();
        c.embedder.dimension = 384;
        c.embedder.timeout = Duration::from_secs(2);
    });
    let coll = tidemark_core::collection_name(&env.cfg.chroma.namespace, "all-MiniLM-L6-v2");
    let consistent_now = |what: &'static str| {
        let env = &env;
        let coll = coll.clone();
        let w = &w;
        async move {
            let (r, took) = tidemark_e2e::consistency::wait_consistent(
                &env.check_store,
                &env.chroma,
                &coll,
                Duration::from_secs(40),
            )
            .await;
            assert!(
                r.is_consistent() && r.dead.is_empty(),
                "{what}: {r:?}\n{}",
                w.log_tail(30)
            );
            took
        }
    };

    proxy.schedule(EMBED, [Fault::throttle(429, 2)]);
    env.put_docs("a", 2, "throttled embedding").await;
    consistent_now("429").await;
    let after = gap_after(&proxy.served_matching(EMBED), "status-429");
    eprintln!("embedder retry after 429 (Retry-After 2): {after:?}");
    assert!(after >= Duration::from_millis(1950), "{after:?}");

    proxy.schedule(
        EMBED,
        [
            Fault::status(503, "busy"),
            Fault::status(500, "oops"),
            Fault::Reset,
            Fault::Truncate,
        ],
    );
    env.put_docs("b", 2, "flaky embedding").await;
    consistent_now("5xx, reset, truncate").await;
    assert_eq!(proxy.pending_faults(), 0);

    proxy.schedule(EMBED, [Fault::Hang]);
    env.put_docs("c", 2, "hanging embedding").await;
    consistent_now("hang").await;
    let after = gap_after(&proxy.served_matching(EMBED), "hang");
    eprintln!("embedder retry after a hang (timeout 2 s): {after:?}");
    assert!(
        after >= Duration::from_millis(1950) && after < Duration::from_secs(6),
        "{after:?}"
    );

    let msg = "injected: this model does not accept that input";
    proxy.always(EMBED, Fault::status(400, msg));
    env.put_docs("d", 1, "refused embedding").await;
    let dead = tidemark_e2e::wait_until(Duration::from_secs(30), || async {
        tidemark_e2e::consistency::check(&env.check_store, &env.chroma, &coll)
            .await
            .is_ok_and(|r| r.dead.len() == 1)
    })
    .await;
    let r = tidemark_e2e::consistency::check(&env.check_store, &env.chroma, &coll)
        .await
        .unwrap();
    assert!(
        dead,
        "not dead after a permanent 400: {r:?}\n{}",
        w.log_tail(20)
    );
    assert!(r.dead[0].1.contains(msg), "lastError {:?}", r.dead[0].1);
    assert_eq!(r.missing, vec!["d0".to_string()]);
    let _ = env.chroma.delete_collection(&coll).await;
    env.cleanup().await;
}
