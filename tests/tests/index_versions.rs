//! Index versions with the real binaries and services (and, in a second test, a switch from
//! the hashing embedder to the local model during an import): while an import runs and a worker
//! writes the active index (hashing embedder, 64 dimensions), a new index is created from a
//! second configuration (32 dimensions) and built; the worker picks it up by itself, both
//! indexes end consistent with MongoDB, activation is refused while the build is incomplete,
//! switches what `search` (and a running `tidemark serve`) reads, and activating the old
//! index back is immediate; an
//! interrupted build and a worker killed with -9 during it resume; a worker whose configuration
//! disagrees with the active index refuses to start, naming both; a retired index is dropped.

use crate::worker_support;

use std::path::Path;
use std::time::Duration;
use tidemark_core::config::EmbedderKind;
use tidemark_e2e::procs::{self, WorkerProc};
use tidemark_embed::hash::HashEmbedder;
use tidemark_embed::Embedder;
use tidemark_store::NewDocument;
use worker_support::{assert_drained, test_config, wait_until, Env, HashPair, TOPICS};

fn cli(config: &Path, args: &[&str]) -> (i32, String, String) {
    let out = procs::run(config, args, &[]);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn ok(config: &Path, args: &[&str]) -> String {
    let (code, out, err) = cli(config, args);
    assert_eq!(code, 0, "{args:?}: {out}\n{err}");
    out
}

async fn wait_drained(env: &Env, what: &str) {
    assert_drained(&env.store, Duration::from_secs(90), what).await;
}

/// Text of note `i`: three words picked by its digits make every text's hashed vector distinct
/// even in 32 dimensions (duplicate vectors make Chroma's HNSW search miss exact matches).
fn text(i: usize) -> String {
    const W: [&str; 10] = [
        "amber", "basalt", "cedar", "delta", "ember", "fjord", "granite", "heron", "inlet",
        "juniper",
    ];
    format!(
        "note {i}: the harbour master logs tide number {i} at dawn, {} {} {}",
        W[i % 10],
        W[(i / 10) % 10],
        W[(i / 100) % 10]
    )
}

/// An import in the background: `batches` calls of `put_many` of `size` notes (`n0`, `n1`,
/// ...), `pause` apart.
fn import_notes(
    store: &tidemark_store::Store,
    batches: usize,
    size: usize,
    pause: Duration,
) -> tokio::task::JoinHandle<()> {
    let store = store.clone();
    tokio::spawn(async move {
        for batch in 0..batches {
            let docs: Vec<_> = (batch * size..(batch + 1) * size)
                .map(|i| NewDocument::new(format!("n{i}"), "note", text(i)))
                .collect();
            store.put_many(docs).await.unwrap();
            tokio::time::sleep(pause).await;
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_verify_activate_roll_back_and_drop_without_downtime() {
    let mut a = test_config("ix_versions");
    a.embedder.provider = EmbedderKind::Hash;
    a.embedder.dimension = 64;
    a.worker.lease = Duration::from_secs(3);
    let port = tidemark_e2e::servers::free_port();
    a.serve.addr = format!("127.0.0.1:{port}");
    let mut b = a.clone();
    b.embedder.dimension = 32;
    let env = Env::with_config(a.clone()).await;
    let dir = tidemark_e2e::servers::temp_dir("ix_versions");
    let cfg_a = procs::write_config(&a, &dir.join("a"));
    let cfg_b = procs::write_config(&b, &dir.join("b"));

    let mut worker = WorkerProc::spawn(&cfg_a, "warn,tidemark_worker=info");
    // An import runs throughout the creation and the build.
    let import = import_notes(&env.store, 20, 10, Duration::from_millis(200));
    // The first worker records its configuration as the active index `main`.
    let indexes = tidemark_store::indexes::Indexes::new(env.store.database());
    let recorded = wait_until(Duration::from_secs(30), || async {
        indexes.active().await.unwrap().is_some()
    })
    .await;
    assert!(
        recorded,
        "the worker did not record `main`\n{}",
        worker.log_tail(10)
    );
    assert_eq!(
        indexes.active().await.unwrap().unwrap().embedder.dimension,
        64
    );

    // A worker with the other configuration refuses while `main` (64 dimensions) is active.
    let (code, _, err) = cli(&cfg_b, &["worker", "--once"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("disagrees with the active index `main`")
            && err.contains("dimension 64 vs 32"),
        "{err}"
    );

    let created = ok(&cfg_b, &["index", "create", "v2"]);
    assert!(created.contains("index `v2` created"), "{created}");
    let (code, _, err) = cli(&cfg_b, &["index", "activate", "v2"]);
    assert_ne!(code, 0);
    assert!(err.contains("still building"), "{err}");

    // An interrupted build (two batches), a worker killed with -9, then the build resumed.
    ok(
        &cfg_b,
        &[
            "index",
            "build",
            "v2",
            "--batch-size",
            "20",
            "--max-batches",
            "2",
        ],
    );
    worker.kill9();
    let mut worker = WorkerProc::spawn(&cfg_a, "warn,tidemark_worker=info");
    import.await.unwrap();
    let built = ok(&cfg_b, &["index", "build", "v2", "--batch-size", "20"]);
    assert!(built.contains("build complete"), "{built}");
    wait_drained(&env, "after the build").await;

    // Both indexes equal MongoDB.
    ok(&cfg_a, &["verify"]);
    ok(&cfg_a, &["verify", "--index", "v2"]);
    let list = ok(&cfg_a, &["index", "list", "--json"]);
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    let vectors = |name: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|i| i["name"] == name)
            .map(|i| i["vectors"].as_u64().unwrap())
    };
    assert_eq!(vectors("main"), Some(200), "{list}");
    assert_eq!(vectors("v2"), Some(200), "{list}");

    // A server started before the switch follows it: a 32-dimension vector is refused by
    // `main` (64) and answered once v2 is active.
    let serve = Serve::start(&cfg_a, &dir).await;
    let v32 = HashEmbedder::new(32)
        .embed(&[text(7)])
        .await
        .unwrap()
        .remove(0);
    assert_eq!(serve.search_vector(&v32).await.0, 400);

    // Activation switches search: with a 64-dimension query the 32-dimension index could not
    // even be searched, so a search that finds n7 with config A reads v2's embedder and vectors.
    let act = ok(&cfg_b, &["index", "activate", "v2"]);
    assert!(act.contains("`main` retired"), "{act}");
    // (Chroma's HNSW search is approximate: the exact match is asked among the first five.)
    let found = ok(&cfg_a, &["search", &text(7), "-k", "5", "--json"]);
    assert!(found.contains("\"n7\""), "{found}");
    let status = ok(&cfg_b, &["status"]);
    assert!(status.contains("v2 (active, hash-32)"), "{status}");
    let followed = wait_until(Duration::from_secs(15), || async {
        let (code, body) = serve.search_vector(&v32).await;
        code == 200 && body.contains("\"n7\"")
    })
    .await;
    assert!(followed, "serve still searches `main`:\n{}", serve.log());
    // The old worker keeps running (it writes both); a new one with config A now refuses.
    let (code, _, err) = cli(&cfg_a, &["worker", "--once"]);
    assert_ne!(code, 0);
    assert!(err.contains("active index `v2`"), "{err}");

    // Writes after the switch (and after the worker re-read the definitions) reach both
    // indexes; rolling back is immediate (no verify).
    tokio::time::sleep(Duration::from_secs(3)).await;
    env.store
        .put(NewDocument::new("after", "note", text(999)))
        .await
        .unwrap();
    wait_drained(&env, "after the switch").await;
    let started = std::time::Instant::now();
    let back = ok(&cfg_a, &["index", "activate", "main"]);
    assert!(back.contains("`v2` retired"), "{back}");
    assert!(started.elapsed() < Duration::from_secs(5));
    ok(&cfg_a, &["verify"]);
    ok(&cfg_a, &["verify", "--index", "v2"]);
    let back_in_serve = wait_until(Duration::from_secs(15), || async {
        serve.search_vector(&v32).await.0 == 400
    })
    .await;
    assert!(
        back_in_serve,
        "serve did not follow the rollback:\n{}",
        serve.log()
    );
    drop(serve);

    // The retired index is dropped; the worker stops writing it.
    ok(&cfg_a, &["index", "drop", "v2"]);
    let list = ok(&cfg_a, &["index", "list"]);
    assert!(!list.contains("v2"), "{list}");
    let v2 = format!("{}__hash-32__v2", a.chroma.namespace);
    assert!(env.chroma.get_collection(&v2).await.unwrap().is_none());
    worker.sigterm();
    let exit = worker.wait_exit(Duration::from_secs(15)).await;
    assert!(
        exit.is_some_and(|(s, _)| s.success()),
        "{}",
        worker.log_tail(20)
    );
    env.cleanup().await;
}

/// `tidemark serve` with a configuration (loopback, no token), killed when dropped.
struct Serve {
    child: std::process::Child,
    base: String,
    log: std::path::PathBuf,
}

impl Serve {
    async fn start(config: &Path, dir: &Path) -> Serve {
        let text = std::fs::read_to_string(config).unwrap();
        let cfg: tidemark_core::Config = toml::from_str(&text).unwrap();
        let log = dir.join("serve.log");
        let child = std::process::Command::new(tidemark_e2e::tidemark_bin())
            .args(["--config", config.to_str().unwrap(), "serve"])
            .env_remove("MONGODB_URI")
            .env_remove("CHROMA_URL")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("run tidemark serve (cargo build -p tidemark-cli first)");
        let serve = Serve {
            child,
            base: format!("http://{}", cfg.serve.addr),
            log,
        };
        let up = wait_until(Duration::from_secs(30), || async {
            reqwest::get(format!("{}/healthz", serve.base))
                .await
                .is_ok()
        })
        .await;
        assert!(up, "serve did not start:\n{}", serve.log());
        serve
    }

    /// Status and body of a vector search for 5 hits.
    async fn search_vector(&self, v: &[f32]) -> (u16, String) {
        let r = reqwest::Client::new()
            .post(format!("{}/v1/search", self.base))
            .json(&serde_json::json!({"vector": v, "k": 5}))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switch_from_hashing_to_the_local_model_during_an_import() {
    let mut a = test_config("ix_local");
    a.embedder.provider = EmbedderKind::Hash;
    a.embedder.dimension = 64;
    // Where the workers (running with this configuration) find the new index's model.
    a.embedder.model_dir = tidemark_e2e::model_dir();
    a.embedder.onnx_runtime = tidemark_e2e::onnx_runtime();
    let mut b = a.clone();
    tidemark_e2e::use_local_model(&mut b.embedder);
    let env = Env::with_config(a.clone()).await;
    let dir = tidemark_e2e::servers::temp_dir("ix_local");
    let cfg_a = procs::write_config(&a, &dir.join("a"));
    let cfg_b = procs::write_config(&b, &dir.join("b"));
    for (id, t) in TOPICS {
        env.store
            .put(NewDocument::new(id, "note", t))
            .await
            .unwrap();
    }
    let mut worker = WorkerProc::spawn(&cfg_a, "warn,tidemark_worker=info");
    wait_drained(&env, "the first documents").await;
    let query = "how do I change my password";
    let before = ok(&cfg_a, &["search", query, "-k", "6", "--json"]);

    // The new index is created and built while an import goes on.
    ok(&cfg_b, &["index", "create", "v2"]);
    let import = import_notes(&env.store, 6, 5, Duration::from_millis(300));
    let built = ok(&cfg_b, &["index", "build", "v2", "--batch-size", "10"]);
    assert!(built.contains("build complete"), "{built}");
    import.await.unwrap();
    wait_drained(&env, "after the build").await;
    ok(&cfg_a, &["verify"]);
    ok(&cfg_a, &["verify", "--index", "v2"]);

    // After the activation search embeds with the local model and reads its index: the
    // paraphrase finds the login text, and the answer differs from the hashing one.
    ok(&cfg_b, &["index", "activate", "v2"]);
    let after = ok(&cfg_b, &["search", query, "-k", "6", "--json"]);
    let first: serde_json::Value =
        serde_json::from_str(after.lines().next().expect("a hit")).unwrap();
    assert_eq!(first["contentId"], "login", "{after}");
    assert_ne!(before, after);
    let status = ok(&cfg_b, &["status"]);
    assert!(status.contains("v2 (active, all-MiniLM-L6-v2)"), "{status}");
    worker.sigterm();
    let _ = worker.wait_exit(Duration::from_secs(15)).await;
    env.cleanup().await;
}

/// A build's entries are for the building index only: the worker fills it and leaves the
/// active index alone (no read, no write there), so drift planted in the active index before
/// the build is still there after it, for `verify` / `repair` to find, while a live write
/// during the build reaches both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_writes_only_the_building_index() {
    let HashPair {
        env,
        a,
        cfg_a,
        cfg_b,
    } = HashPair::new("ix_only").await;
    let docs: Vec<_> = (0..30)
        .map(|i| NewDocument::new(format!("n{i}"), "note", text(i)))
        .collect();
    let put = env.store.put_many(docs).await.unwrap();
    let mut worker = WorkerProc::spawn(&cfg_a, "warn,tidemark_worker=info");
    wait_drained(&env, "the corpus").await;

    // Drift in `main`: one vector gone behind the worker's back.
    let gone = put[3].document_id.to_hex();
    let main = env.collection_id().await;
    env.chroma
        .delete(&main, std::slice::from_ref(&gone))
        .await
        .unwrap();

    ok(&cfg_b, &["index", "create", "v2"]);
    let built = ok(&cfg_b, &["index", "build", "v2", "--batch-size", "10"]);
    assert!(built.contains("build complete"), "{built}");
    env.store
        .put(NewDocument::new("live", "note", text(500)))
        .await
        .unwrap();
    wait_drained(&env, "after the build").await;

    // One entry for v2 per document from the build; the live write reached v2 with its own
    // entry (v2 was as quick as main, so nothing was handed on: see the next test).
    let build_entries =
        tidemark_e2e::outbox_entries(&env.store, bson::doc! {"indexes": "v2"}).await;
    let live = build_entries.iter().filter(|e| e.content_id == "live");
    assert_eq!(
        (build_entries.len(), live.count()),
        (30, 0),
        "{build_entries:?}"
    );
    let v2 = format!("{}__hash-32__v2", a.chroma.namespace);
    let v2 = env.chroma.get_collection(&v2).await.unwrap().unwrap();
    assert_eq!(
        env.chroma.count(&v2.id).await.unwrap(),
        31,
        "v2 holds every document"
    );
    let in_main = env.vectors().await;
    assert_eq!(
        in_main.len(),
        30,
        "main: the live write, not the build's documents"
    );
    assert!(!in_main.contains_key(&gone), "the build wrote to main");
    ok(&cfg_a, &["verify", "--index", "v2"]);
    let (code, out, err) = cli(&cfg_a, &["verify"]);
    assert_eq!(
        code, 2,
        "verify of main finds the planted drift: {out}\n{err}"
    );
    worker.sigterm();
    let _ = worker.wait_exit(Duration::from_secs(15)).await;
    env.cleanup().await;
}

/// While an index is being built, an application's write whose part for the building index
/// fails or lags is done (visible in search) once the active index has it: that part is handed
/// to the build's queue as an entry of its own. Here the building index's embedding API fails
/// (a fault proxy answers 503) while a write is made with `VectorVisible`: the write is visible
/// in `main` within a second or so, the handed-on entry retries until the API is back, then v2
/// has the document too, and nothing is dead. (Before hand-offs, the live write failed with v2
/// and the put timed out here.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_write_does_not_wait_for_the_building_index() {
    let mut a = test_config("ix_handoff");
    a.embedder.provider = EmbedderKind::Hash;
    a.embedder.dimension = 64;
    let mut env = Env::with_config(a.clone()).await;
    env.model = "hash-64".into();
    let limits = tidemark_embed::server_limits::ServerLimits::default();
    let upstream = tidemark_e2e::servers::hash_embed_server(32, limits).await;
    let upstream = format!("http://{upstream}");
    let proxy = tidemark_e2e::proxy::FaultProxy::start(&upstream).await;
    let mut b = a.clone();
    b.embedder.provider = EmbedderKind::Openai;
    b.embedder.base_url = proxy.url();
    b.embedder.model = "hash-32".into();
    b.embedder.dimension = 32;
    let dir = tidemark_e2e::servers::temp_dir("ix_handoff");
    let cfg_a = procs::write_config(&a, &dir.join("a"));
    let cfg_b = procs::write_config(&b, &dir.join("b"));
    let mut worker = WorkerProc::spawn(&cfg_a, "warn,tidemark_worker=info");
    env.store
        .put(NewDocument::new("first", "note", text(1)))
        .await
        .unwrap();
    wait_drained(&env, "the first document").await;

    // (`index create` tries the new embedder once, so the API fails only after it.)
    ok(&cfg_b, &["index", "create", "v2"]);
    proxy.always(
        "/v1/embeddings",
        tidemark_e2e::proxy::Fault::status(503, "model loading"),
    );
    let lane = worker
        .wait_log("writing a further index", Duration::from_secs(15))
        .await;
    assert!(
        lane,
        "the worker did not pick up v2\n{}",
        worker.log_tail(10)
    );
    let visible = tidemark_store::Consistency::VectorVisible {
        timeout: Duration::from_secs(10),
    };
    let put = env
        .store
        .put_with(NewDocument::new("live", "note", text(2)), visible)
        .await
        .expect("a live write waits for the building index");
    assert!(env.vectors().await.contains_key(&put.document_id.to_hex()));
    let handed = bson::doc! {"indexes": "v2", "documentId": put.document_id};
    let retried = wait_until(Duration::from_secs(15), || async {
        let e = tidemark_e2e::outbox_entries(&env.store, handed.clone()).await;
        e.len() == 1 && e[0].attempts >= 1 && e[0].last_error.is_some()
    })
    .await;
    let entries = tidemark_e2e::outbox_entries(&env.store, handed.clone()).await;
    assert!(retried, "the handed-on entry did not retry: {entries:?}");
    assert_eq!(
        entries[0].handoff_of,
        Some(put.outbox_id),
        "it names the live entry"
    );
    assert!(
        entries[0].last_error.as_deref().unwrap().contains("503"),
        "{entries:?}"
    );

    proxy.clear();
    wait_drained(&env, "after the API came back").await;
    let v2 = format!("{}__hash-32__v2", a.chroma.namespace);
    let v2 = env.chroma.get_collection(&v2).await.unwrap().unwrap();
    let got = env
        .chroma
        .get(&v2.id, &[put.document_id.to_hex()], false)
        .await
        .unwrap();
    assert_eq!(got.len(), 1, "v2 has the live write");
    let built = ok(&cfg_b, &["index", "build", "v2"]);
    assert!(built.contains("build complete"), "{built}");
    wait_drained(&env, "after the build").await;
    ok(&cfg_a, &["verify", "--index", "v2"]);
    assert_eq!(worker_support::count_status(&env.store, "dead").await, 0);
    worker.sigterm();
    let _ = worker.wait_exit(Duration::from_secs(15)).await;
    env.cleanup().await;
}
