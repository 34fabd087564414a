//! `tidemark worker`: runs the worker daemon (change stream, sweeps, batches, `/metrics`,
//! `/healthz`, `/readyz`) until SIGTERM or SIGINT, then stops gracefully within
//! `worker.shutdown_deadline` and exits 0. `--once` drains what is due and exits instead.

use crate::common::{init_logging, runtime, stop_signal, GlobalArgs};
use anyhow::Context;
use std::process::ExitCode;
use std::time::Duration;
use tidemark_chroma::{ChromaClient, ChromaOptions};
use tidemark_store::Store;
use tidemark_worker::Worker;

#[derive(clap::Args, Debug)]
pub struct WorkerArgs {
    /// Process everything that is due, print a summary and exit (no change stream, no HTTP).
    #[arg(long)]
    pub once: bool,
}

pub fn run(global: &GlobalArgs, args: WorkerArgs) -> anyhow::Result<ExitCode> {
    let cfg = global.load_config()?;
    init_logging(&cfg);
    let rt = runtime()?;
    let stop = stop_signal(&rt)?;
    tracing::info!(
        mongodb = %tidemark_core::redact_uri(&cfg.mongodb.uri),
        database = %cfg.mongodb.database,
        chroma = %tidemark_core::redact_uri(&cfg.chroma.url),
        provider = ?cfg.embedder.provider,
        model = %cfg.embedder.model_id(),
        engine = if cfg.embedder.provider == tidemark_core::config::EmbedderKind::Local {
            cfg.embedder.engine.name()
        } else {
            "-"
        },
        "starting worker"
    );
    let embedder =
        tidemark_embed::from_config(&cfg.embedder).context("cannot load the embedder")?;
    let result = rt.block_on(async {
        let store = Store::connect(&cfg).await.context("cannot connect to MongoDB")?;
        let chroma = ChromaClient::new(ChromaOptions::from_config(&cfg.chroma))?;
        let registry = prometheus::Registry::new();
        let worker = Worker::new(cfg.clone(), store, chroma, embedder, &registry)?;
        if args.once {
            worker.init().await?;
            let r = worker.drain().await?;
            println!(
                "claimed {} entries: {} indexed, {} unchanged, {} superseded, {} deleted, {} dead, {} to retry",
                r.claimed, r.indexed, r.unchanged, r.superseded, r.deleted, r.dead, r.retried
            );
            return anyhow::Ok(true);
        }
        let report = worker.run(stop).await?;
        anyhow::Ok(report.is_clean())
    });
    // Every stop step is already bounded by worker.shutdown_deadline; do not wait long here.
    rt.shutdown_timeout(Duration::from_millis(200));
    // Exit 3: stopped in time, but leases or locks were left to expire (see the last log line).
    Ok(if result? {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}
