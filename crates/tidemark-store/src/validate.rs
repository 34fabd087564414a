//! Input validation, done before any write: a rejected document never reaches MongoDB.
//!
//! Rules (limits come from `[limits]` in the configuration):
//! - `contentId`: not empty, at most `max_content_id_len` bytes, no NUL character;
//! - `type`: not empty;
//! - `content`: not empty, at most `max_content_bytes` bytes (UTF-8);
//! - `metadata`: a JSON object; no key is empty, starts with `$`, contains `.` or NUL (at any
//!   depth, including objects inside arrays); nesting depth at most `max_metadata_depth`, where
//!   the metadata object itself is depth 1 and every nested object or array adds one;
//!   integers must fit in a signed 64-bit integer (BSON has no unsigned 64-bit type).

use crate::error::StoreError;
use serde_json::Value;
use tidemark_core::config::Limits;

/// A document to write, keyed by its `content_id`.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDocument {
    pub content_id: String,
    pub doc_type: String,
    pub content: String,
    /// Must be a JSON object (`{}` for none).
    pub metadata: Value,
    /// The document's `timestamp`; `None` (the default) means the time of the write.
    pub timestamp: Option<bson::DateTime>,
}

impl NewDocument {
    /// A document with empty metadata.
    pub fn new(
        content_id: impl Into<String>,
        doc_type: impl Into<String>,
        content: impl Into<String>,
    ) -> Self {
        NewDocument {
            content_id: content_id.into(),
            doc_type: doc_type.into(),
            content: content.into(),
            metadata: Value::Object(Default::default()),
            timestamp: None,
        }
    }

    /// Sets the `timestamp` to store instead of the time of the write (e.g. a migrated
    /// record's original time).
    pub fn with_timestamp(mut self, timestamp: bson::DateTime) -> Self {
        self.timestamp = Some(timestamp);
        self
    }

    /// Sets the metadata (must be a JSON object; checked on write).
    pub fn with_metadata(mut self, metadata: Value) -> Self {
        self.metadata = metadata;
        self
    }

    /// Rough size in bytes of the stored document, used to bound `put_many` transactions.
    pub fn approx_bytes(&self) -> usize {
        let md = serde_json::to_string(&self.metadata)
            .map(|s| s.len())
            .unwrap_or(0);
        self.content_id.len() + self.doc_type.len() + self.content.len() + md + 200
    }
}

/// Checks one document against the rules in the module documentation.
pub fn validate(doc: &NewDocument, limits: &Limits) -> Result<(), StoreError> {
    validate_content_id(&doc.content_id, limits)?;
    if doc.doc_type.trim().is_empty() {
        return Err(StoreError::validation("type", "must not be empty"));
    }
    if doc.content.is_empty() {
        return Err(StoreError::validation("content", "must not be empty"));
    }
    if doc.content.len() > limits.max_content_bytes {
        return Err(StoreError::validation(
            "content",
            format!(
                "is {} bytes, over the limit of {} bytes (limits.max_content_bytes)",
                doc.content.len(),
                limits.max_content_bytes
            ),
        ));
    }
    let Value::Object(map) = &doc.metadata else {
        return Err(StoreError::validation(
            "metadata",
            format!("must be a JSON object, not {}", kind(&doc.metadata)),
        ));
    };
    check_object(map, "metadata", 1, limits.max_metadata_depth)
}

/// Checks a `contentId` alone (also used by `get` and `delete`).
pub fn validate_content_id(content_id: &str, limits: &Limits) -> Result<(), StoreError> {
    if content_id.is_empty() {
        return Err(StoreError::validation("contentId", "must not be empty"));
    }
    if content_id.len() > limits.max_content_id_len {
        return Err(StoreError::validation(
            "contentId",
            format!(
                "is {} bytes, longer than the limit of {} bytes (limits.max_content_id_len)",
                content_id.len(),
                limits.max_content_id_len
            ),
        ));
    }
    if content_id.contains('\0') {
        return Err(StoreError::validation(
            "contentId",
            "must not contain a NUL character",
        ));
    }
    Ok(())
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn too_deep(path: &str, max: usize) -> StoreError {
    StoreError::validation(
        path,
        format!("nesting is deeper than the limit of {max} levels (limits.max_metadata_depth)"),
    )
}

fn check_object(
    map: &serde_json::Map<String, Value>,
    path: &str,
    depth: usize,
    max: usize,
) -> Result<(), StoreError> {
    if depth > max {
        return Err(too_deep(path, max));
    }
    for (key, value) in map {
        let here = format!("{path}.{key}");
        if key.is_empty() {
            return Err(StoreError::validation(path, "has an empty key"));
        }
        if key.starts_with('$') {
            return Err(StoreError::validation(
                &here,
                "keys must not start with `$` (reserved by MongoDB operators)",
            ));
        }
        if key.contains('.') {
            return Err(StoreError::validation(
                &here,
                "keys must not contain `.` (it separates nested keys in vector metadata)",
            ));
        }
        if key.contains('\0') {
            return Err(StoreError::validation(
                &here,
                "keys must not contain a NUL character",
            ));
        }
        check_value(value, &here, depth, max)?;
    }
    Ok(())
}

fn check_value(value: &Value, path: &str, depth: usize, max: usize) -> Result<(), StoreError> {
    match value {
        Value::Object(m) => check_object(m, path, depth + 1, max),
        Value::Array(items) => {
            if depth + 1 > max {
                return Err(too_deep(path, max));
            }
            for (i, item) in items.iter().enumerate() {
                check_value(item, &format!("{path}[{i}]"), depth + 1, max)?;
            }
            Ok(())
        }
        Value::Number(n) if n.is_u64() && n.as_i64().is_none() => Err(StoreError::validation(
            path,
            format!("{n} does not fit in a signed 64-bit integer"),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn limits() -> Limits {
        Limits {
            max_content_bytes: 10,
            max_content_id_len: 5,
            max_metadata_depth: 3,
            max_batch_bytes: 100,
        }
    }

    fn field_of(doc: NewDocument) -> String {
        match validate(&doc, &limits()) {
            Err(StoreError::Validation { field, .. }) => field,
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn accepts_a_good_document() {
        let d = NewDocument::new("a", "t", "hello").with_metadata(json!({"x": {"y": [1, 2]}}));
        validate(&d, &limits()).unwrap();
    }

    #[test]
    fn each_rule_names_its_field() {
        assert_eq!(field_of(NewDocument::new("", "t", "c")), "contentId");
        assert_eq!(field_of(NewDocument::new("toolong", "t", "c")), "contentId");
        assert_eq!(field_of(NewDocument::new("a", " ", "c")), "type");
        assert_eq!(field_of(NewDocument::new("a", "t", "")), "content");
        assert_eq!(
            field_of(NewDocument::new("a", "t", "01234567890")),
            "content"
        );
        let d = |m| NewDocument::new("a", "t", "c").with_metadata(m);
        assert_eq!(field_of(d(json!([1]))), "metadata");
        assert_eq!(field_of(d(json!(null))), "metadata");
        assert_eq!(field_of(d(json!({"$set": 1}))), "metadata.$set");
        assert_eq!(field_of(d(json!({"a": {"b.c": 1}}))), "metadata.a.b.c");
        assert_eq!(field_of(d(json!({"a": [{"$x": 1}]}))), "metadata.a[0].$x");
        assert_eq!(
            field_of(d(json!({"a": {"b": {"c": {}}}}))),
            "metadata.a.b.c"
        );
        assert_eq!(field_of(d(json!({"a": [[[1]]]}))), "metadata.a[0][0]");
        assert_eq!(field_of(d(json!({"n": u64::MAX}))), "metadata.n");
    }

    #[test]
    fn depth_limit_is_inclusive() {
        let d = NewDocument::new("a", "t", "c")
            .with_metadata(json!({"a": {"b": {"c": 1}}, "l": [[1]]}));
        validate(&d, &limits()).unwrap();
    }

    #[test]
    fn message_names_the_limit() {
        let err = validate(&NewDocument::new("a", "t", "01234567890"), &limits()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid `content`: is 11 bytes, over the limit of 10 bytes (limits.max_content_bytes)"
        );
    }
}
