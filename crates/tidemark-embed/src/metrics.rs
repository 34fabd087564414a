//! The embedders' Prometheus series, process-wide (one embedder serves every batch): texts the
//! local model truncated, and for the API provider the tokens sent, the time spent waiting on
//! the budget or on the server's Retry-After, and the estimated cost. `register` adds them to
//! a registry (the worker's `/metrics`).

use prometheus::{CounterVec, IntCounter, IntCounterVec, Opts, Registry};
use std::sync::LazyLock;

/// Texts cut at the model's maximum sequence length, since start.
pub static TRUNCATED_TEXTS: LazyLock<IntCounter> = LazyLock::new(|| {
    IntCounter::new(
        "tidemark_embed_truncated_texts_total",
        "Texts cut at the local model's maximum sequence length",
    )
    .expect("valid metric")
});

/// Tokens sent to the embedding API (the server's `usage` when it reports it), by index.
pub static TOKENS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    IntCounterVec::new(
        Opts::new(
            "tidemark_embed_tokens_total",
            "Tokens sent to the embedding API",
        ),
        &["index"],
    )
    .expect("valid metric")
});

/// Seconds requests waited for the budget or a Retry-After, by index.
pub static THROTTLED_SECONDS: LazyLock<CounterVec> = LazyLock::new(|| {
    CounterVec::new(
        Opts::new(
            "tidemark_embed_throttled_seconds_total",
            "Seconds embedding requests waited for the API budget or the server's Retry-After",
        ),
        &["index"],
    )
    .expect("valid metric")
});

/// Estimated spend (`embedder.price_per_million_tokens` times tokens), by index.
pub static COST: LazyLock<CounterVec> = LazyLock::new(|| {
    CounterVec::new(
        Opts::new(
            "tidemark_embed_cost_total",
            "Estimated cost of the tokens sent, in the currency of embedder.price_per_million_tokens",
        ),
        &["index"],
    )
    .expect("valid metric")
});

/// Adds every embedder series to `registry`.
pub fn register(registry: &Registry) -> prometheus::Result<()> {
    registry.register(Box::new(TRUNCATED_TEXTS.clone()))?;
    registry.register(Box::new(TOKENS.clone()))?;
    registry.register(Box::new(THROTTLED_SECONDS.clone()))?;
    registry.register(Box::new(COST.clone()))?;
    Ok(())
}
