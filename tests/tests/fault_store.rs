//! The writer under MongoDB faults (`failCommand` on a server of the test's own, scoped to the
//! writer by `appName`): `put`, an update, `put_many`, `delete` and `tidemark import` under
//! TransientTransactionError, WriteConflict (112), NotWritablePrimary (10107),
//! UnknownTransactionCommitResult, closed connections and blocked (slow) commands. Each
//! write is acknowledged, each fault is proven consumed by the write (a probe afterwards with
//! the same appName passes), every acknowledged write is committed exactly once, and after a
//! drain Chroma equals MongoDB.

use crate::fault_support;

use fault_support::{assert_consumed, FaultEnv, WRITER};
use std::time::{Duration, Instant};
use tidemark_e2e::failpoint::{codes, labels, FailCommand};
use tidemark_e2e::procs;
use tidemark_store::NewDocument;

/// The commands a put or delete writes with (bulkWrite on 8.0 servers, else the others).
const WRITES: &[&str] = &["insert", "update", "delete", "bulkWrite"];
const COMMIT: &[&str] = &["commitTransaction"];

fn doc(id: &str, text: &str) -> NewDocument {
    NewDocument::new(id, "t", format!("{id} {text}"))
}

/// put x3, an update, put_many of 30 and a delete, each with `fault` armed first; returns the
/// time the slowest write took.
async fn writes_under(prefix: &str, fault: impl Fn() -> FailCommand, commands: &[&str]) {
    let env = FaultEnv::new(prefix).await;
    let mut acked: Vec<(String, i64)> = Vec::new();
    let mut slowest = Duration::ZERO;
    for i in 0..3 {
        fault().arm(&env.admin).await;
        let t = Instant::now();
        let out = env
            .store
            .put(doc(&format!("p{i}"), "first"))
            .await
            .unwrap_or_else(|e| panic!("put p{i} under {prefix}: {e}"));
        slowest = slowest.max(t.elapsed());
        assert_consumed(&env, WRITER, commands, "put").await;
        acked.push((out.content_id, out.version));
    }
    fault().arm(&env.admin).await;
    let out = env
        .store
        .put(doc("p1", "second"))
        .await
        .unwrap_or_else(|e| panic!("update p1 under {prefix}: {e}"));
    assert_eq!(out.version, 2);
    assert_consumed(&env, WRITER, commands, "update").await;
    acked.push((out.content_id, out.version));

    fault().arm(&env.admin).await;
    let many: Vec<_> = (0..30).map(|i| doc(&format!("m{i}"), "many")).collect();
    let t = Instant::now();
    let outs = env
        .store
        .put_many(many)
        .await
        .unwrap_or_else(|e| panic!("put_many under {prefix}: {e}"));
    slowest = slowest.max(t.elapsed());
    assert_consumed(&env, WRITER, commands, "put_many").await;
    acked.extend(outs.into_iter().map(|o| (o.content_id, o.version)));

    fault().arm(&env.admin).await;
    let del = env
        .store
        .delete("p0")
        .await
        .unwrap_or_else(|e| panic!("delete under {prefix}: {e}"))
        .expect("p0 exists");
    assert_consumed(&env, WRITER, commands, "delete").await;
    acked.push(("p0".into(), del.version));

    env.assert_exactly_once(&acked).await;
    let docs = env.report().await.documents;
    assert_eq!(docs, 2 + 30, "documents after the writes");
    env.drain_once();
    env.assert_consistent_within(Duration::from_secs(20)).await;
    eprintln!("{prefix}: slowest write {slowest:?}");
    env.cleanup().await;
}

#[tokio::test]
async fn writes_retry_transient_transaction_errors() {
    writes_under(
        "fs_transient",
        || {
            FailCommand::new(WRITES, WRITER)
                .error_code(codes::WRITE_CONFLICT)
                .labels(&[labels::TRANSIENT])
                .times(2)
        },
        WRITES,
    )
    .await;
}

#[tokio::test]
async fn writes_retry_write_conflicts_as_the_server_labels_them() {
    writes_under(
        "fs_conflict",
        || {
            FailCommand::new(WRITES, WRITER)
                .error_code(codes::WRITE_CONFLICT)
                .times(2)
        },
        WRITES,
    )
    .await;
}

#[tokio::test]
async fn writes_retry_not_writable_primary_in_a_transaction() {
    // mongod labels NotWritablePrimary inside a transaction TransientTransactionError.
    writes_under(
        "fs_notprimary",
        || {
            FailCommand::new(WRITES, WRITER)
                .error_code(codes::NOT_WRITABLE_PRIMARY)
                .labels(&[labels::TRANSIENT])
                .times(2)
        },
        WRITES,
    )
    .await;
}

#[tokio::test]
async fn commits_retry_when_their_result_is_unknown() {
    writes_under(
        "fs_unknown",
        || {
            FailCommand::new(COMMIT, WRITER)
                .error_code(codes::HOST_UNREACHABLE)
                .labels(&[labels::UNKNOWN_COMMIT])
                .times(2)
        },
        COMMIT,
    )
    .await;
}

#[tokio::test]
async fn commits_retry_after_not_writable_primary() {
    // As a step-down answers a commit: retryable; the driver retries once, then labels it
    // UnknownTransactionCommitResult and the store retries the commit.
    writes_under(
        "fs_commit_np",
        || {
            FailCommand::new(COMMIT, WRITER)
                .error_code(codes::NOT_WRITABLE_PRIMARY)
                .labels(&[labels::RETRYABLE_WRITE])
                .times(3)
        },
        COMMIT,
    )
    .await;
}

#[tokio::test]
async fn writes_survive_closed_connections() {
    writes_under(
        "fs_close",
        || FailCommand::new(WRITES, WRITER).close_connection().times(1),
        WRITES,
    )
    .await;
}

#[tokio::test]
async fn commits_survive_closed_connections() {
    writes_under(
        "fs_close_commit",
        || FailCommand::new(COMMIT, WRITER).close_connection().times(1),
        COMMIT,
    )
    .await;
}

#[tokio::test]
async fn writes_wait_out_blocked_commands() {
    writes_under(
        "fs_block",
        || FailCommand::new(WRITES, WRITER).block_ms(300).times(1),
        WRITES,
    )
    .await;
}

#[tokio::test]
async fn import_retries_transient_errors_and_commits_each_line_once() {
    let env = FaultEnv::new("fs_import").await;
    let file = env.dir.join("corpus.jsonl");
    let lines: Vec<String> = (0..120)
        .map(|i| {
            serde_json::json!({"contentId": format!("i{i}"), "type": "t",
                "content": format!("i{i} imported line {i}"), "metadata": {"n": i}})
            .to_string()
        })
        .collect();
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let config = env.config_file(WRITER);
    FailCommand::new(WRITES, WRITER)
        .error_code(codes::WRITE_CONFLICT)
        .labels(&[labels::TRANSIENT])
        .times(3)
        .arm(&env.admin)
        .await;
    let out = procs::run(
        &config,
        &["import", file.to_str().unwrap(), "--batch", "25"],
        &[],
    );
    assert!(out.status.success(), "import: {}", procs::text(&out));
    assert_consumed(&env, WRITER, WRITES, "import").await;
    FailCommand::new(COMMIT, WRITER)
        .close_connection()
        .times(1)
        .arm(&env.admin)
        .await;
    let out = procs::run(
        &config,
        &["import", file.to_str().unwrap(), "--batch", "25"],
        &[],
    );
    assert!(out.status.success(), "second import: {}", procs::text(&out));
    assert_consumed(&env, WRITER, COMMIT, "second import").await;
    // Every put writes a version, so each line has exactly a version 1 and a version 2.
    let acked: Vec<(String, i64)> = (1..=2)
        .flat_map(|v| (0..120).map(move |i| (format!("i{i}"), v)))
        .collect();
    env.assert_exactly_once(&acked).await;
    env.drain_once();
    env.assert_consistent_within(Duration::from_secs(20)).await;
    env.cleanup().await;
}
