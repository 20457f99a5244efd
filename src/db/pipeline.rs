//! ⑦ A pool thread's pipeline on its Postgres connection: up to DB_PIPELINE_JOBS jobs run at
//! once, their statements written back to back, and whenever one finishes the thread takes
//! what has queued meanwhile, so the pipeline stays full under load instead of draining
//! between batches (each drain costs this thread and its backend a sleep and a wake). With
//! DB_BATCH_READS the user point reads taken together become one query.
//!
//! Budgets: a job whose request's deadline has passed is never sent ([`Pool::take`]); a
//! statement still running at its request's deadline is cancelled on the server with a
//! cancel request. Postgres runs a connection's statements in order, so the one it is
//! executing belongs to the oldest job still in flight: a cancel is sent when that job's
//! deadline passes, and so reaches its own statement (the one exception, a reply already on
//! its way when the cancel arrives, cancels nothing or the next statement, as with libpq).
//! Every connection also has `statement_timeout` = HANDLER_TIMEOUT, the largest budget.

use std::cell::Cell;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use futures_util::stream::{FuturesUnordered, StreamExt};

use super::drive::drive;
use super::health::settle;
use super::jobs::{self, Job};
use super::mailbox::Envelope;
use super::pool::{Pool, ReturnAddress};
use super::postgres::cancel;
use super::store::{Pg, PgLink, Store};

/// How a pipeline runs, from the pool thread's settings.
pub(super) struct How<'a> {
    /// DB_PIPELINE_JOBS: jobs in flight at most.
    pub(super) jobs: usize,
    pub(super) batch_reads: bool,
    /// No more jobs are taken past this: the connection is replaced between pipelines.
    pub(super) retire_at: Instant,
    /// For cancel requests, which open a connection of their own.
    pub(super) tls: Option<&'a Arc<rustls::ClientConfig>>,
}

/// Runs the jobs `taken` and those that queue behind them until nothing runs and nothing
/// waits, the connection is lost, or it is due for replacement; returns why it was lost.
pub(super) fn run(
    pool: &Pool,
    runtime: &tokio::runtime::Runtime,
    link: &mut PgLink,
    taken: &mut Vec<Envelope>,
    how: &How<'_>,
) -> Cell<Option<String>> {
    let PgLink { pg, io } = link;
    let pg: &Pg = pg;
    let lost = Cell::new(None);
    drive(runtime, io, async {
        let mut running = FuturesUnordered::new();
        let mut batch = Vec::new();
        let mut watch = DeadlineWatch::default();
        let mut next = 0u64;
        std::future::poll_fn(|cx| loop {
            let now = Instant::now();
            let room = pool.jobs.share(how.jobs.saturating_sub(running.len()));
            if room > 0 && !is_lost(&lost) && now < how.retire_at {
                while taken.len() < room {
                    match pool.jobs.try_take() {
                        Some(e) => taken.push(e),
                        None => break,
                    }
                }
                // What this pipeline has no room for goes to another thread.
                pool.jobs.spread();
            }
            if !taken.is_empty() {
                let now_ns = crate::clock::now_ns();
                units(pool, taken, how.batch_reads, now_ns, &mut batch);
                for unit in batch.drain(..) {
                    next += 1;
                    watch.sent(next, unit.deadline());
                    running.push(perform(pool, pg, unit, now_ns, next, &lost));
                }
            }
            if watch.poll(cx, pool, pg, how.tls) {
                continue;
            }
            match running.poll_next_unpin(cx) {
                Poll::Ready(Some(done)) => {
                    watch.done(done);
                    continue;
                }
                Poll::Ready(None) => return Poll::Ready(()),
                Poll::Pending => return Poll::Pending,
            }
        })
        .await
    });
    let retries = pg.deadlock_retries.take();
    if retries > 0 {
        pool.errors.deadlock_retries.fetch_add(retries, Ordering::Relaxed);
    }
    lost
}

/// The units in flight, oldest first, with their deadlines; a timer for the oldest one's,
/// and the cancel request on its way.
#[derive(Default)]
struct DeadlineWatch {
    /// (unit number, deadline in `clock::now_ns`, 0: none), in the order they were sent.
    in_flight: VecDeque<(u64, u64)>,
    /// The unit the timer is set for, and the timer.
    timer: Option<(u64, Pin<Box<tokio::time::Sleep>>)>,
    /// Units a cancel was sent for (each at most once).
    cancelled: u64,
    cancelling: Option<Pin<Box<dyn Future<Output = ()>>>>,
}

impl DeadlineWatch {
    fn sent(&mut self, unit: u64, deadline: u64) {
        self.in_flight.push_back((unit, deadline));
    }

    fn done(&mut self, unit: u64) {
        if let Some(at) = self.in_flight.iter().position(|&(u, _)| u == unit) {
            self.in_flight.remove(at);
        }
    }

    /// Sets the timer for the oldest unit, and sends the cancel when its deadline passes.
    /// True: something happened that calls for another turn of the loop.
    fn poll(
        &mut self,
        cx: &mut std::task::Context<'_>,
        pool: &Pool,
        pg: &Pg,
        tls: Option<&Arc<rustls::ClientConfig>>,
    ) -> bool {
        if let Some(cancelling) = self.cancelling.as_mut() {
            if cancelling.as_mut().poll(cx).is_ready() {
                self.cancelling = None;
            }
        }
        let Some(&(unit, deadline)) = self.in_flight.front() else {
            self.timer = None;
            return false;
        };
        if deadline == 0 || unit <= self.cancelled {
            self.timer = None;
            return false;
        }
        if self.timer.as_ref().is_none_or(|(u, _)| *u != unit) {
            let left = Duration::from_nanos(deadline.saturating_sub(crate::clock::now_ns()));
            self.timer = Some((unit, Box::pin(tokio::time::sleep(left))));
        }
        let Some((_, timer)) = self.timer.as_mut() else { return false };
        if timer.as_mut().poll(cx).is_pending() {
            return false;
        }
        self.timer = None;
        self.cancelled = unit;
        pool.budgets.cancel_requests.fetch_add(1, Ordering::Relaxed);
        self.cancelling = Some(cancel(&pg.client, tls));
        true
    }
}

/// Whether a job of this pipeline found the connection broken.
fn is_lost(lost: &Cell<Option<String>>) -> bool {
    let why = lost.take();
    let is = why.is_some();
    lost.set(why);
    is
}

/// What the jobs just `taken` (those whose requests still wait) run as: each its own unit,
/// except that with `batch_reads` their user point reads become one query.
fn units(pool: &Pool, taken: &mut Vec<Envelope>, batch_reads: bool, now: u64, units: &mut Vec<Unit>) {
    let mut reads = Vec::new();
    for e in taken.drain(..) {
        let Some((reply, job)) = pool.take(e, now) else { continue };
        match jobs::batchable_user_read(&job) {
            Some(id) if batch_reads => reads.push((reply, id)),
            _ => units.push(Unit::One(reply, job)),
        }
    }
    match reads.len() {
        0 => {}
        1 => {
            let (reply, id) = reads.remove(0);
            units.push(Unit::One(reply, Job::GetUser { id }));
        }
        _ => units.push(Unit::Reads(reads)),
    }
}

/// What one future of a pipeline runs: a job, or several user reads as one query.
enum Unit {
    One(ReturnAddress, Job),
    Reads(Vec<(ReturnAddress, i64)>),
}

impl Unit {
    /// The earliest deadline of the requests it answers (`clock::now_ns`); 0: none.
    fn deadline(&self) -> u64 {
        let earliest = |a: u64, b: u64| if a == 0 || (b != 0 && b < a) { b } else { a };
        match self {
            Unit::One(reply, _) => reply.deadline_ns,
            Unit::Reads(reads) => reads.iter().fold(0, |d, (reply, _)| earliest(d, reply.deadline_ns)),
        }
    }
}

/// Runs `unit` on the shared connection and sends its replies home as soon as it is done;
/// returns its number.
async fn perform(pool: &Pool, pg: &Pg, unit: Unit, started: u64, number: u64, lost: &Cell<Option<String>>) -> u64 {
    match unit {
        Unit::One(reply, job) => {
            let result = settle(&pool.judge(), jobs::run(Store::Postgres(pg), job).await, lost);
            reply.send(pool, result, started, false);
        }
        Unit::Reads(reads) => {
            let ids: Vec<i64> = reads.iter().map(|&(_, id)| id).collect();
            match settle(&pool.judge(), jobs::run_user_reads(Store::Postgres(pg), &ids).await, lost) {
                Ok(outputs) => {
                    for ((reply, _), output) in reads.into_iter().zip(outputs) {
                        reply.send(pool, Ok(output), started, true);
                    }
                }
                Err(e) => {
                    for (reply, _) in reads {
                        reply.send(pool, Err(e.clone()), started, true);
                    }
                }
            }
        }
    }
    number
}
