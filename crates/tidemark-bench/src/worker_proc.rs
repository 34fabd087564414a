//! The worker under test, as a separate process: the `tidemark worker` binary configured by
//! environment variables for one benchmark database and Chroma namespace. Gives its peak
//! resident memory (/proc/<pid>/status VmHWM), its Prometheus histograms (time per stage),
//! and a graceful stop (SIGTERM).

use crate::{BenchError, Ctx};
use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// Which embedder the worker uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    Hash,
    Local,
}

/// A running worker process (killed if dropped while running).
pub struct WorkerProc {
    child: Child,
    pub pid: u32,
    pub metrics_addr: SocketAddr,
    /// Wall-clock time of the spawn, milliseconds since the Unix epoch (compare with `doneAt`).
    pub spawned_at_ms: i64,
    pub spawned: Instant,
    pub log: PathBuf,
}

fn free_port() -> Result<SocketAddr, BenchError> {
    let l = TcpListener::bind("127.0.0.1:0")
        .map_err(|e| BenchError::Setup(format!("no free loopback port: {e}")))?;
    l.local_addr()
        .map_err(|e| BenchError::Setup(format!("no free loopback port: {e}")))
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl WorkerProc {
    /// Starts `tidemark worker` on the database and Chroma namespace `<name>_<part>`.
    pub fn spawn(ctx: &Ctx, part: &str, provider: Provider) -> Result<WorkerProc, BenchError> {
        WorkerProc::spawn_with(ctx, part, provider, &[])
    }

    /// Like `spawn`, with more `TIDEMARK_*` settings in the environment.
    pub fn spawn_with(
        ctx: &Ctx,
        part: &str,
        provider: Provider,
        env: &[(&str, &str)],
    ) -> Result<WorkerProc, BenchError> {
        let addr = free_port()?;
        let name = ctx.part(part);
        let log = std::env::temp_dir().join(format!("{name}-worker.log"));
        let log_file = std::fs::File::create(&log)
            .map_err(|e| BenchError::Setup(format!("cannot create {}: {e}", log.display())))?;
        let mut cmd = Command::new(&ctx.worker_bin);
        if let Some(cfg) = &ctx.config_file {
            cmd.arg("--config").arg(cfg);
        }
        let c = &ctx.counts;
        cmd.arg("worker")
            .env("MONGODB_URI", &ctx.cfg.mongodb.uri)
            .env("CHROMA_URL", &ctx.cfg.chroma.url)
            .env("TIDEMARK_MONGODB_DATABASE", &name)
            .env("TIDEMARK_CHROMA_NAMESPACE", &name)
            .env("TIDEMARK_METRICS_ADDR", addr.to_string())
            .env("TIDEMARK_WORKER_BATCH_SIZE", c.batch_size.to_string())
            .env("TIDEMARK_LOG_LEVEL", "warn")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log_file))
            .kill_on_drop(true);
        match provider {
            Provider::Hash => {
                cmd.env("TIDEMARK_EMBEDDER_PROVIDER", "hash")
                    .env("TIDEMARK_EMBEDDER_DIMENSION", c.hash_dimension.to_string());
            }
            Provider::Local => {
                let e = &ctx.cfg.embedder;
                cmd.env("TIDEMARK_EMBEDDER_PROVIDER", "local")
                    .env("TIDEMARK_EMBEDDER_MODEL_DIR", e.model_dir.as_os_str())
                    .env("TIDEMARK_EMBEDDER_ONNX_RUNTIME", e.onnx_runtime.as_os_str())
                    .env("TIDEMARK_EMBEDDER_ENGINE", e.engine.name());
            }
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let spawned_at_ms = now_ms();
        let spawned = Instant::now();
        let child = cmd.spawn().map_err(|e| {
            BenchError::Worker(format!("cannot start {}: {e}", ctx.worker_bin.display()))
        })?;
        let pid = child.id().unwrap_or(0);
        tracing::info!(pid, %addr, part, "worker process started");
        Ok(WorkerProc {
            child,
            pid,
            metrics_addr: addr,
            spawned_at_ms,
            spawned,
            log,
        })
    }

    /// Fails with the tail of the worker's log if the process has exited.
    pub fn check_alive(&mut self) -> Result<(), BenchError> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(BenchError::Worker(format!(
                "the worker exited early ({status}); last log lines:\n{}",
                self.log_tail()
            ))),
            Err(e) => Err(BenchError::Worker(format!("cannot poll the worker: {e}"))),
        }
    }

    /// The last lines of the worker's log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// Waits until `/readyz` answers 200 (the worker connected and is ready to claim).
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<Duration, BenchError> {
        let url = format!("http://{}/readyz", self.metrics_addr);
        let http = reqwest::Client::new();
        let deadline = Instant::now() + timeout;
        loop {
            self.check_alive()?;
            if let Ok(r) = http.get(&url).timeout(Duration::from_secs(1)).send().await {
                if r.status().is_success() {
                    return Ok(self.spawned.elapsed());
                }
            }
            if Instant::now() > deadline {
                return Err(BenchError::Worker(format!(
                    "not ready after {timeout:?}; last log lines:\n{}",
                    self.log_tail()
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Peak resident memory so far, KiB (VmHWM).
    pub fn peak_rss_kib(&self) -> Option<u64> {
        proc_status_kib(self.pid, "VmHWM:")
    }

    /// The worker's `/metrics` text.
    pub async fn metrics(&self) -> Result<String, BenchError> {
        let url = format!("http://{}/metrics", self.metrics_addr);
        let r = reqwest::get(&url)
            .await
            .map_err(|e| BenchError::Worker(format!("GET {url}: {e}")))?;
        r.text()
            .await
            .map_err(|e| BenchError::Worker(format!("GET {url}: {e}")))
    }

    /// SIGTERM, then waits for the exit (killed after `deadline`). Returns how long it took.
    /// Exit 0, or 3 (batches abandoned at the shutdown deadline), is a stop; anything else is
    /// an error naming the log.
    pub async fn stop(mut self, deadline: Duration) -> Result<Duration, BenchError> {
        let start = Instant::now();
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid.to_string())
            .status()
            .await;
        match tokio::time::timeout(deadline, self.child.wait()).await {
            // 3: stopped within its deadline but abandoned batches in hand (a drain cut at the
            // measurement window, e.g. mid-way through long documents); the outbox keeps them.
            Ok(Ok(status)) if status.success() || status.code() == Some(3) => {
                let text = std::fs::read_to_string(&self.log).unwrap_or_default();
                match warnings(&text) {
                    0 => {
                        let _ = std::fs::remove_file(&self.log);
                    }
                    n => tracing::warn!(log = %self.log.display(), warnings = n,
                        "the worker logged warnings or errors; its log is kept"),
                }
                Ok(start.elapsed())
            }
            Ok(Ok(status)) => Err(BenchError::Worker(format!(
                "the worker exited with {status} on SIGTERM; log {}",
                self.log.display()
            ))),
            Ok(Err(e)) => Err(BenchError::Worker(format!("waiting for the worker: {e}"))),
            Err(_) => {
                let _ = self.child.kill().await;
                Err(BenchError::Worker(format!(
                    "the worker did not stop within {deadline:?} of SIGTERM; killed"
                )))
            }
        }
    }
}

/// Entries this worker process finished (done or dead; not retries), from
/// `tidemark_entries_processed_total`.
pub fn processed_total(metrics: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("tidemark_entries_processed_total{") && !l.contains("\"retry\""))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// A `kB` field of /proc/<pid>/status.
pub fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The value of one series (a name with its labels, e.g. `x_total{index="v2"}`) in a
/// Prometheus text page; 0 when it is not there.
pub fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .filter_map(|l| l.strip_prefix(series))
        .find_map(|rest| rest.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Sum and count of every `*_seconds` histogram in a Prometheus text exposition, keyed by
/// metric name with labels (e.g. `tidemark_vector_write_seconds{op="upsert"}`).
pub fn histogram_totals(text: &str) -> BTreeMap<String, (f64, u64)> {
    let mut out: BTreeMap<String, (f64, u64)> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (n, format!("{{{l}")),
            None => (series, String::new()),
        };
        if let Some(base) = name.strip_suffix("_seconds_sum") {
            out.entry(format!("{base}_seconds{labels}")).or_default().0 = value;
        } else if let Some(base) = name.strip_suffix("_seconds_count") {
            out.entry(format!("{base}_seconds{labels}")).or_default().1 = value as u64;
        }
    }
    out
}

/// How many lines of a worker's log are warnings or errors (a stop keeps such a log, so a
/// figure that went wrong, such as a retried upsert in the lag's tail, can be looked into).
fn warnings(log: &str) -> usize {
    log.lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_sums_and_counts() {
        let text = "# HELP x\n\
            tidemark_embed_seconds_bucket{le=\"0.1\"} 3\n\
            tidemark_embed_seconds_sum 1.5\n\
            tidemark_embed_seconds_count 4\n\
            tidemark_vector_write_seconds_sum{op=\"upsert\"} 2.25\n\
            tidemark_vector_write_seconds_count{op=\"upsert\"} 9\n\
            tidemark_outbox_pending 0\n";
        let h = histogram_totals(text);
        assert_eq!(h["tidemark_embed_seconds"], (1.5, 4));
        assert_eq!(h["tidemark_vector_write_seconds{op=\"upsert\"}"], (2.25, 9));
        assert_eq!(h.len(), 2);
    }

    #[test]
    fn a_sample_is_found_by_its_whole_series() {
        let text = "# HELP x\n\
            tidemark_left_to_build_total{index=\"v2\"} 12\n\
            tidemark_left_to_build_total{index=\"v22\"} 5\n";
        assert_eq!(
            sample(text, "tidemark_left_to_build_total{index=\"v2\"}"),
            12.0
        );
        assert_eq!(
            sample(text, "tidemark_left_to_build_total{index=\"v3\"}"),
            0.0
        );
        assert_eq!(
            sample(text, "tidemark_left_to_build_total"),
            0.0,
            "labels are part of it"
        );
    }

    #[test]
    fn counters_are_read_by_exact_name() {
        let text = "# HELP x\ntidemark_claim_blocked_total 12\ntidemark_claim_blocked_total_x 3\n";
        assert_eq!(sample(text, "tidemark_claim_blocked_total"), 12.0);
        assert_eq!(sample(text, "tidemark_missing"), 0.0);
    }

    #[test]
    fn processed_counts_results_but_not_retries() {
        let text = "tidemark_entries_processed_total{result=\"indexed\"} 60\n\
            tidemark_entries_processed_total{result=\"superseded\"} 4\n\
            tidemark_entries_processed_total{result=\"retry\"} 7\n\
            tidemark_outbox_pending 3\n";
        assert_eq!(processed_total(text), 64);
    }

    #[test]
    fn own_status_has_a_peak() {
        assert!(proc_status_kib(std::process::id(), "VmHWM:").unwrap_or(0) > 0);
    }

    #[test]
    fn a_log_with_warnings_or_errors_is_kept() {
        let quiet = "2026-12-07T16:00:00Z  INFO tidemark_worker: worker ready\n";
        assert_eq!(warnings(quiet), 0);
        let loud = "2026-12-07T16:00:00Z  INFO tidemark_worker: worker ready\n\
            2026-12-07T16:00:31Z  WARN tidemark_worker: vector write failed; retrying\n\
            2026-12-07T16:00:32Z ERROR tidemark_worker: batch failed\n";
        assert_eq!(warnings(loud), 2);
    }
}
