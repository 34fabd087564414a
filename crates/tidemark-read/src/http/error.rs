//! Every error of the HTTP API is a JSON body `{"error": {"code": "...", "message": "..."}}`
//! with a stable code. Server-side failures are logged in full and answered briefly.

use crate::ReadError;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tidemark_store::StoreError;

/// An error answer: status, stable code, one-line message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn unauthorized(message: &str) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, code, message)
    }

    fn unavailable(code: &'static str, what: &str, detail: &dyn std::fmt::Display) -> ApiError {
        tracing::warn!(error = %detail, code, "request failed");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            code,
            format!("{what} failed or is unreachable; the server log has the details"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"code": self.code, "message": self.message}});
        let mut resp = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, "Bearer".parse().expect("static"));
        }
        resp
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::Validation { .. } => {
                ApiError::bad_request("invalid_document", e.to_string())
            }
            StoreError::RetriesExhausted { .. } => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "write_conflict",
                e.to_string(),
            ),
            e => ApiError::unavailable("mongodb_unavailable", "MongoDB", &e),
        }
    }
}

impl From<ReadError> for ApiError {
    fn from(e: ReadError) -> ApiError {
        match e {
            ReadError::Filter(f) => ApiError::bad_request(
                "invalid_filter",
                format!("filter `filter.{}`: {}", f.path, f.reason),
            ),
            ReadError::InvalidQuery(m) => ApiError::bad_request("invalid_request", m),
            ReadError::Store(s) => s.into(),
            ReadError::Mongo(m) => ApiError::unavailable("mongodb_unavailable", "MongoDB", &m),
            ReadError::Vectors(v) => {
                ApiError::unavailable("vector_index_unavailable", "the vector index", &v)
            }
            ReadError::Embed(x) => {
                ApiError::unavailable("embedder_unavailable", "the embedder", &x)
            }
            e @ ReadError::NotIndexed { .. } => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_indexed_yet",
                e.to_string(),
            ),
            e @ ReadError::IndexFailed { .. } => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "index_failed",
                e.to_string(),
            ),
            e => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
        }
    }
}
