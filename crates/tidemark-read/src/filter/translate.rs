//! Where each condition is evaluated.
//!
//! Chroma's `where` is used for the conditions it evaluates exactly like [`Filter::matches`]
//! (checked against a real Chroma 1.5 server): `$eq`/`$ne` on any value, ranges on numbers,
//! `$in`/`$nin` on a non-empty list of one kind. It refuses ranges on strings and empty or
//! mixed lists, so those stay on the MongoDB side: the search over-fetches candidates and
//! filters the hydrated documents. Every hit is checked against the whole filter in memory
//! anyway, so a stale vector (its metadata older than the document) can never let a document
//! through that no longer matches.
//!
//! For `recent`, [`mongo_query`] narrows the documents read from MongoDB. MongoDB compares
//! stored values, not their flattened form (arrays, dates), so the query is a superset: a
//! metadata condition also lets through documents where the key, or one of its parents, holds
//! an array or a value that flattening turns into a string. The result is then checked in
//! memory.

use super::{Cond, Filter, Kind, Op, Scalar};
use bson::{doc, Bson, Document};
use serde_json::{json, Map, Value};

/// BSON types whose flattened form is not the stored value (arrays become JSON text, dates
/// RFC 3339 strings, ids and decimals strings).
const OPAQUE_TYPES: &[&str] = &["array", "date", "objectId", "decimal"];

/// A filter split between Chroma and the MongoDB side.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Chroma's `where`, or `None` when no condition can go there.
    pub chroma: Option<Value>,
    /// The conditions evaluated only after hydration.
    pub residual: Vec<Cond>,
}

impl Plan {
    /// True when some condition is evaluated only on the MongoDB side (search over-fetches).
    pub fn has_residual(&self) -> bool {
        !self.residual.is_empty()
    }
}

fn one_kind(list: &[Scalar]) -> bool {
    match list.first() {
        None => false,
        Some(first) => list.iter().all(|s| s.kind() == first.kind()),
    }
}

/// Whether Chroma's `where` evaluates this condition exactly like the in-memory semantics.
pub fn chroma_supports(c: &Cond) -> bool {
    match &c.op {
        Op::Eq(_) | Op::Ne(_) => true,
        Op::Gt(s) | Op::Gte(s) | Op::Lt(s) | Op::Lte(s) => s.kind() == Kind::Num,
        Op::In(list) | Op::Nin(list) => one_kind(list),
    }
}

fn chroma_operand(op: &Op) -> Value {
    match op {
        Op::Eq(s) | Op::Ne(s) | Op::Gt(s) | Op::Gte(s) | Op::Lt(s) | Op::Lte(s) => s.to_json(),
        Op::In(l) | Op::Nin(l) => Value::Array(l.iter().map(Scalar::to_json).collect()),
    }
}

fn chroma_cond(c: &Cond) -> Value {
    let mut inner = Map::new();
    inner.insert(c.op.name().to_string(), chroma_operand(&c.op));
    let mut outer = Map::new();
    outer.insert(c.key.clone(), Value::Object(inner));
    Value::Object(outer)
}

/// Splits `filter` into Chroma's `where` and the residual conditions.
pub fn plan(filter: &Filter) -> Plan {
    let (pushed, residual): (Vec<&Cond>, Vec<&Cond>) =
        filter.conds.iter().partition(|c| chroma_supports(c));
    let mut clauses: Vec<Value> = pushed.into_iter().map(chroma_cond).collect();
    let chroma = match clauses.len() {
        0 => None,
        1 => clauses.pop(),
        _ => Some(json!({ "$and": clauses })),
    };
    Plan {
        chroma,
        residual: residual.into_iter().cloned().collect(),
    }
}

/// The same filter with nothing sent to Chroma (for comparisons and for a vector index
/// without metadata filters).
pub fn plan_without_pushdown(filter: &Filter) -> Plan {
    Plan {
        chroma: None,
        residual: filter.conds.clone(),
    }
}

fn mongo_op(op: &Op) -> Document {
    let list = |l: &[Scalar]| Bson::Array(l.iter().map(Scalar::to_bson).collect());
    match op {
        Op::Eq(s) | Op::Ne(s) | Op::Gt(s) | Op::Gte(s) | Op::Lt(s) | Op::Lte(s) => {
            doc! { op.name(): s.to_bson() }
        }
        Op::In(l) | Op::Nin(l) => doc! { op.name(): list(l) },
    }
}

fn mongo_cond(c: &Cond) -> Document {
    if c.on_document_field() {
        // `type` and `contentId` are strings on every document: exact.
        return doc! { c.key.as_str(): mongo_op(&c.op) };
    }
    let field = format!("metadata.{}", c.key);
    let mut any = vec![
        Bson::Document(doc! { field.as_str(): mongo_op(&c.op) }),
        Bson::Document(doc! { field.as_str(): {"$type": OPAQUE_TYPES.to_vec()} }),
    ];
    // A parent holding an array of objects: MongoDB looks inside, flattening does not.
    let mut parent = field.as_str();
    while let Some((p, _)) = parent.rsplit_once('.') {
        if p == "metadata" {
            break;
        }
        any.push(Bson::Document(doc! { p: {"$type": "array"} }));
        parent = p;
    }
    doc! { "$or": any }
}

/// A MongoDB query on `documents` that every document matching `filter` satisfies.
pub fn mongo_query(filter: &Filter) -> Document {
    let clauses: Vec<Bson> = filter
        .conds
        .iter()
        .map(|c| Bson::Document(mongo_cond(c)))
        .collect();
    match clauses.len() {
        0 => Document::new(),
        _ => doc! { "$and": clauses },
    }
}

/// True when [`mongo_query`] is exact (only `type` and `contentId` conditions), so a query
/// can be limited in MongoDB.
pub fn mongo_exact(filter: &Filter) -> bool {
    filter.conds.iter().all(Cond::on_document_field)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(v: Value) -> Filter {
        Filter::from_json(&v).unwrap()
    }

    #[test]
    fn supported_conditions_go_to_chroma() {
        let p = plan(&f(json!({"type": "faq"})));
        assert_eq!(p.chroma, Some(json!({"type": {"$eq": "faq"}})));
        assert!(!p.has_residual());

        let p = plan(&f(
            json!({"year": {"$gte": 2020, "$lt": 2025.5}, "ok": {"$ne": true}}),
        ));
        let Some(Value::Object(w)) = &p.chroma else {
            panic!("{p:?}")
        };
        let mut clauses = w["$and"].as_array().unwrap().clone();
        clauses.sort_by_key(|c| c.to_string());
        assert_eq!(
            clauses,
            vec![
                json!({"ok": {"$ne": true}}),
                json!({"year": {"$gte": 2020}}),
                json!({"year": {"$lt": 2025.5}}),
            ]
        );
        assert!(p.residual.is_empty());
        let p = plan(&f(
            json!({"tier": {"$in": [1, 2.5]}, "lang": {"$nin": ["de"]}}),
        ));
        assert!(p.chroma.is_some() && p.residual.is_empty(), "{p:?}");
    }

    #[test]
    fn what_chroma_refuses_stays_on_the_mongodb_side() {
        let p = plan(&f(json!({
            "day": {"$gte": "2024-01-01"},
            "tier": {"$in": []},
            "mix": {"$in": [1, "one"]},
            "lang": "en",
        })));
        assert_eq!(p.chroma, Some(json!({"lang": {"$eq": "en"}})));
        let mut keys: Vec<&str> = p.residual.iter().map(|c| c.key.as_str()).collect();
        keys.sort();
        assert_eq!(keys, vec!["day", "mix", "tier"]);
        assert!(p.has_residual());
        assert_eq!(
            plan(&Filter::all()),
            Plan {
                chroma: None,
                residual: vec![]
            }
        );
        let all_local = plan_without_pushdown(&f(json!({"lang": "en"})));
        assert_eq!(all_local.chroma, None);
        assert_eq!(all_local.residual.len(), 1);
    }

    #[test]
    fn mongo_query_is_exact_on_document_fields_and_widened_on_metadata() {
        let q = mongo_query(&f(json!({"type": "faq"})));
        assert_eq!(q, doc! {"$and": [{"type": {"$eq": "faq"}}]});
        assert!(mongo_exact(&f(
            json!({"type": "faq", "contentId": {"$ne": "x"}})
        )));
        assert!(!mongo_exact(&f(json!({"lang": "en"}))));
        let q = mongo_query(&f(json!({"a.b": {"$gt": 1}})));
        assert_eq!(
            q,
            doc! {"$and": [{"$or": [
                {"metadata.a.b": {"$gt": 1_i64}},
                {"metadata.a.b": {"$type": ["array", "date", "objectId", "decimal"]}},
                {"metadata.a": {"$type": "array"}},
            ]}]}
        );
        assert_eq!(mongo_query(&Filter::all()), Document::new());
    }
}
