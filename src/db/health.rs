//! ⑦ How the pool judges the store, for /readyz and /metrics: connections up, the newest
//! statements' outcomes, prepared statements going missing (a transaction-mode pooler),
//! failures by class, jobs skipped and statements cancelled for their budgets — and what a
//! failed job answers its request.
//!
//! The pool threads record here; readiness and the scrape read. Nothing here is touched on
//! a request's path except one atomic update per statement outcome.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::error::{ErrorClass, StoreError};
use super::DbError;

/// Statements whose outcomes readiness weighs (the newest of the pool's).
const OUTCOMES: u32 = 32;
/// Not ready while more than this many of them failed for a store-side reason.
const MOST: u32 = OUTCOMES / 2;
/// Not ready for this long after a prepared statement went missing on the server side.
const STATEMENT_TROUBLE_HOLD: Duration = Duration::from_secs(10);

/// What the pool threads last saw of the store, for /readyz: connections, and what the
/// statements run for requests (and the idle checks) came to.
pub(crate) struct StoreHealth {
    /// Pool threads holding a working connection right now.
    pub(super) connected: AtomicUsize,
    last_error: Mutex<String>,
    /// The newest outcomes, newest in bit 0: a 1 failed for a store-side reason.
    outcomes: AtomicU64,
    /// When a prepared statement was last missing (SQLSTATE 26000/42P05), and what was said.
    statement_trouble: Mutex<Option<(Instant, String)>>,
    /// The advice about statement trouble is logged once per process.
    statement_advice_logged: AtomicBool,
    /// A failure to connect has been logged since the pool was last connected: an outage
    /// is said once, not once per thread or per attempt.
    pub(super) outage_logged: AtomicBool,
}

impl StoreHealth {
    pub(super) fn new() -> StoreHealth {
        StoreHealth {
            connected: AtomicUsize::new(0),
            last_error: Mutex::new("not connected yet".into()),
            outcomes: AtomicU64::new(0),
            statement_trouble: Mutex::new(None),
            statement_advice_logged: AtomicBool::new(false),
            outage_logged: AtomicBool::new(false),
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
    pub(crate) fn trouble(&self) -> Option<String> {
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
    pub(crate) fn connected(&self) -> usize {
        self.connected.load(Ordering::Relaxed)
    }

    /// Up while at least one pool thread holds a working connection.
    pub(crate) fn is_up(&self) -> bool {
        self.connected.load(Ordering::Relaxed) > 0
    }

    pub(crate) fn last_error(&self) -> String {
        self.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(super) fn failed(&self, why: &str) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = why.to_owned();
    }
}

/// What went wrong in the store, counted for `/metrics`. Touched only by failures, so a
/// mutex costs the request path nothing; the classes are bounded (SQLSTATE classes are two
/// characters).
#[derive(Default)]
pub(crate) struct StoreErrors {
    by_class: Mutex<BTreeMap<ErrorClass, u64>>,
    pub(super) deadlock_retries: AtomicU64,
}

impl StoreErrors {
    pub(super) fn count(&self, e: &StoreError) {
        *self.by_class.lock().unwrap_or_else(|p| p.into_inner()).entry(e.class()).or_default() += 1;
    }

    /// Failures so far, by class label.
    pub(crate) fn by_class(&self) -> Vec<(String, u64)> {
        let counts = self.by_class.lock().unwrap_or_else(|p| p.into_inner());
        counts.iter().map(|(class, n)| (class.label().to_owned(), *n)).collect()
    }

    /// Statements sent again after a deadlock chose them as its victim.
    pub(crate) fn deadlock_retries(&self) -> u64 {
        self.deadlock_retries.load(Ordering::Relaxed)
    }
}

/// A job's outcome, weighed for readiness; a failure becomes what the request answers.
pub(super) fn settle<T>(
    judged: &Judge<'_>,
    result: Result<T, StoreError>,
    lost: &Cell<Option<String>>,
) -> Result<T, DbError> {
    match result {
        Ok(v) => {
            judged.health.record(false);
            Ok(v)
        }
        Err(e) => Err(judge(judged, e, lost)),
    }
}

/// What a failed job answers. A broken connection is noted in `lost`, to be dropped once
/// the jobs running on it are done; no job is retried.
pub(super) fn judge(judged: &Judge<'_>, e: StoreError, lost: &Cell<Option<String>>) -> DbError {
    let health = judged.health;
    judged.errors.count(&e);
    if let Some(how) = cancelled(&e) {
        // Stopped at its request's deadline (a cancel request, or statement_timeout): the
        // request is over, and the store did what it was asked. Not a store failure.
        if how == Cancel::StatementTimeout {
            judged.budgets.statement_timeouts.fetch_add(1, Ordering::Relaxed);
        }
        health.record(false);
        return DbError::Deadline;
    }
    health.record(e.is_store_side());
    if e.is_store_side() {
        health.failed(&e.to_string());
    }
    match e {
        e if e.is_connection() => {
            let why = e.to_string();
            let first = lost.take();
            lost.set(Some(first.unwrap_or_else(|| why.clone())));
            DbError::Unavailable(why)
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

/// How a statement was cancelled (SQLSTATE 57014).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cancel {
    Request,
    StatementTimeout,
}

fn cancelled(e: &StoreError) -> Option<Cancel> {
    let StoreError::Other(fault) = e else { return None };
    if !fault.message.contains("57014") {
        return None;
    }
    Some(if fault.message.contains("statement timeout") { Cancel::StatementTimeout } else { Cancel::Request })
}

/// Jobs skipped and statements cancelled for their requests' budgets, for /metrics.
#[derive(Default)]
pub(crate) struct Budgets {
    pub(crate) skipped_abandoned: AtomicU64,
    pub(crate) skipped_deadline: AtomicU64,
    pub(crate) cancel_requests: AtomicU64,
    pub(crate) statement_timeouts: AtomicU64,
}

/// What judging a failure needs of the pool: where it records.
pub(super) struct Judge<'a> {
    pub(crate) health: &'a StoreHealth,
    pub(crate) errors: &'a StoreErrors,
    pub(crate) budgets: &'a Budgets,
}

/// The pool thread's name, for its log lines.
pub(super) fn thread_name() -> String {
    std::thread::current().name().unwrap_or("percore-db").to_owned()
}
