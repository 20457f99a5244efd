//! A queue one worker owns and any thread may post to, waking the worker at most once per
//! burst.
//!
//! Used for database replies (pool threads → worker) and for metrics scrapes (one worker
//! asks every worker for its numbers). Items go through an unbounded crossbeam channel;
//! `flagged` makes the wake-ups coalesce: only the post that finds the flag down wakes the
//! owner (through the waker its task registered — monoio's cross-thread waker when the
//! poster is another thread), and the owner lowers the flag *before* draining, so a post
//! that lands after the drain wakes it again.
//!
//! The waker is futures' [`AtomicWaker`], which hands it over without a lock: the owner,
//! woken, runs at once and registers again while the poster may still be waking it. With a
//! mutex around the waker held across the wake, the owner blocked on it and was woken a
//! second time by the unlock: a futex wait, a futex wake and a context switch a reply
//! (strace at 200 /db requests a second).

use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Waker;

use crossbeam_channel::{Receiver, Sender};
use futures_util::task::AtomicWaker;

pub(crate) struct Doorbell<T> {
    tx: Sender<T>,
    rx: Receiver<T>,
    flagged: AtomicBool,
    waker: AtomicWaker,
}

impl<T> Default for Doorbell<T> {
    fn default() -> Self {
        let (tx, rx) = crossbeam_channel::unbounded();
        Doorbell { tx, rx, flagged: AtomicBool::new(false), waker: AtomicWaker::new() }
    }
}

impl<T> Doorbell<T> {
    /// Posts an item and wakes the owner if nobody has since it last drained.
    pub(crate) fn post(&self, item: T) {
        let _ = self.tx.send(item);
        if !self.flagged.swap(true, Ordering::SeqCst) {
            self.waker.wake();
        }
    }

    /// Whether items wait to be drained.
    pub(crate) fn is_pending(&self) -> bool {
        !self.rx.is_empty()
    }

    /// Owner side: registers `waker`, lowers the flag, then hands every posted item to `each`.
    pub(crate) fn drain(&self, waker: &Waker, mut each: impl FnMut(T)) {
        self.waker.register(waker);
        self.flagged.store(false, Ordering::SeqCst);
        while let Ok(item) = self.rx.try_recv() {
            each(item);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;
    use std::task::Wake;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_burst_wakes_once_and_a_post_after_draining_wakes_again() {
        let bell = Doorbell::default();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut got = Vec::new();
        bell.drain(&waker, |i| got.push(i));
        for i in 0..5 {
            bell.post(i);
        }
        assert_eq!(count.0.load(Ordering::SeqCst), 1, "one wake for the burst");
        bell.drain(&waker, |i| got.push(i));
        assert_eq!(got, [0, 1, 2, 3, 4]);
        bell.post(5);
        assert_eq!(count.0.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn posts_from_other_threads_arrive() {
        let bell = Arc::new(Doorbell::default());
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        bell.drain(&waker, |_: u32| {});
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let bell = bell.clone();
                std::thread::spawn(move || (0..100).for_each(|i| bell.post(t * 100 + i)))
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        let mut got = Vec::new();
        bell.drain(&waker, |i| got.push(i));
        got.sort_unstable();
        assert_eq!(got, (0..400).collect::<Vec<_>>());
        assert!(count.0.load(Ordering::SeqCst) >= 1);
    }

    /// The owner woken by a post runs at once and drains, registering its waker again
    /// while the post may still be waking it. Here the wake itself drains, on the posting
    /// thread: with a lock held across the wake, that deadlocks.
    #[test]
    fn an_owner_woken_by_a_post_can_drain_while_the_post_returns() {
        struct DrainsAtOnce {
            bell: Arc<Doorbell<u32>>,
            got: std::sync::Mutex<Vec<u32>>,
            me: std::sync::OnceLock<Waker>,
        }
        impl Wake for DrainsAtOnce {
            fn wake(self: Arc<Self>) {
                let waker = self.me.get().expect("registered").clone();
                self.bell.drain(&waker, |i| self.got.lock().unwrap().push(i));
            }
        }
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let bell = Arc::new(Doorbell::default());
            let owner = Arc::new(DrainsAtOnce { bell: bell.clone(), got: Default::default(), me: Default::default() });
            let waker = Waker::from(owner.clone());
            let _ = owner.me.set(waker.clone());
            bell.drain(&waker, |_| {});
            bell.post(7);
            bell.post(8);
            let _ = done_tx.send(owner.got.lock().unwrap().clone());
        });
        let got =
            done_rx.recv_timeout(std::time::Duration::from_secs(10)).expect("the post held its lock across the wake");
        // 7 woke the owner, which drained it; 8 found the flag lowered and woke it again.
        assert_eq!(got, [7, 8]);
    }
}
