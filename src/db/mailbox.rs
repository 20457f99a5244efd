//! A worker's mailbox: where pool threads leave replies, and how they wake the worker.
//!
//! Shared between one worker (the reader) and every pool thread (the writers). Replies go
//! through an unbounded crossbeam channel (it never holds more than the worker's slots);
//! `flagged` makes the wake-ups coalesce — only the reply that finds the flag down wakes the
//! worker, the rest ride along until the worker lowers it again before draining.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Mutex;
use std::task::Waker;

use crossbeam_channel::{Receiver, Sender};

use super::jobs::{Job, Output};
use super::DbError;

/// A job on its way to the pool, with where its reply must go.
pub struct Envelope {
    pub worker: u16,
    pub slot: u32,
    pub generation: u32,
    pub job: Job,
}

/// A reply on its way back.
pub struct Completion {
    pub slot: u32,
    pub generation: u32,
    pub result: Result<Output, DbError>,
}

pub struct Mailbox {
    replies: Sender<Completion>,
    inbox: Receiver<Completion>,
    /// Per request slot: bumped whenever the slot is released, so a job or reply that
    /// carries an older number belongs to a request that is gone.
    generations: Box<[AtomicU32]>,
    flagged: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl Mailbox {
    pub fn new(slots: usize) -> Mailbox {
        let (replies, inbox) = crossbeam_channel::unbounded();
        Mailbox {
            replies,
            inbox,
            generations: (0..slots).map(|_| AtomicU32::new(0)).collect(),
            flagged: AtomicBool::new(false),
            waker: Mutex::new(None),
        }
    }

    pub fn slots(&self) -> usize {
        self.generations.len()
    }

    pub fn generation(&self, slot: u32) -> u32 {
        self.generations[slot as usize].load(Ordering::Acquire)
    }

    /// Whether the request a job belongs to is still waiting for it.
    pub fn is_current(&self, slot: u32, generation: u32) -> bool {
        self.generation(slot) == generation
    }

    /// The worker releases a slot: anything still in flight for it becomes stale.
    pub fn retire(&self, slot: u32) {
        self.generations[slot as usize].fetch_add(1, Ordering::AcqRel);
    }

    /// Pool side: leaves a reply and wakes the worker if nobody has yet.
    pub fn deliver(&self, completion: Completion) {
        let _ = self.replies.send(completion);
        if !self.flagged.swap(true, Ordering::SeqCst) {
            if let Some(waker) = self.waker.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
                waker.wake_by_ref();
            }
        }
    }

    /// Worker side: registers the delivery task's waker, lowers the flag, then hands every
    /// reply that has arrived to `each`. Lowering before draining means a reply that lands
    /// after the drain finds the flag down and wakes the worker again.
    pub fn drain(&self, waker: &Waker, mut each: impl FnMut(Completion)) {
        {
            let mut slot = self.waker.lock().unwrap_or_else(|p| p.into_inner());
            if !slot.as_ref().is_some_and(|w| w.will_wake(waker)) {
                *slot = Some(waker.clone());
            }
        }
        self.flagged.store(false, Ordering::SeqCst);
        while let Ok(c) = self.inbox.try_recv() {
            each(c);
        }
    }
}
