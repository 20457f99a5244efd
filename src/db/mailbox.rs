//! A worker's mailbox: where pool threads leave replies ([`Doorbell`]: one wake per burst),
//! and the generation of each request slot, which tells a pool thread whether the request a
//! job belongs to still waits for it.

use std::sync::atomic::{AtomicU32, Ordering};
use std::task::Waker;

use crate::doorbell::Doorbell;

use super::jobs::{Job, Output};
use super::DbError;

/// A job on its way to the pool, with where its reply must go.
pub(crate) struct Envelope {
    pub(crate) worker: u16,
    pub(crate) slot: u32,
    pub(crate) generation: u32,
    pub(crate) job: Job,
    /// When it was submitted (`clock::now_ns`).
    pub(crate) queued_ns: u64,
    /// When its request must be answered (`clock::now_ns`); 0: no deadline.
    pub(crate) deadline_ns: u64,
    /// Its request's client socket, looked at before a late job runs (`super::gone`); -1:
    /// none.
    pub(crate) client: i32,
}

/// A reply on its way back, with what the pool measured.
pub(crate) struct Completion {
    pub(crate) slot: u32,
    pub(crate) generation: u32,
    pub(crate) result: Result<Output, DbError>,
    /// Which job ([`Job::index`]).
    pub(crate) job: usize,
    /// Time in the queue before a pool thread took the job.
    pub(crate) waited_ns: u64,
    /// Time the job ran on its connection.
    pub(crate) ran_ns: u64,
    /// Whether it was answered by one query together with other waiting reads.
    pub(crate) batched: bool,
}

pub(crate) struct Mailbox {
    replies: Doorbell<Completion>,
    /// Per request slot: bumped whenever the slot is released, so a job or reply that
    /// carries an older number belongs to a request that is gone.
    generations: Box<[AtomicU32]>,
}

impl Mailbox {
    pub(crate) fn new(slots: usize) -> Mailbox {
        Mailbox { replies: Doorbell::default(), generations: (0..slots).map(|_| AtomicU32::new(0)).collect() }
    }

    pub(crate) fn slots(&self) -> usize {
        self.generations.len()
    }

    pub(crate) fn generation(&self, slot: u32) -> u32 {
        self.generations[slot as usize].load(Ordering::Acquire)
    }

    /// Whether the request a job belongs to is still waiting for it.
    pub(crate) fn is_current(&self, slot: u32, generation: u32) -> bool {
        self.generation(slot) == generation
    }

    /// The worker releases a slot: anything still in flight for it becomes stale.
    pub(crate) fn retire(&self, slot: u32) {
        self.generations[slot as usize].fetch_add(1, Ordering::AcqRel);
    }

    /// Pool side: leaves a reply and wakes the worker if nobody has yet.
    pub(crate) fn deliver(&self, completion: Completion) {
        self.replies.post(completion);
    }

    /// Worker side: hands every reply that has arrived to `each`.
    pub(crate) fn drain(&self, waker: &Waker, each: impl FnMut(Completion)) {
        self.replies.drain(waker, each);
    }
}
