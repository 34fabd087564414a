//! The JSON form of a filter to [`Filter`], with errors that name the offending path.

use super::{Cond, Filter, FilterError, Op, Scalar, DOCUMENT_KEYS, RESERVED_KEYS};
use serde_json::Value;

const OPERATORS: &str = "$eq, $ne, $gt, $gte, $lt, $lte, $in, $nin (and $and at the top level)";

fn err(path: &str, reason: impl Into<String>) -> FilterError {
    FilterError {
        path: path.to_string(),
        reason: reason.into(),
    }
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

pub(super) fn parse(v: &Value) -> Result<Filter, FilterError> {
    let mut conds = Vec::new();
    parse_into("", v, &mut conds)?;
    Ok(Filter { conds })
}

fn parse_into(path: &str, v: &Value, out: &mut Vec<Cond>) -> Result<(), FilterError> {
    let Value::Object(map) = v else {
        let at = if path.is_empty() { "(filter)" } else { path };
        return Err(err(at, "must be a JSON object like {\"lang\": \"en\"}"));
    };
    for (key, value) in map {
        if key == "$and" {
            let and_path = join(path, "$and");
            let Value::Array(items) = value else {
                return Err(err(&and_path, "must be a list of filters"));
            };
            for (i, item) in items.iter().enumerate() {
                parse_into(&format!("{and_path}[{i}]"), item, out)?;
            }
        } else if key.starts_with('$') {
            return Err(err(
                &join(path, key),
                format!("unsupported operator; supported: {OPERATORS}"),
            ));
        } else {
            check_key(&join(path, key), key)?;
            parse_conditions(&join(path, key), key, value, out)?;
        }
    }
    Ok(())
}

fn check_key(path: &str, key: &str) -> Result<(), FilterError> {
    if key.is_empty() {
        return Err(err(path, "a key must not be empty"));
    }
    if RESERVED_KEYS.contains(&key) {
        return Err(err(
            path,
            format!(
                "`{key}` is set by tidemark on every vector and cannot be filtered on; \
                 filter on {} or metadata keys",
                DOCUMENT_KEYS.join(", ")
            ),
        ));
    }
    Ok(())
}

fn parse_conditions(
    path: &str,
    key: &str,
    value: &Value,
    out: &mut Vec<Cond>,
) -> Result<(), FilterError> {
    let Value::Object(ops) = value else {
        let op = Op::Eq(scalar(path, value)?);
        out.push(Cond {
            key: key.to_string(),
            op,
        });
        return Ok(());
    };
    if ops.is_empty() {
        return Err(err(
            path,
            format!("no operator given; use one of {OPERATORS}"),
        ));
    }
    for (name, operand) in ops {
        let at = format!("{path}.{name}");
        let op = match name.as_str() {
            "$eq" => Op::Eq(scalar(&at, operand)?),
            "$ne" => Op::Ne(scalar(&at, operand)?),
            "$gt" => Op::Gt(bound(&at, operand)?),
            "$gte" => Op::Gte(bound(&at, operand)?),
            "$lt" => Op::Lt(bound(&at, operand)?),
            "$lte" => Op::Lte(bound(&at, operand)?),
            "$in" => Op::In(list(&at, operand)?),
            "$nin" => Op::Nin(list(&at, operand)?),
            _ if !name.starts_with('$') => {
                return Err(err(
                    &at,
                    format!("`{name}` is not an operator: a nested key is written `{key}.{name}`"),
                ))
            }
            _ => {
                return Err(err(
                    &at,
                    format!("unknown operator; supported: {OPERATORS}"),
                ))
            }
        };
        out.push(Cond {
            key: key.to_string(),
            op,
        });
    }
    Ok(())
}

fn scalar(path: &str, v: &Value) -> Result<Scalar, FilterError> {
    match v {
        Value::String(s) => Ok(Scalar::Str(s.clone())),
        Value::Bool(b) => Ok(Scalar::Bool(*b)),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Ok(Scalar::Int(i))
            } else if n.is_u64() {
                Err(err(path, "integer out of range (at most 2^63 - 1)"))
            } else {
                n.as_f64()
                    .map(Scalar::Float)
                    .ok_or_else(|| err(path, "not a finite number"))
            }
        }
        Value::Null => Err(err(
            path,
            "null cannot be matched (null metadata values are not stored); use $ne or $nin to \
             match documents without the key",
        )),
        Value::Array(_) => Err(err(
            path,
            "a list is not a value; use {\"$in\": [...]} to match one of several values",
        )),
        Value::Object(_) => Err(err(
            path,
            "an object is not a value; nested keys are written `a.b`",
        )),
    }
}

fn bound(path: &str, v: &Value) -> Result<Scalar, FilterError> {
    match scalar(path, v)? {
        Scalar::Bool(_) => Err(err(
            path,
            "a range needs a number or a string, not a boolean",
        )),
        s => Ok(s),
    }
}

fn list(path: &str, v: &Value) -> Result<Vec<Scalar>, FilterError> {
    let Value::Array(items) = v else {
        return Err(err(path, "must be a list of values"));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| scalar(&format!("{path}[{i}]"), item))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<Filter, String> {
        Filter::from_json(&v).map_err(|e| e.to_string())
    }

    fn cond(key: &str, op: Op) -> Cond {
        Cond {
            key: key.into(),
            op,
        }
    }

    #[test]
    fn bare_values_operators_and_nested_and() {
        let f = parse(json!({
            "type": "faq",
            "year": {"$gte": 2020, "$lt": 2025.5},
            "$and": [{"tier": {"$in": [1, 2]}}, {"$and": [{"ok": {"$ne": true}}]}],
        }))
        .unwrap();
        let mut got = f.conds.clone();
        got.sort_by(|a, b| (&a.key, a.op.name()).cmp(&(&b.key, b.op.name())));
        assert_eq!(
            got,
            vec![
                cond("ok", Op::Ne(Scalar::Bool(true))),
                cond("tier", Op::In(vec![Scalar::Int(1), Scalar::Int(2)])),
                cond("type", Op::Eq(Scalar::Str("faq".into()))),
                cond("year", Op::Gte(Scalar::Int(2020))),
                cond("year", Op::Lt(Scalar::Float(2025.5))),
            ]
        );
        assert!(parse(json!({})).unwrap().is_empty());
        assert_eq!(
            parse(json!({"a.b": {"$nin": []}})).unwrap().conds,
            vec![cond("a.b", Op::Nin(vec![]))]
        );
    }

    #[test]
    fn errors_name_the_path() {
        let cases = [
            (json!([1]), "filter `(filter)`: must be a JSON object"),
            (json!({"$or": []}), "filter `$or`: unsupported operator"),
            (
                json!({"year": {"$gt": true}}),
                "filter `year.$gt`: a range needs a number",
            ),
            (
                json!({"year": {"$between": 1}}),
                "filter `year.$between`: unknown operator",
            ),
            (
                json!({"tags": ["a"]}),
                "filter `tags`: a list is not a value",
            ),
            (
                json!({"a": {"b": 1}}),
                "filter `a.b`: `b` is not an operator: a nested key is written `a.b`",
            ),
            (json!({"x": null}), "filter `x`: null cannot be matched"),
            (json!({"x": {}}), "filter `x`: no operator given"),
            (json!({"x": {"$in": 3}}), "filter `x.$in`: must be a list"),
            (json!({"x": {"$in": [1, null]}}), "filter `x.$in[1]`: null"),
            (
                json!({"$and": [{"ok": 1}, {"version": 2}]}),
                "filter `$and[1].version`: `version` is set by tidemark",
            ),
            (json!({"$and": {"a": 1}}), "filter `$and`: must be a list"),
            (
                json!({"n": 18446744073709551615u64}),
                "filter `n`: integer out of range",
            ),
            (json!({"": 1}), "filter ``: a key must not be empty"),
        ];
        for (input, want) in cases {
            let got = parse(input.clone()).unwrap_err();
            assert!(got.starts_with(want), "{input}: {got}");
        }
    }
}
