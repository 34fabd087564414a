//! Lanes: the indexes a worker writes besides the active one. Every live index definition
//! (`building`, and `retired` until dropped) gets a lane with its own embedder, chunking,
//! template and Chroma collection; a batch is carried out once per lane and its entries are
//! done only when every lane acknowledged them. The lanes are re-read from the definitions
//! every few seconds, so `tidemark index create` reaches running workers; a lane whose
//! definition did not change is kept (its embedder is not loaded again).
//!
//! At start-up the configuration must agree with the active definition (embedder, chunking,
//! template), or the worker refuses to write: writing one index with two models breaks search.

use crate::execute::{EmbedderCounter, Executor};
use crate::plan::Shape;
use crate::worker::Worker;
use crate::WorkerError;
use bson::{doc, Document};
use mongodb::Database;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tidemark_chroma::ChromaIndex;
use tidemark_core::build_cursor::{build_run_id, checkpoint_id, BuildCursor};
use tidemark_core::index_def::{IndexDef, IndexState};
use tidemark_core::VectorIndex;
use tidemark_core::COLL_SYNC_STATE;
use tidemark_store::indexes::Indexes;

/// Where the build of index `name` stands now. None when no build has started, or when the
/// checkpoint cannot be read: the live path then writes every change to the index, as it
/// always may.
pub(crate) async fn build_cursor(db: &Database, name: &str) -> Option<BuildCursor> {
    let id = checkpoint_id(&build_run_id(name));
    let states = db.collection::<Document>(COLL_SYNC_STATE);
    match states.find_one(doc! {"_id": &id}).await {
        Ok(cp) => cp.map(|cp| BuildCursor::from_checkpoint(&cp)),
        Err(e) => {
            tracing::debug!(index = name, error = %e, "cannot read the build's checkpoint; writing every change to the index");
            None
        }
    }
}

/// How often running workers re-read the index definitions.
pub const REFRESH: Duration = Duration::from_secs(2);

/// One more index to write.
pub(crate) struct Lane {
    /// The definition the lane was made from (its state as it was then: see `building`).
    pub def: IndexDef,
    pub exec: Executor,
    pub shape: Shape,
    /// Whether the index is being built now (updated at every refresh): live writes hand
    /// their part for it to the build's queue (see `handoff`).
    pub building: AtomicBool,
}

/// The lanes in force; swapped whole on a refresh.
pub(crate) type LaneSet = Arc<Vec<Arc<Lane>>>;

/// The start-up check: the active definition (made from the configuration on a fresh install)
/// must describe what the configuration does.
pub(crate) async fn check_active(w: &Worker) -> Result<IndexDef, WorkerError> {
    let p = &w.parts;
    let active = Indexes::new(p.store.database())
        .ensure_initial(&p.cfg)
        .await?;
    let diff = active.differences(&p.cfg);
    if !diff.is_empty() {
        return Err(WorkerError::Refused(format!(
            "the configuration disagrees with the active index `{}` ({}): update [embedder] / \
             [chunking] to match it, or build and activate an index for this configuration \
             (`tidemark index create`); nothing was written",
            active.name,
            diff.join("; ")
        )));
    }
    Ok(active)
}

/// Re-reads the definitions and rebuilds the lanes that changed.
pub(crate) async fn refresh(w: &Worker) -> Result<(), WorkerError> {
    let p = &w.parts;
    let Some(chroma) = &p.chroma else {
        return Ok(()); // a worker on a custom VectorIndex writes that index only
    };
    let defs = Indexes::new(p.store.database()).list().await?;
    let current = w.lanes();
    let mut next: Vec<Arc<Lane>> = Vec::new();
    for def in defs {
        // The configuration's index is the primary lane (active at start-up; it may have
        // been retired since, and stays written until dropped).
        if p.primary.get() == Some(&def.name) || def.collection == p.exec.index.name() {
            continue;
        }
        let building = def.state == IndexState::Building;
        if let Some(l) = current.iter().find(|l| same_shape(&l.def, &def)) {
            l.building.store(building, Ordering::Relaxed);
            next.push(l.clone());
            continue;
        }
        let cfg = def.config(&p.cfg);
        let ecfg = cfg.embedder.clone();
        let embedder = tokio::task::spawn_blocking(move || tidemark_embed::from_config(&ecfg))
            .await
            .map_err(|e| WorkerError::Refused(format!("loading an embedder panicked: {e}")))??;
        embedder.set_index(&def.name);
        let index: Arc<dyn VectorIndex> =
            Arc::new(ChromaIndex::new(chroma.clone(), def.collection.clone()));
        let shape = Shape {
            model: embedder.model_id().to_string(),
            text: cfg.chunking.resolve(&cfg.embedder)?,
            counter: Arc::new(EmbedderCounter(embedder.clone())),
        };
        let exec = Executor {
            index,
            embedder,
            metrics: p.metrics.clone(),
            stats: p.exec.stats.clone(),
            // One bound for every index; live writes go before the build's.
            vector_writes: p.exec.vector_writes.clone(),
        };
        tracing::info!(index = %def.name, state = def.state.as_str(), collection = %def.collection, "writing a further index");
        next.push(Arc::new(Lane {
            def,
            exec,
            shape,
            building: AtomicBool::new(building),
        }));
    }
    *p.lanes.write().expect("lanes lock") = Arc::new(next);
    Ok(())
}

/// Whether a lane built for `a` can serve `b` (same embedder, chunking and collection).
fn same_shape(a: &IndexDef, b: &IndexDef) -> bool {
    a.name == b.name
        && a.embedder == b.embedder
        && a.chunking == b.chunking
        && a.collection == b.collection
}
