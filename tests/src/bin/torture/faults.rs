//! The fault classes of the torture run and how each is injected into the world: MongoDB fail
//! points on the writer or a worker, proxy faults in front of Chroma, and process crashes
//! (workers, Chroma, MongoDB), graceful restarts, and a resume token lost to oplog rollover.

use crate::world::World;
use rand::Rng;
use std::time::Duration;
use tidemark_e2e::failpoint::{codes, labels, FailCommand};
use tidemark_e2e::proxy::Fault;

const WRITES: &[&str] = &["insert", "update", "delete", "bulkWrite", "findAndModify"];

/// One class of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Class {
    TransientTxn,
    UnknownCommit,
    NotWritablePrimary,
    CloseConnection,
    BlockConnection,
    StreamError,
    ChromaThrottle,
    ChromaServerError,
    ChromaResetTruncateHang,
    WorkerKill9,
    WorkerSigterm,
    ChromaKill9,
    MongoKill9,
    OplogRollover,
}

pub const ALL: &[Class] = &[
    Class::TransientTxn,
    Class::UnknownCommit,
    Class::NotWritablePrimary,
    Class::CloseConnection,
    Class::BlockConnection,
    Class::StreamError,
    Class::ChromaThrottle,
    Class::ChromaServerError,
    Class::ChromaResetTruncateHang,
    Class::WorkerKill9,
    Class::WorkerSigterm,
    Class::ChromaKill9,
    Class::MongoKill9,
    Class::OplogRollover,
];

impl Class {
    pub fn name(self) -> &'static str {
        match self {
            Class::TransientTxn => "MongoDB TransientTransactionError / WriteConflict (writer)",
            Class::UnknownCommit => "MongoDB UnknownTransactionCommitResult (writer)",
            Class::NotWritablePrimary => "MongoDB NotWritablePrimary (writer or worker)",
            Class::CloseConnection => "MongoDB closeConnection (writer or worker)",
            Class::BlockConnection => "MongoDB blockConnection (writer or worker)",
            Class::StreamError => "change stream getMore error (resumable or fatal)",
            Class::ChromaThrottle => "Chroma 429 / 503 with Retry-After",
            Class::ChromaServerError => "Chroma 500 / 503",
            Class::ChromaResetTruncateHang => "Chroma reset / truncated body / hang",
            Class::WorkerKill9 => "worker kill -9 + restart",
            Class::WorkerSigterm => "worker SIGTERM + restart",
            Class::ChromaKill9 => "Chroma kill -9 + restart",
            Class::MongoKill9 => "MongoDB kill -9 + restart",
            Class::OplogRollover => "resume token lost to oplog rollover (workers down)",
        }
    }
}

/// Arms a fault that lasts while the workload runs (fail points, proxy schedules); crash
/// classes act here directly. Returns what was done, for the log.
pub async fn inject(w: &mut World, class: Class, rng: &mut impl Rng) -> String {
    let app = if rng.random_bool(0.5) {
        crate::world::WRITER.to_string()
    } else {
        crate::world::worker_app(rng.random_range(0..2))
    };
    let n = rng.random_range(1..=4);
    match class {
        Class::TransientTxn => {
            let mut f = FailCommand::new(WRITES, crate::world::WRITER)
                .error_code(codes::WRITE_CONFLICT)
                .times(n);
            if rng.random_bool(0.5) {
                f = f.labels(&[labels::TRANSIENT]);
            }
            f.arm(&w.admin).await;
            format!("112 x{n} on the writer")
        }
        Class::UnknownCommit => {
            FailCommand::new(&["commitTransaction"], crate::world::WRITER)
                .error_code(codes::HOST_UNREACHABLE)
                .labels(&[labels::UNKNOWN_COMMIT])
                .times(n)
                .arm(&w.admin)
                .await;
            format!("commit unknown x{n}")
        }
        Class::NotWritablePrimary => {
            let label = if app == crate::world::WRITER {
                labels::TRANSIENT
            } else {
                labels::RETRYABLE_WRITE
            };
            FailCommand::new(WRITES, &app)
                .error_code(codes::NOT_WRITABLE_PRIMARY)
                .labels(&[label])
                .times(n)
                .arm(&w.admin)
                .await;
            format!("10107 x{n} on {app}")
        }
        Class::CloseConnection => {
            let cmds: &[&str] = if rng.random_bool(0.3) {
                &["commitTransaction", "find"]
            } else {
                WRITES
            };
            FailCommand::new(cmds, &app)
                .close_connection()
                .times(n)
                .arm(&w.admin)
                .await;
            format!("close x{n} on {app} {cmds:?}")
        }
        Class::BlockConnection => {
            let ms = rng.random_range(200..1500);
            FailCommand::new(&["update", "find", "insert", "bulkWrite"], &app)
                .block_ms(ms)
                .times(n)
                .arm(&w.admin)
                .await;
            format!("block {ms} ms x{n} on {app}")
        }
        Class::StreamError => {
            let worker = crate::world::worker_app(rng.random_range(0..2));
            let f = FailCommand::new(&["getMore"], &worker).times(1);
            let f = if rng.random_bool(0.5) {
                f.error_code(codes::HOST_UNREACHABLE)
                    .labels(&[labels::RESUMABLE_CHANGE_STREAM])
            } else {
                f.error_code(280).labels(&[])
            };
            f.arm(&w.admin).await;
            format!("getMore error on {worker}")
        }
        Class::ChromaThrottle => {
            let f: Vec<Fault> = (0..n)
                .map(|i| Fault::throttle(if i % 2 == 0 { 429 } else { 503 }, 1))
                .collect();
            w.proxy.schedule("/upsert", f);
            format!("{n} throttles")
        }
        Class::ChromaServerError => {
            let f: Vec<Fault> = (0..n)
                .map(|i| Fault::status(if i % 2 == 0 { 500 } else { 503 }, "torture"))
                .collect();
            w.proxy.schedule("/upsert", f);
            format!("{n} server errors")
        }
        Class::ChromaResetTruncateHang => {
            let pick = [Fault::Reset, Fault::Truncate, Fault::Hang];
            let f: Vec<Fault> = (0..n)
                .map(|_| pick[rng.random_range(0..pick.len())].clone())
                .collect();
            let path = if rng.random_bool(0.7) {
                "/upsert"
            } else {
                "/get"
            };
            w.proxy.schedule(path, f.clone());
            format!("{f:?} on {path}")
        }
        Class::WorkerKill9 => {
            let i = rng.random_range(0..2);
            w.kill_worker(i);
            tokio::time::sleep(Duration::from_millis(rng.random_range(100..1000))).await;
            w.start_worker(i);
            format!("worker {i} killed")
        }
        Class::WorkerSigterm => {
            let i = rng.random_range(0..2);
            let took = w.stop_worker(i).await;
            w.start_worker(i);
            format!("worker {i} stopped in {took:?}")
        }
        Class::ChromaKill9 => {
            w.chroma.kill9();
            tokio::time::sleep(Duration::from_millis(rng.random_range(200..1500))).await;
            w.chroma.restart().await;
            "chroma killed".into()
        }
        Class::MongoKill9 => {
            w.mongo.kill9();
            tokio::time::sleep(Duration::from_millis(rng.random_range(200..1500))).await;
            w.mongo.restart().await;
            "mongo killed".into()
        }
        Class::OplogRollover => {
            for i in 0..2 {
                w.stop_worker(i).await;
            }
            "workers stopped for a rollover".into()
        }
    }
}

/// Ends the fault (fail point off, proxy cleared, stopped workers started).
pub async fn clear(w: &mut World, class: Class) {
    // The server may have just restarted: a failed "off" is retried, then ignored (a restart
    // clears fail points anyway).
    for _ in 0..5 {
        let off = bson::doc! {"configureFailPoint": "failCommand", "mode": "off"};
        if w.admin.database("admin").run_command(off).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    w.proxy.clear();
    if class == Class::OplogRollover {
        for i in 0..2 {
            w.start_worker(i);
        }
    }
}
