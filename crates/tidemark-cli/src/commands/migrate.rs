//! `tidemark migrate`: bring the data of the legacy dual store into tidemark. Subcommands in
//! the order they are used: `inventory` (what is there; writes a draft mapping), `plan` (the
//! mapping checked against the data), `run` (resumable; `--dry-run` writes nothing), `status`,
//! `verify` (exit 2 if a legacy record is unaccounted for), `rollback --migration ID`.
//! The legacy database and Chroma are only ever read.

use crate::commands::verify::BarProgress;
use crate::common::{init_logging, progress_bar, runtime, GlobalArgs};
use anyhow::Context;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tidemark_core::Config;
use tidemark_migrate::mapping::{Mapping, SourceSection};
use tidemark_migrate::run::RunOptions;
use tidemark_migrate::source::Source;
use tidemark_migrate::{MigrateError, Target};

#[derive(clap::Args, Debug)]
pub struct MigrateArgs {
    #[command(subcommand)]
    pub command: MigrateCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum MigrateCommand {
    /// Describe the legacy database and Chroma per collection; --write-mapping writes a draft.
    Inventory(InventoryArgs),
    /// Check a mapping against the legacy data and print what a run would do.
    Plan(MappingArgs),
    /// Migrate (resumable; only new or changed records are written). --dry-run writes nothing.
    Run(RunArgs),
    /// Checkpoints, migrated document counts and the latest run and rollback reports.
    Status(StatusArgs),
    /// Account for every legacy record (migrated, merged or skipped); exit 2 if any is not.
    Verify(MappingArgs),
    /// Remove exactly the documents, outbox entries and vectors a migration created.
    Rollback(RollbackArgs),
}

#[derive(clap::Args, Debug)]
pub struct InventoryArgs {
    /// MongoDB URI of the legacy database (read only).
    #[arg(long, env = "TIDEMARK_MIGRATE_SOURCE_URI")]
    pub source_uri: String,
    /// The legacy database name.
    #[arg(long, default_value = "database")]
    pub source_db: String,
    /// The legacy Chroma server (vector coverage is reported only with it).
    #[arg(long)]
    pub chroma_url: Option<String>,
    #[arg(long, default_value = "default_tenant")]
    pub chroma_tenant: String,
    #[arg(long, default_value = "default_database")]
    pub chroma_database: String,
    /// Write a draft mapping file (TOML) here.
    #[arg(long)]
    pub write_mapping: Option<PathBuf>,
    /// The migration id written into the draft mapping.
    #[arg(long)]
    pub migration_id: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
pub struct MappingArgs {
    /// The mapping file (TOML; `migrate inventory --write-mapping` writes a draft).
    #[arg(long)]
    pub mapping: PathBuf,
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub mapping: MappingArgs,
    /// Read and compare only: nothing is written anywhere.
    #[arg(long)]
    pub dry_run: bool,
    /// Records per transaction (put_many call).
    #[arg(long, default_value_t = 500)]
    pub batch_size: usize,
    /// Also write the JSON report to this file (it is always kept in `migrations`).
    #[arg(long)]
    pub report: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// Only this migration.
    #[arg(long)]
    pub migration: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
pub struct RollbackArgs {
    /// The migration id (`[migration] id` of the mapping).
    #[arg(long)]
    pub migration: String,
    /// Also remove documents changed by someone else since the migration wrote them.
    #[arg(long)]
    pub force: bool,
    #[arg(long)]
    pub json: bool,
}

pub fn run(global: &GlobalArgs, args: MigrateArgs) -> anyhow::Result<ExitCode> {
    let cfg = global.load_config()?;
    init_logging(&cfg);
    let rt = runtime()?;
    let result = rt.block_on(async {
        match args.command {
            MigrateCommand::Inventory(a) => inventory(&cfg, a).await,
            MigrateCommand::Plan(a) => plan(&cfg, a).await,
            MigrateCommand::Run(a) => run_migration(&cfg, a).await,
            MigrateCommand::Status(a) => status(&cfg, a).await,
            MigrateCommand::Verify(a) => verify(&cfg, a).await,
            MigrateCommand::Rollback(a) => rollback(&cfg, a).await,
        }
    });
    match result {
        Err(e) => match e.downcast::<MigrateError>() {
            Ok(MigrateError::Problems(problems)) => {
                eprintln!("error: the mapping does not fit the source data:");
                for p in problems {
                    eprintln!("  {p}");
                }
                Ok(ExitCode::FAILURE)
            }
            Ok(other) => Err(other.into()),
            Err(e) => Err(e),
        },
        ok => ok,
    }
}

fn print<T: serde::Serialize>(
    json: bool,
    value: &T,
    text: impl FnOnce() -> String,
) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(value)?);
    } else {
        print!("{}", text());
    }
    Ok(())
}

fn load_mapping(path: &Path) -> anyhow::Result<Mapping> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read mapping file {}", path.display()))?;
    Ok(Mapping::parse(&text, &path.display().to_string())?)
}

async fn target(cfg: &Config) -> anyhow::Result<Target> {
    Target::connect(cfg)
        .await
        .context("cannot connect to the tidemark side")
}

async fn inventory(cfg: &Config, a: InventoryArgs) -> anyhow::Result<ExitCode> {
    let section = SourceSection {
        uri: a.source_uri,
        database: a.source_db,
        chroma_url: a.chroma_url,
        chroma_tenant: a.chroma_tenant,
        chroma_database: a.chroma_database,
    };
    let source = Source::connect(&section).await?;
    let bar = progress_bar(None, "inventory");
    let inv = tidemark_migrate::inventory::inventory(&source, &cfg.limits).await;
    bar.finish_and_clear();
    let inv = inv?;
    print(a.json, &inv, || inv.to_text())?;
    if let Some(path) = a.write_mapping {
        let id = a
            .migration_id
            .unwrap_or_else(|| format!("dual-store-{}", chrono_date()));
        let t = tidemark_migrate::target_model(cfg);
        std::fs::write(&path, inv.draft(&section, &id, &t))
            .with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!(
            "draft mapping written to {} (check the CHECK lines and every \"?\")",
            path.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn chrono_date() -> String {
    let now = bson::DateTime::now()
        .try_to_rfc3339_string()
        .unwrap_or_default();
    now.get(..10).unwrap_or("1").replace('-', "")
}

async fn plan(cfg: &Config, a: MappingArgs) -> anyhow::Result<ExitCode> {
    let mapping = load_mapping(&a.mapping)?;
    let source = Source::connect(&mapping.source).await?;
    let t = tidemark_migrate::target_model(cfg);
    let bar = progress_bar(None, "scan");
    let plan = tidemark_migrate::plan::plan(&mapping, &source, &t, &cfg.limits).await;
    bar.finish_and_clear();
    let plan = plan?;
    print(a.json, &plan, || plan.to_text())?;
    Ok(ExitCode::SUCCESS)
}

async fn run_migration(cfg: &Config, a: RunArgs) -> anyhow::Result<ExitCode> {
    let mapping = load_mapping(&a.mapping.mapping)?;
    let source = Source::connect(&mapping.source).await?;
    let target = target(cfg).await?;
    let opts = RunOptions {
        dry_run: a.dry_run,
        batch_size: a.batch_size,
    };
    let bar = progress_bar(Some(0), "migrate");
    let report =
        tidemark_migrate::run::run(&mapping, &source, &target, &opts, &BarProgress(bar.clone()))
            .await;
    bar.finish_and_clear();
    let report = report?;
    if let Some(path) = &a.report {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("cannot write the report to {}", path.display()))?;
    }
    print(a.mapping.json, &report, || report.to_text())?;
    Ok(ExitCode::SUCCESS)
}

async fn status(cfg: &Config, a: StatusArgs) -> anyhow::Result<ExitCode> {
    let target = target(cfg).await?;
    let s = tidemark_migrate::account::status(&target, a.migration.as_deref()).await?;
    print(a.json, &s, || {
        let mut out = String::new();
        for c in &s.checkpoints {
            out.push_str(&format!(
                "{} {}: {} (last _id {}, run {})\n",
                c["migration"].as_str().unwrap_or("?"),
                c["collection"].as_str().unwrap_or("?"),
                c["state"].as_str().unwrap_or("?"),
                c["lastId"].as_str().unwrap_or("-"),
                c["runId"].as_str().unwrap_or("?"),
            ));
        }
        for (m, n) in &s.documents {
            out.push_str(&format!("migration `{m}`: {n} documents written\n"));
        }
        if out.is_empty() {
            out.push_str("no migration has run against this database\n");
        }
        out
    })?;
    Ok(ExitCode::SUCCESS)
}

async fn verify(cfg: &Config, a: MappingArgs) -> anyhow::Result<ExitCode> {
    let mapping = load_mapping(&a.mapping)?;
    let source = Source::connect(&mapping.source).await?;
    let target = target(cfg).await?;
    let account = tidemark_migrate::account::verify(&mapping, &source, &target).await?;
    print(a.json, &account, || account.to_text())?;
    Ok(if account.clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

async fn rollback(cfg: &Config, a: RollbackArgs) -> anyhow::Result<ExitCode> {
    let target = target(cfg).await?;
    let r = tidemark_migrate::rollback::rollback(&target, &a.migration, a.force).await?;
    print(a.json, &r, || r.to_text())?;
    Ok(ExitCode::SUCCESS)
}
