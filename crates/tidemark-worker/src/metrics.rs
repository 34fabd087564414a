//! Prometheus metrics of the worker (prefix `tidemark_`), registered in a caller-provided
//! registry so that tests and embedding applications can read them.

use prometheus::{
    Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    Opts, Registry,
};

/// Every metric named in DESIGN.md "Observability".
#[derive(Clone)]
pub struct Metrics {
    pub outbox_pending: IntGauge,
    pub outbox_dead: IntGauge,
    /// Age in seconds of the oldest pending entry (0 when none).
    pub outbox_lag_seconds: Gauge,
    /// Entries finished, by result: indexed, unchanged, superseded, deleted, dead, retry.
    pub entries_processed_total: IntCounterVec,
    /// Seconds from the entry's commit (`createdAt`) to done.
    pub end_to_end_seconds: Histogram,
    /// Seconds from the entry's commit to its claim (at each claim, a retry's too), by kind.
    pub queue_seconds: HistogramVec,
    pub embed_seconds: Histogram,
    /// Seconds of Chroma writes (upsert, metadata update, delete).
    pub vector_write_seconds: HistogramVec,
    /// Entries per claimed batch.
    pub batch_size: Histogram,
    /// Retries scheduled, by stage: mongo, chroma_read, embed, vector_write.
    pub retries_total: IntCounterVec,
    /// Due entries a claim skipped because another worker held their document.
    pub claim_blocked_total: IntCounter,
    /// Claim queries asked again with a wider window (see `window`).
    pub claim_widenings_total: IntCounter,
    /// Live writes whose part for a building index was handed to the build's queue, by index.
    pub handoffs_total: IntCounterVec,
    /// Live writes not written to a building index because its build will read the document
    /// by itself (it has not passed it yet), by index.
    pub left_to_build_total: IntCounterVec,
    /// Documents indexed after reading their stored vectors (`read`), or without, because
    /// their entry said the document was new (`skipped`).
    pub stored_reads_total: IntCounterVec,
    /// Change stream (re)starts other than the first, by reason.
    pub change_stream_restarts_total: IntCounterVec,
    /// Seconds since the saved resume token was last advanced.
    pub resume_token_age_seconds: Gauge,
    /// Always 1; labels carry the version and the embedding model.
    pub build_info: GaugeVec,
}

fn secs_buckets() -> Vec<f64> {
    vec![
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0,
    ]
}

impl Metrics {
    /// Creates and registers the metrics. Fails if they are already registered in `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<Metrics> {
        let m = Metrics {
            outbox_pending: IntGauge::new("tidemark_outbox_pending", "Pending outbox entries")?,
            outbox_dead: IntGauge::new("tidemark_outbox_dead", "Dead outbox entries")?,
            outbox_lag_seconds: Gauge::new(
                "tidemark_outbox_lag_seconds",
                "Age of the oldest pending outbox entry in seconds",
            )?,
            entries_processed_total: IntCounterVec::new(
                Opts::new(
                    "tidemark_entries_processed_total",
                    "Outbox entries processed, by result",
                ),
                &["result"],
            )?,
            end_to_end_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "tidemark_end_to_end_seconds",
                    "Seconds from outbox commit to done",
                )
                .buckets(secs_buckets()),
            )?,
            queue_seconds: HistogramVec::new(
                HistogramOpts::new(
                    "tidemark_queue_seconds",
                    "Seconds from outbox commit to claim, by kind (live: an application's write; build: an index build's)",
                )
                .buckets(secs_buckets()),
                &["kind"],
            )?,
            embed_seconds: Histogram::with_opts(
                HistogramOpts::new("tidemark_embed_seconds", "Seconds per embedder call")
                    .buckets(secs_buckets()),
            )?,
            vector_write_seconds: HistogramVec::new(
                HistogramOpts::new(
                    "tidemark_vector_write_seconds",
                    "Seconds per Chroma write, by operation",
                )
                .buckets(secs_buckets()),
                &["op"],
            )?,
            batch_size: Histogram::with_opts(
                HistogramOpts::new("tidemark_batch_size", "Entries per claimed batch").buckets(
                    vec![
                        1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
                    ],
                ),
            )?,
            retries_total: IntCounterVec::new(
                Opts::new("tidemark_retries_total", "Retries scheduled, by stage"),
                &["stage"],
            )?,
            claim_blocked_total: IntCounter::new(
                "tidemark_claim_blocked_total",
                "Due entries skipped by a claim because another worker held their document",
            )?,
            claim_widenings_total: IntCounter::new(
                "tidemark_claim_widenings_total",
                "Claim queries asked again because the claim window held too few due entries",
            )?,
            handoffs_total: IntCounterVec::new(
                Opts::new(
                    "tidemark_handoffs_total",
                    "Live writes handed on to a building index's queue, by index",
                ),
                &["index"],
            )?,
            left_to_build_total: IntCounterVec::new(
                Opts::new(
                    "tidemark_left_to_build_total",
                    "Live writes left to a building index's build, which has not read their document yet, by index",
                ),
                &["index"],
            )?,
            stored_reads_total: IntCounterVec::new(
                Opts::new(
                    "tidemark_stored_reads_total",
                    "Documents indexed after reading their stored vectors, or skipping the read for new documents",
                ),
                &["result"],
            )?,
            change_stream_restarts_total: IntCounterVec::new(
                Opts::new(
                    "tidemark_change_stream_restarts_total",
                    "Change stream restarts, by reason",
                ),
                &["reason"],
            )?,
            resume_token_age_seconds: Gauge::new(
                "tidemark_resume_token_age_seconds",
                "Seconds since the saved resume token last advanced",
            )?,
            build_info: GaugeVec::new(
                Opts::new("tidemark_build_info", "Build information"),
                &["version", "model"],
            )?,
        };
        registry.register(Box::new(m.outbox_pending.clone()))?;
        registry.register(Box::new(m.outbox_dead.clone()))?;
        registry.register(Box::new(m.outbox_lag_seconds.clone()))?;
        registry.register(Box::new(m.entries_processed_total.clone()))?;
        registry.register(Box::new(m.end_to_end_seconds.clone()))?;
        registry.register(Box::new(m.queue_seconds.clone()))?;
        registry.register(Box::new(m.embed_seconds.clone()))?;
        registry.register(Box::new(m.vector_write_seconds.clone()))?;
        registry.register(Box::new(m.batch_size.clone()))?;
        registry.register(Box::new(m.retries_total.clone()))?;
        registry.register(Box::new(m.claim_blocked_total.clone()))?;
        registry.register(Box::new(m.claim_widenings_total.clone()))?;
        registry.register(Box::new(m.handoffs_total.clone()))?;
        registry.register(Box::new(m.left_to_build_total.clone()))?;
        registry.register(Box::new(m.stored_reads_total.clone()))?;
        registry.register(Box::new(m.change_stream_restarts_total.clone()))?;
        registry.register(Box::new(m.resume_token_age_seconds.clone()))?;
        registry.register(Box::new(m.build_info.clone()))?;
        tidemark_embed::metrics::register(registry)?;
        Ok(m)
    }

    /// Observes how long each of a batch's entries waited from its commit to this claim.
    pub fn observe_queued(&self, entries: &[tidemark_core::OutboxEntry]) {
        let now = bson::DateTime::now().timestamp_millis();
        for e in entries {
            let kind = if e.indexes.is_empty() {
                "live"
            } else {
                "build"
            };
            let ms = (now - e.created_at.timestamp_millis()).max(0);
            self.queue_seconds
                .with_label_values(&[kind])
                .observe(ms as f64 / 1000.0);
        }
    }
}

/// Renders a registry in the Prometheus text format.
pub fn render(registry: &Registry) -> String {
    use prometheus::Encoder;
    let mut buf = Vec::new();
    let _ = prometheus::TextEncoder::new().encode(&registry.gather(), &mut buf);
    String::from_utf8(buf).unwrap_or_default()
}
