//! Shared harness of the end-to-end tests: where the services are, unique names per test so
//! tests run in parallel, and helpers to start the `tidemark` binary.
//!
//! The services come from `scripts/services up`; `MONGODB_URI`, `CHROMA_URL` and
//! `TIDEMARK_MODEL_DIR` point elsewhere when set.
//!
//! Fault injection (issue 19): `failpoint` (MongoDB `failCommand`), `servers` (extra
//! SecantusDB / Chroma servers of one test: test commands, small oplog, auth, TLS, kill -9 and
//! restart), `tls` (a test CA), `proxy` (an HTTP fault proxy for Chroma and the embedder),
//! `procs` (the `tidemark` binary as a child process), `consistency` (Chroma equals MongoDB).

pub mod consistency;
pub mod failpoint;
pub mod procs;
pub mod proxy;
pub mod servers;
pub mod tls;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

pub use tidemark_core::config::{DEFAULT_CHROMA_URL, DEFAULT_MONGODB_URI};

/// MongoDB URI of the test replica set.
pub fn mongodb_uri() -> String {
    std::env::var("MONGODB_URI").unwrap_or_else(|_| DEFAULT_MONGODB_URI.to_string())
}

/// Base URL of the test Chroma server.
pub fn chroma_url() -> String {
    std::env::var("CHROMA_URL").unwrap_or_else(|_| DEFAULT_CHROMA_URL.to_string())
}

/// The repository root (the workspace folder).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The ONNX Runtime library `scripts/services up` copies from the onnxruntime wheel.
pub fn onnx_runtime() -> PathBuf {
    std::env::var("TIDEMARK_ONNX_RUNTIME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo_root().join(tidemark_core::config::DEFAULT_ONNX_RUNTIME))
}

/// The Python of the services' virtual environment (it has onnxruntime, for the bench's
/// reference embedder).
pub fn python() -> PathBuf {
    std::env::var("TIDEMARK_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo_root().join(".venv/bin/python"))
}

/// The local model with `engine`, from the folder and library `scripts/services up` made.
pub fn local_model(
    engine: tidemark_core::config::LocalEngine,
) -> tidemark_embed::local::LocalEmbedder {
    tidemark_embed::local::LocalEmbedder::load(&model_dir(), engine, &onnx_runtime())
        .expect("model folder and ONNX Runtime from scripts/services up")
}

/// Points `e` at the local model (default engine) in the folders `scripts/services up` made.
pub fn use_local_model(e: &mut tidemark_core::config::EmbedderConfig) {
    e.provider = tidemark_core::config::EmbedderKind::Local;
    e.model_dir = model_dir();
    e.onnx_runtime = onnx_runtime();
    e.dimension = 384;
}

/// Folder of the all-MiniLM-L6-v2 model files unpacked by `scripts/services up`.
pub fn model_dir() -> PathBuf {
    std::env::var("TIDEMARK_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo_root().join(".tidemark/models/all-MiniLM-L6-v2"))
}

/// A name unique to this test process and call, usable as a MongoDB database name or a Chroma
/// namespace (letters, digits, `_`; at most 38 characters).
pub fn unique_name(prefix: &str) -> String {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let p: String = prefix.chars().take(16).collect();
    format!("t_{p}_{}_{n}_{nanos:x}", std::process::id())
}

/// A connected client of the test replica set.
pub async fn mongo_client() -> mongodb::Client {
    mongodb::Client::with_uri_str(mongodb_uri())
        .await
        .expect("MongoDB URI parses; is `scripts/services up` running?")
}

/// Path of the `tidemark` binary built by cargo for this test run (`TIDEMARK_BIN` when set).
pub fn tidemark_bin() -> PathBuf {
    if let Ok(p) = std::env::var("TIDEMARK_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/<test>-hash -> target/<profile>/tidemark; a binary of this crate
    // (target/<profile>/torture) sits beside it.
    let dir = exe.parent().expect("exe dir");
    if dir.join("tidemark").exists() {
        return dir.join("tidemark");
    }
    dir.parent().expect("target dir").join("tidemark")
}

/// Every document, sorted by contentId.
pub async fn all_documents(store: &tidemark_store::Store) -> Vec<tidemark_core::DocumentRecord> {
    use futures::TryStreamExt;
    store
        .documents()
        .find(bson::doc! {})
        .sort(bson::doc! {"contentId": 1})
        .await
        .expect("query documents")
        .try_collect()
        .await
        .expect("read documents")
}

/// Outbox entries matching `filter`, in insertion order.
pub async fn outbox_entries(
    store: &tidemark_store::Store,
    filter: bson::Document,
) -> Vec<tidemark_core::OutboxEntry> {
    use futures::TryStreamExt;
    store
        .outbox()
        .find(filter)
        .sort(bson::doc! {"_id": 1})
        .await
        .expect("query outbox")
        .try_collect()
        .await
        .expect("read outbox")
}

/// Polls `cond` every 100 ms until it holds or `timeout` passes; returns whether it held.
pub async fn wait_until<F, Fut>(timeout: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = std::time::Instant::now();
    loop {
        if cond().await {
            return true;
        }
        if start.elapsed() > timeout {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
