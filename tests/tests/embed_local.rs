//! The local all-MiniLM-L6-v2 embedder against the model files from `scripts/services up`, with
//! each engine (ONNX Runtime fp32 and int8, candle): agreement with reference vectors made by
//! sentence-transformers, semantic sanity, normalisation and truncation.

use std::sync::OnceLock;
use tidemark_core::config::LocalEngine;
use tidemark_e2e::{local_model, model_dir, onnx_runtime, repo_root};
use tidemark_embed::local::{LocalEmbedder, PassOrder, TRUNCATED_TEXTS};
use tidemark_embed::Embedder;

/// The engines whose vectors must equal sentence-transformers' (int8 is only close).
const EXACT: [LocalEngine; 2] = [LocalEngine::Onnx, LocalEngine::Candle];
const ALL: [LocalEngine; 3] = [
    LocalEngine::Onnx,
    LocalEngine::Candle,
    LocalEngine::OnnxInt8,
];

fn model_of(engine: LocalEngine) -> &'static LocalEmbedder {
    static M: [OnceLock<LocalEmbedder>; 3] = [OnceLock::new(), OnceLock::new(), OnceLock::new()];
    let slot = ALL.iter().position(|&e| e == engine).unwrap();
    M[slot].get_or_init(|| local_model(engine))
}

/// The default engine.
fn model() -> &'static LocalEmbedder {
    model_of(LocalEngine::Onnx)
}

fn embed_with(engine: LocalEngine, texts: &[&str]) -> Vec<Vec<f32>> {
    let texts: Vec<String> = texts.iter().map(|s| s.to_string()).collect();
    model_of(engine).embed_blocking(&texts).unwrap()
}

/// The fixture's sentences and sentence-transformers' vector of each.
fn reference() -> Vec<(String, Vec<f32>)> {
    let path = repo_root().join("crates/tidemark-embed/tests/fixtures/reference.json");
    let text = std::fs::read_to_string(&path).expect("reference fixture committed");
    let fixture: serde_json::Value = serde_json::from_str(&text).unwrap();
    let items = fixture["items"].as_array().unwrap();
    assert!(items.len() >= 5, "fixture has a handful of sentences");
    items
        .iter()
        .map(|i| {
            let v: Vec<f32> = i["embedding"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect();
            (i["text"].as_str().unwrap().to_string(), v)
        })
        .collect()
}

fn cos(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

fn embed(texts: &[&str]) -> Vec<Vec<f32>> {
    embed_with(LocalEngine::Onnx, texts)
}

#[test]
fn onnx_and_candle_match_sentence_transformers_reference() {
    let items = reference();
    let sentences: Vec<&str> = items.iter().map(|(t, _)| t.as_str()).collect();
    for engine in EXACT {
        // Batched together, so padding is exercised as well.
        let ours = embed_with(engine, &sentences);
        for ((text, reference), v) in items.iter().zip(&ours) {
            assert_eq!(reference.len(), 384);
            let c = cos(reference, v);
            assert!(c > 0.9999, "{engine:?}: cosine {c} for {text:?}");
        }
    }
}

#[test]
fn int8_is_close_to_the_reference_and_a_model_of_its_own() {
    let items = reference();
    let sentences: Vec<&str> = items.iter().map(|(t, _)| t.as_str()).collect();
    let int8 = embed_with(LocalEngine::OnnxInt8, &sentences);
    let worst = items
        .iter()
        .zip(&int8)
        .map(|((_, r), v)| cos(r, v))
        .fold(1.0f32, f32::min);
    assert!(worst > 0.98, "int8 cosine to the reference {worst}");
    assert!(worst < 0.99999, "int8 is not fp32 ({worst})");
    assert_eq!(
        model_of(LocalEngine::OnnxInt8).model_id(),
        "all-MiniLM-L6-v2-int8"
    );
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
    for engine in ALL {
        for (a, para, other) in triples {
            let v = embed_with(engine, &[a, para, other]);
            let (p, o) = (cos(&v[0], &v[1]), cos(&v[0], &v[2]));
            assert!(
                p > o + 0.2,
                "{engine:?} {a:?}: paraphrase {p} vs unrelated {o}"
            );
        }
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

/// Asserts that loading fails with a message naming each of `words`.
fn assert_load_fails(dir: &std::path::Path, lib: &std::path::Path, words: &[&str]) {
    let err = LocalEmbedder::load(dir, LocalEngine::Onnx, lib)
        .err()
        .expect("must fail");
    let msg = err.to_string();
    assert!(words.iter().all(|w| msg.contains(w)), "{msg}");
}

#[test]
fn missing_model_folder_is_a_clear_error() {
    let dir = std::path::Path::new("/nonexistent/model");
    assert_load_fails(dir, &onnx_runtime(), &["config.json", "/nonexistent/model"]);
}

#[test]
fn missing_onnx_runtime_is_a_clear_error_naming_the_key() {
    let lib = std::path::Path::new("/nonexistent/libonnxruntime.so");
    let words = ["embedder.onnx_runtime", "/nonexistent/libonnxruntime.so"];
    assert_load_fails(&model_dir(), lib, &words);
    // candle needs no library.
    assert!(LocalEmbedder::load(&model_dir(), LocalEngine::Candle, lib).is_ok());
}
