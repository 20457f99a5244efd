//! GET /metrics: asks every worker for its numbers, merges them, and renders the Prometheus
//! text format. The request path never waits on this: each worker answers from its own
//! task when its loop comes round, and nothing is locked while requests are counted.

use std::future::poll_fn;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use crate::app::App;
use crate::doorbell::Doorbell;
use crate::http::response::Reply;
use crate::http::route::RequestView;
use crate::obs::metrics::{self, Gauges, Info, Process, Snapshot, SnapshotRequest, WorkerLine};
use crate::obs::threads::{self, Role};

/// A worker that has not answered by then is left out of this scrape (and logged).
const GATHER_TIMEOUT: Duration = Duration::from_secs(2);

pub(crate) async fn metrics(ctx: &App, _: RequestView<'_>, reply: &mut Reply<'_>) {
    let env = &ctx.env;
    let replies = Arc::new(Doorbell::default());
    for worker in env.scrapes.iter() {
        worker.post(SnapshotRequest(replies.clone()));
    }
    let workers = env.scrapes.len();
    let mut parts: Vec<Snapshot> = Vec::with_capacity(workers);
    // Boxed: a monoio timer is aligned to 128 bytes and over a kilobyte with this wait, and
    // held inline it would make every waiting route's boxed future that large.
    let gathered = Box::pin(monoio::time::timeout(
        GATHER_TIMEOUT,
        poll_fn(|cx| {
            replies.drain(cx.waker(), |s| parts.push(s));
            if parts.len() >= workers {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        }),
    ))
    .await;
    if gathered.is_err() {
        log::warn!("metrics: only {} of {workers} workers answered within {GATHER_TIMEOUT:?}", parts.len());
    }
    let info = Info { version: env!("CARGO_PKG_VERSION"), io_driver: env.io_driver, store: env.pool.store, workers };
    let gauges = Gauges {
        db_queue_depth: env.pool.jobs.len(),
        db_wakeups: env.pool.jobs.wakes(),
        db_connections: env.pool.health.connected(),
        db_threads: env.pool.threads,
        db_store_errors: env.pool.errors.by_class(),
        db_deadlock_retries: env.pool.errors.deadlock_retries(),
        db_budgets: env.pool.budget_counts(),
        workers: per_worker(&parts, workers),
        db_threads_cpu: threads::db_threads_cpu(),
        tls: env.tls.as_ref().map(|tls| tls.stats.read()),
    };
    let mut body = String::with_capacity(16 * 1024);
    metrics::render(&mut body, &info, &Snapshot::merge(ctx.metrics.labels(), &parts), &gauges, &Process::read());
    reply.send(200, metrics::CONTENT_TYPE, body.as_bytes(), &[]);
}

/// Each worker's live connections, requests and CPU, in worker order (a worker that did not
/// answer in time reads zero connections and requests).
fn per_worker(parts: &[Snapshot], workers: usize) -> Vec<WorkerLine> {
    let mut lines: Vec<WorkerLine> = (0..workers)
        .map(|i| WorkerLine {
            cpu_seconds: threads::cpu_seconds_of(Role::Worker(i)).unwrap_or(0.0),
            ..WorkerLine::default()
        })
        .collect();
    for part in parts {
        if let Some(line) = lines.get_mut(part.worker) {
            line.connections = part.connections_open as usize;
            line.requests = part.requests();
        }
    }
    lines
}
