//! `tidemark backfill`: enqueue outbox entries for documents (all, one --type, or with
//! --missing-only those without a vector), in batches of one transaction each, resumable: the
//! same command continues an interrupted run after its last committed batch (checkpoint in
//! `sync_state`, `_id: "backfill:<run>"`); `--restart` starts over; `--max-batches` stops early.

use crate::commands::verify::BarProgress;
use crate::common::{init_logging, progress_bar, runtime, GlobalArgs};
use anyhow::Context;
use std::process::ExitCode;
use tidemark_ops::backfill::{backfill, BackfillOptions};
use tidemark_ops::Ops;

#[derive(clap::Args, Debug)]
pub struct BackfillArgs {
    /// Only documents of this type.
    #[arg(long = "type")]
    pub doc_type: Option<String>,
    /// Only documents without a vector (no indexedVersion at the current version, or no vector
    /// in Chroma) and without pending work.
    #[arg(long)]
    pub missing_only: bool,
    /// Documents per batch (one transaction each).
    #[arg(long, default_value_t = 500)]
    pub batch_size: usize,
    /// Stop after this many batches; run again to continue.
    #[arg(long)]
    pub max_batches: Option<u64>,
    /// Before each batch, wait while more than this many outbox entries are pending.
    #[arg(long)]
    pub max_pending: Option<u64>,
    /// Before each batch, wait while live entries (applications' changes) have been due
    /// longer than this (e.g. `500ms`), so the backfill yields to them.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub max_lag: Option<std::time::Duration>,
    /// Name of the run (default: from the options, e.g. `missing-type-faq`).
    #[arg(long)]
    pub run_id: Option<String>,
    /// Forget this run's checkpoint and start from the first document.
    #[arg(long)]
    pub restart: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(global: &GlobalArgs, args: BackfillArgs) -> anyhow::Result<ExitCode> {
    let cfg = global.load_config()?;
    init_logging(&cfg);
    let opts = BackfillOptions {
        doc_type: args.doc_type,
        missing_only: args.missing_only,
        batch_size: args.batch_size,
        max_batches: args.max_batches,
        max_pending: args.max_pending,
        run_id: args.run_id,
        restart: args.restart,
        max_lag: args.max_lag,
        for_index: None,
    };
    let bar = progress_bar(Some(0), "backfill");
    let report = runtime()?.block_on(async {
        let ops = Ops::connect(&cfg).await.context("cannot connect")?;
        backfill(&ops, &opts, &BarProgress(bar.clone()))
            .await
            .context("backfill failed")
    });
    bar.finish_and_clear();
    let r = report?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else if r.already_completed {
        println!(
            "backfill run `{}` already completed ({} entries); --restart to run it again",
            r.run_id, r.total_enqueued
        );
    } else {
        println!(
            "backfill run `{}`{}: scanned {}, enqueued {} in {} batches (run total {} / {}){}",
            r.run_id,
            if r.resumed { " (resumed)" } else { "" },
            r.scanned,
            r.enqueued,
            r.batches,
            r.total_enqueued,
            r.total_scanned,
            if r.completed {
                ", completed".to_string()
            } else {
                format!(
                    ", stopped after {}; run again to continue",
                    r.last_id.as_deref().unwrap_or("-")
                )
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}
