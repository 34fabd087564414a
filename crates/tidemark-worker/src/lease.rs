//! Keeping a batch's claims alive while it is processed.
//!
//! A claimed batch holds document locks and entry leases that expire after `worker.lease`, so a
//! crashed worker's claims are taken over. A live batch must therefore renew them: every third
//! of the lease, [`Inner::keep_alive`] pushes `until` forward on the batch's locks and leases.
//! The [`LeaseClock`] remembers when the claims were last known to be held. Before every write
//! to Chroma, processing calls [`Inner::still_ours`]: within 80% of the lease since the last
//! confirmation the claims are good; past that (a slow server, a long embedding) it renews on
//! the spot, which succeeds as long as no other worker took a lock over. Only a lost lock makes
//! the batch hand its entries back instead of writing.

use crate::worker::Inner;
use crate::WorkerError;
use bson::{doc, oid::ObjectId, DateTime};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A batch's claims (locked documents, leased entries), when they were last known to be
/// held, and whether one was lost.
pub(crate) struct LeaseClock {
    docs: Vec<ObjectId>,
    entries: Vec<ObjectId>,
    held_at: Mutex<Instant>,
    lost: AtomicBool,
    lease: Duration,
}

impl LeaseClock {
    pub fn new(
        docs: Vec<ObjectId>,
        entries: Vec<ObjectId>,
        claimed_at: Instant,
        lease: Duration,
    ) -> Self {
        LeaseClock {
            docs,
            entries,
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

    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    /// True while writing is safe without asking: claims confirmed within 80% of the lease and
    /// none lost.
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

    /// Renews the claims once; false when a lock was lost (now or before) or the renewal failed.
    async fn renew_now(&self, clock: &LeaseClock) -> bool {
        if clock.is_lost() {
            return false;
        }
        let at = Instant::now();
        match self.renew(&clock.docs, &clock.entries).await {
            Ok(true) => {
                clock.renewed(at);
                true
            }
            Ok(false) => {
                tracing::warn!(owner = %self.owner, "a document lock was taken over during a batch; handing the batch back");
                clock.lose();
                false
            }
            Err(e) => {
                tracing::warn!(error = %e, "renewing leases failed");
                false
            }
        }
    }

    /// Whether the batch may write: its claims are fresh, or renewing them now succeeds.
    pub(crate) async fn still_ours(&self, clock: &LeaseClock) -> bool {
        clock.ok() || self.renew_now(clock).await
    }

    /// Renews the claims every third of the lease until dropped (run beside the batch); never
    /// returns.
    pub(crate) async fn keep_alive(&self, clock: &LeaseClock) {
        let every = self.cfg.worker.lease / 3;
        loop {
            tokio::time::sleep(every).await;
            if !self.renew_now(clock).await && clock.is_lost() {
                std::future::pending::<()>().await;
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
        let c = LeaseClock::new(
            vec![],
            vec![],
            Instant::now() - Duration::from_millis(79),
            lease,
        );
        assert!(c.ok());
        let c = LeaseClock::new(
            vec![],
            vec![],
            Instant::now() - Duration::from_millis(81),
            lease,
        );
        assert!(!c.ok());
        c.renewed(Instant::now());
        assert!(c.ok(), "a renewal makes the claims good again");
    }

    #[test]
    fn renewal_never_moves_backwards_and_loss_is_final() {
        let lease = Duration::from_millis(100);
        let c = LeaseClock::new(vec![], vec![], Instant::now(), lease);
        c.renewed(Instant::now() - Duration::from_millis(500));
        assert!(c.ok(), "an older confirmation does not replace a newer one");
        c.lose();
        c.renewed(Instant::now());
        assert!(!c.ok(), "a lost lock stays lost");
    }
}
