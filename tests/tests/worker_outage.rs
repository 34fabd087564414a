//! Chroma goes away mid-load: entries retry with backoff (counted), the lag gauge rises, and
//! once Chroma is back everything drains with nothing lost and nothing dead. The test starts
//! its OWN Chroma (`.venv/bin/chroma run`) on a free port with a temporary data folder, so
//! stopping it disturbs no other test.

use crate::worker_support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tidemark_store::NewDocument;
use worker_support::{count_status, test_config, wait_until, Env};

struct OwnChroma {
    child: Option<Child>,
    port: u16,
}

impl OwnChroma {
    fn start(dir: &std::path::Path, port: u16) -> OwnChroma {
        let bin = tidemark_e2e::repo_root().join(".venv/bin/chroma");
        let child = Command::new(bin)
            .args(["run", "--path"])
            .arg(dir)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start .venv/bin/chroma (scripts/services installs it)");
        OwnChroma {
            child: Some(child),
            port,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    async fn wait_up(&self) {
        let url = format!("{}/api/v2/heartbeat", self.url());
        let up = wait_until(Duration::from_secs(30), || async {
            reqwest::get(&url)
                .await
                .is_ok_and(|r| r.status().is_success())
        })
        .await;
        assert!(up, "own chroma did not start");
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for OwnChroma {
    fn drop(&mut self) {
        self.kill();
    }
}

#[tokio::test]
async fn chroma_outage_retries_raises_lag_and_drains_after_return() {
    let dir = std::env::temp_dir().join(tidemark_e2e::unique_name("chroma_outage"));
    std::fs::create_dir_all(&dir).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut chroma = OwnChroma::start(&dir, port);
    chroma.wait_up().await;

    let mut cfg = test_config("wk_outage");
    cfg.chroma.url = chroma.url();
    cfg.chroma.timeout = Duration::from_secs(2);
    cfg.worker.max_attempts = 1000; // an outage must never kill entries
    cfg.worker.backoff_base = Duration::from_millis(200);
    cfg.worker.backoff_max = Duration::from_secs(1);
    let env = Env::with_config(cfg).await;
    let w = env.worker();
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
    let batch = |from: usize, n: usize| -> Vec<NewDocument> {
        (from..from + n)
            .map(|i| NewDocument::new(format!("o{i}"), "t", format!("o{i} outage text {i}")))
            .collect()
    };
    env.store.put_many(batch(0, 100)).await.unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || async {
            count_status(&env.store, "done").await == 100
        })
        .await
    );

    chroma.kill();
    for k in 0..4 {
        env.store.put_many(batch(100 + k * 50, 50)).await.unwrap();
    }
    let retried = wait_until(Duration::from_secs(20), || async {
        let m = w.metrics();
        m.retries_total.with_label_values(&["chroma_read"]).get()
            + m.retries_total.with_label_values(&["chroma_write"]).get()
            >= 3
    })
    .await;
    assert!(retried, "entries retried while chroma is down");
    // One gauge refresh (every second) after all 200 were committed sees them all pending and
    // the oldest at least 2 s old. (A refresh during the puts, slow under load, can see an old
    // entry with only part of the 200 committed, so both are awaited together.)
    let lagging = wait_until(Duration::from_secs(15), || async {
        let m = w.metrics();
        m.outbox_lag_seconds.get() >= 2.0 && m.outbox_pending.get() == 200
    })
    .await;
    assert!(
        lagging,
        "lag gauge rose with 200 pending: lag {} pending {}",
        w.metrics().outbox_lag_seconds.get(),
        w.metrics().outbox_pending.get()
    );
    assert_eq!(
        count_status(&env.store, "done").await,
        100,
        "nothing marked done while chroma is down"
    );

    // Chroma returns (same data folder): everything drains, nothing lost, nothing dead.
    let mut back = OwnChroma::start(&dir, port);
    back.wait_up().await;
    let drained = wait_until(Duration::from_secs(60), || async {
        count_status(&env.store, "done").await == 300
    })
    .await;
    // The gauges refresh every second, or up to every 5 s when their queries are slow (a
    // loaded machine), so the wait covers two slow refreshes.
    let lag_after = wait_until(Duration::from_secs(15), || async {
        w.metrics().outbox_lag_seconds.get() == 0.0
    })
    .await;
    tx.send(()).unwrap();
    runner.await.unwrap().unwrap();
    assert!(drained, "drained after chroma returned");
    assert!(lag_after, "lag back to zero");
    assert_eq!(count_status(&env.store, "dead").await, 0);
    env.assert_consistent().await;
    back.kill();
    drop(chroma);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = env.store.database().drop().await;
}
