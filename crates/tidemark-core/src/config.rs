//! Configuration: a TOML file, overridden by environment variables, validated at start-up.
//!
//! Every key has a default, so an empty file is valid. Overrides: `MONGODB_URI` and `CHROMA_URL`
//! (the conventional names), and `TIDEMARK_<SECTION>_<KEY>` for any key, e.g.
//! `TIDEMARK_WORKER_BATCH_SIZE=128`. Errors name the offending key and say why.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

mod budget;
mod engine;
mod serve;
pub use engine::{local_model_id, LocalEngine};
pub use serve::ServeConfig;

/// Default MongoDB URI: the replica set started by `scripts/services up`.
pub const DEFAULT_MONGODB_URI: &str = "mongodb://127.0.0.1:27018/?replicaSet=secantus";
/// Default Chroma URL: the server started by `scripts/services up`.
pub const DEFAULT_CHROMA_URL: &str = "http://127.0.0.1:8011";
/// Default model folder: where `scripts/services up` unpacks all-MiniLM-L6-v2.
pub const DEFAULT_MODEL_DIR: &str = ".tidemark/models/all-MiniLM-L6-v2";
/// Default ONNX Runtime library: where `scripts/services up` copies it from the `onnxruntime`
/// wheel.
pub const DEFAULT_ONNX_RUNTIME: &str = ".tidemark/lib/libonnxruntime.so";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config: {0}")]
    Parse(String),
    #[error("config key `{key}`: {reason}")]
    Invalid { key: String, reason: String },
}

fn invalid(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        reason: reason.into(),
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub mongodb: MongoConfig,
    pub chroma: ChromaConfig,
    pub embedder: EmbedderConfig,
    pub worker: WorkerConfig,
    pub outbox: OutboxConfig,
    pub limits: Limits,
    pub metrics: MetricsConfig,
    pub log: LogConfig,
    pub status: StatusThresholds,
    pub chunking: crate::chunking::ChunkingConfig,
    pub serve: ServeConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MongoConfig {
    pub uri: String,
    pub database: String,
}

impl Default for MongoConfig {
    fn default() -> Self {
        MongoConfig {
            uri: DEFAULT_MONGODB_URI.into(),
            database: "tidemark".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChromaConfig {
    pub url: String,
    pub tenant: String,
    pub database: String,
    /// Prefix of the collection name: `<namespace>__<model-slug>`.
    pub namespace: String,
    /// Name of an environment variable holding the auth token (never the token itself).
    pub auth_token_env: String,
    #[serde(with = "duration_str")]
    pub timeout: Duration,
}

impl Default for ChromaConfig {
    fn default() -> Self {
        ChromaConfig {
            url: DEFAULT_CHROMA_URL.into(),
            tenant: "default_tenant".into(),
            database: "default_database".into(),
            namespace: "tidemark".into(),
            auth_token_env: String::new(),
            timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EmbedderKind {
    /// all-MiniLM-L6-v2 in process (candle).
    Local,
    /// An OpenAI-compatible `/v1/embeddings` endpoint.
    Openai,
    /// Feature hashing: deterministic, not semantic; for load tests.
    Hash,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmbedderConfig {
    pub provider: EmbedderKind,
    /// Folder with model.safetensors, tokenizer.json, config.json (local provider), and
    /// model.onnx / model_int8.onnx for the ONNX engines.
    pub model_dir: PathBuf,
    /// Local provider: `onnx` (default), `onnx-int8` or `candle`.
    pub engine: LocalEngine,
    /// The ONNX Runtime shared library the `onnx` engines load (libonnxruntime.so).
    pub onnx_runtime: PathBuf,
    /// Model name sent to the OpenAI-compatible endpoint.
    pub model: String,
    pub base_url: String,
    /// Name of the environment variable holding the API key.
    pub api_key_env: String,
    /// Alternatively, a file holding the API key.
    pub api_key_file: Option<PathBuf>,
    pub dimension: usize,
    pub batch_size: usize,
    #[serde(with = "duration_str")]
    pub timeout: Duration,
    /// `float` or `base64`.
    pub encoding_format: String,
    pub max_retries: usize,
    /// API budget (openai provider; 0 = none): tokens in one request; batches are packed by
    /// tokens (counted with the stated approximation) up to this.
    pub max_tokens_per_request: usize,
    /// Tokens sent in any 60 s window, across all batches in flight.
    pub max_tokens_per_minute: u64,
    /// Requests sent in any 60 s window.
    pub max_requests_per_minute: u64,
    /// For the cost estimate (`tidemark_embed_cost_total`); 0 = no estimate.
    pub price_per_million_tokens: f64,
}

impl EmbedderConfig {
    /// The model id the worker uses (and so its Chroma collection): `all-MiniLM-L6-v2` for the
    /// local model, `model` for an OpenAI-compatible endpoint, `hash-<dimension>` for hashing.
    pub fn model_id(&self) -> String {
        match self.provider {
            EmbedderKind::Local => local_model_id(self.engine).to_string(),
            EmbedderKind::Openai => self.model.clone(),
            EmbedderKind::Hash => format!("hash-{}", self.dimension),
        }
    }
}

impl Default for EmbedderConfig {
    fn default() -> Self {
        EmbedderConfig {
            provider: EmbedderKind::Local,
            model_dir: PathBuf::from(DEFAULT_MODEL_DIR),
            engine: LocalEngine::Onnx,
            onnx_runtime: PathBuf::from(DEFAULT_ONNX_RUNTIME),
            model: "all-MiniLM-L6-v2".into(),
            base_url: String::new(),
            api_key_env: "OPENAI_API_KEY".into(),
            api_key_file: None,
            dimension: 384,
            batch_size: 32,
            timeout: Duration::from_secs(30),
            encoding_format: "float".into(),
            max_retries: 5,
            max_tokens_per_request: 0,
            max_tokens_per_minute: 0,
            max_requests_per_minute: 0,
            price_per_million_tokens: 0.0,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerConfig {
    /// Worker group: workers of one group share one resume token and split the work by leases.
    pub group: String,
    /// Owner name written into leases; defaults to `<hostname>-<pid>` when empty.
    pub owner: String,
    /// Most entries claimed per batch. 128 since 2026-12-01: against 64, the same drain did
    /// 1.66x the documents per second, as MongoDB's per-batch work (claim, lease, read, marks)
    /// and Chroma's per-upsert cost are shared by twice the entries (BENCHMARKS.md).
    pub batch_size: usize,
    /// Batches in flight at once in one worker process (claiming is serial; processing
    /// overlaps, so MongoDB bookkeeping, embedding and Chroma writes run side by side).
    pub concurrency: usize,
    /// Chroma vector upserts in flight at once across those batches and every index written
    /// (live writes go before an index build's). 1 keeps the vector store busy with one
    /// write after another (the other batches claim, read and embed meanwhile); a Chroma with
    /// cores to spare may take more.
    pub vector_writes: usize,
    #[serde(with = "duration_str")]
    pub batch_wait: Duration,
    /// While a batch is in flight, the next claim waits until the previous one is this old
    /// (unless it was full), so that under load batches grow instead of multiplying: each
    /// Chroma upsert has a fixed cost besides its per-vector one. `0s` claims at once.
    #[serde(with = "duration_str")]
    pub batch_linger: Duration,
    #[serde(with = "duration_str")]
    pub lease: Duration,
    pub max_attempts: i32,
    #[serde(with = "duration_str")]
    pub backoff_base: Duration,
    #[serde(with = "duration_str")]
    pub backoff_max: Duration,
    #[serde(with = "duration_str")]
    pub sweep_interval: Duration,
    #[serde(with = "duration_str")]
    pub shutdown_deadline: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            group: "default".into(),
            owner: String::new(),
            batch_size: 128,
            concurrency: 2,
            vector_writes: 1,
            batch_wait: Duration::from_millis(50),
            batch_linger: Duration::from_millis(200),
            lease: Duration::from_secs(60),
            max_attempts: 8,
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(300),
            sweep_interval: Duration::from_secs(10),
            shutdown_deadline: Duration::from_secs(20),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboxConfig {
    /// How long done entries stay as the audit trail (TTL index on `doneAt`).
    #[serde(with = "duration_str")]
    pub retention: Duration,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        OutboxConfig {
            retention: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub max_content_bytes: usize,
    pub max_content_id_len: usize,
    pub max_metadata_depth: usize,
    /// Upper bound of one `put_many` transaction, in bytes of documents.
    pub max_batch_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_content_bytes: 1 << 20,
            max_content_id_len: 512,
            max_metadata_depth: 8,
            max_batch_bytes: 8 << 20,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Address of `/metrics`, `/healthz`, `/readyz`; empty disables the server.
    pub addr: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            addr: "127.0.0.1:9464".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: String,
    /// A tracing filter, e.g. `info` or `tidemark_worker=debug,info`.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: "text".into(),
            level: "info".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatusThresholds {
    /// `tidemark status` exits non-zero when the oldest pending entry is older than this.
    #[serde(with = "duration_str")]
    pub max_lag: Duration,
    /// ... or when more entries than this are dead.
    pub max_dead: u64,
}

impl Default for StatusThresholds {
    fn default() -> Self {
        StatusThresholds {
            max_lag: Duration::from_secs(60),
            max_dead: 0,
        }
    }
}

impl Config {
    /// Reads a TOML file, applies the process environment, validates.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let text = match path {
            Some(p) => std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                path: p.to_path_buf(),
                source,
            })?,
            None => String::new(),
        };
        Config::from_toml_with_env(&text, |k| std::env::var(k).ok())
    }

    /// Parses TOML, applies overrides from `env` (a lookup function, for testability), validates.
    pub fn from_toml_with_env(
        text: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::Parse(e.to_string()))?;
        apply_env(&mut table, &env)?;
        let cfg: Config = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Parse(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks values that parse but make no sense. Each error names its key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(self.mongodb.uri.starts_with("mongodb://")
            || self.mongodb.uri.starts_with("mongodb+srv://"))
        {
            return Err(invalid(
                "mongodb.uri",
                "must start with mongodb:// or mongodb+srv://",
            ));
        }
        non_empty("mongodb.database", &self.mongodb.database)?;
        if !(self.chroma.url.starts_with("http://") || self.chroma.url.starts_with("https://")) {
            return Err(invalid("chroma.url", "must start with http:// or https://"));
        }
        non_empty("chroma.tenant", &self.chroma.tenant)?;
        non_empty("chroma.database", &self.chroma.database)?;
        non_empty("chroma.namespace", &self.chroma.namespace)?;
        if self.chroma.namespace.contains("__") {
            return Err(invalid(
                "chroma.namespace",
                "must not contain `__` (the separator before the model slug)",
            ));
        }
        positive_duration("chroma.timeout", self.chroma.timeout)?;

        let e = &self.embedder;
        if e.dimension == 0 {
            return Err(invalid("embedder.dimension", "must be at least 1"));
        }
        if e.batch_size == 0 {
            return Err(invalid("embedder.batch_size", "must be at least 1"));
        }
        positive_duration("embedder.timeout", e.timeout)?;
        if e.encoding_format != "float" && e.encoding_format != "base64" {
            return Err(invalid(
                "embedder.encoding_format",
                format!("must be `float` or `base64`, not `{}`", e.encoding_format),
            ));
        }
        match e.provider {
            EmbedderKind::Openai => {
                if !(e.base_url.starts_with("http://") || e.base_url.starts_with("https://")) {
                    return Err(invalid(
                        "embedder.base_url",
                        "the openai provider needs an http(s) base URL, e.g. https://api.openai.com",
                    ));
                }
                non_empty("embedder.model", &e.model)?;
            }
            EmbedderKind::Local => {
                if e.model_dir.as_os_str().is_empty() {
                    return Err(invalid("embedder.model_dir", "must not be empty"));
                }
                if e.engine != LocalEngine::Candle && e.onnx_runtime.as_os_str().is_empty() {
                    return Err(invalid(
                        "embedder.onnx_runtime",
                        "the onnx engines need the path of libonnxruntime.so (or set embedder.engine = \"candle\")",
                    ));
                }
            }
            EmbedderKind::Hash => {}
        }

        self.chunking.validate(&self.embedder)?;
        let chunk_tokens = self
            .chunking
            .resolve(&self.embedder)?
            .and_then(|t| t.chunks)
            .map(|c| c.max_tokens);
        budget::validate(&self.embedder, chunk_tokens)?;

        let w = &self.worker;
        non_empty("worker.group", &w.group)?;
        if w.batch_size == 0 {
            return Err(invalid("worker.batch_size", "must be at least 1"));
        }
        if !(1..=64).contains(&w.concurrency) {
            return Err(invalid("worker.concurrency", "must be between 1 and 64"));
        }
        if !(1..=64).contains(&w.vector_writes) {
            return Err(invalid("worker.vector_writes", "must be between 1 and 64"));
        }
        if w.max_attempts < 1 {
            return Err(invalid("worker.max_attempts", "must be at least 1"));
        }
        if w.batch_linger > w.lease / 4 {
            return Err(invalid(
                "worker.batch_linger",
                "must be at most a quarter of worker.lease (claims are made to be carried out at once)",
            ));
        }
        positive_duration("worker.lease", w.lease)?;
        positive_duration("worker.backoff_base", w.backoff_base)?;
        positive_duration("worker.sweep_interval", w.sweep_interval)?;
        positive_duration("worker.shutdown_deadline", w.shutdown_deadline)?;
        if w.backoff_max < w.backoff_base {
            return Err(invalid(
                "worker.backoff_max",
                "must be at least worker.backoff_base",
            ));
        }
        positive_duration("outbox.retention", self.outbox.retention)?;

        let l = &self.limits;
        if l.max_content_bytes == 0 {
            return Err(invalid("limits.max_content_bytes", "must be at least 1"));
        }
        if l.max_content_id_len == 0 {
            return Err(invalid("limits.max_content_id_len", "must be at least 1"));
        }
        if l.max_batch_bytes < l.max_content_bytes {
            return Err(invalid(
                "limits.max_batch_bytes",
                "must be at least limits.max_content_bytes",
            ));
        }
        if !self.metrics.addr.is_empty()
            && self.metrics.addr.parse::<std::net::SocketAddr>().is_err()
        {
            return Err(invalid(
                "metrics.addr",
                format!(
                    "`{}` is not an address like 127.0.0.1:9464",
                    self.metrics.addr
                ),
            ));
        }
        if self.log.format != "text" && self.log.format != "json" {
            return Err(invalid("log.format", "must be `text` or `json`"));
        }
        self.serve.validate()?;
        Ok(())
    }
}

fn non_empty(key: &str, v: &str) -> Result<(), ConfigError> {
    if v.trim().is_empty() {
        Err(invalid(key, "must not be empty"))
    } else {
        Ok(())
    }
}

fn positive_duration(key: &str, d: Duration) -> Result<(), ConfigError> {
    if d.is_zero() {
        Err(invalid(key, "must be longer than zero"))
    } else {
        Ok(())
    }
}

/// Applies `MONGODB_URI`, `CHROMA_URL` and `TIDEMARK_<SECTION>_<KEY>` over the parsed file.
/// Only keys the configuration knows are looked up, so a typo in a variable name is inert while
/// a typo in the file is an error.
fn apply_env(
    table: &mut toml::Table,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    let defaults =
        toml::Table::try_from(Config::default()).map_err(|e| ConfigError::Parse(e.to_string()))?;
    let mut set = |section: &str, key: &str, raw: String, default: &toml::Value| {
        let value = match default {
            toml::Value::Integer(_) => {
                raw.trim()
                    .parse::<i64>()
                    .map(toml::Value::Integer)
                    .map_err(|_| {
                        invalid(
                            &format!("{section}.{key}"),
                            format!("`{raw}` is not an integer"),
                        )
                    })
            }
            toml::Value::Boolean(_) => raw
                .trim()
                .parse::<bool>()
                .map(toml::Value::Boolean)
                .map_err(|_| {
                    invalid(
                        &format!("{section}.{key}"),
                        format!("`{raw}` is not true or false"),
                    )
                }),
            _ => Ok(toml::Value::String(raw)),
        }?;
        let sec = table
            .entry(section.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        match sec {
            toml::Value::Table(t) => {
                t.insert(key.to_string(), value);
                Ok(())
            }
            _ => Err(invalid(section, "must be a table")),
        }
    };
    for (section, keys) in &defaults {
        let toml::Value::Table(keys) = keys else {
            continue;
        };
        for (key, default) in keys {
            let var = format!("TIDEMARK_{}_{}", section.to_uppercase(), key.to_uppercase());
            if let Some(v) = env(&var) {
                set(section, key, v, default)?;
            }
        }
    }
    if let Some(v) = env("MONGODB_URI") {
        set("mongodb", "uri", v, &toml::Value::String(String::new()))?;
    }
    if let Some(v) = env("CHROMA_URL") {
        set("chroma", "url", v, &toml::Value::String(String::new()))?;
    }
    Ok(())
}

/// Durations as human strings in TOML: `"500ms"`, `"30s"`, `"7d"`.
pub mod duration_str {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(|e| {
            serde::de::Error::custom(format!(
                "`{s}` is not a duration like 500ms, 30s, 5m or 7d ({e})"
            ))
        })
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
