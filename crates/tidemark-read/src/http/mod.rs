//! The HTTP API of `tidemark serve` (axum). JSON in and out; see docs/openapi.yaml.
//!
//! | route | what |
//! | --- | --- |
//! | `POST /v1/search` | text or vector, `k`, `filter`, `type`, read-your-writes `after` |
//! | `GET /v1/documents?type=&limit=&where=` | the most recent documents |
//! | `GET /v1/documents/{contentId}` | one document |
//! | `PUT /v1/documents/{contentId}` | write through the store's transactional path |
//! | `DELETE /v1/documents/{contentId}` | delete through the same path |
//! | `GET /v1/documents/{contentId}/history` | the outbox's audit trail |
//! | `GET /healthz` | the process answers (no token needed) |
//!
//! With a token configured every `/v1` route needs `Authorization: Bearer <token>` (401
//! otherwise). Bodies over `serve.max_body_bytes` get 413; `k` over `serve.max_k` 400.

mod auth;
mod error;
mod handlers;

pub use auth::Token;
pub use error::ApiError;

use crate::Reader;
use axum::handler::Handler;
use axum::http::{Method, StatusCode};
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::Router;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;
use tidemark_core::config::ServeConfig;

/// What the server needs besides the reader.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub token: Option<Token>,
    pub max_body_bytes: usize,
    pub max_k: usize,
}

impl ServeOptions {
    /// From `[serve]`, reading the token from its variable or file. A non-loopback address
    /// without a token is refused (naming the key).
    pub fn from_config(cfg: &ServeConfig) -> Result<ServeOptions, String> {
        let token = Token::from_config(cfg)?;
        let addr: std::net::SocketAddr = cfg
            .addr
            .parse()
            .map_err(|_| format!("serve.addr `{}` is not an address", cfg.addr))?;
        if token.is_none() && !addr.ip().is_loopback() {
            return Err(format!(
                "serve.addr `{addr}` is not a loopback address, so a bearer token is required: \
                 set serve.token_env or serve.token_file"
            ));
        }
        Ok(ServeOptions {
            token,
            max_body_bytes: cfg.max_body_bytes,
            max_k: cfg.max_k,
        })
    }
}

#[derive(Clone)]
pub(crate) struct AppState {
    reader: Reader,
    token: Option<Arc<Token>>,
    max_body_bytes: usize,
    max_k: usize,
}

struct Entry {
    method: Method,
    path: &'static str,
    handler: MethodRouter<AppState>,
}

fn entry<H, T>(method: Method, path: &'static str, h: H) -> Entry
where
    H: Handler<T, AppState>,
    T: 'static,
{
    let filter = MethodFilter::try_from(method.clone()).expect("a standard method");
    Entry {
        method,
        path,
        handler: on(filter, h),
    }
}

/// The authenticated routes: the one table the router is built from.
fn entries() -> Vec<Entry> {
    use handlers::*;
    vec![
        entry(Method::POST, "/v1/search", search),
        entry(Method::GET, "/v1/documents", recent),
        entry(Method::GET, "/v1/documents/{contentId}", get_document),
        entry(Method::PUT, "/v1/documents/{contentId}", put_document),
        entry(Method::DELETE, "/v1/documents/{contentId}", delete_document),
        entry(Method::GET, "/v1/documents/{contentId}/history", history),
    ]
}

/// Every route the server answers, as (method, path template), `/healthz` included.
pub fn routes() -> Vec<(Method, &'static str)> {
    let mut all: Vec<(Method, &'static str)> =
        entries().into_iter().map(|e| (e.method, e.path)).collect();
    all.push((Method::GET, "/healthz"));
    all
}

async fn log_request(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let start = Instant::now();
    let resp = next.run(req).await;
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    tracing::debug!(%method, %path, status = resp.status().as_u16(), ms, "request");
    resp
}

/// The application: routes, authentication, body limit, JSON errors for unknown routes.
pub fn router(reader: Reader, opts: ServeOptions) -> Router {
    let state = AppState {
        reader,
        token: opts.token.map(Arc::new),
        max_body_bytes: opts.max_body_bytes,
        max_k: opts.max_k,
    };
    let mut v1 = Router::new();
    for e in entries() {
        v1 = v1.route(e.path, e.handler);
    }
    let v1 = v1.route_layer(axum::middleware::from_fn_with_state(
        state.clone(),
        auth::require_token,
    ));
    Router::new()
        .route("/healthz", axum::routing::get(|| async { "ok\n" }))
        .merge(v1)
        .fallback(|| async {
            ApiError::not_found("no_route", "no such route; see docs/openapi.yaml")
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not take that method; see docs/openapi.yaml",
            )
        })
        .layer(axum::extract::DefaultBodyLimit::max(state.max_body_bytes))
        .layer(axum::middleware::from_fn(log_request))
        .with_state(state)
}

/// Serves the API on `listener` until `shutdown` completes.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    reader: Reader,
    opts: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let auth = if opts.token.is_some() {
        "bearer token"
    } else {
        "none (loopback only)"
    };
    tracing::info!(addr = %listener.local_addr()?, auth, "serving the HTTP API");
    axum::serve(listener, router(reader, opts))
        .with_graceful_shutdown(shutdown)
        .await
}
