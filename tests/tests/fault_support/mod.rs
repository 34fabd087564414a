//! Shared set-up of the fault tests: a SecantusDB of the test's own (test commands on, so
//! `failCommand` can be armed without touching other tests), a unique database and Chroma
//! namespace on the dev Chroma (or a given one), the process under test named by `appName`
//! in its URI, and the final check that Chroma equals MongoDB.

#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;
use tidemark_chroma::{ChromaClient, ChromaOptions};
use tidemark_core::config::EmbedderKind;
use tidemark_core::Config;
use tidemark_e2e::consistency::{self, Report};
use tidemark_e2e::procs;
use tidemark_e2e::servers::{temp_dir, MongoOptions, MongoServer};
use tidemark_e2e::{chroma_url, unique_name};
use tidemark_store::{NewDocument, Store};

/// The `appName` of the writer under test.
pub const WRITER: &str = "tm-writer";
/// The `appName` of the worker under test.
pub const WORKER: &str = "tm-worker";

/// One fault test's world.
pub struct FaultEnv {
    pub server: MongoServer,
    /// Full-rights client without an appName: fail points never hit it.
    pub admin: mongodb::Client,
    /// Configuration of the processes under test (URI without appName; see `cfg_for`).
    pub cfg: Config,
    /// Store whose client is named [`WRITER`].
    pub store: Store,
    /// Store for checks (no appName).
    pub check_store: Store,
    pub chroma: ChromaClient,
    pub dir: PathBuf,
}

/// Fast worker settings; hashing embedder (64 dimensions); no metrics listener.
pub fn base_config(prefix: &str, uri: &str, chroma: &str) -> Config {
    let mut cfg = Config::default();
    cfg.mongodb.uri = uri.to_string();
    cfg.mongodb.database = unique_name(prefix);
    cfg.chroma.url = chroma.to_string();
    cfg.chroma.namespace = cfg.mongodb.database.clone();
    cfg.chroma.timeout = Duration::from_secs(5);
    cfg.embedder.provider = EmbedderKind::Hash;
    cfg.embedder.dimension = 64;
    cfg.worker.batch_size = 64;
    cfg.worker.batch_wait = Duration::from_millis(20);
    cfg.worker.lease = Duration::from_secs(3);
    cfg.worker.backoff_base = Duration::from_millis(100);
    cfg.worker.backoff_max = Duration::from_secs(1);
    cfg.worker.sweep_interval = Duration::from_millis(500);
    cfg.worker.shutdown_deadline = Duration::from_secs(5);
    cfg.worker.max_attempts = 1000;
    cfg.metrics.addr = String::new();
    cfg.log.level = "info".into();
    cfg
}

impl FaultEnv {
    /// Own SecantusDB with test commands; the dev Chroma.
    pub async fn new(prefix: &str) -> FaultEnv {
        FaultEnv::with(prefix, MongoOptions::fail_points(), &chroma_url()).await
    }

    pub async fn with(prefix: &str, opts: MongoOptions, chroma: &str) -> FaultEnv {
        let server = MongoServer::start(opts).await;
        let cfg = base_config(prefix, &server.uri(), chroma);
        let admin = server.client().await;
        let check_store = Store::new(admin.clone(), &cfg.mongodb.database, &cfg);
        check_store.ensure_schema().await.expect("ensure_schema");
        let store = Store::connect(&cfg_named(&cfg, WRITER))
            .await
            .expect("connect writer");
        let chroma = ChromaClient::new(ChromaOptions::from_config(&cfg.chroma)).unwrap();
        let dir = temp_dir(prefix);
        FaultEnv {
            server,
            admin,
            cfg,
            store,
            check_store,
            chroma,
            dir,
        }
    }

    /// The Chroma collection of the hashing embedder.
    pub fn collection(&self) -> String {
        tidemark_core::collection_name(&self.cfg.chroma.namespace, "hash-64")
    }

    /// Writes the config of a process named `app` and returns its path.
    pub fn config_file(&self, app: &str) -> PathBuf {
        let dir = self.dir.join(app);
        procs::write_config(&cfg_named(&self.cfg, app), &dir)
    }

    /// Starts `tidemark worker` named [`WORKER`] with metrics on a free port; returns the
    /// process and the metrics address.
    pub fn spawn_worker(&self) -> (procs::WorkerProc, String) {
        self.spawn_worker_with(|_| {})
    }

    /// Like `spawn_worker`, with the configuration adjusted by `tweak` first.
    pub fn spawn_worker_with(
        &self,
        tweak: impl FnOnce(&mut Config),
    ) -> (procs::WorkerProc, String) {
        let mut cfg = cfg_named(&self.cfg, WORKER);
        let addr = format!("127.0.0.1:{}", tidemark_e2e::servers::free_port());
        cfg.metrics.addr = addr.clone();
        tweak(&mut cfg);
        let config = procs::write_config(&cfg, &self.dir.join(WORKER));
        let w = procs::WorkerProc::spawn(&config, "warn,tidemark_worker=info");
        (w, addr)
    }

    /// Writes `n` documents `{prefix}{i}` through the unfaulted check store.
    pub async fn put_docs(&self, prefix: &str, n: usize, text: &str) {
        let docs: Vec<_> = (0..n)
            .map(|i| NewDocument::new(format!("{prefix}{i}"), "t", format!("{prefix}{i} {text}")))
            .collect();
        self.check_store.put_many(docs).await.expect("put_many");
    }

    /// Runs `tidemark worker --once` (no fail point on it) until everything due is done.
    pub fn drain_once(&self) {
        let config = self.config_file("drainer");
        let out = procs::run(&config, &["worker", "--once"], &[]);
        assert!(out.status.success(), "worker --once: {}", procs::text(&out));
    }

    /// The consistency report now.
    pub async fn report(&self) -> Report {
        consistency::check(&self.check_store, &self.chroma, &self.collection())
            .await
            .expect("consistency check")
    }

    /// Waits until Chroma equals MongoDB; panics with the report otherwise.
    pub async fn assert_consistent_within(&self, timeout: Duration) -> Duration {
        let (r, took) = consistency::wait_consistent(
            &self.check_store,
            &self.chroma,
            &self.collection(),
            timeout,
        )
        .await;
        assert!(r.is_consistent(), "Chroma differs from MongoDB: {r:?}");
        took
    }

    /// Every acknowledged (contentId, version) has exactly one outbox entry, and no others exist.
    pub async fn assert_exactly_once(&self, acked: &[(String, i64)]) {
        let problems = consistency::acknowledged_exactly_once(&self.check_store, acked)
            .await
            .expect("read outbox");
        assert!(
            problems.is_empty(),
            "writes not committed exactly once: {problems:?}"
        );
    }

    pub async fn cleanup(self) {
        let _ = self.chroma.delete_collection(&self.collection()).await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Passes when no fail point is left for `app`'s `commands`: a probe client with that
/// appName (and no retries of its own) runs one of them.
pub async fn assert_consumed(env: &FaultEnv, app: &str, commands: &[&str], what: &str) {
    let uri = format!(
        "{}&appName={app}&retryWrites=false&retryReads=false",
        env.server.uri()
    );
    let client = mongodb::Client::with_uri_str(uri).await.unwrap();
    let coll = client
        .database(&env.cfg.mongodb.database)
        .collection::<bson::Document>("fault_probe");
    let probe = [
        "commitTransaction",
        "insert",
        "update",
        "delete",
        "find",
        "findAndModify",
        "aggregate",
    ]
    .into_iter()
    .find(|c| commands.contains(c))
    .expect("a probe exists for one of the commands");
    let filter = bson::doc! {"p": 1};
    let r = match probe {
        "commitTransaction" => {
            let mut s = client.start_session().await.unwrap();
            s.start_transaction().await.unwrap();
            coll.insert_one(filter.clone())
                .session(&mut s)
                .await
                .unwrap();
            s.commit_transaction().await
        }
        "insert" => coll.insert_one(filter).await.map(|_| ()),
        "update" => coll
            .update_one(filter, bson::doc! {"$set": {"q": 1}})
            .await
            .map(|_| ()),
        "delete" => coll.delete_one(filter).await.map(|_| ()),
        "find" => coll.find_one(filter).await.map(|_| ()),
        "findAndModify" => coll
            .find_one_and_update(filter, bson::doc! {"$set": {"q": 1}})
            .await
            .map(|_| ()),
        _ => coll
            .aggregate([bson::doc! {"$match": filter}])
            .await
            .map(|_| ()),
    };
    assert!(
        r.is_ok(),
        "{what}: the fail point on {commands:?} was not used up by {app} (probe: {:?})",
        r.err()
    );
}

/// `cfg` with `appName=app` in its MongoDB URI.
pub fn cfg_named(cfg: &Config, app: &str) -> Config {
    let mut c = cfg.clone();
    let sep = if c.mongodb.uri.contains('?') {
        '&'
    } else {
        '?'
    };
    c.mongodb.uri = format!("{}{sep}appName={app}", c.mongodb.uri);
    c
}
