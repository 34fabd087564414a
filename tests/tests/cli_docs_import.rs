//! `tidemark import FILE.jsonl` through the real binary: bad lines are reported by number and
//! skipped, exactly the good lines are written (document + entry each), `--stop-on-error` stops
//! with nothing of the bad line's batch written, and the exit status says whether lines were bad.

use crate::cli_docs_support;

use bson::doc;
use cli_docs_support::{new_db, tidemark};
use serde_json::Value;
use std::collections::BTreeMap;

fn write_jsonl(name: &str, lines: &[&str]) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("{name}.jsonl"));
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

async fn versions(store: &tidemark_store::Store) -> BTreeMap<String, (i64, String)> {
    tidemark_e2e::all_documents(store)
        .await
        .into_iter()
        .map(|d| (d.content_id, (d.version, d.content)))
        .collect()
}

#[tokio::test]
async fn good_lines_written_bad_lines_reported_by_number() {
    let (db, store) = new_db("cli_imp").await;
    let path = write_jsonl(
        &db,
        &[
            r#"{"contentId":"a","type":"t","content":"alpha"}"#,
            r#"{"contentId":"b","type":"t","content": oops}"#,
            r#"{"contentId":"c","type":"t","content":"gamma","metadata":{"k":[1,2],"m":{"x":"y"}}}"#,
            "",
            r#"{"contentId":"d","content":"no type"}"#,
            r#"{"contentId":"e","type":"t","content":"epsilon"}"#,
            r#"{"contentId":"f","type":"t","content":"dotted","metadata":{"a.b":1}}"#,
            r#"{"contentId":"a","type":"t","content":"alpha again"}"#,
            r#"{"contentId":"g","type":"t","content":""}"#,
            r#"["not", "an", "object"]"#,
        ],
    );
    let r = tidemark(
        &db,
        &["import", path.to_str().unwrap(), "--batch", "2"],
        None,
    );
    std::fs::remove_file(&path).unwrap();
    assert_eq!(r.code, 2, "bad lines must give exit 2: {}", r.stderr);
    for (line, why) in [
        (2, "not valid JSON: expected value (column 40)"),
        (5, "wrong shape: missing field `type`"),
        (7, "invalid `metadata.a.b`"),
        (9, "invalid `content`: must not be empty"),
        (10, "wrong shape"),
    ] {
        assert!(
            r.stderr.contains(&format!("line {line}: {why}")),
            "line {line} not reported: {}",
            r.stderr
        );
    }
    let summary: Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert_eq!(summary["written"], 4);
    assert_eq!(summary["lines"], 9, "blank lines are not counted");
    let bad: Vec<u64> = summary["bad"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["line"].as_u64().unwrap())
        .collect();
    assert_eq!(bad, vec![2, 5, 7, 9, 10]);

    let got = versions(&store).await;
    let expect: BTreeMap<String, (i64, String)> = [
        ("a", (2, "alpha again")),
        ("c", (1, "gamma")),
        ("e", (1, "epsilon")),
    ]
    .into_iter()
    .map(|(k, (v, c))| (k.to_string(), (v, c.to_string())))
    .collect();
    assert_eq!(got, expect);
    let entries = store.outbox().count_documents(doc! {}).await.unwrap();
    assert_eq!(entries, 4, "one entry per accepted line");
    let c = store.get("c").await.unwrap().unwrap();
    assert_eq!(
        c.metadata.get_document("m").unwrap().get_str("x").unwrap(),
        "y"
    );
    store.database().drop().await.unwrap();
}

#[tokio::test]
async fn stop_on_error_writes_nothing_of_the_bad_batch() {
    let (db, store) = new_db("cli_imp_stop").await;
    let path = write_jsonl(
        &db,
        &[
            r#"{"contentId":"1","type":"t","content":"one"}"#,
            r#"{"contentId":"2","type":"t","content":"two"}"#,
            r#"{"contentId":"3","type":"t","content":"three"}"#,
            r#"{"contentId":"4","type":"t","content":"four","metadata":{"$bad":1}}"#,
            r#"{"contentId":"5","type":"t","content":"five"}"#,
        ],
    );
    let r = tidemark(
        &db,
        &[
            "import",
            path.to_str().unwrap(),
            "--batch",
            "2",
            "--stop-on-error",
        ],
        None,
    );
    std::fs::remove_file(&path).unwrap();
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("line 4: invalid `metadata.$bad`"),
        "{}",
        r.stderr
    );
    let summary: Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert_eq!(summary["stoppedAtLine"], 4);
    assert_eq!(summary["written"], 2);
    assert_eq!(summary["discardedFromBatch"], 1);
    let got: Vec<String> = versions(&store).await.into_keys().collect();
    assert_eq!(
        got,
        vec!["1", "2"],
        "line 3 shares the bad batch; line 5 is after the stop"
    );
    assert_eq!(store.outbox().count_documents(doc! {}).await.unwrap(), 2);
    store.database().drop().await.unwrap();
}

#[tokio::test]
async fn clean_import_exits_zero_and_writes_every_line() {
    let (db, store) = new_db("cli_imp_ok").await;
    let lines: Vec<String> = (0..1500)
        .map(|i| format!(r#"{{"contentId":"doc-{i}","type":"bulk","content":"text {i}","metadata":{{"i":{i}}}}}"#))
        .collect();
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let path = write_jsonl(&db, &refs);
    let t = std::time::Instant::now();
    let r = tidemark(
        &db,
        &["import", path.to_str().unwrap(), "--batch", "400"],
        None,
    );
    std::fs::remove_file(&path).unwrap();
    eprintln!("imported 1500 lines in {:?}", t.elapsed());
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        store.documents().count_documents(doc! {}).await.unwrap(),
        1500
    );
    assert_eq!(
        store
            .outbox()
            .count_documents(doc! {"op": "upsert", "status": "pending"})
            .await
            .unwrap(),
        1500
    );
    let d = store.get("doc-777").await.unwrap().unwrap();
    assert_eq!(d.metadata.get_i64("i").unwrap(), 777);
    store.database().drop().await.unwrap();
}
