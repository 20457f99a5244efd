//! ⑦ The pool threads: each owns one connection, takes jobs from the shared channel one at a
//! time without sleeping while any wait, runs the ones still wanted and sends each reply
//! home.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::jobs;
use super::mailbox::{Completion, Envelope, Mailbox};
use super::store::{Conn, StoreError};
use super::DbError;
use crate::config::{Config, StoreConfig};

/// First wait before reconnecting; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// An idle thread checks its connection this often, so readiness notices a store that
/// went away while nobody was asking.
const IDLE_PING: Duration = Duration::from_secs(1);

/// What the pool threads last saw of the store, for /readyz.
pub struct StoreHealth {
    /// Pool threads holding a working connection right now.
    connected: AtomicUsize,
    last_error: Mutex<String>,
}

impl StoreHealth {
    fn new() -> StoreHealth {
        StoreHealth { connected: AtomicUsize::new(0), last_error: Mutex::new("not connected yet".into()) }
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

/// The pool as the rest of the server sees it.
pub struct Pool {
    pub jobs: Sender<Envelope>,
    pub mailboxes: Box<[Mailbox]>,
    pub health: StoreHealth,
    /// `sqlite` or `postgres`.
    pub store: &'static str,
    pub threads: usize,
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
    pub fn spawn_threads(self: &Arc<Self>, queue: Receiver<Envelope>, config: &Config) -> std::io::Result<()> {
        for id in 0..self.threads {
            let (pool, queue, store, lifetime, bench) =
                (self.clone(), queue.clone(), config.store.clone(), config.db_conn_max_lifetime, config.bench_routes);
            std::thread::Builder::new()
                .name(format!("percore-db{id}"))
                .spawn(move || run(&pool, &queue, &store, lifetime, bench))?;
        }
        Ok(())
    }

    /// The message /readyz gives while the store is down.
    pub fn down_reason(&self) -> String {
        format!("store {} unavailable: {}", self.store, self.health.last_error())
    }
}

/// DB_POOL_SIZE=auto: one connection per worker plus one, and at least three so a
/// summary's three reads run at once. Measured on 2 cores against Postgres (README): 2–3
/// threads served 38k req/s, 4 served 33k, 8 and 16 about 35k while each extra connection
/// cost ~2.5 MB of memory — the server's cores, not the connections, are the limit.
pub fn default_pool_size(workers: usize) -> usize {
    (workers + 1).max(3)
}

/// One pool thread, until the job channel closes.
fn run(pool: &Pool, queue: &Receiver<Envelope>, store: &StoreConfig, lifetime: Duration, bench_routes: bool) {
    let mut conn: Option<Conn> = None;
    let mut next_attempt = Instant::now();
    let mut backoff = FIRST_BACKOFF;
    loop {
        if conn.as_ref().is_some_and(|c| c.opened.elapsed() >= lifetime) {
            log::debug!("{}: replacing a connection older than DB_CONN_MAX_LIFETIME", thread_name());
            drop_conn(pool, &mut conn);
            next_attempt = Instant::now();
        }
        if conn.is_none() && Instant::now() >= next_attempt {
            match Conn::open(store, bench_routes) {
                Ok(c) => {
                    if !pool.health.is_up() {
                        log::info!("{}: connected to {}", thread_name(), pool.store);
                    }
                    pool.health.connected.fetch_add(1, Ordering::Relaxed);
                    conn = Some(c);
                    backoff = FIRST_BACKOFF;
                }
                Err(e) => {
                    // Once per outage, not once per attempt.
                    if backoff == FIRST_BACKOFF {
                        log::warn!("{}: cannot connect to {}: {e}", thread_name(), pool.store);
                    }
                    pool.health.failed(&e.to_string());
                    next_attempt = Instant::now() + backoff;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }

        let until_attempt = next_attempt.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
        if conn.is_none() && pool.health.is_up() {
            // Leave the jobs to the threads that can run them, rather than failing them.
            std::thread::sleep(until_attempt);
            continue;
        }
        let wait = if conn.is_some() { IDLE_PING } else { until_attempt };
        // One job at a time: the next one is taken without sleeping while any is waiting,
        // and idle threads take the others in parallel (a summary's three reads).
        let envelope = match queue.recv_timeout(wait) {
            Ok(envelope) => envelope,
            Err(RecvTimeoutError::Timeout) => {
                if let Some(c) = conn.as_mut() {
                    if let Err(e) = c.ping() {
                        broken(pool, &mut conn, &e);
                        next_attempt = Instant::now();
                    }
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => return,
        };

        let mailbox = &pool.mailboxes[envelope.worker as usize];
        if !mailbox.is_current(envelope.slot, envelope.generation) {
            continue; // its request timed out or its client left: do not run it
        }
        let started = Instant::now();
        let waited_ns = started.duration_since(envelope.queued).as_nanos() as u64;
        let job = envelope.job.index();
        let result = match conn.as_mut() {
            None => Err(DbError::Unavailable(pool.health.last_error())),
            Some(c) => match jobs::run(c, envelope.job) {
                Ok(output) => Ok(output),
                Err(e) if e.is_connection() => {
                    broken(pool, &mut conn, &e);
                    next_attempt = Instant::now();
                    Err(DbError::Unavailable(e.to_string()))
                }
                Err(StoreError::Unique) => Err(DbError::Conflict),
                Err(e) => Err(DbError::Internal(e.to_string())),
            },
        };
        let ran_ns = started.elapsed().as_nanos() as u64;
        mailbox.deliver(Completion {
            slot: envelope.slot,
            generation: envelope.generation,
            result,
            job,
            waited_ns,
            ran_ns,
        });
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
