//! `tidemark serve`: the HTTP API (search, documents, history, put/delete) on `serve.addr`,
//! a process of its own, separate from the worker: readers scale out and restart on their
//! own, and a read outage never stalls indexing. Stops gracefully on SIGTERM/SIGINT.

use crate::common::{init_logging, runtime, stop_signal, GlobalArgs};
use anyhow::{anyhow, Context};
use std::process::ExitCode;
use std::time::Duration;
use tidemark_read::http::{serve_on, ServeOptions};

#[derive(clap::Args, Debug)]
pub struct ServeArgs {}

pub fn run(global: &GlobalArgs, _args: ServeArgs) -> anyhow::Result<ExitCode> {
    let cfg = global.load_config()?;
    init_logging(&cfg);
    let opts = ServeOptions::from_config(&cfg.serve).map_err(|e| anyhow!(e))?;
    let rt = runtime()?;
    let stop = stop_signal(&rt)?;
    let result = rt.block_on(async {
        let store = crate::common::ready_store(&cfg).await?;
        let reader = crate::common::searching_reader(&cfg, store).await?;
        reader
            .ensure_indexes()
            .await
            .context("cannot create the read indexes")?;
        let listener = tokio::net::TcpListener::bind(&cfg.serve.addr)
            .await
            .with_context(|| format!("cannot listen on serve.addr {}", cfg.serve.addr))?;
        serve_on(listener, reader, opts, stop)
            .await
            .context("the HTTP server failed")
    });
    rt.shutdown_timeout(Duration::from_secs(1));
    result?;
    Ok(ExitCode::SUCCESS)
}
