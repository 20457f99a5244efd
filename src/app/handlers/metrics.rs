//! GET /metrics: asks every worker for its numbers, merges them, and renders the Prometheus
//! text format. The request path never waits on this: each worker answers from its own
//! task when its loop comes round, and nothing is locked while requests are counted.

use std::future::poll_fn;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use crate::doorbell::Doorbell;
use crate::http::response::Reply;
use crate::obs::metrics::{self, Gauges, Info, Process, Snapshot, SnapshotRequest};
use crate::runtime::worker::WorkerCtx;

/// A worker that has not answered by then is left out of this scrape (and logged).
const GATHER_TIMEOUT: Duration = Duration::from_secs(2);

pub async fn metrics(ctx: &WorkerCtx, reply: &mut Reply<'_>) {
    let shared = &ctx.shared;
    let replies = Arc::new(Doorbell::default());
    for worker in shared.snapshot_requests.iter() {
        worker.post(SnapshotRequest(replies.clone()));
    }
    let workers = shared.snapshot_requests.len();
    let mut parts: Vec<Snapshot> = Vec::with_capacity(workers);
    let gathered = monoio::time::timeout(
        GATHER_TIMEOUT,
        poll_fn(|cx| {
            replies.drain(cx.waker(), |s| parts.push(s));
            if parts.len() >= workers {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        }),
    )
    .await;
    if gathered.is_err() {
        log::warn!("metrics: only {} of {workers} workers answered within {GATHER_TIMEOUT:?}", parts.len());
    }
    let info =
        Info { version: env!("CARGO_PKG_VERSION"), io_driver: shared.driver.name(), store: shared.db.store, workers };
    let gauges = Gauges {
        db_queue_depth: shared.db.jobs.len(),
        db_connections: shared.db.health.connected(),
        db_threads: shared.db.threads,
        db_store_errors: shared.db.errors.by_class(),
        db_deadlock_retries: shared.db.errors.deadlock_retries(),
    };
    let mut body = String::with_capacity(16 * 1024);
    metrics::render(&mut body, &info, &Snapshot::merge(&parts), &gauges, &Process::read());
    reply.send(200, metrics::CONTENT_TYPE, body.as_bytes(), &[]);
}
