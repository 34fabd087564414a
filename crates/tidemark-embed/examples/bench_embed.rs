//! Embedding throughput of all-MiniLM-L6-v2: in process, and through `embed serve` over the
//! OpenAI-compatible API on loopback, at batch 1 and 32, on texts of about 50 tokens.
//! A benchmark, not a test: it prints figures.
//!
//! cargo run --release -p tidemark-embed --example bench_embed -- .tidemark/models/all-MiniLM-L6-v2

use std::sync::Arc;
use std::time::{Duration, Instant};
use tidemark_core::config::{EmbedderConfig, EmbedderKind};
use tidemark_embed::local::LocalEmbedder;
use tidemark_embed::openai::OpenAiEmbedder;
use tidemark_embed::{Embedder, SharedEmbedder};

const WORDS: &[&str] = &[
    "tide", "harbour", "vector", "document", "sailing", "bread", "oven", "planet", "orbit",
    "garden", "soil", "river", "mountain", "storm", "cloud", "engine", "signal", "market",
];

/// About 50 tokens: 40 words plus punctuation, varied per index.
fn text(i: usize) -> String {
    let mut s = String::new();
    for k in 0..40 {
        s.push_str(WORDS[(i * 7 + k * 3) % WORDS.len()]);
        s.push(if k % 10 == 9 { '.' } else { ' ' });
    }
    s
}

async fn measure(e: &dyn Embedder, batch: usize, budget: Duration) -> f64 {
    let _ = e.embed(&[text(0)]).await.unwrap(); // warm-up
    let started = Instant::now();
    let mut n = 0usize;
    let mut i = 0usize;
    while started.elapsed() < budget {
        let texts: Vec<String> = (0..batch).map(|k| text(i + k)).collect();
        i += batch;
        n += e.embed(&texts).await.unwrap().len();
    }
    n as f64 / started.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| ".tidemark/models/all-MiniLM-L6-v2".into());
    let engine = tidemark_embed::local::LocalEngine::Candle;
    let local: SharedEmbedder = Arc::new(
        LocalEmbedder::load(dir.as_ref(), engine, std::path::Path::new("")).expect("model folder"),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(tidemark_embed::server::serve_on(
        local.clone(),
        listener,
        std::future::pending::<()>(),
    ));
    let remote = OpenAiEmbedder::from_config(&EmbedderConfig {
        provider: EmbedderKind::Openai,
        base_url: format!("http://{addr}"),
        model: "all-MiniLM-L6-v2".into(),
        encoding_format: "base64".into(),
        batch_size: 32,
        ..EmbedderConfig::default()
    })
    .unwrap();
    let budget = Duration::from_secs(4);
    println!("{:<34} {:>6} {:>14}", "path", "batch", "embeddings/s");
    for batch in [1, 32] {
        let r = measure(local.as_ref(), batch, budget).await;
        println!("{:<34} {:>6} {:>14.1}", "local, in process", batch, r);
        let r = measure(&remote, batch, budget).await;
        println!(
            "{:<34} {:>6} {:>14.1}",
            "local via embed serve (base64)", batch, r
        );
    }
}
