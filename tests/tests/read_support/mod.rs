//! Shared set-up of the read API tests: the worker tests' world (unique database and
//! namespace, the hashing test embedder) plus a `Reader` on the same collection, and a worker
//! running in the background for read-your-writes.

#![allow(dead_code)]

use std::time::Duration;
use tidemark_embed::SharedEmbedder;
use tidemark_read::Reader;
use tokio::sync::oneshot;

pub use crate::worker_support::Env;

/// A reader that searches the collection the test worker writes.
pub fn reader(env: &Env) -> Reader {
    let embedder: SharedEmbedder = env.embedder.clone();
    Reader::new(&env.cfg, env.store.clone())
        .with_embedder(embedder)
        .expect("reader")
}

/// A worker running until the returned sender is dropped or fired.
pub fn background_worker(env: &Env) -> (oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let worker = env.worker();
    let (tx, rx) = oneshot::channel::<()>();
    let handle = tokio::spawn(async move {
        worker
            .run(async {
                let _ = rx.await;
            })
            .await
            .expect("worker runs");
    });
    (tx, handle)
}

/// Stops a background worker within its shutdown deadline.
pub async fn stop(worker: (oneshot::Sender<()>, tokio::task::JoinHandle<()>)) {
    let _ = worker.0.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), worker.1).await;
}
