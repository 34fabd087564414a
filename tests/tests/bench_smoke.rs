//! Smoke test of `tidemark bench --quick`: it runs every section against the real services in a
//! few seconds, the JSON has every figure as a positive number, no section failed, and the run
//! removed its databases; the Markdown it writes and the document section it replaces carry the
//! same figures. (It checks that the benchmark works, not what the numbers are.)

use std::process::Command;
use tidemark_e2e::{chroma_url, model_dir, mongo_client, mongodb_uri, tidemark_bin, unique_name};

/// Every figure a full or quick run reports (the JSON's `values` keys).
const FIGURES: &[&str] = &[
    "write.put_ops_per_s",
    "write.raw_txn_ops_per_s",
    "write.plain_insert_ops_per_s",
    "write.put_vs_raw_txn",
    "write.raw_txn_read_ops_per_s",
    "write.put_vs_raw_txn_read",
    "write.put_vs_plain_insert",
    "write.put_many_10_docs_per_s",
    "write.put_many_50_docs_per_s",
    "drain.worker_docs_per_s",
    "drain.embed_alone_docs_per_s",
    "drain.chroma_alone_docs_per_s",
    "drain.efficiency",
    "drain.dual_write_docs_per_s",
    "drain.worker_vs_dual_write",
    "local.worker_docs_per_s",
    "local.embed_alone_docs_per_s",
    "local.efficiency",
    "lag.target_docs_per_s",
    "lag.offered_docs_per_s",
    "lag.p50_s",
    "lag.p95_s",
    "lag.p99_s",
    "lag.max_s",
    "memory.backlog_put_many_docs_per_s",
    "memory.peak_rss_mib",
    "memory.drain_docs_per_s",
    "catchup.stop_s",
    "catchup.ready_s",
    "catchup.first_done_s",
    "long.worker_docs_per_s",
    "long.worker_chunks_per_s",
    "long.embed_alone_chunks_per_s",
    "long.efficiency",
    "long.peak_rss_mib",
    "migrate.put_many_records_per_s",
    "migrate.run_records_per_s",
    "migrate.run_vs_put_many",
    "migrate.run_reuse_records_per_s",
    "migrate.drain_without_reuse_s",
    "migrate.drain_with_reuse_s",
    "index.corpus_docs_per_s",
    "index.live_docs_per_s",
    "index.live_p50_s",
    "index.live_p99_s",
    "index.live_max_s",
    "scale.workers1_docs_per_s",
    "scale.workers2_docs_per_s",
    "scale.workers4_docs_per_s",
    "scale.workers4_write_ms_per_doc",
    "scale.four_vs_one",
    "embedder.candle_short_sorted_docs_per_s",
    "embedder.candle_short_given_docs_per_s",
    "embedder.candle_long_docs_per_s",
    "embedder.onnx_short_sorted_docs_per_s",
    "embedder.onnx_short_given_docs_per_s",
    "embedder.onnx_long_docs_per_s",
    "embedder.onnx_int8_short_sorted_docs_per_s",
    "embedder.onnx_int8_short_given_docs_per_s",
    "embedder.onnx_int8_long_docs_per_s",
    "embedder.onnx_candle_cos_min",
    "embedder.int8_cos_min",
    "embedder.onnx_vs_candle",
    "embedder.int8_vs_fp32",
    "embedder.sorting_gain",
    "embedder.reference_short_docs_per_s",
    "embedder.reference_long_docs_per_s",
    "embedder.vs_reference_short",
    "embedder.vs_reference_long",
    "backlog.size1_docs_per_s",
    "backlog.size1_write_ms_per_doc",
    "backlog.size2_docs_per_s",
    "backlog.size3_docs_per_s",
    "backlog.size3_write_ms_per_doc",
    "backlog.size1_first_docs_per_s",
    "backlog.size3_first_docs_per_s",
    "backlog.largest_vs_smallest_window",
    "backlog.largest_vs_smallest",
];

/// Figures that are differences and may be negative on a noisy machine, or counts that may be
/// zero (present and finite).
const SIGNED: &[&str] = &[
    "migrate.reuse_saves_s",
    // The test server runs here, so its CPU time is read; under one clock tick (10 ms) in a
    // quick run it is zero.
    "migrate.put_many_server_ms_per_1000",
    "migrate.run_server_ms_per_1000",
    "scale.workers1_blocked_per_1000",
    "scale.workers4_blocked_per_1000",
    // Zero when the batches in flight overlap so much that no time outside them is left.
    "backlog.size1_other_ms_per_doc",
    "backlog.size3_other_ms_per_doc",
    // Zero when the quick build ends before a live write is handed on to the new index.
    "index.handed_on",
    "index.handed_p99_s",
    // Zero when the quick build has passed every document before a live write.
    "index.left_to_build",
    // Zero when the quick build finished no entry in its 60 s: seen once, on the Python
    // server under the whole suite's load (live entries then waited 6 s to be claimed).
    "index.build_docs_per_s",
];

/// Figures with a goal (printed next to them).
const WITH_GOALS: &[&str] = &[
    "write.put_vs_raw_txn",
    "drain.efficiency",
    "local.efficiency",
    "lag.p99_s",
    "memory.peak_rss_mib",
    "long.efficiency",
    "long.peak_rss_mib",
    "migrate.run_vs_put_many",
    "index.live_p99_s",
    "embedder.onnx_candle_cos_min",
    "embedder.vs_reference_short",
    "embedder.vs_reference_long",
    "backlog.largest_vs_smallest",
];

#[tokio::test]
async fn quick_bench_reports_every_figure() {
    let bin = tidemark_bin();
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p tidemark-cli` first (scripts/test does)",
        bin.display()
    );
    let name = unique_name("bench");
    let out = std::env::temp_dir().join(format!("{name}.json"));
    let md = std::env::temp_dir().join(format!("{name}.md"));
    let doc = std::env::temp_dir().join(format!("{name}-BENCHMARKS.md"));
    std::fs::write(
        &doc,
        "# Benchmarks\n\nby hand\n\n## Results (older)\n\nkept\n",
    )
    .unwrap();
    let started = std::time::Instant::now();
    let run = Command::new(&bin)
        .args([
            "bench",
            "--quick",
            "--name",
            &name,
            "--command",
            "scripts/bench --quick",
        ])
        .arg("--out")
        .arg(&out)
        .arg("--markdown")
        .arg(&md)
        .arg("--update-doc")
        .arg(&doc)
        .env("MONGODB_URI", mongodb_uri())
        .env("CHROMA_URL", chroma_url())
        .env("TIDEMARK_EMBEDDER_MODEL_DIR", model_dir())
        .env(
            "TIDEMARK_EMBEDDER_ONNX_RUNTIME",
            tidemark_e2e::onnx_runtime(),
        )
        .env("TIDEMARK_PYTHON", tidemark_e2e::python())
        .env("TIDEMARK_LOG_LEVEL", "warn")
        .output()
        .expect("tidemark bench runs");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "bench failed\n{stdout}\n{stderr}");
    eprintln!("{stdout}\nquick bench took {:?}", started.elapsed());

    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).expect("JSON written")).unwrap();
    let _ = std::fs::remove_file(&out);
    let notes = json["notes"].as_array().expect("notes").clone();
    assert!(
        !notes
            .iter()
            .any(|n| n.as_str().unwrap_or("").contains("FAILED")),
        "a section failed: {notes:?}"
    );
    let values = json["values"].as_object().expect("values map");
    for key in FIGURES {
        let v = values.get(*key).and_then(|v| v.as_f64());
        assert!(
            v.is_some_and(|v| v.is_finite() && v > 0.0),
            "figure {key} is missing or not a positive number: {v:?}\n{stdout}"
        );
        assert!(stdout.contains(key.split('.').next().unwrap()));
    }
    for key in SIGNED {
        let v = values.get(*key).and_then(|v| v.as_f64());
        assert!(
            v.is_some_and(f64::is_finite),
            "figure {key}: {v:?}\n{stdout}"
        );
    }
    for f in json["figures"].as_array().unwrap() {
        let key = f["key"].as_str().unwrap();
        assert_eq!(
            f["goal"].is_object(),
            WITH_GOALS.contains(&key),
            "goal of {key}: {f}"
        );
    }
    assert!(json["machine"]["cores"].as_u64().unwrap_or(0) >= 1);
    assert_eq!(json["quick"], true);

    // The Markdown names the command and has a row per figure; the document got it as its
    // generated section, before the older results, which stay.
    let section = std::fs::read_to_string(&md).expect("Markdown written");
    let updated = std::fs::read_to_string(&doc).expect("document kept");
    let _ = (std::fs::remove_file(&md), std::fs::remove_file(&doc));
    assert!(
        section.contains("- command: `scripts/bench --quick`"),
        "{section}"
    );
    let rows = section.lines().filter(|l| l.starts_with("| ")).count();
    let figures = json["figures"].as_array().unwrap().len();
    assert_eq!(
        rows,
        figures + 2,
        "a header, its rule and a row per figure:\n{section}"
    );
    assert!(section.contains(json["machine"]["load_at_end"].as_str().unwrap()));
    assert!(updated.contains(section.trim_end()), "{updated}");
    assert!(
        updated.starts_with("# Benchmarks\n\nby hand\n"),
        "{updated}"
    );
    assert!(
        updated.ends_with("## Results (older)\n\nkept\n"),
        "{updated}"
    );

    // The run removed what it created.
    let left: Vec<String> = mongo_client()
        .await
        .list_database_names()
        .await
        .unwrap()
        .into_iter()
        .filter(|d| d.starts_with(&format!("{name}_")))
        .collect();
    assert!(left.is_empty(), "databases left behind: {left:?}");
    let chroma =
        tidemark_chroma::ChromaClient::new(tidemark_chroma::ChromaOptions::new(&chroma_url()))
            .unwrap();
    let parts = [
        ("drain", "hash-384"),
        ("chroma", "hash-384"),
        ("dual", "hash-384"),
        ("lag", "hash-384"),
        ("memory", "hash-384"),
        ("backlog3", "hash-384"),
        ("legacy", "all-MiniLM-L6-v2"),
        ("long", "all-MiniLM-L6-v2"),
        ("longmem", "hash-384"),
        ("migrate", "all-MiniLM-L6-v2"),
        ("reuse", "all-MiniLM-L6-v2"),
    ];
    for (part, model) in parts {
        let coll = tidemark_core::collection_name(&format!("{name}_{part}"), model);
        assert!(
            chroma.get_collection(&coll).await.unwrap().is_none(),
            "Chroma collection {coll} left behind"
        );
    }
}
