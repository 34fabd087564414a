//! Keeping a batch's claims alive while it is processed.
//!
//! A claimed batch holds document locks and entry leases that expire after `worker.lease`, so a
//! crashed worker's claims are taken over. A live batch must therefore renew them: every third
//! of the lease, [`Inner::renew`] pushes `until` forward on the batch's locks and leases. The
//! [`LeaseClock`] remembers when the claims were last known to be held; processing checks it
//! before every write to Chroma and hands the batch back (instead of writing) once 80% of the
//! lease has passed since then or a renewal found a lock taken over by another worker.

use crate::worker::Inner;
use crate::WorkerError;
use bson::{doc, oid::ObjectId, DateTime};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// When this batch's claims were last known to be held, and whether one was lost.
pub(crate) struct LeaseClock {
    held_at: Mutex<Instant>,
    lost: AtomicBool,
    lease: Duration,
}

impl LeaseClock {
    pub fn new(claimed_at: Instant, lease: Duration) -> Self {
        LeaseClock {
            held_at: Mutex::new(claimed_at),
            lost: AtomicBool::new(false),
            lease,
        }
    }

    /// The claims were confirmed at `at` (taken before the renewal was sent).
    pub fn renewed(&self, at: Instant) {
        let mut h = self.held_at.lock().unwrap();
        if at > *h {
            *h = at;
        }
    }

    pub fn lose(&self) {
        self.lost.store(true, Ordering::SeqCst);
    }

    /// True while writing is safe: claims confirmed within 80% of the lease and none lost.
    pub fn ok(&self) -> bool {
        !self.lost.load(Ordering::SeqCst)
            && self.held_at.lock().unwrap().elapsed() < self.lease.mul_f64(0.8)
    }
}

impl Inner {
    /// Pushes the locks of `docs` and the leases of `entries` to a full lease from now.
    /// Returns false when a lock is no longer this worker's (it expired and was taken over).
    pub(crate) async fn renew(
        &self,
        docs: &[ObjectId],
        entries: &[ObjectId],
    ) -> Result<bool, WorkerError> {
        let now = DateTime::now();
        let until = DateTime::from_millis(
            now.timestamp_millis() + self.cfg.worker.lease.as_millis() as i64,
        );
        let locks = self
            .locks()
            .update_many(
                doc! {"_id": {"$in": docs}, "owner": &self.owner},
                doc! {"$set": {"until": until}},
            )
            .await?;
        self.raw_outbox()
            .update_many(
                doc! {"_id": {"$in": entries}, "status": "pending", "lease.owner": &self.owner},
                doc! {"$set": {"lease.until": until}},
            )
            .await?;
        Ok(locks.matched_count as usize == docs.len())
    }

    /// Renews the claims every third of the lease until dropped (run beside the batch); never
    /// returns.
    pub(crate) async fn keep_alive(
        &self,
        docs: &[ObjectId],
        entries: &[ObjectId],
        clock: &LeaseClock,
    ) {
        let every = self.cfg.worker.lease / 3;
        loop {
            tokio::time::sleep(every).await;
            let at = Instant::now();
            match self.renew(docs, entries).await {
                Ok(true) => clock.renewed(at),
                Ok(false) => {
                    tracing::warn!(owner = %self.owner, "a document lock was taken over during a batch; handing the batch back");
                    clock.lose();
                    std::future::pending::<()>().await;
                }
                Err(e) => tracing::warn!(error = %e, "renewing leases failed; will try again"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_expires_at_80_percent_of_the_lease() {
        let lease = Duration::from_millis(100);
        let c = LeaseClock::new(Instant::now() - Duration::from_millis(79), lease);
        assert!(c.ok());
        let c = LeaseClock::new(Instant::now() - Duration::from_millis(81), lease);
        assert!(!c.ok());
        c.renewed(Instant::now());
        assert!(c.ok(), "a renewal makes the claims good again");
    }

    #[test]
    fn renewal_never_moves_backwards_and_loss_is_final() {
        let lease = Duration::from_millis(100);
        let c = LeaseClock::new(Instant::now(), lease);
        c.renewed(Instant::now() - Duration::from_millis(500));
        assert!(c.ok(), "an older confirmation does not replace a newer one");
        c.lose();
        c.renewed(Instant::now());
        assert!(!c.ok(), "a lost lock stays lost");
    }
}
