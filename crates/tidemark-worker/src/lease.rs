//! Keeping a batch's claims alive while it is processed.
//!
//! A claimed batch holds document locks and entry leases that expire after `worker.lease`, so a
//! crashed worker's claims are taken over. A live batch must therefore renew them: every third
//! of the lease, [`Claims::keep_alive`] pushes `until` forward on the batch's locks and leases.
//! The [`LeaseClock`] remembers when the claims were last known to be held. Before every write
//! to Chroma, processing calls [`Claims::still_ours`]: within 80% of the lease since the last
//! confirmation the claims are good; past that (a slow server, a long embedding) it renews on
//! the spot, which succeeds as long as no other worker took a lock over. Only a lost lock makes
//! the batch hand its entries back instead of writing.

use crate::locks::DocLocks;
use bson::{oid::ObjectId, DateTime};
use tidemark_store::outbox::{later, Outbox};
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

/// A batch's claims and what renewing them needs: the clock, the outbox and the locks.
pub(crate) struct Claims<'a> {
    pub clock: LeaseClock,
    pub outbox: &'a Outbox,
    pub locks: &'a DocLocks,
    pub owner: &'a str,
}

impl Claims<'_> {
    /// Pushes the locks and leases of the batch to a full lease from now. Returns false when a
    /// lock is no longer this worker's (it expired and was taken over).
    async fn renew(&self) -> mongodb::error::Result<bool> {
        let until = later(DateTime::now(), self.clock.lease);
        let held = self.locks.renew(&self.clock.docs, until).await?;
        self.outbox
            .renew(&self.clock.entries, self.owner, until)
            .await?;
        Ok(held)
    }

    /// Renews the claims once; false when a lock was lost (now or before) or the renewal failed.
    async fn renew_now(&self) -> bool {
        if self.clock.is_lost() {
            return false;
        }
        let at = Instant::now();
        match self.renew().await {
            Ok(true) => {
                self.clock.renewed(at);
                true
            }
            Ok(false) => {
                tracing::warn!(owner = %self.owner, "a document lock was taken over during a batch; handing the batch back");
                self.clock.lose();
                false
            }
            Err(e) => {
                tracing::warn!(error = %e, "renewing leases failed");
                false
            }
        }
    }

    /// Whether the batch may write: its claims are fresh, or renewing them now succeeds.
    pub async fn still_ours(&self) -> bool {
        self.clock.ok() || self.renew_now().await
    }

    /// Renews the claims every third of the lease until dropped (run beside the batch); never
    /// returns.
    pub async fn keep_alive(&self) {
        let every = self.clock.lease / 3;
        loop {
            tokio::time::sleep(every).await;
            if !self.renew_now().await && self.clock.is_lost() {
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
