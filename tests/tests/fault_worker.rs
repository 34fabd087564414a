//! The `tidemark worker` binary under MongoDB faults scoped to it by `appName` (its claims,
//! lease and lock renewals, marks and reads): write errors with and without retry labels,
//! a primary that is not writable for a while (as in an election), closed connections and
//! blocked commands. Documents are written by an unfaulted client; each round ends with Chroma
//! equal to MongoDB, nothing dead, and the fail point proven consumed by the worker; at the
//! end the worker stops on SIGTERM with exit 0.

use crate::fault_support;

use fault_support::{assert_consumed, FaultEnv, WORKER};
use std::time::{Duration, Instant};
use tidemark_e2e::failpoint::{self, codes, labels, FailCommand};
use tidemark_e2e::procs::WorkerProc;

const WRITES: &[&str] = &["update", "findAndModify", "insert", "delete"];

/// One round: arm `fault`, write 20 new documents, update 5 and delete 2 of them, wait until
/// Chroma equals MongoDB; returns how long that took.
async fn round(env: &FaultEnv, w: &WorkerProc, n: usize, fault: FailCommand) -> Duration {
    fault.arm(&env.admin).await;
    let start = Instant::now();
    let p = format!("r{n}_");
    env.put_docs(&p, 20, "first text").await;
    for i in 0..5 {
        let d = tidemark_store::NewDocument::new(format!("{p}{i}"), "t", format!("{p}{i} updated"));
        env.check_store.put(d).await.unwrap();
    }
    for i in 5..7 {
        env.check_store.delete(&format!("{p}{i}")).await.unwrap();
    }
    let (r, took) = tidemark_e2e::consistency::wait_consistent(
        &env.check_store,
        &env.chroma,
        &env.collection(),
        Duration::from_secs(40),
    )
    .await;
    assert!(
        r.is_consistent() && r.dead.is_empty(),
        "round {n}: Chroma differs from MongoDB after 40 s: {r:?}\nworker log:\n{}",
        w.log_tail(30)
    );
    eprintln!("round {n}: consistent after {:?}", start.elapsed());
    took
}

async fn stop(mut w: WorkerProc, deadline: Duration) {
    w.sigterm();
    let exit = w.wait_exit(deadline + Duration::from_secs(1)).await;
    let log = w.log_tail(20);
    let (status, took) = exit.unwrap_or_else(|| {
        panic!("worker still running {deadline:?} + 1 s after SIGTERM; log:\n{log}")
    });
    assert!(status.success(), "worker exit {status}; log:\n{log}");
    eprintln!("worker stopped {took:?} after SIGTERM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_survives_write_errors_on_its_claims_and_marks() {
    let env = FaultEnv::new("fw_writes").await;
    let (w, _) = env.spawn_worker();
    round(&env, &w, 0, FailCommand::new(&["find"], "nobody")).await;

    // A write conflict with the retry label, twice.
    let f = FailCommand::new(WRITES, WORKER)
        .error_code(codes::WRITE_CONFLICT)
        .labels(&[labels::TRANSIENT])
        .times(2);
    round(&env, &w, 1, f).await;
    assert_consumed(&env, WORKER, WRITES, "write conflict").await;

    // NotWritablePrimary as a step-down answers a retryable write: the driver retries once.
    let f = FailCommand::new(WRITES, WORKER)
        .error_code(codes::NOT_WRITABLE_PRIMARY)
        .labels(&[labels::RETRYABLE_WRITE])
        .times(3);
    round(&env, &w, 2, f).await;
    assert_consumed(&env, WORKER, WRITES, "not writable primary").await;

    // InterruptedDueToReplStateChange without labels: the worker sees the error itself.
    let f = FailCommand::new(WRITES, WORKER)
        .error_code(codes::INTERRUPTED_DUE_TO_REPL_STATE_CHANGE)
        .labels(&[])
        .times(3);
    round(&env, &w, 3, f).await;
    assert_consumed(&env, WORKER, WRITES, "interrupted").await;

    // An election: no writable primary for 2 s, every write of the worker refused meanwhile.
    FailCommand::new(WRITES, WORKER)
        .error_code(codes::NOT_WRITABLE_PRIMARY)
        .labels(&[])
        .always_on()
        .arm(&env.admin)
        .await;
    env.put_docs("election_", 20, "during the election").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    failpoint::off(&env.admin).await;
    let took = round(&env, &w, 4, FailCommand::new(&["find"], "nobody")).await;
    eprintln!("recovered {took:?} after the election");
    stop(w, env.cfg.worker.shutdown_deadline).await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_survives_closed_connections() {
    let env = FaultEnv::new("fw_close").await;
    let (w, _) = env.spawn_worker();
    round(&env, &w, 0, FailCommand::new(&["find"], "nobody")).await;
    let f = FailCommand::new(WRITES, WORKER).close_connection().times(3);
    round(&env, &w, 1, f).await;
    assert_consumed(&env, WORKER, WRITES, "closed on writes").await;
    let f = FailCommand::new(&["find"], WORKER)
        .close_connection()
        .times(3);
    round(&env, &w, 2, f).await;
    assert_consumed(&env, WORKER, &["find"], "closed on reads").await;
    stop(w, env.cfg.worker.shutdown_deadline).await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_waits_out_blocked_commands() {
    let env = FaultEnv::new("fw_block").await;
    let (w, _) = env.spawn_worker();
    round(&env, &w, 0, FailCommand::new(&["find"], "nobody")).await;
    // Slow marks and reads, longer than a third of the lease (renewals must keep up).
    let f = FailCommand::new(&["update", "find"], WORKER)
        .block_ms(1200)
        .times(4);
    round(&env, &w, 1, f).await;
    assert_consumed(&env, WORKER, &["update", "find"], "blocked").await;
    stop(w, env.cfg.worker.shutdown_deadline).await;
    env.cleanup().await;
}

/// While an index is being built, a live write's part for it that lags is handed on as an
/// entry of its own, inserted before the live entry is marked done. Here the building index's
/// embedding API answers every request 1.5 s late (a fault proxy), so every live write hands
/// on. Write errors on that insert, and on the worker's updates (the marks among them,
/// whichever they hit), only repeat work: the active index and the building one both end
/// equal to MongoDB, nothing is dead, and the building index received every write through
/// hand-offs alone (it was created before the first one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hand_offs_to_a_building_index_survive_write_errors() {
    let env = FaultEnv::new("fw_handoff").await;
    let (w, _) = env.spawn_worker();
    let indexes = tidemark_store::indexes::Indexes::new(env.check_store.database());
    let recorded = tidemark_e2e::wait_until(Duration::from_secs(30), || async {
        indexes.active().await.unwrap().is_some()
    })
    .await;
    assert!(
        recorded,
        "the worker did not record `main`\n{}",
        w.log_tail(10)
    );
    let limits = tidemark_embed::server_limits::ServerLimits::default();
    let upstream = tidemark_e2e::servers::hash_embed_server(32, limits).await;
    let upstream = format!("http://{upstream}");
    let proxy = tidemark_e2e::proxy::FaultProxy::start(&upstream).await;
    let mut b = env.cfg.clone();
    b.embedder.provider = tidemark_core::config::EmbedderKind::Openai;
    b.embedder.base_url = proxy.url();
    b.embedder.model = "hash-32".into();
    b.embedder.dimension = 32;
    tidemark_ops::indexes::create(&env.check_store, &b, "v2")
        .await
        .expect("index create");
    let late = tidemark_e2e::proxy::Fault::Delay(Duration::from_millis(1500));
    proxy.always("/v1/embeddings", late);
    let lane = w
        .wait_log("writing a further index", Duration::from_secs(15))
        .await;
    assert!(lane, "the worker did not pick up v2\n{}", w.log_tail(10));
    let handed = || async {
        tidemark_e2e::outbox_entries(&env.check_store, bson::doc! {"indexes": "v2"})
            .await
            .len()
    };
    round(&env, &w, 0, FailCommand::new(&["find"], "nobody")).await;
    let before = handed().await;
    assert!(before >= 20, "round 0 was not handed on: {before}");

    let f = FailCommand::new(&["insert"], WORKER)
        .error_code(codes::INTERRUPTED_DUE_TO_REPL_STATE_CHANGE)
        .labels(&[])
        .times(2);
    round(&env, &w, 1, f).await;
    assert_consumed(&env, WORKER, &["insert"], "hand-off insert").await;
    let f = FailCommand::new(&["update"], WORKER)
        .error_code(codes::INTERRUPTED_DUE_TO_REPL_STATE_CHANGE)
        .labels(&[])
        .times(4);
    round(&env, &w, 2, f).await;
    assert_consumed(&env, WORKER, &["update"], "marks").await;

    // Rounds 1 and 2 each wrote 20 documents, updated 5 and deleted 2: at least 27 writes
    // each, every one handed on (or coalesced with a later one of its document).
    let got = handed().await - before;
    assert!(got >= 40, "only {got} entries were handed on to v2");
    let v2 = format!("{}__hash-32__v2", env.cfg.chroma.namespace);
    proxy.clear();
    let (r, _) = tidemark_e2e::consistency::wait_consistent(
        &env.check_store,
        &env.chroma,
        &v2,
        Duration::from_secs(40),
    )
    .await;
    assert!(
        r.is_consistent() && r.dead.is_empty(),
        "v2 differs from MongoDB: {r:?}\nworker log:\n{}",
        w.log_tail(30)
    );
    stop(w, env.cfg.worker.shutdown_deadline).await;
    env.cleanup().await;
}
