//! One legacy record turned into a tidemark document (pure): the id as a string, the text, the
//! time normalised to a BSON Date, and the metadata cleaned: the legacy write-status flags
//! dropped, the record's other top-level fields added, keys MongoDB-safe, BSON-only values as
//! JSON, and `legacy: {collection, id, _id, migration, timeField, time}` added (the original
//! time kept as it was). Records that cannot become a document get a [`SkipReason`].

use crate::mapping::CollectionMapping;
use crate::time::{parse_time, TimeKind};
use bson::{oid::ObjectId, Bson, DateTime, Document};
use serde::Serialize;
use serde_json::{Map, Value};
use tidemark_core::config::Limits;
use tidemark_store::NewDocument;

/// Key of the provenance object in every migrated document's metadata.
pub const LEGACY_KEY: &str = "legacy";
/// Where a record's own `legacy` metadata key is moved to.
pub const LEGACY_RENAMED: &str = "legacy_metadata";

/// Why a legacy record is not migrated.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// `metadata.type == "image"`: the text is a URL, never embedded.
    Image,
    /// The text field is missing, not a string, or blank.
    EmptyText,
    /// The id field is missing or empty.
    NoId,
    /// The time field holds a value of no known format.
    BadTime,
    /// The document would break tidemark's limits (the reason says which).
    Invalid,
    /// The mapping skips the whole collection.
    CollectionSkipped,
}

impl SkipReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            SkipReason::Image => "image",
            SkipReason::EmptyText => "empty_text",
            SkipReason::NoId => "no_id",
            SkipReason::BadTime => "bad_time",
            SkipReason::Invalid => "invalid",
            SkipReason::CollectionSkipped => "collection_skipped",
        }
    }
}

/// A record that becomes a document.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub oid: ObjectId,
    pub id: String,
    pub time: DateTime,
    pub time_kind: TimeKind,
    pub doc: NewDocument,
}

/// A record that does not, and why (with detail for `Invalid` and `BadTime`).
#[derive(Debug, Clone, PartialEq)]
pub struct Skipped {
    pub oid: ObjectId,
    pub id: Option<String>,
    pub reason: SkipReason,
    pub detail: Option<String>,
}

/// The deterministic contentId of a legacy record.
pub fn content_id(collection: &str, id: &str) -> String {
    format!("{collection}:{id}")
}

/// The legacy id as a string: strings (trimmed, not empty), integers, integral doubles,
/// ObjectIds.
pub fn id_string(v: Option<&Bson>) -> Option<String> {
    match v? {
        Bson::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Bson::Int32(n) => Some(n.to_string()),
        Bson::Int64(n) => Some(n.to_string()),
        Bson::Double(f) if f.fract() == 0.0 && f.is_finite() => Some(format!("{}", *f as i64)),
        Bson::ObjectId(o) => Some(o.to_hex()),
        _ => None,
    }
}

/// A metadata key MongoDB and tidemark accept: no `.`, no leading `$`, no NUL, not empty.
pub fn safe_key(k: &str) -> String {
    let mut s: String = k
        .chars()
        .map(|c| if c == '.' || c == '\0' { '_' } else { c })
        .collect();
    if s.starts_with('$') {
        s.replace_range(0..1, "_");
    }
    if s.is_empty() {
        s.push('_');
    }
    s
}

/// A BSON value as plain JSON (dates as RFC 3339, ObjectIds as hex, keys made safe).
pub fn to_json(v: &Bson) -> Value {
    match v {
        Bson::Null | Bson::Undefined => Value::Null,
        Bson::Boolean(b) => Value::Bool(*b),
        Bson::Int32(n) => Value::from(*n),
        Bson::Int64(n) => Value::from(*n),
        Bson::Double(f) => serde_json::Number::from_f64(*f)
            .map(Value::Number)
            .unwrap_or_else(|| Value::String(f.to_string())),
        Bson::String(s) => Value::String(s.clone()),
        Bson::DateTime(d) => Value::String(
            d.try_to_rfc3339_string()
                .unwrap_or_else(|_| d.timestamp_millis().to_string()),
        ),
        Bson::ObjectId(o) => Value::String(o.to_hex()),
        Bson::Array(a) => Value::Array(a.iter().map(to_json).collect()),
        Bson::Document(d) => Value::Object(doc_to_json(d)),
        other => Value::String(other.to_string()),
    }
}

fn doc_to_json(d: &Document) -> Map<String, Value> {
    d.iter().map(|(k, v)| (safe_key(k), to_json(v))).collect()
}

/// The cleaned metadata: the metadata object (if any), then the record's other top-level
/// fields (when `extra_fields`; the metadata object wins on a clash), minus the dropped keys.
pub fn clean_metadata(record: &Document, m: &CollectionMapping) -> Map<String, Value> {
    let mut out = match m.metadata_field.as_deref().and_then(|f| record.get(f)) {
        Some(Bson::Document(d)) => doc_to_json(d),
        _ => Map::new(),
    };
    if m.extra_fields {
        let roles = [
            Some("_id"),
            Some(m.id_field.as_str()),
            Some(m.text_field.as_str()),
            m.time_field.as_deref(),
            m.metadata_field.as_deref(),
        ];
        for (k, v) in record {
            if !roles.contains(&Some(k.as_str())) {
                out.entry(safe_key(k)).or_insert_with(|| to_json(v));
            }
        }
    }
    for k in m.drop_list() {
        out.remove(&k);
    }
    out.retain(|_, v| !v.is_null());
    if let Some(own) = out.remove(LEGACY_KEY) {
        out.insert(LEGACY_RENAMED.into(), own);
    }
    out
}

fn is_image(record: &Document, m: &CollectionMapping) -> bool {
    let meta = m
        .metadata_field
        .as_deref()
        .and_then(|f| record.get_document(f).ok());
    meta.and_then(|d| d.get_str("type").ok()) == Some("image")
}

/// Context of a normalisation: which collection, which migration, tidemark's limits.
pub struct Context<'a> {
    pub collection: &'a str,
    pub migration: &'a str,
    pub mapping: &'a CollectionMapping,
    pub limits: &'a Limits,
}

/// Turns one legacy record into a candidate document or says why not.
pub fn normalise(record: &Document, cx: &Context) -> Result<Candidate, Skipped> {
    let m = cx.mapping;
    let oid = record
        .get_object_id("_id")
        .unwrap_or_else(|_| ObjectId::from_bytes([0; 12]));
    let id = id_string(record.get(&m.id_field));
    let skip = |reason, detail: Option<String>| Skipped {
        oid,
        id: id.clone(),
        reason,
        detail,
    };
    if m.skip {
        return Err(skip(SkipReason::CollectionSkipped, None));
    }
    let Some(id_str) = id.clone() else {
        return Err(skip(SkipReason::NoId, None));
    };
    if is_image(record, m) {
        return Err(skip(SkipReason::Image, None));
    }
    let text = match record.get(&m.text_field) {
        Some(Bson::String(s)) if !s.trim().is_empty() => s.clone(),
        _ => return Err(skip(SkipReason::EmptyText, None)),
    };
    let raw_time = m.time_field.as_deref().and_then(|f| record.get(f));
    let (time, time_kind) = match parse_time(raw_time) {
        Ok(Some(t)) => t,
        Ok(None) => (oid.timestamp(), TimeKind::Missing),
        Err(e) => return Err(skip(SkipReason::BadTime, Some(e))),
    };
    let mut meta = clean_metadata(record, m);
    let mut legacy = Map::new();
    legacy.insert("collection".into(), Value::from(cx.collection));
    legacy.insert("id".into(), Value::from(id_str.as_str()));
    legacy.insert("_id".into(), Value::from(oid.to_hex()));
    legacy.insert("migration".into(), Value::from(cx.migration));
    if let (Some(f), Some(v)) = (m.time_field.as_deref(), raw_time) {
        legacy.insert("timeField".into(), Value::from(f));
        legacy.insert("time".into(), to_json(v));
    }
    meta.insert(LEGACY_KEY.into(), Value::Object(legacy));
    let doc = NewDocument::new(content_id(cx.collection, &id_str), &m.doc_type, text)
        .with_metadata(Value::Object(meta))
        .with_timestamp(time);
    if let Err(e) = tidemark_store::validate(&doc, cx.limits) {
        return Err(skip(SkipReason::Invalid, Some(e.to_string())));
    }
    Ok(Candidate {
        oid,
        id: id_str,
        time,
        time_kind,
        doc,
    })
}

#[cfg(test)]
#[path = "record_tests.rs"]
mod tests;
