//! ⑦ The pool threads: each owns one connection, takes the jobs waiting on the shared
//! channel, runs the ones still wanted and sends each reply home.
//!
//! On Postgres a thread keeps up to DB_PIPELINE_JOBS jobs running at once on its
//! connection, taking what has queued whenever one finishes: their statements go out back
//! to back, each with its own Sync, and come back in order — one write and one wait for
//! many instead of one each, on this thread and on its Postgres backend. Replies go home
//! as each job finishes. SQLite runs one job at a time.

use std::cell::Cell;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use futures_util::stream::{FuturesUnordered, StreamExt};

use super::error::StoreError;
use super::health::{judge, settle, thread_name, Judge, StoreErrors, StoreHealth};
use super::jobs;
use super::jobs::Job;
use super::mailbox::{Completion, Envelope, Mailbox};
use super::postgres::drive;
use super::store::{Pg, PgLink, Store, StoreConn, StoreKind};
use super::DbError;
use crate::config::{Config, StoreConfig};

/// First wait before reconnecting; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// An idle thread checks its connection this often, so readiness notices a store that
/// went away while nobody was asking.
const IDLE_PING: Duration = Duration::from_secs(1);

/// The pool as the rest of the server sees it.
pub(crate) struct Pool {
    pub(crate) jobs: Sender<Envelope>,
    pub(crate) mailboxes: Box<[Mailbox]>,
    pub(crate) health: StoreHealth,
    pub(crate) errors: StoreErrors,
    /// `sqlite` or `postgres`.
    pub(crate) store: &'static str,
    pub(crate) threads: usize,
}

impl Pool {
    /// The pool's channel and mailboxes, without its threads yet: the workers can be built
    /// (and start serving) first, then [`Pool::spawn_threads`] starts the database side.
    pub(crate) fn new(config: &Config, workers: usize) -> (Arc<Pool>, Receiver<Envelope>) {
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
        });
        (pool, queue)
    }

    /// Starts the pool threads. Connecting happens on them, so a store that is down does
    /// not stop the server from starting; /readyz says so instead.
    /// `pg_tls` is the Postgres TLS configuration, `None` under `sslmode=disable` (and for
    /// SQLite).
    pub(crate) fn spawn_threads(
        self: &Arc<Self>,
        queue: Receiver<Envelope>,
        config: &Config,
        pg_tls: Option<Arc<rustls::ClientConfig>>,
    ) -> std::io::Result<()> {
        for id in 0..self.threads {
            let (pool, queue, store) = (self.clone(), queue.clone(), config.store.clone());
            let sched = config.db_thread_sched;
            let settings = Settings {
                lifetime: config.db_conn_max_lifetime,
                bench_routes: config.bench_routes,
                batch_reads: config.db_batch_reads,
                statement_cache: config.db_statement_cache,
                pipeline_jobs: config.db_pipeline_jobs,
                pg_tls: pg_tls.clone(),
            };
            // The runtime that drives this thread's Postgres connection: current-thread, so
            // it runs only while this thread waits on it, and never on a worker's core.
            // SQLite's jobs never wait on it: no I/O or timer driver (no epoll fd) there.
            let mut runtime = tokio::runtime::Builder::new_current_thread();
            if let StoreConfig::Postgres(_) = config.store {
                runtime.enable_io().enable_time();
            }
            let runtime = runtime.build()?;
            std::thread::Builder::new().name(format!("percore-db{id}")).spawn(move || {
                let _registered = crate::obs::threads::register(crate::obs::threads::Role::Db(id));
                if let Err(e) = super::sched::apply(sched) {
                    // Refused (a seccomp filter, say): the thread runs as any other.
                    if id == 0 {
                        log::warn!(
                            "SCHED_BATCH refused ({e}): the database threads keep the normal policy (DB_THREAD_SCHED)"
                        );
                    }
                }
                run(&pool, &queue, &store, &settings, runtime)
            })?;
        }
        Ok(())
    }

    /// Where failures are recorded.
    fn judge(&self) -> Judge<'_> {
        Judge { health: &self.health, errors: &self.errors }
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

/// What a pool thread is told when it starts.
struct Settings {
    lifetime: Duration,
    bench_routes: bool,
    batch_reads: bool,
    statement_cache: bool,
    pipeline_jobs: usize,
    pg_tls: Option<Arc<rustls::ClientConfig>>,
}

/// One pool thread, until the job channel closes.
fn run(
    pool: &Pool,
    queue: &Receiver<Envelope>,
    store: &StoreConfig,
    settings: &Settings,
    runtime: tokio::runtime::Runtime,
) {
    let mut t = PoolThread {
        pool,
        queue,
        settings,
        runtime,
        conn: None,
        next_attempt: Instant::now(),
        backoff: FIRST_BACKOFF,
        taken: Vec::with_capacity(settings.pipeline_jobs),
    };
    loop {
        t.maintain(store);
        let until_attempt = t.next_attempt.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
        if t.conn.is_none() && pool.health.is_up() {
            // Leave the jobs to the threads that can run them, rather than failing them.
            std::thread::sleep(until_attempt);
            continue;
        }
        let wait = if t.conn.is_some() { IDLE_PING } else { until_attempt };
        let first = match queue.recv_timeout(wait) {
            Ok(envelope) => envelope,
            Err(RecvTimeoutError::Timeout) => {
                t.ping();
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => return,
        };
        t.run_pipelined(first);
    }
}

/// One pool thread's state: its connection, the runtime that drives it, its reconnect
/// schedule, and the jobs it took for the next pipeline.
struct PoolThread<'a> {
    pool: &'a Pool,
    queue: &'a Receiver<Envelope>,
    settings: &'a Settings,
    runtime: tokio::runtime::Runtime,
    conn: Option<StoreConn>,
    next_attempt: Instant,
    backoff: Duration,
    taken: Vec<Envelope>,
}

impl PoolThread<'_> {
    /// Replaces an old connection, and connects when a connection is due.
    fn maintain(&mut self, store: &StoreConfig) {
        let pool = self.pool;
        if self.conn.as_ref().is_some_and(|c| c.opened.elapsed() >= self.settings.lifetime) {
            log::debug!("{}: replacing a connection older than DB_CONN_MAX_LIFETIME", thread_name());
            drop_conn(pool, &mut self.conn);
            self.next_attempt = Instant::now();
        }
        if self.conn.is_some() || Instant::now() < self.next_attempt {
            return;
        }
        let Settings { bench_routes, statement_cache, ref pg_tls, .. } = *self.settings;
        let opened =
            StoreConn::open(store, pg_tls.as_ref(), &self.runtime, bench_routes, statement_cache).and_then(|mut c| {
                // Every statement prepared in one round trip, rather than each on its first use
                // by as many jobs of the first pipeline as happen to need it. A name the server
                // already holds (a pooler's) is statement trouble, not a failed connection: the
                // statements are prepared again on use, and readiness says what to set.
                if let (StoreKind::Postgres(link), true) = (&mut c.kind, statement_cache) {
                    let PgLink { pg, io } = &mut **link;
                    match drive(&self.runtime, io, pg.prepare_all(jobs::pg_statements(bench_routes))) {
                        Err(e @ StoreError::Statements(_)) => drop(judge(&pool.judge(), e, &Cell::new(None))),
                        other => other?,
                    }
                }
                Ok(c)
            });
        match opened {
            Ok(c) => {
                if !pool.health.is_up() {
                    let how = match (&store, c.tls) {
                        (StoreConfig::Postgres(pg), true) => format!(" over TLS (sslmode={})", pg.sslmode.as_str()),
                        (StoreConfig::Postgres(pg), false) => {
                            format!(" in plain text (sslmode={})", pg.sslmode.as_str())
                        }
                        (StoreConfig::Sqlite { .. }, _) => String::new(),
                    };
                    log::info!("{}: connected to {}{how}", thread_name(), pool.store);
                }
                pool.health.connected.fetch_add(1, Ordering::Relaxed);
                pool.health.outage_logged.store(false, Ordering::Relaxed);
                self.conn = Some(c);
                self.backoff = FIRST_BACKOFF;
            }
            Err(e) => {
                // Recorded before it is logged: whoever reads the log line finds /readyz
                // and /metrics already saying the same.
                pool.errors.count(&e);
                pool.health.failed(&e.to_string());
                // Once per outage, not once per attempt or per thread.
                if !pool.health.outage_logged.swap(true, Ordering::Relaxed) {
                    log::warn!("{}: cannot connect to {}: {e}", thread_name(), pool.store);
                }
                self.next_attempt = Instant::now() + self.backoff;
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
            }
        }
    }

    /// The idle check. It counts towards readiness like a request's statement, so a store
    /// that has stopped working says so even while no request comes (a balancer that
    /// reads /readyz sends none), and readiness comes back by itself when it works again.
    fn ping(&mut self) {
        let Some(c) = self.conn.as_mut() else { return };
        let lost = Cell::new(None);
        let _ = settle(&self.pool.judge(), c.ping(&self.runtime), &lost);
        self.after(lost);
    }

    /// One job alone: SQLite's way, and the answer while there is no connection.
    fn run_one(&mut self, envelope: Envelope) {
        let pool = self.pool;
        if !pool.mailboxes[envelope.worker as usize].is_current(envelope.slot, envelope.generation) {
            return; // its request timed out or its client left: do not run it
        }
        let started = Instant::now();
        let (reply, job) = ReturnAddress::take(envelope);
        let lost = Cell::new(None);
        let result = match self.conn.as_mut().map(|c| &mut c.kind) {
            None => Err(DbError::Unavailable(pool.health.last_error())),
            Some(StoreKind::Sqlite(c)) => {
                settle(&pool.judge(), self.runtime.block_on(jobs::run(Store::Sqlite(c), job)), &lost)
            }
            Some(StoreKind::Postgres(link)) => {
                let PgLink { pg, io } = &mut **link;
                settle(&pool.judge(), drive(&self.runtime, io, jobs::run(Store::Postgres(pg), job)), &lost)
            }
        };
        reply.send(pool, result, started, false);
        self.after(lost);
    }

    /// `first` and the jobs behind it, on the Postgres connection: up to DB_PIPELINE_JOBS
    /// run at once, and whenever one finishes the thread takes what has queued meanwhile,
    /// so the connection's pipeline stays full under load instead of draining between
    /// batches (each drain costs this thread and its backend a sleep and a wake). It ends
    /// when nothing runs and nothing waits, when the connection is lost, or when the
    /// connection has outlived DB_CONN_MAX_LIFETIME (it is replaced between pipelines).
    /// With DB_BATCH_READS, the user point reads taken together become one query. Without
    /// a Postgres connection (SQLite, or none yet), `first` runs alone.
    fn run_pipelined(&mut self, first: Envelope) {
        if !matches!(self.conn.as_ref().map(|c| &c.kind), Some(StoreKind::Postgres(_))) {
            return self.run_one(first);
        }
        let PoolThread { pool, queue, settings, runtime, conn, taken, .. } = self;
        let (pool, queue, settings): (&Pool, &Receiver<Envelope>, &Settings) = (pool, queue, settings);
        let Some(StoreConn { kind: StoreKind::Postgres(link), opened, .. }) = conn.as_mut() else { return };
        let retire_at = *opened + settings.lifetime;
        let PgLink { pg, io } = &mut **link;
        let pg: &Pg = pg;
        let lost = Cell::new(None);
        taken.push(first);
        drive(runtime, io, async {
            let mut running = FuturesUnordered::new();
            let mut batch = Vec::new();
            std::future::poll_fn(|cx| loop {
                let now = Instant::now();
                let room = settings.pipeline_jobs.saturating_sub(running.len());
                if room > 0 && !is_lost(&lost) && now < retire_at {
                    while taken.len() < room {
                        match queue.try_recv() {
                            Ok(e) => taken.push(e),
                            Err(_) => break,
                        }
                    }
                }
                if !taken.is_empty() {
                    units(pool, taken, settings.batch_reads, &mut batch);
                    for unit in batch.drain(..) {
                        running.push(perform(pool, pg, unit, now, &lost));
                    }
                }
                match running.poll_next_unpin(cx) {
                    Poll::Ready(Some(())) => continue,
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
        self.after(lost);
    }

    /// Drops the connection if a job found it broken.
    fn after(&mut self, lost: Cell<Option<String>>) {
        if let Some(why) = lost.into_inner() {
            self.pool.health.failed(&why);
            drop_conn(self.pool, &mut self.conn);
            self.next_attempt = Instant::now();
            log::warn!("{}: {} connection lost: {why}", thread_name(), self.pool.store);
        }
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
fn units(pool: &Pool, taken: &mut Vec<Envelope>, batch_reads: bool, units: &mut Vec<Unit>) {
    let mut reads = Vec::new();
    for e in taken.drain(..) {
        if !pool.mailboxes[e.worker as usize].is_current(e.slot, e.generation) {
            continue; // its request timed out or its client left: do not run it
        }
        let (reply, job) = ReturnAddress::take(e);
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

/// Runs `unit` on the shared connection and sends its replies home as soon as it is done.
async fn perform(pool: &Pool, pg: &Pg, unit: Unit, started: Instant, lost: &Cell<Option<String>>) {
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
}

/// Where a job's reply goes, kept while the job runs.
struct ReturnAddress {
    worker: u16,
    slot: u32,
    generation: u32,
    queued: Instant,
    /// Which job ([`Job::index`]).
    job: usize,
}

impl ReturnAddress {
    fn take(e: Envelope) -> (ReturnAddress, Job) {
        let reply = ReturnAddress {
            worker: e.worker,
            slot: e.slot,
            generation: e.generation,
            queued: e.queued,
            job: e.job.index(),
        };
        (reply, e.job)
    }

    fn send(self, pool: &Pool, result: Result<jobs::Output, DbError>, started: Instant, batched: bool) {
        pool.mailboxes[self.worker as usize].deliver(Completion {
            slot: self.slot,
            generation: self.generation,
            result,
            job: self.job,
            waited_ns: started.duration_since(self.queued).as_nanos() as u64,
            ran_ns: started.elapsed().as_nanos() as u64,
            batched,
        });
    }
}

fn drop_conn(pool: &Pool, conn: &mut Option<StoreConn>) {
    if conn.take().is_some() {
        pool.health.connected.fetch_sub(1, Ordering::Relaxed);
    }
}
