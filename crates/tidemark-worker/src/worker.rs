//! The `Worker` handle: construction, one-batch and drain APIs (for tests and benchmarks), and
//! the long-running `run` loop with graceful shutdown.

use crate::claim::Claimed;
use crate::lease::LeaseClock;
use crate::metrics::Metrics;
use crate::stream::StreamPosition;
use crate::WorkerError;
use prometheus::Registry;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tidemark_chroma::ChromaClient;
use tidemark_core::Config;
use tidemark_embed::SharedEmbedder;
use tidemark_store::Store;
use tokio::sync::Notify;
use tokio::task::JoinSet;

/// What one batch (or a drain) did, by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchReport {
    /// Entries claimed and handled.
    pub claimed: usize,
    /// Due entries seen but left alone because another worker holds their document.
    pub blocked: usize,
    pub indexed: usize,
    pub unchanged: usize,
    pub superseded: usize,
    pub deleted: usize,
    pub dead: usize,
    pub retried: usize,
    /// Entries handed back without an attempt (lease about to expire, shutdown).
    pub released: usize,
}

impl BatchReport {
    pub(crate) fn add(&mut self, o: &BatchReport) {
        self.claimed += o.claimed;
        self.blocked += o.blocked;
        self.indexed += o.indexed;
        self.unchanged += o.unchanged;
        self.superseded += o.superseded;
        self.deleted += o.deleted;
        self.dead += o.dead;
        self.retried += o.retried;
        self.released += o.released;
    }
}

/// Counters of work done by this worker process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerStats {
    /// Texts sent to the embedder (a metadata-only change adds nothing here).
    pub texts_embedded: u64,
    /// Records upserted into Chroma.
    pub vectors_upserted: u64,
    /// Records whose metadata alone was updated.
    pub metadata_updates: u64,
    pub batches: u64,
    /// Most Chroma vector writes this worker had in flight at once (bounded by
    /// `worker.vector_writes`).
    pub max_vector_writes_in_flight: u64,
}

pub(crate) struct Inner {
    pub cfg: Config,
    pub store: Store,
    pub chroma: ChromaClient,
    pub embedder: SharedEmbedder,
    pub metrics: Metrics,
    pub registry: Registry,
    pub owner: String,
    pub collection: tokio::sync::Mutex<Option<String>>,
    pub texts_embedded: AtomicU64,
    pub vectors_upserted: AtomicU64,
    /// Vector writes in flight at once (across the batches in flight).
    pub vector_writes: tokio::sync::Semaphore,
    pub vector_writes_in_flight: AtomicU64,
    pub max_vector_writes_in_flight: AtomicU64,
    pub metadata_updates: AtomicU64,
    pub batches: AtomicU64,
    /// Latest resume token seen by the change stream.
    pub seen_token: Mutex<Option<StreamPosition>>,
    pub saved_token: Mutex<Option<StreamPosition>>,
    pub saved_at: Mutex<Instant>,
    /// Woken by change events and stream errors.
    pub wake: Notify,
}

/// The worker. Cheap to clone; clones share state.
#[derive(Clone)]
pub struct Worker {
    pub(crate) inner: Arc<Inner>,
}

fn default_owner() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|s| s.trim().to_string())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".into());
    format!(
        "{host}-{}-{:04x}",
        std::process::id(),
        rand::random::<u16>()
    )
}

impl Worker {
    /// Builds a worker; registers its metrics in `registry`. Nothing is contacted yet.
    pub fn new(
        cfg: Config,
        store: Store,
        chroma: ChromaClient,
        embedder: SharedEmbedder,
        registry: &Registry,
    ) -> Result<Worker, WorkerError> {
        let metrics = Metrics::register(registry)?;
        metrics
            .build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION"), embedder.model_id()])
            .set(1.0);
        let owner = if cfg.worker.owner.is_empty() {
            default_owner()
        } else {
            cfg.worker.owner.clone()
        };
        let vector_writes = cfg.worker.vector_writes.max(1);
        Ok(Worker {
            inner: Arc::new(Inner {
                cfg,
                store,
                chroma,
                embedder,
                metrics,
                registry: registry.clone(),
                owner,
                collection: tokio::sync::Mutex::new(None),
                texts_embedded: AtomicU64::new(0),
                vectors_upserted: AtomicU64::new(0),
                vector_writes: tokio::sync::Semaphore::new(vector_writes),
                vector_writes_in_flight: AtomicU64::new(0),
                max_vector_writes_in_flight: AtomicU64::new(0),
                metadata_updates: AtomicU64::new(0),
                batches: AtomicU64::new(0),
                seen_token: Mutex::new(None),
                saved_token: Mutex::new(None),
                saved_at: Mutex::new(Instant::now()),
                wake: Notify::new(),
            }),
        })
    }

    /// The lease owner name of this worker.
    pub fn owner(&self) -> &str {
        &self.inner.owner
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    pub fn stats(&self) -> WorkerStats {
        let i = &self.inner;
        WorkerStats {
            texts_embedded: i.texts_embedded.load(Ordering::Relaxed),
            vectors_upserted: i.vectors_upserted.load(Ordering::Relaxed),
            metadata_updates: i.metadata_updates.load(Ordering::Relaxed),
            batches: i.batches.load(Ordering::Relaxed),
            max_vector_writes_in_flight: i.max_vector_writes_in_flight.load(Ordering::Relaxed),
        }
    }

    /// The Chroma collection this worker writes: `<namespace>__<model-slug>`.
    pub fn collection_name(&self) -> String {
        self.inner.collection_name()
    }

    /// The Chroma collection id (created on first use).
    pub async fn collection_id(&self) -> Result<String, WorkerError> {
        Ok(self.inner.collection_id().await?)
    }

    /// Creates the schema (idempotent) and the worker's lock index.
    pub async fn init(&self) -> Result<(), WorkerError> {
        self.inner.store.ensure_schema().await?;
        self.inner.ensure_lock_index().await?;
        Ok(())
    }

    /// Claims and processes at most one batch of due entries.
    pub async fn process_once(&self) -> Result<BatchReport, WorkerError> {
        let claimed = self.inner.claim(self.inner.cfg.worker.batch_size).await?;
        self.process_claimed(claimed).await
    }

    /// Processes a claimed batch (possibly empty) and releases its document locks.
    async fn process_claimed(&self, claimed: Claimed) -> Result<BatchReport, WorkerError> {
        let inner = &self.inner;
        let mut report = BatchReport {
            blocked: claimed.blocked,
            ..Default::default()
        };
        if !claimed.entries.is_empty() {
            inner.batches.fetch_add(1, Ordering::Relaxed);
            inner
                .metrics
                .batch_size
                .observe(claimed.entries.len() as f64);
            let ids: Vec<_> = claimed.entries.iter().map(|e| e.id).collect();
            let clock = LeaseClock::new(
                claimed.docs.clone(),
                ids,
                claimed.at,
                inner.cfg.worker.lease,
            );
            let result = tokio::select! {
                r = inner.process_batch(claimed.entries, &clock) => r,
                _ = inner.keep_alive(&clock) => unreachable!("keep_alive never returns"),
            };
            match result {
                Ok(r) => report.add(&r),
                Err(e) => {
                    inner.release_docs(&claimed.docs).await;
                    return Err(e);
                }
            }
        }
        inner.release_docs(&claimed.docs).await;
        Ok(report)
    }

    /// Processes batches until no entry is due (entries waiting for a later retry stay
    /// pending). Waits briefly while other workers hold the remaining documents.
    pub async fn drain(&self) -> Result<BatchReport, WorkerError> {
        let mut total = BatchReport::default();
        loop {
            let r = self.process_once().await?;
            total.add(&BatchReport { blocked: 0, ..r });
            if r.claimed == 0 {
                if r.blocked == 0 {
                    return Ok(total);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    /// Updates the outbox gauges (pending, dead, lag) and the resume token age.
    pub async fn refresh_gauges(&self) -> Result<(), WorkerError> {
        self.inner.refresh_gauges().await
    }

    /// Hands back every lease and document lock this worker holds.
    pub async fn release_all(&self) {
        self.inner.release_all().await
    }

    /// Runs until `shutdown` completes: change stream, sweeps, batches, gauges and the HTTP
    /// endpoints. On shutdown it stops claiming, lets the batch in hand finish (or releases it
    /// when `worker.shutdown_deadline` is near), saves the resume token and returns `Ok`.
    pub async fn run(&self, shutdown: impl Future<Output = ()> + Send) -> Result<(), WorkerError> {
        let inner = self.inner.clone();
        let deadline = inner.cfg.worker.shutdown_deadline;
        let mut shutdown = std::pin::pin!(shutdown);
        // A stop while starting (e.g. MongoDB not reachable yet) ends the start-up at once:
        // nothing is claimed yet, so there is nothing to finish or release.
        tokio::select! {
            r = self.init() => r?,
            _ = &mut shutdown => {
                tracing::info!(owner = %inner.owner, "stopped during start-up");
                return Ok(());
            }
        }
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut tasks = Vec::new();
        if !inner.cfg.metrics.addr.is_empty() {
            let addr = inner.cfg.metrics.addr.clone();
            let listener =
                tokio::net::TcpListener::bind(&addr)
                    .await
                    .map_err(|e| WorkerError::Http {
                        addr: addr.clone(),
                        reason: e.to_string(),
                    })?;
            let mut rx = stop_rx.clone();
            let srv = crate::server::serve_http(self.clone(), listener, async move {
                let _ = rx.wait_for(|s| *s).await;
            });
            tasks.push(tokio::spawn(async move {
                if let Err(e) = srv.await {
                    tracing::error!(error = %e, "metrics server failed");
                }
            }));
        }
        tasks.push(tokio::spawn(crate::stream::stream_loop(
            inner.clone(),
            stop_rx.clone(),
        )));
        let gauges = self.clone();
        let mut grx = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                if let Err(e) = gauges.refresh_gauges().await {
                    tracing::debug!(error = %e, "gauge refresh failed");
                }
                tokio::select! {
                    _ = grx.wait_for(|s| *s) => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }));
        tracing::info!(owner = %inner.owner, collection = %inner.collection_name(), "worker started");

        let mut stopping = false;
        let mut stop_started = Instant::now();
        let lanes = inner.cfg.worker.concurrency;
        // Batches being processed. Claiming stays in this loop (one claim at a time), so the
        // lanes of one process never compete for the same documents; a document held by a
        // batch in flight is "blocked" for the next claim until that batch releases it.
        let mut in_flight: JoinSet<Result<BatchReport, WorkerError>> = JoinSet::new();
        'run: while !stopping {
            while in_flight.len() >= lanes {
                tokio::select! {
                    Some(r) = in_flight.join_next() => log_batch(r),
                    _ = &mut shutdown => { stop_started = Instant::now(); break 'run; }
                }
            }
            let snapshot = inner.seen_token.lock().unwrap().clone();
            let claimed = tokio::select! {
                r = inner.claim(inner.cfg.worker.batch_size) => r,
                _ = &mut shutdown => { stop_started = Instant::now(); break 'run; }
            };
            let wait = match claimed {
                Ok(c) if !c.entries.is_empty() => {
                    let w = self.clone();
                    in_flight.spawn(async move { w.process_claimed(c).await });
                    continue;
                }
                Ok(c) => {
                    inner.release_docs(&c.docs).await;
                    if c.blocked > 0 {
                        inner.cfg.worker.batch_wait.max(Duration::from_millis(50))
                    } else {
                        // Nothing due and nothing in flight: every change seen before the
                        // snapshot is done, so the stream may resume after it.
                        if in_flight.is_empty() {
                            if let Some(t) = snapshot {
                                inner.save_token(t).await;
                            }
                        }
                        inner.idle_wait().await
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "claiming failed; will sweep again");
                    Duration::from_secs(1)
                }
            };
            tokio::select! {
                _ = &mut shutdown => { stopping = true; stop_started = Instant::now(); }
                Some(r) = in_flight.join_next() => log_batch(r),
                _ = inner.wake.notified() => {
                    // Collect a batch's worth of changes before claiming.
                    tokio::select! {
                        _ = &mut shutdown => { stopping = true; stop_started = Instant::now(); }
                        _ = tokio::time::sleep(inner.cfg.worker.batch_wait) => {}
                    }
                }
                _ = tokio::time::sleep(wait) => {}
            }
        }
        let mut finished = true;
        if !in_flight.is_empty() {
            tracing::info!(
                batches = in_flight.len(),
                "shutdown requested; finishing the batches in hand"
            );
            let finish = async {
                while let Some(r) = in_flight.join_next().await {
                    log_batch(r);
                }
            };
            if tokio::time::timeout(deadline.mul_f64(0.6), finish)
                .await
                .is_err()
            {
                tracing::warn!("batches did not finish before the deadline; releasing them");
                finished = false;
                in_flight.abort_all();
                while in_flight.join_next().await.is_some() {}
            }
        }
        if finished {
            // Everything seen before this snapshot is done when nothing is due: save it, so
            // the next start resumes the stream here.
            let snapshot = inner.seen_token.lock().unwrap().clone();
            if let (Some(t), Ok(false)) = (snapshot, inner.anything_due().await) {
                inner.save_token(t).await;
            }
        }
        let _ = stop_tx.send(true);
        inner.release_all().await;
        // The token is saved only at points where everything seen before it was done; what
        // is still pending is found again by the start-up sweep.
        let remaining = deadline.saturating_sub(stop_started.elapsed());
        for t in tasks {
            let _ = tokio::time::timeout(remaining.min(Duration::from_secs(2)), t).await;
        }
        tracing::info!(owner = %inner.owner, "worker stopped");
        Ok(())
    }
}

/// Logs the outcome of a batch that ran in its own task.
fn log_batch(r: Result<Result<BatchReport, WorkerError>, tokio::task::JoinError>) {
    match r {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "batch failed; its entries will be swept again"),
        Err(e) if e.is_cancelled() => {}
        Err(e) => {
            tracing::error!(error = %e, "batch task panicked; its entries will be swept again")
        }
    }
}

impl Inner {
    pub fn collection_name(&self) -> String {
        tidemark_core::collection_name(&self.cfg.chroma.namespace, self.embedder.model_id())
    }

    pub async fn collection_id(&self) -> Result<String, tidemark_chroma::ChromaError> {
        let mut g = self.collection.lock().await;
        if let Some(id) = g.as_ref() {
            return Ok(id.clone());
        }
        let c = self
            .chroma
            .get_or_create_collection(&self.collection_name())
            .await?;
        *g = Some(c.id.clone());
        Ok(c.id)
    }

    /// Forgets the cached collection id (e.g. after the collection was deleted).
    pub async fn forget_collection(&self) {
        *self.collection.lock().await = None;
    }

    /// How long to sleep when nothing is due: until the next scheduled retry, at most the sweep
    /// interval.
    async fn idle_wait(&self) -> Duration {
        let sweep = self.cfg.worker.sweep_interval;
        match self.next_due_in().await {
            Ok(Some(d)) => d.min(sweep).max(Duration::from_millis(10)),
            _ => sweep,
        }
    }
}
