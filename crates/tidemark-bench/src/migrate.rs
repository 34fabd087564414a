//! Measurement: `migrate run` of a legacy dual store against `Store::put_many` of the same
//! records at the same batch size, and the time vector reuse saves. A legacy collection
//! (`duck_transcripts`, the dual store's shape: `id`, `text`, epoch-ms `timestamp`, `metadata`
//! with write-status flags) and its legacy Chroma collection (vectors of the local model,
//! document texts included) are built first; then the same records are written by `put_many`
//! and migrated without reuse, in interleaved rounds into fresh databases, then migrated with
//! reuse, and the first migrated database and the reused one are each drained by a
//! worker with the local model. Reuse saves the difference between the two drains, less what
//! copying the vectors added to the run.

use crate::drain::drain_with_worker;
use crate::report::Report;
use crate::server_cpu::ServerCpu;
use crate::stats::rate;
use crate::worker_proc::Provider;
use crate::{data, embedders, BenchError, Ctx};
use bson::{doc, oid::ObjectId, DateTime, Document};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tidemark_chroma::FullRecord;
use tidemark_migrate::mapping::{CollectionMapping, Mapping, MigrationSection, SourceSection};
use tidemark_migrate::run::RunOptions;
use tidemark_migrate::source::Source;
use tidemark_migrate::{NoProgress, Target};
use tidemark_store::{NewDocument, Store};

const COLLECTION: &str = "duck_transcripts";
const MODEL: &str = "all-MiniLM-L6-v2";
const T0: i64 = 1_714_000_000_000;
/// Rounds of `put_many` against `migrate run`, interleaved (their databases are in `PARTS`).
const ROUNDS: usize = 4;

/// Runs the migration section.
pub async fn run(ctx: &Ctx, report: &mut Report) -> Result<(), BenchError> {
    let n = ctx.counts.migrate_records;
    let batch = ctx.counts.migrate_batch;
    let legacy_chroma = build_legacy(ctx, n).await?;

    let docs: Vec<NewDocument> = (0..n as u64).map(put_document).collect();
    // Interleaved rounds, each into fresh databases: one round lasts well under a second, and
    // single rounds gave ratios of 0.46-0.68 for the same code (2026-12-07).
    let (mut put_t, mut plain_t) = (Duration::ZERO, Duration::ZERO);
    let server = ServerCpu::find(&ctx.cfg.mongodb.uri);
    let cpu = || server.and_then(|s| s.seconds()).unwrap_or(0.0);
    let (mut put_cpu, mut plain_cpu) = (0.0, 0.0);
    let mut first = None;
    for round in 0..ROUNDS {
        let (put_part, run_part) = match round {
            0 => ("migput".to_string(), "migrate".to_string()),
            r => (format!("migput{r}"), format!("migrate{r}")),
        };
        let store = ctx.store(&put_part).await?;
        let (start, c0) = (Instant::now(), cpu());
        for part in docs.chunks(batch) {
            store.put_many(part.to_vec()).await?;
        }
        put_t += start.elapsed();
        put_cpu += cpu() - c0;
        let c0 = cpu();
        let (t, copied, store) = migrate(ctx, &run_part, &legacy_chroma, false).await?;
        plain_cpu += cpu() - c0;
        plain_t += t;
        first.get_or_insert((copied, store));
    }
    let (plain, plain_store) = first.expect("at least one round");
    let put_many = rate(n * ROUNDS, put_t);
    let (reuse_t, reused, reuse_store) = migrate(ctx, "reuse", &legacy_chroma, true).await?;
    let plain_rate = rate(n * ROUNDS, plain_t);
    report.add(
        "migrate.put_many_records_per_s",
        &format!("put_many, batches of {batch}, {n} records, {ROUNDS} rounds"),
        put_many,
        "records/s",
    );
    report.add(
        "migrate.run_records_per_s",
        "migrate run, same records and batch size",
        plain_rate,
        "records/s",
    );
    report.add_min(
        "migrate.run_vs_put_many",
        "migrate run / put_many",
        plain_rate / put_many,
        "ratio",
        0.8,
    );
    server_work(report, server.is_some(), put_cpu, plain_cpu, n * ROUNDS);
    report.add(
        "migrate.run_reuse_records_per_s",
        &format!("migrate run with vector reuse ({reused} vectors copied)"),
        rate(n, reuse_t),
        "records/s",
    );

    let d_plain = drain(ctx, report, &plain_store, "migrate", n).await?;
    let d_reuse = drain(ctx, report, &reuse_store, "reuse", n).await?;
    let plain_one = plain_t.as_secs_f64() / ROUNDS as f64;
    let saved = d_plain - d_reuse - (reuse_t.as_secs_f64() - plain_one);
    report.add(
        "migrate.drain_without_reuse_s",
        "worker drain after the run, local model",
        d_plain,
        "s",
    );
    report.add(
        "migrate.drain_with_reuse_s",
        "worker drain after the run with reuse",
        d_reuse,
        "s",
    );
    report.add(
        "migrate.reuse_saves_s",
        "time saved by reuse (drain saved - copy cost)",
        saved,
        "s",
    );
    if plain > 0 {
        report.note(format!(
            "migrate: the run without reuse copied {plain} vectors (expected 0)"
        ));
    }
    Ok(())
}

/// The server's CPU time for each way of writing the records: the work each cost the server,
/// whatever the machine's speed while it ran (the time ratio above varies between runs of
/// the same code by more than the changes it should show).
fn server_work(report: &mut Report, found: bool, put_s: f64, run_s: f64, records: usize) {
    if !found {
        report.note(
            "migrate: the MongoDB server is not a process on this machine; no server CPU figures",
        );
        return;
    }
    let per_1000 = |s: f64| s * 1000.0 * 1000.0 / records.max(1) as f64;
    report.add(
        "migrate.put_many_server_ms_per_1000",
        "server CPU per 1000 records, put_many",
        per_1000(put_s),
        "ms",
    );
    report.add(
        "migrate.run_server_ms_per_1000",
        "server CPU per 1000 records, migrate run",
        per_1000(run_s),
        "ms",
    );
    if run_s > 0.0 {
        report.add(
            "migrate.server_put_many_vs_run",
            "server CPU: put_many / migrate run",
            put_s / run_s,
            "ratio",
        );
    }
}

/// The text of legacy record `i`.
fn text(i: u64) -> String {
    data::text(i)
}

fn put_document(i: u64) -> NewDocument {
    NewDocument::new(format!("t-{i}"), "transcript", text(i))
        .with_metadata(serde_json::json!({"speaker": format!("s{}", i % 3)}))
        .with_timestamp(DateTime::from_millis(T0 + i as i64))
}

/// Writes the legacy records and their legacy vectors; returns the legacy Chroma collection.
async fn build_legacy(ctx: &Ctx, n: usize) -> Result<String, BenchError> {
    let db = ctx.database("legacy");
    let records: Vec<Document> = (0..n as u64)
        .map(|i| {
            doc! {"_id": ObjectId::new(), "id": format!("t-{i}"), "text": text(i),
            "timestamp": T0 + i as i64,
            "metadata": {"speaker": format!("s{}", i % 3), "vectorWriteSuccess": true,
                         "vectorWriteTimestamp": T0}}
        })
        .collect();
    for part in records.chunks(1000) {
        db.collection::<Document>(COLLECTION)
            .insert_many(part.to_vec())
            .await?;
    }
    let ecfg = ctx.cfg.embedder.clone();
    let embedder = tokio::task::spawn_blocking(move || embedders::local(&ecfg))
        .await
        .map_err(|e| BenchError::Setup(format!("model loading panicked: {e}")))??;
    let name = tidemark_core::collection_name(&ctx.part("legacy"), MODEL);
    ctx.chroma_collection(&name);
    let coll = ctx
        .chroma
        .create_collection_with(&name, "l2", &Default::default())
        .await?;
    let texts: Vec<String> = (0..n as u64).map(text).collect();
    for (k, part) in texts.chunks(ctx.cfg.embedder.batch_size.max(1)).enumerate() {
        let vectors = embedder.embed(part).await?;
        let first = k * ctx.cfg.embedder.batch_size.max(1);
        let rows: Vec<FullRecord> = part
            .iter()
            .zip(vectors)
            .enumerate()
            .map(|(j, (t, v))| FullRecord {
                id: format!("t-{}", first + j),
                document: Some(t.clone()),
                metadata: None,
                embedding: Some(v),
            })
            .collect();
        ctx.chroma.add_with_documents(&coll.id, &rows).await?;
    }
    Ok(name)
}

/// Migrates the legacy collection into the database `<name>_<part>`; returns the run's time,
/// the vectors it copied and the target's store.
async fn migrate(
    ctx: &Ctx,
    part: &str,
    legacy_chroma: &str,
    reuse: bool,
) -> Result<(Duration, u64, Store), BenchError> {
    let mut cfg = ctx.cfg.clone();
    cfg.mongodb.database = ctx.part(part);
    cfg.chroma.namespace = ctx.part(part);
    cfg.embedder.provider = tidemark_core::config::EmbedderKind::Local;
    let store = ctx.store(part).await?;
    let target = Target::new(store.clone(), ctx.chroma.clone(), &cfg);
    ctx.chroma_collection(&target.collection());
    let mapping = mapping(ctx, part, legacy_chroma, reuse);
    let setup = |e: tidemark_migrate::MigrateError| BenchError::Setup(format!("migrate: {e}"));
    mapping.validate(&target.model).map_err(setup)?;
    let source = Source::connect(&mapping.source).await.map_err(setup)?;
    // The driver connects lazily: connect before the clock starts, as put_many's store is.
    source
        .db
        .run_command(bson::doc! {"ping": 1})
        .await
        .map_err(|e| BenchError::Setup(format!("legacy database: {e}")))?;
    let opts = RunOptions {
        dry_run: false,
        batch_size: ctx.counts.migrate_batch,
    };
    let start = Instant::now();
    let r = tidemark_migrate::run::run(&mapping, &source, &target, &opts, &NoProgress)
        .await
        .map_err(setup)?;
    Ok((start.elapsed(), r.totals.vectors_reused, store))
}

fn mapping(ctx: &Ctx, part: &str, legacy_chroma: &str, reuse: bool) -> Mapping {
    let c = CollectionMapping {
        skip: false,
        doc_type: "transcript".into(),
        id_field: "id".into(),
        text_field: "text".into(),
        time_field: Some("timestamp".into()),
        metadata_field: Some("metadata".into()),
        extra_fields: true,
        drop_fields: None,
        chroma_collection: Some(legacy_chroma.to_string()),
        vector_model: Some(MODEL.into()),
        vector_dimension: Some(384),
        reuse_vectors: reuse,
    };
    Mapping {
        migration: MigrationSection {
            id: format!("bench-{part}"),
        },
        source: SourceSection {
            uri: ctx.cfg.mongodb.uri.clone(),
            database: ctx.part("legacy"),
            chroma_url: Some(ctx.cfg.chroma.url.clone()),
            chroma_tenant: ctx.cfg.chroma.tenant.clone(),
            chroma_database: ctx.cfg.chroma.database.clone(),
        },
        collections: BTreeMap::from([(COLLECTION.to_string(), c)]),
    }
}

/// Seconds the local-model worker takes to finish the part's backlog.
async fn drain(
    ctx: &Ctx,
    report: &mut Report,
    store: &Store,
    part: &str,
    n: usize,
) -> Result<f64, BenchError> {
    let d = drain_with_worker(ctx, report, store, part, Provider::Local, n, MODEL).await?;
    Ok(d.window_s())
}
