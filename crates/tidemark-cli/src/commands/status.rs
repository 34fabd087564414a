//! `tidemark status`: outbox counts, lag, throughput, leases and resume token ages; exit 0 when
//! healthy, 2 when the lag or the dead count exceeds `status.max_lag` / `status.max_dead`
//! (so it can serve as a probe), 1 on error. `--json` prints the report as one JSON object.

use crate::common::{init_logging, runtime, GlobalArgs};
use anyhow::Context;
use std::process::ExitCode;
use tidemark_ops::Ops;

#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(global: &GlobalArgs, args: StatusArgs) -> anyhow::Result<ExitCode> {
    let cfg = global.load_config()?;
    init_logging(&cfg);
    let report = runtime()?.block_on(async {
        let ops = Ops::connect(&cfg).await.context("cannot connect")?;
        tidemark_ops::status::status(&ops, &cfg.status)
            .await
            .context("cannot read the outbox status")
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.to_text());
    }
    Ok(if report.healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}
