//! ⑦ The pool threads: each owns one connection, takes jobs from the shared channel one at a
//! time without sleeping while any wait, runs the ones still wanted and sends each reply
//! home.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::error::{ErrorClass, StoreError};
use super::jobs;
use super::mailbox::{Completion, Envelope, Mailbox};
use super::store::{Conn, ConnKind};
use super::DbError;
use crate::config::{Config, StoreConfig};

/// First wait before reconnecting; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// An idle thread checks its connection this often, so readiness notices a store that
/// went away while nobody was asking.
const IDLE_PING: Duration = Duration::from_secs(1);

/// Statements whose outcomes readiness weighs (the newest of the pool's).
const OUTCOMES: u32 = 32;
/// Not ready while more than this many of them failed for a store-side reason.
const MOST: u32 = OUTCOMES / 2;
/// Not ready for this long after a prepared statement went missing on the server side.
const STATEMENT_TROUBLE_HOLD: Duration = Duration::from_secs(10);

/// What the pool threads last saw of the store, for /readyz: connections, and what the
/// statements run for requests (and the idle checks) came to.
pub struct StoreHealth {
    /// Pool threads holding a working connection right now.
    connected: AtomicUsize,
    last_error: Mutex<String>,
    /// The newest outcomes, newest in bit 0: a 1 failed for a store-side reason.
    outcomes: AtomicU64,
    /// When a prepared statement was last missing (SQLSTATE 26000/42P05), and what was said.
    statement_trouble: Mutex<Option<(Instant, String)>>,
    /// The advice about statement trouble is logged once per process.
    statement_advice_logged: AtomicBool,
}

impl StoreHealth {
    fn new() -> StoreHealth {
        StoreHealth {
            connected: AtomicUsize::new(0),
            last_error: Mutex::new("not connected yet".into()),
            outcomes: AtomicU64::new(0),
            statement_trouble: Mutex::new(None),
            statement_advice_logged: AtomicBool::new(false),
        }
    }

    /// One statement's outcome: `failed` when the store was at fault.
    fn record(&self, failed: bool) {
        let _ =
            self.outcomes.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |h| Some((h << 1) | u64::from(failed)));
    }

    fn statements_missing(&self, e: &StoreError) {
        *self.statement_trouble.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), e.to_string()));
    }

    /// Why the store cannot serve requests although connections are up, if it cannot:
    /// prepared statements going missing, or most recent statements failing.
    pub fn trouble(&self) -> Option<String> {
        if let Some((at, why)) = &*self.statement_trouble.lock().unwrap_or_else(|p| p.into_inner()) {
            if at.elapsed() < STATEMENT_TROUBLE_HOLD {
                return Some(format!(
                    "prepared statements go missing on the server ({why}): a transaction-mode pooler? set DB_STATEMENT_CACHE=off"
                ));
            }
        }
        let failed = (self.outcomes.load(Ordering::Relaxed) & ((1 << OUTCOMES) - 1)).count_ones();
        (failed > MOST).then(|| format!("{failed} of the last {OUTCOMES} statements failed: {}", self.last_error()))
    }

    /// Pool threads holding a working connection now.
    pub fn connected(&self) -> usize {
        self.connected.load(Ordering::Relaxed)
    }

    /// Up while at least one pool thread holds a working connection.
    pub fn is_up(&self) -> bool {
        self.connected.load(Ordering::Relaxed) > 0
    }

    pub fn last_error(&self) -> String {
        self.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn failed(&self, why: &str) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = why.to_owned();
    }
}

/// What went wrong in the store, counted for `/metrics`. Touched only by failures, so a
/// mutex costs the request path nothing; the classes are bounded (SQLSTATE classes are two
/// characters).
#[derive(Default)]
pub struct StoreErrors {
    by_class: Mutex<BTreeMap<ErrorClass, u64>>,
    deadlock_retries: AtomicU64,
}

impl StoreErrors {
    fn count(&self, e: &StoreError) {
        *self.by_class.lock().unwrap_or_else(|p| p.into_inner()).entry(e.class()).or_default() += 1;
    }

    /// Failures so far, by class label.
    pub fn by_class(&self) -> Vec<(String, u64)> {
        let counts = self.by_class.lock().unwrap_or_else(|p| p.into_inner());
        counts.iter().map(|(class, n)| (class.label().to_owned(), *n)).collect()
    }

    /// Statements sent again after a deadlock chose them as its victim.
    pub fn deadlock_retries(&self) -> u64 {
        self.deadlock_retries.load(Ordering::Relaxed)
    }
}

/// The pool as the rest of the server sees it.
pub struct Pool {
    pub jobs: Sender<Envelope>,
    pub mailboxes: Box<[Mailbox]>,
    pub health: StoreHealth,
    pub errors: StoreErrors,
    /// `sqlite` or `postgres`.
    pub store: &'static str,
    pub threads: usize,
    /// Pool threads waiting on the queue right now.
    idle: AtomicUsize,
}

impl Pool {
    /// The pool's channel and mailboxes, without its threads yet: the workers can be built
    /// (and start serving) first, then [`Pool::spawn_threads`] starts the database side.
    pub fn new(config: &Config, workers: usize) -> (Arc<Pool>, Receiver<Envelope>) {
        let threads = config.db_pool_size.unwrap_or(default_pool_size(workers));
        let (jobs, queue) = crossbeam_channel::bounded(config.db_queue_depth);
        let slots = config.db_queue_depth + threads;
        let pool = Arc::new(Pool {
            jobs,
            mailboxes: (0..workers).map(|_| Mailbox::new(slots)).collect(),
            health: StoreHealth::new(),
            errors: StoreErrors::default(),
            store: match config.store {
                StoreConfig::Sqlite { .. } => "sqlite",
                StoreConfig::Postgres(_) => "postgres",
            },
            threads,
            idle: AtomicUsize::new(0),
        });
        (pool, queue)
    }

    /// Starts the pool threads. Connecting happens on them, so a store that is down does
    /// not stop the server from starting; /readyz says so instead.
    pub fn spawn_threads(self: &Arc<Self>, queue: Receiver<Envelope>, config: &Config) -> std::io::Result<()> {
        for id in 0..self.threads {
            let (pool, queue, store) = (self.clone(), queue.clone(), config.store.clone());
            let (lifetime, bench, batch) = (config.db_conn_max_lifetime, config.bench_routes, config.db_batch_reads);
            let cache = config.db_statement_cache;
            std::thread::Builder::new().name(format!("percore-db{id}")).spawn(move || {
                let _registered = crate::obs::threads::register(crate::obs::threads::Role::Db(id));
                run(&pool, &queue, &store, lifetime, bench, batch, cache)
            })?;
        }
        Ok(())
    }

    /// A pool thread's wait for its next job, counted as idle meanwhile.
    fn wait_for_job(&self, queue: &Receiver<Envelope>, wait: Duration) -> Result<Envelope, RecvTimeoutError> {
        self.idle.fetch_add(1, Ordering::Relaxed);
        let job = queue.recv_timeout(wait);
        self.idle.fetch_sub(1, Ordering::Relaxed);
        job
    }

    /// `Err` with what /readyz says while the store cannot serve requests: no connection,
    /// or connections whose statements fail.
    pub fn readiness(&self) -> Result<(), String> {
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
pub fn default_pool_size(workers: usize) -> usize {
    (workers + 1).max(3)
}

/// Most point reads combined into one query.
const MAX_BATCH: usize = 64;

/// One pool thread, until the job channel closes.
fn run(
    pool: &Pool,
    queue: &Receiver<Envelope>,
    store: &StoreConfig,
    lifetime: Duration,
    bench_routes: bool,
    batch_reads: bool,
    statement_cache: bool,
) {
    let mut t = PoolThread {
        statement_cache,
        pool,
        queue,
        conn: None,
        next_attempt: Instant::now(),
        backoff: FIRST_BACKOFF,
        held: VecDeque::new(),
        batch: Vec::with_capacity(MAX_BATCH),
        batch_reads,
    };
    loop {
        t.maintain(store, lifetime, bench_routes);
        let until_attempt = t.next_attempt.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
        if t.conn.is_none() && pool.health.is_up() {
            // Leave the jobs to the threads that can run them, rather than failing them.
            std::thread::sleep(until_attempt);
            continue;
        }
        let wait = if t.conn.is_some() { IDLE_PING } else { until_attempt };
        // One job at a time: the next one is taken without sleeping while any is waiting,
        // and idle threads take the others in parallel (a summary's three reads).
        let envelope = match t.held.pop_front().map_or_else(|| pool.wait_for_job(queue, wait), Ok) {
            Ok(envelope) => envelope,
            Err(RecvTimeoutError::Timeout) => {
                t.ping();
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => return,
        };
        t.handle(envelope);
    }
}

/// One pool thread's state: its connection, its reconnect schedule, and jobs it took from
/// the queue while gathering a batch and still owes a run.
struct PoolThread<'a> {
    pool: &'a Pool,
    queue: &'a Receiver<Envelope>,
    conn: Option<Conn>,
    next_attempt: Instant,
    backoff: Duration,
    held: VecDeque<Envelope>,
    batch: Vec<Envelope>,
    batch_reads: bool,
    statement_cache: bool,
}

impl PoolThread<'_> {
    /// Replaces an old connection, and connects when a connection is due.
    fn maintain(&mut self, store: &StoreConfig, lifetime: Duration, bench_routes: bool) {
        let pool = self.pool;
        if self.conn.as_ref().is_some_and(|c| c.opened.elapsed() >= lifetime) {
            log::debug!("{}: replacing a connection older than DB_CONN_MAX_LIFETIME", thread_name());
            drop_conn(pool, &mut self.conn);
            self.next_attempt = Instant::now();
        }
        if self.conn.is_some() || Instant::now() < self.next_attempt {
            return;
        }
        match Conn::open(store, bench_routes, self.statement_cache) {
            Ok(c) => {
                if !pool.health.is_up() {
                    log::info!("{}: connected to {}", thread_name(), pool.store);
                }
                pool.health.connected.fetch_add(1, Ordering::Relaxed);
                self.conn = Some(c);
                self.backoff = FIRST_BACKOFF;
            }
            Err(e) => {
                pool.errors.count(&e);
                // Once per outage, not once per attempt.
                if self.backoff == FIRST_BACKOFF {
                    log::warn!("{}: cannot connect to {}: {e}", thread_name(), pool.store);
                }
                pool.health.failed(&e.to_string());
                self.next_attempt = Instant::now() + self.backoff;
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
            }
        }
    }

    /// The idle check. It counts towards readiness like a request's statement, so a store
    /// that has stopped working says so even while no request comes (a balancer that
    /// reads /readyz sends none), and readiness comes back by itself when it works again.
    fn ping(&mut self) {
        if let Some(c) = self.conn.as_mut() {
            match c.ping() {
                Ok(()) => self.pool.health.record(false),
                Err(e) => {
                    let _ = self.failed(e);
                }
            }
        }
    }

    fn handle(&mut self, first: Envelope) {
        let postgres = matches!(self.conn.as_ref().map(|c| &c.kind), Some(ConnKind::Postgres(_)));
        if self.batch_reads && postgres && jobs::batchable_user_read(&first.job).is_some() {
            self.batch.push(first);
            self.gather();
            self.run_batch();
        } else {
            self.run_one(first);
        }
    }

    /// Takes the point reads of the same kind waiting right behind the first one; the
    /// first job of another kind is held and run next.
    fn gather(&mut self) {
        while self.batch.len() < MAX_BATCH {
            match self.queue.try_recv() {
                Ok(e) if jobs::batchable_user_read(&e.job).is_some() => self.batch.push(e),
                Ok(e) => {
                    self.pass_on(e);
                    return;
                }
                Err(_) => return,
            }
        }
    }

    /// A job of another kind taken while gathering: a thread that is idle runs it alongside
    /// the batch (a summary's three reads go out at once), so it goes back on the queue;
    /// with every thread busy, this one runs it next.
    fn pass_on(&mut self, e: Envelope) {
        if self.pool.idle.load(Ordering::Relaxed) == 0 {
            self.held.push_back(e);
        } else if let Err(back) = self.pool.jobs.try_send(e) {
            self.held.push_back(back.into_inner());
        }
    }

    fn run_one(&mut self, envelope: Envelope) {
        let mailbox = &self.pool.mailboxes[envelope.worker as usize];
        if !mailbox.is_current(envelope.slot, envelope.generation) {
            return; // its request timed out or its client left: do not run it
        }
        let started = Instant::now();
        let waited_ns = started.duration_since(envelope.queued).as_nanos() as u64;
        let job = envelope.job.index();
        let result = match self.conn.as_mut() {
            None => Err(DbError::Unavailable(self.pool.health.last_error())),
            Some(c) => jobs::run(c, envelope.job).map_err(|e| self.failed(e)),
        };
        if result.is_ok() {
            self.pool.health.record(false);
        }
        self.collect_retries();
        let ran_ns = started.elapsed().as_nanos() as u64;
        mailbox.deliver(Completion {
            slot: envelope.slot,
            generation: envelope.generation,
            result,
            job,
            waited_ns,
            ran_ns,
            batched: false,
        });
    }

    /// Runs the gathered point reads as one query and answers each waiting request.
    fn run_batch(&mut self) {
        let pool = self.pool;
        self.batch.retain(|e| pool.mailboxes[e.worker as usize].is_current(e.slot, e.generation));
        if self.batch.len() <= 1 {
            if let Some(e) = self.batch.pop() {
                self.run_one(e);
            }
            return;
        }
        let started = Instant::now();
        let ids: Vec<i64> = self.batch.iter().filter_map(|e| jobs::batchable_user_read(&e.job)).collect();
        let outputs = match self.conn.as_mut() {
            None => Err(DbError::Unavailable(pool.health.last_error())),
            Some(c) => jobs::run_user_reads(c, &ids).map_err(|e| self.failed(e)),
        };
        if outputs.is_ok() {
            pool.health.record(false);
        }
        self.collect_retries();
        let ran_ns = started.elapsed().as_nanos() as u64;
        for (i, e) in self.batch.drain(..).enumerate() {
            let result = match &outputs {
                Ok(outputs) => Ok(outputs[i].clone()),
                Err(err) => Err(err.clone()),
            };
            let waited_ns = started.duration_since(e.queued).as_nanos() as u64;
            let mailbox = &pool.mailboxes[e.worker as usize];
            let job = e.job.index();
            mailbox.deliver(Completion {
                slot: e.slot,
                generation: e.generation,
                result,
                job,
                waited_ns,
                ran_ns,
                batched: true,
            });
        }
    }

    /// Moves the connection's count of deadlock retries into the pool's.
    fn collect_retries(&mut self) {
        if let Some(c) = self.conn.as_mut().filter(|c| c.deadlock_retries > 0) {
            self.pool.errors.deadlock_retries.fetch_add(std::mem::take(&mut c.deadlock_retries), Ordering::Relaxed);
        }
    }

    /// What a failed job answers; a broken connection is dropped (the job is not retried).
    fn failed(&mut self, e: StoreError) -> DbError {
        let health = &self.pool.health;
        self.pool.errors.count(&e);
        health.record(e.is_store_side());
        if e.is_store_side() {
            health.failed(&e.to_string());
        }
        match e {
            e if e.is_connection() => {
                broken(self.pool, &mut self.conn, &e);
                self.next_attempt = Instant::now();
                DbError::Unavailable(e.to_string())
            }
            StoreError::Statements(_) => {
                // Not a lost connection: the connection works, the pooler behind it does
                // not keep what it prepared. Said once, with the cure.
                health.statements_missing(&e);
                if !health.statement_advice_logged.swap(true, Ordering::Relaxed) {
                    log::error!(
                        "{}: {e}. Prepared statements do not survive between transactions here: a \
                         transaction-mode pooler (PgBouncer before 1.21, or without max_prepared_statements) \
                         sits in front of Postgres. Set DB_STATEMENT_CACHE=off. /readyz answers 503 meanwhile.",
                        thread_name()
                    );
                }
                DbError::Unavailable(e.to_string())
            }
            StoreError::Unique => DbError::Conflict,
            e => DbError::Internal(e.to_string()),
        }
    }
}

/// Drops a connection that failed, and marks the store down until a reconnect succeeds.
fn broken(pool: &Pool, conn: &mut Option<Conn>, e: &StoreError) {
    log::warn!("{}: {} connection lost: {e}", thread_name(), pool.store);
    pool.health.failed(&e.to_string());
    drop_conn(pool, conn);
}

fn drop_conn(pool: &Pool, conn: &mut Option<Conn>) {
    if conn.take().is_some() {
        pool.health.connected.fetch_sub(1, Ordering::Relaxed);
    }
}

fn thread_name() -> String {
    std::thread::current().name().unwrap_or("percore-db").to_owned()
}
