//! The worker's small HTTP surface: `/metrics` (Prometheus text), `/healthz` (the process
//! answers) and `/readyz` (MongoDB, Chroma and the embedder are reachable; 503 otherwise).

use crate::{Worker, WorkerError};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use std::future::Future;
use std::time::Duration;

async fn metrics(State(w): State<Worker>) -> impl IntoResponse {
    (
        [("content-type", "text/plain; version=0.0.4")],
        crate::metrics::render(&w.parts.registry),
    )
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn check<T, E: std::fmt::Display>(
    f: impl Future<Output = Result<T, E>>,
) -> Result<(), String> {
    match tokio::time::timeout(Duration::from_secs(5), f).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out after 5s".into()),
    }
}

async fn readyz(State(w): State<Worker>) -> impl IntoResponse {
    let p = &w.parts;
    let mongo = check(async { p.store.database().run_command(bson::doc! {"ping": 1}).await }).await;
    let chroma = check(p.exec.index.exists()).await;
    let embedder = check(p.exec.embedder.embed(&["readiness probe".to_string()])).await;
    let part = |r: &Result<(), String>| match r {
        Ok(()) => serde_json::json!("ok"),
        Err(e) => serde_json::json!(e),
    };
    let body = serde_json::json!({
        "mongodb": part(&mongo),
        "chroma": part(&chroma),
        "embedder": part(&embedder),
    });
    let ok = mongo.is_ok() && chroma.is_ok() && embedder.is_ok();
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body))
}

/// Serves `/metrics`, `/healthz` and `/readyz` of `worker` on `listener` until `shutdown`.
pub async fn serve_http(
    worker: Worker,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), WorkerError> {
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(worker);
    tracing::info!(%addr, "serving /metrics, /healthz, /readyz");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| WorkerError::Http {
            addr,
            reason: e.to_string(),
        })
}
