//! `tidemark embed serve`: serve the local all-MiniLM-L6-v2 model over an OpenAI-compatible API.

use crate::common::{init_logging, runtime, stop_signal, GlobalArgs};
use anyhow::Context;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(clap::Args, Debug)]
pub struct EmbedArgs {
    #[command(subcommand)]
    action: EmbedAction,
}

#[derive(clap::Subcommand, Debug)]
enum EmbedAction {
    /// Serve POST /v1/embeddings, GET /v1/models and GET /healthz until SIGINT/SIGTERM.
    Serve {
        /// Model folder (safetensors, tokenizer.json, config.json, 1_Pooling/config.json);
        /// defaults to embedder.model_dir.
        #[arg(long)]
        model_dir: Option<PathBuf>,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8090")]
        addr: SocketAddr,
    },
}

pub fn run(global: &GlobalArgs, args: EmbedArgs) -> anyhow::Result<ExitCode> {
    let cfg = global.load_config()?;
    init_logging(&cfg);
    match args.action {
        EmbedAction::Serve { model_dir, addr } => {
            let rt = runtime()?;
            let stop = stop_signal(&rt)?;
            let dir = model_dir.unwrap_or_else(|| cfg.embedder.model_dir.clone());
            let embedder = tidemark_embed::local::LocalEmbedder::load(&dir)
                .with_context(|| format!("cannot load the model from {}", dir.display()))?;
            rt.block_on(async move {
                tidemark_embed::server::serve(Arc::new(embedder), addr, stop)
                    .await
                    .with_context(|| format!("cannot serve on {addr}"))
            })?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
