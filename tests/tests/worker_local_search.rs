//! The local all-MiniLM-L6-v2 model end to end through the binary: documents are put,
//! `tidemark worker --once` indexes them with the local model, and `tidemark search` with a
//! document's own text returns that document first (a paraphrase finds it too).
//!
//! REQUIRES the binary: `cargo build -p tidemark-cli` before this test (scripts/test does it).

use crate::worker_support;

use std::process::Command;
use tidemark_store::NewDocument;
use worker_support::{test_config, Env, TOPICS};

fn tidemark(config: &std::path::Path, args: &[&str]) -> std::process::Output {
    let out = Command::new(tidemark_e2e::tidemark_bin())
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("MONGODB_URI")
        .env_remove("CHROMA_URL")
        .output()
        .expect("run tidemark (cargo build -p tidemark-cli first)");
    assert!(
        out.status.success(),
        "tidemark {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn first_hit(out: &std::process::Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().next().expect("a result line")).unwrap()
}

#[tokio::test]
async fn local_model_put_index_and_search_own_text() {
    let mut cfg = test_config("wk_local");
    tidemark_e2e::use_local_model(&mut cfg.embedder);
    let mut env = Env::with_config(cfg.clone()).await;
    env.model = "all-MiniLM-L6-v2".into();
    let texts = &TOPICS[..4];
    for &(id, t) in texts {
        env.store
            .put(NewDocument::new(id, "note", t))
            .await
            .unwrap();
    }
    let dir = std::env::temp_dir().join(&cfg.mongodb.database);
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("tidemark.toml");
    std::fs::write(&config, toml::to_string(&cfg).unwrap()).unwrap();

    let out = tidemark(&config, &["worker", "--once"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("4 indexed"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let vectors = env.vectors().await;
    assert_eq!(vectors.len(), 4);
    assert!(vectors
        .values()
        .all(|(m, e)| e.len() == 384 && m["model"] == "all-MiniLM-L6-v2"));

    for &(id, t) in texts {
        let hit = first_hit(&tidemark(&config, &["search", t, "-k", "3", "--json"]));
        assert_eq!(hit["contentId"], id, "own text of {id}");
        assert!(hit["score"].as_f64().unwrap() > 0.99, "{hit}");
    }
    // Semantic, not lexical: a paraphrase with other words.
    let hit = first_hit(&tidemark(
        &config,
        &["search", "why does the sea rise and fall", "--json"],
    ));
    assert_eq!(hit["contentId"], "tides");
    let table = tidemark(&config, &["search", "baking instructions", "-k", "2"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.lines().next().unwrap().contains("bread") && text.contains("Knead the dough"),
        "{text}"
    );
    env.assert_consistent().await;
    let _ = std::fs::remove_dir_all(&dir);
    env.cleanup().await;
}
