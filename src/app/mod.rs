//! The application percore serves: its [`routes`] (④ — every route declared once), the
//! [`handlers`] (⑤ — one file per resource), and how request bodies become validated
//! inputs ([`json`] reads, [`decode`] checks). Its API is described in `openapi.json`
//! beside this file.
//!
//! [`App`] is what a handler sees of the server, one per worker: the database client, the
//! reusable JSON buffers, its worker's metrics, and the process facts the probes and the
//! scrape report ([`Env`]). Not the connection registry, not the buffer pools: those belong
//! to the connection loop, which reaches the application only through
//! [`crate::net::service::Service`].

pub mod decode;
pub mod handlers;
pub(crate) mod json;
pub mod routes;

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;

use crate::db::{DbClient, Pool};
use crate::doorbell::Doorbell;
use crate::http::request::{Head, Method};
use crate::http::response::Reply;
use crate::http::route::{RequestView, Resolved};
use crate::net::service::Service;
use crate::net::shared::Shared;
use crate::obs::metrics::{SnapshotRequest, WorkerMetrics};
use routes::{Route, Router};

/// The process facts the application reads, shared by every worker's [`App`].
pub struct Env {
    /// The connections' shared state: the drain flag that /readyz reports.
    pub net: Arc<Shared>,
    pub pool: Arc<Pool>,
    /// `io_uring` or `epoll`, for `percore_info`.
    pub io_driver: &'static str,
    /// The listener's TLS, whose counters /metrics shows.
    pub tls: Option<Arc<crate::tls::server::ServerTls>>,
    /// One per worker: post a request, get that worker's metrics snapshot back.
    pub scrapes: Box<[Doorbell<SnapshotRequest>]>,
}

/// One worker's application.
pub struct App {
    pub id: usize,
    pub env: Arc<Env>,
    router: Router,
    /// This worker's side of the database pool.
    pub db: Rc<DbClient>,
    /// simd-json's parse buffers, reused for every request body.
    pub json_buffers: RefCell<simd_json::Buffers>,
    pub metrics: Rc<WorkerMetrics>,
    /// xorshift state for the benchmark routes' random ids.
    rng: Cell<u64>,
}

impl App {
    pub fn new(id: usize, env: Arc<Env>, metrics: Rc<WorkerMetrics>) -> App {
        let seed = env.net.id_seed;
        App {
            id,
            router: routes::router(env.net.config.bench_routes),
            db: DbClient::new(env.pool.clone(), id, metrics.clone()),
            json_buffers: RefCell::new(simd_json::Buffers::default()),
            rng: Cell::new((seed ^ ((id as u64) << 32)) | 1),
            metrics,
            env,
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

    /// The server is shutting down (SHUTDOWN_DELAY or the drain): /readyz says so.
    pub fn is_closing(&self) -> bool {
        self.env.net.is_closing()
    }
}

impl Service for App {
    type Route = Route;

    #[inline(always)]
    fn resolve(&self, head: &Head, head_bytes: &[u8]) -> Resolved<Route> {
        self.router.resolve_head(head, head_bytes)
    }

    #[inline(always)]
    fn waits(route: Route, method: Method) -> bool {
        route.waits(method)
    }

    #[inline(always)]
    fn pattern(route: Route) -> &'static str {
        route.pattern()
    }

    #[inline(always)]
    fn slot(route: Route) -> usize {
        route.index()
    }

    #[inline(always)]
    fn call_now(&self, route: Route, request: RequestView<'_>, reply: &mut Reply<'_>) {
        routes::call_now(self, route, request, reply)
    }

    fn call<'a>(
        &'a self,
        route: Route,
        request: RequestView<'a>,
        reply: &'a mut Reply<'_>,
    ) -> impl Future<Output = ()> + 'a {
        routes::call(self, route, request, reply)
    }
}
