//! Measurements 5 and 6: the worker's peak resident memory while it drains a large backlog,
//! and its catch-up after a restart. The worker first runs on the empty database (it creates
//! its collection and saves a resume token) and is stopped with SIGTERM; the backlog is
//! written while it is down (`put_many`, batches of 1000); then it is started again.

use crate::drain::{backlog_raw, done_stats, record_stages, wait_drained, wait_drained_within};
use crate::report::Report;
use crate::stats::rate;
use crate::worker_proc::{Provider, WorkerProc};
use crate::{data, BenchError, Ctx};
use std::time::{Duration, Instant};
use tidemark_core::collection_name;

pub async fn run(ctx: &Ctx, report: &mut Report) -> Result<(), BenchError> {
    let n = ctx.counts.memory_backlog;
    let store = ctx.store("memory").await?;
    let model = format!("hash-{}", ctx.counts.hash_dimension);
    ctx.chroma_collection(&collection_name(&ctx.part("memory"), &model));

    // First life: a few documents, then a graceful stop.
    let mut first = WorkerProc::spawn(ctx, "memory", Provider::Hash)?;
    first.wait_ready(Duration::from_secs(60)).await?;
    store.put_many(data::documents("warm", 0, 10)).await?;
    wait_drained(&store, &mut first, 10, Duration::from_secs(60)).await?;
    let stop = first.stop(Duration::from_secs(30)).await?;

    // The backlog, written while no worker runs.
    let start = Instant::now();
    backlog_raw(&store, n).await?;
    let t_backlog = start.elapsed();

    // Second life.
    let mut worker = WorkerProc::spawn(ctx, "memory", Provider::Hash)?;
    let spawned_at_ms = worker.spawned_at_ms;
    let ready = worker.wait_ready(Duration::from_secs(120)).await?;
    let window = Duration::from_secs_f64(ctx.counts.drain_max_seconds);
    let drained = wait_drained_within(
        &store,
        &mut worker,
        n as u64,
        Duration::from_secs(120 + n as u64 / 20).max(window),
        Some(window),
    )
    .await?;
    let mut d = done_stats(&store, spawned_at_ms).await?;
    d.ready_ms = spawned_at_ms + ready.as_millis() as i64;
    let peak_kib = worker.peak_rss_kib().unwrap_or(0);
    let metrics = worker.metrics().await.unwrap_or_default();
    worker.stop(Duration::from_secs(30)).await?;

    let peak_mib = peak_kib as f64 / 1024.0;
    report.add(
        "memory.backlog_put_many_docs_per_s",
        &format!("backlog of {n} written (insert_many 1000, contract shapes)"),
        rate(n, t_backlog),
        "docs/s",
    );
    report.add_max(
        "memory.peak_rss_mib",
        &format!("worker peak RSS, {n} backlog (VmHWM)"),
        peak_mib,
        "MiB",
        64.0,
    );
    report.add(
        "memory.drain_docs_per_s",
        &format!("worker drain, {n} backlog"),
        d.rate(),
        "docs/s",
    );
    report.add(
        "catchup.stop_s",
        "graceful stop (SIGTERM to exit)",
        stop.as_secs_f64(),
        "s",
    );
    report.add(
        "catchup.ready_s",
        "restart to ready (/readyz)",
        ready.as_secs_f64(),
        "s",
    );
    let first_done_s = if d.done > 0 {
        (d.first_ms - spawned_at_ms) as f64 / 1000.0
    } else {
        report.note(format!(
            "catchup: no entry was done within the {:.0} s window; the figure is that window (a lower bound)",
            ctx.counts.drain_max_seconds
        ));
        ctx.counts.drain_max_seconds
    };
    report.add(
        "catchup.first_done_s",
        &format!("restart to first entry done, {n} backlog"),
        first_done_s,
        "s",
    );
    record_stages(report, "memory", &metrics, d.window_s(), d.done);
    if !drained.complete {
        report.note(format!(
            "memory: peak RSS over a {:.0} s window in which the worker finished {} of the {n} backlog entries",
            ctx.counts.drain_max_seconds, d.done
        ));
    }
    Ok(())
}
