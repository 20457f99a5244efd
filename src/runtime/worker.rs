//! One core: its runtime, its listener, its connections, and the sweeper that enforces
//! their deadlines.
//!
//! Everything a request touches lives here, per worker, in plain `Cell`/`RefCell` memory:
//! the router, the buffer pool, the Date cache, the serialization scratch buffer and the
//! registry of open connections. No lock and no atomic on the request path.

use std::cell::{Cell, RefCell};
use std::io;
use std::net::TcpListener as StdListener;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use monoio::io::{CancelHandle, Canceller};
use slab::Slab;

use crate::app::routes::Router;
use crate::db::DbClient;
use crate::http::date::DateCache;
use crate::http::request::Limits;
use crate::net::buffers::{BufferPool, READ_BUFFER, WRITE_BUFFER};
use crate::net::listener::accept_loop;
use crate::net::timeouts::{ConnCtl, TICK};
use crate::obs::access_log::AccessLog;
use crate::obs::metrics::{SnapshotRequest, WorkerMetrics};
use crate::obs::request_id;
use crate::runtime::driver;
use crate::runtime::shared::Shared;

/// The per-worker state every connection task of this worker holds an `Rc` to.
pub struct WorkerCtx {
    pub id: usize,
    pub shared: Arc<Shared>,
    pub router: Router,
    pub limits: Limits,
    pub date: DateCache,
    pub read_buffers: BufferPool,
    pub write_buffers: BufferPool,
    /// For serializing bodies; borrowed only within one synchronous call.
    pub scratch: RefCell<Vec<u8>>,
    /// Open connections, for the sweeper.
    pub conns: RefCell<Slab<Rc<ConnCtl>>>,
    /// This worker has seen the drain begin: no more accepts, responses say close.
    pub draining: Cell<bool>,
    accept_canceller: RefCell<Canceller>,
    pub timeouts: Timeouts,
    /// This worker's side of the database pool.
    pub db: Rc<DbClient>,
    /// simd-json's parse buffers, reused for every request body.
    pub json_buffers: RefCell<simd_json::Buffers>,
    pub metrics: Rc<WorkerMetrics>,
    pub ids: request_id::Generator,
    pub access_log: Option<AccessLog>,
    /// xorshift state for the benchmark routes' random ids.
    rng: Cell<u64>,
}

/// The configured timeouts, copied out of the config for the connection loop.
#[derive(Clone, Copy)]
pub struct Timeouts {
    pub read: Duration,
    pub write: Duration,
    pub idle: Duration,
    pub handler: Duration,
}

impl WorkerCtx {
    pub fn new(id: usize, shared: Arc<Shared>) -> WorkerCtx {
        let c = &shared.config;
        let metrics = Rc::new(WorkerMetrics::default());
        WorkerCtx {
            id,
            router: Router { bench_routes: c.bench_routes },
            limits: Limits { max_head: c.max_header_bytes, max_body: c.max_body_bytes },
            timeouts: Timeouts {
                read: c.read_timeout,
                write: c.write_timeout,
                idle: c.idle_timeout,
                handler: c.handler_timeout,
            },
            date: DateCache::default(),
            read_buffers: BufferPool::new(READ_BUFFER),
            write_buffers: BufferPool::new(WRITE_BUFFER),
            scratch: RefCell::new(Vec::with_capacity(1024)),
            conns: RefCell::new(Slab::new()),
            draining: Cell::new(false),
            accept_canceller: RefCell::new(Canceller::new()),
            db: DbClient::new(shared.db.clone(), id, metrics.clone()),
            json_buffers: RefCell::new(simd_json::Buffers::default()),
            ids: request_id::Generator::new(shared.id_seed, id),
            access_log: shared.access_log.clone().map(|w| AccessLog::new(c.log_format, w)),
            rng: Cell::new((shared.id_seed ^ ((id as u64) << 32)) | 1),
            metrics,
            shared,
        }
    }

    /// A random TechEmpower world id, 1–10,000 (xorshift64*: cheap, per worker).
    pub fn random_world(&self) -> i32 {
        let mut x = self.rng.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng.set(x);
        (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as i32 % 10_000 + 1
    }

    /// Whether responses should close their connections: this worker has started draining,
    /// or the signal has just arrived and the sweeper has not passed yet.
    pub fn is_draining(&self) -> bool {
        self.draining.get() || self.shared.is_draining()
    }

    pub fn accept_handle(&self) -> CancelHandle {
        self.accept_canceller.borrow().handle()
    }

    /// Enters the drain on this worker: stop accepting; the sweeper closes idle connections
    /// and responses carry `Connection: close` from now on.
    pub fn start_draining(&self) {
        if !self.draining.replace(true) {
            let old = self.accept_canceller.take();
            *self.accept_canceller.borrow_mut() = old.cancel();
        }
    }

    /// Cuts the I/O of every connection that is overdue. Collects first, cuts after, so no
    /// borrow of the registry is held while a cancellation runs.
    fn sweep(&self, now: u64, overdue: &mut Vec<(Rc<ConnCtl>, crate::net::timeouts::Cut)>) {
        let draining = self.draining.get();
        overdue.extend(
            self.conns.borrow().iter().filter_map(|(_, c)| c.overdue(now, draining).map(|why| (c.clone(), why))),
        );
        for (conn, why) in overdue.drain(..) {
            conn.cut(why);
        }
    }
}

/// Runs worker `id` on the current thread until it has drained. `started` is called once
/// the runtime is up.
pub fn run(id: usize, shared: Arc<Shared>, listener: StdListener, started: impl FnOnce()) -> io::Result<()> {
    let driver = shared.driver;
    driver::block_on(driver, async move {
        let ctx = Rc::new(WorkerCtx::new(id, shared));
        started();
        monoio::spawn(sweeper(ctx.clone()));
        monoio::spawn(ctx.db.clone().deliver_replies());
        monoio::spawn(answer_snapshot_requests(ctx.clone()));
        accept_loop(ctx.clone(), listener).await;
        ctx.start_draining();
        while !ctx.conns.borrow().is_empty() {
            monoio::time::sleep(Duration::from_millis(20)).await;
        }
        log::debug!("worker {id}: drained");
    })
}

/// Every tick: notice the drain, and cut connections past their deadlines.
async fn sweeper(ctx: Rc<WorkerCtx>) {
    let mut overdue = Vec::new();
    loop {
        monoio::time::sleep(TICK).await;
        if ctx.shared.is_draining() {
            ctx.start_draining();
        }
        ctx.sweep(crate::clock::now_ms(), &mut overdue);
        if let Some(log) = &ctx.access_log {
            log.flush();
        }
    }
}

/// Answers metrics scrapes (from any worker) with this worker's numbers.
async fn answer_snapshot_requests(ctx: Rc<WorkerCtx>) {
    std::future::poll_fn(|cx| {
        ctx.shared.snapshot_requests[ctx.id].drain(cx.waker(), |SnapshotRequest(reply)| {
            reply.post(ctx.metrics.snapshot(ctx.conns.borrow().len()));
        });
        std::task::Poll::<()>::Pending
    })
    .await
}
