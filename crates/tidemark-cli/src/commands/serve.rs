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
        follow_activations(&reader, &cfg);
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

/// How often the server looks for an activated index.
const FOLLOW_EVERY: Duration = Duration::from_secs(2);

/// Re-reads the active index definition every [`FOLLOW_EVERY`], so searches switch to an
/// index activated while the server runs (`tidemark index activate`) without a restart.
fn follow_activations(reader: &tidemark_read::Reader, cfg: &tidemark_core::Config) {
    let (reader, cfg) = (reader.clone(), cfg.clone());
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(FOLLOW_EVERY).await;
            match reader.follow_active_index(&cfg).await {
                Ok(Some(collection)) => {
                    tracing::info!(%collection, "searching the newly activated index")
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "cannot follow the active index; searching the previous one")
                }
            }
        }
    });
}
