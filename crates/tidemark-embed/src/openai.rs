//! OpenAI-compatible `/v1/embeddings` client (OpenAI, vLLM, TEI, Ollama, LocalAI, and
//! `tidemark embed serve`).
//!
//! Transient failures (connect errors, timeouts, 429, 5xx) are retried with exponential backoff
//! and jitter, honouring `Retry-After`; permanent ones (other 4xx, a wrong dimension, a wrong
//! count of vectors) fail at once with the server's message. The API key is never logged.
//!
//! With a budget (`embedder.max_tokens_per_request`, `max_tokens_per_minute`,
//! `max_requests_per_minute`) texts are packed into requests by tokens (counted with the stated
//! approximation, one token per three bytes, which overestimates ordinary text) and every
//! request waits for the budget shared by all batches in flight; a 429 pauses and tightens it
//! (see [`crate::budget`]). Tokens sent are counted from the server's `usage` when it reports
//! them.

use crate::budget::{self, Limits, SharedBudget};
use crate::{metrics, EmbedError, Embedder};
use backon::{BackoffBuilder, ExponentialBuilder};
use base64::Engine;
use serde::Deserialize;
use std::time::Duration;
use tidemark_core::config::EmbedderConfig;

/// A client of one model on one OpenAI-compatible server.
pub struct OpenAiEmbedder {
    http: reqwest::Client,
    url: String,
    model: String,
    api_key: Option<String>,
    dimension: usize,
    batch_size: usize,
    base64: bool,
    max_retries: usize,
    limits: Limits,
    budget: SharedBudget,
    price_per_million: f64,
    /// The `index` label of the metrics (the model id until `set_index`).
    index: std::sync::RwLock<String>,
}

impl std::fmt::Debug for OpenAiEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiEmbedder")
            .field("url", &self.url)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "***"))
            .finish()
    }
}

#[derive(Deserialize)]
struct Response {
    data: Vec<Item>,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct Usage {
    #[serde(default)]
    prompt_tokens: u64,
}

#[derive(Deserialize)]
struct Item {
    index: Option<usize>,
    embedding: EmbeddingValue,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum EmbeddingValue {
    Floats(Vec<f32>),
    Base64(String),
}

impl OpenAiEmbedder {
    /// Builds the client; the API key comes from the file `api_key_file` or the environment
    /// variable `api_key_env` (absent is allowed: local servers need none).
    pub fn from_config(cfg: &EmbedderConfig) -> Result<Self, EmbedError> {
        let api_key = match &cfg.api_key_file {
            Some(p) => Some(
                std::fs::read_to_string(p)
                    .map_err(|e| {
                        EmbedError::Config(format!("embedder.api_key_file {}: {e}", p.display()))
                    })?
                    .trim()
                    .to_string(),
            ),
            None => std::env::var(&cfg.api_key_env)
                .ok()
                .filter(|k| !k.is_empty()),
        };
        let limits = Limits {
            tokens_per_request: cfg.max_tokens_per_request,
            tokens_per_minute: cfg.max_tokens_per_minute,
            requests_per_minute: cfg.max_requests_per_minute,
        };
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .build()
            .map_err(|e| EmbedError::Config(format!("http client: {e}")))?;
        Ok(OpenAiEmbedder {
            http,
            url: format!("{}/v1/embeddings", cfg.base_url.trim_end_matches('/')),
            model: cfg.model.clone(),
            api_key,
            dimension: cfg.dimension,
            batch_size: cfg.batch_size,
            base64: cfg.encoding_format == "base64",
            max_retries: cfg.max_retries,
            limits,
            budget: SharedBudget::new(limits),
            price_per_million: cfg.price_per_million_tokens,
            index: std::sync::RwLock::new(cfg.model.clone()),
        })
    }

    /// One request; returns the vectors and the prompt tokens the server reported (if any).
    async fn call(&self, texts: &[String]) -> Result<(Vec<Vec<f32>>, Option<u64>), CallError> {
        let mut body = serde_json::json!({"model": self.model, "input": texts});
        if self.base64 {
            body["encoding_format"] = "base64".into();
        }
        let mut req = self.http.post(&self.url).json(&body);
        if let Some(k) = &self.api_key {
            req = req.bearer_auth(k);
        }
        let resp = req.send().await.map_err(|e| CallError {
            err: EmbedError::Transient(format!(
                "cannot reach the embedder at {} ({}): is it running? check embedder.base_url",
                tidemark_core::redact_uri(&self.url),
                without_url(&e)
            )),
            retry_after: None,
        })?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = resp.text().await.map_err(|e| CallError {
            err: EmbedError::Transient(format!("reading the response: {}", without_url(&e))),
            retry_after: None,
        })?;
        if !status.is_success() {
            let msg = server_message(&text);
            let err = if status.as_u16() == 429 || status.is_server_error() {
                EmbedError::Transient(format!("{status}: {msg}"))
            } else {
                EmbedError::Permanent(format!("{status}: {msg}"))
            };
            return Err(CallError { err, retry_after });
        }
        let permanent = |m: String| CallError {
            err: EmbedError::Permanent(m),
            retry_after: None,
        };
        let parsed: Response = serde_json::from_str(&text)
            .map_err(|e| permanent(format!("unexpected response body: {e}")))?;
        if parsed.data.len() != texts.len() {
            return Err(permanent(format!(
                "server returned {} vectors for {} inputs",
                parsed.data.len(),
                texts.len()
            )));
        }
        let usage = parsed.usage.map(|u| u.prompt_tokens).filter(|t| *t > 0);
        let mut out = vec![Vec::new(); texts.len()];
        for (pos, item) in parsed.data.into_iter().enumerate() {
            let idx = item.index.unwrap_or(pos);
            let v = match item.embedding {
                EmbeddingValue::Floats(v) => v,
                EmbeddingValue::Base64(s) => decode_base64_f32(&s).map_err(permanent)?,
            };
            if v.len() != self.dimension {
                return Err(permanent(format!(
                    "server returned a vector of dimension {}, configured embedder.dimension is {}",
                    v.len(),
                    self.dimension
                )));
            }
            match out.get_mut(idx) {
                Some(slot) if slot.is_empty() => *slot = v,
                _ => return Err(permanent(format!("server returned a bad index {idx}"))),
            }
        }
        Ok((out, usage))
    }

    /// Sends one request of `tokens` (estimated) within the budget, retrying transient
    /// failures; a 429 pauses and tightens the shared budget before the retry.
    async fn call_with_retries(
        &self,
        texts: &[String],
        tokens: u64,
    ) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut delays = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(200))
            .with_max_delay(Duration::from_secs(10))
            .with_max_times(self.max_retries)
            .with_jitter()
            .build();
        loop {
            let waited = self.budget.acquire(tokens).await;
            self.throttled_for(waited);
            match self.call(texts).await {
                Ok((v, usage)) => {
                    self.budget.succeeded();
                    self.spent(usage.unwrap_or(tokens));
                    return Ok(v);
                }
                Err(CallError { err, retry_after }) if err.is_transient() => {
                    let Some(delay) = delays.next() else {
                        return Err(err);
                    };
                    let delay = retry_after.map_or(delay, |ra| ra.max(delay));
                    if retry_after.is_some() {
                        // The budget holds the pause for every batch in flight.
                        self.budget.throttled(delay);
                        tracing::warn!(error = %err, ?delay, "embedding API throttled; budget paused and tightened");
                        continue;
                    }
                    tracing::warn!(error = %err, ?delay, "embedding request failed; retrying");
                    tokio::time::sleep(delay).await;
                    self.throttled_for(delay);
                }
                Err(CallError { err, .. }) => return Err(err),
            }
        }
    }

    fn label(&self) -> String {
        self.index.read().expect("label lock").clone()
    }

    fn throttled_for(&self, d: Duration) {
        if !d.is_zero() {
            metrics::THROTTLED_SECONDS
                .with_label_values(&[&self.label()])
                .inc_by(d.as_secs_f64());
        }
    }

    fn spent(&self, tokens: u64) {
        let label = self.label();
        metrics::TOKENS.with_label_values(&[&label]).inc_by(tokens);
        if self.price_per_million > 0.0 {
            metrics::COST
                .with_label_values(&[&label])
                .inc_by(tokens as f64 * self.price_per_million / 1e6);
        }
    }
}

struct CallError {
    err: EmbedError,
    retry_after: Option<Duration>,
}

/// reqwest errors print the URL; keep only the cause (URLs could carry credentials).
fn without_url(e: &reqwest::Error) -> String {
    tidemark_core::error_text::io_reason(e).unwrap_or_else(|| {
        if e.is_timeout() {
            "timed out".into()
        } else if e.is_connect() {
            "cannot connect".into()
        } else {
            "request failed".into()
        }
    })
}

/// The `error.message` of an OpenAI-style error body, or the body itself (shortened).
fn server_message(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| body.chars().take(500).collect())
}

/// Decodes base64 little-endian f32s.
pub fn decode_base64_f32(s: &str) -> Result<Vec<f32>, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|e| format!("bad base64 embedding: {e}"))?;
    if bytes.len() % 4 != 0 {
        return Err(format!(
            "base64 embedding of {} bytes is not f32s",
            bytes.len()
        ));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

/// Encodes f32s as base64 little-endian.
pub fn encode_base64_f32(v: &[f32]) -> String {
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[async_trait::async_trait]
impl Embedder for OpenAiEmbedder {
    fn model_id(&self) -> &str {
        &self.model
    }

    fn dimension(&self) -> usize {
        self.dimension
    }

    fn set_index(&self, index: &str) {
        *self.index.write().expect("label lock") = index.to_string();
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let tokens: Vec<usize> = texts.iter().map(|t| self.count_tokens(t)).collect();
        let mut out = Vec::with_capacity(texts.len());
        for r in budget::pack(&tokens, self.batch_size, self.limits.tokens_per_request) {
            let n: usize = tokens[r.clone()].iter().sum();
            out.extend(self.call_with_retries(&texts[r], n as u64).await?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trip() {
        let v = vec![0.5f32, -1.25, 3.0e-7];
        assert_eq!(decode_base64_f32(&encode_base64_f32(&v)).unwrap(), v);
        assert!(decode_base64_f32("AAA=").is_err());
    }

    #[test]
    fn server_message_prefers_openai_error() {
        assert_eq!(
            server_message(r#"{"error":{"message":"bad model","type":"x"}}"#),
            "bad model"
        );
        assert_eq!(server_message("plain"), "plain");
    }
}
