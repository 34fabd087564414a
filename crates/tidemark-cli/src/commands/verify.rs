//! `tidemark verify` and `tidemark repair`: compare documents with the Chroma collection of the
//! configured model (missing, stale, behind, orphan vectors; in-flight work reported apart).
//! verify exits 2 on drift. `repair` (or `verify --repair`) enqueues reindex entries and deletes
//! orphan vectors, then exits 0; with `--dry-run` it changes nothing and exits like verify.

use crate::common::{init_logging, progress_bar, runtime, GlobalArgs};
use anyhow::Context;
use std::process::ExitCode;
use tidemark_ops::verify::{RepairOptions, VerifyOptions};
use tidemark_ops::Ops;

/// Adapts the library's progress callbacks to a progress bar.
pub struct BarProgress(pub indicatif::ProgressBar);

impl tidemark_ops::Progress for BarProgress {
    fn phase(&self, name: &str, total: Option<u64>) {
        self.0.set_message(name.to_string());
        self.0.set_position(0);
        if let Some(t) = total {
            self.0.set_length(t);
        }
    }
    fn inc(&self, n: u64) {
        self.0.inc(n);
    }
}

#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    /// Repair what is found (same as `tidemark repair`).
    #[arg(long)]
    pub repair: bool,
    /// With --repair: only report what would be done.
    #[arg(long, requires = "repair")]
    pub dry_run: bool,
    #[command(flatten)]
    pub common: CheckArgs,
}

#[derive(clap::Args, Debug)]
pub struct RepairArgs {
    /// Only report what would be done.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub common: CheckArgs,
}

#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Documents (and vectors) per page.
    #[arg(long, default_value_t = 500)]
    pub batch_size: usize,
    /// List at most this many items per category (counts stay exact).
    #[arg(long, default_value_t = 1000)]
    pub list_limit: usize,
    /// Check this index definition (see `tidemark index list`) instead of the configuration's.
    #[arg(long)]
    pub index: Option<String>,
}

pub fn run_verify(global: &GlobalArgs, args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let repair = args.repair.then_some(RepairOptions {
        dry_run: args.dry_run,
    });
    run(global, args.common, repair)
}

pub fn run_repair(global: &GlobalArgs, args: RepairArgs) -> anyhow::Result<ExitCode> {
    run(
        global,
        args.common,
        Some(RepairOptions {
            dry_run: args.dry_run,
        }),
    )
}

fn run(
    global: &GlobalArgs,
    args: CheckArgs,
    repair: Option<RepairOptions>,
) -> anyhow::Result<ExitCode> {
    let cfg = global.load_config()?;
    init_logging(&cfg);
    let opts = VerifyOptions {
        batch_size: args.batch_size,
        list_limit: args.list_limit,
        repair,
    };
    let bar = progress_bar(Some(0), "verify");
    let report = runtime()?.block_on(async {
        let ops = match &args.index {
            None => Ops::connect(&cfg).await.context("cannot connect")?,
            Some(name) => {
                let store = tidemark_store::Store::connect(&cfg)
                    .await
                    .context("cannot connect to MongoDB")?;
                let def = tidemark_ops::indexes::get(&store, name).await?;
                tidemark_ops::indexes::ops_for(&store, &cfg, &def)?
            }
        };
        tidemark_ops::verify::verify(&ops, &opts, &BarProgress(bar.clone()))
            .await
            .context("verify failed")
    });
    bar.finish_and_clear();
    let report = report?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.to_text());
    }
    let acted = repair.is_some_and(|r| !r.dry_run);
    Ok(if report.has_drift() && !acted {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}
