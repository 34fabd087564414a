//! The torture run's world: its own SecantusDB (test commands, a small oplog), its own Chroma
//! behind the fault proxy, two `tidemark worker` processes, and a writer whose MongoDB client
//! is named `tm-writer` so fail points can target it.

use crate::ledger::Ledger;
use rand::Rng;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tidemark_chroma::{ChromaClient, ChromaOptions};
use tidemark_core::config::EmbedderKind;
use tidemark_core::Config;
use tidemark_e2e::procs::{self, WorkerProc};
use tidemark_e2e::proxy::FaultProxy;
use tidemark_e2e::servers::{temp_dir, ChromaServer, MongoOptions, MongoServer};
use tidemark_store::{NewDocument, Store};

pub const WRITER: &str = "tm-writer";
/// Oplog entries kept by the server: a worker down for a few hundred writes loses its token.
pub const OPLOG_ENTRIES: u64 = 1500;

pub fn worker_app(i: usize) -> String {
    format!("tm-worker-{i}")
}

pub struct World {
    pub mongo: MongoServer,
    pub chroma: ChromaServer,
    pub proxy: FaultProxy,
    pub admin: mongodb::Client,
    pub cfg: Config,
    pub writer: Store,
    pub check: Store,
    pub chroma_client: ChromaClient,
    pub workers: Vec<Option<WorkerProc>>,
    pub dir: PathBuf,
    pub ledger: Ledger,
}

fn named(cfg: &Config, app: &str) -> Config {
    let mut c = cfg.clone();
    c.mongodb.uri = format!("{}&appName={app}", c.mongodb.uri);
    c
}

impl World {
    pub async fn start() -> World {
        let mongo = MongoServer::start(MongoOptions {
            test_commands: true,
            oplog_max_entries: Some(OPLOG_ENTRIES),
            ..MongoOptions::default()
        })
        .await;
        let chroma = ChromaServer::start().await;
        let proxy = FaultProxy::start(&chroma.url()).await;
        let mut cfg = Config::default();
        cfg.mongodb.uri = mongo.uri();
        cfg.mongodb.database = "torture".into();
        cfg.chroma.url = proxy.url();
        cfg.chroma.namespace = "torture".into();
        cfg.chroma.timeout = Duration::from_secs(2);
        cfg.embedder.provider = EmbedderKind::Hash;
        cfg.embedder.dimension = 64;
        cfg.worker.lease = Duration::from_secs(3);
        cfg.worker.batch_wait = Duration::from_millis(20);
        cfg.worker.backoff_base = Duration::from_millis(100);
        cfg.worker.backoff_max = Duration::from_secs(2);
        cfg.worker.sweep_interval = Duration::from_secs(1);
        cfg.worker.shutdown_deadline = Duration::from_secs(5);
        cfg.worker.max_attempts = 10_000;
        cfg.metrics.addr = String::new();
        let admin = mongo.client().await;
        let check = Store::new(admin.clone(), &cfg.mongodb.database, &cfg);
        check.ensure_schema().await.expect("ensure_schema");
        let writer = Store::connect(&named(&cfg, WRITER))
            .await
            .expect("connect the writer");
        let chroma_client =
            ChromaClient::new(ChromaOptions::new(&chroma.url())).expect("chroma client");
        let mut w = World {
            mongo,
            chroma,
            proxy,
            admin,
            cfg,
            writer,
            check,
            chroma_client,
            workers: vec![None, None],
            dir: temp_dir("torture"),
            ledger: Ledger::default(),
        };
        w.start_worker(0);
        w.start_worker(1);
        w
    }

    pub fn collection(&self) -> String {
        tidemark_core::collection_name(&self.cfg.chroma.namespace, "hash-64")
    }

    pub fn start_worker(&mut self, i: usize) {
        if self.workers[i].is_some() {
            return;
        }
        let config = procs::write_config(
            &named(&self.cfg, &worker_app(i)),
            &self.dir.join(worker_app(i)),
        );
        self.workers[i] = Some(WorkerProc::spawn(&config, "warn,tidemark_worker=info"));
    }

    pub fn kill_worker(&mut self, i: usize) {
        if let Some(mut w) = self.workers[i].take() {
            w.kill9();
        }
    }

    /// SIGTERM; returns how long the exit took (killed after 30 s).
    pub async fn stop_worker(&mut self, i: usize) -> Duration {
        let Some(mut w) = self.workers[i].take() else {
            return Duration::ZERO;
        };
        let start = Instant::now();
        w.sigterm();
        if w.wait_exit(Duration::from_secs(30)).await.is_none() {
            eprintln!("torture: worker {i} ignored SIGTERM for 30 s; killing it");
            w.kill9();
        }
        start.elapsed()
    }

    /// One random write of the workload; returns how many documents it wrote.
    pub async fn write_once(&mut self, rng: &mut impl Rng) -> usize {
        let roll = rng.random_range(0..100);
        let salt: u32 = rng.random();
        let text = |id: &str| format!("{id} torture text {salt}");
        if roll < 45 || self.ledger.pick_live(rng).is_none() {
            let id = self.ledger.new_id();
            let d = NewDocument::new(&id, "t", text(&id));
            match self.writer.put(d).await {
                Ok(o) => self.ledger.put_acked(&id, o.version),
                Err(_) => self.ledger.failed(&id),
            }
            1
        } else if roll < 70 {
            let id = self.ledger.pick_live(rng).expect("live id");
            let d = NewDocument::new(&id, "t", text(&id));
            match self.writer.put(d).await {
                Ok(o) => self.ledger.put_acked(&id, o.version),
                Err(_) => self.ledger.failed(&id),
            }
            1
        } else if roll < 80 {
            let id = self.ledger.pick_live(rng).expect("live id");
            match self.writer.delete(&id).await {
                Ok(Some(o)) => self.ledger.delete_acked(&id, o.version),
                Ok(None) => {}
                Err(_) => self.ledger.failed(&id),
            }
            1
        } else {
            let n = rng.random_range(5..40);
            let ids: Vec<String> = (0..n).map(|_| self.ledger.new_id()).collect();
            let docs: Vec<_> = ids
                .iter()
                .map(|id| NewDocument::new(id, "t", text(id)))
                .collect();
            match self.writer.put_many(docs).await {
                Ok(outs) => {
                    for o in outs {
                        self.ledger.put_acked(&o.content_id, o.version);
                    }
                }
                Err(_) => ids.iter().for_each(|id| self.ledger.failed(id)),
            }
            n
        }
    }

    /// Writes `n` new documents in batches (used while the workers are down).
    pub async fn write_bulk(&mut self, n: usize, rng: &mut impl Rng) {
        for _ in 0..n.div_ceil(100) {
            let ids: Vec<String> = (0..100).map(|_| self.ledger.new_id()).collect();
            let docs: Vec<_> = ids
                .iter()
                .map(|id| NewDocument::new(id, "t", format!("{id} bulk {}", rng.random::<u32>())))
                .collect();
            match self.writer.put_many(docs).await {
                Ok(outs) => outs
                    .into_iter()
                    .for_each(|o| self.ledger.put_acked(&o.content_id, o.version)),
                Err(_) => ids.iter().for_each(|id| self.ledger.failed(id)),
            }
        }
    }

    pub fn worker_logs(&self) -> String {
        (0..2)
            .filter_map(|i| {
                let p = self.dir.join(worker_app(i)).join("worker.log");
                std::fs::read_to_string(p).ok()
            })
            .map(|t| {
                let lines: Vec<&str> = t.lines().collect();
                lines[lines.len().saturating_sub(15)..].join("\n")
            })
            .collect::<Vec<_>>()
            .join("\n---\n")
    }
}
