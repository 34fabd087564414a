//! Measurement: long documents, chunked. A backlog of documents of about 2,000 tokens each is
//! drained by the worker with the local model and `chunking.mode = "tokens"` (chunks of the
//! model's 256 tokens): documents/s and chunks/s, against the embedder alone on the same chunk
//! texts (goal >= 0.9). Then the worker's peak resident memory over a backlog of 20,000 such
//! documents with the hashing embedder (goal < 96 MiB): a batch of long documents is embedded
//! and written in groups bounded by bytes and count, so memory does not follow their length.

use crate::drain::{backlog_raw_of, done_stats, drain_with, wait_drained_within, DrainWorker};
use crate::report::Report;
use crate::worker_proc::{Provider, WorkerProc};
use crate::{data, embedders, BenchError, Ctx};
use std::time::{Duration, Instant};
use tidemark_core::chunk::{self, TokenCounter};
use tidemark_core::chunking::{ChunkMode, ChunkingConfig};
use tidemark_core::collection_name;
use tidemark_embed::Embedder;
use tidemark_store::NewDocument;

const MODEL: &str = "all-MiniLM-L6-v2";
/// Paragraphs of a long document (each about 40 words: about 2,000 tokens in all).
const PARAGRAPHS: u64 = 36;
/// Documents whose chunks the embedder embeds alone (enough for a steady rate).
const ALONE_DOCS: usize = 24;

/// Long document `i`: `PARAGRAPHS` paragraphs of the benchmark's vocabulary.
pub fn long_text(i: u64) -> String {
    (0..PARAGRAPHS)
        .map(|k| data::text(i * PARAGRAPHS + k))
        .collect::<Vec<_>>()
        .join("\n\n")
}

fn long_document(i: u64) -> NewDocument {
    NewDocument::new(format!("long-{i}"), "manual", long_text(i))
}

/// The worker's settings for token chunking at the model's maximum.
const CHUNKED: &[(&str, &str)] = &[("TIDEMARK_CHUNKING_MODE", "tokens")];
/// The same with batches of 4 documents (32 chunks) for the local model: a batch of 64 long
/// documents is 512 chunks, over a minute of embedding on two cores, longer than the window.
const CHUNKED_SMALL_BATCHES: &[(&str, &str)] = &[
    ("TIDEMARK_CHUNKING_MODE", "tokens"),
    ("TIDEMARK_WORKER_BATCH_SIZE", "4"),
];

/// Runs the section.
pub async fn run(ctx: &Ctx, report: &mut Report) -> Result<(), BenchError> {
    throughput(ctx, report).await?;
    memory(ctx, report).await
}

async fn throughput(ctx: &Ctx, report: &mut Report) -> Result<(), BenchError> {
    let n = ctx.counts.long_docs;
    let store = ctx.store("long").await?;
    backlog_raw_of(&store, n, &long_document).await?;
    let ecfg = ctx.cfg.embedder.clone();
    let embedder = tokio::task::spawn_blocking(move || embedders::local(&ecfg))
        .await
        .map_err(|e| BenchError::Setup(format!("model loading panicked: {e}")))??;
    // The worker's chunks, made the same way: model maximum, default overlap and template.
    let mut chunking = ChunkingConfig {
        mode: ChunkMode::Tokens,
        ..ChunkingConfig::default()
    };
    chunking.max_tokens = 0;
    let mut ecfg = ctx.cfg.embedder.clone();
    ecfg.provider = tidemark_core::config::EmbedderKind::Local;
    let spec = chunking
        .resolve(&ecfg)
        .map_err(|e| BenchError::Setup(e.to_string()))?
        .and_then(|t| t.chunks)
        .ok_or_else(|| BenchError::Setup("token chunking did not resolve".into()))?;
    let counter = Counter(embedder.as_ref());
    let chunks_of = |i: u64| chunk::split(&long_text(i), &spec, &counter);
    let sample: Vec<String> = (0..ALONE_DOCS.min(n) as u64)
        .flat_map(|i| chunks_of(i).into_iter().map(|c| c.text))
        .collect();
    let per_doc = sample.len() as f64 / ALONE_DOCS.min(n).max(1) as f64;
    let start = Instant::now();
    for part in sample.chunks(ctx.cfg.embedder.batch_size.max(1)) {
        embedder.embed(part).await?;
    }
    let alone = sample.len() as f64 / start.elapsed().as_secs_f64();
    drop(embedder);

    let w = DrainWorker {
        part: "long",
        provider: Provider::Local,
        model: MODEL,
        env: CHUNKED_SMALL_BATCHES,
    };
    let d = drain_with(ctx, report, &store, &w, n).await?.rate();
    let (docs_s, chunks_s) = (d, d * per_doc);
    report.add(
        "long.worker_docs_per_s",
        &format!("worker drain, {n} docs of ~2,000 tokens, local model"),
        docs_s,
        "docs/s",
    );
    report.add(
        "long.worker_chunks_per_s",
        &format!("chunks/s ({per_doc:.1} chunks of 256 tokens per doc)"),
        chunks_s,
        "chunks/s",
    );
    report.add(
        "long.embed_alone_chunks_per_s",
        "all-MiniLM-L6-v2 alone, same chunk texts",
        alone,
        "chunks/s",
    );
    report.add_min(
        "long.efficiency",
        "worker chunks/s / embedder alone",
        chunks_s / alone,
        "ratio",
        0.9,
    );
    Ok(())
}

async fn memory(ctx: &Ctx, report: &mut Report) -> Result<(), BenchError> {
    let n = ctx.counts.long_memory_backlog;
    let store = ctx.store("longmem").await?;
    backlog_raw_of(&store, n, &long_document).await?;
    let model = format!("hash-{}", ctx.counts.hash_dimension);
    ctx.chroma_collection(&collection_name(&ctx.part("longmem"), &model));
    let mut worker = WorkerProc::spawn_with(ctx, "longmem", Provider::Hash, CHUNKED)?;
    let spawned_at_ms = worker.spawned_at_ms;
    worker.wait_ready(Duration::from_secs(120)).await?;
    let window = Duration::from_secs_f64(ctx.counts.drain_max_seconds);
    let drained = wait_drained_within(
        &store,
        &mut worker,
        n as u64,
        window + Duration::from_secs(120),
        Some(window),
    )
    .await?;
    let done = done_stats(&store, spawned_at_ms).await?.done;
    let peak_mib = worker.peak_rss_kib().unwrap_or(0) as f64 / 1024.0;
    worker.stop(Duration::from_secs(30)).await?;
    report.add_max(
        "long.peak_rss_mib",
        &format!("worker peak RSS, {n} long-document backlog, chunked (VmHWM)"),
        peak_mib,
        "MiB",
        96.0,
    );
    if !drained.complete {
        report.note(format!(
            "long: peak RSS over a {:.0} s window in which the worker finished {done} of the {n} long documents",
            ctx.counts.drain_max_seconds
        ));
    }
    Ok(())
}

/// The local model's own token count, as the worker chunks with it.
struct Counter<'a>(&'a dyn Embedder);

impl TokenCounter for Counter<'_> {
    fn count(&self, text: &str) -> usize {
        self.0.count_tokens(text)
    }
}
