//! Chunking against the real services: a long document becomes a chunk set with the documented
//! ids and metadata; an edit of one paragraph embeds only the chunks around it; shrinking
//! leaves no chunk behind; growing adds chunks; a delete removes every chunk; `verify` finds a
//! clean index after each step and names a leftover chunk. With the local model, a sentence at
//! the end of a 5,000-word document is found through its chunk, and not without chunking.
//! With the real worker binary: kill -9 in the middle of chunked batches (and new versions
//! between the kills) still ends with verify clean, and two workers racing over the versions
//! of the same long documents leave exactly one chunk set per document, of its last version.

use crate::worker_support;

use std::collections::HashSet;
use std::time::Duration;
use tidemark_core::chunking::{ChunkMode, ChunkingConfig};
use tidemark_core::config::LocalEngine;
use tidemark_core::vector_meta::{keys, meta_i64};
use tidemark_core::Config;
use tidemark_e2e::procs::{self, WorkerProc};
use tidemark_ops::backfill::{backfill, BackfillOptions};
use tidemark_ops::verify::{verify, VerifyOptions};
use tidemark_ops::{NoProgress, Ops};
use tidemark_store::NewDocument;
use worker_support::{assert_drained, count_status, test_config, wait_until, Env};

/// `n` paragraphs of about 20 words; paragraph i mentions `topic<i>`.
fn manual(n: usize, edit: Option<usize>) -> String {
    (0..n)
        .map(|i| {
            let word = if edit == Some(i) {
                "revised"
            } else {
                "original"
            };
            format!(
                "Section {i} covers topic{i} in the {word} manual. The pump must be primed before \
                 use, and the valve closed after each run of the machine."
            )
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}

fn chunked_config(prefix: &str) -> Config {
    let mut cfg = test_config(prefix);
    cfg.chunking = ChunkingConfig {
        mode: ChunkMode::Tokens,
        max_tokens: 64,
        overlap: 8,
        template: "{type}: {content}".into(),
    };
    cfg
}

fn ops_for(env: &Env) -> Ops {
    let text = env.cfg.chunking.resolve(&env.cfg.embedder).unwrap();
    Ops::new(
        env.store.clone(),
        env.chroma.clone(),
        &env.cfg.chroma.namespace,
        &env.model,
    )
    .with_text_settings(text)
}

/// The chunk numbers stored for the document, checking the chunk metadata on the way.
async fn chunk_numbers(env: &Env, doc_hex: &str, version: i64) -> Vec<i64> {
    let vectors = env.vectors().await;
    let mut numbers = Vec::new();
    for (id, (m, _)) in &vectors {
        assert!(id.starts_with(&format!("{doc_hex}:")), "chunk id {id}");
        let n = meta_i64(m, keys::CHUNK).expect("chunk");
        assert_eq!(id, &format!("{doc_hex}:{n}"));
        assert_eq!(meta_i64(m, keys::CHUNKS), Some(vectors.len() as i64));
        assert_eq!(meta_i64(m, keys::VERSION), Some(version), "{id}");
        assert!(meta_i64(m, keys::SPAN_END) > meta_i64(m, keys::SPAN_START));
        assert!(m.contains_key(keys::TEXT_HASH) && m.contains_key(keys::CHUNKING));
        numbers.push(n);
    }
    numbers.sort_unstable();
    numbers
}

async fn assert_verify_clean(env: &Env) {
    let r = verify(&ops_for(env), &VerifyOptions::default(), &NoProgress)
        .await
        .unwrap();
    let c = &r.counts;
    assert_eq!(
        (c.missing, c.stale, c.orphans, c.behind),
        (0, 0, 0, 0),
        "{:?}",
        r.stale
    );
}

#[tokio::test]
async fn chunk_sets_follow_every_version() {
    let env = Env::with_config(chunked_config("wk_chunk")).await;
    let w = env.worker();
    w.init().await.unwrap();
    let put = |content: String| NewDocument::new("manual-1", "manual", content);

    let first = env.store.put(put(manual(30, None))).await.unwrap();
    w.drain().await.unwrap();
    let hex = first.document_id.to_hex();
    let n = chunk_numbers(&env, &hex, 1).await;
    assert!(n.len() >= 8, "30 paragraphs in 64-token chunks: {n:?}");
    assert_eq!(n, (0..n.len() as i64).collect::<Vec<_>>());
    assert_eq!(env.embedder.texts(), n.len() as u64);
    assert_verify_clean(&env).await;
    // backfill --missing-only sees the chunk set: nothing to enqueue; without chunk 0, one.
    let missing = BackfillOptions {
        missing_only: true,
        restart: true,
        ..BackfillOptions::default()
    };
    let r = backfill(&ops_for(&env), &missing, &NoProgress)
        .await
        .unwrap();
    assert_eq!((r.scanned, r.enqueued), (1, 0), "{r:?}");
    let coll = env.collection_id().await;
    env.chroma
        .delete(&coll, &[format!("{hex}:0")])
        .await
        .unwrap();
    let r = backfill(&ops_for(&env), &missing, &NoProgress)
        .await
        .unwrap();
    assert_eq!(r.enqueued, 1, "{r:?}");
    w.drain().await.unwrap();
    assert_eq!(chunk_numbers(&env, &hex, 1).await.len(), n.len());

    // One paragraph edited: only the chunks holding it are embedded again.
    let before = env.embedder.texts();
    env.store.put(put(manual(30, Some(15)))).await.unwrap();
    w.drain().await.unwrap();
    let embedded = env.embedder.texts() - before;
    assert!(
        (1..=2).contains(&embedded),
        "{embedded} chunks embedded for one paragraph"
    );
    assert_eq!(chunk_numbers(&env, &hex, 2).await.len(), n.len());
    assert_verify_clean(&env).await;

    // Shrink: no chunk beyond the new count is left.
    env.store.put(put(manual(4, None))).await.unwrap();
    w.drain().await.unwrap();
    let small = chunk_numbers(&env, &hex, 3).await;
    assert!(small.len() < n.len() && !small.is_empty());
    assert_verify_clean(&env).await;

    // Grow again.
    env.store.put(put(manual(40, None))).await.unwrap();
    w.drain().await.unwrap();
    assert!(chunk_numbers(&env, &hex, 4).await.len() > n.len());
    assert_verify_clean(&env).await;

    // A leftover chunk (as a crash between upsert and removal would leave) is named by verify.
    let coll = env.collection_id().await;
    let (m, e) = env.vectors().await.into_values().next().unwrap();
    let mut extra = m.clone();
    extra.insert(keys::CHUNK.into(), serde_json::json!(99));
    env.chroma
        .upsert(
            &coll,
            &[tidemark_chroma::VectorRecord {
                id: format!("{hex}:99"),
                embedding: e,
                metadata: extra,
            }],
        )
        .await
        .unwrap();
    let r = verify(&ops_for(&env), &VerifyOptions::default(), &NoProgress)
        .await
        .unwrap();
    assert_eq!(r.counts.stale, 1);
    let diff = r.stale[0].differences.join("; ");
    assert!(diff.contains("chunk 99 is beyond"), "{diff}");

    // Delete: every chunk goes.
    env.store.delete("manual-1").await.unwrap();
    w.drain().await.unwrap();
    assert!(env.vectors().await.is_empty(), "chunks left after delete");
    env.cleanup().await;
}

#[tokio::test]
async fn unchunked_and_chunked_documents_never_share_ids() {
    let env = Env::with_config(chunked_config("wk_chunk_ids")).await;
    let w = env.worker();
    w.init().await.unwrap();
    let docs: Vec<NewDocument> = (0..5)
        .map(|i| NewDocument::new(format!("m{i}"), "manual", manual(3 + i * 4, None)))
        .collect();
    let out = env.store.put_many(docs).await.unwrap();
    w.drain().await.unwrap();
    let ids: HashSet<String> = env.vectors().await.into_keys().collect();
    assert!(
        ids.iter().all(|id| id.contains(':')),
        "only chunk ids in a chunked index"
    );
    for o in &out {
        assert!(ids.contains(&format!("{}:0", o.document_id.to_hex())));
    }
    assert_verify_clean(&env).await;
    env.cleanup().await;
}

/// The local model: a sentence at the end of a long document is found through its chunk; the
/// same document as one vector (truncated at 256 tokens) is much farther from it.
#[tokio::test]
async fn the_end_of_a_long_document_is_searchable_only_with_chunking() {
    let model = std::sync::Arc::new(tidemark_e2e::local_model(LocalEngine::Onnx));
    let filler: String = (0..250)
        .map(|i| format!("Paragraph {i} of the maintenance log lists routine checks of filters, belts and gauges."))
        .collect::<Vec<_>>()
        .join("\n\n");
    let unique = "A family of otters built a dam of driftwood across the frozen river at midnight.";
    let content = format!("{filler}\n\n{unique}");
    assert!(content.split_whitespace().count() > 3000);
    let query = tidemark_embed::Embedder::embed(model.as_ref(), &[unique.to_string()])
        .await
        .unwrap()
        .remove(0);
    let mut best = Vec::new();
    for mode in [ChunkMode::Tokens, ChunkMode::None] {
        let mut cfg = test_config("wk_chunk_local");
        cfg.chunking.mode = mode;
        cfg.chunking.max_tokens = 64;
        cfg.chunking.overlap = 8;
        let mut env = Env::with_config(cfg).await;
        env.model = "all-MiniLM-L6-v2".into();
        let w = env.worker_with(model.clone());
        w.init().await.unwrap();
        env.store
            .put(NewDocument::new("log", "log", content.clone()))
            .await
            .unwrap();
        w.drain().await.unwrap();
        let hits = w.index().query(&query, 1, None).await.unwrap();
        best.push(hits[0].distance);
        if mode == ChunkMode::Tokens {
            let m = &hits[0].metadata;
            let start = meta_i64(m, keys::SPAN_START).unwrap() as usize;
            let end = meta_i64(m, keys::SPAN_END).unwrap() as usize;
            let span: String = content.chars().skip(start).take(end - start).collect();
            assert!(span.contains(unique), "the best chunk holds the sentence");
        }
        env.cleanup().await;
    }
    assert!(
        best[0] + 0.1 < best[1],
        "chunked distance {} vs unchunked {}",
        best[0],
        best[1]
    );
}

/// A chunked setup for the real `tidemark worker` binary: hashing embedder of 64 dimensions,
/// the config file written beside a log; `vectors()` and verify read the binary's collection.
async fn binary_env(prefix: &str) -> (Env, std::path::PathBuf) {
    let mut cfg = chunked_config(prefix);
    cfg.embedder.provider = tidemark_core::config::EmbedderKind::Hash;
    cfg.embedder.dimension = 64;
    cfg.worker.lease = Duration::from_secs(3);
    // Small batches: a backlog of long documents takes many batches, so a kill can cut it.
    cfg.worker.batch_size = 4;
    let mut env = Env::with_config(cfg).await;
    env.model = tidemark_ops::model_id(&env.cfg.embedder);
    let dir = tidemark_e2e::servers::temp_dir(prefix);
    let config = procs::write_config(&env.cfg, &dir);
    (env, config)
}

/// `n` manuals of `paragraphs` paragraphs each, as one `put_many`.
async fn put_manuals(env: &Env, n: usize, paragraphs: usize, edit: Option<usize>) {
    let docs: Vec<NewDocument> = (0..n)
        .map(|i| NewDocument::new(format!("manual-{i}"), "manual", manual(paragraphs, edit)))
        .collect();
    env.store.put_many(docs).await.expect("put_many");
}

async fn wait_drained(env: &Env, what: &str) {
    assert_drained(&env.store, Duration::from_secs(120), what).await;
}

/// Every live document's chunk set is exactly the one of its latest version.
async fn assert_latest_chunk_sets(env: &Env) {
    let docs = env.documents().await;
    let vectors = env.vectors().await;
    for d in &docs {
        let hex = d.id.to_hex();
        let mine: Vec<_> = vectors
            .iter()
            .filter(|(id, _)| id.starts_with(&format!("{hex}:")))
            .collect();
        assert!(!mine.is_empty(), "{} has no chunk", d.content_id);
        for (id, (m, _)) in &mine {
            assert_eq!(meta_i64(m, keys::VERSION), Some(d.version), "{id}");
            assert_eq!(meta_i64(m, keys::CHUNKS), Some(mine.len() as i64), "{id}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_chunked_batches_then_verify_clean() {
    let (env, config) = binary_env("wk_chunk_kill").await;
    // 60 manuals of ~14 chunks: a drain takes long enough to be cut in the middle.
    put_manuals(&env, 60, 40, None).await;
    let mut mid_drain_kills = 0;
    let rounds = [(6, None), (40, Some(3)), (25, None), (40, Some(20))];
    for (round, (paragraphs, edit)) in rounds.into_iter().enumerate() {
        let mut worker = WorkerProc::spawn(&config, "warn,tidemark_worker=info");
        let before = count_status(&env.store, "done").await;
        // Kill as soon as the worker has finished something, while work is left.
        wait_until(Duration::from_secs(60), || async {
            count_status(&env.store, "done").await > before
        })
        .await;
        worker.kill9();
        if count_status(&env.store, "pending").await > 0 {
            mid_drain_kills += 1;
        }
        // New versions that shrink, grow or edit every manual, written while nobody works.
        put_manuals(&env, 60, paragraphs, edit).await;
        eprintln!("round {round}: killed; wrote {paragraphs}-paragraph versions");
    }
    assert!(
        mid_drain_kills >= 2,
        "only {mid_drain_kills} of 4 kills hit a drain in progress"
    );
    let mut worker = WorkerProc::spawn(&config, "warn,tidemark_worker=info");
    wait_drained(&env, "after the kills").await;
    worker.sigterm();
    let exit = worker.wait_exit(Duration::from_secs(20)).await;
    assert!(
        exit.is_some_and(|(s, _)| s.success()),
        "{}",
        worker.log_tail(20)
    );
    assert_verify_clean(&env).await;
    assert_latest_chunk_sets(&env).await;
    assert_eq!(count_status(&env.store, "dead").await, 0);
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_on_long_documents_leave_one_chunk_set_each() {
    let (env, config) = binary_env("wk_chunk_two").await;
    let mut a = WorkerProc::spawn(&config, "warn,tidemark_worker=info");
    let mut b = WorkerProc::spawn(&config, "warn,tidemark_worker=info");
    // Versions arrive while both run: grow, shrink, edit, so claims of one document's
    // versions race between the two workers.
    for (paragraphs, edit) in [(40, None), (8, None), (40, Some(10)), (30, None)] {
        put_manuals(&env, 40, paragraphs, edit).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    wait_drained(&env, "two workers").await;
    for w in [&mut a, &mut b] {
        w.sigterm();
        let exit = w.wait_exit(Duration::from_secs(20)).await;
        assert!(exit.is_some_and(|(s, _)| s.success()), "{}", w.log_tail(20));
    }
    assert_verify_clean(&env).await;
    assert_latest_chunk_sets(&env).await;
    assert_eq!(count_status(&env.store, "dead").await, 0);
    env.cleanup().await;
}
