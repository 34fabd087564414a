//! Shared set-up of the operations tests: a unique database and Chroma namespace, the hashing
//! embedder (with a switchable poison marker that makes it fail permanently: a fault injector,
//! not a mock), a worker, the `Ops` handle, raw Chroma HTTP calls to create drift behind the
//! system's back, and a runner for the `tidemark` binary with this test's configuration.

#![allow(dead_code)]

use bson::Document;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tidemark_chroma::{ChromaClient, ChromaOptions};
use tidemark_core::config::EmbedderKind;
use tidemark_core::{Config, OutboxEntry};
use tidemark_e2e::{chroma_url, mongo_client, mongodb_uri, tidemark_bin, unique_name};
use tidemark_embed::hash::HashEmbedder;
use tidemark_embed::{EmbedError, Embedder};
use tidemark_ops::Ops;
use tidemark_store::{NewDocument, Store};
use tidemark_worker::{BatchReport, Worker};

pub const DIM: usize = 16;

/// The hashing embedder, failing permanently for texts containing the poison marker.
pub struct PoisonEmbedder {
    inner: HashEmbedder,
    pub poison: Mutex<Option<String>>,
}

#[async_trait::async_trait]
impl Embedder for PoisonEmbedder {
    fn model_id(&self) -> &str {
        self.inner.model_id()
    }
    fn dimension(&self) -> usize {
        self.inner.dimension()
    }
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        if let Some(p) = self.poison.lock().unwrap().as_deref() {
            if texts.iter().any(|t| t.contains(p)) {
                return Err(EmbedError::Permanent(format!("text contains {p}")));
            }
        }
        self.inner.embed(texts).await
    }
}

/// One test's world.
pub struct OpsEnv {
    pub cfg: Config,
    pub store: Store,
    pub chroma: ChromaClient,
    pub ops: Ops,
    pub embedder: Arc<PoisonEmbedder>,
    pub config_path: PathBuf,
    http: reqwest::Client,
}

impl OpsEnv {
    pub async fn new(prefix: &str) -> OpsEnv {
        let mut cfg = Config::default();
        cfg.mongodb.uri = mongodb_uri();
        cfg.mongodb.database = unique_name(prefix);
        cfg.chroma.url = chroma_url();
        cfg.chroma.namespace = cfg.mongodb.database.clone();
        cfg.embedder.provider = EmbedderKind::Hash;
        cfg.embedder.dimension = DIM;
        cfg.worker.batch_size = 64;
        cfg.worker.lease = Duration::from_secs(10);
        cfg.worker.backoff_base = Duration::from_millis(50);
        cfg.worker.backoff_max = Duration::from_millis(200);
        cfg.worker.max_attempts = 3;
        cfg.metrics.addr = String::new();
        cfg.log.level = "warn".into();
        let store = Store::new(mongo_client().await, &cfg.mongodb.database, &cfg);
        store.ensure_schema().await.expect("ensure_schema");
        let chroma = ChromaClient::new(ChromaOptions::from_config(&cfg.chroma)).unwrap();
        let ops = Ops::new(
            store.clone(),
            chroma.clone(),
            &cfg.chroma.namespace,
            &tidemark_ops::model_id(&cfg.embedder),
        );
        let config_path = std::env::temp_dir().join(format!("{}.toml", cfg.mongodb.database));
        std::fs::write(&config_path, toml::to_string(&cfg).expect("config as TOML")).unwrap();
        OpsEnv {
            cfg,
            store,
            chroma,
            ops,
            embedder: Arc::new(PoisonEmbedder {
                inner: HashEmbedder::new(DIM),
                poison: Mutex::new(None),
            }),
            config_path,
            http: reqwest::Client::new(),
        }
    }

    pub fn worker(&self) -> Worker {
        let registry = prometheus::Registry::new();
        Worker::new(
            self.cfg.clone(),
            self.store.clone(),
            self.chroma.clone(),
            self.embedder.clone(),
            &registry,
        )
        .unwrap()
    }

    /// Runs a worker until nothing is due.
    pub async fn drain(&self) -> BatchReport {
        let w = self.worker();
        w.init().await.unwrap();
        w.drain().await.unwrap()
    }

    /// Writes `n` documents `<prefix>-<i>` of type `ty` through the store.
    pub async fn put_docs(&self, prefix: &str, ty: &str, n: usize) -> Vec<String> {
        let docs: Vec<NewDocument> = (0..n)
            .map(|i| {
                NewDocument::new(
                    format!("{prefix}-{i}"),
                    ty,
                    format!("{prefix} text number {i}"),
                )
            })
            .collect();
        self.store
            .put_many(docs)
            .await
            .unwrap()
            .into_iter()
            .map(|o| o.content_id)
            .collect()
    }

    pub async fn collection_id(&self) -> String {
        assert!(self.ops.index.exists().await.unwrap(), "collection exists");
        self.ops.index.ensure().await.unwrap()
    }

    /// A raw Chroma v2 record call (`delete`, `upsert`, `update`, `get`) on our collection.
    pub async fn chroma_http(&self, call: &str, body: Value) -> Value {
        let url = format!(
            "{}/api/v2/tenants/{}/databases/{}/collections/{}/{call}",
            self.cfg.chroma.url,
            self.cfg.chroma.tenant,
            self.cfg.chroma.database,
            self.collection_id().await
        );
        let resp = self.http.post(&url).json(&body).send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        assert!(status.is_success(), "chroma {call}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// The document `_id` (hex) of a contentId.
    pub async fn doc_id(&self, content_id: &str) -> String {
        self.store
            .get(content_id)
            .await
            .unwrap()
            .expect("document")
            .id
            .to_hex()
    }

    pub async fn entries(&self, filter: Document) -> Vec<OutboxEntry> {
        tidemark_e2e::outbox_entries(&self.store, filter).await
    }

    /// Runs the binary with this test's configuration; (exit code, stdout, stderr).
    pub fn cli(&self, args: &[&str]) -> (i32, String, String) {
        self.cli_env(&[], args)
    }

    /// `cli` with extra environment variables (e.g. `TIDEMARK_STATUS_MAX_LAG`).
    pub fn cli_env(&self, env: &[(&str, &str)], args: &[&str]) -> (i32, String, String) {
        let bin = tidemark_bin();
        assert!(
            bin.exists(),
            "{} is missing: run `cargo build -p tidemark-cli` first (scripts/test does)",
            bin.display()
        );
        let out = std::process::Command::new(bin)
            .arg("-c")
            .arg(&self.config_path)
            .args(args)
            .env_remove("TIDEMARK_CONFIG")
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// `cli` with `--json` output parsed.
    pub fn cli_json(&self, args: &[&str]) -> (i32, Value) {
        let (code, out, err) = self.cli(args);
        let v = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {out}\nstderr: {err}"));
        (code, v)
    }

    pub async fn cleanup(self) {
        let _ = self.store.database().drop().await;
        let _ = self.chroma.delete_collection(&self.ops.collection).await;
        let _ = std::fs::remove_file(&self.config_path);
    }
}

/// The sorted contentIds of a report list (`missing`, `stale`, ...).
pub fn ids_of(report: &Value, list: &str, key: &str) -> Vec<String> {
    let mut v: Vec<String> = report[list]
        .as_array()
        .unwrap_or_else(|| panic!("no list {list}"))
        .iter()
        .map(|x| x[key].as_str().unwrap_or("?").to_string())
        .collect();
    v.sort();
    v
}

pub fn sorted(v: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

pub fn unit(v: f32) -> Vec<f32> {
    let mut e = vec![0.0; DIM];
    e[0] = v;
    e
}
