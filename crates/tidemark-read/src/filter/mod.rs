//! Filters of `recent` and `search`: a conjunction of conditions on a document's `type`,
//! `contentId` and metadata keys, written as JSON in the style of MongoDB and Chroma:
//!
//! ```json
//! {"type": "faq", "lang": "en", "year": {"$gte": 2020, "$lt": 2025}, "$and": [{"tier": {"$in": [1, 2]}}]}
//! ```
//!
//! Keys are the document's metadata as tidemark stores it beside each vector: nested objects
//! are joined with `.` (`{"a": {"b": 1}}` is key `a.b`), arrays are their JSON text, dates are
//! RFC 3339 strings. Operators: `$eq` (also a bare value), `$ne`, `$gt`, `$gte`, `$lt`, `$lte`
//! (numbers or strings), `$in`, `$nin`, and `$and` (a list of filters). `$ne` and `$nin` also
//! match documents without the key, as in Chroma; comparisons never match across kinds
//! (a number never equals a string), and numbers compare by value (`1` equals `1.0`).
//!
//! The semantics are those of [`Filter::matches`] (in memory). [`translate`] says which
//! conditions Chroma's `where` evaluates identically, and builds the MongoDB query used to
//! narrow `recent` (a superset, re-checked in memory).

mod eval;
mod parse;
pub mod translate;

pub use eval::view;

use serde_json::Value;

/// Keys tidemark sets on every vector besides `type` and `contentId`; filtering on them is
/// refused (they describe the vector, not the document).
pub const RESERVED_KEYS: &[&str] = &["documentId", "version", "contentHash", "model", "timestamp"];

/// Keys that are fields of the document itself rather than of its metadata.
pub const DOCUMENT_KEYS: &[&str] = &["type", "contentId"];

/// A value a condition compares with.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

/// Kinds of scalars: values of different kinds never compare equal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Str,
    Num,
    Bool,
}

impl Scalar {
    pub fn kind(&self) -> Kind {
        match self {
            Scalar::Str(_) => Kind::Str,
            Scalar::Int(_) | Scalar::Float(_) => Kind::Num,
            Scalar::Bool(_) => Kind::Bool,
        }
    }

    /// As JSON (integers stay integers).
    pub fn to_json(&self) -> Value {
        match self {
            Scalar::Str(s) => Value::String(s.clone()),
            Scalar::Int(i) => Value::from(*i),
            Scalar::Float(f) => Value::from(*f),
            Scalar::Bool(b) => Value::Bool(*b),
        }
    }

    /// As BSON.
    pub fn to_bson(&self) -> bson::Bson {
        match self {
            Scalar::Str(s) => bson::Bson::String(s.clone()),
            Scalar::Int(i) => bson::Bson::Int64(*i),
            Scalar::Float(f) => bson::Bson::Double(*f),
            Scalar::Bool(b) => bson::Bson::Boolean(*b),
        }
    }
}

/// A comparison operator with its operand.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Eq(Scalar),
    Ne(Scalar),
    Gt(Scalar),
    Gte(Scalar),
    Lt(Scalar),
    Lte(Scalar),
    In(Vec<Scalar>),
    Nin(Vec<Scalar>),
}

impl Op {
    /// The operator's name, as written in a filter.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Eq(_) => "$eq",
            Op::Ne(_) => "$ne",
            Op::Gt(_) => "$gt",
            Op::Gte(_) => "$gte",
            Op::Lt(_) => "$lt",
            Op::Lte(_) => "$lte",
            Op::In(_) => "$in",
            Op::Nin(_) => "$nin",
        }
    }
}

/// One condition: a key and an operator.
#[derive(Debug, Clone, PartialEq)]
pub struct Cond {
    pub key: String,
    pub op: Op,
}

impl Cond {
    /// True for `type` and `contentId` (fields of the document, not of its metadata).
    pub fn on_document_field(&self) -> bool {
        DOCUMENT_KEYS.contains(&self.key.as_str())
    }
}

/// A conjunction of conditions; the empty filter matches every document.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Filter {
    pub conds: Vec<Cond>,
}

/// A filter that cannot be understood, with the path of the offending part
/// (e.g. `year.$gte`, `$and[1].lang`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("filter `{path}`: {reason}")]
pub struct FilterError {
    pub path: String,
    pub reason: String,
}

impl Filter {
    /// Matches everything.
    pub fn all() -> Filter {
        Filter::default()
    }

    /// Parses the JSON form (see the module documentation).
    pub fn from_json(v: &Value) -> Result<Filter, FilterError> {
        parse::parse(v)
    }

    /// Adds `type = t` (the `--type` flag and the `type=` query parameter).
    pub fn with_type(mut self, t: &str) -> Filter {
        self.conds.push(Cond {
            key: "type".into(),
            op: Op::Eq(Scalar::Str(t.to_string())),
        });
        self
    }

    pub fn is_empty(&self) -> bool {
        self.conds.is_empty()
    }
}
