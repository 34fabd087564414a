//! The local all-MiniLM-L6-v2 embedder against the model files from `scripts/services up`:
//! agreement with reference vectors made by sentence-transformers, semantic sanity,
//! normalisation and truncation.

use std::sync::OnceLock;
use tidemark_e2e::{model_dir, repo_root};
use tidemark_embed::local::{LocalEmbedder, PassOrder, TRUNCATED_TEXTS};
use tidemark_embed::Embedder;

fn model() -> &'static LocalEmbedder {
    static M: OnceLock<LocalEmbedder> = OnceLock::new();
    M.get_or_init(|| {
        LocalEmbedder::load(&model_dir()).expect("model folder from scripts/services up")
    })
}

fn cos(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

fn embed(texts: &[&str]) -> Vec<Vec<f32>> {
    let texts: Vec<String> = texts.iter().map(|s| s.to_string()).collect();
    model().embed_blocking(&texts).unwrap()
}

#[test]
fn matches_sentence_transformers_reference() {
    let path = repo_root().join("crates/tidemark-embed/tests/fixtures/reference.json");
    let text = std::fs::read_to_string(&path).expect("reference fixture committed");
    let fixture: serde_json::Value = serde_json::from_str(&text).unwrap();
    let items = fixture["items"].as_array().unwrap();
    assert!(items.len() >= 5, "fixture has a handful of sentences");
    let sentences: Vec<&str> = items.iter().map(|i| i["text"].as_str().unwrap()).collect();
    // Batched together, so padding is exercised as well.
    let ours = embed(&sentences);
    for (item, v) in items.iter().zip(&ours) {
        let reference: Vec<f32> = item["embedding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(reference.len(), 384);
        let c = cos(&reference, v);
        assert!(c > 0.9999, "cosine {c} for {:?}", item["text"]);
    }
}

#[test]
fn paraphrase_is_closer_than_unrelated() {
    let triples = [
        (
            "How do I reset my password?",
            "I forgot my password and need to change it.",
            "The train to Lyon leaves at noon.",
        ),
        (
            "The cat is sleeping on the sofa.",
            "A kitten naps on the couch.",
            "Interest rates rose by half a percent.",
        ),
        (
            "Knead the dough until it is smooth and elastic.",
            "Work the bread dough by hand until it becomes springy.",
            "Jupiter is the largest planet in the solar system.",
        ),
    ];
    for (a, para, other) in triples {
        let v = embed(&[a, para, other]);
        let (p, o) = (cos(&v[0], &v[1]), cos(&v[0], &v[2]));
        assert!(p > o + 0.2, "{a:?}: paraphrase {p} vs unrelated {o}");
    }
}

#[test]
fn vectors_are_unit_length_and_batch_independent() {
    let single = embed(&["a short sentence"]);
    let batched = embed(&[
        "a short sentence",
        "a much longer sentence that forces padding of the shorter one in the same batch",
    ]);
    assert_eq!(model().dimension(), 384);
    assert_eq!(model().model_id(), "all-MiniLM-L6-v2");
    let norm: f32 = single[0].iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-4, "norm {norm}");
    assert!(
        cos(&single[0], &batched[0]) > 0.99999,
        "padding changed the vector"
    );
}

#[test]
fn passes_by_length_keep_every_vector_in_its_place() {
    // 40 texts of many lengths, longest first, so sorting moves nearly every one (two
    // passes of 32 and 8): each vector must come back where its text was.
    let texts: Vec<String> = (0..40)
        .rev()
        .map(|i| {
            format!(
                "sentence {i} {}",
                "about tides and harbours ".repeat(i % 13)
            )
        })
        .collect();
    let sorted = model().embed_in(&texts, PassOrder::ByLength).unwrap();
    let given = model().embed_in(&texts, PassOrder::AsGiven).unwrap();
    for (i, (a, b)) in sorted.iter().zip(&given).enumerate() {
        assert!(cos(a, b) > 0.9999, "text {i}: {}", cos(a, b));
    }
    let alone = model().embed_in(&texts[7..8], PassOrder::ByLength).unwrap();
    assert!(cos(&sorted[7], &alone[0]) > 0.9999);
}

#[test]
fn long_text_is_truncated_and_counted() {
    let before = TRUNCATED_TEXTS.get();
    let long = "word ".repeat(2000);
    let v = embed(&[long.as_str()]);
    assert_eq!(v[0].len(), 384);
    assert!(TRUNCATED_TEXTS.get() > before, "truncation was not counted");
}

#[test]
fn missing_model_folder_is_a_clear_error() {
    let err = LocalEmbedder::load(std::path::Path::new("/nonexistent/model"))
        .err()
        .expect("must fail");
    let msg = err.to_string();
    assert!(
        msg.contains("config.json") && msg.contains("/nonexistent/model"),
        "{msg}"
    );
}
