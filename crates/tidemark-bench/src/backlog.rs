//! Bench section `backlog`: what a backlog's size costs. The same worker binary drains fresh
//! backlogs of growing size (hashing embedder; each in its own database and Chroma namespace,
//! written while no worker runs), each for at most the drain window: docs/s at each size and
//! where a document's time went (Chroma writes, and the rest: MongoDB claims, reads, marks and
//! waits), so the curve shows which stage grows with the backlog. Goal: the rate at the largest
//! size at least 0.9 of the rate at the smallest, both over the same work: the first entries
//! done, as many as the smallest backlog holds. (Over its whole window a larger backlog's
//! worker also writes a larger Chroma collection, whose upserts cost more per vector: that is
//! the index's size, not the backlog's, and the window rates are printed beside it.)

use crate::drain::{backlog_raw, drain_with_worker};
use crate::report::Report;
use crate::worker_proc::Provider;
use crate::{BenchError, Ctx};
use bson::doc;
use tidemark_core::OutboxStatus;
use tidemark_store::Store;

/// The parts of the curve's runs, smallest backlog first (`Counts::backlog_curve` sizes).
const PARTS: [&str; 3] = ["backlog1", "backlog2", "backlog3"];

/// One point of the curve.
struct Point {
    size: usize,
    rate: f64,
    /// Docs/s over the first `first_n` entries done.
    first_rate: f64,
    write_ms: f64,
    other_ms: f64,
}

pub async fn run(ctx: &Ctx, report: &mut Report) -> Result<(), BenchError> {
    let model = format!("hash-{}", ctx.counts.hash_dimension);
    let mut points = Vec::new();
    let first_n = ctx
        .counts
        .backlog_curve
        .iter()
        .copied()
        .min()
        .unwrap_or(1)
        .max(1);
    for (&size, part) in ctx.counts.backlog_curve.iter().zip(PARTS) {
        let store = ctx.store(part).await?;
        backlog_raw(&store, size).await?;
        let d = drain_with_worker(ctx, report, &store, part, Provider::Hash, size, &model).await?;
        let per_doc = |stage: &str| {
            let s: f64 = report
                .stages
                .iter()
                .filter(|s| s.section == part && s.stage.contains(stage))
                .map(|s| s.seconds)
                .sum();
            s * 1000.0 / d.done.max(1) as f64
        };
        let counted = first_n.min(d.done as usize);
        let first_rate = match nth_done_ms(&store, counted).await? {
            Some(t) => counted as f64 / ((t - d.ready_ms) as f64 / 1000.0).max(0.001),
            None => 0.0,
        };
        points.push(Point {
            size,
            rate: d.rate(),
            first_rate,
            write_ms: per_doc("vector_write_seconds"),
            other_ms: per_doc("worker other"),
        });
    }
    // Keys by position (the sizes differ between a full and a quick run), sizes in labels.
    for (k, p) in points.iter().enumerate() {
        let (key, n) = (format!("backlog.size{}", k + 1), p.size);
        report.add(
            &format!("{key}_docs_per_s"),
            &format!("drain of a {n}-entry backlog"),
            p.rate,
            "docs/s",
        );
        report.add(
            &format!("{key}_first_docs_per_s"),
            &format!("{n} entries: drain of the first {first_n}"),
            p.first_rate,
            "docs/s",
        );
        report.add(
            &format!("{key}_write_ms_per_doc"),
            &format!("{n} entries: Chroma write time per document"),
            p.write_ms,
            "ms",
        );
        report.add(
            &format!("{key}_other_ms_per_doc"),
            &format!("{n} entries: other time per document (MongoDB, waits)"),
            p.other_ms,
            "ms",
        );
    }
    if let (Some(first), Some(last)) = (points.first(), points.last()) {
        report.add(
            "backlog.largest_vs_smallest_window",
            &format!(
                "drain at {} / at {} entries, each over its window",
                last.size, first.size
            ),
            last.rate / first.rate.max(1e-9),
            "ratio",
        );
        report.add_min(
            "backlog.largest_vs_smallest",
            &format!(
                "drain of the first {first_n} at {} / at {} entries",
                last.size, first.size
            ),
            last.first_rate / first.first_rate.max(1e-9),
            "ratio",
            0.9,
        );
    }
    Ok(())
}

/// `doneAt` (ms since the epoch) of the `n`-th entry done, in order of `doneAt`.
async fn nth_done_ms(store: &Store, n: usize) -> Result<Option<i64>, BenchError> {
    if n == 0 {
        return Ok(None);
    }
    let mut cur = store
        .outbox()
        .aggregate([
            doc! {"$match": {"status": OutboxStatus::Done}},
            doc! {"$sort": {"doneAt": 1}},
            doc! {"$skip": (n - 1) as i64},
            doc! {"$limit": 1},
            doc! {"$project": {"doneAt": 1}},
        ])
        .await?;
    if !cur.advance().await? {
        return Ok(None);
    }
    let d = cur.deserialize_current()?;
    Ok(d.get_datetime("doneAt").ok().map(|t| t.timestamp_millis()))
}
