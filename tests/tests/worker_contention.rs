//! Writers and the worker on the same documents at the same time: applications update
//! documents in multi-document transactions while the worker marks the same documents indexed.
//! Neither may block the other for good; everything drains and ends consistent.

use crate::worker_support;

use std::time::Duration;
use tidemark_store::NewDocument;
use worker_support::{count_status, test_config, wait_until, Env};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactional_writers_and_the_worker_never_block_each_other() {
    let mut cfg = test_config("wk_contend");
    cfg.worker.batch_size = 16;
    let env = Env::with_config(cfg).await;
    let w = env.worker();
    w.init().await.unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let runner = {
        let w = w.clone();
        tokio::spawn(async move {
            w.run(async move {
                let _ = rx.await;
            })
            .await
        })
    };
    // Every round rewrites the same 40 documents in transactions of 20, so the worker is
    // always marking documents indexed that a writer is updating.
    let rounds = 15;
    let writer = {
        let store = env.store.clone();
        tokio::spawn(async move {
            for round in 0..rounds {
                let docs: Vec<_> = (0..40)
                    .map(|i| NewDocument::new(format!("x{i}"), "t", format!("x{i} round {round}")))
                    .collect();
                for chunk in docs.chunks(20) {
                    store.put_many(chunk.to_vec()).await.unwrap();
                }
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
        })
    };
    let wrote = tokio::time::timeout(Duration::from_secs(120), writer).await;
    assert!(wrote.is_ok(), "the writers were blocked for 120 s");
    wrote.unwrap().unwrap();
    let drained = wait_until(Duration::from_secs(60), || async {
        count_status(&env.store, "pending").await == 0
    })
    .await;
    tx.send(()).unwrap();
    runner.await.unwrap().unwrap();
    assert!(drained, "all entries done");
    env.assert_consistent().await;
    assert!(env
        .documents()
        .await
        .iter()
        .all(|d| d.version == rounds && d.indexed_version == Some(rounds)));
    env.cleanup().await;
}
