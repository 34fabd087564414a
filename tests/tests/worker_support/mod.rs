//! Shared set-up of the worker tests: a unique database and Chroma namespace, a store, a Chroma
//! client, a deterministic hashing test embedder (with a call counter and an optional poison
//! marker that makes it fail permanently: a fault injector, not a mock), and invariant checks.

#![allow(dead_code)]

use bson::doc;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tidemark_chroma::{ChromaClient, ChromaOptions, Metadata};
use tidemark_core::{Config, DocumentRecord, OutboxEntry, OutboxStatus};
use tidemark_e2e::{chroma_url, mongo_client, mongodb_uri, unique_name};
use tidemark_embed::{EmbedError, Embedder, SharedEmbedder};
use tidemark_store::Store;
use tidemark_worker::Worker;

pub const DIM: usize = 64;

/// Short texts on distinct topics, for tests with a semantic model (`login` shares no word
/// with "how do I change my password", so only a semantic model ranks it first for it).
pub const TOPICS: [(&str, &str); 6] = [
    (
        "cats",
        "The cat sat on the warm windowsill and watched the birds.",
    ),
    (
        "rust",
        "Rust's borrow checker prevents data races at compile time.",
    ),
    (
        "bread",
        "Knead the dough for ten minutes, then let it rise for an hour.",
    ),
    (
        "tides",
        "The moon's gravity pulls the oceans and causes the tides.",
    ),
    (
        "login",
        "Forgot your credentials? Open settings and choose a new secret.",
    ),
    (
        "trains",
        "The night express leaves platform nine shortly before midnight.",
    ),
];

/// Feature hashing of words into `DIM` buckets, L2-normalised: deterministic and cheap.
pub fn hash_vec(text: &str) -> Vec<f32> {
    let mut v = vec![0f32; DIM];
    for w in text.split_whitespace() {
        let mut h: u64 = 0xcbf29ce484222325;
        for b in w.to_lowercase().bytes() {
            h = (h ^ b as u64).wrapping_mul(0x100000001b3);
        }
        let sign = if h >> 63 == 1 { -1.0 } else { 1.0 };
        v[(h % DIM as u64) as usize] += sign;
    }
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-6);
    v.iter().map(|x| x / n).collect()
}

/// The test embedder: hashing, counting, optionally slow, failing for texts containing the
/// poison marker, and recording whether two calls ever embedded texts of one document
/// (the text's first word is the document key) at the same time.
#[derive(Default)]
pub struct TestEmbedder {
    pub texts: AtomicU64,
    pub calls: AtomicU64,
    pub poison: Mutex<Option<String>>,
    /// Texts containing this marker fail with a transient error.
    pub flaky: Mutex<Option<String>>,
    pub delay: Mutex<Duration>,
    in_flight: Mutex<HashMap<String, usize>>,
    pub overlaps: AtomicU64,
    calls_in_flight: AtomicU64,
    /// The most `embed` calls that ever ran at the same time.
    pub max_calls_in_flight: AtomicU64,
}

impl TestEmbedder {
    pub fn texts(&self) -> u64 {
        self.texts.load(Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl Embedder for TestEmbedder {
    fn model_id(&self) -> &str {
        "test-hash-64"
    }
    fn dimension(&self) -> usize {
        DIM
    }
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if let Some(p) = self.poison.lock().unwrap().as_deref() {
            if texts.iter().any(|t| t.contains(p)) {
                return Err(EmbedError::Permanent(format!("text contains {p}")));
            }
        }
        if let Some(p) = self.flaky.lock().unwrap().as_deref() {
            if texts.iter().any(|t| t.contains(p)) {
                return Err(EmbedError::Transient(format!("text contains {p}")));
            }
        }
        self.texts.fetch_add(texts.len() as u64, Ordering::SeqCst);
        let now = self.calls_in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_calls_in_flight.fetch_max(now, Ordering::SeqCst);
        let keys: Vec<String> = texts
            .iter()
            .map(|t| t.split_whitespace().next().unwrap_or("").to_string())
            .collect();
        {
            let mut f = self.in_flight.lock().unwrap();
            for k in &keys {
                let n = f.entry(k.clone()).or_insert(0);
                if *n > 0 {
                    self.overlaps.fetch_add(1, Ordering::SeqCst);
                }
                *n += 1;
            }
        }
        let delay = *self.delay.lock().unwrap();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        {
            let mut f = self.in_flight.lock().unwrap();
            for k in &keys {
                *f.get_mut(k).unwrap() -= 1;
            }
        }
        self.calls_in_flight.fetch_sub(1, Ordering::SeqCst);
        Ok(texts.iter().map(|t| hash_vec(t)).collect())
    }
}

/// One test's world: its own database and Chroma namespace.
pub struct Env {
    pub cfg: Config,
    pub store: Store,
    pub chroma: ChromaClient,
    pub embedder: Arc<TestEmbedder>,
    /// Model id whose collection `vectors()` reads (the test embedder's by default).
    pub model: String,
}

/// Fast settings for tests.
pub fn test_config(prefix: &str) -> Config {
    let mut cfg = Config::default();
    cfg.mongodb.uri = mongodb_uri();
    cfg.mongodb.database = unique_name(prefix);
    cfg.chroma.url = chroma_url();
    cfg.chroma.namespace = cfg.mongodb.database.clone();
    cfg.worker.batch_size = 64;
    cfg.worker.batch_wait = Duration::from_millis(20);
    cfg.worker.lease = Duration::from_secs(10);
    cfg.worker.backoff_base = Duration::from_millis(100);
    cfg.worker.backoff_max = Duration::from_secs(1);
    cfg.worker.sweep_interval = Duration::from_millis(500);
    cfg.worker.shutdown_deadline = Duration::from_secs(5);
    cfg.metrics.addr = String::new();
    cfg
}

/// Two index versions of one test's world, both with the hashing embedder: `main` (64
/// dimensions, the active one, `cfg_a`) and a new one (32 dimensions, `cfg_b`), their
/// configuration files written.
pub struct HashPair {
    pub env: Env,
    pub a: Config,
    pub cfg_a: std::path::PathBuf,
    pub cfg_b: std::path::PathBuf,
}

impl HashPair {
    pub async fn new(prefix: &str) -> HashPair {
        let mut a = test_config(prefix);
        a.embedder.provider = tidemark_core::config::EmbedderKind::Hash;
        a.embedder.dimension = 64;
        let mut b = a.clone();
        b.embedder.dimension = 32;
        let mut env = Env::with_config(a.clone()).await;
        env.model = "hash-64".into();
        let dir = tidemark_e2e::servers::temp_dir(prefix);
        let cfg_a = tidemark_e2e::procs::write_config(&a, &dir.join("a"));
        let cfg_b = tidemark_e2e::procs::write_config(&b, &dir.join("b"));
        HashPair {
            env,
            a,
            cfg_a,
            cfg_b,
        }
    }
}

impl Env {
    pub async fn new(prefix: &str) -> Env {
        Env::with_config(test_config(prefix)).await
    }

    pub async fn with_config(cfg: Config) -> Env {
        let store = Store::new(mongo_client().await, &cfg.mongodb.database, &cfg);
        store.ensure_schema().await.expect("ensure_schema");
        let chroma = ChromaClient::new(ChromaOptions::from_config(&cfg.chroma)).unwrap();
        Env {
            cfg,
            store,
            chroma,
            embedder: Arc::new(TestEmbedder::default()),
            model: "test-hash-64".into(),
        }
    }

    /// A worker with its own metrics registry.
    pub fn worker(&self) -> Worker {
        self.worker_with(self.embedder.clone())
    }

    pub fn worker_with(&self, embedder: SharedEmbedder) -> Worker {
        let registry = prometheus::Registry::new();
        Worker::new(
            self.cfg.clone(),
            self.store.clone(),
            self.chroma.clone(),
            embedder,
            &registry,
        )
        .unwrap()
    }

    pub fn collection_name(&self) -> String {
        tidemark_core::collection_name(&self.cfg.chroma.namespace, &self.model)
    }

    pub async fn collection_id(&self) -> String {
        self.chroma
            .get_or_create_collection(&self.collection_name())
            .await
            .unwrap()
            .id
    }

    /// Every vector in the collection: id -> (metadata, embedding).
    pub async fn vectors(&self) -> HashMap<String, (Metadata, Vec<f32>)> {
        let coll = self.collection_id().await;
        let mut ids = Vec::new();
        let mut off = 0;
        loop {
            let page = self.chroma.get_page(&coll, off, 1000).await.unwrap();
            if page.is_empty() {
                break;
            }
            off += page.len();
            ids.extend(page.into_iter().map(|r| r.id));
        }
        let mut out = HashMap::new();
        for chunk in ids.chunks(1000) {
            for r in self.chroma.get(&coll, chunk, true).await.unwrap() {
                out.insert(
                    r.id,
                    (
                        r.metadata.unwrap_or_default(),
                        r.embedding.unwrap_or_default(),
                    ),
                );
            }
        }
        out
    }

    pub async fn entries(&self) -> Vec<OutboxEntry> {
        tidemark_e2e::outbox_entries(&self.store, doc! {}).await
    }

    pub async fn documents(&self) -> Vec<DocumentRecord> {
        tidemark_e2e::all_documents(&self.store).await
    }

    /// Invariants after a drain: every live document has exactly one vector with its latest
    /// contentHash and version, no vector without a document, no entry pending.
    pub async fn assert_consistent(&self) {
        let docs = self.documents().await;
        let vectors = self.vectors().await;
        for d in &docs {
            let (m, _) = vectors
                .get(&d.id.to_hex())
                .unwrap_or_else(|| panic!("document {} has no vector", d.content_id));
            assert_eq!(
                m["contentHash"].as_str(),
                Some(d.content_hash.as_str()),
                "{}",
                d.content_id
            );
            assert_eq!(m["version"].as_i64(), Some(d.version), "{}", d.content_id);
            assert_eq!(
                d.indexed_version,
                Some(d.version),
                "{} indexedVersion",
                d.content_id
            );
            assert_eq!(d.vector_id.as_deref(), Some(d.id.to_hex().as_str()));
        }
        assert_eq!(vectors.len(), docs.len(), "orphan vectors in Chroma");
        let pending: Vec<_> = self
            .entries()
            .await
            .into_iter()
            .filter(|e| e.status == OutboxStatus::Pending)
            .collect();
        assert!(
            pending.is_empty(),
            "{} entries still pending: {:?}",
            pending.len(),
            pending.first()
        );
    }

    pub async fn cleanup(self) {
        let _ = self.chroma.delete_collection(&self.collection_name()).await;
        let _ = self.store.database().drop().await;
    }
}

/// The value of a counter with one label, read from the worker's metrics.
pub fn processed(w: &Worker, result: &str) -> u64 {
    w.metrics()
        .entries_processed_total
        .with_label_values(&[result])
        .get()
}

pub use tidemark_e2e::wait_until;

/// Waits (at most `timeout`) until no outbox entry is pending; fails the test naming `what`.
pub async fn assert_drained(store: &Store, timeout: Duration, what: &str) {
    let drained = wait_until(timeout, || async {
        count_status(store, "pending").await == 0
    })
    .await;
    assert!(drained, "{what}: entries still pending after {timeout:?}");
}

/// Number of outbox entries with this status.
pub async fn count_status(store: &Store, status: &str) -> u64 {
    store
        .outbox()
        .count_documents(doc! {"status": status})
        .await
        .unwrap()
}
