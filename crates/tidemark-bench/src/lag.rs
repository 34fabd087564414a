//! Measurement 4: lag from commit to done under a steady load at about half of the measured
//! drain capacity. Writers call `Store::put` on a fixed schedule (open loop, so a slow
//! worker cannot slow the offered load); the lag of each entry is `doneAt - createdAt` from
//! the outbox (`createdAt` is set just before the commit, so this slightly over-states it).

use crate::drain::{record_stages, wait_drained};
use crate::report::Report;
use crate::stats::{percentile, rate};
use crate::worker_proc::{Provider, WorkerProc};
use crate::{data, BenchError, Ctx};
use bson::doc;
use futures::TryStreamExt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tidemark_core::collection_name;
use tidemark_core::OutboxStatus;

/// Concurrent writers: enough that put latency does not cap the offered rate.
const WRITERS: usize = 32;

pub async fn run(ctx: &Ctx, report: &mut Report, capacity: f64) -> Result<(), BenchError> {
    let target = (capacity / 2.0).max(1.0);
    let secs = ctx.counts.lag_seconds;
    let total = ((target * secs) as usize).max(10);
    let store = ctx.store("lag").await?;
    let model = format!("hash-{}", ctx.counts.hash_dimension);
    ctx.chroma_collection(&collection_name(&ctx.part("lag"), &model));
    let mut worker = WorkerProc::spawn(ctx, "lag", Provider::Hash)?;
    worker.wait_ready(Duration::from_secs(60)).await?;
    // Warm-up: the first entries pay for the collection and connections; not counted.
    store.put_many(data::documents("warm", 0, 10)).await?;
    wait_drained(&store, &mut worker, 10, Duration::from_secs(60)).await?;

    let t0 = tokio::time::Instant::now();
    let writers = SteadyWriters::start(&store, "lag", target, Some(total), None);
    writers.finish().await?;
    let offered = rate(total, t0.elapsed());
    wait_drained(
        &store,
        &mut worker,
        10 + total as u64,
        Duration::from_secs(120),
    )
    .await?;
    let metrics = worker.metrics().await.unwrap_or_default();
    worker.stop(Duration::from_secs(30)).await?;

    let lags = lags_of(&store, "lag-").await?;
    if lags.len() < total {
        report.note(format!(
            "lag: only {} of {total} entries were done",
            lags.len()
        ));
    }
    let p = |q| percentile(&lags, q).unwrap_or(0.0);
    report.add(
        "lag.target_docs_per_s",
        "steady load target (half of capacity)",
        target,
        "docs/s",
    );
    report.add(
        "lag.offered_docs_per_s",
        &format!("steady load achieved ({WRITERS} writers)"),
        offered,
        "docs/s",
    );
    report.add("lag.p50_s", "commit-to-done lag p50", p(50.0), "s");
    report.add("lag.p95_s", "commit-to-done lag p95", p(95.0), "s");
    report.add_max("lag.p99_s", "commit-to-done lag p99", p(99.0), "s", 1.0);
    report.add("lag.max_s", "commit-to-done lag max", p(100.0), "s");
    if offered < 0.9 * target {
        report.note(format!(
            "lag: the writers reached {offered:.0} of the {target:.0} docs/s target (put latency with {WRITERS} writers on this machine)"
        ));
    }
    let window = lags.len() as f64 / offered.max(1.0);
    record_stages(report, "lag", &metrics, window, lags.len() as u64);
    Ok(())
}

/// Writers calling `Store::put` on a fixed schedule (open loop): document `k` (contentId
/// `<prefix>-<k>`) is due at `k / rate` seconds after the start, whatever the worker does.
pub(crate) struct SteadyWriters {
    tasks: Vec<tokio::task::JoinHandle<Result<(), BenchError>>>,
    written: Arc<AtomicUsize>,
}

impl SteadyWriters {
    /// Starts [`WRITERS`] writers; they stop after `total` documents, or when `stop` is set.
    pub fn start(
        store: &tidemark_store::Store,
        prefix: &str,
        rate: f64,
        total: Option<usize>,
        stop: Option<Arc<AtomicBool>>,
    ) -> SteadyWriters {
        let next = Arc::new(AtomicUsize::new(0));
        let written = Arc::new(AtomicUsize::new(0));
        let t0 = tokio::time::Instant::now();
        let total = total.unwrap_or(usize::MAX);
        let tasks = (0..WRITERS)
            .map(|_| {
                let (store, next, stop) = (store.clone(), next.clone(), stop.clone());
                let written = written.clone();
                let prefix = prefix.to_string();
                tokio::spawn(async move {
                    loop {
                        if stop.as_ref().is_some_and(|s| s.load(Ordering::Relaxed)) {
                            return Ok(());
                        }
                        let k = next.fetch_add(1, Ordering::Relaxed);
                        if k >= total {
                            return Ok(());
                        }
                        let due = t0 + Duration::from_secs_f64(k as f64 / rate);
                        tokio::time::sleep_until(due).await;
                        store.put(data::document(&prefix, k as u64)).await?;
                        written.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        SteadyWriters { tasks, written }
    }

    /// Waits for every writer; returns how many documents were written.
    pub async fn finish(self) -> Result<usize, BenchError> {
        for t in self.tasks {
            t.await
                .map_err(|e| BenchError::Setup(format!("writer task: {e}")))??;
        }
        Ok(self.written.load(Ordering::Relaxed))
    }
}

/// `doneAt - createdAt` in seconds of every done entry whose contentId starts with `prefix`.
pub(crate) async fn lags_of(
    store: &tidemark_store::Store,
    prefix: &str,
) -> Result<Vec<f64>, BenchError> {
    lags_where(store, prefix, doc! {}).await
}

/// [`lags_of`] the done entries that also match `filter`.
pub(crate) async fn lags_where(
    store: &tidemark_store::Store,
    prefix: &str,
    mut filter: bson::Document,
) -> Result<Vec<f64>, BenchError> {
    filter.insert("status", OutboxStatus::Done);
    let mut cur = store
        .database()
        .collection::<bson::Document>("outbox")
        .find(filter)
        .projection(doc! {"contentId": 1, "createdAt": 1, "doneAt": 1})
        .await?;
    let mut lags = Vec::new();
    while let Some(d) = cur.try_next().await? {
        if !d.get_str("contentId").unwrap_or("").starts_with(prefix) {
            continue;
        }
        if let (Ok(c), Ok(done)) = (d.get_datetime("createdAt"), d.get_datetime("doneAt")) {
            lags.push((done.timestamp_millis() - c.timestamp_millis()) as f64 / 1000.0);
        }
    }
    Ok(lags)
}
