//! Index versions, the operations: create a definition for a new embedder / chunking /
//! template, build it (a resumable, throttled backfill whose entries are for the building index
//! only: the workers fill it and leave the active one alone),
//! report its state, verify it, activate it (refused while incomplete or drifting unless
//! forced), and drop a retired one. Search and status keep reading the active index until the
//! activation, which is one update; the previous index stays live, so activating it back is
//! immediate.

use crate::backfill::{backfill, BackfillOptions, BackfillReport};
use crate::verify::{verify, VerifyOptions, VerifyReport};
use crate::{Ops, OpsError, Progress};
use serde::Serialize;
use std::time::Duration;
use tidemark_chroma::{ChromaClient, ChromaOptions};
use tidemark_core::index_def::{IndexDef, IndexState};
use tidemark_core::Config;
use tidemark_store::indexes::Indexes;
use tidemark_store::Store;

/// How long a new definition waits before its build scans the documents: twice the workers'
/// re-reading interval, so every running worker writes the new index before the scan starts.
pub const BUILD_GRACE: Duration = Duration::from_secs(5);

/// The operations' handle on one index definition.
pub fn ops_for(store: &Store, cfg: &Config, def: &IndexDef) -> Result<Ops, OpsError> {
    let icfg = def.config(cfg);
    let chroma = ChromaClient::new(ChromaOptions::from_config(&cfg.chroma))?;
    let text = icfg
        .chunking
        .resolve(&icfg.embedder)
        .map_err(|e| OpsError::Invalid(e.to_string()))?;
    let mut ops =
        Ops::new(store.clone(), chroma.clone(), "x", &def.embedder.model).with_text_settings(text);
    ops.collection = def.collection.clone();
    ops.index = std::sync::Arc::new(tidemark_chroma::ChromaIndex::new(
        chroma,
        def.collection.clone(),
    ));
    Ok(ops)
}

/// Looks a definition up, naming it when absent.
pub async fn get(store: &Store, name: &str) -> Result<IndexDef, OpsError> {
    Indexes::new(store.database())
        .get(name)
        .await?
        .ok_or_else(|| {
            OpsError::NotFound(format!(
                "no index named `{name}` (see `tidemark index list`)"
            ))
        })
}

/// Creates a definition from `cfg` (its embedder, chunking and template) to build. The
/// embedder is tried on one text first, so an unreachable endpoint or a wrong dimension is
/// an error now, not in every worker later.
pub async fn create(store: &Store, cfg: &Config, name: &str) -> Result<IndexDef, OpsError> {
    let indexes = Indexes::new(store.database());
    // The active index is recorded by the first worker from ITS configuration; this one
    // describes the new index, so it must not become `main`.
    let Some(active) = indexes.active().await? else {
        return Err(OpsError::Invalid(
            "no active index yet: start `tidemark worker` once with the current configuration (it records it as `main`), then create the new index".into(),
        ));
    };
    if active.differences(cfg).is_empty() {
        return Err(OpsError::Invalid(format!(
            "the configuration describes the active index `{}` already: change [embedder] or [chunking] for the new index",
            active.name
        )));
    }
    let def = IndexDef::from_config(cfg, name, IndexState::Building, false);
    let ecfg = def.embedder_config(&cfg.embedder);
    let embedder = tokio::task::spawn_blocking(move || tidemark_embed::from_config(&ecfg))
        .await
        .map_err(|e| OpsError::Invalid(format!("loading the embedder panicked: {e}")))?
        .map_err(|e| OpsError::Invalid(format!("cannot load the new index's embedder: {e}")))?;
    let probe = embedder
        .embed(&["tidemark dimension probe".to_string()])
        .await
        .map_err(|e| OpsError::Invalid(format!("the new index's embedder failed a test: {e}")))?;
    let got = probe.first().map(Vec::len).unwrap_or(0);
    if got != def.embedder.dimension {
        return Err(OpsError::Invalid(format!(
            "embedder.dimension is {} but `{}` returns {got} dimensions",
            def.embedder.dimension, def.embedder.model
        )));
    }
    indexes.create(&def).await?;
    Ok(def)
}

/// A build's batch size when not given: half a worker batch.
pub fn build_batch_default(worker_batch_size: usize) -> usize {
    (worker_batch_size / 2).max(1)
}

/// A build's pending bound when not given: half a worker batch, as the batch, so at most
/// about one worker batch of build entries is pending and the live entries stay within every
/// claim's view (a batch and a half), where they are taken first. (A whole batch built faster, 358
/// against 253 docs/s, but lengthened the live tail: p99 3.1 against 1.35 s.)
pub fn build_pending_default(worker_batch_size: usize) -> u64 {
    build_batch_default(worker_batch_size) as u64
}

/// Builds `name`: enqueues every document (resumable; `opts` throttles), then records that
/// the build reached the end. Waits [`BUILD_GRACE`] after the definition was made first.
pub async fn build(
    store: &Store,
    cfg: &Config,
    name: &str,
    mut opts: BackfillOptions,
    progress: &dyn Progress,
) -> Result<BackfillReport, OpsError> {
    let def = get(store, name).await?;
    if def.state == IndexState::Active {
        return Err(OpsError::Invalid(format!(
            "`{name}` is the active index: nothing to build"
        )));
    }
    let age = bson::DateTime::now().timestamp_millis() - def.created_at.timestamp_millis();
    let wait = BUILD_GRACE.as_millis() as i64 - age;
    if wait > 0 {
        tokio::time::sleep(Duration::from_millis(wait as u64)).await;
    }
    let run = format!("index-{name}");
    opts.run_id = Some(run.clone());
    opts.missing_only = false;
    // Every document, so that the workers may leave the changes ahead of the build to it.
    opts.doc_type = None;
    opts.for_index = Some(name.to_string());
    let ops = ops_for(store, cfg, &def)?;
    let r = backfill(&ops, &opts, progress).await?;
    let complete = r.completed || r.already_completed;
    Indexes::new(store.database())
        .set_build(name, &run, complete)
        .await?;
    Ok(r)
}

/// An index's state for `index status` / `index list --json`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IndexStatus {
    pub name: String,
    pub state: &'static str,
    pub model: String,
    pub dimension: usize,
    pub chunking: String,
    pub collection: String,
    pub vectors: u64,
    pub build_complete: bool,
    pub created_at: String,
    pub activated_at: Option<String>,
}

/// The state of every definition.
pub async fn status(store: &Store, cfg: &Config) -> Result<Vec<IndexStatus>, OpsError> {
    let mut out = Vec::new();
    for def in Indexes::new(store.database()).list().await? {
        let ops = ops_for(store, cfg, &def)?;
        let vectors = if ops.index_exists().await? {
            ops.index.count().await?
        } else {
            0
        };
        out.push(IndexStatus {
            state: def.state.as_str(),
            model: def.embedder.model.clone(),
            dimension: def.embedder.dimension,
            chunking: format!(
                "{:?} {} / template `{}`",
                def.chunking.mode, def.chunking.max_tokens, def.chunking.template
            )
            .to_lowercase(),
            collection: def.collection.clone(),
            vectors,
            build_complete: def.build_complete,
            created_at: crate::rfc3339(def.created_at),
            activated_at: def.activated_at.map(crate::rfc3339),
            name: def.name,
        });
    }
    Ok(out)
}

/// What an activation did.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Activation {
    pub name: String,
    pub previous: Option<String>,
    pub forced: bool,
    /// The verify run that allowed it (None: a retired index, current all along, or forced).
    pub verified: Option<crate::verify::Counts>,
}

/// Makes `name` the index search reads. A building index must have completed its build and
/// verify clean (no missing, stale, behind or orphan vector, nothing in flight); a retired
/// one kept receiving writes and is activated at once. `force` skips the checks.
pub async fn activate(
    store: &Store,
    cfg: &Config,
    name: &str,
    force: bool,
    progress: &dyn Progress,
) -> Result<Activation, OpsError> {
    let def = get(store, name).await?;
    let indexes = Indexes::new(store.database());
    let previous = indexes.active().await?.map(|a| a.name);
    if previous.as_deref() == Some(name) {
        return Err(OpsError::Invalid(format!(
            "`{name}` is already the active index"
        )));
    }
    let mut verified = None;
    if def.state == IndexState::Building && !force {
        if !def.build_complete {
            return Err(OpsError::Conflict(format!(
                "`{name}` is still building: run `tidemark index build {name}` to the end (or --force)"
            )));
        }
        let r: VerifyReport = verify(
            &ops_for(store, cfg, &def)?,
            &VerifyOptions::default(),
            progress,
        )
        .await?;
        let c = &r.counts;
        if r.has_drift() || c.in_flight > 0 {
            return Err(OpsError::Conflict(format!(
                "`{name}` is not complete: {} missing, {} stale, {} behind, {} orphan vectors, {} documents in flight (wait for the workers, `tidemark verify --index {name}`, or --force)",
                c.missing, c.stale, c.behind, c.orphans, c.in_flight
            )));
        }
        verified = Some(r.counts);
    }
    indexes.activate(name).await?;
    Ok(Activation {
        name: name.to_string(),
        previous,
        forced: force,
        verified,
    })
}

/// Drops a retired (or building) index: its Chroma collection, then its definition.
pub async fn drop_index(store: &Store, cfg: &Config, name: &str) -> Result<(), OpsError> {
    let def = get(store, name).await?;
    if def.state == IndexState::Active {
        return Err(OpsError::Invalid(format!(
            "`{name}` is the active index: activate another one first"
        )));
    }
    let ops = ops_for(store, cfg, &def)?;
    ops.index.drop_index().await?;
    Indexes::new(store.database()).remove_retired(name).await?;
    Ok(())
}
