//! The end state every fault test must reach: Chroma equal to MongoDB. [`check`] compares the
//! documents of a database with the vectors of its Chroma collection and the outbox, and
//! reports missing, stale and orphan vectors, documents whose `indexedVersion` is behind,
//! pending entries and dead ones (with their `lastError`). [`wait_consistent`] polls it until
//! the worker has caught up.

use futures::TryStreamExt;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tidemark_chroma::ChromaClient;
use tidemark_core::{DocumentRecord, OutboxEntry, OutboxStatus};
use tidemark_store::Store;

/// What differs between MongoDB and Chroma.
#[derive(Debug, Default, Clone)]
pub struct Report {
    pub documents: usize,
    pub vectors: usize,
    /// contentIds without a vector.
    pub missing: Vec<String>,
    /// contentIds whose vector has another contentHash or version.
    pub stale: Vec<String>,
    /// contentIds whose `indexedVersion` is not their version.
    pub behind: Vec<String>,
    /// Vector ids without a document.
    pub orphans: Vec<String>,
    pub pending: usize,
    /// (contentId, lastError) of dead entries.
    pub dead: Vec<(String, String)>,
}

impl Report {
    /// Nothing missing, stale, behind, orphaned or pending (dead entries are judged apart).
    pub fn is_consistent(&self) -> bool {
        self.missing.is_empty()
            && self.stale.is_empty()
            && self.behind.is_empty()
            && self.orphans.is_empty()
            && self.pending == 0
    }
}

async fn all_vectors(
    chroma: &ChromaClient,
    collection: &str,
) -> Result<HashMap<String, tidemark_chroma::Metadata>, String> {
    let Some(coll) = chroma
        .get_collection(collection)
        .await
        .map_err(|e| e.to_string())?
    else {
        return Ok(HashMap::new());
    };
    let mut out = HashMap::new();
    let mut off = 0;
    loop {
        let page = chroma
            .get_page(&coll.id, off, 1000)
            .await
            .map_err(|e| e.to_string())?;
        if page.is_empty() {
            return Ok(out);
        }
        off += page.len();
        for r in page {
            out.insert(r.id, r.metadata.unwrap_or_default());
        }
    }
}

/// Compares the database of `store` with the Chroma collection `collection`.
pub async fn check(
    store: &Store,
    chroma: &ChromaClient,
    collection: &str,
) -> Result<Report, String> {
    let docs: Vec<DocumentRecord> = store
        .documents()
        .find(bson::doc! {})
        .await
        .map_err(|e| e.to_string())?
        .try_collect()
        .await
        .map_err(|e| e.to_string())?;
    let entries: Vec<OutboxEntry> = store
        .outbox()
        .find(bson::doc! {"status": {"$ne": "done"}})
        .await
        .map_err(|e| e.to_string())?
        .try_collect()
        .await
        .map_err(|e| e.to_string())?;
    let mut vectors = all_vectors(chroma, collection).await?;
    let mut r = Report {
        documents: docs.len(),
        vectors: vectors.len(),
        ..Report::default()
    };
    for d in &docs {
        match vectors.remove(&d.id.to_hex()) {
            None => r.missing.push(d.content_id.clone()),
            Some(m) => {
                let hash_ok =
                    m.get("contentHash").and_then(|v| v.as_str()) == Some(d.content_hash.as_str());
                let version_ok = m.get("version").and_then(|v| v.as_i64()) == Some(d.version);
                if !hash_ok || !version_ok {
                    r.stale.push(d.content_id.clone());
                }
            }
        }
        if d.indexed_version != Some(d.version) {
            r.behind.push(d.content_id.clone());
        }
    }
    r.orphans = vectors.into_keys().collect();
    for e in entries {
        match e.status {
            OutboxStatus::Pending => r.pending += 1,
            OutboxStatus::Dead => r
                .dead
                .push((e.content_id, e.last_error.unwrap_or_default())),
            _ => {}
        }
    }
    Ok(r)
}

/// Polls [`check`] until the report is consistent or `timeout` passes; returns the last report
/// and how long it took.
pub async fn wait_consistent(
    store: &Store,
    chroma: &ChromaClient,
    collection: &str,
    timeout: Duration,
) -> (Report, Duration) {
    let start = Instant::now();
    loop {
        let r = check(store, chroma, collection).await;
        if let Ok(r) = &r {
            if r.is_consistent() || start.elapsed() > timeout {
                return (r.clone(), start.elapsed());
            }
        } else if start.elapsed() > timeout {
            panic!("consistency check failed: {}", r.unwrap_err());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every acknowledged write committed exactly once: for each `(contentId, version)` the writer
/// was told about, exactly one outbox entry exists, and there is no entry the writer was not
/// told about. Returns a description of each violation.
pub async fn acknowledged_exactly_once(
    store: &Store,
    acked: &[(String, i64)],
) -> Result<Vec<String>, String> {
    let entries: Vec<OutboxEntry> = store
        .outbox()
        .find(bson::doc! {})
        .await
        .map_err(|e| e.to_string())?
        .try_collect()
        .await
        .map_err(|e| e.to_string())?;
    let mut seen: HashMap<(String, i64), usize> = HashMap::new();
    for e in &entries {
        *seen.entry((e.content_id.clone(), e.version)).or_default() += 1;
    }
    let mut problems = Vec::new();
    for key in acked {
        match seen.remove(key) {
            Some(1) => {}
            Some(n) => problems.push(format!("{} v{} has {n} entries", key.0, key.1)),
            None => problems.push(format!(
                "{} v{} acknowledged but not in the outbox",
                key.0, key.1
            )),
        }
    }
    for ((c, v), n) in seen {
        problems.push(format!("{c} v{v}: {n} entries nobody was told about"));
    }
    Ok(problems)
}
