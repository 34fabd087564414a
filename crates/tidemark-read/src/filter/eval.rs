//! In-memory evaluation of a filter against a document: the reference semantics that the
//! Chroma and MongoDB translations must agree with.

use super::{Cond, Filter, Op, Scalar};
use serde_json::{Map, Number, Value};
use std::cmp::Ordering;
use tidemark_core::DocumentRecord;

/// What a filter sees of a document: its metadata flattened exactly as it is stored beside its
/// vectors (`a.b` keys, arrays as JSON text, dates as RFC 3339), plus `type` and `contentId`.
pub fn view(doc: &DocumentRecord) -> Map<String, Value> {
    let mut m = tidemark_worker::flatten_metadata(&doc.metadata);
    for k in tidemark_worker::SYSTEM_KEYS {
        m.remove(*k);
    }
    m.insert("type".into(), Value::String(doc.doc_type.clone()));
    m.insert("contentId".into(), Value::String(doc.content_id.clone()));
    m
}

fn num_cmp(a: &Number, b: &Scalar) -> Option<Ordering> {
    match (a.as_i64(), b) {
        (Some(x), Scalar::Int(y)) => Some(x.cmp(y)),
        (_, Scalar::Int(y)) => a.as_f64()?.partial_cmp(&(*y as f64)),
        (_, Scalar::Float(y)) => a.as_f64()?.partial_cmp(y),
        _ => None,
    }
}

/// How a stored value compares with an operand of the same kind; `None` across kinds.
fn compare(v: &Value, s: &Scalar) -> Option<Ordering> {
    match (v, s) {
        (Value::String(a), Scalar::Str(b)) => Some(a.as_str().cmp(b.as_str())),
        (Value::Bool(a), Scalar::Bool(b)) => Some(a.cmp(b)),
        (Value::Number(a), Scalar::Int(_) | Scalar::Float(_)) => num_cmp(a, s),
        _ => None,
    }
}

fn eq(v: Option<&Value>, s: &Scalar) -> bool {
    v.and_then(|v| compare(v, s)) == Some(Ordering::Equal)
}

fn range(v: Option<&Value>, s: &Scalar, ok: fn(Ordering) -> bool) -> bool {
    v.and_then(|v| compare(v, s)).is_some_and(ok)
}

impl Cond {
    /// Whether the condition holds on a document's [`view`].
    pub fn matches(&self, view: &Map<String, Value>) -> bool {
        let v = view.get(&self.key);
        match &self.op {
            Op::Eq(s) => eq(v, s),
            Op::Ne(s) => !eq(v, s),
            Op::Gt(s) => range(v, s, Ordering::is_gt),
            Op::Gte(s) => range(v, s, Ordering::is_ge),
            Op::Lt(s) => range(v, s, Ordering::is_lt),
            Op::Lte(s) => range(v, s, Ordering::is_le),
            Op::In(list) => list.iter().any(|s| eq(v, s)),
            Op::Nin(list) => !list.iter().any(|s| eq(v, s)),
        }
    }
}

impl Filter {
    /// Whether every condition holds on a document's [`view`].
    pub fn matches_view(&self, view: &Map<String, Value>) -> bool {
        self.conds.iter().all(|c| c.matches(view))
    }

    /// Whether the document matches.
    pub fn matches(&self, doc: &DocumentRecord) -> bool {
        self.is_empty() || self.matches_view(&view(doc))
    }
}

#[cfg(test)]
mod tests {
    use super::super::Filter;
    use super::*;
    use bson::doc;
    use serde_json::json;

    fn record(metadata: bson::Document) -> DocumentRecord {
        DocumentRecord {
            id: bson::oid::ObjectId::new(),
            content_id: "c-1".into(),
            doc_type: "faq".into(),
            content: "x".into(),
            metadata,
            timestamp: bson::DateTime::from_millis(0),
            version: 4,
            content_hash: "h".into(),
            vector_id: None,
            indexed_version: None,
        }
    }

    fn m(filter: Value, doc: &DocumentRecord) -> bool {
        Filter::from_json(&filter).unwrap().matches(doc)
    }

    #[test]
    fn view_is_the_flattened_metadata_with_document_fields() {
        let d = record(doc! {"a": {"b": 1}, "tags": ["x"], "type": "spoof", "version": 9});
        let v = view(&d);
        assert_eq!(v["a.b"], json!(1));
        assert_eq!(v["tags"], json!("[\"x\"]"));
        assert_eq!(v["type"], json!("faq"), "the document's type wins");
        assert_eq!(v["contentId"], json!("c-1"));
        assert!(!v.contains_key("version"));
    }

    #[test]
    fn equality_and_kinds() {
        let d = record(doc! {"lang": "en", "n": 2_i64, "f": 1.0, "ok": true, "a": {"b": "deep"}});
        assert!(m(json!({}), &d));
        assert!(m(json!({"lang": "en"}), &d));
        assert!(m(json!({"lang": {"$eq": "en"}, "type": "faq"}), &d));
        assert!(!m(json!({"lang": "fr"}), &d));
        assert!(m(json!({"n": 2.0}), &d), "numbers compare by value");
        assert!(m(json!({"f": 1}), &d));
        assert!(!m(json!({"n": "2"}), &d), "a string never equals a number");
        assert!(!m(json!({"ok": 1}), &d), "a boolean never equals a number");
        assert!(m(json!({"ok": true}), &d));
        assert!(m(json!({"a.b": "deep"}), &d));
        assert!(m(json!({"contentId": {"$in": ["c-0", "c-1"]}}), &d));
    }

    #[test]
    fn ne_and_nin_match_missing_keys_and_other_kinds() {
        let d = record(doc! {"lang": "en", "n": 2});
        assert!(m(json!({"missing": {"$ne": "x"}}), &d));
        assert!(m(json!({"missing": {"$nin": ["x"]}}), &d));
        assert!(m(json!({"n": {"$ne": "2"}}), &d));
        assert!(!m(json!({"lang": {"$ne": "en"}}), &d));
        assert!(!m(json!({"lang": {"$nin": ["de", "en"]}}), &d));
        assert!(m(json!({"lang": {"$nin": []}}), &d));
        assert!(!m(json!({"lang": {"$in": []}}), &d));
    }

    #[test]
    fn ranges_on_numbers_and_strings() {
        let d = record(doc! {"year": 2021, "score": 0.75, "day": "2024-05-01"});
        assert!(m(json!({"year": {"$gte": 2021, "$lt": 2022}}), &d));
        assert!(!m(json!({"year": {"$gt": 2021}}), &d));
        assert!(m(json!({"year": {"$gt": 2020.5}}), &d));
        assert!(m(json!({"score": {"$lte": 0.75, "$gt": 0}}), &d));
        assert!(!m(json!({"score": {"$lt": 0.75}}), &d));
        assert!(m(
            json!({"day": {"$gte": "2024-01-01", "$lt": "2024-12-31"}}),
            &d
        ));
        assert!(!m(json!({"day": {"$gt": 5}}), &d), "no range across kinds");
        assert!(!m(json!({"year": {"$gt": "2000"}}), &d));
        assert!(!m(json!({"missing": {"$lt": 5}}), &d));
    }

    #[test]
    fn large_integers_compare_exactly() {
        let d = record(doc! {"big": 9_007_199_254_740_993_i64});
        assert!(m(json!({"big": 9_007_199_254_740_993_i64}), &d));
        assert!(!m(json!({"big": 9_007_199_254_740_992_i64}), &d));
        assert!(m(json!({"big": {"$gt": 9_007_199_254_740_992_i64}}), &d));
    }
}
