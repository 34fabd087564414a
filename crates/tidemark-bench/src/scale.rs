//! Measurement: scale-out. The same backlog (hashing embedder) drained by 1, 2 and 4 worker
//! processes sharing one database and collection: docs/s, claim conflicts (due entries a claim
//! skipped because another worker held their document, `tidemark_claim_blocked_total`) and
//! the Chroma write time per document, so the bench shows what more workers buy on this
//! machine and what they cost each other.

use crate::drain::{backlog_raw, done_stats};
use crate::report::Report;
use crate::worker_proc::{histogram_totals, sample, Provider, WorkerProc};
use crate::{BenchError, Ctx};
use bson::doc;
use std::time::{Duration, Instant};
use tidemark_core::{collection_name, OutboxStatus};

/// Worker processes per run, and the part each run works in.
const RUNS: [(usize, &str); 3] = [(1, "scale1"), (2, "scale2"), (4, "scale4")];

pub async fn run(ctx: &Ctx, report: &mut Report) -> Result<(), BenchError> {
    let n = ctx.counts.scale_backlog;
    let model = format!("hash-{}", ctx.counts.hash_dimension);
    let mut rates = Vec::new();
    for (k, part) in RUNS {
        let store = ctx.store(part).await?;
        ctx.chroma_collection(&collection_name(&ctx.part(part), &model));
        backlog_raw(&store, n).await?;
        let mut workers = (0..k)
            .map(|_| WorkerProc::spawn(ctx, part, Provider::Hash))
            .collect::<Result<Vec<_>, _>>()?;
        let mut ready_ms = 0;
        for w in &mut workers {
            let r = w.wait_ready(Duration::from_secs(120)).await?;
            ready_ms = ready_ms.max(w.spawned_at_ms + r.as_millis() as i64);
        }
        let window = Duration::from_secs_f64(ctx.counts.drain_max_seconds);
        let started = Instant::now();
        let pending = doc! {"status": OutboxStatus::Pending};
        while store.outbox().count_documents(pending.clone()).await? > 0 {
            for w in &mut workers {
                w.check_alive()?;
            }
            if started.elapsed() > window {
                report.note(format!(
                    "scale: {k} workers did not drain {n} entries within {window:?}; the rate is over what was done"
                ));
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let (mut blocked, mut write_s) = (0.0, 0.0);
        for w in &workers {
            let m = w.metrics().await.unwrap_or_default();
            blocked += sample(&m, "tidemark_claim_blocked_total");
            write_s += histogram_totals(&m)
                .iter()
                .filter(|(name, _)| name.starts_with("tidemark_vector_write_seconds"))
                .map(|(_, (sum, _))| sum)
                .sum::<f64>();
        }
        for w in workers {
            w.stop(Duration::from_secs(30)).await?;
        }
        let mut d = done_stats(&store, 0).await?;
        d.ready_ms = ready_ms;
        let done = d.done.max(1) as f64;
        rates.push(d.rate());
        let key = |f: &str| format!("scale.workers{k}_{f}");
        let label = |f: &str| {
            format!(
                "{k} worker{} ({n} backlog): {f}",
                if k > 1 { "s" } else { "" }
            )
        };
        report.add(&key("docs_per_s"), &label("drain"), d.rate(), "docs/s");
        report.add(
            &key("blocked_per_1000"),
            &label("claim conflicts per 1000 docs"),
            blocked * 1000.0 / done,
            "entries",
        );
        report.add(
            &key("write_ms_per_doc"),
            &label("Chroma write time per doc"),
            write_s * 1000.0 / done,
            "ms",
        );
    }
    if let (Some(one), Some(four)) = (rates.first(), rates.last()) {
        report.add(
            "scale.four_vs_one",
            "4 workers / 1 worker",
            four / one.max(0.001),
            "ratio",
        );
    }
    Ok(())
}
