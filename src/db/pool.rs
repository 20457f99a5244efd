//! ⑦ The pool as the workers and the pool threads share it: the job queue (db/queue.rs),
//! each worker's mailbox for replies, the store's door (codel.rs), health and counters —
//! and the one step every job goes through when a pool thread takes it ([`Pool::take`]):
//! its wait is reported to the door, and it is dropped if its request has gone or its
//! budget ran out. The threads themselves are in db/thread.rs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::gone::{self, LOOK_AFTER};
use super::health::{Budgets, Judge, StoreErrors, StoreHealth};
use super::jobs;
use super::jobs::Job;
use super::mailbox::{Completion, Envelope, Mailbox};
use super::queue::JobQueue;
use super::DbError;
use crate::codel::Door;
use crate::config::{Config, StoreConfig};

const LOOK_AFTER_NS: u64 = LOOK_AFTER.as_nanos() as u64;

/// The pool as the rest of the server sees it.
pub(crate) struct Pool {
    pub(crate) jobs: JobQueue,
    pub(crate) mailboxes: Box<[Mailbox]>,
    pub(crate) health: StoreHealth,
    pub(crate) errors: StoreErrors,
    /// The door: whether new database requests come in (judged from the queue's waits).
    pub(crate) door: Door,
    /// Jobs skipped and statements cancelled for their requests' budgets.
    pub(crate) budgets: Budgets,
    /// Jobs in flight on the store at most: threads × DB_PIPELINE_JOBS (Postgres), threads
    /// (SQLite: one job at a time).
    pub(crate) inflight_limit: usize,
    /// `sqlite` or `postgres`.
    pub(crate) store: &'static str,
    pub(crate) threads: usize,
}

impl Pool {
    /// The pool's job queue and mailboxes, without its threads yet: the workers can be built
    /// (and start serving) first, then [`super::thread::spawn`] starts the database side.
    pub(crate) fn new(config: &Config, workers: usize) -> Arc<Pool> {
        let threads = config.db_pool_size.unwrap_or(default_pool_size(workers));
        let jobs = JobQueue::bounded(config.db_queue_depth);
        let slots = config.db_queue_depth + threads;
        Arc::new(Pool {
            jobs,
            mailboxes: (0..workers).map(|_| Mailbox::new(slots)).collect(),
            health: StoreHealth::new(),
            errors: StoreErrors::default(),
            door: Door::new(config.admission),
            budgets: Budgets::default(),
            inflight_limit: match config.store {
                StoreConfig::Sqlite { .. } => threads,
                StoreConfig::Postgres(_) => threads * config.db_pipeline_jobs,
            },
            store: match config.store {
                StoreConfig::Sqlite { .. } => "sqlite",
                StoreConfig::Postgres(_) => "postgres",
            },
            threads,
        })
    }

    /// Where failures are recorded.
    pub(super) fn judge(&self) -> Judge<'_> {
        Judge { health: &self.health, errors: &self.errors, budgets: &self.budgets }
    }

    /// What /metrics shows of budgets and the bound on work in flight.
    pub(crate) fn budget_counts(&self) -> crate::obs::metrics::DbBudgets {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let b = &self.budgets;
        crate::obs::metrics::DbBudgets {
            skipped_abandoned: load(&b.skipped_abandoned),
            skipped_deadline: load(&b.skipped_deadline),
            cancel_requests: load(&b.cancel_requests),
            statement_timeouts: load(&b.statement_timeouts),
            inflight_limit: self.inflight_limit as u64,
        }
    }

    /// A job a pool thread took at `now`: its wait is reported to the door; it is not run
    /// if its request has stopped waiting, its budget has run out, or (after a wait of
    /// [`gone::LOOK_AFTER`]) its client has reset the connection. The last two are
    /// answered at once.
    pub(super) fn take(&self, e: Envelope, now: u64) -> Option<(ReturnAddress, Job)> {
        let waited = now.saturating_sub(e.queued_ns);
        self.door.observe(waited, now);
        if !self.mailboxes[e.worker as usize].is_current(e.slot, e.generation) {
            // Its request timed out or the connection ended: do not run it.
            self.budgets.skipped_abandoned.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let client = e.client;
        let (reply, job) = ReturnAddress::take(e);
        if reply.deadline_ns != 0 && now >= reply.deadline_ns {
            self.budgets.skipped_deadline.fetch_add(1, Ordering::Relaxed);
            reply.send(self, Err(DbError::Deadline), now, false);
            return None;
        }
        if client >= 0 && waited >= LOOK_AFTER_NS && gone::has_left(client) {
            self.budgets.skipped_abandoned.fetch_add(1, Ordering::Relaxed);
            reply.send(self, Err(DbError::ClientGone), now, false);
            return None;
        }
        Some((reply, job))
    }

    /// Whether a new request for the store may come in now. While the job queue stands,
    /// only if the jobs ahead of it drain within the slough time ([`Door::admits_behind`]);
    /// an empty queue opens the door at once.
    #[inline]
    pub(crate) fn admits(&self) -> bool {
        if self.door.admits() {
            return true;
        }
        let depth = self.jobs.len();
        if depth == 0 {
            self.door.reopen(crate::clock::now_ns());
            return true;
        }
        self.door.admits_behind(depth)
    }

    /// `Err` with what /readyz says while the store cannot serve requests: no connection,
    /// or connections whose statements fail.
    pub(crate) fn readiness(&self) -> Result<(), String> {
        if !self.health.is_up() {
            return Err(format!("store {} unavailable: {}", self.store, self.health.last_error()));
        }
        match self.health.trouble() {
            Some(why) => Err(format!("store {} failing: {why}", self.store)),
            None => Ok(()),
        }
    }
}

/// DB_POOL_SIZE=auto: one connection per worker plus one, and at least three so a
/// summary's three reads run at once. Measured on 2 cores against Postgres (README): 2–3
/// threads served 38k req/s, 4 served 33k, 8 and 16 about 35k while each extra connection
/// cost ~2.5 MB of memory — the server's cores, not the connections, are the limit.
pub(crate) fn default_pool_size(workers: usize) -> usize {
    (workers + 1).max(3)
}

/// Where a job's reply goes, kept while the job runs.
pub(super) struct ReturnAddress {
    worker: u16,
    slot: u32,
    generation: u32,
    queued_ns: u64,
    pub(super) deadline_ns: u64,
    /// Which job ([`Job::index`]).
    job: usize,
}

impl ReturnAddress {
    fn take(e: Envelope) -> (ReturnAddress, Job) {
        let reply = ReturnAddress {
            worker: e.worker,
            slot: e.slot,
            generation: e.generation,
            queued_ns: e.queued_ns,
            deadline_ns: e.deadline_ns,
            job: e.job.index(),
        };
        (reply, e.job)
    }

    /// Sends the result home; `started` is when the job was taken (`clock::now_ns`).
    pub(super) fn send(self, pool: &Pool, result: Result<jobs::Output, DbError>, started: u64, batched: bool) {
        pool.mailboxes[self.worker as usize].deliver(Completion {
            slot: self.slot,
            generation: self.generation,
            result,
            job: self.job,
            waited_ns: started.saturating_sub(self.queued_ns),
            ran_ns: crate::clock::now_ns().saturating_sub(started),
            batched,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn queued(n: usize, pool: &Pool) {
        for slot in 0..n as u32 {
            let job = Job::GetUser { id: slot as i64 };
            let e = Envelope { worker: 0, slot, generation: 0, job, queued_ns: 0, deadline_ns: 0, client: -1 };
            assert!(pool.jobs.submit(e).is_ok());
        }
    }

    /// The pool's door, with the queue it can see: while the queue stands, a request comes in
    /// behind what drains within twice the target and not behind more, and an empty queue
    /// opens the door.
    #[test]
    fn a_standing_queue_admits_behind_what_drains_within_the_slough_time() {
        let config = Config::from_lookup(|_| None).unwrap();
        let pool = Pool::new(&config, 1);
        // Ten jobs taken a millisecond for 200 ms, every one 20 ms late. They end 200 ms
        // from now, so that a slow test host cannot make the door see an idle spell.
        let t0 = crate::clock::now_ns();
        for i in 0..=2000 {
            pool.door.observe(20 * MS, t0 + i * MS / 10);
        }
        // 10,000 jobs a second drain 100 within 2 x ADMISSION_TARGET (5 ms).
        queued(100, &pool);
        assert!(!pool.admits(), "100 queued: the next would wait past the slough time");
        let _ = pool.jobs.try_take();
        assert!(pool.admits(), "99 queued: they drain in time");
        while pool.jobs.try_take().is_some() {}
        assert!(pool.admits());
        assert!(pool.door.admits(), "an empty queue opened the door itself");
    }
}
