//! Extra, short-lived servers for one test: a SecantusDB (with test commands, a small oplog,
//! `--auth` with SCRAM users, TLS) or a Chroma, each on a free loopback port with its own
//! temporary data folder. A server can be killed with SIGKILL and restarted on the same port
//! and data folder (crash tests); dropping it kills it and removes the folder.
//!
//! The binaries come from the Python environment `scripts/services` installs: `TIDEMARK_VENV`
//! when set, else `<repo>/.venv` (the same rule as `scripts/services`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The Python virtual environment holding `secantusd-py` and `chroma`.
pub fn venv() -> PathBuf {
    std::env::var("TIDEMARK_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|_| crate::repo_root().join(".venv"))
}

/// A free TCP port on 127.0.0.1 (bound once, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

/// `tidemark embed serve`'s server, in process, with the hashing embedder of `dimension` and
/// `limits`, on a free loopback port; it runs until the test ends. Returns its address.
pub async fn hash_embed_server(
    dimension: usize,
    limits: tidemark_embed::server_limits::ServerLimits,
) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the embedding server");
    let addr = listener.local_addr().expect("embedding server address");
    tokio::spawn(tidemark_embed::server::serve_limited(
        std::sync::Arc::new(tidemark_embed::hash::HashEmbedder::new(dimension)),
        listener,
        limits,
        std::future::pending::<()>(),
    ));
    addr
}

/// A fresh folder under the system temp dir, removed by whoever owns it.
pub fn temp_dir(prefix: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(crate::unique_name(prefix));
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// Waits until something accepts TCP connections on `port`.
pub async fn wait_port(port: u16, timeout: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Server certificate files for `--tls-*` (see [`crate::tls::TestCa`]).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

/// A SCRAM user created before the server restarts with `--auth`.
#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    pub password: String,
    /// `(role, database)` pairs, e.g. `("readWrite", "mydb")`.
    pub roles: Vec<(String, String)>,
    /// Custom roles to create first: `(name, database, privileges as BSON)`.
    pub custom_roles: Vec<(String, String, bson::Array)>,
}

/// How to start a SecantusDB.
#[derive(Debug, Clone, Default)]
pub struct MongoOptions {
    pub test_commands: bool,
    pub oplog_max_entries: Option<u64>,
    pub oplog_retention_seconds: Option<u64>,
    /// Users to create; the server then runs with `--auth`.
    pub users: Vec<User>,
    pub tls: Option<TlsFiles>,
}

impl MongoOptions {
    /// Test commands on (`configureFailPoint`), nothing else.
    pub fn fail_points() -> MongoOptions {
        MongoOptions {
            test_commands: true,
            ..MongoOptions::default()
        }
    }
}

/// A SecantusDB of one test.
pub struct MongoServer {
    child: Option<Child>,
    pub port: u16,
    pub dir: PathBuf,
    opts: MongoOptions,
    auth: bool,
}

impl MongoServer {
    /// Starts the server and waits until it accepts a `hello`; creates `opts.users` (then
    /// restarts with `--auth`).
    pub async fn start(opts: MongoOptions) -> MongoServer {
        let dir = temp_dir("mongo");
        let mut s = MongoServer {
            child: None,
            port: free_port(),
            dir,
            opts,
            auth: false,
        };
        s.spawn();
        s.wait_ready().await;
        if !s.opts.users.is_empty() {
            s.create_users().await;
            s.stop_gracefully();
            s.auth = true;
            s.spawn();
            s.wait_ready().await;
        }
        s
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("secantusd.log")
    }

    fn spawn(&mut self) {
        let bin = venv().join("bin/secantusd-py");
        assert!(
            bin.exists(),
            "{} missing: run `scripts/services up` first",
            bin.display()
        );
        let mut cmd = Command::new(bin);
        cmd.args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .arg("--storage-path")
            .arg(self.dir.join("data"))
            .args(["--log-level", "WARNING"])
            // A transaction's commit is on disk when acknowledged, as mongod's journal makes it
            // with `j: true` (this server ignores `j` on commitTransaction without the flag):
            // the kill -9 tests check that no acknowledged write is lost.
            .arg("--sync-on-commit");
        if self.opts.test_commands {
            cmd.arg("--enable-test-commands");
        }
        if let Some(n) = self.opts.oplog_max_entries {
            cmd.args(["--oplog-max-entries", &n.to_string()]);
        }
        if let Some(s) = self.opts.oplog_retention_seconds {
            cmd.args(["--oplog-retention-seconds", &s.to_string()]);
        }
        if self.auth {
            cmd.arg("--auth");
        }
        if let Some(t) = &self.opts.tls {
            cmd.arg("--tls-cert-file").arg(&t.cert);
            cmd.arg("--tls-key-file").arg(&t.key);
            cmd.arg("--tls-ca-file").arg(&t.ca);
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open secantusd.log");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("dup log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start secantusd-py");
        self.child = Some(child);
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    panic!(
                        "secantusd-py exited at start ({status}); log:\n{}",
                        self.log_tail(20)
                    );
                }
            }
            if wait_port(self.port, Duration::from_millis(200)).await && self.hello_ok().await {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "secantusd-py on port {} not ready in 60 s; log:\n{}",
                self.port,
                self.log_tail(20)
            );
        }
    }

    async fn hello_ok(&self) -> bool {
        let Ok(client) = mongodb::Client::with_uri_str(self.admin_uri()).await else {
            return false;
        };
        let ok = client
            .database("admin")
            .run_command(bson::doc! {"hello": 1})
            .await
            .is_ok_and(|h| h.get_bool("isWritablePrimary").unwrap_or(false));
        client.shutdown().immediate(true).await;
        ok
    }

    /// The last `n` lines of the server's log.
    pub fn log_tail(&self, n: usize) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// The URI without credentials (with the TLS options when TLS is on), with `appName`.
    pub fn uri_with_app(&self, app: &str) -> String {
        format!("{}&appName={app}", self.uri())
    }

    /// The URI without credentials (with the TLS options when TLS is on). The heartbeat is
    /// the driver's minimum, so a NotWritablePrimary answer (the driver then rediscovers the
    /// primary) costs half a second instead of the default 10 s.
    pub fn uri(&self) -> String {
        let mut uri = format!(
            "mongodb://127.0.0.1:{}/?replicaSet=secantus&serverSelectionTimeoutMS=5000&heartbeatFrequencyMS=500",
            self.port
        );
        if let Some(t) = &self.opts.tls {
            uri.push_str(&format!("&tls=true&tlsCAFile={}", t.ca.display()));
        }
        uri
    }

    /// The URI as `user:password`, authenticating against `admin`.
    pub fn uri_as(&self, user: &str, password: &str) -> String {
        self.uri()
            .replacen("mongodb://", &format!("mongodb://{user}:{password}@"), 1)
            + "&authSource=admin"
    }

    /// A URI with full rights: the first user's when auth is on.
    fn admin_uri(&self) -> String {
        match (self.auth, self.opts.users.first()) {
            (true, Some(u)) => self.uri_as(&u.name, &u.password),
            _ => self.uri(),
        }
    }

    /// A client with full rights (the first user when auth is on, which should be an admin).
    pub async fn client(&self) -> mongodb::Client {
        mongodb::Client::with_uri_str(self.admin_uri())
            .await
            .expect("test server URI parses")
    }

    async fn create_users(&self) {
        let client = self.client().await;
        let admin = client.database("admin");
        for u in &self.opts.users {
            for (name, db, privileges) in &u.custom_roles {
                client
                    .database(db)
                    .run_command(bson::doc! {
                        "createRole": name, "privileges": privileges.clone(), "roles": []
                    })
                    .await
                    .unwrap_or_else(|e| panic!("createRole {name}: {e}"));
            }
            let roles: bson::Array = u
                .roles
                .iter()
                .map(|(r, db)| bson::Bson::Document(bson::doc! {"role": r, "db": db}))
                .collect();
            admin
                .run_command(bson::doc! {
                    "createUser": &u.name, "pwd": &u.password, "roles": roles
                })
                .await
                .unwrap_or_else(|e| panic!("createUser {}: {e}", u.name));
        }
        client.shutdown().await;
    }

    fn stop_gracefully(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SIGTERM, then SIGKILL after 10 s.
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGKILL, as a crash.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts again on the same port and data folder (after `kill9`).
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "restart of a running server");
        self.spawn();
        self.wait_ready().await;
    }

    /// Whether the process is running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for MongoServer {
    fn drop(&mut self) {
        self.kill9();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Chroma server of one test.
pub struct ChromaServer {
    child: Option<Child>,
    pub port: u16,
    pub dir: PathBuf,
}

impl ChromaServer {
    /// Starts `chroma run` on a free port and waits for its heartbeat.
    pub async fn start() -> ChromaServer {
        let mut s = ChromaServer {
            child: None,
            port: free_port(),
            dir: temp_dir("chroma"),
        };
        s.spawn();
        s.wait_ready().await;
        s
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let bin = venv().join("bin/chroma");
        assert!(
            bin.exists(),
            "{} missing: run `scripts/services up` first",
            bin.display()
        );
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("chroma.log"))
            .expect("open chroma.log");
        let child = Command::new(bin)
            .arg("run")
            .arg("--path")
            .arg(self.dir.join("data"))
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("dup log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start chroma");
        self.child = Some(child);
    }

    async fn wait_ready(&mut self) {
        let url = format!("{}/api/v2/heartbeat", self.url());
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if reqwest::get(&url)
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("chroma on port {} not ready in 60 s", self.port);
    }

    /// SIGKILL, as a crash.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts again on the same port and data folder (after `kill9`).
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "restart of a running server");
        self.spawn();
        self.wait_ready().await;
    }
}

impl Drop for ChromaServer {
    fn drop(&mut self) {
        self.kill9();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Reads a file, or an empty string.
pub fn read_or_empty(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}
