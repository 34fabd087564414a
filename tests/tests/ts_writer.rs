//! The TypeScript writer (clients/typescript) against the Rust side, on the real services:
//! a document written by it and one written by `tidemark put` have the same field names, order
//! and BSON types and are both indexed by one `tidemark worker --once`; a first insert of one
//! contentId raced from TypeScript and from the Rust store ends as one document with versions 1
//! and 2; versions interleave across the TypeScript writer, the `tidemark` binary and the Rust
//! store over deletes and re-puts; its validation messages are the Rust store's, word for word;
//! its `ensureSchema` and the Rust one build the same indexes.
//!
//! These checks live here rather than in the node tests because the Rust side is the reference
//! and is at hand in-process: the harness's databases and worker set-up, the typed contract
//! (`DocumentRecord`, `OutboxEntry`), `validate` itself and a `Store` to race with. The
//! TypeScript side is driven through its small command line, `dist/tools/writer-cli.js`, which
//! `scripts/test` builds (`npm ci && npm run build` in clients/typescript) before the cargo tests.

use crate::cli_docs_support;
use crate::store_support;
use crate::worker_support;

use bson::{doc, Bson, Document};
use futures::TryStreamExt;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;
use store_support::{all_entries, drop_db, fresh_store};
use tidemark_core::config::{EmbedderKind, Limits};
use tidemark_core::{content_hash, Op, OutboxResult, OutboxStatus};
use tidemark_e2e::{mongodb_uri, repo_root};
use tidemark_store::{validate, NewDocument, Store};
use worker_support::{test_config, Env};

/// Runs `node writer-cli.js ARGS` on database `db`; returns its JSON output.
fn ts(db: &str, args: &[&str], stdin: Option<&str>) -> Value {
    let script = repo_root().join("clients/typescript/dist/tools/writer-cli.js");
    assert!(
        script.exists(),
        "{} is missing: run `npm ci && npm run build` in clients/typescript (scripts/test does)",
        script.display()
    );
    let mut child = Command::new("node")
        .arg(&script)
        .args(args)
        .env("MONGODB_URI", mongodb_uri())
        .env("TIDEMARK_MONGODB_DATABASE", db)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node runs (Node 20 from the machine's packages)");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "writer-cli {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    if args[0] == "validate" {
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        return Value::Array(lines);
    }
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// Runs the `tidemark` binary on database `db`; returns its JSON output.
fn cli(db: &str, args: &[&str]) -> Value {
    let run = cli_docs_support::tidemark(db, args, None);
    assert_eq!(run.code, 0, "tidemark {args:?}: {}", run.stderr);
    serde_json::from_str(run.stdout.trim()).unwrap()
}

/// The names, order and BSON types of a value, without the values.
fn shape(b: &Bson) -> String {
    match b {
        Bson::Document(d) => {
            let fields: Vec<String> = d.iter().map(|(k, v)| format!("{k}:{}", shape(v))).collect();
            format!("{{{}}}", fields.join(","))
        }
        Bson::Array(items) => {
            let items: Vec<String> = items.iter().map(shape).collect();
            format!("[{}]", items.join(","))
        }
        other => format!("{:?}", other.element_type()),
    }
}

async fn raw_one(store: &Store, coll: &str, filter: Document) -> Document {
    store
        .database()
        .collection::<Document>(coll)
        .find_one(filter)
        .await
        .unwrap()
        .expect("a stored row")
}

fn worker_once(cfg: &tidemark_core::Config) -> String {
    let dir = std::env::temp_dir().join(&cfg.mongodb.database);
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("tidemark.toml");
    std::fs::write(&config, toml::to_string(cfg).unwrap()).unwrap();
    let out = Command::new(tidemark_e2e::tidemark_bin())
        .arg("--config")
        .arg(&config)
        .args(["worker", "--once"])
        .env_remove("MONGODB_URI")
        .env_remove("CHROMA_URL")
        .output()
        .expect("run tidemark (cargo build -p tidemark-cli first)");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "worker --once: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn ts_and_cli_documents_are_indistinguishable_to_the_worker() {
    let mut cfg = test_config("ts_worker");
    cfg.embedder.provider = EmbedderKind::Hash;
    cfg.embedder.dimension = 64;
    let mut env = Env::with_config(cfg.clone()).await;
    env.model = "hash-64".into();
    let db = cfg.mongodb.database.clone();
    let meta = r#"{"lang":"en","n":3,"neg":-7,"ratio":0.25,"ok":true,"none":null,"tags":["a",2],"nested":{"deep":{"x":1.5}}}"#;
    let content = "Tides rise and fall twice a day — héllo ✓";
    let t = ts(&db, &["put", "ts-1", "note", content, meta], None);
    let r = cli(
        &db,
        &["put", "rs-1", content, "--type", "note", "--metadata", meta],
    );
    assert_eq!(
        (t["version"].clone(), r["version"].clone()),
        (json!(1), json!(1))
    );
    assert_eq!(t["contentHash"], json!(content_hash(content)));
    assert_eq!(t["contentHash"], r["contentHash"]);

    let (td, rd) = (
        raw_one(&env.store, "documents", doc! {"contentId": "ts-1"}).await,
        raw_one(&env.store, "documents", doc! {"contentId": "rs-1"}).await,
    );
    assert_eq!(
        shape(&Bson::Document(td.clone())),
        shape(&Bson::Document(rd.clone()))
    );
    for key in ["type", "content", "metadata", "version", "contentHash"] {
        assert_eq!(td.get(key), rd.get(key), "documents.{key}");
    }
    let (te, re) = (
        raw_one(&env.store, "outbox", doc! {"contentId": "ts-1"}).await,
        raw_one(&env.store, "outbox", doc! {"contentId": "rs-1"}).await,
    );
    assert_eq!(
        shape(&Bson::Document(te.clone())),
        shape(&Bson::Document(re.clone()))
    );
    for key in [
        "schemaVersion",
        "op",
        "version",
        "contentHash",
        "status",
        "attempts",
        "newDocument",
    ] {
        assert_eq!(te.get(key), re.get(key), "outbox.{key}");
    }
    assert_eq!(
        te.get_bool("newDocument"),
        Ok(true),
        "both created the document"
    );
    assert_eq!(te.get("nextAttemptAt"), te.get("createdAt"));
    // Both parse as the Rust contract types.
    assert_eq!(env.documents().await.len(), 2);
    assert_eq!(env.entries().await.len(), 2);

    let summary = worker_once(&cfg);
    assert!(summary.contains("2 indexed"), "{summary}");
    for e in env.entries().await {
        assert_eq!(
            (e.status, e.result),
            (OutboxStatus::Done, Some(OutboxResult::Indexed)),
            "{}",
            e.content_id
        );
    }
    let vectors = env.vectors().await;
    let strip = |m: &tidemark_chroma::Metadata| {
        let mut m = m.clone();
        m.retain(|k, _| !["documentId", "contentId", "timestamp"].contains(&k.as_str()));
        m
    };
    let (tv, rv) = (
        &vectors[t["documentId"].as_str().unwrap()],
        &vectors[r["documentId"].as_str().unwrap()],
    );
    assert_eq!(strip(&tv.0), strip(&rv.0), "same vector metadata");
    assert_eq!(tv.1, rv.1, "same embedding");
    env.assert_consistent().await;

    // Each writer changes the other's document: a metadata-only update and a delete.
    let upd = ts(
        &db,
        &["put", "rs-1", "note", content, r#"{"lang":"fr"}"#],
        None,
    );
    assert_eq!(
        (upd["version"].clone(), upd["documentId"].clone()),
        (json!(2), r["documentId"].clone())
    );
    assert_eq!(cli(&db, &["delete", "ts-1"])["version"], json!(2));
    let summary = worker_once(&cfg);
    assert!(
        summary.contains("1 indexed") && summary.contains("1 deleted"),
        "{summary}"
    );
    let vectors = env.vectors().await;
    assert_eq!(vectors.len(), 1);
    assert_eq!(
        vectors[r["documentId"].as_str().unwrap()].0["lang"],
        json!("fr")
    );
    env.assert_consistent().await;
    env.cleanup().await;
}

/// Starts `writer-cli race IDS` and returns it once it has connected (it printed `ready`); it
/// puts the ids when a line arrives on its stdin.
fn spawn_racer(db: &str, ids: &[String]) -> (Child, BufReader<ChildStdout>) {
    let script = repo_root().join("clients/typescript/dist/tools/writer-cli.js");
    assert!(
        script.exists(),
        "{} is missing: run `npm ci && npm run build` in clients/typescript",
        script.display()
    );
    let mut child = Command::new("node")
        .arg(&script)
        .arg("race")
        .args(ids)
        .env("MONGODB_URI", mongodb_uri())
        .env("TIDEMARK_MONGODB_DATABASE", db)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node runs");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready", "writer-cli race did not start");
    (child, out)
}

/// One round of first puts of `ids`, sent at the same moment from node and from the Rust store;
/// checks the outcome and returns how many transaction retries the two writers needed.
async fn race_round(store: &Store, db: &str, ids: &[String], head_start: Duration) -> u64 {
    let (db, args) = (db.to_string(), ids.to_vec());
    let (mut child, mut out) = tokio::task::spawn_blocking(move || spawn_racer(&db, &args))
        .await
        .unwrap();
    let before = store.transaction_retries();
    let mut go = child.stdin.take().unwrap();
    go.write_all(b"go\n").unwrap();
    drop(go);
    // node needs a moment to wake up and send; the Rust side waits a little, differently per
    // round, so that the two sides' transactions overlap in some round.
    tokio::time::sleep(head_start).await;
    let puts = ids
        .iter()
        .map(|id| store.put(NewDocument::new(id, "race", format!("rust {id}"))));
    let rust: Vec<_> = futures::future::join_all(puts).await;
    let node = tokio::task::spawn_blocking(move || {
        let mut text = String::new();
        out.read_to_string(&mut text).unwrap();
        assert!(
            child.wait().unwrap().success(),
            "writer-cli race failed: {text}"
        );
        serde_json::from_str::<Value>(text.trim()).unwrap()
    })
    .await
    .unwrap();
    let node_outs = node["outcomes"].as_array().unwrap();
    for (i, id) in ids.iter().enumerate() {
        let r = rust[i].as_ref().expect("the Rust put commits");
        let t = &node_outs[i];
        let mut versions = [r.version, t["version"].as_i64().unwrap()];
        versions.sort();
        assert_eq!(
            versions,
            [1, 2],
            "{id}: one writer created it, the other updated it"
        );
        assert_eq!(
            t["documentId"],
            json!(r.document_id.to_hex()),
            "{id}: one incarnation"
        );
        let d = store.get(id).await.unwrap().expect("document");
        assert_eq!(d.version, 2);
        let winner = if r.version == 2 {
            format!("rust {id}")
        } else {
            format!("ts {id}")
        };
        assert_eq!(
            d.content, winner,
            "{id}: the document is the version-2 write"
        );
        assert_eq!(d.content_hash, content_hash(&winner));
    }
    let entries = all_entries(store).await;
    for id in ids {
        let mine: Vec<_> = entries.iter().filter(|e| &e.content_id == id).collect();
        assert_eq!(
            mine.iter().map(|e| e.version).collect::<Vec<_>>(),
            [1, 2],
            "{id}"
        );
        assert!(mine.iter().all(|e| e.document_id == mine[0].document_id));
    }
    let rust_retries = store.transaction_retries() - before;
    eprintln!(
        "race of {} ids, Rust {head_start:?} later: retries: rust {rust_retries}, node {}",
        ids.len(),
        node["retries"]
    );
    rust_retries + node["retries"].as_u64().unwrap()
}

#[tokio::test]
async fn concurrent_first_insert_from_ts_and_rust() {
    let (store, cfg) = fresh_store("ts_race").await;
    let mut retries = 0;
    for (round, ms) in [0, 2, 5, 10, 20, 40].into_iter().enumerate() {
        let ids: Vec<String> = (0..20).map(|i| format!("race-{round}-{i}")).collect();
        let head_start = Duration::from_millis(ms);
        retries += race_round(&store, &cfg.mongodb.database, &ids, head_start).await;
        if retries > 0 {
            break;
        }
    }
    assert!(
        retries > 0,
        "the writers never collided in six rounds: no race was tested"
    );
    drop_db(&store).await;
}

#[tokio::test]
async fn versions_interleave_across_ts_cli_and_rust_store() {
    let (store, cfg) = fresh_store("ts_versions").await;
    let db = &cfg.mongodb.database;
    let a = ts(db, &["put", "v-1", "note", "one"], None);
    let a_id = a["documentId"].clone();
    assert_eq!(
        cli(db, &["put", "v-1", "two", "--type", "note"])["documentId"],
        a_id
    );
    let three = store
        .put(NewDocument::new("v-1", "note", "three"))
        .await
        .unwrap();
    assert_eq!(
        (three.version, json!(three.document_id.to_hex())),
        (3, a_id.clone())
    );
    assert_eq!(ts(db, &["delete", "v-1"], None)["version"], json!(4));
    assert_eq!(
        ts(db, &["delete", "v-1"], None),
        Value::Null,
        "nothing left to delete"
    );
    let five = cli(db, &["put", "v-1", "five", "--type", "note"]);
    assert_eq!(five["version"], json!(5));
    assert_ne!(
        five["documentId"], a_id,
        "a new incarnation gets a fresh _id"
    );
    let six = ts(db, &["put", "v-1", "note", "six"], None);
    assert_eq!(
        (six["version"].clone(), six["documentId"].clone()),
        (json!(6), five["documentId"].clone())
    );
    assert_eq!(store.delete("v-1").await.unwrap().unwrap().version, 7);
    let eight = ts(db, &["put", "v-1", "note", "eight"], None);
    assert_eq!(eight["version"], json!(8));
    assert_ne!(eight["documentId"], five["documentId"]);

    let seq: Vec<(i64, Op, String)> = all_entries(&store)
        .await
        .iter()
        .map(|e| (e.version, e.op, e.content_hash.clone()))
        .collect();
    let up = |v, c: &str| (v, Op::Upsert, content_hash(c));
    let del = |v, c: &str| (v, Op::Delete, content_hash(c));
    assert_eq!(
        seq,
        vec![
            up(1, "one"),
            up(2, "two"),
            up(3, "three"),
            del(4, "three"),
            up(5, "five"),
            up(6, "six"),
            del(7, "six"),
            up(8, "eight")
        ]
    );
    let d = store.get("v-1").await.unwrap().unwrap();
    assert_eq!((d.version, d.content.as_str()), (8, "eight"));
    drop_db(&store).await;
}

#[test]
fn ts_validation_messages_are_the_rust_stores() {
    let limits = Limits {
        max_content_bytes: 10,
        max_content_id_len: 5,
        max_metadata_depth: 3,
        max_batch_bytes: 100,
    };
    let d = |m: Value| json!({"contentId": "a", "type": "t", "content": "c", "metadata": m});
    let mut cases = vec![
        json!({"contentId": "a", "type": "t", "content": "hello", "metadata": {"x": {"y": [1, 2]}}}),
        json!({"contentId": "a", "type": "t", "content": "no metadata"}),
        json!({"contentId": "", "type": "t", "content": "c"}),
        json!({"contentId": "toolong", "type": "t", "content": "c"}),
        json!({"contentId": "ééé", "type": "t", "content": "c"}),
        json!({"contentId": "a\u{0}", "type": "t", "content": "c"}),
        json!({"contentId": "a", "type": " ", "content": "c"}),
        json!({"contentId": "a", "type": "\u{85}\u{3000}\t", "content": "c"}),
        json!({"contentId": "a", "type": "\u{feff}", "content": "c"}),
        json!({"contentId": "a", "type": "t", "content": ""}),
        json!({"contentId": "a", "type": "t", "content": "01234567890"}),
        json!({"contentId": "a", "type": "t", "content": "ééééé"}),
        json!({"contentId": "a", "type": "t", "content": "éééééé"}),
    ];
    for m in [
        json!([1]),
        json!(null),
        json!("s"),
        json!(3),
        json!(true),
        json!({"$set": 1}),
        json!({"a": {"b.c": 1}}),
        json!({"a": [{"$x": 1}]}),
        json!({"a": {"b": {"c": {}}}}),
        json!({"a": [[[1]]]}),
        json!({"a": {"": 1}}),
        json!({"k\u{0}": 1}),
        json!({"a": {"b": {"c": 1}}, "l": [[1]]}),
        json!({"ok": 1, "$bad": 2, "c.d": 3}),
        json!({"n": i64::MIN, "m": i64::MAX}),
    ] {
        cases.push(d(m));
    }
    let rust: Vec<Value> = cases
        .iter()
        .map(|c| {
            let doc = NewDocument {
                content_id: c["contentId"].as_str().unwrap().to_string(),
                doc_type: c["type"].as_str().unwrap().to_string(),
                content: c["content"].as_str().unwrap().to_string(),
                metadata: c.get("metadata").cloned().unwrap_or(json!({})),
                timestamp: None,
            };
            match validate(&doc, &limits) {
                Ok(()) => Value::Null,
                Err(e) => json!(e.to_string()),
            }
        })
        .collect();
    assert!(
        rust.iter().filter(|m| m.is_null()).count() >= 4,
        "valid cases too"
    );
    let lines: String = cases.iter().map(|c| format!("{c}\n")).collect();
    let ts_limits =
        r#"{"maxContentBytes":10,"maxContentIdLen":5,"maxMetadataDepth":3,"maxBatchBytes":100}"#;
    let node = ts("unused", &["validate", ts_limits], Some(&lines));
    let node = node.as_array().unwrap();
    assert_eq!(node.len(), cases.len());
    for (i, c) in cases.iter().enumerate() {
        assert_eq!(node[i], rust[i], "case {c}");
    }
}

async fn index_specs(store: &Store) -> Vec<String> {
    let mut out = Vec::new();
    for coll in ["documents", "outbox", "sync_state"] {
        let c = store.database().collection::<Document>(coll);
        let mut specs: Vec<String> = c
            .list_indexes()
            .await
            .unwrap()
            .try_collect::<Vec<_>>()
            .await
            .unwrap()
            .into_iter()
            .map(|ix| {
                let o = ix.options.unwrap_or_default();
                format!(
                    "{coll} {:?} {} unique={:?} ttl={:?}",
                    o.name, ix.keys, o.unique, o.expire_after
                )
            })
            .collect();
        specs.sort();
        out.extend(specs);
    }
    out
}

#[tokio::test]
async fn ts_and_rust_ensure_schema_agree() {
    // TypeScript first, then Rust on the same database: no conflict, nothing to change.
    let (rust_only, _) = fresh_store("ts_schema_rs").await;
    let (first, cfg) = fresh_store("ts_schema_ts").await;
    first.database().drop().await.unwrap();
    assert_eq!(
        ts(&cfg.mongodb.database, &["ensure-schema"], None),
        json!("ok")
    );
    let by_ts = index_specs(&first).await;
    first
        .ensure_schema()
        .await
        .expect("Rust ensure_schema after the TypeScript one");
    assert_eq!(index_specs(&first).await, by_ts);
    assert_eq!(
        by_ts,
        index_specs(&rust_only).await,
        "the same indexes as the Rust store"
    );
    assert!(by_ts.len() >= tidemark_store::INDEX_NAMES.len());
    // Rust first, then TypeScript.
    let db = rust_only.database().name().to_string();
    assert_eq!(ts(&db, &["ensure-schema"], None), json!("ok"));
    assert_eq!(index_specs(&rust_only).await, by_ts);
    drop_db(&first).await;
    drop_db(&rust_only).await;
}
