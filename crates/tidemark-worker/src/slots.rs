//! Vector write slots: how many upserts a worker has in flight at once, across its batches and
//! every index it writes (`worker.vector_writes`). Concurrent upserts slow each other down in
//! the vector store, so one bound covers the active index and a build's alike. Live upserts
//! (those carrying an application's write to an index search reads) go first: an upsert to a
//! building index (the build's own, or a live write's part for it) waits while a live one is
//! waiting, so a build takes what live writes leave.

use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::{Notify, Semaphore, SemaphorePermit};

/// The shared bound and the live upserts' queue.
#[derive(Debug)]
pub(crate) struct WriteSlots {
    sem: Semaphore,
    max: usize,
    /// Live upserts waiting for a slot.
    live_waiting: AtomicUsize,
    /// Signalled when a slot is freed or no live upsert waits any more.
    changed: Notify,
}

/// One upsert's slot; freeing it wakes the build's upserts to look again.
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

/// Counts a waiting live upsert until dropped (also when its wait is cancelled).
struct Waiting<'a>(&'a WriteSlots);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if self.0.live_waiting.fetch_sub(1, Ordering::SeqCst) == 1 {
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
            live_waiting: AtomicUsize::new(0),
            changed: Notify::new(),
        }
    }

    /// A slot for one upsert. A live one queues for the next free slot; a build's takes a
    /// free slot only while no live upsert waits.
    pub async fn acquire(&self, live: bool) -> Slot<'_> {
        if live {
            self.live_waiting.fetch_add(1, Ordering::SeqCst);
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
            if self.live_waiting.load(Ordering::SeqCst) == 0 {
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
    async fn a_build_upsert_waits_while_a_live_one_waits() {
        let slots = Arc::new(WriteSlots::new(1));
        let held = slots.acquire(true).await;
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let spawn = |live: bool, name: &'static str| {
            let (slots, order) = (slots.clone(), order.clone());
            tokio::spawn(async move {
                let _p = slots.acquire(live).await;
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
    async fn a_cancelled_live_wait_does_not_block_the_build() {
        let slots = WriteSlots::new(1);
        let held = slots.acquire(true).await;
        let waited = tokio::time::timeout(Duration::from_millis(20), slots.acquire(true)).await;
        assert!(waited.is_err(), "no slot was free");
        drop(held);
        let got = tokio::time::timeout(Duration::from_secs(1), slots.acquire(false)).await;
        assert!(got.is_ok(), "a cancelled wait still counted as waiting");
    }

    #[tokio::test]
    async fn without_live_waiters_build_upserts_take_free_slots() {
        let slots = WriteSlots::new(2);
        let _a = slots.acquire(false).await;
        let _b = slots.acquire(false).await;
        assert_eq!(slots.in_use(), 2);
    }
}
