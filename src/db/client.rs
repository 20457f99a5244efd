//! ⑥ The worker's side of the pool: submit a job, await its reply without blocking the core.
//!
//! A request takes a slot in the worker's slab (bounded, so a worker cannot queue without
//! limit), sends its job, and awaits a [`Pending`] that the worker's delivery task
//! completes. Dropping a `Pending` before its reply — the request timed out, the client
//! left — retires the slot, so the pool skips the job if it has not run yet and a late
//! reply is ignored.

use std::cell::RefCell;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use crossbeam_channel::TrySendError;
use slab::Slab;

use super::jobs::{Job, Output};
use super::mailbox::{Completion, Envelope, Mailbox};
use super::pool::Pool;
use super::DbError;
use crate::obs::metrics::{DbFailure, WorkerMetrics};

#[derive(Default)]
struct Slot {
    result: Option<Result<Output, DbError>>,
    waker: Option<Waker>,
}

pub struct DbClient {
    worker: u16,
    pool: Arc<Pool>,
    slots: RefCell<Slab<Slot>>,
    metrics: Rc<WorkerMetrics>,
}

impl DbClient {
    pub fn new(pool: Arc<Pool>, worker: usize, metrics: Rc<WorkerMetrics>) -> Rc<DbClient> {
        let capacity = pool.mailboxes[worker].slots();
        let slots = RefCell::new(Slab::with_capacity(capacity.min(4096)));
        Rc::new(DbClient { worker: worker as u16, pool, slots, metrics })
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    fn mailbox(&self) -> &Mailbox {
        &self.pool.mailboxes[self.worker as usize]
    }

    /// Sends `job` to the pool. Fails at once, without waiting, when the queue is full.
    pub fn submit(&self, job: Job) -> Result<Pending<'_>, DbError> {
        let slot = {
            let mut slots = self.slots.borrow_mut();
            if slots.len() >= self.mailbox().slots() {
                self.metrics.db_failure(DbFailure::QueueFull);
                return Err(DbError::QueueFull);
            }
            slots.insert(Slot::default()) as u32
        };
        let generation = self.mailbox().generation(slot);
        let envelope = Envelope { worker: self.worker, slot, generation, job, queued: Instant::now() };
        match self.pool.jobs.try_send(envelope) {
            Ok(()) => Ok(Pending { client: self, slot, done: false }),
            Err(e) => {
                self.release(slot);
                self.metrics.db_failure(DbFailure::QueueFull);
                Err(match e {
                    TrySendError::Full(_) => DbError::QueueFull,
                    TrySendError::Disconnected(_) => DbError::Unavailable("the database pool has stopped".into()),
                })
            }
        }
    }

    /// Submits `job` and waits for its output.
    pub async fn call(&self, job: Job) -> Result<Output, DbError> {
        self.submit(job)?.await
    }

    fn release(&self, slot: u32) {
        self.slots.borrow_mut().remove(slot as usize);
        self.mailbox().retire(slot);
    }

    /// Hands a reply to the request waiting in its slot, if it still is.
    fn complete(&self, c: Completion) {
        if !self.mailbox().is_current(c.slot, c.generation) {
            return;
        }
        self.metrics.db_job(c.job, c.waited_ns, c.ran_ns, c.batched);
        if let Err(e) = &c.result {
            self.metrics.db_failure(match e {
                DbError::QueueFull => DbFailure::QueueFull,
                DbError::Unavailable(_) => DbFailure::Unavailable,
                DbError::Conflict => DbFailure::Conflict,
                DbError::Internal(_) => DbFailure::Internal,
            });
        }
        let mut slots = self.slots.borrow_mut();
        if let Some(slot) = slots.get_mut(c.slot as usize) {
            slot.result = Some(c.result);
            if let Some(w) = slot.waker.take() {
                w.wake();
            }
        }
    }

    /// The worker's delivery task: runs forever, handing replies to their requests.
    pub async fn deliver_replies(self: Rc<Self>) {
        poll_fn(|cx: &mut Context<'_>| {
            self.mailbox().drain(cx.waker(), |c| self.complete(c));
            Poll::<()>::Pending
        })
        .await
    }
}

/// A submitted job's reply, to be awaited.
pub struct Pending<'c> {
    client: &'c DbClient,
    slot: u32,
    done: bool,
}

impl Future for Pending<'_> {
    type Output = Result<Output, DbError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let result = {
            let mut slots = self.client.slots.borrow_mut();
            let slot = &mut slots[self.slot as usize];
            match slot.result.take() {
                Some(result) => result,
                None => {
                    if !slot.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                        slot.waker = Some(cx.waker().clone());
                    }
                    return Poll::Pending;
                }
            }
        };
        self.done = true;
        self.client.release(self.slot);
        Poll::Ready(result)
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.client.metrics.db_failure(DbFailure::Abandoned);
            self.client.release(self.slot);
        }
    }
}
