//! tidemark-bench: the figures that show where tidemark stands, measured side by side in one
//! run against the real services so that ratios hold on a noisy machine.
//!
//! Sections (each can be selected alone):
//! - `write`: `Store::put` vs a raw driver transaction of the same two inserts vs a plain
//!   insert; `put_many` at a few batch sizes;
//! - `drain`: a backlog drained by the worker with the hashing embedder, against Chroma's own
//!   upsert rate for the same vectors and batch size, and against the old dual write;
//! - `local`: a backlog drained with all-MiniLM-L6-v2 against the embedder alone;
//! - `lag`: commit-to-done percentiles under a steady load at about half the drain capacity;
//! - `memory`: the worker's peak resident memory over a large backlog, and its catch-up after
//!   a restart (time to the first entry done);
//! - `long`: long documents chunked: drain with the local model against the embedder alone on
//!   the same chunks, and the worker's peak memory over a backlog of them;
//! - `migrate`: `migrate run` of a legacy dual store against `put_many` of the same records
//!   (time, and the server's CPU time when it runs on this machine: `server_cpu`), and the
//!   time vector reuse saves;
//! - `index`: a new index version built over a corpus while writes go on at half load: the
//!   build's docs/s and the live commit-to-done lag;
//! - `scale`: one backlog drained by 1, 2 and 4 worker processes.
//!
//! The worker always runs as a separate process (the `tidemark worker` binary), so its memory
//! is its own and its Prometheus histograms name the slow stage. It is a benchmark, not a
//! test: goals are printed next to the figures, never enforced.

mod backlog;
mod data;
mod drain;
mod embedders;
mod engines;
mod index;
mod lag;
mod long;
pub mod markdown;
mod memory;
mod migrate;
pub mod report;
mod scale;
mod server_cpu;
mod stats;
mod worker_proc;
mod write;

pub use report::{Figure, Goal, Machine, Report, StageTime};

use serde::Serialize;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;
use tidemark_core::Config;
use tidemark_store::Store;

/// What can go wrong while benchmarking (a missed goal is not an error).
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{}", tidemark_store::mongo_text::describe(.0))]
    Mongo(#[from] mongodb::error::Error),
    #[error("store: {0}")]
    Store(#[from] tidemark_store::StoreError),
    #[error("Chroma: {0}")]
    Chroma(#[from] tidemark_chroma::ChromaError),
    #[error("embedder: {0}")]
    Embed(#[from] tidemark_embed::EmbedError),
    #[error("worker process: {0}")]
    Worker(String),
    #[error("benchmark setup: {0}")]
    Setup(String),
}

/// The parts of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Section {
    Write,
    Drain,
    Local,
    Lag,
    Memory,
    Long,
    Migrate,
    Index,
    Scale,
    Embedder,
    Backlog,
}

impl Section {
    pub const ALL: [Section; 11] = [
        Section::Write,
        Section::Drain,
        Section::Local,
        Section::Lag,
        Section::Memory,
        Section::Long,
        Section::Migrate,
        Section::Index,
        Section::Scale,
        Section::Embedder,
        Section::Backlog,
    ];

    pub fn parse(s: &str) -> Option<Section> {
        Section::ALL.into_iter().find(|x| x.name() == s)
    }

    pub fn name(self) -> &'static str {
        match self {
            Section::Write => "write",
            Section::Drain => "drain",
            Section::Local => "local",
            Section::Lag => "lag",
            Section::Memory => "memory",
            Section::Long => "long",
            Section::Migrate => "migrate",
            Section::Index => "index",
            Section::Scale => "scale",
            Section::Embedder => "embedder",
            Section::Backlog => "backlog",
        }
    }
}

/// Sizes of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Counts {
    /// Operations of each kind in the write comparison, split into `write_rounds` rounds.
    pub write_ops: usize,
    pub write_rounds: usize,
    pub put_many_sizes: Vec<usize>,
    /// Documents written per `put_many` batch size.
    pub put_many_docs: usize,
    /// Backlog drained with the hashing embedder (and upserted by Chroma alone).
    pub drain_backlog: usize,
    /// Documents written the old way (Chroma add, then MongoDB insert, one by one).
    pub dual_write_docs: usize,
    /// Backlog drained with the local model.
    pub local_backlog: usize,
    /// Length of the steady-load phase, seconds.
    pub lag_seconds: f64,
    /// Backlog for the peak memory and catch-up measurement.
    pub memory_backlog: usize,
    /// Longest wait for a worker drain (hash embedder and memory sections); past it the rate
    /// is taken over what was done, so a slow worker cannot stretch the run.
    pub drain_max_seconds: f64,
    /// Worker batch size (also Chroma's batch size in the comparison).
    pub batch_size: usize,
    /// Dimension of the hashing embedder.
    pub hash_dimension: usize,
    /// Short texts (4-40 words) and long ones (256 tokens) each engine embeds in `embedder`.
    pub embedder_short: usize,
    pub embedder_long: usize,
    /// Long documents (~2,000 tokens) drained chunked with the local model.
    pub long_docs: usize,
    /// Long-document backlog of the peak memory measurement (hashing embedder).
    pub long_memory_backlog: usize,
    /// Legacy records migrated (and written by `put_many` for the comparison).
    pub migrate_records: usize,
    /// Records per `put_many` call, in the migration and in its baseline.
    pub migrate_batch: usize,
    /// Corpus of the index-build measurement.
    pub index_docs: usize,
    /// Longest the build may take (with the live writes going on); past it the build's rate
    /// is over what was done.
    pub index_max_seconds: f64,
    /// Live writes per second during the build; None: a quarter of the corpus drain.
    pub index_live_rate: Option<f64>,
    /// Backlog drained by 1, 2 and 4 workers.
    pub scale_backlog: usize,
    /// Backlog sizes of the `backlog` section's curve, smallest first (three).
    pub backlog_curve: Vec<usize>,
}

impl Counts {
    /// The full run: a few minutes on a 2-core machine.
    pub fn full() -> Counts {
        Counts {
            write_ops: 500,
            write_rounds: 5,
            put_many_sizes: vec![10, 100],
            put_many_docs: 1000,
            drain_backlog: 20_000,
            dual_write_docs: 500,
            local_backlog: 400,
            embedder_short: 256,
            embedder_long: 64,
            lag_seconds: 20.0,
            memory_backlog: 100_000,
            drain_max_seconds: 45.0,
            batch_size: 128,
            hash_dimension: 384,
            long_docs: 1000,
            long_memory_backlog: 20_000,
            migrate_records: 3000,
            migrate_batch: 100,
            index_docs: 20_000,
            index_max_seconds: 360.0,
            index_live_rate: None,
            scale_backlog: 20_000,
            backlog_curve: vec![10_000, 50_000, 100_000],
        }
    }

    /// Small counts: every figure once, in seconds (the smoke test).
    pub fn quick() -> Counts {
        Counts {
            write_ops: 60,
            write_rounds: 3,
            put_many_sizes: vec![10, 50],
            put_many_docs: 100,
            drain_backlog: 300,
            dual_write_docs: 40,
            local_backlog: 24,
            embedder_short: 32,
            embedder_long: 4,
            lag_seconds: 2.0,
            memory_backlog: 500,
            drain_max_seconds: 60.0,
            batch_size: 128,
            hash_dimension: 384,
            long_docs: 3,
            long_memory_backlog: 100,
            migrate_records: 60,
            migrate_batch: 20,
            index_docs: 120,
            index_max_seconds: 60.0,
            index_live_rate: None,
            scale_backlog: 200,
            backlog_curve: vec![100, 200, 400],
        }
    }
}

/// How to run.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Base configuration: MongoDB URI, Chroma URL, model folder, limits.
    pub cfg: Config,
    /// The configuration file, passed on to the worker processes.
    pub config_file: Option<PathBuf>,
    /// Unique prefix of every database and Chroma namespace this run creates
    /// (letters, digits, `_`; removed at the end unless `keep`).
    pub name: String,
    pub quick: bool,
    pub counts: Counts,
    pub sections: Vec<Section>,
    /// The `tidemark` binary started as the worker.
    pub worker_bin: PathBuf,
    /// Keep the databases and collections (for inspection).
    pub keep: bool,
}

/// Every `<part>` of `<name>_<part>` a run may create (databases and Chroma namespaces).
pub const PARTS: &[&str] = &[
    "write", "drain", "chroma", "dual", "local", "lag", "capacity", "memory", "legacy", "migput",
    "migput1", "migput2", "migput3", "migrate", "migrate1", "migrate2", "migrate3", "reuse",
    "long", "longmem", "index", "scale1", "scale2", "scale4", "backlog1", "backlog2", "backlog3",
];

/// Removes whatever a run named `name` may have left behind (e.g. after it was killed):
/// databases `<name>_*` and the Chroma collections of every part and model. Returns what
/// could not be removed; missing things are not an error.
pub async fn cleanup(cfg: &Config, name: &str) -> Result<Vec<String>, BenchError> {
    let client = mongodb::Client::with_uri_str(&cfg.mongodb.uri).await?;
    let chroma = tidemark_chroma::ChromaClient::new(tidemark_chroma::ChromaOptions::from_config(
        &cfg.chroma,
    ))?;
    let mut problems = Vec::new();
    let prefix = format!("{name}_");
    for db in client.list_database_names().await? {
        if db.starts_with(&prefix) {
            if let Err(e) = client.database(&db).drop().await {
                problems.push(format!("cannot drop database {db}: {e}"));
            }
        }
    }
    let models = [
        format!("hash-{}", Counts::full().hash_dimension),
        format!("hash-{}", index::NEW_DIMENSION),
        "all-MiniLM-L6-v2".to_string(),
    ];
    for part in PARTS {
        for model in &models {
            let coll = tidemark_core::collection_name(&format!("{prefix}{part}"), model);
            for coll in [coll.clone(), format!("{coll}__{}", index::NEW_INDEX)] {
                if let Ok(Some(_)) = chroma.get_collection(&coll).await {
                    if let Err(e) = chroma.delete_collection(&coll).await {
                        problems.push(format!("cannot delete Chroma collection {coll}: {e}"));
                    }
                }
            }
        }
    }
    Ok(problems)
}

/// Shared state of one run: connections and what to clean up.
pub(crate) struct Ctx {
    pub cfg: Config,
    pub config_file: Option<PathBuf>,
    pub name: String,
    pub counts: Counts,
    pub worker_bin: PathBuf,
    pub client: mongodb::Client,
    pub chroma: tidemark_chroma::ChromaClient,
    databases: Mutex<Vec<String>>,
    collections: Mutex<Vec<String>>,
}

impl Ctx {
    /// Database (and Chroma namespace) name of one part of the run.
    pub fn part(&self, part: &str) -> String {
        debug_assert!(PARTS.contains(&part), "{part} missing from PARTS");
        format!("{}_{part}", self.name)
    }

    /// A store on the fresh database `<name>_<part>`, schema ensured; dropped at the end.
    pub async fn store(&self, part: &str) -> Result<Store, BenchError> {
        let db = self.part(part);
        self.databases.lock().unwrap().push(db.clone());
        let store = Store::new(self.client.clone(), &db, &self.cfg);
        store.ensure_schema().await?;
        Ok(store)
    }

    /// The database `<name>_<part>` without tidemark's schema (e.g. a legacy store); dropped at
    /// the end.
    pub fn database(&self, part: &str) -> mongodb::Database {
        let db = self.part(part);
        self.databases.lock().unwrap().push(db.clone());
        self.client.database(&db)
    }

    /// Registers a Chroma collection for removal at the end.
    pub fn chroma_collection(&self, name: &str) {
        self.collections.lock().unwrap().push(name.to_string());
    }

    async fn cleanup(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let dbs = std::mem::take(&mut *self.databases.lock().unwrap());
        for db in dbs {
            if let Err(e) = self.client.database(&db).drop().await {
                problems.push(format!("cannot drop database {db}: {e}"));
            }
        }
        let cols = std::mem::take(&mut *self.collections.lock().unwrap());
        for c in cols {
            if let Err(e) = self.chroma.delete_collection(&c).await {
                problems.push(format!("cannot delete Chroma collection {c}: {e}"));
            }
        }
        problems
    }
}

/// Runs the selected sections and returns the report. A section that fails is reported in
/// the notes and the run goes on; databases and collections are removed at the end.
pub async fn run(opts: BenchOptions) -> Result<Report, BenchError> {
    let started = Instant::now();
    let client = mongodb::Client::with_uri_str(&opts.cfg.mongodb.uri).await?;
    let chroma = tidemark_chroma::ChromaClient::new(tidemark_chroma::ChromaOptions::from_config(
        &opts.cfg.chroma,
    ))?;
    let mut report = Report {
        tidemark_version: env!("CARGO_PKG_VERSION").to_string(),
        started_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        quick: opts.quick,
        machine: Machine::probe(),
        parameters: serde_json::to_value(&opts.counts).unwrap_or_default(),
        ..Report::default()
    };
    report.machine.mongodb_server = mongodb_version(&client).await;
    report.machine.chroma_server = chroma_version(&opts.cfg.chroma.url).await;
    let ctx = Ctx {
        cfg: opts.cfg.clone(),
        config_file: opts.config_file.clone(),
        name: opts.name.clone(),
        counts: opts.counts.clone(),
        worker_bin: opts.worker_bin.clone(),
        client,
        chroma,
        databases: Mutex::new(Vec::new()),
        collections: Mutex::new(Vec::new()),
    };
    let mut drain_capacity = None;
    for section in &opts.sections {
        tracing::info!(section = section.name(), "benchmark section starts");
        let result = match section {
            Section::Write => write::run(&ctx, &mut report).await,
            Section::Drain => drain::run_hash(&ctx, &mut report).await,
            Section::Local => drain::run_local(&ctx, &mut report).await,
            Section::Lag => {
                let cap = match drain_capacity.or(report.value("drain.worker_docs_per_s")) {
                    Some(c) => Ok(c),
                    None => drain::capacity(&ctx, &mut report).await,
                };
                match cap {
                    Ok(c) => {
                        drain_capacity = Some(c);
                        lag::run(&ctx, &mut report, c).await
                    }
                    Err(e) => Err(e),
                }
            }
            Section::Memory => memory::run(&ctx, &mut report).await,
            Section::Long => long::run(&ctx, &mut report).await,
            Section::Migrate => migrate::run(&ctx, &mut report).await,
            Section::Index => index::run(&ctx, &mut report).await,
            Section::Scale => scale::run(&ctx, &mut report).await,
            Section::Embedder => engines::run(&ctx, &mut report).await,
            Section::Backlog => backlog::run(&ctx, &mut report).await,
        };
        if let Err(e) = result {
            tracing::error!(section = section.name(), error = %e, "benchmark section failed");
            report.note(format!("{}: FAILED, figures missing: {e}", section.name()));
        }
    }
    if opts.keep {
        report.note(format!(
            "kept databases and collections with prefix {}",
            opts.name
        ));
    } else {
        for p in ctx.cleanup().await {
            report.note(p);
        }
    }
    report.machine.load_at_end = report::loadavg();
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

async fn mongodb_version(client: &mongodb::Client) -> String {
    match client
        .database("admin")
        .run_command(bson::doc! {"buildInfo": 1})
        .await
    {
        Ok(d) => d.get_str("version").unwrap_or("?").to_string(),
        Err(e) => format!("unknown ({e})"),
    }
}

async fn chroma_version(url: &str) -> String {
    let url = format!("{}/api/v2/version", url.trim_end_matches('/'));
    match reqwest::get(&url).await {
        Ok(r) => r
            .text()
            .await
            .map(|t| t.trim().trim_matches('"').to_string())
            .unwrap_or_default(),
        Err(e) => format!("unknown ({e})"),
    }
}
