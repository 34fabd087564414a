//! `tidemark embed serve`: serve the local all-MiniLM-L6-v2 model over an OpenAI-compatible API,
//! optionally rate limited as hosted APIs are (429 with Retry-After).

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
        /// Answer 429 with Retry-After past this many requests in any 60 s (0: no limit).
        #[arg(long, default_value_t = 0)]
        max_requests_per_minute: u64,
        /// Answer 429 with Retry-After past this many tokens in any 60 s (0: no limit).
        #[arg(long, default_value_t = 0)]
        max_tokens_per_minute: u64,
    },
}

pub fn run(global: &GlobalArgs, args: EmbedArgs) -> anyhow::Result<ExitCode> {
    let cfg = global.load_config()?;
    init_logging(&cfg);
    match args.action {
        EmbedAction::Serve {
            model_dir,
            addr,
            max_requests_per_minute,
            max_tokens_per_minute,
        } => {
            let limits = tidemark_embed::server_limits::ServerLimits {
                requests_per_minute: max_requests_per_minute,
                tokens_per_minute: max_tokens_per_minute,
            };
            let rt = runtime()?;
            let stop = stop_signal(&rt)?;
            let mut ecfg = cfg.embedder.clone();
            if let Some(dir) = model_dir {
                ecfg.model_dir = dir;
            }
            let embedder =
                tidemark_embed::local::LocalEmbedder::from_config(&ecfg).with_context(|| {
                    format!("cannot load the model from {}", ecfg.model_dir.display())
                })?;
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr}"))?;
                tidemark_embed::server::serve_limited(Arc::new(embedder), listener, limits, stop)
                    .await
                    .with_context(|| format!("cannot serve on {addr}"))
            })?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
