//! ⑦ The pool threads: each owns one connection, takes the jobs waiting on the shared
//! channel, runs the ones still wanted and sends each reply home.
//!
//! On Postgres a thread keeps up to DB_PIPELINE_JOBS jobs running at once on its
//! connection, taking what has queued whenever one finishes (db/pipeline.rs): their
//! statements go out back to back, each with its own Sync, and come back in order — one
//! write and one wait for many instead of one each, on this thread and on its Postgres
//! backend. Replies go home as each job finishes. SQLite runs one job at a time.

use std::cell::Cell;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::drive::drive;
use super::error::StoreError;
use super::health::{judge, settle, thread_name};
use super::jobs;
use super::mailbox::Envelope;
use super::pool::Pool;
use super::store::{PgLink, Store, StoreConn, StoreKind};
use super::DbError;
use crate::config::{Config, StoreConfig};

/// First wait before reconnecting; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// An idle thread checks its connection this often, so readiness notices a store that
/// went away while nobody was asking.
const IDLE_PING: Duration = Duration::from_secs(1);

/// Starts the pool threads. Connecting happens on them, so a store that is down does
/// not stop the server from starting; /readyz says so instead.
/// `pg_tls` is the Postgres TLS configuration, `None` under `sslmode=disable` (and for
/// SQLite).
pub(crate) fn spawn(
    pool: &Arc<Pool>,
    config: &Config,
    pg_tls: Option<Arc<rustls::ClientConfig>>,
) -> std::io::Result<()> {
    for id in 0..pool.threads {
        let (pool, store) = (pool.clone(), config.store.clone());
        let sched = config.db_thread_sched;
        let settings = Settings {
            lifetime: config.db_conn_max_lifetime,
            bench_routes: config.bench_routes,
            batch_reads: config.db_batch_reads,
            statement_cache: config.db_statement_cache,
            pipeline_jobs: config.db_pipeline_jobs,
            pg_tls: pg_tls.clone(),
            statement_timeout: config.handler_timeout,
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
            run(&pool, &store, &settings, runtime)
        })?;
    }
    Ok(())
}

/// What a pool thread is told when it starts.
struct Settings {
    lifetime: Duration,
    bench_routes: bool,
    batch_reads: bool,
    statement_cache: bool,
    pipeline_jobs: usize,
    pg_tls: Option<Arc<rustls::ClientConfig>>,
    /// HANDLER_TIMEOUT: no request waits longer, so no statement needs to run longer.
    statement_timeout: Duration,
}

/// One pool thread, for the life of the process.
fn run(pool: &Pool, store: &StoreConfig, settings: &Settings, runtime: tokio::runtime::Runtime) {
    let mut t = PoolThread {
        pool,
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
        match pool.jobs.wait(wait) {
            Some(first) => t.run_pipelined(first),
            None => t.ping(),
        }
    }
}

/// One pool thread's state: its connection, the runtime that drives it, its reconnect
/// schedule, and the jobs it took for the next pipeline.
struct PoolThread<'a> {
    pool: &'a Pool,
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
        let Settings { bench_routes, statement_cache, ref pg_tls, statement_timeout, .. } = *self.settings;
        let opened =
            StoreConn::open(store, pg_tls.as_ref(), &self.runtime, bench_routes, statement_cache, statement_timeout)
                .and_then(|mut c| {
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
        // One job at a time here: any behind it are for another thread.
        pool.jobs.spread();
        let started = crate::clock::now_ns();
        let Some((reply, job)) = pool.take(envelope, started) else { return };
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
        let PoolThread { pool, settings, runtime, conn, taken, .. } = self;
        let Some(StoreConn { kind: StoreKind::Postgres(link), opened, .. }) = conn.as_mut() else { return };
        let how = super::pipeline::How {
            jobs: settings.pipeline_jobs,
            batch_reads: settings.batch_reads,
            retire_at: *opened + settings.lifetime,
            tls: settings.pg_tls.as_ref(),
        };
        taken.push(first);
        let lost = super::pipeline::run(pool, runtime, link, taken, &how);
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

fn drop_conn(pool: &Pool, conn: &mut Option<StoreConn>) {
    if conn.take().is_some() {
        pool.health.connected.fetch_sub(1, Ordering::Relaxed);
    }
}
