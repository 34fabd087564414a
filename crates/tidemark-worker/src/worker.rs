//! The `Worker` handle: construction, and the one-batch and drain APIs (for tests, benchmarks
//! and `tidemark worker --once`). It owns the pieces (outbox repository, locks, executor,
//! positions) and hands each stage only the ones it needs; the long-running loop is in `run`.

use crate::batch::{BatchCtx, LaneRef};
use crate::claim::{Claimed, Claimer};
use crate::execute::{Executor, Stats};
use crate::lanes::LaneSet;
use crate::lease::{Claims, LeaseClock};
use crate::locks::DocLocks;
use crate::metrics::Metrics;
use crate::plan::Shape;
use crate::positions::Positions;
use crate::record::Recorder;
use crate::report::{BatchReport, WorkerStats};
use crate::WorkerError;
use prometheus::Registry;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tidemark_chroma::{ChromaClient, ChromaIndex};
use tidemark_core::{Config, VectorIndex};
use tidemark_embed::SharedEmbedder;
use tidemark_store::outbox::Outbox;
use tidemark_store::Store;
use tokio::sync::Notify;

/// The pieces of a worker; each stage borrows the few it needs.
pub(crate) struct Parts {
    pub cfg: Config,
    pub store: Store,
    pub outbox: Outbox,
    pub locks: DocLocks,
    pub exec: Executor,
    pub shape: Shape,
    pub positions: Arc<Positions>,
    /// Woken by change events and stream errors.
    pub wake: Arc<Notify>,
    pub metrics: Metrics,
    pub registry: Registry,
    pub owner: String,
    /// For the lanes of further indexes (None: a custom `VectorIndex`, written alone).
    pub chroma: Option<ChromaClient>,
    /// The further indexes written besides the active one (see `lanes`).
    pub lanes: std::sync::RwLock<LaneSet>,
    /// The definition the configuration's index is (the active one at start-up).
    pub primary: std::sync::OnceLock<String>,
    /// Embedding usage already added to the `usage` collection (see `usage`).
    pub usage: crate::usage::Flushed,
    /// The claim query's range (see `window`).
    pub window: std::sync::Mutex<crate::window::ClaimWindow>,
    /// What the gauge refresher remembers between refreshes (see `gauges`).
    pub gauges: std::sync::Mutex<crate::gauges::GaugeState>,
}

/// The worker. Cheap to clone; clones share state.
#[derive(Clone)]
pub struct Worker {
    pub(crate) parts: Arc<Parts>,
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
    /// A worker writing the Chroma collection `<chroma.namespace>__<model-slug>` through
    /// `chroma`; registers its metrics in `registry`. Nothing is contacted yet.
    pub fn new(
        cfg: Config,
        store: Store,
        chroma: ChromaClient,
        embedder: SharedEmbedder,
        registry: &Registry,
    ) -> Result<Worker, WorkerError> {
        let name = tidemark_core::collection_name(&cfg.chroma.namespace, embedder.model_id());
        let index: Arc<dyn VectorIndex> = Arc::new(ChromaIndex::new(chroma.clone(), name));
        let mut w = Worker::with_index(cfg, store, index, embedder, registry)?;
        if let Some(p) = Arc::get_mut(&mut w.parts) {
            p.chroma = Some(chroma);
        }
        Ok(w)
    }

    /// A worker writing `index` (any [`VectorIndex`] implementation).
    pub fn with_index(
        cfg: Config,
        store: Store,
        index: Arc<dyn VectorIndex>,
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
        let db = store.database().clone();
        let shape = Shape {
            model: embedder.model_id().to_string(),
            text: cfg.chunking.resolve(&cfg.embedder)?,
            counter: Arc::new(crate::execute::EmbedderCounter(embedder.clone())),
        };
        let exec = Executor {
            index,
            embedder,
            metrics: metrics.clone(),
            stats: Arc::new(Stats::default()),
            vector_writes: Arc::new(crate::slots::WriteSlots::new(cfg.worker.vector_writes)),
        };
        Ok(Worker {
            parts: Arc::new(Parts {
                outbox: Outbox::new(&db),
                locks: DocLocks::new(&db, &owner),
                positions: Arc::new(Positions::new(&db, &cfg.worker.group)),
                exec,
                shape,
                wake: Arc::new(Notify::new()),
                metrics,
                registry: registry.clone(),
                owner,
                store,
                cfg,
                chroma: None,
                lanes: std::sync::RwLock::new(Arc::new(Vec::new())),
                primary: std::sync::OnceLock::new(),
                usage: Default::default(),
                window: Default::default(),
                gauges: Default::default(),
            }),
        })
    }

    /// The lease owner name of this worker.
    pub fn owner(&self) -> &str {
        &self.parts.owner
    }

    pub fn metrics(&self) -> &Metrics {
        &self.parts.metrics
    }

    pub fn stats(&self) -> WorkerStats {
        let s = &self.parts.exec.stats;
        WorkerStats {
            texts_embedded: s.texts_embedded.load(Ordering::Relaxed),
            vectors_upserted: s.vectors_upserted.load(Ordering::Relaxed),
            metadata_updates: s.metadata_updates.load(Ordering::Relaxed),
            batches: s.batches.load(Ordering::Relaxed),
            max_vector_writes_in_flight: s.max_vector_writes_in_flight.load(Ordering::Relaxed),
        }
    }

    /// The vector index this worker writes.
    pub fn index(&self) -> &Arc<dyn VectorIndex> {
        &self.parts.exec.index
    }

    /// The name of the index (the Chroma collection) this worker writes.
    pub fn collection_name(&self) -> String {
        self.parts.exec.index.name().to_string()
    }

    /// The store's id of the index (the Chroma collection UUID; created on first use).
    pub async fn collection_id(&self) -> Result<String, WorkerError> {
        Ok(self.parts.exec.index.ensure().await?)
    }

    /// Creates the schema (idempotent) and the worker's lock index; checks the configuration
    /// against the active index definition (made from it on a fresh install) and loads the
    /// lanes of the other live indexes.
    pub async fn init(&self) -> Result<(), WorkerError> {
        self.parts.store.ensure_schema().await?;
        self.parts.locks.ensure_index().await?;
        let active = crate::lanes::check_active(self).await?;
        self.parts.exec.embedder.set_index(&active.name);
        let _ = self.parts.primary.set(active.name);
        crate::lanes::refresh(self).await?;
        Ok(())
    }

    /// The further indexes in force now.
    pub(crate) fn lanes(&self) -> LaneSet {
        self.parts.lanes.read().expect("lanes lock").clone()
    }

    /// Names of the further indexes this worker writes besides the active one.
    pub fn further_indexes(&self) -> Vec<String> {
        self.lanes().iter().map(|l| l.def.name.clone()).collect()
    }

    pub(crate) fn claimer(&self) -> Claimer<'_> {
        let p = &self.parts;
        Claimer {
            outbox: &p.outbox,
            locks: &p.locks,
            owner: &p.owner,
            window: &p.window,
            lease: p.cfg.worker.lease,
            metrics: &p.metrics,
        }
    }

    /// Claims and processes at most one batch of due entries.
    pub async fn process_once(&self) -> Result<BatchReport, WorkerError> {
        let claimed = self
            .claimer()
            .claim(self.parts.cfg.worker.batch_size)
            .await?;
        self.process_claimed(claimed).await
    }

    /// Processes a claimed batch (possibly empty) and releases its document locks.
    pub(crate) async fn process_claimed(
        &self,
        claimed: Claimed,
    ) -> Result<BatchReport, WorkerError> {
        let p = &self.parts;
        let mut report = BatchReport {
            blocked: claimed.blocked,
            ..Default::default()
        };
        if !claimed.entries.is_empty() {
            p.exec.stats.batches.fetch_add(1, Ordering::Relaxed);
            p.metrics.batch_size.observe(claimed.entries.len() as f64);
            p.metrics.observe_queued(&claimed.entries);
            let ids: Vec<_> = claimed.entries.iter().map(|e| e.id).collect();
            let clock = LeaseClock::new(claimed.docs.clone(), ids, claimed.at, p.cfg.worker.lease);
            let claims = Claims {
                clock,
                outbox: &p.outbox,
                locks: &p.locks,
                owner: &p.owner,
            };
            let extra = self.lanes();
            let mut lanes = vec![LaneRef {
                name: p.primary.get().map(String::as_str).unwrap_or_default(),
                exec: &p.exec,
                shape: &p.shape,
                building: false,
                cursor: None,
            }];
            for l in extra.iter() {
                let building = l.building.load(Ordering::Relaxed);
                // Read after the claim, so after the commit of every change claimed.
                let cursor = match building {
                    true => crate::lanes::build_cursor(p.store.database(), &l.def.name).await,
                    false => None,
                };
                lanes.push(LaneRef {
                    name: &l.def.name,
                    exec: &l.exec,
                    shape: &l.shape,
                    building,
                    cursor,
                });
            }
            let ctx = BatchCtx {
                db: p.store.database(),
                behind: claimed.behind,
                lanes,
                recorder: Recorder {
                    db: p.store.database(),
                    outbox: &p.outbox,
                    owner: &p.owner,
                    cfg: &p.cfg.worker,
                    metrics: &p.metrics,
                },
            };
            let result = tokio::select! {
                r = ctx.process(claimed.entries, &claims) => r,
                _ = claims.keep_alive() => unreachable!("keep_alive never returns"),
            };
            match result {
                Ok(r) => report.add(&r),
                Err(e) => {
                    self.release_docs(&claimed.docs).await;
                    return Err(e);
                }
            }
        }
        self.release_docs(&claimed.docs).await;
        Ok(report)
    }

    pub(crate) async fn release_docs(&self, docs: &[bson::oid::ObjectId]) {
        if let Err(e) = self.parts.locks.release(docs).await {
            tracing::warn!(error = %e, "releasing document locks failed; they expire by themselves");
        }
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

    /// Hands back every lease and document lock this worker holds. Errors are logged; the
    /// leases expire by themselves.
    pub async fn release_all(&self) {
        let _ = self.try_release_all().await;
    }

    /// Like [`Worker::release_all`], but says whether everything was handed back.
    pub(crate) async fn try_release_all(&self) -> bool {
        let p = &self.parts;
        let leases = p.outbox.release_owner(&p.owner).await;
        if let Err(e) = &leases {
            tracing::warn!(error = %e, "releasing leases failed; they expire by themselves");
        }
        let locks = p.locks.release_all().await;
        if let Err(e) = &locks {
            tracing::warn!(error = %e, "releasing document locks failed; they expire by themselves");
        }
        leases.is_ok() && locks.is_ok()
    }
}
