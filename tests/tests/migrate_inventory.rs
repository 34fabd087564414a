//! `tidemark migrate inventory | plan | run --dry-run` against a legacy fixture in the real
//! services: the inventory finds every planted anomaly and writes a usable draft mapping; plan
//! rejects bad mappings naming the collection, the field and an example record; a dry run
//! leaves every legacy collection, every Chroma collection and the target untouched.

use crate::migrate_support;

use migrate_support::{entry, inventory, mongo_digest, planted, Legacy, Tidemark, AGENT_CHROMA};
use serde_json::Value;

fn kinds(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v["time_kinds"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    k.sort();
    k
}

fn check_inventory(inv: &Value) {
    let t = entry(inv, "duck_transcripts");
    let records =
        planted::TRANSCRIPTS + planted::TRANSCRIPT_DUPS + planted::IMAGES + planted::NO_ID;
    assert_eq!(t["records"], records);
    assert_eq!(t["roles"]["id"], "id");
    assert_eq!(t["roles"]["text"], "text");
    assert_eq!(t["roles"]["time"], "timestamp");
    assert_eq!(t["roles"]["metadata"], "metadata");
    assert_eq!(
        kinds(t),
        ["bson_date", "epoch_number", "iso8601", "python_str"],
        "{t}"
    );
    assert_eq!(t["duplicate_ids"], planted::TRANSCRIPT_DUPS);
    assert_eq!(t["skipped"]["image"], planted::IMAGES);
    assert_eq!(t["skipped"]["no_id"], planted::NO_ID);
    assert_eq!(t["chroma"]["chroma"], "duck_transcripts");
    assert_eq!(t["chroma"]["rule"], "same_name");
    assert_eq!(t["coverage"]["missing"], planted::TRANSCRIPT_MISSING);
    assert_eq!(t["coverage"]["orphans"], planted::TRANSCRIPT_ORPHANS);
    assert_eq!(t["coverage"]["text_mismatch"], planted::TRANSCRIPT_MISMATCH);
    assert_eq!(
        t["coverage"]["mismatch_examples"],
        serde_json::json!(["t-100", "t-101"])
    );
    assert_eq!(t["model"], "nomic-embed-text");
    assert_eq!(t["dimension"], 768);
    assert_eq!(t["space"], "l2");

    let a = entry(inv, "duck_agent_messages");
    assert_eq!(a["roles"]["text"], "content");
    assert_eq!(a["roles"]["time"], "createdAt");
    assert_eq!(a["duplicate_ids"], planted::AGENT_DUPS);
    assert_eq!(a["skipped"]["empty_text"], planted::AGENT_EMPTY);
    assert_eq!(a["chroma"]["chroma"], AGENT_CHROMA);
    assert_eq!(a["chroma"]["rule"], "alias");
    assert_eq!(a["coverage"]["missing"], planted::AGENT_MISSING);
    assert_eq!(a["coverage"]["orphans"], planted::AGENT_ORPHANS);
    assert_eq!(
        a["coverage"]["mismatch_examples"],
        serde_json::json!(["am-5"])
    );
    assert_eq!(a["model"], "hash-16");
    assert_eq!(a["dimension"], 16);

    let d = entry(inv, "duck_duck_discord_messages");
    assert_eq!(d["chroma"]["rule"], "double_prefix");
    assert_eq!(d["chroma"]["chroma"], "duck_discord_messages");
    assert_eq!(d["time_kinds"]["python_str"], planted::DISCORD);
    assert_eq!(d["coverage"]["with_vector"], planted::DISCORD_VECTORS);
    assert_eq!(
        d["coverage"]["missing"],
        planted::DISCORD - planted::DISCORD_VECTORS
    );

    let upper = entry(inv, "Duck_sessionStore");
    assert!(
        upper["chroma"].is_null(),
        "Duck_ must not match duck_: {upper}"
    );
    assert!(
        upper["notes"][0].as_str().unwrap().contains("only in case"),
        "{upper}"
    );
    let lower = entry(inv, "duck_sessionStore");
    assert_eq!(lower["chroma"]["rule"], "same_name");
    assert_eq!(lower["model"], "text-embedding-3-small");

    let raw = entry(inv, "discord_raw_messages");
    assert_eq!(raw["roles"]["text"], "content");
    assert_eq!(raw["roles"]["time"], "created_at");
    assert!(raw["roles"]["metadata"].is_null());
    assert_eq!(raw["time_kinds"]["python_str"], planted::RAW_CHAT);

    let k = entry(inv, "duck_kanban");
    assert_eq!(k["roles"]["text"], "title");
    assert!(k["roles"]["time"].is_null());
    assert_eq!(k["time_kinds"]["missing"], planted::CARDS);
    assert_eq!(inv["aliases"].as_array().unwrap().len(), 1);
    assert_eq!(
        inv["collections"].as_array().unwrap().len(),
        7,
        "collection_aliases is no record collection"
    );
}

fn edited(
    path: &std::path::Path,
    name: &str,
    edit: impl FnOnce(&mut toml::Table),
) -> std::path::PathBuf {
    let mut t: toml::Table = toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    edit(&mut t);
    let out = path.with_file_name(format!("{name}.toml"));
    std::fs::write(&out, toml::to_string(&t).unwrap()).unwrap();
    out
}

fn coll<'a>(t: &'a mut toml::Table, name: &str) -> &'a mut toml::Table {
    t.get_mut("collections")
        .unwrap()
        .as_table_mut()
        .unwrap()
        .get_mut(name)
        .unwrap()
        .as_table_mut()
        .unwrap()
}

fn plan_fails(tm: &Tidemark, mapping: &std::path::Path, expect: &[&str]) {
    let (code, out, err) = tm.cli(&["migrate", "plan", "--mapping", mapping.to_str().unwrap()]);
    assert_eq!(code, 1, "plan must fail: {out}{err}");
    for e in expect {
        assert!(err.contains(e), "`{e}` not in: {err}");
    }
}

fn check_plans(tm: &Tidemark, path: &std::path::Path) {
    let draft = std::fs::read_to_string(path).unwrap();
    assert!(
        !draft.contains("= \"?\""),
        "the fixture needs no decision: {draft}"
    );
    let (code, plan) = tm.cli_json(&[
        "migrate",
        "plan",
        "--mapping",
        path.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(code, 0, "{plan}");
    let by = |n: &str| {
        plan["collections"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["collection"] == n)
            .unwrap()
            .clone()
    };
    let t = by("duck_transcripts");
    assert_eq!(t["migrate"], planted::TRANSCRIPTS);
    assert_eq!(t["merge"], planted::TRANSCRIPT_DUPS);
    assert_eq!(t["merges"][0]["reason"], "newest_timestamp");
    assert_eq!(
        by("duck_agent_messages")["merges"][0]["reason"],
        "latest_id"
    );
    assert_eq!(by("duck_agent_messages")["reuse_vectors"], true);
    assert_eq!(
        t["reuse_vectors"], false,
        "nomic vectors are not tidemark's model"
    );

    let bad = edited(path, "bad-text", |t| {
        coll(t, "duck_kanban").insert("text_field".into(), "body".into());
    });
    plan_fails(
        tm,
        &bad,
        &["duck_kanban", "`body`", "occurs in no record", "card-"],
    );
    let bad = edited(path, "bad-time", |t| {
        coll(t, "duck_kanban").insert("time_field".into(), "link".into());
    });
    plan_fails(
        tm,
        &bad,
        &["duck_kanban", "`link`", "unknown time format", "id `card-"],
    );
    let bad = edited(path, "bad-type", |t| {
        coll(t, "discord_raw_messages").insert("text_field".into(), "id".into());
    });
    plan_fails(
        tm,
        &bad,
        &[
            "discord_raw_messages",
            "`id`",
            "not a string in 500 of 500",
            "id `900000`",
        ],
    );
    let bad = edited(path, "bad-model", |t| {
        coll(t, "duck_sessionStore").insert("reuse_vectors".into(), true.into());
    });
    plan_fails(
        tm,
        &bad,
        &["duck_sessionStore", "text-embedding-3-small", "hash-16"],
    );
    let bad = edited(path, "bad-coll", |t| {
        let k = coll(t, "duck_kanban").clone();
        t["collections"]
            .as_table_mut()
            .unwrap()
            .insert("duck_nope".into(), toml::Value::Table(k));
    });
    plan_fails(tm, &bad, &["duck_nope", "no such collection"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inventory_plan_and_dry_run() {
    let legacy = Legacy::build().await;
    let tm = Tidemark::new("mig_inv").await;
    let before = legacy.digest().await;
    assert_eq!(
        before.len(),
        7 + 1 + 4,
        "7 record collections, the aliases, 4 Chroma collections: {before:?}"
    );

    let (path, inv) = inventory(&tm, &legacy);
    check_inventory(&inv);
    check_plans(&tm, &path);

    let (code, r) = tm.cli_json(&[
        "migrate",
        "run",
        "--mapping",
        path.to_str().unwrap(),
        "--dry-run",
        "--json",
    ]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["dry_run"], true);
    assert_eq!(r["totals"]["created"], planted::DOCUMENTS);
    assert_eq!(r["totals"]["records"], planted::RECORDS);
    assert_eq!(r["totals"]["vectors_reused"], planted::REUSABLE);
    assert_eq!(
        r["totals"]["vectors_to_embed"],
        planted::DOCUMENTS - planted::REUSABLE
    );

    assert_eq!(legacy.digest().await, before, "the legacy side changed");
    let target = mongo_digest(tm.store.database()).await;
    assert!(
        target.is_empty(),
        "a dry run wrote to the target: {target:?}"
    );
    let dbs = tidemark_e2e::mongo_client()
        .await
        .list_database_names()
        .await
        .unwrap();
    assert!(!dbs.contains(&tm.cfg.mongodb.database));
    assert!(tm
        .chroma
        .get_collection(&tm.collection())
        .await
        .unwrap()
        .is_none());
    legacy.cleanup().await;
    tm.cleanup().await;
}
