//! Vector write slots: how many upserts a worker has in flight at once, across its batches and
//! every index it writes (`worker.vector_writes`). Concurrent upserts slow each other down in
//! the vector store, so one bound covers the active index and a build's alike; the primary
//! index's upserts (the one search reads at start-up: live writes) go first, and an upsert
//! for a further index waits while one for the primary index is waiting.

use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::{Notify, Semaphore, SemaphorePermit};

/// The shared bound and the primary index's queue.
#[derive(Debug)]
pub(crate) struct WriteSlots {
    sem: Semaphore,
    max: usize,
    /// Primary-index upserts waiting for a slot.
    primary_waiting: AtomicUsize,
    /// Signalled when a slot is freed or no primary-index upsert waits any more.
    changed: Notify,
}

/// One upsert's slot; freeing it wakes the further indexes' upserts to look again.
pub(crate) struct Slot<'a> {
    permit: Option<SemaphorePermit<'a>>,
    slots: &'a WriteSlots,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        drop(self.permit.take());
        self.slots.changed.notify_waiters();
    }
}

/// Counts a waiting primary upsert until dropped (also when its wait is cancelled).
struct Waiting<'a>(&'a WriteSlots);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if self.0.primary_waiting.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.changed.notify_waiters();
        }
    }
}

impl WriteSlots {
    pub fn new(max: usize) -> WriteSlots {
        let max = max.max(1);
        WriteSlots {
            sem: Semaphore::new(max),
            max,
            primary_waiting: AtomicUsize::new(0),
            changed: Notify::new(),
        }
    }

    /// A slot for one upsert. A primary one queues for the next free slot; one for a further
    /// index takes a free slot only while no primary upsert waits.
    pub async fn acquire(&self, primary: bool) -> Slot<'_> {
        if primary {
            self.primary_waiting.fetch_add(1, Ordering::SeqCst);
            let waiting = Waiting(self);
            let permit = self.sem.acquire().await.expect("never closed");
            drop(waiting);
            return Slot {
                permit: Some(permit),
                slots: self,
            };
        }
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            // Registered before the check, so a signal between the two is not lost.
            changed.as_mut().enable();
            if self.primary_waiting.load(Ordering::SeqCst) == 0 {
                if let Ok(permit) = self.sem.try_acquire() {
                    return Slot {
                        permit: Some(permit),
                        slots: self,
                    };
                }
            }
            changed.await;
        }
    }

    /// Upserts in flight now.
    pub fn in_use(&self) -> usize {
        self.max - self.sem.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn a_further_index_waits_while_a_primary_upsert_waits() {
        let slots = Arc::new(WriteSlots::new(1));
        let held = slots.acquire(true).await;
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let spawn = |primary: bool, name: &'static str| {
            let (slots, order) = (slots.clone(), order.clone());
            tokio::spawn(async move {
                let _p = slots.acquire(primary).await;
                order.lock().unwrap().push(name);
                tokio::time::sleep(Duration::from_millis(10)).await;
            })
        };
        let build = spawn(false, "build");
        tokio::time::sleep(Duration::from_millis(20)).await;
        let live = spawn(true, "live");
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(slots.in_use(), 1);
        drop(held);
        live.await.unwrap();
        build.await.unwrap();
        assert_eq!(*order.lock().unwrap(), vec!["live", "build"]);
    }

    #[tokio::test]
    async fn a_cancelled_primary_wait_does_not_block_the_others() {
        let slots = WriteSlots::new(1);
        let held = slots.acquire(true).await;
        let waited = tokio::time::timeout(Duration::from_millis(20), slots.acquire(true)).await;
        assert!(waited.is_err(), "no slot was free");
        drop(held);
        let got = tokio::time::timeout(Duration::from_secs(1), slots.acquire(false)).await;
        assert!(got.is_ok(), "a cancelled wait still counted as waiting");
    }

    #[tokio::test]
    async fn without_primary_waiters_a_further_index_takes_a_free_slot() {
        let slots = WriteSlots::new(2);
        let _a = slots.acquire(false).await;
        let _b = slots.acquire(false).await;
        assert_eq!(slots.in_use(), 2);
    }
}
