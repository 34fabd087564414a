//! Measurement: building a new index version while the application keeps writing. A corpus is
//! written and drained into the active index (`main`, hashing embedder); then a second index
//! (another dimension, so other vectors) is created and built by `tidemark index build`'s code
//! while writers put new documents at half load (a quarter of the corpus drain: a live write
//! to a document the build has passed goes to both indexes; `--index-live-rate` fixes it
//! instead, so that two runs' lags compare). Figures: the build's docs/s and the live entries'
//! commit-to-done lag during the build (goal p99 < 1 s). A live write to a document the build
//! has not reached yet (here every new document, until the build seals) is left to the build,
//! which follows the documents written while it runs; their count is reported. A live entry
//! written to both indexes whose part for the new index fails or lags hands that part to the
//! build's queue as an entry of its own, and those entries' count and commit-to-done lag (to
//! the new index) are reported beside it, without a goal.

use crate::drain::{backlog_raw, wait_drained};
use crate::lag::{lags_where, SteadyWriters};
use crate::report::Report;
use crate::stats::{percentile, rate};
use crate::worker_proc::{histogram_totals, sample, Provider, WorkerProc};
use crate::{BenchError, Ctx};
use bson::doc;
use futures::TryStreamExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tidemark_core::config::EmbedderKind;
use tidemark_core::{collection_name, OutboxStatus};
use tidemark_ops::backfill::BackfillOptions;
use tidemark_ops::NoProgress;
use tidemark_store::Store;

/// The new index's name and dimension (its hashing embedder differs from `main`'s).
pub const NEW_INDEX: &str = "v2";
pub const NEW_DIMENSION: usize = 256;
/// The build yields while live entries have been due longer than this (`index build`'s default).
pub const BUILD_MAX_LAG: Duration = Duration::from_millis(500);

pub async fn run(ctx: &Ctx, report: &mut Report) -> Result<(), BenchError> {
    let n = ctx.counts.index_docs;
    let store = ctx.store(PART).await?;
    let (mut worker, capacity) = drain_corpus(ctx, report, &store, n).await?;

    let cfg = new_index_config(ctx);
    let def = tidemark_ops::indexes::create(&store, &cfg, NEW_INDEX)
        .await
        .map_err(|e| BenchError::Setup(format!("index create: {e}")))?;
    ctx.chroma_collection(&def.collection);

    // A live write may go to both indexes during the build (once the build has passed its
    // document), so the worker's capacity is taken as half of the corpus drain; half load is
    // half of that.
    let target = ctx
        .counts
        .index_live_rate
        .unwrap_or((capacity / 4.0).max(1.0));
    let before = worker.metrics().await?;
    let stop = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let writers = SteadyWriters::start(&store, "live", target, None, Some(stop.clone()));
    // The build's throttle as `tidemark index build` sets it by default: it yields while live
    // entries have been due over half a second, and enqueues half a worker batch at a time
    // while at most half a batch of its own entries is pending (`build_pending_default`).
    let half = tidemark_ops::indexes::build_batch_default(ctx.counts.batch_size);
    let pending = tidemark_ops::indexes::build_pending_default(ctx.counts.batch_size);
    let opts = BackfillOptions {
        batch_size: half,
        max_pending: Some(pending),
        max_lag: Some(BUILD_MAX_LAG),
        ..BackfillOptions::default()
    };
    let limit = Duration::from_secs_f64(ctx.counts.index_max_seconds);
    let build = async {
        let r = tidemark_ops::indexes::build(&store, &cfg, NEW_INDEX, opts, &NoProgress)
            .await
            .map_err(|e| BenchError::Setup(format!("index build: {e}")))?;
        wait_none_pending(&store, "b-").await?;
        Ok::<_, BenchError>(r)
    };
    let built = tokio::time::timeout(limit, build).await;
    stop.store(true, Ordering::Relaxed);
    let live = writers.finish().await?;
    let offered = rate(live, t0.elapsed());
    let complete = match built {
        Ok(r) => {
            r?;
            true
        }
        Err(_) => {
            report.note(format!(
                "index: the build did not finish within {limit:?}; its rate is over what was done"
            ));
            false
        }
    };
    let after = worker.metrics().await?;
    wait_drained(&store, &mut worker, 0, Duration::from_secs(300)).await?;
    worker.stop(Duration::from_secs(30)).await?;
    report_stages(report, &before, &after);

    let (count, window_s) = build_window(&store, def.created_at.timestamp_millis()).await?;
    report.add(
        "index.build_docs_per_s",
        &format!("build of a new index ({n} documents) under half load"),
        count as f64 / window_s.max(0.001),
        "docs/s",
    );
    report.add(
        "index.live_docs_per_s",
        match ctx.counts.index_live_rate {
            Some(_) => "writes during the build (a fixed rate, --index-live-rate)",
            None => "writes during the build (a quarter of the corpus drain)",
        },
        offered,
        "docs/s",
    );
    let active = lags_where(&store, "live-", doc! {"indexes": {"$exists": false}}).await?;
    let handed = lags_where(&store, "live-", doc! {"handoffOf": {"$exists": true}}).await?;
    report_live_lag(report, &active, &handed);
    if complete {
        check_new_index(ctx, report, &def.collection, n + live).await;
    }
    Ok(())
}

/// The database / namespace part of this section.
const PART: &str = "index";

/// Writes the corpus and drains it into `main` with a worker that stays running; returns the
/// worker and its drain rate (the capacity the live load is measured against).
async fn drain_corpus(
    ctx: &Ctx,
    report: &mut Report,
    store: &Store,
    n: usize,
) -> Result<(WorkerProc, f64), BenchError> {
    let model = format!("hash-{}", ctx.counts.hash_dimension);
    ctx.chroma_collection(&collection_name(&ctx.part(PART), &model));
    backlog_raw(store, n).await?;
    let mut worker = WorkerProc::spawn(ctx, PART, Provider::Hash)?;
    let ready = worker.wait_ready(Duration::from_secs(120)).await?;
    let timeout = Duration::from_secs(120 + n as u64 / 20);
    let mut corpus = wait_drained(store, &mut worker, n as u64, timeout).await?;
    corpus.ready_ms = worker.spawned_at_ms + ready.as_millis() as i64;
    report.add(
        "index.corpus_docs_per_s",
        &format!("drain of the {n}-document corpus into main"),
        corpus.rate(),
        "docs/s",
    );
    Ok((worker, corpus.rate()))
}

/// The live entries' commit-to-done percentiles (done: in the active index), and how long
/// their handed-on part took to reach the new index.
fn report_live_lag(report: &mut Report, lags: &[f64], handed: &[f64]) {
    let p = |q| percentile(lags, q).unwrap_or(0.0);
    report.add(
        "index.live_p50_s",
        "live commit-to-done lag p50",
        p(50.0),
        "s",
    );
    report.add_max(
        "index.live_p99_s",
        "live commit-to-done lag p99 during the build",
        p(99.0),
        "s",
        1.0,
    );
    report.add(
        "index.live_max_s",
        "live commit-to-done lag max",
        p(100.0),
        "s",
    );
    report.add(
        "index.handed_on",
        "live writes handed on to the new index's queue",
        handed.len() as f64,
        "entries",
    );
    report.add(
        "index.handed_p99_s",
        "live writes' commit to the new index, p99 (with the build's upserts)",
        percentile(handed, 99.0).unwrap_or(0.0),
        "s",
    );
}

/// Where the time went during the build, from the worker's histograms (the difference of two
/// scrapes): the live entries' mean wait from commit to claim, and the mean Chroma upsert (of
/// either index, live or build entries).
fn report_stages(report: &mut Report, before: &str, after: &str) {
    let (b, a) = (histogram_totals(before), histogram_totals(after));
    let mean = |key: &str| {
        let (s0, c0) = b.get(key).copied().unwrap_or_default();
        let (s1, c1) = a.get(key).copied().unwrap_or_default();
        (s1 - s0) / (c1.saturating_sub(c0)).max(1) as f64
    };
    report.add(
        "index.live_queue_s",
        "live entries' mean wait from commit to claim",
        mean("tidemark_queue_seconds{kind=\"live\"}"),
        "s",
    );
    report.add(
        "index.upsert_ms",
        "mean Chroma upsert during the build (either index)",
        mean("tidemark_vector_write_seconds{op=\"upsert\"}") * 1000.0,
        "ms",
    );
    let left = format!("tidemark_left_to_build_total{{index=\"{NEW_INDEX}\"}}");
    report.add(
        "index.left_to_build",
        "live writes left to the build (their document not read by it yet)",
        sample(after, &left) - sample(before, &left),
        "entries",
    );
}

/// The configuration of the new index: the run's, on this part's database and namespace,
/// with a hashing embedder of another dimension.
fn new_index_config(ctx: &Ctx) -> tidemark_core::Config {
    let mut cfg = ctx.cfg.clone();
    cfg.mongodb.database = ctx.part(PART);
    cfg.chroma.namespace = ctx.part(PART);
    cfg.embedder.provider = EmbedderKind::Hash;
    cfg.embedder.dimension = NEW_DIMENSION;
    cfg
}

/// Waits until no entry of a document whose contentId starts with `prefix` is pending (the
/// caller bounds the wait).
async fn wait_none_pending(store: &Store, prefix: &str) -> Result<(), BenchError> {
    // contentIds from `<prefix>` up to (not including) the prefix with its last byte + 1.
    let mut end = prefix.as_bytes().to_vec();
    if let Some(b) = end.last_mut() {
        *b += 1;
    }
    let end = String::from_utf8_lossy(&end).into_owned();
    let filter = doc! {"status": OutboxStatus::Pending, "contentId": {"$gte": prefix, "$lt": end}};
    loop {
        if store.outbox().count_documents(filter.clone()).await? == 0 {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Entries of the corpus (`b-*`) enqueued by the build: how many, and the seconds from the
/// first one's creation to the last one's `doneAt`.
async fn build_window(store: &Store, created_ms: i64) -> Result<(u64, f64), BenchError> {
    let since = bson::DateTime::from_millis(created_ms);
    let mut cur = store
        .database()
        .collection::<bson::Document>("outbox")
        .find(doc! {"status": OutboxStatus::Done, "createdAt": {"$gte": since}})
        .projection(doc! {"contentId": 1, "createdAt": 1, "doneAt": 1})
        .await?;
    let (mut count, mut first, mut last) = (0u64, i64::MAX, 0i64);
    while let Some(d) = cur.try_next().await? {
        if !d.get_str("contentId").unwrap_or("").starts_with("b-") {
            continue;
        }
        if let (Ok(c), Ok(done)) = (d.get_datetime("createdAt"), d.get_datetime("doneAt")) {
            count += 1;
            first = first.min(c.timestamp_millis());
            last = last.max(done.timestamp_millis());
        }
    }
    Ok((count, (last - first).max(0) as f64 / 1000.0))
}

/// Notes when the new index does not hold every document (corpus and live writes).
async fn check_new_index(ctx: &Ctx, report: &mut Report, coll: &str, want: usize) {
    let got = match ctx.chroma.get_collection(coll).await {
        Ok(Some(c)) => ctx.chroma.count(&c.id).await.unwrap_or(0),
        _ => 0,
    };
    if got != want as u64 {
        report.note(format!(
            "index: the new index holds {got} vectors, {want} documents were written"
        ));
    }
}
