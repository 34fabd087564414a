//! Running the real `tidemark` binary against a test's own configuration: one-shot commands
//! (`put`, `import`, ...) with their output, and the worker daemon as a child process that can
//! be signalled (SIGTERM, SIGKILL) and timed until it exits. The dev services' `MONGODB_URI`
//! and `CHROMA_URL` are removed from the child's environment, so the config file decides.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};
use tidemark_core::Config;

/// Writes `cfg` as `tidemark.toml` into `dir` and returns its path.
pub fn write_config(cfg: &Config, dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).expect("config dir");
    let path = dir.join("tidemark.toml");
    std::fs::write(&path, toml::to_string(cfg).expect("config serialises")).expect("write config");
    path
}

fn base_command(config: &Path) -> Command {
    let bin = crate::tidemark_bin();
    assert!(
        bin.exists(),
        "{} missing: run `cargo build -p tidemark-cli` first",
        bin.display()
    );
    let mut cmd = Command::new(bin);
    cmd.arg("--config")
        .arg(config)
        .env_remove("MONGODB_URI")
        .env_remove("CHROMA_URL")
        .env_remove("RUST_LOG")
        .env("TIDEMARK_EMBEDDER_ONNX_RUNTIME", crate::onnx_runtime());
    cmd
}

/// Runs `tidemark --config CONFIG ARGS...` to completion, with `envs` added.
pub fn run(config: &Path, args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = base_command(config);
    cmd.args(args).stdin(Stdio::null());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().expect("run tidemark")
}

/// Stdout and stderr of an output, for messages.
pub fn text(out: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A running `tidemark worker`; killed when dropped.
pub struct WorkerProc {
    child: Option<Child>,
    pub log: PathBuf,
}

impl WorkerProc {
    /// Starts `tidemark --config CONFIG worker`; its stderr (logs at `rust_log`) goes to
    /// `worker.log` beside the config (appended, so restarts keep one log).
    pub fn spawn(config: &Path, rust_log: &str) -> WorkerProc {
        let log = config.with_file_name("worker.log");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("open worker.log");
        let child = base_command(config)
            .arg("worker")
            .env("RUST_LOG", rust_log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(file))
            .spawn()
            .expect("start tidemark worker");
        WorkerProc {
            child: Some(child),
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("worker running").id()
    }

    /// The worker's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `n` log lines.
    pub fn log_tail(&self, n: usize) -> String {
        let t = self.log_text();
        let lines: Vec<&str> = t.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Waits until the log contains `needle`.
    pub async fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if self.log_text().contains(needle) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    /// Sends SIGTERM.
    pub fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
    }

    /// Whether the process has exited (without waiting).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Waits up to `timeout` for the exit; returns the status and how long it took, or `None`
    /// (the worker is then still running).
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<(ExitStatus, Duration)> {
        let start = Instant::now();
        loop {
            if let Some(s) = self.exited() {
                return Some((s, start.elapsed()));
            }
            if start.elapsed() > timeout {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL, as a crash.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for WorkerProc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Reads one sample from a Prometheus text page at `http://ADDR/metrics`: the line starting
/// with `series` (a metric name, with labels if any, e.g. `tidemark_x_total{reason="a"}`).
pub async fn metric(addr: &str, series: &str) -> Option<f64> {
    let body = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    body.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Sums every sample of a metric name (all label sets).
pub async fn metric_sum(addr: &str, name: &str) -> f64 {
    let Ok(resp) = reqwest::get(format!("http://{addr}/metrics")).await else {
        return 0.0;
    };
    let body = resp.text().await.unwrap_or_default();
    body.lines()
        .filter(|l| {
            l.starts_with(name) && matches!(l.as_bytes().get(name.len()), Some(b' ' | b'{'))
        })
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

/// A running `tidemark embed serve` (the local model over the OpenAI-compatible API); killed
/// when dropped.
pub struct EmbedServer {
    child: Child,
    pub port: u16,
}

impl EmbedServer {
    /// Starts it on a free port with the model in [`crate::model_dir`]; waits for `/healthz`.
    pub async fn start(dir: &Path) -> EmbedServer {
        let config = write_config(&Config::default(), dir);
        let port = crate::servers::free_port();
        let child = base_command(&config)
            .args(["embed", "serve", "--model-dir"])
            .arg(crate::model_dir())
            .args(["--addr", &format!("127.0.0.1:{port}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tidemark embed serve");
        let s = EmbedServer { child, port };
        let url = format!("{}/healthz", s.url());
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(60) {
            if reqwest::get(&url)
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("tidemark embed serve did not answer /healthz within 60 s");
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for EmbedServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
