//! Prometheus text exposition format 0.0.4: every family with HELP and TYPE, histograms
//! with cumulative `le` buckets, `_sum` and `_count`. Pure: numbers in, text out.

use std::fmt::Write;

use super::{DbFailure, Histogram, Process, Snapshot, BUCKETS_NS, DB_ERRORS, PARSE_ERRORS, REJECT_REASONS, UNMATCHED};
use crate::http::request::Method;
use crate::http::route::SHED_REASONS;
use crate::tls::stats::{TlsCounts, FAILURE_REASONS, HANDSHAKE_KINDS};

pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What the process is: `percore_info` and `percore_workers`.
pub(crate) struct Info<'a> {
    pub(crate) version: &'a str,
    pub(crate) io_driver: &'a str,
    pub(crate) store: &'a str,
    pub(crate) workers: usize,
}

/// Gauges read at scrape time, outside the workers.
pub(crate) struct Gauges {
    pub(crate) db_queue_depth: usize,
    /// Parked pool threads woken for a job (db/queue.rs).
    pub(crate) db_wakeups: usize,
    pub(crate) db_connections: usize,
    pub(crate) db_threads: usize,
    /// Store failures by class label (SQLSTATE class, `io`, `sqlite`, `internal`).
    pub(crate) db_store_errors: Vec<(String, u64)>,
    pub(crate) db_deadlock_retries: u64,
    /// What the pool did with jobs and statements past their requests' budgets.
    pub(crate) db_budgets: DbBudgets,
    /// Per worker, in worker order: live client connections and requests answered.
    pub(crate) workers: Vec<WorkerLine>,
    /// CPU seconds each database pool thread has used, by pool thread number.
    pub(crate) db_threads_cpu: Vec<(usize, f64)>,
    /// The listener's TLS counters, when it speaks TLS.
    pub(crate) tls: Option<TlsCounts>,
}

/// One worker's line in the per-worker families.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct WorkerLine {
    pub(crate) connections: usize,
    pub(crate) requests: u64,
    /// The worker thread's own CPU clock (user + system), read from outside it.
    pub(crate) cpu_seconds: f64,
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A family with one unlabelled sample.
fn single(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    family(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

fn seconds(ns: u64) -> f64 {
    ns as f64 / 1e9
}

fn histogram(out: &mut String, name: &str, labels: &str, h: &Histogram) {
    let sep = if labels.is_empty() { "" } else { "," };
    let mut cumulative = 0;
    for (bound, n) in BUCKETS_NS.iter().zip(h.buckets) {
        cumulative += n;
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{}\"}} {cumulative}", seconds(*bound));
    }
    let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}", h.count);
    let braces = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
    let _ = writeln!(out, "{name}_sum{braces} {}", seconds(h.sum_ns));
    let _ = writeln!(out, "{name}_count{braces} {}", h.count);
}

/// The whole exposition.
pub(crate) fn render(out: &mut String, info: &Info<'_>, s: &Snapshot, gauges: &Gauges, p: &Process) {
    let methods = Method::ALL.len();
    let route_label = |i: usize| s.labels.routes.get(i).copied().unwrap_or(UNMATCHED);
    family(out, "http_requests_total", "counter", "HTTP requests answered, by method, route pattern and status.");
    for (i, cell) in s.routes.iter().enumerate() {
        for (status, n) in &cell.statuses {
            let (route, method) = (route_label(i / methods), Method::ALL[i % methods].as_str());
            let _ =
                writeln!(out, "http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {n}");
        }
    }
    family(
        out,
        "http_request_duration_seconds",
        "histogram",
        "Time from a request's last byte to its response, by method and route pattern.",
    );
    for (i, cell) in s.routes.iter().enumerate().filter(|(_, c)| c.duration.count > 0) {
        let labels = format!("method=\"{}\",route=\"{}\"", Method::ALL[i % methods].as_str(), route_label(i / methods));
        histogram(out, "http_request_duration_seconds", &labels, &cell.duration);
    }
    single(out, "http_requests_in_flight", "gauge", "Requests being handled now.", s.in_flight);
    single(out, "http_connections_open", "gauge", "Client connections open now.", s.connections_open);
    single(out, "http_connections_accepted_total", "counter", "Client connections accepted.", s.accepted);
    family(out, "http_connections_rejected_total", "counter", "Times accepting paused or failed, by reason.");
    for (reason, n) in REJECT_REASONS.iter().zip(&s.rejected) {
        let _ = writeln!(out, "http_connections_rejected_total{{reason=\"{reason}\"}} {n}");
    }
    family(
        out,
        "http_parse_errors_total",
        "counter",
        "Requests refused before routing (malformed, too large, timed out), by reason.",
    );
    for (reason, n) in PARSE_ERRORS.iter().zip(&s.parse_errors) {
        let _ = writeln!(out, "http_parse_errors_total{{reason=\"{reason}\"}} {n}");
    }
    single(out, "http_handler_panics_total", "counter", "Handlers that panicked (answered 500).", s.panics);
    family(
        out,
        "http_response_writes_total",
        "counter",
        "Writes of response batches to sockets (pipelined responses share one).",
    );
    let _ = writeln!(out, "http_response_writes_total {}", s.writes);

    single(out, "db_pool_queue_depth", "gauge", "Database jobs waiting for a pool thread.", gauges.db_queue_depth);
    single(
        out,
        "db_pool_wakeups_total",
        "counter",
        "Parked database pool threads woken for a job: at most one per burst of jobs.",
        gauges.db_wakeups,
    );
    single(out, "db_pool_threads", "gauge", "Database pool threads.", gauges.db_threads);
    single(
        out,
        "db_pool_connections",
        "gauge",
        "Database pool threads holding a working connection.",
        gauges.db_connections,
    );
    family(out, "db_pool_wait_seconds", "histogram", "Time database jobs waited in the queue.");
    histogram(out, "db_pool_wait_seconds", "", &s.db_wait);
    family(
        out,
        "percore_worker_loop_lag_seconds",
        "histogram",
        "How late the workers' loops ran (a timer's lateness, sampled while requests for the store come: every 1 ms with ADMISSION_LOOP_LAG=on, every 50 ms without): the wait of requests in socket buffers.",
    );
    histogram(out, "percore_worker_loop_lag_seconds", "", &s.loop_lag);
    family(out, "db_query_duration_seconds", "histogram", "Time database jobs ran on their connection, by job.");
    for (name, h) in s.labels.jobs.iter().zip(&s.db_query).filter(|(_, h)| h.count > 0) {
        histogram(out, "db_query_duration_seconds", &format!("query=\"{name}\""), h);
    }
    single(
        out,
        "db_batched_reads_total",
        "counter",
        "Database point reads answered by one query together with other waiting reads (DB_BATCH_READS).",
        s.db_batched,
    );
    family(out, "db_errors_total", "counter", "Database calls that failed, by kind.");
    for (kind, n) in DB_ERRORS.iter().zip(&s.db_errors) {
        let _ = writeln!(out, "db_errors_total{{kind=\"{kind}\"}} {n}");
    }

    family(
        out,
        "db_store_errors_total",
        "counter",
        "Failures the store reported, by SQLSTATE class (08 connection, 23 constraint, 26 unknown prepared statement, 40 rollback, ...), or io, sqlite, internal.",
    );
    for (class, n) in &gauges.db_store_errors {
        let _ = writeln!(out, "db_store_errors_total{{class=\"{class}\"}} {n}");
    }
    render_overload(out, s, &gauges.db_budgets);
    single(
        out,
        "db_deadlock_retries_total",
        "counter",
        "Statements sent again after Postgres chose them as a deadlock's victim (never seen by a client).",
        gauges.db_deadlock_retries,
    );

    single(out, "percore_workers", "gauge", "Per-core worker threads.", info.workers);
    family(out, "percore_worker_connections", "gauge", "Live client connections, by the worker serving them.");
    for (i, w) in gauges.workers.iter().enumerate() {
        let _ = writeln!(out, "percore_worker_connections{{worker=\"{i}\"}} {}", w.connections);
    }
    family(out, "percore_worker_requests_total", "counter", "Requests answered, by worker.");
    for (i, w) in gauges.workers.iter().enumerate() {
        let _ = writeln!(out, "percore_worker_requests_total{{worker=\"{i}\"}} {}", w.requests);
    }
    family(
        out,
        "percore_worker_cpu_seconds_total",
        "counter",
        "CPU time (user + system) each worker thread has used, from the thread's own clock.",
    );
    for (i, w) in gauges.workers.iter().enumerate() {
        let _ = writeln!(out, "percore_worker_cpu_seconds_total{{worker=\"{i}\"}} {}", w.cpu_seconds);
    }
    family(
        out,
        "percore_db_thread_cpu_seconds_total",
        "counter",
        "CPU time (user + system) each database pool thread has used.",
    );
    for (i, cpu) in &gauges.db_threads_cpu {
        let _ = writeln!(out, "percore_db_thread_cpu_seconds_total{{thread=\"{i}\"}} {cpu}");
    }
    single(
        out,
        "percore_connections_rebalanced_total",
        "counter",
        "Connections a worker accepted and handed to a worker with fewer (CONN_BALANCE=exact).",
        s.rebalanced,
    );
    if let Some(tls) = &gauges.tls {
        render_tls(out, tls);
    }
    family(out, "percore_info", "gauge", "Build and runtime facts; always 1.");
    let _ = writeln!(
        out,
        "percore_info{{version=\"{}\",io_driver=\"{}\",store=\"{}\"}} 1",
        info.version, info.io_driver, info.store
    );

    single(out, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", p.resident_bytes);
    single(out, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", p.virtual_bytes);
    single(
        out,
        "process_cpu_seconds_total",
        "counter",
        "Total user and system CPU time spent in seconds.",
        p.cpu_seconds,
    );
    single(out, "process_open_fds", "gauge", "Number of open file descriptors.", p.open_fds);
    single(out, "process_max_fds", "gauge", "Maximum number of open file descriptors.", p.max_fds);
    single(
        out,
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since unix epoch in seconds.",
        p.start_time_seconds,
    );
}

/// The pool's view of overload and budgets: jobs past their budget never sent, statements
/// cancelled at it, the bound on work in flight.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct DbBudgets {
    /// Jobs not run because their request had gone (timed out, client left).
    pub(crate) skipped_abandoned: u64,
    /// Jobs not run because their request's budget ran out while they queued.
    pub(crate) skipped_deadline: u64,
    /// Statements cancelled by a cancel request at their request's deadline.
    pub(crate) cancel_requests: u64,
    /// Statements Postgres cancelled at statement_timeout (HANDLER_TIMEOUT).
    pub(crate) statement_timeouts: u64,
    /// Jobs the pool keeps in flight on the store at most.
    pub(crate) inflight_limit: u64,
}

/// Refusals at the door, budgets, skipped jobs and cancelled statements.
fn render_overload(out: &mut String, s: &Snapshot, b: &DbBudgets) {
    family(
        out,
        "db_admission_refusals_total",
        "counter",
        "Requests for the store refused with 503 before any work: standing_queue (jobs waited above ADMISSION_TARGET for an interval), loop_lag (a worker's loop ran that late, ADMISSION_LOOP_LAG=on), queue_full (DB_QUEUE_DEPTH).",
    );
    for (reason, n) in SHED_REASONS.iter().zip(&s.shed) {
        let _ = writeln!(out, "db_admission_refusals_total{{reason=\"{reason}\"}} {n}");
    }
    let _ = writeln!(
        out,
        "db_admission_refusals_total{{reason=\"queue_full\"}} {}",
        s.db_errors[DbFailure::QueueFull as usize]
    );
    family(
        out,
        "http_request_budgets_total",
        "counter",
        "Budgets callers stated (x-envoy-expected-rq-timeout-ms, grpc-timeout): honoured, or invalid and ignored.",
    );
    let _ = writeln!(out, "http_request_budgets_total{{result=\"honoured\"}} {}", s.budgets[0]);
    let _ = writeln!(out, "http_request_budgets_total{{result=\"invalid\"}} {}", s.budgets[1]);
    family(out, "db_jobs_skipped_total", "counter", "Database jobs never sent to the store: their request had gone (abandoned) or its budget ran out in the queue (deadline).");
    let _ = writeln!(out, "db_jobs_skipped_total{{reason=\"abandoned\"}} {}", b.skipped_abandoned);
    let _ = writeln!(out, "db_jobs_skipped_total{{reason=\"deadline\"}} {}", b.skipped_deadline);
    family(out, "db_statements_cancelled_total", "counter", "Statements stopped on the server at their request's deadline: by a cancel request, or by statement_timeout (HANDLER_TIMEOUT).");
    let _ = writeln!(out, "db_statements_cancelled_total{{by=\"cancel_request\"}} {}", b.cancel_requests);
    let _ = writeln!(out, "db_statements_cancelled_total{{by=\"statement_timeout\"}} {}", b.statement_timeouts);
    single(
        out,
        "db_inflight_limit",
        "gauge",
        "Database jobs the pool keeps in flight on the store at most (pool threads x DB_PIPELINE_JOBS).",
        b.inflight_limit,
    );
}

/// The TLS listener's families.
fn render_tls(out: &mut String, tls: &TlsCounts) {
    single(
        out,
        "percore_tls_certificate_expiry_timestamp_seconds",
        "gauge",
        "When the certificate the listener serves expires (its not-after), in seconds since the epoch.",
        tls.expiry,
    );
    family(
        out,
        "percore_tls_certificate_reloads_total",
        "counter",
        "Changes of TLS_CERT_FILE/TLS_KEY_FILE/TLS_CLIENT_CA_FILE: loaded (ok) or refused, the previous pair kept (failed).",
    );
    let _ = writeln!(out, "percore_tls_certificate_reloads_total{{result=\"ok\"}} {}", tls.reloads);
    let _ = writeln!(out, "percore_tls_certificate_reloads_total{{result=\"failed\"}} {}", tls.reload_failures);
    family(out, "percore_tls_handshakes_total", "counter", "TLS handshakes completed, by version and resumption.");
    for ((version, resumed), n) in HANDSHAKE_KINDS.iter().zip(tls.handshakes) {
        let _ = writeln!(out, "percore_tls_handshakes_total{{version=\"{version}\",resumed=\"{resumed}\"}} {n}");
    }
    family(out, "percore_tls_handshake_failures_total", "counter", "TLS handshakes that did not complete, by reason.");
    for (reason, n) in FAILURE_REASONS.iter().zip(tls.failures) {
        let _ = writeln!(out, "percore_tls_handshake_failures_total{{reason=\"{reason}\"}} {n}");
    }
}

#[cfg(all(test, feature = "metrics"))]
mod tests {
    use super::*;
    use crate::obs::metrics::{Labels, WorkerMetrics};

    const LABELS: Labels = Labels { routes: &["/health", "/api/v1/users/{id}"], jobs: &["get_user"] };

    #[test]
    fn families_have_help_and_type_and_histograms_are_cumulative() {
        let m = WorkerMetrics::new(LABELS);
        m.request(Some(1), Method::Get, 200, 200_000);
        m.request(Some(1), Method::Get, 404, 2_000_000);
        m.request(None, Method::Post, 404, 1_000);
        let mut out = String::new();
        let info = Info { version: "0.1.0", io_driver: "io_uring", store: "sqlite", workers: 2 };
        let gauges = Gauges {
            db_queue_depth: 0,
            db_wakeups: 7,
            db_connections: 3,
            db_threads: 3,
            db_store_errors: vec![("26".into(), 2)],
            db_deadlock_retries: 1,
            db_budgets: DbBudgets { skipped_deadline: 4, inflight_limit: 48, ..DbBudgets::default() },
            workers: vec![WorkerLine { connections: 3, requests: 5, cpu_seconds: 1.25 }, WorkerLine::default()],
            db_threads_cpu: vec![(0, 0.5)],
            tls: Some(TlsCounts {
                expiry: 2_111_874_436,
                reloads: 1,
                failures: [0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0],
                ..TlsCounts::default()
            }),
        };
        render(&mut out, &info, &Snapshot::merge(LABELS, &[m.snapshot(1)]), &gauges, &Process::default());
        assert!(out.contains("http_requests_total{method=\"GET\",route=\"/api/v1/users/{id}\",status=\"200\"} 1\n"));
        assert!(out.contains("http_requests_total{method=\"POST\",route=\"unmatched\",status=\"404\"} 1\n"));
        assert!(out.contains(
            "http_request_duration_seconds_bucket{method=\"GET\",route=\"/api/v1/users/{id}\",le=\"0.00025\"} 1\n"
        ));
        assert!(out.contains(
            "http_request_duration_seconds_bucket{method=\"GET\",route=\"/api/v1/users/{id}\",le=\"0.0025\"} 2\n"
        ));
        assert!(out.contains(
            "http_request_duration_seconds_bucket{method=\"GET\",route=\"/api/v1/users/{id}\",le=\"+Inf\"} 2\n"
        ));
        assert!(out.contains("db_store_errors_total{class=\"26\"} 2\n"));
        assert!(out.contains("db_deadlock_retries_total 1\n"));
        assert!(out.contains("db_jobs_skipped_total{reason=\"deadline\"} 4\n"));
        assert!(out.contains("db_inflight_limit 48\n"));
        assert!(out.contains("db_pool_wakeups_total 7\n"));
        assert!(out.contains("db_admission_refusals_total{reason=\"standing_queue\"} 0\n"));
        assert!(out.contains("percore_worker_connections{worker=\"0\"} 3\n"));
        assert!(out.contains("percore_worker_requests_total{worker=\"1\"} 0\n"));
        assert!(out.contains("percore_connections_rebalanced_total 0\n"));
        assert!(out.contains("percore_worker_cpu_seconds_total{worker=\"0\"} 1.25\n"));
        assert!(out.contains("percore_db_thread_cpu_seconds_total{thread=\"0\"} 0.5\n"));
        assert!(out.contains("percore_info{version=\"0.1.0\",io_driver=\"io_uring\",store=\"sqlite\"} 1\n"));
        assert!(out.contains("percore_tls_certificate_expiry_timestamp_seconds 2111874436\n"));
        assert!(out.contains("percore_tls_certificate_reloads_total{result=\"ok\"} 1\n"));
        assert!(out.contains("percore_tls_handshakes_total{version=\"TLSv1.3\",resumed=\"true\"} 0\n"));
        assert!(out.contains("percore_tls_handshake_failures_total{reason=\"no_certificate\"} 3\n"));
        let families: Vec<&str> =
            out.lines().filter_map(|l| l.strip_prefix("# TYPE ")).map(|l| l.split(' ').next().unwrap()).collect();
        for name in families {
            assert!(out.contains(&format!("# HELP {name} ")), "{name} lacks HELP");
        }
    }
}
