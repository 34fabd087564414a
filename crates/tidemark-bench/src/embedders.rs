//! The embedders the benchmark runs alone, in process: the hashing embedder and the local model,
//! and the local model's forward passes formed by length against in the order given.

use crate::report::Report;
use crate::{data, BenchError, Ctx};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tidemark_embed::local::{LocalEmbedder, PassOrder};
use tidemark_embed::SharedEmbedder;

/// The hashing embedder of `dimension` (the same vectors the worker computes).
pub fn hash(dimension: usize) -> Result<SharedEmbedder, BenchError> {
    Ok(Arc::new(tidemark_embed::hash::HashEmbedder::new(dimension)))
}

/// all-MiniLM-L6-v2 from `dir`.
pub fn local(dir: &Path) -> Result<SharedEmbedder, BenchError> {
    Ok(Arc::new(tidemark_embed::local::LocalEmbedder::load(dir)?))
}

/// Rounds of each pass order in [`pass_order`].
const ROUNDS: usize = 2;

/// Mixed texts (a short one, then one five times as long, in turn) embedded by the local model
/// in calls of one worker batch (several forward passes each, as the worker makes them),
/// passes formed by length and in the order given, interleaved over two rounds so both see
/// the same machine. Figures: docs/s of each and the gain of sorting.
pub async fn pass_order(ctx: &Ctx, report: &mut Report) -> Result<(), BenchError> {
    let n = ctx.counts.local_backlog.min(128);
    let texts: Vec<String> = (0..n as u64)
        .map(|i| {
            if i % 2 == 0 {
                data::text(i)
            } else {
                (i..i + 5).map(data::text).collect::<Vec<_>>().join(" ")
            }
        })
        .collect();
    let dir = ctx.cfg.embedder.model_dir.clone();
    let batch = ctx.counts.batch_size.max(1);
    let (sorted, given) = tokio::task::spawn_blocking(move || {
        let model = LocalEmbedder::load(&dir)?;
        let (mut sorted, mut given) = (Duration::ZERO, Duration::ZERO);
        for _ in 0..ROUNDS {
            for (order, total) in [
                (PassOrder::ByLength, &mut sorted),
                (PassOrder::AsGiven, &mut given),
            ] {
                let t = Instant::now();
                for chunk in texts.chunks(batch) {
                    model.embed_in(chunk, order)?;
                }
                *total += t.elapsed();
            }
        }
        Ok::<_, BenchError>((sorted, given))
    })
    .await
    .map_err(|e| BenchError::Setup(format!("embedding panicked: {e}")))??;
    let rate = |d: Duration| (ROUNDS * n) as f64 / d.as_secs_f64().max(1e-9);
    report.add(
        "local.mixed_by_length_docs_per_s",
        &format!("model alone, {n} mixed-length texts, passes by length"),
        rate(sorted),
        "docs/s",
    );
    report.add(
        "local.mixed_as_given_docs_per_s",
        "model alone, same texts, passes in the order given",
        rate(given),
        "docs/s",
    );
    report.add(
        "local.sorting_gain",
        "passes by length / in the order given",
        rate(sorted) / rate(given),
        "ratio",
    );
    Ok(())
}
