//! The metadata of a vector (the contract in docs/CONTRACT.md): `documentId`, `contentId`,
//! `type`, `version`, `contentHash`, `model`, `timestamp`, plus the document's own metadata
//! flattened to primitive types: nested objects become `a.b` keys, arrays become JSON strings,
//! nulls are dropped. The system keys win over user keys of the same name.
//!
//! This is the one definition of those keys: the worker writes them, ops and search read them,
//! the benchmark builds its backlogs with them.

use crate::contract::DocumentRecord;
use bson::{Bson, Document};
use serde_json::{Number, Value};

/// Metadata of one vector: string, integer, float and boolean values only.
pub type Metadata = serde_json::Map<String, Value>;

/// The metadata keys tidemark owns in every vector.
pub mod keys {
    pub const DOCUMENT_ID: &str = "documentId";
    pub const CONTENT_ID: &str = "contentId";
    pub const TYPE: &str = "type";
    pub const VERSION: &str = "version";
    pub const CONTENT_HASH: &str = "contentHash";
    pub const MODEL: &str = "model";
    pub const TIMESTAMP: &str = "timestamp";
    /// With chunking: the chunk's number, the document's chunk count, the chunk's span in the
    /// content (characters, end exclusive).
    pub const CHUNK: &str = "chunk";
    pub const CHUNKS: &str = "chunks";
    pub const SPAN_START: &str = "spanStart";
    pub const SPAN_END: &str = "spanEnd";
    /// With chunking or a template: the hash of the text embedded, and the settings used.
    pub const TEXT_HASH: &str = "textHash";
    pub const CHUNKING: &str = "chunking";
}

/// Keys the worker owns in every vector's metadata.
pub const SYSTEM_KEYS: &[&str] = &[
    keys::DOCUMENT_ID,
    keys::CONTENT_ID,
    keys::TYPE,
    keys::VERSION,
    keys::CONTENT_HASH,
    keys::MODEL,
    keys::TIMESTAMP,
];

fn rfc3339(dt: bson::DateTime) -> String {
    dt.try_to_rfc3339_string()
        .unwrap_or_else(|_| dt.timestamp_millis().to_string())
}

fn primitive(v: &Bson) -> Option<Value> {
    Some(match v {
        Bson::Null | Bson::Undefined => return None,
        Bson::String(s) => Value::String(s.clone()),
        Bson::Boolean(b) => Value::Bool(*b),
        Bson::Int32(i) => Value::Number((*i).into()),
        Bson::Int64(i) => Value::Number((*i).into()),
        Bson::Double(f) => Number::from_f64(*f).map(Value::Number)?,
        Bson::DateTime(dt) => Value::String(rfc3339(*dt)),
        Bson::ObjectId(o) => Value::String(o.to_hex()),
        Bson::Decimal128(d) => Value::String(d.to_string()),
        Bson::Array(_) => Value::String(
            serde_json::to_string(&v.clone().into_relaxed_extjson()).unwrap_or_default(),
        ),
        other => Value::String(other.to_string()),
    })
}

fn flatten_into(prefix: &str, doc: &Document, out: &mut Metadata) {
    for (k, v) in doc {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            Bson::Document(inner) => flatten_into(&key, inner, out),
            other => {
                if let Some(p) = primitive(other) {
                    out.insert(key, p);
                }
            }
        }
    }
}

/// The user's metadata flattened to Chroma primitives.
pub fn flatten_metadata(doc: &Document) -> Metadata {
    let mut out = Metadata::new();
    flatten_into("", doc, &mut out);
    out
}

/// The full metadata of a document's vector.
pub fn vector_metadata(doc: &DocumentRecord, model: &str) -> Metadata {
    let mut m = flatten_metadata(&doc.metadata);
    for k in SYSTEM_KEYS {
        m.remove(*k);
    }
    m.insert(keys::DOCUMENT_ID.into(), Value::String(doc.id.to_hex()));
    m.insert(keys::CONTENT_ID.into(), Value::String(doc.content_id.clone()));
    m.insert(keys::TYPE.into(), Value::String(doc.doc_type.clone()));
    m.insert(keys::VERSION.into(), Value::Number(doc.version.into()));
    m.insert(
        keys::CONTENT_HASH.into(),
        Value::String(doc.content_hash.clone()),
    );
    m.insert(keys::MODEL.into(), Value::String(model.to_string()));
    m.insert(keys::TIMESTAMP.into(), Value::String(rfc3339(doc.timestamp)));
    m
}

/// A string value of `key` in `m`, if present.
pub fn meta_str<'m>(m: &'m Metadata, key: &str) -> Option<&'m str> {
    m.get(key).and_then(Value::as_str)
}

/// An integer value of `key` in `m`, if present.
pub fn meta_i64(m: &Metadata, key: &str) -> Option<i64> {
    m.get(key).and_then(Value::as_i64)
}

fn value_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(i), Some(j)) => i == j,
            _ => match (x.as_f64(), y.as_f64()) {
                (Some(f), Some(g)) => f == g || ((f - g).abs() <= 1e-9 * f.abs().max(g.abs())),
                _ => false,
            },
        },
        _ => a == b,
    }
}

/// True when two metadata maps hold the same keys and values (numbers compared by value, so
/// `1.0` stored as a float equals `1.0` read back).
pub fn metadata_equal(a: &Metadata, b: &Metadata) -> bool {
    a.len() == b.len()
        && a.iter()
            .all(|(k, v)| b.get(k).is_some_and(|w| value_eq(v, w)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::{doc, oid::ObjectId};
    use serde_json::json;

    fn record(meta: Document) -> DocumentRecord {
        DocumentRecord {
            id: ObjectId::parse_str("65f0c0ffee00000000000001").unwrap(),
            content_id: "faq-1".into(),
            doc_type: "faq".into(),
            content: "hello".into(),
            metadata: meta,
            timestamp: bson::DateTime::from_millis(1_700_000_000_000),
            version: 3,
            content_hash: crate::content_hash("hello"),
            vector_id: None,
            indexed_version: None,
        }
    }

    #[test]
    fn contract_keys_and_flattening() {
        let r = record(doc! {
            "lang": "en", "n": 2_i64, "score": 0.5, "ok": true, "gone": Bson::Null,
            "a": {"b": {"c": 1}}, "tags": ["x", "y"], "version": 99, "model": "evil",
        });
        let m = vector_metadata(&r, "hash-384");
        assert_eq!(m["documentId"], json!("65f0c0ffee00000000000001"));
        assert_eq!(m["contentId"], json!("faq-1"));
        assert_eq!(m["type"], json!("faq"));
        assert_eq!(m["version"], json!(3), "system keys win");
        assert_eq!(m["model"], json!("hash-384"));
        assert_eq!(
            m["contentHash"],
            json!(crate::content_hash("hello"))
        );
        assert_eq!(m["timestamp"], json!("2023-11-14T22:13:20Z"));
        assert_eq!(m["lang"], json!("en"));
        assert_eq!(m["n"], json!(2));
        assert_eq!(m["score"], json!(0.5));
        assert_eq!(m["ok"], json!(true));
        assert_eq!(m["a.b.c"], json!(1));
        assert_eq!(m["tags"], json!("[\"x\",\"y\"]"));
        assert!(!m.contains_key("gone"));
        assert!(m
            .values()
            .all(|v| !v.is_object() && !v.is_array() && !v.is_null()));
    }

    #[test]
    fn equality_compares_numbers_by_value() {
        let a: Metadata = json!({"x": 1.0, "y": "s", "n": 2})
            .as_object()
            .unwrap()
            .clone();
        let b: Metadata = json!({"x": 1.0, "y": "s", "n": 2})
            .as_object()
            .unwrap()
            .clone();
        assert!(metadata_equal(&a, &b));
        let c: Metadata = json!({"x": 1.5, "y": "s", "n": 2})
            .as_object()
            .unwrap()
            .clone();
        assert!(!metadata_equal(&a, &c));
        let d: Metadata = json!({"x": 1.0, "y": "s"}).as_object().unwrap().clone();
        assert!(!metadata_equal(&a, &d));
    }
}
