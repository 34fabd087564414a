//! The long-running loop: background tasks (change stream, gauges, HTTP), the claim loop that
//! keeps up to `worker.concurrency` batches in flight, and a graceful stop.
//!
//! A stop is bounded by `worker.shutdown_deadline` whatever is unreachable: the batches in
//! hand get 60% of it to finish (then they are abandoned: their leases expire), saving the
//! stream position and handing back leases and locks get what is left, each step cut off at
//! its share. [`StopReport`] says what could not be done; the outbox stays the truth, so
//! nothing is lost either way.

use crate::linger::LastClaim;
use crate::positions::StreamPosition;
use crate::report::BatchReport;
use crate::stream::StreamCtx;
use crate::worker::Worker;
use crate::WorkerError;
use bson::Document;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use tidemark_core::COLL_OUTBOX;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

type InFlight = JoinSet<Result<BatchReport, WorkerError>>;

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StopReport {
    /// The batches in hand finished (false: abandoned at the deadline; their leases expire).
    pub finished: bool,
    /// Every lease and document lock was handed back (false: they expire by themselves).
    pub released: bool,
    /// The stream position was saved (or there was nothing new to save).
    pub position_saved: bool,
}

impl StopReport {
    /// Stopped during start-up: nothing was held.
    fn at_start() -> StopReport {
        StopReport {
            finished: true,
            released: true,
            position_saved: true,
        }
    }

    /// Everything was finished and handed back.
    pub fn is_clean(&self) -> bool {
        self.finished && self.released && self.position_saved
    }
}

/// Runs `f` until `deadline`; None when it did not finish in time.
async fn until<T>(deadline: Instant, f: impl Future<Output = T>) -> Option<T> {
    tokio::time::timeout_at(deadline, f).await.ok()
}

/// Logs the outcome of a batch that ran in its own task.
fn log_batch(r: Result<Result<BatchReport, WorkerError>, tokio::task::JoinError>) {
    match r {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "batch failed; its entries will be swept again"),
        Err(e) if e.is_cancelled() => {}
        Err(e) => {
            tracing::error!(error = %e, "batch task panicked; its entries will be swept again")
        }
    }
}

impl Worker {
    /// Runs until `shutdown` completes: change stream, sweeps, batches, gauges and the HTTP
    /// endpoints. On shutdown it stops claiming, lets the batches in hand finish (or abandons
    /// them when the deadline nears), saves the stream position, hands back its claims and
    /// returns what it managed within `worker.shutdown_deadline`.
    pub async fn run(
        &self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<StopReport, WorkerError> {
        let mut shutdown = std::pin::pin!(shutdown);
        // A stop while starting (e.g. MongoDB not reachable yet) ends the start-up at once:
        // nothing is claimed yet, so there is nothing to finish or release.
        tokio::select! {
            r = self.init() => r?,
            _ = &mut shutdown => {
                tracing::info!(owner = %self.owner(), "stopped during start-up");
                return Ok(StopReport::at_start());
            }
        }
        let (stop_tx, stop_rx) = watch::channel(false);
        let tasks = self.start_background(&stop_rx).await?;
        tracing::info!(owner = %self.owner(), collection = %self.collection_name(), "worker started");
        let mut in_flight = InFlight::new();
        let started = self.claim_loop(shutdown.as_mut(), &mut in_flight).await;
        Ok(self.stop(in_flight, stop_tx, tasks, started).await)
    }

    /// Starts the HTTP endpoints, the change stream, the gauge refresher and the re-reading of
    /// the index definitions.
    async fn start_background(
        &self,
        stop: &watch::Receiver<bool>,
    ) -> Result<Vec<JoinHandle<()>>, WorkerError> {
        let p = &self.parts;
        let mut tasks = Vec::new();
        if !p.cfg.metrics.addr.is_empty() {
            let addr = p.cfg.metrics.addr.clone();
            let listener =
                tokio::net::TcpListener::bind(&addr)
                    .await
                    .map_err(|e| WorkerError::Http {
                        addr: addr.clone(),
                        reason: e.to_string(),
                    })?;
            let mut rx = stop.clone();
            let srv = crate::server::serve_http(self.clone(), listener, async move {
                let _ = rx.wait_for(|s| *s).await;
            });
            tasks.push(tokio::spawn(async move {
                if let Err(e) = srv.await {
                    tracing::error!(error = %e, "metrics server failed");
                }
            }));
        }
        let ctx = StreamCtx {
            outbox: p.store.database().collection::<Document>(COLL_OUTBOX),
            positions: p.positions.clone(),
            wake: p.wake.clone(),
            metrics: p.metrics.clone(),
        };
        tasks.push(tokio::spawn(crate::stream::stream_loop(ctx, stop.clone())));
        let gauges = self.clone();
        let mut grx = stop.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let took = Instant::now();
                if let Err(e) = gauges.refresh_gauges().await {
                    tracing::debug!(error = %e, "gauge refresh failed");
                }
                tokio::select! {
                    _ = grx.wait_for(|s| *s) => return,
                    _ = tokio::time::sleep(crate::gauges::pause(took.elapsed())) => {}
                }
            }
        }));
        let lanes = self.clone();
        let mut lrx = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut last_flush = Instant::now();
            loop {
                tokio::select! {
                    _ = lrx.wait_for(|s| *s) => return,
                    _ = tokio::time::sleep(crate::lanes::REFRESH) => {}
                }
                if let Err(e) = crate::lanes::refresh(&lanes).await {
                    tracing::warn!(error = %e, "cannot re-read the index definitions; keeping the indexes written so far");
                }
                if last_flush.elapsed() >= crate::usage::FLUSH {
                    crate::usage::flush(&lanes).await;
                    last_flush = Instant::now();
                }
            }
        }));
        Ok(tasks)
    }

    /// Claims batches and runs them side by side until `shutdown`; returns when it came.
    ///
    /// Claiming stays in this loop (one claim at a time), so the lanes of one process never
    /// compete for the same documents; a document held by a batch in flight is "blocked" for
    /// the next claim until that batch releases it.
    async fn claim_loop(
        &self,
        mut shutdown: Pin<&mut impl Future<Output = ()>>,
        in_flight: &mut InFlight,
    ) -> Instant {
        let w = &self.parts.cfg.worker;
        let claimer = self.claimer();
        let mut last: Option<LastClaim> = None;
        loop {
            while in_flight.len() >= w.concurrency.max(1) {
                tokio::select! {
                    Some(r) = in_flight.join_next() => log_batch(r),
                    _ = shutdown.as_mut() => return Instant::now(),
                }
            }
            // Under load, let the next batch gather what arrives while this one is written.
            let linger =
                |n| crate::linger::wait(last, n, w.batch_linger, std::time::Instant::now());
            while let Some(wait) = linger(in_flight.len()) {
                tokio::select! {
                    Some(r) = in_flight.join_next() => log_batch(r),
                    _ = tokio::time::sleep(wait) => break,
                    _ = shutdown.as_mut() => return Instant::now(),
                }
            }
            let snapshot = self.parts.positions.seen();
            let claimed = tokio::select! {
                r = claimer.claim(w.batch_size) => r,
                _ = shutdown.as_mut() => return Instant::now(),
            };
            let wait = match claimed {
                Ok(c) if !c.entries.is_empty() => {
                    last = Some(LastClaim {
                        at: c.at,
                        full: c.docs.len() >= w.batch_size,
                    });
                    let me = self.clone();
                    in_flight.spawn(async move { me.process_claimed(c).await });
                    continue;
                }
                Ok(c) => {
                    let idle = self.idle(&c.docs, c.blocked, snapshot, in_flight.is_empty());
                    tokio::select! {
                        d = idle => d,
                        _ = shutdown.as_mut() => return Instant::now(),
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "claiming failed; will sweep again");
                    Duration::from_secs(1)
                }
            };
            tokio::select! {
                _ = shutdown.as_mut() => return Instant::now(),
                Some(r) = in_flight.join_next() => log_batch(r),
                _ = self.parts.wake.notified() => {
                    // Collect a batch's worth of changes before claiming.
                    tokio::select! {
                        _ = shutdown.as_mut() => return Instant::now(),
                        _ = tokio::time::sleep(w.batch_wait) => {}
                    }
                }
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// After a claim that found nothing to process: releases what it locked, saves the stream
    /// position when everything seen is done, and says how long to wait before claiming again.
    async fn idle(
        &self,
        docs: &[bson::oid::ObjectId],
        blocked: usize,
        snapshot: Option<StreamPosition>,
        nothing_in_flight: bool,
    ) -> Duration {
        let w = &self.parts.cfg.worker;
        self.release_docs(docs).await;
        if blocked > 0 {
            return w.batch_wait.max(Duration::from_millis(50));
        }
        // Nothing due and nothing in flight: every change seen before the snapshot is done,
        // so the stream may resume after it.
        if let (true, Some(t)) = (nothing_in_flight, snapshot) {
            self.parts.positions.save(t).await;
        }
        // Until the next scheduled retry, at most the sweep interval.
        match self.parts.outbox.next_due().await {
            Ok(Some(at)) => {
                let ms = (at.timestamp_millis() - bson::DateTime::now().timestamp_millis()).max(0);
                Duration::from_millis(ms as u64)
                    .min(w.sweep_interval)
                    .max(Duration::from_millis(10))
            }
            _ => w.sweep_interval,
        }
    }

    /// The graceful stop, every step bounded by its share of `worker.shutdown_deadline`.
    async fn stop(
        &self,
        mut in_flight: InFlight,
        stop_tx: watch::Sender<bool>,
        tasks: Vec<JoinHandle<()>>,
        started: Instant,
    ) -> StopReport {
        let deadline = self.parts.cfg.worker.shutdown_deadline;
        let at = |share: f64| started + deadline.mul_f64(share);
        let mut finished = true;
        if !in_flight.is_empty() {
            tracing::info!(
                batches = in_flight.len(),
                "shutdown requested; finishing the batches in hand"
            );
            let finish = async {
                while let Some(r) = in_flight.join_next().await {
                    log_batch(r);
                }
            };
            if until(at(0.6), finish).await.is_none() {
                tracing::warn!("batches did not finish before the deadline; abandoning them");
                finished = false;
                in_flight.abort_all();
            }
        }
        let _ = stop_tx.send(true);
        let _ = until(at(0.7), crate::usage::flush(self)).await;
        // Everything seen before this snapshot is done when nothing is due: save it, so the
        // next start resumes the stream here.
        let position_saved = !finished || until(at(0.8), self.save_if_drained()).await.is_some();
        let released = until(at(0.95), self.try_release_all())
            .await
            .unwrap_or(false);
        for t in tasks {
            let _ = until(at(1.0), t).await;
        }
        let report = StopReport {
            finished,
            released,
            position_saved: position_saved && finished,
        };
        if report.is_clean() {
            tracing::info!(owner = %self.owner(), "worker stopped");
        } else {
            tracing::warn!(
                owner = %self.owner(),
                batches_finished = report.finished,
                claims_released = report.released,
                position_saved = report.position_saved,
                "worker stopped within the deadline, but could not finish everything: unreleased leases and locks expire after worker.lease, and the outbox still holds every pending entry"
            );
        }
        report
    }

    /// Saves the last seen stream position if nothing is due.
    async fn save_if_drained(&self) {
        let p = &self.parts;
        if let (Some(t), Ok(false)) = (p.positions.seen(), p.outbox.anything_due().await) {
            p.positions.save(t).await;
        }
    }
}
