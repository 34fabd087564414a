//! Bench section `embedder`: the local model's engines side by side on the same texts, in
//! calls of one worker batch as the worker makes them: candle, ONNX Runtime fp32 (the default)
//! and ONNX Runtime int8, each with passes formed by length and in the order given, on short
//! texts of mixed lengths and on long ones (256 tokens after truncation). The reference is
//! ONNX Runtime itself driven from Python on the same graph and texts (batches as given,
//! padded to their longest: the "ONNX Runtime fp32" row), so the goal ratio compares
//! tidemark's embedder with an independent run of the fastest engine. Vectors are compared
//! too: fp32 ONNX against candle (the engine checked against sentence-transformers), int8
//! against fp32.

use crate::report::Report;
use crate::{data, BenchError, Ctx};
use std::time::{Duration, Instant};
use tidemark_core::config::LocalEngine;
use tidemark_embed::local::{LocalEmbedder, PassOrder};

/// Rounds of every measurement, interleaved so that each engine sees the same machine.
const ROUNDS: usize = 2;
/// The Python reference (ONNX Runtime's own Python API).
const REFERENCE_PY: &str = include_str!("ort_reference.py");

/// The texts of the section: short ones of 4 to 40 words, and long ones past 256 tokens.
pub struct Texts {
    pub short: Vec<String>,
    pub long: Vec<String>,
}

impl Texts {
    pub fn new(short: usize, long: usize) -> Texts {
        let short = (0..short as u64)
            .map(|i| {
                let words = 4 + (i * 7 % 37) as usize;
                data::text(i)
                    .split(' ')
                    .take(words)
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        let long = (0..long as u64)
            .map(|i| {
                (i * 8..i * 8 + 8)
                    .map(data::text)
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        Texts { short, long }
    }
}

/// Docs/s of one engine: short texts by length and as given, long texts.
#[derive(Default, Clone, Copy)]
struct Rates {
    short_sorted: f64,
    short_given: f64,
    long: f64,
}

/// Runs the section.
pub async fn run(ctx: &Ctx, report: &mut Report) -> Result<(), BenchError> {
    let texts = Texts::new(ctx.counts.embedder_short, ctx.counts.embedder_long);
    // The same texts for the Python reference, as its input file will hold them.
    let reference_input =
        serde_json::json!({"short": &texts.short, "long": &texts.long}).to_string();
    let batch = ctx.counts.batch_size.max(1);
    let ecfg = ctx.cfg.embedder.clone();
    let engines = [
        LocalEngine::Candle,
        LocalEngine::Onnx,
        LocalEngine::OnnxInt8,
    ];
    let (rates, cos) = tokio::task::spawn_blocking(move || {
        let models = engines
            .iter()
            .map(|&e| LocalEmbedder::load(&ecfg.model_dir, e, &ecfg.onnx_runtime))
            .collect::<Result<Vec<_>, _>>()?;
        let rates = measure(&models, &texts, batch)?;
        let cos = agreement(&models, &texts)?;
        Ok::<_, BenchError>((rates, cos))
    })
    .await
    .map_err(|e| BenchError::Setup(format!("embedding panicked: {e}")))??;
    for (engine, r) in engines.iter().zip(&rates) {
        add_rates(report, engine.name(), r);
    }
    let (candle, onnx, int8) = (rates[0], rates[1], rates[2]);
    report.add_min(
        "embedder.onnx_candle_cos_min",
        "vectors: ONNX fp32 against candle, lowest cosine",
        cos.0,
        "cosine",
        0.9999,
    );
    report.add(
        "embedder.int8_cos_min",
        "vectors: ONNX int8 against fp32, lowest cosine",
        cos.1,
        "cosine",
    );
    report.add(
        "embedder.onnx_vs_candle",
        "short texts by length: ONNX fp32 / candle",
        onnx.short_sorted / candle.short_sorted,
        "ratio",
    );
    report.add(
        "embedder.int8_vs_fp32",
        "short texts by length: ONNX int8 / fp32",
        int8.short_sorted / onnx.short_sorted,
        "ratio",
    );
    report.add(
        "embedder.sorting_gain",
        "ONNX fp32, short texts: passes by length / in the order given",
        onnx.short_sorted / onnx.short_given,
        "ratio",
    );
    reference(ctx, report, onnx, &reference_input, batch).await;
    Ok(())
}

fn add_rates(report: &mut Report, engine: &str, r: &Rates) {
    let key = engine.replace('-', "_");
    let figures = [
        (
            "short_sorted",
            "short texts, passes by length",
            r.short_sorted,
        ),
        (
            "short_given",
            "short texts, in the order given",
            r.short_given,
        ),
        ("long", "long texts (256 tokens)", r.long),
    ];
    for (what, label, value) in figures {
        report.add(
            &format!("embedder.{key}_{what}_docs_per_s"),
            &format!("{engine}: {label}"),
            value,
            "docs/s",
        );
    }
}

/// Every engine over every text set and order, `ROUNDS` times interleaved.
fn measure(
    models: &[LocalEmbedder],
    texts: &Texts,
    batch: usize,
) -> Result<Vec<Rates>, BenchError> {
    let mut took = vec![[Duration::ZERO; 3]; models.len()];
    for (m, _) in models.iter().zip(&took) {
        m.embed_in(
            &texts.short[..batch.min(texts.short.len())],
            PassOrder::ByLength,
        )?; // warm-up
    }
    for _ in 0..ROUNDS {
        for (m, t) in models.iter().zip(took.iter_mut()) {
            let runs = [
                (&texts.short, PassOrder::ByLength),
                (&texts.short, PassOrder::AsGiven),
                (&texts.long, PassOrder::ByLength),
            ];
            for (slot, (set, order)) in runs.into_iter().enumerate() {
                let started = Instant::now();
                for chunk in set.chunks(batch) {
                    m.embed_in(chunk, order)?;
                }
                t[slot] += started.elapsed();
            }
        }
    }
    let rate = |n: usize, d: Duration| (ROUNDS * n) as f64 / d.as_secs_f64().max(1e-9);
    Ok(took
        .iter()
        .map(|t| Rates {
            short_sorted: rate(texts.short.len(), t[0]),
            short_given: rate(texts.short.len(), t[1]),
            long: rate(texts.long.len(), t[2]),
        })
        .collect())
}

/// Lowest cosine of ONNX fp32 against candle, and of int8 against fp32, over all texts.
fn agreement(models: &[LocalEmbedder], texts: &Texts) -> Result<(f64, f64), BenchError> {
    let all: Vec<String> = texts.short.iter().chain(&texts.long).cloned().collect();
    let vectors = models
        .iter()
        .map(|m| m.embed_blocking(&all))
        .collect::<Result<Vec<_>, _>>()?;
    let lowest = |a: &[Vec<f32>], b: &[Vec<f32>]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| x.iter().zip(y).map(|(p, q)| (p * q) as f64).sum::<f64>())
            .fold(1.0f64, f64::min)
    };
    Ok((
        lowest(&vectors[1], &vectors[0]),
        lowest(&vectors[2], &vectors[1]),
    ))
}

/// The Python ONNX Runtime reference on the same texts; figures and the goal ratios, or a
/// note saying why it was skipped.
async fn reference(ctx: &Ctx, report: &mut Report, onnx: Rates, input: &str, batch: usize) {
    match python_reference(ctx, input, batch).await {
        Ok((short, long)) => {
            report.add(
                "embedder.reference_short_docs_per_s",
                "ONNX Runtime from Python, fp32, short texts as given (padded to the longest)",
                short,
                "docs/s",
            );
            report.add(
                "embedder.reference_long_docs_per_s",
                "ONNX Runtime from Python, fp32, long texts",
                long,
                "docs/s",
            );
            report.add_min(
                "embedder.vs_reference_short",
                "tidemark's embedder (default engine) / ONNX Runtime fp32, short texts",
                onnx.short_sorted / short,
                "ratio",
                1.0,
            );
            report.add_min(
                "embedder.vs_reference_long",
                "tidemark's embedder (default engine) / ONNX Runtime fp32, long texts",
                onnx.long / long,
                "ratio",
                1.0,
            );
        }
        Err(why) => report.note(format!("embedder: Python reference skipped: {why}")),
    }
}

/// Runs [`REFERENCE_PY`] with `$TIDEMARK_PYTHON` (default `.venv/bin/python`) on `input`
/// (the section's texts as JSON): (short, long) docs/s.
async fn python_reference(ctx: &Ctx, input: &str, batch: usize) -> Result<(f64, f64), String> {
    let python = std::env::var("TIDEMARK_PYTHON").unwrap_or_else(|_| ".venv/bin/python".into());
    let file = std::env::temp_dir().join(format!("{}_embedder_texts.json", ctx.name));
    std::fs::write(&file, input).map_err(|e| format!("cannot write {}: {e}", file.display()))?;
    let out = tokio::process::Command::new(&python)
        .arg("-c")
        .arg(REFERENCE_PY)
        .arg(&ctx.cfg.embedder.model_dir)
        .arg(&file)
        .arg(batch.to_string())
        .arg(ROUNDS.to_string())
        .output()
        .await;
    let _ = std::fs::remove_file(&file);
    let out = out.map_err(|e| format!("cannot run {python}: {e} (set TIDEMARK_PYTHON)"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(format!(
            "{python} failed: {}",
            err.lines().last().unwrap_or("")
        ));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("unreadable reference output: {e}"))?;
    match (v["short"].as_f64(), v["long"].as_f64()) {
        (Some(s), Some(l)) => Ok((s, l)),
        _ => Err(format!("reference output without figures: {v}")),
    }
}
