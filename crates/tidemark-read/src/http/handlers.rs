//! The route handlers: parse and check the request (errors name the field), call the
//! [`Reader`](crate::Reader) or the store, answer JSON.

use super::error::ApiError;
use super::AppState;
use crate::json::{document_json, search_json};
use crate::{Filter, Query, SearchRequest, WriteMark};
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;
use tidemark_store::NewDocument;

/// Longest read-your-writes wait a request may ask for.
pub const MAX_WAIT_MS: u64 = 60_000;
/// Default number of hits and of recent documents.
pub const DEFAULT_K: usize = 10;

type Answer = Result<Json<Value>, ApiError>;

fn body(st: &AppState, b: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    b.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!(
                    "the request body is over the limit of {} bytes (serve.max_body_bytes)",
                    st.max_body_bytes
                ),
            )
        } else {
            ApiError::bad_request("invalid_body", r.body_text())
        }
    })
}

/// Parses JSON; a wrong field is named by its path (`k`, `filter`, `after.version`).
fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ApiError::bad_request(
                "invalid_json",
                format!("the body is not valid JSON: {inner}"),
            )
        } else if path == "." {
            ApiError::bad_request("invalid_request", inner.to_string())
        } else {
            ApiError::bad_request("invalid_request", format!("`{path}`: {inner}"))
        }
    })?;
    de.end().map_err(|e| {
        ApiError::bad_request("invalid_json", format!("the body is not valid JSON: {e}"))
    })?;
    Ok(value)
}

fn content_id(p: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    p.map(|Path(id)| id)
        .map_err(|r| ApiError::bad_request("invalid_request", r.body_text()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SearchBody {
    query: Option<String>,
    vector: Option<Vec<f32>>,
    k: Option<usize>,
    filter: Option<Value>,
    #[serde(rename = "type")]
    doc_type: Option<String>,
    after: Option<WriteMark>,
    wait_ms: Option<u64>,
}

fn check_k(k: usize, max: usize, field: &str) -> Result<usize, ApiError> {
    if k == 0 {
        return Err(ApiError::bad_request(
            "invalid_request",
            format!("`{field}` must be at least 1"),
        ));
    }
    if k > max {
        return Err(ApiError::bad_request(
            "k_over_limit",
            format!("`{field}` is {k}, over the limit of {max} (serve.max_k)"),
        ));
    }
    Ok(k)
}

fn search_request(b: SearchBody, max_k: usize) -> Result<SearchRequest, ApiError> {
    let query = match (b.query, b.vector) {
        (Some(q), None) => Query::Text(q),
        (None, Some(v)) => Query::Vector(v),
        _ => {
            return Err(ApiError::bad_request(
                "invalid_request",
                "give exactly one of `query` (text) and `vector` (numbers)",
            ))
        }
    };
    let k = check_k(b.k.unwrap_or(DEFAULT_K), max_k, "k")?;
    let mut filter = match &b.filter {
        Some(f) => Filter::from_json(f).map_err(crate::ReadError::from)?,
        None => Filter::all(),
    };
    if let Some(t) = &b.doc_type {
        filter = filter.with_type(t);
    }
    let wait_ms = b.wait_ms.unwrap_or(10_000);
    if wait_ms > MAX_WAIT_MS {
        return Err(ApiError::bad_request(
            "invalid_request",
            format!("`waitMs` is {wait_ms}, over the limit of {MAX_WAIT_MS}"),
        ));
    }
    let mut req = SearchRequest::new(query, k).with_filter(filter);
    if let Some(mark) = b.after {
        req = req.after(mark, Duration::from_millis(wait_ms));
    }
    Ok(req)
}

pub(super) async fn search(State(st): State<AppState>, b: Result<Bytes, BytesRejection>) -> Answer {
    let bytes = body(&st, b)?;
    let req = search_request(parse(&bytes)?, st.max_k)?;
    let result = st.reader.search(&req).await?;
    Ok(Json(search_json(&result)))
}

pub(super) async fn recent(
    State(st): State<AppState>,
    q: Result<axum::extract::Query<HashMap<String, String>>, QueryRejection>,
) -> Answer {
    let q = q
        .map_err(|r| ApiError::bad_request("invalid_request", r.body_text()))?
        .0;
    if let Some(unknown) = q
        .keys()
        .find(|k| !["type", "limit", "where"].contains(&k.as_str()))
    {
        return Err(ApiError::bad_request(
            "invalid_request",
            format!("unknown query parameter `{unknown}` (type, limit, where)"),
        ));
    }
    let limit = match q.get("limit") {
        None => DEFAULT_K,
        Some(s) => s.parse::<usize>().map_err(|_| {
            ApiError::bad_request(
                "invalid_request",
                format!("`limit` must be a whole number, not `{s}`"),
            )
        })?,
    };
    let limit = check_k(limit, st.max_k, "limit")?;
    let mut filter = match q.get("where") {
        None => Filter::all(),
        Some(w) => {
            let v: Value = serde_json::from_str(w).map_err(|e| {
                ApiError::bad_request("invalid_filter", format!("`where` is not valid JSON: {e}"))
            })?;
            Filter::from_json(&v).map_err(crate::ReadError::from)?
        }
    };
    if let Some(t) = q.get("type") {
        filter = filter.with_type(t);
    }
    let docs = st.reader.recent(&filter, limit).await?;
    Ok(Json(
        json!({"documents": docs.iter().map(document_json).collect::<Vec<_>>()}),
    ))
}

fn no_document(id: &str) -> ApiError {
    ApiError::not_found("not_found", format!("no document with contentId `{id}`"))
}

pub(super) async fn get_document(
    State(st): State<AppState>,
    p: Result<Path<String>, PathRejection>,
) -> Answer {
    let id = content_id(p)?;
    match st.reader.get(&id).await? {
        Some(d) => Ok(Json(document_json(&d))),
        None => Err(no_document(&id)),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PutBody {
    #[serde(rename = "type", default = "default_type")]
    doc_type: String,
    content: String,
    #[serde(default = "empty_object")]
    metadata: Value,
}

fn default_type() -> String {
    "text".into()
}

fn empty_object() -> Value {
    json!({})
}

pub(super) async fn put_document(
    State(st): State<AppState>,
    p: Result<Path<String>, PathRejection>,
    b: Result<Bytes, BytesRejection>,
) -> Answer {
    let id = content_id(p)?;
    let bytes = body(&st, b)?;
    let put: PutBody = parse(&bytes)?;
    let doc = NewDocument::new(id, put.doc_type, put.content).with_metadata(put.metadata);
    let out = st.reader.store().put(doc).await?;
    Ok(Json(serde_json::to_value(out).unwrap_or_default()))
}

pub(super) async fn delete_document(
    State(st): State<AppState>,
    p: Result<Path<String>, PathRejection>,
) -> Answer {
    let id = content_id(p)?;
    match st.reader.store().delete(&id).await? {
        Some(out) => Ok(Json(serde_json::to_value(out).unwrap_or_default())),
        None => Err(no_document(&id)),
    }
}

pub(super) async fn history(
    State(st): State<AppState>,
    p: Result<Path<String>, PathRejection>,
) -> Answer {
    let id = content_id(p)?;
    let entries = st.reader.history(&id).await?;
    if entries.is_empty() {
        return Err(ApiError::not_found(
            "not_found",
            format!("no outbox entries for contentId `{id}` (never written, or expired)"),
        ));
    }
    Ok(Json(json!({"contentId": id, "entries": entries})))
}
