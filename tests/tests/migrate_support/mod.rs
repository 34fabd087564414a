//! The legacy "dual store" fixture of the migration tests, written the way the legacy system
//! wrote it: records with the real MongoDB driver (`insert_many`), vectors through Chroma's HTTP
//! API (l2 distance, legacy `id` as the Chroma id, the full text as the Chroma document), in a
//! unique MongoDB database and a unique Chroma database per test. Seven collections in five
//! shapes, ~3,000 records, every timestamp type, duplicates, images, records without text or id,
//! a doubled prefix, `Duck_` beside `duck_`, a `collection_aliases` entry, missing vectors,
//! orphan vectors, text mismatches, and one Chroma collection made by tidemark's own hashing
//! model (so vectors are reused). Also: the tidemark side of a test (config file, store, the
//! worker with a counting hash embedder), digests of both sides, and the binary runner.

#![allow(dead_code)]

use bson::{doc, oid::ObjectId, Bson, DateTime, Document};
use futures::TryStreamExt;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tidemark_chroma::{ChromaClient, ChromaOptions, FullRecord, Metadata};
use tidemark_core::config::EmbedderKind;
use tidemark_core::Config;
use tidemark_e2e::{chroma_url, mongo_client, mongodb_uri, tidemark_bin, unique_name};
use tidemark_embed::hash::HashEmbedder;
use tidemark_embed::{EmbedError, Embedder};
use tidemark_store::Store;

/// tidemark's embedder in these tests: `hash-16`.
pub const DIM: usize = 16;
pub const NOMIC_DIM: usize = 768;

/// What the fixture planted, for the assertions.
pub mod planted {
    pub const TRANSCRIPTS: u64 = 760;
    pub const TRANSCRIPT_DUPS: u64 = 10;
    pub const IMAGES: u64 = 15;
    pub const NO_ID: u64 = 3;
    pub const TRANSCRIPT_MISSING: u64 = 20;
    pub const TRANSCRIPT_ORPHANS: u64 = 4;
    pub const TRANSCRIPT_MISMATCH: u64 = 2;
    pub const AGENT: u64 = 700;
    pub const AGENT_DUPS: u64 = 5;
    pub const AGENT_EMPTY: u64 = 5;
    pub const AGENT_MISSING: u64 = 20;
    pub const AGENT_ORPHANS: u64 = 3;
    pub const AGENT_MISMATCH: u64 = 1;
    pub const DISCORD: u64 = 400;
    pub const DISCORD_VECTORS: u64 = 100;
    pub const SESSIONS_UPPER: u64 = 300;
    pub const SESSIONS_LOWER: u64 = 200;
    pub const RAW_CHAT: u64 = 500;
    pub const CARDS: u64 = 100;
    /// Legacy vectors tidemark can reuse: agent messages with a vector whose text matches.
    pub const REUSABLE: u64 = AGENT - AGENT_MISSING - AGENT_MISMATCH;
    /// Documents a complete migration writes (one per id, skips left out).
    pub const DOCUMENTS: u64 =
        TRANSCRIPTS + AGENT + DISCORD + SESSIONS_UPPER + SESSIONS_LOWER + RAW_CHAT + CARDS;
    pub const RECORDS: u64 =
        DOCUMENTS + TRANSCRIPT_DUPS + IMAGES + NO_ID + AGENT_DUPS + AGENT_EMPTY;
}

pub const AGENT_CHROMA: &str = "agent_messages__v2__hash__hash-16";

const T0: i64 = 1_716_570_192_345;

/// Every legacy time type, chosen by `i`.
fn time_of(i: u64) -> Bson {
    let ms = T0 + i as i64 * 60_000;
    let d = DateTime::from_millis(ms);
    let iso = d.try_to_rfc3339_string().unwrap();
    match i % 4 {
        0 => Bson::Int64(ms),
        1 => Bson::DateTime(d),
        2 => Bson::String(iso),
        _ => Bson::String(format!(
            "{}000+00:00",
            iso.replace('T', " ").trim_end_matches('Z')
        )),
    }
}

fn python_time(i: u64) -> String {
    let iso = DateTime::from_millis(T0 + i as i64 * 1000)
        .try_to_rfc3339_string()
        .unwrap();
    // 2024-05-24T17:03:12.345Z -> 2024-05-24 17:03:12.345000+00:00
    format!("{}000+00:00", iso.replace('T', " ").trim_end_matches('Z'))
}

/// A small deterministic "nomic" vector.
fn nomic(i: u64) -> Vec<f32> {
    (0..NOMIC_DIM)
        .map(|k| ((i as usize + k) % 7) as f32 * 0.5)
        .collect()
}

fn meta(v: Value) -> Option<Metadata> {
    v.as_object().cloned()
}

/// The legacy stores of one test.
pub struct Legacy {
    pub db_name: String,
    pub db: mongodb::Database,
    pub chroma: ChromaClient,
    pub chroma_db: String,
}

impl Legacy {
    pub async fn build() -> Legacy {
        let db_name = unique_name("msrc");
        let db = mongo_client().await.database(&db_name);
        let chroma_db = unique_name("mchr");
        let mut opts = ChromaOptions::new(&chroma_url());
        opts.database = chroma_db.clone();
        let chroma = ChromaClient::new(opts).unwrap();
        chroma
            .create_database(&chroma_db)
            .await
            .expect("create chroma database");
        let l = Legacy {
            db_name,
            db,
            chroma,
            chroma_db,
        };
        l.transcripts().await;
        l.agent_messages().await;
        l.discord().await;
        l.sessions().await;
        l.raw_chat().await;
        l.cards().await;
        l
    }

    async fn insert(&self, coll: &str, docs: Vec<Document>) {
        self.db
            .collection::<Document>(coll)
            .insert_many(docs)
            .await
            .expect("insert legacy records");
    }

    async fn vectors(&self, name: &str, coll_meta: Value, records: Vec<FullRecord>) {
        let c = self
            .chroma
            .create_collection_with(name, "l2", &meta(coll_meta).unwrap_or_default())
            .await
            .expect("create legacy chroma collection");
        self.chroma
            .add_with_documents(&c.id, &records)
            .await
            .expect("add legacy vectors");
    }

    async fn transcripts(&self) {
        let mut docs = Vec::new();
        let text = |i: u64| format!("transcript {i}: the agent said something useful");
        for i in 0..planted::TRANSCRIPTS {
            let t = time_of(i);
            docs.push(doc! {"_id": ObjectId::new(), "id": format!("t-{i}"), "text": text(i), "timestamp": t.clone(),
                "metadata": {"speaker": format!("s{}", i % 3), "vectorWriteSuccess": true,
                             "vectorWriteTimestamp": T0, "timestamp": t}});
        }
        for i in 0..planted::TRANSCRIPT_DUPS {
            // A re-insert after a failed vector write: newer time, corrected text.
            docs.push(doc! {"_id": ObjectId::new(), "id": format!("t-{i}"), "text": format!("{} (again)", text(i)),
                "timestamp": T0 + 10_000_000 + i as i64, "metadata": {"vectorWriteSuccess": false, "vectorWriteError": "timeout"}});
        }
        for i in 0..planted::IMAGES {
            docs.push(doc! {"_id": ObjectId::new(), "id": format!("img-{i}"), "text": format!("https://img.example/{i}.png"),
                "timestamp": T0, "metadata": {"type": "image"}});
        }
        for i in 0..planted::NO_ID {
            docs.push(doc! {"_id": ObjectId::new(), "text": format!("orphan text {i}"), "timestamp": T0, "metadata": {}});
        }
        self.insert("duck_transcripts", docs).await;
        let mut records = Vec::new();
        for i in 0..planted::TRANSCRIPTS - planted::TRANSCRIPT_MISSING {
            let mut document = if i < planted::TRANSCRIPT_DUPS {
                format!("{} (again)", text(i))
            } else {
                text(i)
            };
            if i == 100 || i == 101 {
                document = format!("an older text of transcript {i}");
            }
            records.push(FullRecord {
                id: format!("t-{i}"),
                document: Some(document),
                embedding: Some(nomic(i)),
                metadata: meta(json!({"timestamp": T0, "speaker": "s"})),
            });
        }
        for i in 0..planted::TRANSCRIPT_ORPHANS {
            records.push(FullRecord {
                id: format!("t-gone-{i}"),
                document: Some("deleted on one side".into()),
                embedding: Some(nomic(i)),
                metadata: None,
            });
        }
        let m = json!({"family": "duck_transcripts", "version": "v1", "driver": "ollama", "fn": "nomic-embed-text", "dims": 768});
        self.vectors("duck_transcripts", m, records).await;
    }

    async fn agent_messages(&self) {
        let text = |i: u64| format!("agent message {i} about the kanban board");
        let mut docs = Vec::new();
        for i in 0..planted::AGENT {
            let created = if i % 2 == 0 {
                Bson::Int64(T0 + i as i64)
            } else {
                Bson::DateTime(DateTime::from_millis(T0 + i as i64))
            };
            docs.push(doc! {"_id": ObjectId::new(), "id": format!("am-{i}"), "content": text(i), "createdAt": created,
                "metadata": {"agent": "duck", "vectorWriteSuccess": true}});
        }
        for i in 10..10 + planted::AGENT_DUPS {
            // Same record inserted again with the same time: the latest _id wins.
            docs.push(doc! {"_id": ObjectId::new(), "id": format!("am-{i}"), "content": text(i), "createdAt": T0 + i as i64,
                "metadata": {"agent": "duck", "vectorWriteSuccess": true}});
        }
        for i in 0..planted::AGENT_EMPTY {
            docs.push(doc! {"_id": ObjectId::new(), "id": format!("am-e-{i}"), "content": "", "createdAt": T0, "metadata": {}});
        }
        self.insert("duck_agent_messages", docs).await;
        self.db
            .collection::<Document>("collection_aliases")
            .insert_one(doc! {
            "_id": "duck_agent_messages", "target": AGENT_CHROMA,
            "embed": {"driver": "hash", "fn": "hash-16", "dims": 16, "version": "v2"}})
            .await
            .unwrap();
        let e = HashEmbedder::new(DIM);
        let mut records = Vec::new();
        for i in 0..planted::AGENT - planted::AGENT_MISSING {
            let document = if i == 5 {
                "agent message 5, as it read before an edit".to_string()
            } else {
                text(i)
            };
            records.push(FullRecord {
                id: format!("am-{i}"),
                embedding: Some(e.embed_one(&document)),
                document: Some(document),
                metadata: meta(json!({"createdAt": T0 + i as i64})),
            });
        }
        for i in 0..planted::AGENT_ORPHANS {
            records.push(FullRecord {
                id: format!("am-gone-{i}"),
                document: Some("gone".into()),
                embedding: Some(e.embed_one("gone")),
                metadata: None,
            });
        }
        let m = json!({"family": "agent_messages", "version": "v2", "driver": "hash", "fn": "hash-16", "dims": 16});
        self.vectors(AGENT_CHROMA, m, records).await;
    }

    async fn discord(&self) {
        let docs = (0..planted::DISCORD)
            .map(|i| doc! {"_id": ObjectId::new(), "id": format!("dd-{i}"), "text": format!("discord line {i}"),
                "timestamp": python_time(i), "metadata": {"channel": "general"}})
            .collect();
        self.insert("duck_duck_discord_messages", docs).await;
        let records = (0..planted::DISCORD_VECTORS)
            .map(|i| FullRecord {
                id: format!("dd-{i}"),
                document: Some(format!("discord line {i}")),
                embedding: Some(nomic(i)),
                metadata: None,
            })
            .collect();
        self.vectors(
            "duck_discord_messages",
            json!({"fn": "nomic-embed-text", "dims": 768}),
            records,
        )
        .await;
    }

    async fn sessions(&self) {
        let iso = |i: u64| {
            DateTime::from_millis(T0 + i as i64)
                .try_to_rfc3339_string()
                .unwrap()
        };
        let upper = (0..planted::SESSIONS_UPPER)
            .map(|i| doc! {"_id": ObjectId::new(), "id": format!("ss-{i}"), "text": format!("Session {i} state"), "updatedAt": iso(i), "metadata": {}})
            .collect();
        self.insert("Duck_sessionStore", upper).await;
        let lower: Vec<Document> = (0..planted::SESSIONS_LOWER)
            .map(|i| doc! {"_id": ObjectId::new(), "id": format!("ls-{i}"), "text": format!("session {i} state"), "updatedAt": iso(i), "metadata": {"k": i as i64}})
            .collect();
        self.insert("duck_sessionStore", lower).await;
        let e = HashEmbedder::new(DIM);
        let records = (0..planted::SESSIONS_LOWER)
            .map(|i| {
                let t = format!("session {i} state");
                FullRecord {
                    id: format!("ls-{i}"),
                    embedding: Some(e.embed_one(&t)),
                    document: Some(t),
                    metadata: None,
                }
            })
            .collect();
        // 16 dimensions like tidemark's embedder, but another model: never reusable.
        self.vectors(
            "duck_sessionStore",
            json!({"fn": "text-embedding-3-small", "dims": 16}),
            records,
        )
        .await;
    }

    async fn raw_chat(&self) {
        let docs = (0..planted::RAW_CHAT)
            .map(|i| doc! {"_id": ObjectId::new(), "id": 900_000_i64 + i as i64, "content": format!("raw chat {i}"),
                "created_at": python_time(i).replace("+00:00", ""), "author_name": format!("user{}", i % 5),
                "channel_name": "random", "embedding_status": {"2024-05-24": "done"}, "is_embedded": true, "has_meta_data": false})
            .collect();
        self.insert("discord_raw_messages", docs).await;
    }

    async fn cards(&self) {
        let docs = (0..planted::CARDS)
            .map(|i| doc! {"_id": ObjectId::new(), "id": format!("card-{i}"), "title": format!("Card {i}: do the thing"),
                "column": "todo", "link": format!("https://board.example/{i}")})
            .collect();
        self.insert("duck_kanban", docs).await;
    }

    /// A hash of every record of every collection and of every Chroma collection (ids,
    /// documents, metadata, embeddings, collection metadata), by name.
    pub async fn digest(&self) -> BTreeMap<String, String> {
        let mut out = mongo_digest(&self.db).await;
        for c in self.chroma.list_collections().await.unwrap() {
            let mut h = Sha256::new();
            let cm: BTreeMap<&String, String> =
                c.metadata.iter().map(|(k, v)| (k, v.to_string())).collect();
            h.update(format!("{cm:?}"));
            let mut all = Vec::new();
            loop {
                let page = self
                    .chroma
                    .get_full_page(&c.id, all.len(), 500, true)
                    .await
                    .unwrap();
                let n = page.len();
                all.extend(page);
                if n < 500 {
                    break;
                }
            }
            all.sort_by(|a, b| a.id.cmp(&b.id));
            for r in &all {
                // Canonical metadata: Chroma returns keys in storage order, and no metadata
                // as null or {} depending on whether the record was compacted yet.
                let meta: BTreeMap<&String, String> = r
                    .metadata
                    .iter()
                    .flatten()
                    .map(|(k, v)| (k, v.to_string()))
                    .collect();
                h.update(format!(
                    "{}|{:?}|{meta:?}|{:?}",
                    r.id, r.document, r.embedding
                ));
            }
            out.insert(format!("chroma:{}:{}", c.name, all.len()), hex(h));
        }
        out
    }

    pub async fn cleanup(&self) {
        let _ = self.db.drop().await;
        let _ = self.chroma.delete_database(&self.chroma_db).await;
    }
}

fn hex(h: Sha256) -> String {
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// A hash of every document of every collection of a database (in `_id` order), by name.
pub async fn mongo_digest(db: &mongodb::Database) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut names = db.list_collection_names().await.unwrap();
    names.sort();
    for n in names {
        let docs: Vec<Document> = db
            .collection::<Document>(&n)
            .find(doc! {})
            .sort(doc! {"_id": 1})
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        let mut h = Sha256::new();
        for d in &docs {
            h.update(bson::to_vec(d).unwrap());
        }
        out.insert(format!("mongo:{n}:{}", docs.len()), hex(h));
    }
    out
}

/// The hashing embedder, counting the texts it embeds.
pub struct CountingEmbedder {
    inner: HashEmbedder,
    pub texts: AtomicU64,
}

#[async_trait::async_trait]
impl Embedder for CountingEmbedder {
    fn model_id(&self) -> &str {
        self.inner.model_id()
    }
    fn dimension(&self) -> usize {
        self.inner.dimension()
    }
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.texts.fetch_add(texts.len() as u64, Ordering::SeqCst);
        self.inner.embed(texts).await
    }
}

/// The tidemark side of one test.
pub struct Tidemark {
    pub cfg: Config,
    pub store: Store,
    pub chroma: ChromaClient,
    pub config_path: PathBuf,
    pub embedder: Arc<CountingEmbedder>,
}

impl Tidemark {
    pub async fn new(prefix: &str) -> Tidemark {
        let mut cfg = Config::default();
        cfg.mongodb.uri = mongodb_uri();
        cfg.mongodb.database = unique_name(prefix);
        cfg.chroma.url = chroma_url();
        cfg.chroma.namespace = cfg.mongodb.database.clone();
        cfg.embedder.provider = EmbedderKind::Hash;
        cfg.embedder.dimension = DIM;
        cfg.worker.batch_size = 256;
        cfg.metrics.addr = String::new();
        cfg.log.level = "warn".into();
        let store = Store::new(mongo_client().await, &cfg.mongodb.database, &cfg);
        let chroma = ChromaClient::new(ChromaOptions::from_config(&cfg.chroma)).unwrap();
        let config_path = std::env::temp_dir().join(format!("{}.toml", cfg.mongodb.database));
        std::fs::write(&config_path, toml::to_string(&cfg).unwrap()).unwrap();
        let embedder = Arc::new(CountingEmbedder {
            inner: HashEmbedder::new(DIM),
            texts: AtomicU64::new(0),
        });
        Tidemark {
            cfg,
            store,
            chroma,
            config_path,
            embedder,
        }
    }

    pub fn collection(&self) -> String {
        tidemark_core::collection_name(&self.cfg.chroma.namespace, &format!("hash-{DIM}"))
    }

    /// Runs a worker until nothing is due.
    pub async fn drain(&self) -> tidemark_worker::BatchReport {
        let registry = prometheus::Registry::new();
        let w = tidemark_worker::Worker::new(
            self.cfg.clone(),
            self.store.clone(),
            self.chroma.clone(),
            self.embedder.clone(),
            &registry,
        )
        .unwrap();
        w.init().await.unwrap();
        w.drain().await.unwrap()
    }

    pub async fn vector_count(&self) -> u64 {
        match self
            .chroma
            .get_collection(&self.collection())
            .await
            .unwrap()
        {
            Some(c) => self.chroma.count(&c.id).await.unwrap(),
            None => 0,
        }
    }

    pub async fn count(&self, coll: &str) -> u64 {
        self.store
            .database()
            .collection::<Document>(coll)
            .count_documents(doc! {})
            .await
            .unwrap()
    }

    /// Runs the binary with this test's configuration; (exit code, stdout, stderr).
    pub fn cli(&self, args: &[&str]) -> (i32, String, String) {
        let out = self.command(args).output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    pub fn command(&self, args: &[&str]) -> std::process::Command {
        let bin = tidemark_bin();
        assert!(
            bin.exists(),
            "{} is missing: run `cargo build -p tidemark-cli` first",
            bin.display()
        );
        let mut c = std::process::Command::new(bin);
        c.arg("-c")
            .arg(&self.config_path)
            .args(args)
            .env_remove("TIDEMARK_CONFIG")
            .env("RUST_LOG", "warn");
        c
    }

    /// `cli` with `--json`, parsed; panics with the output when it is not JSON.
    pub fn cli_json(&self, args: &[&str]) -> (i32, Value) {
        let (code, out, err) = self.cli(args);
        let v = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {out}\nstderr: {err}"));
        (code, v)
    }

    pub async fn cleanup(&self) {
        let _ = self.store.database().drop().await;
        let _ = self.chroma.delete_collection(&self.collection()).await;
        let _ = std::fs::remove_file(&self.config_path);
    }
}

/// Writes the draft mapping of `legacy` (through `migrate inventory --write-mapping`) to a
/// temporary file and returns its path and the inventory JSON.
pub fn inventory(tm: &Tidemark, legacy: &Legacy) -> (PathBuf, Value) {
    let path = std::env::temp_dir().join(format!("{}-mapping.toml", legacy.db_name));
    let uri = mongodb_uri();
    let url = chroma_url();
    let (code, v) = tm.cli_json(&[
        "migrate",
        "inventory",
        "--source-uri",
        &uri,
        "--source-db",
        &legacy.db_name,
        "--chroma-url",
        &url,
        "--chroma-database",
        &legacy.chroma_db,
        "--migration-id",
        "m1",
        "--json",
        "--write-mapping",
        path.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "inventory: {v}");
    (path, v)
}

/// The inventory entry of one collection.
pub fn entry<'a>(inv: &'a Value, name: &str) -> &'a Value {
    inv["collections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["collection"] == name)
        .unwrap_or_else(|| panic!("no {name} in {inv}"))
}

/// A digest of tidemark's documents independent of ObjectIds and wall-clock fields.
pub async fn target_view(tm: &Tidemark) -> Vec<String> {
    let docs = tidemark_e2e::all_documents(&tm.store).await;
    docs.iter()
        .map(|d| {
            let m = &d.metadata;
            format!(
                "{}|{}|{}|{}|{}|{}|{m}",
                d.content_id,
                d.doc_type,
                d.content_hash,
                d.version,
                d.timestamp.timestamp_millis(),
                d.content
            )
        })
        .collect()
}
