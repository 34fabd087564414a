//! `tidemark embed serve`: an OpenAI-compatible embedding server for any `Embedder`
//! (in practice the local all-MiniLM-L6-v2), so the `openai` provider and other languages can
//! use the same model over HTTP.
//!
//! `POST /v1/embeddings` (string or array input, `float` or `base64` output), `GET /v1/models`,
//! `GET /healthz`, and `GET /stats` (requests, tokens, 429s, the most tokens accepted in one
//! minute: what a client's budget is checked against). `usage` reports the real prompt tokens
//! (the model's tokenizer); a `dimensions` other than the model's is refused with 400. With
//! limits (`--max-requests-per-minute`, `--max-tokens-per-minute`) a request over them is
//! answered 429 with Retry-After, as hosted APIs do. Errors are JSON bodies in OpenAI's shape:
//! `{"error": {"message", "type"}}`.

use crate::openai::encode_base64_f32;
use crate::server_limits::{retry_after_secs, Limiter, ServerLimits};
use crate::SharedEmbedder;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Most inputs accepted in one request.
pub const MAX_INPUTS: usize = 256;

#[derive(Clone)]
struct AppState {
    embedder: SharedEmbedder,
    limiter: Arc<Mutex<Limiter>>,
}

fn error(status: StatusCode, kind: &str, message: impl Into<String>) -> Response {
    let body = json!({"error": {"message": message.into(), "type": kind}});
    (status, Json(body)).into_response()
}

/// The router without limits, for embedding in another server or for tests.
pub fn router(embedder: SharedEmbedder) -> Router {
    router_with(embedder, ServerLimits::default())
}

/// The router with rate limits.
pub fn router_with(embedder: SharedEmbedder, limits: ServerLimits) -> Router {
    let limiter = Arc::new(Mutex::new(Limiter::new(limits)));
    Router::new()
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/models", get(models))
        .route("/stats", get(stats))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(AppState { embedder, limiter })
}

/// Serves on `addr` until `shutdown` completes. Returns the bound address through `on_bound`
/// (useful with port 0).
pub async fn serve(
    embedder: SharedEmbedder,
    addr: SocketAddr,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    serve_on(embedder, listener, shutdown).await
}

/// Serves on an already bound listener until `shutdown` completes.
pub async fn serve_on(
    embedder: SharedEmbedder,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_limited(embedder, listener, ServerLimits::default(), shutdown).await
}

/// Serves with rate limits on an already bound listener until `shutdown` completes.
pub async fn serve_limited(
    embedder: SharedEmbedder,
    listener: tokio::net::TcpListener,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    tracing::info!(addr = %listener.local_addr()?, ?limits, "embedding server listening");
    axum::serve(listener, router_with(embedder, limits))
        .with_graceful_shutdown(shutdown)
        .await
}

async fn stats(State(st): State<AppState>) -> Json<Value> {
    let s = st.limiter.lock().expect("limiter lock").stats();
    Json(json!(s))
}

async fn models(State(st): State<AppState>) -> Json<Value> {
    Json(json!({
        "object": "list",
        "data": [{"id": st.embedder.model_id(), "object": "model", "owned_by": "tidemark"}]
    }))
}

async fn embeddings(State(st): State<AppState>, body: Bytes) -> Response {
    let req: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                format!("malformed JSON: {e}"),
            )
        }
    };
    let model_id = st.embedder.model_id();
    match req.get("model").and_then(Value::as_str) {
        Some(m) if m == model_id => {}
        Some(m) => {
            return error(
                StatusCode::NOT_FOUND,
                "model_not_found",
                format!("unknown model `{m}`; this server serves `{model_id}`"),
            )
        }
        None => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "`model` is required",
            )
        }
    }
    let inputs: Vec<String> = match req.get("input") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => {
            let mut v = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                match item.as_str() {
                    Some(s) => v.push(s.to_string()),
                    None => {
                        return error(
                            StatusCode::BAD_REQUEST,
                            "invalid_request_error",
                            format!("input[{i}] is not a string"),
                        )
                    }
                }
            }
            v
        }
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "`input` must be a string or an array of strings",
            )
        }
    };
    if inputs.is_empty() || inputs.iter().any(|s| s.is_empty()) {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "`input` must not be empty, nor contain empty strings",
        );
    }
    if inputs.len() > MAX_INPUTS {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            format!("too many inputs: {} (at most {MAX_INPUTS})", inputs.len()),
        );
    }
    let base64 = match req.get("encoding_format").and_then(Value::as_str) {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                format!("unknown encoding_format `{other}` (float or base64)"),
            )
        }
    };
    if let Some(d) = req.get("dimensions").filter(|d| !d.is_null()) {
        let dim = st.embedder.dimension();
        if d.as_u64() != Some(dim as u64) {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                format!(
                    "`dimensions` {d} is not supported: `{model_id}` makes {dim} dimensions only"
                ),
            );
        }
    }
    let tokens: u64 = inputs
        .iter()
        .map(|t| st.embedder.count_tokens(t) as u64)
        .sum();
    let admitted = st
        .limiter
        .lock()
        .expect("limiter lock")
        .admit(tokens, Instant::now());
    if let Err(wait) = admitted {
        let secs = retry_after_secs(wait);
        let mut r = error(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_exceeded",
            format!("rate limit reached: retry after {secs} s"),
        );
        if let Ok(v) = axum::http::HeaderValue::from_str(&secs.to_string()) {
            r.headers_mut().insert(axum::http::header::RETRY_AFTER, v);
        }
        return r;
    }
    let vectors = match st.embedder.embed(&inputs).await {
        Ok(v) => v,
        Err(e) if e.is_transient() => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                e.to_string(),
            )
        }
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                e.to_string(),
            )
        }
    };
    let data: Vec<Value> = vectors
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let embedding = if base64 {
                Value::String(encode_base64_f32(v))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    Json(json!({
        "object": "list",
        "data": data,
        "model": model_id,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens}
    }))
    .into_response()
}
