//! Measurements 2 and 3: draining a backlog. The worker (a separate process) against each
//! stage alone on the same texts at the same batch size — the embedder, and Chroma's own
//! upsert of the same vectors — and, with the hashing embedder, against the old dual write
//! (per document: a Chroma add, then a MongoDB insert).

use crate::report::Report;
use crate::stats::rate;
use crate::worker_proc::{histogram_totals, processed_total, Provider, WorkerProc};
use crate::{data, embedders, write, BenchError, Ctx};
use bson::{doc, DateTime};
use std::time::{Duration, Instant};
use tidemark_chroma::{Metadata, VectorRecord};
use tidemark_core::{collection_name, vector_id, OutboxStatus};
use tidemark_embed::{Embedder, SharedEmbedder};
use tidemark_store::{NewDocument, PutOutcome, Store};

/// Writes `n` documents (prefix `b`) and their pending outbox entries straight in the contract
/// shapes, with `insert_many` in chunks of 1000 (as a writer in another language may). This
/// builds a large backlog fast on the test server, where `put_many`'s version lookup (`$in`
/// over the contentIds) is answered by a collection scan and grows with the collection.
pub async fn backlog_raw(
    store: &Store,
    n: usize,
) -> Result<Vec<(NewDocument, PutOutcome)>, BenchError> {
    backlog_raw_of(store, n, &|i| data::document("b", i)).await
}

/// Like [`backlog_raw`], with document `i` made by `make`.
pub async fn backlog_raw_of(
    store: &Store,
    n: usize,
    make: &(dyn Fn(u64) -> NewDocument + Sync),
) -> Result<Vec<(NewDocument, PutOutcome)>, BenchError> {
    let mut out = Vec::with_capacity(n);
    let mut start = 0;
    while start < n {
        let k = (n - start).min(1000);
        let docs: Vec<NewDocument> = (start as u64..(start + k) as u64).map(make).collect();
        let mut records = Vec::with_capacity(k);
        let mut entries = Vec::with_capacity(k);
        for d in &docs {
            let (r, e) = write::records(d)?;
            out.push((
                d.clone(),
                PutOutcome {
                    document_id: r.id,
                    content_id: r.content_id.clone(),
                    version: r.version,
                    outbox_id: e.id,
                    content_hash: r.content_hash.clone(),
                },
            ));
            records.push(r);
            entries.push(e);
        }
        store.documents().insert_many(records).await?;
        store.outbox().insert_many(entries).await?;
        start += k;
    }
    Ok(out)
}

/// What the outbox says about a finished drain.
#[derive(Debug, Clone, Copy)]
pub struct Drained {
    pub done: u64,
    pub dead: u64,
    /// `doneAt` of the first and last entry done, ms since the epoch.
    pub first_ms: i64,
    pub last_ms: i64,
    /// When the worker answered `/readyz`, ms since the epoch (set by the caller; 0 unknown).
    pub ready_ms: i64,
    /// False when the measurement window closed before the backlog was drained.
    pub complete: bool,
}

impl Drained {
    /// Seconds from the worker being ready (or the first entry done) to the last entry done.
    pub fn window_s(&self) -> f64 {
        let from = if self.ready_ms > 0 {
            self.ready_ms
        } else {
            self.first_ms
        };
        ((self.last_ms - from) as f64 / 1000.0).max(0.001)
    }

    /// Documents per second over `window_s` (excludes the process start-up).
    pub fn rate(&self) -> f64 {
        self.done as f64 / self.window_s()
    }
}

/// Waits until the worker has finished `expected` entries (its own counter, which costs the
/// database nothing: the test server answers these queries by scanning the collection) and
/// no entry is pending any more, then reads the done times.
pub async fn wait_drained(
    store: &Store,
    worker: &mut WorkerProc,
    expected: u64,
    timeout: Duration,
) -> Result<Drained, BenchError> {
    wait_drained_within(store, worker, expected, timeout, None).await
}

/// Like `wait_drained`, but stops waiting after `window` (measured from now) and then reports
/// what was done so far (`complete: false`), so that a slow worker cannot stretch the run.
pub async fn wait_drained_within(
    store: &Store,
    worker: &mut WorkerProc,
    expected: u64,
    timeout: Duration,
    window: Option<Duration>,
) -> Result<Drained, BenchError> {
    let deadline = Instant::now() + timeout;
    let window_end = window.map(|w| Instant::now() + w);
    loop {
        worker.check_alive()?;
        let processed = match worker.metrics().await {
            Ok(m) => processed_total(&m),
            Err(_) => expected,
        };
        if processed >= expected {
            let pending = store
                .outbox()
                .count_documents(doc! {"status": OutboxStatus::Pending})
                .await?;
            if pending == 0 {
                break;
            }
        }
        if window_end.is_some_and(|end| Instant::now() > end) {
            let mut d = done_stats(store, 0).await?;
            d.complete = false;
            return Ok(d);
        }
        if Instant::now() > deadline {
            return Err(BenchError::Worker(format!(
                "{processed} of {expected} entries processed after {timeout:?}; log {}",
                worker.log.display()
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    done_stats(store, 0).await
}

/// Counts and first/last `doneAt` of the outbox entries done at or after `since_ms`.
pub async fn done_stats(store: &Store, since_ms: i64) -> Result<Drained, BenchError> {
    let raw = store.database().collection::<bson::Document>("outbox");
    let since = DateTime::from_millis(since_ms);
    let mut cur = raw
        .aggregate([
            doc! {"$match": {"status": OutboxStatus::Done, "doneAt": {"$gte": since}}},
            doc! {"$group": {"_id": null, "n": {"$sum": 1}, "first": {"$min": "$doneAt"}, "last": {"$max": "$doneAt"}}},
        ])
        .await?;
    let mut d = Drained {
        done: 0,
        dead: 0,
        first_ms: 0,
        last_ms: 0,
        ready_ms: 0,
        complete: true,
    };
    if cur.advance().await? {
        let g = cur.deserialize_current()?;
        d.done = g
            .get_i32("n")
            .map(i64::from)
            .or(g.get_i64("n"))
            .unwrap_or(0) as u64;
        let first = g.get_datetime("first").copied().unwrap_or(DateTime::MIN);
        d.first_ms = first.timestamp_millis();
        d.last_ms = g
            .get_datetime("last")
            .map(|t| t.timestamp_millis())
            .unwrap_or(0);
    }
    d.dead = raw
        .count_documents(doc! {"status": OutboxStatus::Dead})
        .await?;
    Ok(d)
}

/// Generous time limit for draining `n` entries.
fn drain_timeout(n: usize) -> Duration {
    Duration::from_secs(120 + n as u64 / 20)
}

/// Starts a worker on the backlog of `part`, waits until drained, records its stage times.
pub(crate) async fn drain_with_worker(
    ctx: &Ctx,
    report: &mut Report,
    store: &Store,
    part: &str,
    provider: Provider,
    n: usize,
    model: &str,
) -> Result<Drained, BenchError> {
    let w = DrainWorker {
        part,
        provider,
        model,
        env: &[],
    };
    drain_with(ctx, report, store, &w, n).await
}

/// Which worker drains a part: its embedder, its model's collection, extra settings.
pub(crate) struct DrainWorker<'a> {
    pub part: &'a str,
    pub provider: Provider,
    pub model: &'a str,
    /// More `TIDEMARK_*` settings for the worker process.
    pub env: &'a [(&'a str, &'a str)],
}

/// Like [`drain_with_worker`], for a worker with extra settings.
pub(crate) async fn drain_with(
    ctx: &Ctx,
    report: &mut Report,
    store: &Store,
    w: &DrainWorker<'_>,
    n: usize,
) -> Result<Drained, BenchError> {
    let (part, model) = (w.part, w.model);
    ctx.chroma_collection(&collection_name(&ctx.part(part), model));
    let mut worker = WorkerProc::spawn_with(ctx, part, w.provider, w.env)?;
    let ready = worker.wait_ready(Duration::from_secs(120)).await?;
    let window = Duration::from_secs_f64(ctx.counts.drain_max_seconds);
    let mut d = wait_drained_within(
        store,
        &mut worker,
        n as u64,
        drain_timeout(n).max(window),
        Some(window),
    )
    .await?;
    d.ready_ms = worker.spawned_at_ms + ready.as_millis() as i64;
    let metrics = worker.metrics().await.unwrap_or_default();
    let spawned_at_ms = worker.spawned_at_ms;
    worker.stop(Duration::from_secs(30)).await?;
    if !d.complete {
        report.note(format!(
            "{part}: the worker finished {} of {n} entries within the {:.0} s window; its rate is over that window",
            d.done, ctx.counts.drain_max_seconds
        ));
    }
    if d.dead > 0 {
        report.note(format!("{part}: {} entries ended dead", d.dead));
    }
    report.stage(
        part,
        "worker start-up to ready",
        (d.ready_ms - spawned_at_ms) as f64 / 1000.0,
        1,
    );
    record_stages(report, part, &metrics, d.window_s(), d.done);
    Ok(d)
}

/// The worker's `*_seconds` histograms that time an entry's wait (commit to done, commit to
/// claim), not work: they are no stage of its busy time.
const LATENCIES: [&str; 2] = ["tidemark_end_to_end_seconds", "tidemark_queue_seconds"];

/// Adds the worker's time per stage (its `*_seconds` histograms) and the rest of its busy time.
pub fn record_stages(report: &mut Report, section: &str, metrics: &str, window_s: f64, done: u64) {
    let mut staged = 0.0;
    for (name, (sum, count)) in histogram_totals(metrics) {
        if LATENCIES.iter().any(|l| name.starts_with(l)) {
            continue;
        }
        staged += sum;
        report.stage(section, &format!("worker {name}"), sum, count);
    }
    report.stage(
        section,
        "worker drain window (ready to last done)",
        window_s,
        done,
    );
    if staged >= window_s {
        // Batches in flight overlap: the stage sums exceed the wall-clock window, and the time
        // spent outside embedding and vector writes cannot be told apart from it.
        report.note(format!(
            "{section}: the worker's embed and vector-write times add up to {staged:.1} s in a \
             {window_s:.1} s window (batches in flight overlap); no \"other\" time is derived"
        ));
        return;
    }
    report.stage(
        section,
        "worker other (MongoDB claim/read/mark, waits)",
        window_s - staged,
        done,
    );
}

/// Vector metadata exactly as the worker writes it (the one definition in tidemark-core).
fn vector_metadata(doc: &NewDocument, out: &PutOutcome, model: &str) -> Metadata {
    let record = tidemark_core::DocumentRecord {
        id: out.document_id,
        content_id: out.content_id.clone(),
        doc_type: doc.doc_type.clone(),
        content: doc.content.clone(),
        metadata: bson::to_document(&doc.metadata).unwrap_or_default(),
        timestamp: DateTime::now(),
        version: out.version,
        content_hash: out.content_hash.clone(),
        vector_id: None,
        indexed_version: None,
    };
    tidemark_core::vector_metadata(&record, model)
}

/// Embeds `texts` in batches of `batch`; returns the vectors and the time taken.
async fn embed_alone(
    embedder: &dyn Embedder,
    texts: &[String],
    batch: usize,
) -> Result<(Vec<Vec<f32>>, Duration), BenchError> {
    let start = Instant::now();
    let mut out = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(batch.max(1)) {
        out.extend(embedder.embed(chunk).await?);
    }
    Ok((out, start.elapsed()))
}

/// Measurement 2: the hashing embedder.
pub async fn run_hash(ctx: &Ctx, report: &mut Report) -> Result<(), BenchError> {
    let c = &ctx.counts;
    let n = c.drain_backlog;
    let store = ctx.store("drain").await?;
    let written = backlog_raw(&store, n).await?;
    let embedder: SharedEmbedder = embedders::hash(c.hash_dimension)?;
    let model = embedder.model_id().to_string();
    let texts: Vec<String> = written.iter().map(|(d, _)| d.content.clone()).collect();

    // Stage alone 1: the embedder.
    let (vectors, t_embed) = embed_alone(embedder.as_ref(), &texts, c.batch_size).await?;
    // Stage alone 2: Chroma's upsert of the same vectors at the same batch size.
    let coll_name = collection_name(&ctx.part("chroma"), &model);
    ctx.chroma_collection(&coll_name);
    let coll = ctx.chroma.get_or_create_collection(&coll_name).await?;
    let records: Vec<VectorRecord> = written
        .iter()
        .zip(vectors)
        .map(|((d, o), v)| VectorRecord {
            id: vector_id(&o.document_id),
            embedding: v,
            metadata: vector_metadata(d, o, &model),
        })
        .collect();
    let start = Instant::now();
    for chunk in records.chunks(c.batch_size) {
        ctx.chroma.upsert(&coll.id, chunk).await?;
    }
    let t_chroma = start.elapsed();
    drop(records);

    // The pipeline.
    let d = drain_with_worker(ctx, report, &store, "drain", Provider::Hash, n, &model).await?;
    let worker = d.rate();
    let embed = rate(n, t_embed);
    let chroma = rate(n, t_chroma);
    let slowest = embed.min(chroma);
    report.add(
        "drain.worker_docs_per_s",
        &format!("worker drain, hash embedder, {n} backlog"),
        worker,
        "docs/s",
    );
    report.add(
        "drain.embed_alone_docs_per_s",
        "hash embedder alone, same texts",
        embed,
        "docs/s",
    );
    report.add(
        "drain.chroma_alone_docs_per_s",
        &format!("Chroma upsert alone, batches of {}", c.batch_size),
        chroma,
        "docs/s",
    );
    report.add_min(
        "drain.efficiency",
        "worker / slowest stage alone",
        worker / slowest,
        "ratio",
        0.9,
    );
    report.note(format!(
        "drain: the worker keeps up to {} batches in flight (worker.concurrency) with up to {} \
         Chroma writes at once (worker.vector_writes); the stages alone send one request at a time",
        ctx.cfg.worker.concurrency, ctx.cfg.worker.vector_writes
    ));
    report.stage(
        "drain",
        "embedder alone",
        t_embed.as_secs_f64(),
        n.div_ceil(c.batch_size) as u64,
    );
    report.stage(
        "drain",
        "Chroma upsert alone",
        t_chroma.as_secs_f64(),
        n.div_ceil(c.batch_size) as u64,
    );

    // The old dual write, on fresh stores.
    let dual = dual_write(ctx, embedder.as_ref(), c.dual_write_docs).await?;
    report.add(
        "drain.dual_write_docs_per_s",
        "old dual write (Chroma add, then insert)",
        dual,
        "docs/s",
    );
    report.add(
        "drain.worker_vs_dual_write",
        "worker drain / old dual write",
        worker / dual,
        "ratio",
    );
    Ok(())
}

/// The write path this project replaces: per document, embed, a Chroma add, then a MongoDB
/// insert, one after the other. Returns documents per second.
async fn dual_write(ctx: &Ctx, embedder: &dyn Embedder, n: usize) -> Result<f64, BenchError> {
    let store = ctx.store("dual").await?;
    let coll_name = collection_name(&ctx.part("dual"), embedder.model_id());
    ctx.chroma_collection(&coll_name);
    let coll = ctx.chroma.get_or_create_collection(&coll_name).await?;
    let start = Instant::now();
    for i in 0..n as u64 {
        let doc = data::document("dual", i);
        let (record, _) = write::records(&doc)?;
        let v = embedder.embed(std::slice::from_ref(&doc.content)).await?;
        let out = PutOutcome {
            document_id: record.id,
            content_id: record.content_id.clone(),
            version: 1,
            outbox_id: record.id,
            content_hash: record.content_hash.clone(),
        };
        let rec = VectorRecord {
            id: vector_id(&record.id),
            embedding: v.into_iter().next().unwrap_or_default(),
            metadata: vector_metadata(&doc, &out, embedder.model_id()),
        };
        ctx.chroma.upsert(&coll.id, &[rec]).await?;
        store.documents().insert_one(&record).await?;
    }
    Ok(rate(n, start.elapsed()))
}

/// Measurement 3: the local all-MiniLM-L6-v2 model.
pub async fn run_local(ctx: &Ctx, report: &mut Report) -> Result<(), BenchError> {
    let n = ctx.counts.local_backlog;
    let store = ctx.store("local").await?;
    let written = backlog_raw(&store, n).await?;
    let texts: Vec<String> = written.iter().map(|(d, _)| d.content.clone()).collect();
    let ecfg = ctx.cfg.embedder.clone();
    let embedder = tokio::task::spawn_blocking(move || embedders::local(&ecfg))
        .await
        .map_err(|e| BenchError::Setup(format!("model loading panicked: {e}")))??;
    let model = embedder.model_id().to_string();
    let (_, t_embed) = embed_alone(embedder.as_ref(), &texts, ctx.cfg.embedder.batch_size).await?;
    drop(embedder);
    let d = drain_with_worker(ctx, report, &store, "local", Provider::Local, n, &model).await?;
    let worker = d.rate();
    let embed = rate(n, t_embed);
    report.add(
        "local.worker_docs_per_s",
        &format!("worker drain, all-MiniLM-L6-v2, {n} backlog"),
        worker,
        "docs/s",
    );
    report.add(
        "local.embed_alone_docs_per_s",
        "all-MiniLM-L6-v2 alone, same texts",
        embed,
        "docs/s",
    );
    report.add_min(
        "local.efficiency",
        "worker / embedder alone",
        worker / embed,
        "ratio",
        0.9,
    );
    report.stage(
        "local",
        "embedder alone",
        t_embed.as_secs_f64(),
        n.div_ceil(ctx.cfg.embedder.batch_size) as u64,
    );
    Ok(())
}

/// The drain capacity with the hashing embedder when the `drain` section did not run:
/// a smaller backlog through the worker.
pub async fn capacity(ctx: &Ctx, report: &mut Report) -> Result<f64, BenchError> {
    let n = (ctx.counts.drain_backlog / 4).max(200);
    let store = ctx.store("capacity").await?;
    backlog_raw(&store, n).await?;
    let model = format!("hash-{}", ctx.counts.hash_dimension);
    let d = drain_with_worker(ctx, report, &store, "capacity", Provider::Hash, n, &model).await?;
    report.add(
        "lag.capacity_docs_per_s",
        &format!("drain capacity ({n} backlog)"),
        d.rate(),
        "docs/s",
    );
    Ok(d.rate())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_are_no_stage_of_the_busy_time() {
        let metrics = "tidemark_embed_seconds_sum 1\n\
            tidemark_embed_seconds_count 4\n\
            tidemark_queue_seconds_sum{kind=\"live\"} 50\n\
            tidemark_queue_seconds_count{kind=\"live\"} 4\n\
            tidemark_end_to_end_seconds_sum 60\n\
            tidemark_end_to_end_seconds_count 4\n";
        let mut report = Report::default();
        record_stages(&mut report, "drain", metrics, 10.0, 4);
        let names: Vec<&str> = report.stages.iter().map(|s| s.stage.as_str()).collect();
        assert!(
            names.contains(&"worker tidemark_embed_seconds"),
            "{names:?}"
        );
        assert!(
            !names
                .iter()
                .any(|n| n.contains("queue") || n.contains("end_to_end")),
            "{names:?}"
        );
        let other = report.stages.last().expect("the other time");
        assert!(other.stage.starts_with("worker other"), "{}", other.stage);
        assert!((other.seconds - 9.0).abs() < 1e-9, "{}", other.seconds);
        assert!(report.notes.is_empty(), "{:?}", report.notes);
    }
}
