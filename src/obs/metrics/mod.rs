//! Per-core metrics: each worker counts in its own plain memory (`Cell`s, no atomics, no
//! sharing), and a scrape asks every worker for a [`Snapshot`] and merges them.
//!
//! Recording a request is a few additions into a dense table indexed by (route, method)
//! plus a bucket search. A request's duration runs from the read that completed it to the
//! moment its response is ready to go out. Requests answered in the worker without waiting
//! ([`WorkerMetrics::request_deferred`]) share their batch's end: their responses leave in
//! the batch's one write, so that is when each is done — and a batch of 16 pipelined
//! requests costs two clock reads, not seventeen. Labels
//! are bounded by construction: routes are patterns (`/api/v1/users/{id}`) or `unmatched`,
//! methods are the enum's, statuses are what the server sends — no client can create a
//! series. Built without the `metrics` feature, recording compiles to nothing (that build
//! is the baseline perf/ measures the instrumentation's cost against).

mod process;
mod render;

use std::cell::{Cell, RefCell};

pub(crate) use process::Process;
pub(crate) use render::{render, DbBudgets, Gauges, Info, WorkerLine, CONTENT_TYPE};

use crate::http::request::{Method, ParseError};
use crate::http::route::{Shed, SHED_REASONS};

/// Upper bounds of the latency histogram buckets, in nanoseconds (100 µs … 10 s).
pub(crate) const BUCKETS_NS: [u64; 16] = [
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];

labelled! {
    /// Why a connection did not get served at once (http_connections_rejected_total).
    pub(crate) enum Reject / REJECT_REASONS {
        MaxConnections = "max_connections",
        FdExhausted = "fd_exhausted",
        NoMemory = "no_memory",
    }
}

labelled! {
    /// Why a request was refused before it reached a handler (http_parse_errors_total).
    pub(crate) enum Refused / PARSE_ERRORS {
        BadRequest = "bad_request",
        HeadTooLarge = "head_too_large",
        UriTooLong = "uri_too_long",
        BodyTooLarge = "body_too_large",
        TransferCoding = "transfer_coding",
        Version = "version",
        Expectation = "expectation",
        /// Not whole within SERVER_READ_TIMEOUT (408).
        Timeout = "timeout",
        /// Its body would pass MAX_BODY_MEMORY (503 before the body is read).
        BodyMemory = "body_memory",
    }
}

impl From<ParseError> for Refused {
    fn from(e: ParseError) -> Refused {
        match e {
            ParseError::Bad(_) => Refused::BadRequest,
            ParseError::HeadTooLarge => Refused::HeadTooLarge,
            ParseError::UriTooLong => Refused::UriTooLong,
            ParseError::BodyTooLarge => Refused::BodyTooLarge,
            ParseError::UnknownTransferCoding => Refused::TransferCoding,
            ParseError::UnsupportedVersion => Refused::Version,
            ParseError::UnknownExpectation => Refused::Expectation,
        }
    }
}

labelled! {
    /// How a database call failed (db_errors_total).
    pub(crate) enum DbFailure / DB_ERRORS {
        QueueFull = "queue_full",
        Unavailable = "unavailable",
        /// The request's budget ran out: its job skipped or its statement cancelled
        /// (db_jobs_skipped_total and db_statements_cancelled_total say which).
        Deadline = "deadline",
        Conflict = "conflict",
        Internal = "internal",
        /// The request stopped waiting (timeout, client gone) before the reply.
        Abandoned = "abandoned",
    }
}

/// Label for requests that matched no route.
pub(crate) const UNMATCHED: &str = "unmatched";

/// The label values of the families whose labels the application defines: its route
/// patterns (a request's route slot is its position here) and its database jobs' names.
/// Given at start-up, so no client can add a series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Labels {
    pub(crate) routes: &'static [&'static str],
    pub(crate) jobs: &'static [&'static str],
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Histogram {
    /// Observations per bucket (not cumulative); beyond the last bound only `count` knows.
    pub(crate) buckets: [u64; BUCKETS_NS.len()],
    pub(crate) sum_ns: u64,
    pub(crate) count: u64,
}

impl Histogram {
    pub(crate) fn observe(&mut self, ns: u64) {
        self.observe_n(ns, 1);
    }

    /// `n` observations of `ns` each.
    pub(crate) fn observe_n(&mut self, ns: u64, n: u64) {
        let i = BUCKETS_NS.partition_point(|&bound| bound < ns);
        if let Some(b) = self.buckets.get_mut(i) {
            *b += n;
        }
        self.sum_ns += ns * n;
        self.count += n;
    }

    pub(crate) fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.buckets.iter_mut().zip(other.buckets) {
            *a += b;
        }
        self.sum_ns += other.sum_ns;
        self.count += other.count;
    }
}

/// Requests of one (route, method): counts by status, and their durations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RouteCell {
    pub(crate) statuses: Vec<(u16, u64)>,
    pub(crate) duration: Histogram,
}

impl RouteCell {
    fn count(&mut self, status: u16, n: u64) {
        match self.statuses.iter_mut().find(|(s, _)| *s == status) {
            Some((_, count)) => *count += n,
            None => self.statuses.push((status, n)),
        }
    }
}

/// One worker's numbers. Only its own thread touches them.
pub(crate) struct WorkerMetrics {
    labels: Labels,
    routes: RefCell<Vec<RouteCell>>,
    in_flight: Cell<i64>,
    accepted: Cell<u64>,
    rejected: [Cell<u64>; REJECT_REASONS.len()],
    parse_errors: [Cell<u64>; PARSE_ERRORS.len()],
    panics: Cell<u64>,
    writes: Cell<u64>,
    rebalanced: Cell<u64>,
    db_wait: RefCell<Histogram>,
    db_query: RefCell<Vec<Histogram>>,
    db_batched: Cell<u64>,
    db_errors: [Cell<u64>; DB_ERRORS.len()],
    /// Requests for the store refused at the door, by reason ([`Shed`]).
    shed: [Cell<u64>; SHED_REASONS.len()],
    /// How late the loop's lag timer fired (net/lag.rs), while requests for the store came.
    loop_lag: RefCell<Histogram>,
    /// Caller-stated budgets honoured, and ones that did not parse (ignored).
    budgets: [Cell<u64>; 2],
    /// Requests of the current batch, recorded at its end: (route slot, status, how many).
    deferred: RefCell<Vec<(usize, u16, u64)>>,
}

impl WorkerMetrics {
    pub(crate) fn new(labels: Labels) -> Self {
        WorkerMetrics {
            labels,
            routes: RefCell::new(vec![RouteCell::default(); (labels.routes.len() + 1) * Method::ALL.len()]),
            in_flight: Cell::new(0),
            accepted: Cell::new(0),
            rejected: Default::default(),
            parse_errors: Default::default(),
            panics: Cell::new(0),
            writes: Cell::new(0),
            rebalanced: Cell::new(0),
            db_wait: RefCell::new(Histogram::default()),
            db_query: RefCell::new(vec![Histogram::default(); labels.jobs.len()]),
            db_batched: Cell::new(0),
            db_errors: Default::default(),
            shed: Default::default(),
            loop_lag: RefCell::new(Histogram::default()),
            budgets: Default::default(),
            deferred: RefCell::new(Vec::new()),
        }
    }
}

/// The (route, method) cell; a `None` route is `unmatched`, after the routes.
#[inline(always)]
fn cell(labels: &Labels, route: Option<usize>, method: Method) -> usize {
    let r = route.unwrap_or(labels.routes.len());
    r * Method::ALL.len() + method.index()
}

fn bump(c: &Cell<u64>) {
    c.set(c.get() + 1);
}

impl WorkerMetrics {
    /// A request answered with `status` after `ns` nanoseconds of handling.
    /// `route` is the route's slot ([`Labels::routes`]), `None` for no route.
    pub(crate) fn request(&self, route: Option<usize>, method: Method, status: u16, ns: u64) {
        if cfg!(feature = "metrics") {
            let mut routes = self.routes.borrow_mut();
            let cell = &mut routes[cell(&self.labels, route, method)];
            cell.count(status, 1);
            cell.duration.observe(ns);
        }
    }

    /// The label values this worker counts under.
    pub(crate) fn labels(&self) -> Labels {
        self.labels
    }

    /// A request answered with `status` whose duration is its batch's: counted, with that
    /// duration, by [`Self::settle`] — before its response is written, so a client never
    /// sees an answer that a scrape would not count. A run of alike requests (a pipelined
    /// batch) costs one comparison and one addition each.
    pub(crate) fn request_deferred(&self, route: Option<usize>, method: Method, status: u16) {
        if cfg!(feature = "metrics") {
            let slot = cell(&self.labels, route, method);
            let mut deferred = self.deferred.borrow_mut();
            match deferred.last_mut() {
                Some((s, st, n)) if *s == slot && *st == status => *n += 1,
                _ => deferred.push((slot, status, 1)),
            }
        }
    }

    /// The batch is answered after `ns`: counts its deferred requests with that duration.
    pub(crate) fn settle(&self, ns: u64) {
        if cfg!(feature = "metrics") {
            let mut routes = self.routes.borrow_mut();
            for (slot, status, n) in self.deferred.borrow_mut().drain(..) {
                let cell = &mut routes[slot];
                cell.count(status, n);
                cell.duration.observe_n(ns, n);
            }
        }
    }

    /// Whether requests wait for [`Self::settle`].
    pub(crate) fn has_deferred(&self) -> bool {
        cfg!(feature = "metrics") && !self.deferred.borrow().is_empty()
    }

    pub(crate) fn request_started(&self) {
        if cfg!(feature = "metrics") {
            self.in_flight.set(self.in_flight.get() + 1);
        }
    }

    pub(crate) fn request_finished(&self) {
        if cfg!(feature = "metrics") {
            self.in_flight.set(self.in_flight.get() - 1);
        }
    }

    pub(crate) fn accepted(&self) {
        if cfg!(feature = "metrics") {
            bump(&self.accepted);
        }
    }

    pub(crate) fn rejected(&self, why: Reject) {
        if cfg!(feature = "metrics") {
            bump(&self.rejected[why as usize]);
        }
    }

    /// A request refused before routing.
    pub(crate) fn parse_error(&self, why: Refused) {
        if cfg!(feature = "metrics") {
            bump(&self.parse_errors[why as usize]);
        }
    }

    pub(crate) fn panic(&self) {
        if cfg!(feature = "metrics") {
            bump(&self.panics);
        }
    }

    /// A connection this worker accepted went to a worker with fewer (CONN_BALANCE=exact).
    pub(crate) fn rebalanced(&self) {
        if cfg!(feature = "metrics") {
            bump(&self.rebalanced);
        }
    }

    /// One write of a response batch to a socket.
    pub(crate) fn write(&self) {
        if cfg!(feature = "metrics") {
            bump(&self.writes);
        }
    }

    /// A database job came back: how long it queued, how long it ran, and whether one
    /// query answered it together with other waiting reads.
    pub(crate) fn db_job(&self, job: usize, waited_ns: u64, ran_ns: u64, batched: bool) {
        if cfg!(feature = "metrics") {
            if batched {
                bump(&self.db_batched);
            }
            self.db_wait.borrow_mut().observe(waited_ns);
            if let Some(h) = self.db_query.borrow_mut().get_mut(job) {
                h.observe(ran_ns);
            }
        }
    }

    /// A request for the store refused at the door, and why.
    pub(crate) fn shed(&self, why: Shed) {
        if cfg!(feature = "metrics") {
            bump(&self.shed[why as usize]);
        }
    }

    /// How late the loop ran, measured by its lag timer.
    pub(crate) fn loop_lag(&self, ns: u64) {
        if cfg!(feature = "metrics") {
            self.loop_lag.borrow_mut().observe(ns);
        }
    }

    /// A caller stated a budget: honoured (`valid`), or ignored because it did not parse.
    pub(crate) fn budget(&self, valid: bool) {
        if cfg!(feature = "metrics") {
            bump(&self.budgets[usize::from(!valid)]);
        }
    }

    pub(crate) fn db_failure(&self, why: DbFailure) {
        if cfg!(feature = "metrics") {
            bump(&self.db_errors[why as usize]);
        }
    }

    /// A copy of everything, to send to the worker that serves the scrape.
    pub(crate) fn snapshot(&self, connections_open: usize) -> Snapshot {
        Snapshot {
            labels: self.labels,
            worker: 0,
            routes: self.routes.borrow().clone(),
            in_flight: self.in_flight.get(),
            connections_open: connections_open as u64,
            accepted: self.accepted.get(),
            rejected: self.rejected.iter().map(Cell::get).collect(),
            parse_errors: self.parse_errors.iter().map(Cell::get).collect(),
            panics: self.panics.get(),
            writes: self.writes.get(),
            rebalanced: self.rebalanced.get(),
            db_wait: self.db_wait.borrow().clone(),
            db_query: self.db_query.borrow().clone(),
            db_batched: self.db_batched.get(),
            db_errors: self.db_errors.iter().map(Cell::get).collect(),
            shed: self.shed.iter().map(Cell::get).collect(),
            loop_lag: self.loop_lag.borrow().clone(),
            budgets: [self.budgets[0].get(), self.budgets[1].get()],
        }
    }
}

/// One worker's numbers at a moment, or the sum of several workers'.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Snapshot {
    pub(crate) labels: Labels,
    /// The worker it came from (set by the worker answering the scrape).
    pub(crate) worker: usize,
    pub(crate) routes: Vec<RouteCell>,
    pub(crate) in_flight: i64,
    pub(crate) connections_open: u64,
    pub(crate) accepted: u64,
    pub(crate) rejected: Vec<u64>,
    pub(crate) parse_errors: Vec<u64>,
    pub(crate) panics: u64,
    pub(crate) writes: u64,
    pub(crate) rebalanced: u64,
    pub(crate) db_wait: Histogram,
    pub(crate) db_query: Vec<Histogram>,
    pub(crate) db_batched: u64,
    pub(crate) db_errors: Vec<u64>,
    /// Requests for the store refused at the door, by [`Shed`] reason.
    pub(crate) shed: Vec<u64>,
    pub(crate) loop_lag: Histogram,
    /// Caller-stated budgets: honoured, invalid.
    pub(crate) budgets: [u64; 2],
}

impl Snapshot {
    /// Requests answered, all routes and statuses.
    pub(crate) fn requests(&self) -> u64 {
        self.routes.iter().flat_map(|r| &r.statuses).map(|&(_, n)| n).sum()
    }

    /// The sum of the workers' snapshots, which share their labels.
    pub(crate) fn merge(labels: Labels, parts: &[Snapshot]) -> Snapshot {
        let mut total = WorkerMetrics::new(labels).snapshot(0);
        for p in parts {
            for (t, r) in total.routes.iter_mut().zip(&p.routes) {
                for &(status, n) in &r.statuses {
                    match t.statuses.iter_mut().find(|(s, _)| *s == status) {
                        Some((_, m)) => *m += n,
                        None => t.statuses.push((status, n)),
                    }
                }
                t.duration.merge(&r.duration);
            }
            total.in_flight += p.in_flight;
            total.connections_open += p.connections_open;
            total.accepted += p.accepted;
            add(&mut total.rejected, &p.rejected);
            add(&mut total.parse_errors, &p.parse_errors);
            total.panics += p.panics;
            total.writes += p.writes;
            total.rebalanced += p.rebalanced;
            total.db_wait.merge(&p.db_wait);
            for (t, h) in total.db_query.iter_mut().zip(&p.db_query) {
                t.merge(h);
            }
            total.db_batched += p.db_batched;
            add(&mut total.db_errors, &p.db_errors);
            add(&mut total.shed, &p.shed);
            total.loop_lag.merge(&p.loop_lag);
            add(&mut total.budgets, &p.budgets);
        }
        for r in &mut total.routes {
            r.statuses.sort_unstable();
        }
        total
    }
}

fn add(total: &mut [u64], part: &[u64]) {
    for (t, p) in total.iter_mut().zip(part) {
        *t += p;
    }
}

/// A scrape's request to one worker: post your snapshot to this doorbell.
pub(crate) struct SnapshotRequest(pub std::sync::Arc<crate::doorbell::Doorbell<Snapshot>>);

#[cfg(all(test, feature = "metrics"))]
mod tests {
    use super::*;

    const LABELS: Labels = Labels { routes: &["/health", "/plaintext"], jobs: &["get_user"] };
    const HEALTH: Option<usize> = Some(0);
    const PLAINTEXT: Option<usize> = Some(1);

    fn slot(route: Option<usize>, method: Method) -> usize {
        cell(&LABELS, route, method)
    }

    #[test]
    fn histogram_buckets() {
        let mut h = Histogram::default();
        for ns in [50_000, 100_000, 100_001, 3_000_000, 20_000_000_000] {
            h.observe(ns);
        }
        assert_eq!(h.buckets[0], 2, "≤ 100 µs, the bound is inclusive");
        assert_eq!(h.buckets[1], 1);
        assert_eq!(h.buckets[5], 1, "3 ms ≤ 5 ms");
        assert_eq!(h.count, 5, "the 20 s one is only in +Inf");
        assert_eq!(h.buckets.iter().sum::<u64>(), 4);
    }

    #[test]
    fn snapshots_merge_by_label() {
        let a = WorkerMetrics::new(LABELS);
        let b = WorkerMetrics::new(LABELS);
        a.request(HEALTH, Method::Get, 200, 1000);
        a.request(HEALTH, Method::Get, 200, 1000);
        b.request(HEALTH, Method::Get, 200, 1000);
        b.request(HEALTH, Method::Get, 503, 1000);
        b.request(None, Method::Get, 404, 1000);
        a.parse_error(Refused::Version);
        b.parse_error(Refused::Timeout);
        let total = Snapshot::merge(LABELS, &[a.snapshot(3), b.snapshot(4)]);
        let health = &total.routes[slot(HEALTH, Method::Get)];
        assert_eq!(health.statuses, vec![(200, 3), (503, 1)]);
        assert_eq!(health.duration.count, 4);
        assert_eq!(total.routes[slot(None, Method::Get)].statuses, vec![(404, 1)]);
        assert_eq!(total.connections_open, 7);
        assert_eq!(total.parse_errors.iter().sum::<u64>(), 2);
    }

    #[test]
    fn deferred_requests_take_their_batch_duration() {
        let m = WorkerMetrics::new(LABELS);
        for _ in 0..3 {
            m.request_deferred(PLAINTEXT, Method::Get, 200);
        }
        m.request_deferred(None, Method::Get, 404);
        assert!(m.has_deferred());
        let before = m.snapshot(0);
        let plain_before = &before.routes[slot(PLAINTEXT, Method::Get)];
        assert_eq!((plain_before.duration.count, plain_before.statuses.len()), (0, 0), "not before the end");
        m.settle(300_000);
        assert!(!m.has_deferred());
        let s = m.snapshot(0);
        let plain = &s.routes[slot(PLAINTEXT, Method::Get)];
        assert_eq!(plain.statuses, vec![(200, 3)]);
        assert_eq!((plain.duration.count, plain.duration.sum_ns), (3, 900_000));
        assert_eq!(plain.duration.buckets[2], 3, "300 µs falls in the ≤ 500 µs bucket");
        assert_eq!(s.routes[slot(None, Method::Get)].duration.count, 1);
        m.settle(1);
        assert_eq!(m.snapshot(0).routes[slot(None, Method::Get)].duration.count, 1, "settled once only");
    }
}
