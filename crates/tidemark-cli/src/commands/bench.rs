//! `tidemark bench`: runs the benchmark (crate `tidemark-bench`) against the configured
//! services, prints the table of figures with their goals, and writes them as JSON (`--out`),
//! as Markdown (`--markdown`) and into BENCHMARKS.md's generated section (`--update-doc`).
//! It reports; it never fails on a number (exit 1 only when it cannot run at all).
//!
//! Every run works in fresh databases and Chroma namespaces named `<name>_<part>` and removes
//! them at the end (`--keep` leaves them). The worker under test is this same binary, started
//! as `tidemark worker` in its own process.

use crate::common::{self, GlobalArgs};
use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tidemark_bench::{BenchOptions, Counts, Section};

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Where to write the figures as JSON.
    #[arg(long, default_value = "bench-results.json")]
    pub out: PathBuf,
    /// Small counts: every figure once, in seconds (numbers are not meaningful).
    #[arg(long)]
    pub quick: bool,
    /// Run only these sections (comma-separated): write, drain, local, lag, memory, long, migrate, index, scale, embedder, backlog.
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Prefix of the databases and Chroma namespaces of this run (letters, digits, `_`);
    /// default `bench_<pid>_<unix time>`.
    #[arg(long)]
    pub name: Option<String>,
    /// Keep the databases and Chroma collections for inspection.
    #[arg(long)]
    pub keep: bool,
    /// Only remove what a run named --name left behind (databases and Chroma collections).
    #[arg(long, requires = "name")]
    pub cleanup: bool,
    /// Backlog drained with the hashing embedder (default 20000; quick 300).
    #[arg(long)]
    pub drain_backlog: Option<usize>,
    /// Backlog of the peak memory and catch-up measurement (default 100000; quick 500).
    #[arg(long)]
    pub memory_backlog: Option<usize>,
    /// Backlog drained with the local model (default 1000; quick 24).
    #[arg(long)]
    pub local_backlog: Option<usize>,
    /// Worker batch size, also Chroma's batch size when measured alone (default 64).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Seconds of steady load in the lag measurement (default 20; quick 2).
    #[arg(long)]
    pub lag_seconds: Option<f64>,
    /// Live writes per second during the index build (default a quarter of the corpus drain
    /// measured in the same run); a fixed rate makes two runs' lags comparable.
    #[arg(long)]
    pub index_live_rate: Option<f64>,
    /// The `tidemark` binary to start as the worker (default: this one).
    #[arg(long)]
    pub worker_bin: Option<PathBuf>,
    /// Also write the run as a Markdown section (command, machine, load, figures, notes).
    #[arg(long)]
    pub markdown: Option<PathBuf>,
    /// Replace the generated section of this document (e.g. BENCHMARKS.md) with the run.
    #[arg(long)]
    pub update_doc: Option<PathBuf>,
    /// The command line the Markdown names (default: this process's arguments).
    #[arg(long)]
    pub command: Option<String>,
}

pub fn run(global: &GlobalArgs, args: BenchArgs) -> anyhow::Result<ExitCode> {
    let mut cfg = global.load_config()?;
    common::init_logging(&cfg);
    // The bench's worker processes may run elsewhere than here: absolute paths.
    for path in [&mut cfg.embedder.model_dir, &mut cfg.embedder.onnx_runtime] {
        if path.is_relative() {
            if let Ok(abs) = std::fs::canonicalize(&*path) {
                *path = abs;
            }
        }
    }
    let mut counts = if args.quick {
        Counts::quick()
    } else {
        Counts::full()
    };
    if let Some(n) = args.drain_backlog {
        counts.drain_backlog = n.max(1);
    }
    if let Some(n) = args.memory_backlog {
        counts.memory_backlog = n.max(1);
    }
    if let Some(n) = args.local_backlog {
        counts.local_backlog = n.max(1);
    }
    if let Some(n) = args.batch_size {
        counts.batch_size = n.max(1);
    }
    if let Some(s) = args.lag_seconds {
        counts.lag_seconds = s.max(0.5);
    }
    counts.index_live_rate = args.index_live_rate.map(|r| r.max(1.0));
    let sections = if args.only.is_empty() {
        Section::ALL.to_vec()
    } else {
        let mut v = Vec::new();
        for s in &args.only {
            match Section::parse(s.trim()) {
                Some(x) => v.push(x),
                None => bail!(
                    "--only: unknown section `{s}` (write, drain, local, lag, memory, long, migrate)"
                ),
            }
        }
        v
    };
    let name = match args.name {
        Some(n) => n,
        None => format!(
            "bench_{}_{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        ),
    };
    if name.is_empty()
        || name.len() > 40
        || name.contains("__")
        || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        bail!("--name `{name}`: use 1-40 letters, digits or single `_`");
    }
    if args.cleanup {
        let problems = common::runtime()?.block_on(tidemark_bench::cleanup(&cfg, &name))?;
        for p in &problems {
            eprintln!("warning: {p}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    // A document that cannot be updated fails now, not after the run.
    let doc = match &args.update_doc {
        Some(path) => Some((path.clone(), read_doc(path)?)),
        None => None,
    };
    let worker_bin = match args.worker_bin {
        Some(p) => p,
        None => std::env::current_exe().context("cannot find this executable")?,
    };
    let opts = BenchOptions {
        cfg,
        config_file: global.config.clone(),
        name,
        quick: args.quick,
        counts,
        sections,
        worker_bin,
        keep: args.keep,
    };
    let report = common::runtime()?.block_on(tidemark_bench::run(opts))?;
    print!("{}", report.table());
    let json = serde_json::to_string_pretty(&report.to_json())?;
    std::fs::write(&args.out, json + "\n")
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    println!("figures written to {}", args.out.display());
    if args.markdown.is_some() || doc.is_some() {
        write_markdown(&report, args.command, args.markdown.as_deref(), doc)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The text of the document `--update-doc` names.
fn read_doc(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| {
        format!(
            "--update-doc {}: cannot read it; give an existing document",
            path.display()
        )
    })
}

/// Writes the run as Markdown to `markdown` and into the generated section of `doc` (its path
/// and the text read before the run), naming `command` (default: this process's arguments).
fn write_markdown(
    report: &tidemark_bench::report::Report,
    command: Option<String>,
    markdown: Option<&Path>,
    doc: Option<(PathBuf, String)>,
) -> anyhow::Result<()> {
    let command = command.unwrap_or_else(|| {
        let argv: Vec<String> = std::env::args().skip(1).collect();
        format!("tidemark {}", argv.join(" "))
    });
    let md = tidemark_bench::markdown::section(report, &command);
    if let Some(path) = markdown {
        std::fs::write(path, &md).with_context(|| format!("cannot write {}", path.display()))?;
        println!("Markdown written to {}", path.display());
    }
    if let Some((path, text)) = doc {
        let updated = tidemark_bench::markdown::replace_section(&text, &md);
        // Written whole through a temporary file: an interrupted write leaves the old one.
        let tmp = path.with_extension("md.tmp");
        std::fs::write(&tmp, updated)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .with_context(|| format!("cannot update {}", path.display()))?;
        println!("generated section of {} replaced", path.display());
    }
    Ok(())
}
