//! One core: its runtime, its application, its listener, its connections, and the tasks
//! beside them — the sweeper that enforces deadlines, the delivery of database replies and
//! the answers to metrics scrapes.
//!
//! Here the worker is assembled: the application ([`App`]) is handed to the connection
//! side ([`Core`]) as a concrete type, so the loop calls it without dynamic dispatch.

use std::io;
use std::net::TcpListener as StdListener;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use crate::app::{App, Env};
use crate::net::core::Core;
use crate::net::listener::{accept_loop, adopt};
use crate::net::shared::Shared;
use crate::net::timeouts::TICK;
use crate::obs::metrics::{Labels, SnapshotRequest, WorkerMetrics};
use crate::runtime::driver::{self, IoDriver};

/// The metrics' labels: the application's route patterns and job names.
pub(crate) const LABELS: Labels = Labels { routes: crate::app::routes::Route::PATTERNS, jobs: crate::db::Job::NAMES };

/// Runs worker `id` on the current thread until it has drained. `started` is called once
/// the runtime is up.
pub(crate) fn run(
    id: usize,
    driver: IoDriver,
    env: Arc<Env>,
    shared: Arc<Shared>,
    listener: StdListener,
    started: impl FnOnce(),
) -> io::Result<()> {
    driver::block_on(driver, async move {
        let metrics = Rc::new(WorkerMetrics::new(LABELS));
        let app = App::new(id, env.clone(), metrics.clone());
        let core = Rc::new(Core::new(id, shared, app, metrics));
        started();
        monoio::spawn(sweeper(core.clone()));
        monoio::spawn(core.service.db.clone().deliver_replies());
        monoio::spawn(answer_snapshot_requests(core.clone(), env));
        monoio::spawn(adopt(core.clone()));
        monoio::spawn(crate::net::lag::watch(core.clone()));
        // io_uring completes one accept a loop turn: the accept loop takes the rest of the
        // backlog itself. The epoll driver's accept already takes it until EAGAIN.
        let one_accept_a_turn = matches!(driver, IoDriver::IoUring(_));
        accept_loop(core.clone(), listener, one_accept_a_turn).await;
        core.start_draining();
        // Counted, not registered: a connection is counted on this worker from the moment
        // it is accepted (or handed over), while its task registers only when first polled.
        // Waiting on the registry let the worker end with the drain's last accepts spawned
        // but never run, closing them with their requests unread — a reset for the client.
        while core.shared.balance.live(id) > 0 || core.shared.balance.inbox(id).is_pending() {
            monoio::time::sleep(Duration::from_millis(20)).await;
        }
        log::debug!("worker {id}: drained");
    })
}

/// Every tick: notice the drain, and cut connections past their deadlines.
async fn sweeper(core: Rc<Core<App>>) {
    let mut overdue = Vec::new();
    loop {
        monoio::time::sleep(TICK).await;
        if core.shared.is_draining() {
            core.start_draining();
        }
        core.sweep(crate::clock::now_ms(), &mut overdue);
        if let Some(log) = &core.access_log {
            log.flush();
        }
    }
}

/// Answers metrics scrapes (from any worker) with this worker's numbers.
async fn answer_snapshot_requests(core: Rc<Core<App>>, env: Arc<Env>) {
    std::future::poll_fn(|cx| {
        env.scrapes[core.id].drain(cx.waker(), |SnapshotRequest(reply)| {
            let mut snapshot = core.metrics.snapshot(core.conns.borrow().len());
            snapshot.worker = core.id;
            reply.post(snapshot);
        });
        std::task::Poll::<()>::Pending
    })
    .await
}
