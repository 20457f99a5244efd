//! What /debug/pprof/workers shows, gathered when it is asked for. Live connections come
//! from the balance counts, requests from each worker's metrics snapshot (asked for over
//! the same doorbell /metrics uses, waited for on the debug thread), and the pinning from
//! the CPU plan. The page itself, with each thread's CPU clock, is drawn in
//! [`crate::obs::profiler`].

use std::sync::Arc;
use std::task::{Wake, Waker};
use std::time::{Duration, Instant};

use crate::app::Env;
use crate::doorbell::Doorbell;
use crate::net::shared::Shared;
use crate::obs::metrics::{Snapshot, SnapshotRequest};
use crate::obs::profiler::{Status, StatusSource, WorkerRow};

/// A worker that has not answered by then shows no request count.
const GATHER_TIMEOUT: Duration = Duration::from_secs(2);

/// The source the debug listener calls for the page.
pub(crate) fn source(env: Arc<Env>, shared: Arc<Shared>, pinned_cpus: Vec<Option<usize>>) -> StatusSource {
    Arc::new(move || gather(&env, &shared, &pinned_cpus))
}

fn gather(env: &Env, shared: &Shared, pinned_cpus: &[Option<usize>]) -> Status {
    let parts = snapshots(env);
    let workers = (0..env.scrapes.len())
        .map(|worker| WorkerRow {
            worker,
            pinned_cpu: pinned_cpus.get(worker).copied().flatten(),
            connections: shared.balance.live(worker),
            requests: parts.iter().find(|s| s.worker == worker).map(Snapshot::requests),
        })
        .collect();
    Status { io_driver: env.io_driver, workers }
}

/// Unparks the waiting debug thread when a worker answers.
struct Unpark(std::thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

fn snapshots(env: &Env) -> Vec<Snapshot> {
    let replies = Arc::new(Doorbell::default());
    for worker in env.scrapes.iter() {
        worker.post(SnapshotRequest(replies.clone()));
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let deadline = Instant::now() + GATHER_TIMEOUT;
    let mut parts = Vec::with_capacity(env.scrapes.len());
    loop {
        replies.drain(&waker, |s| parts.push(s));
        if parts.len() >= env.scrapes.len() {
            break;
        }
        match deadline.checked_duration_since(Instant::now()) {
            Some(left) if !left.is_zero() => std::thread::park_timeout(left),
            _ => break,
        }
    }
    parts
}
