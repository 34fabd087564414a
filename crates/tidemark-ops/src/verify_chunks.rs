//! How one document's stored vectors compare with it: the single vector of an unchunked
//! index, or the chunk set of a chunked one (missing chunk, stale chunk, a chunk beyond the
//! count, chunks of different versions), and whether they were made with the configured
//! template and chunking settings. Pure, so every case has a unit test.

use crate::verify::differences;
use tidemark_core::vector_meta::{keys, meta_i64, meta_str, Metadata};

/// What verify expects of every vector of a document.
pub struct Expected<'a> {
    pub content_hash: &'a str,
    pub version: i64,
    pub model: &'a str,
    /// The `chunking` fingerprint vectors must carry (None: they must carry none).
    pub fingerprint: Option<&'a str>,
    pub chunked: bool,
}

fn settings_difference(m: &Metadata, want: Option<&str>) -> Option<String> {
    let got = meta_str(m, keys::CHUNKING);
    (got != want).then(|| {
        format!(
            "chunking: vector {} != configured {}",
            got.unwrap_or("(none)"),
            want.unwrap_or("(none)")
        )
    })
}

/// `None` when the vectors match the document; else `("missing" | "stale", differences)`.
pub fn classify(want: &Expected<'_>, vectors: &[(&str, &Metadata)]) -> Option<(&'static str, Vec<String>)> {
    if vectors.is_empty() {
        return Some(("missing", Vec::new()));
    }
    let mut diff = Vec::new();
    for (id, m) in vectors {
        let prefix = if want.chunked { format!("{id}: ") } else { String::new() };
        for d in differences(m, want.content_hash, want.version, want.model) {
            diff.push(format!("{prefix}{d}"));
        }
        if let Some(d) = settings_difference(m, want.fingerprint) {
            diff.push(format!("{prefix}{d}"));
        }
    }
    if want.chunked {
        diff.extend(chunk_set_differences(vectors));
    }
    (!diff.is_empty()).then_some(("stale", diff))
}

/// Missing chunk numbers, chunks beyond the count, and disagreeing counts.
fn chunk_set_differences(vectors: &[(&str, &Metadata)]) -> Vec<String> {
    let mut out = Vec::new();
    let counts: Vec<i64> = vectors.iter().filter_map(|(_, m)| meta_i64(m, keys::CHUNKS)).collect();
    let Some(&n) = counts.iter().max() else {
        return vec!["no chunk carries `chunks`: not made by a chunking index".into()];
    };
    if counts.iter().any(|&c| c != n) || counts.len() != vectors.len() {
        out.push(format!("chunks disagree on the chunk count (largest {n})"));
    }
    let present: Vec<i64> = vectors.iter().filter_map(|(_, m)| meta_i64(m, keys::CHUNK)).collect();
    let want_n = counts.iter().min().copied().unwrap_or(n);
    for k in 0..want_n {
        if !present.contains(&k) {
            out.push(format!("chunk {k} of {want_n} is missing"));
        }
    }
    for k in present.iter().filter(|&&k| k >= want_n) {
        out.push(format!("chunk {k} is beyond the chunk count {want_n}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn chunk(k: i64, n: i64, version: i64) -> Metadata {
        json!({"contentHash": "h", "version": version, "model": "m", "chunking": "f",
               "chunk": k, "chunks": n})
        .as_object()
        .unwrap()
        .clone()
    }

    fn want(chunked: bool) -> Expected<'static> {
        Expected {
            content_hash: "h",
            version: 2,
            model: "m",
            fingerprint: Some("f"),
            chunked,
        }
    }

    fn run(vs: &[Metadata]) -> Option<(&'static str, Vec<String>)> {
        let ids: Vec<String> = (0..vs.len()).map(|i| format!("d:{i}")).collect();
        let pairs: Vec<(&str, &Metadata)> = ids.iter().map(String::as_str).zip(vs).collect();
        classify(&want(true), &pairs)
    }

    #[test]
    fn a_complete_current_chunk_set_is_clean() {
        assert_eq!(run(&[chunk(0, 3, 2), chunk(1, 3, 2), chunk(2, 3, 2)]), None);
    }

    #[test]
    fn chunk_set_problems_are_stale_and_named() {
        let cases: [(Vec<Metadata>, &str); 4] = [
            (vec![chunk(0, 3, 2), chunk(2, 3, 2)], "chunk 1 of 3 is missing"),
            (vec![chunk(0, 1, 2), chunk(1, 3, 1), chunk(2, 3, 1)], "beyond the chunk count 1"),
            (vec![chunk(0, 2, 2), chunk(1, 2, 1)], "version: vector 1 != document 2"),
            (vec![chunk(0, 1, 2)].into_iter().map(|mut m| { m.insert("chunking".into(), json!("old")); m }).collect(), "chunking: vector old"),
        ];
        for (vs, needle) in cases {
            let (kind, diff) = run(&vs).expect("drift");
            assert_eq!(kind, "stale");
            assert!(diff.iter().any(|d| d.contains(needle)), "{needle}: {diff:?}");
        }
    }

    #[test]
    fn no_vector_is_missing_and_unchunked_settings_are_checked() {
        assert_eq!(run(&[]).unwrap().0, "missing");
        let m = json!({"contentHash": "h", "version": 2, "model": "m"}).as_object().unwrap().clone();
        let plain = Expected { fingerprint: None, ..want(false) };
        assert_eq!(classify(&plain, &[("d", &m)]), None);
        let (_, diff) = classify(&want(false), &[("d", &m)]).unwrap();
        assert!(diff[0].starts_with("chunking: vector (none)"), "{diff:?}");
    }
}
