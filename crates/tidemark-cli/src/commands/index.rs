//! `tidemark index`: index versions. `create NAME` defines a new index from the configuration
//! given with `-c` (its [embedder] and [chunking]); running workers start writing it within
//! seconds. `build NAME` fills it (resumable, `--max-pending` throttles); `status` and `list`
//! show every index; `activate NAME` switches search to it (refused while incomplete or
//! drifting, `--force` overrides); `drop NAME` removes a retired index and its collection.

use crate::commands::verify::BarProgress;
use crate::common::{init_logging, progress_bar, runtime, GlobalArgs};
use anyhow::Context;
use std::process::ExitCode;
use tidemark_ops::backfill::BackfillOptions;
use tidemark_ops::indexes;

#[derive(clap::Args, Debug)]
pub struct IndexArgs {
    #[command(subcommand)]
    action: Action,
}

#[derive(clap::Subcommand, Debug)]
enum Action {
    /// Every index: name, state, model, chunking, collection, vectors.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Alias of `list` (the state of every index, build included).
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Define a new index from this configuration's [embedder] and [chunking] (state building).
    Create { name: String },
    /// Fill a building index from the documents (resumable; run again to continue).
    Build {
        name: String,
        /// Documents per batch (one transaction each); default half of `worker.batch_size`.
        #[arg(long)]
        batch_size: Option<usize>,
        /// Before each batch, wait while more than this many of the build's own entries are
        /// pending (default half of `worker.batch_size`: live writes then stay in view of
        /// every claim, which takes them first); 0 for no limit. Higher builds faster on a
        /// quiet system and delays live writes on a busy one.
        #[arg(long)]
        max_pending: Option<u64>,
        /// Before each batch, wait while live entries (applications' changes) have been due
        /// longer than this, so the build yields to them; 0 for no limit.
        #[arg(long, default_value = "500ms", value_parser = humantime::parse_duration)]
        max_lag: std::time::Duration,
        /// Stop after this many batches.
        #[arg(long)]
        max_batches: Option<u64>,
    },
    /// Make NAME the index search reads (the active one is retired and stays current).
    Activate {
        name: String,
        /// Activate even when the build is incomplete or verify finds drift.
        #[arg(long)]
        force: bool,
    },
    /// Remove a retired (or building) index and its Chroma collection.
    Drop { name: String },
}

pub fn run(global: &GlobalArgs, args: IndexArgs) -> anyhow::Result<ExitCode> {
    let cfg = global.load_config()?;
    init_logging(&cfg);
    runtime()?.block_on(async move {
        let store = crate::common::ready_store(&cfg).await?;
        match args.action {
            Action::List { json } | Action::Status { json } => {
                let all = indexes::status(&store, &cfg).await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&all)?);
                } else {
                    for s in &all {
                        println!(
                            "{:<16} {:<9} {:<22} {:>5}d  {:<36} {:>8} vectors{}  {}",
                            s.name,
                            s.state,
                            s.model,
                            s.dimension,
                            s.chunking,
                            s.vectors,
                            if s.build_complete { "" } else { " (building)" },
                            s.collection
                        );
                    }
                }
            }
            Action::Create { name } => {
                let def = indexes::create(&store, &cfg, &name)
                    .await
                    .with_context(|| format!("cannot create index `{name}`"))?;
                println!(
                    "index `{}` created (building, {} {}d, collection {}); running workers write it within seconds; next: tidemark index build {}",
                    def.name, def.embedder.model, def.embedder.dimension, def.collection, def.name
                );
            }
            Action::Build {
                name,
                batch_size,
                max_pending,
                max_lag,
                max_batches,
            } => {
                let half = indexes::build_batch_default(cfg.worker.batch_size);
                let pending = indexes::build_pending_default(cfg.worker.batch_size);
                let max_pending = max_pending.unwrap_or(pending);
                let opts = BackfillOptions {
                    batch_size: batch_size.unwrap_or(half),
                    max_pending: (max_pending > 0).then_some(max_pending),
                    max_lag: (!max_lag.is_zero()).then_some(max_lag),
                    max_batches,
                    ..BackfillOptions::default()
                };
                let bar = progress_bar(Some(0), "build");
                let r = indexes::build(&store, &cfg, &name, opts, &BarProgress(bar.clone())).await;
                bar.finish_and_clear();
                let r = r.with_context(|| format!("cannot build index `{name}`"))?;
                println!(
                    "index `{name}`: {} of {} documents enqueued{}",
                    r.total_enqueued,
                    r.total_scanned,
                    if r.completed || r.already_completed {
                        "; build complete (the workers finish it; then tidemark index activate)"
                    } else {
                        "; run again to continue"
                    }
                );
            }
            Action::Activate { name, force } => {
                if force {
                    eprintln!("warning: --force: activating `{name}` without checking it is complete");
                }
                let bar = progress_bar(None, "verify");
                let a = indexes::activate(&store, &cfg, &name, force, &BarProgress(bar.clone())).await;
                bar.finish_and_clear();
                let a = a.with_context(|| format!("cannot activate index `{name}`"))?;
                println!(
                    "index `{}` is active{}; search reads it now",
                    a.name,
                    a.previous
                        .map(|p| format!(" (`{p}` retired, still current: `tidemark index activate {p}` switches back)"))
                        .unwrap_or_default()
                );
            }
            Action::Drop { name } => {
                indexes::drop_index(&store, &cfg, &name)
                    .await
                    .with_context(|| format!("cannot drop index `{name}`"))?;
                println!("index `{name}` and its collection removed");
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}
