//! The application percore serves: its [`routes`] (④ — every route declared once), the
//! [`handlers`] (⑤ — one file per resource), and how request bodies become validated
//! inputs ([`json`] reads, [`decode`] checks). Its API is described in `openapi.json`
//! beside this file.
//!
//! [`App`] is what a handler sees of the server, one per worker: the database client, the
//! reusable JSON buffers, its worker's metrics, and the process facts the probes and the
//! scrape report ([`Env`]). Not the connection registry, not the buffer pools: those belong
//! to the connection loop, which reaches the application only through
//! [`crate::http::service::Service`], and the application reaches nothing of the loop's.

pub mod decode;
pub mod handlers;
pub(crate) mod json;
pub mod routes;

use std::cell::RefCell;
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;

use crate::db::{DbClient, Pool};
use crate::doorbell::Doorbell;
use crate::http::request::{Head, Method};
use crate::http::response::Reply;
use crate::http::route::{RequestView, Resolved, Shed};
use crate::http::service::Service;
use crate::lifecycle::Lifecycle;
use crate::obs::metrics::{SnapshotRequest, WorkerMetrics};
use crate::rng::Rng;
use routes::{Route, Router};

/// The process facts the application reads, shared by every worker's [`App`].
pub(crate) struct Env {
    /// Serving, closing or draining: what /readyz reports.
    pub(crate) lifecycle: Arc<Lifecycle>,
    /// This process's random part of generated ids (the benchmark routes seed from it).
    pub(crate) id_seed: u64,
    pub(crate) bench_routes: bool,
    pub(crate) pool: Arc<Pool>,
    /// `io_uring` or `epoll`, for `percore_info`.
    pub(crate) io_driver: &'static str,
    /// The listener's TLS, whose counters /metrics shows.
    pub(crate) tls: Option<Arc<crate::tls::server::ServerTls>>,
    /// One per worker: post a request, get that worker's metrics snapshot back.
    pub(crate) scrapes: Box<[Doorbell<SnapshotRequest>]>,
}

/// One worker's application.
pub(crate) struct App {
    pub(crate) id: usize,
    pub(crate) env: Arc<Env>,
    router: Router,
    /// This worker's side of the database pool.
    pub(crate) db: Rc<DbClient>,
    /// simd-json's parse buffers, reused for every request body.
    pub(crate) json_buffers: RefCell<simd_json::Buffers>,
    pub(crate) metrics: Rc<WorkerMetrics>,
    /// For the benchmark routes' random ids.
    rng: Rng,
}

impl App {
    pub(crate) fn new(id: usize, env: Arc<Env>, metrics: Rc<WorkerMetrics>) -> App {
        let seed = env.id_seed;
        App {
            id,
            router: routes::router(env.bench_routes),
            db: DbClient::new(env.pool.clone(), id, metrics.clone()),
            json_buffers: RefCell::new(simd_json::Buffers::default()),
            rng: Rng::for_worker(seed, id),
            metrics,
            env,
        }
    }

    /// A random TechEmpower world id, 1–10,000.
    pub(crate) fn random_world(&self) -> i32 {
        (self.rng.next_u64() >> 33) as i32 % 10_000 + 1
    }

    /// The server is shutting down (SHUTDOWN_DELAY or the drain): /readyz says so.
    pub(crate) fn is_closing(&self) -> bool {
        self.env.lifecycle.is_closing()
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
    fn sheds(&self, route: Route, method: Method, loop_late: bool) -> Option<Shed> {
        if !route.uses_store(method) {
            None
        } else if loop_late {
            Some(Shed::LoopLag)
        } else if !self.db.admits() {
            Some(Shed::StandingQueue)
        } else {
            None
        }
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
    fn handle_now(&self, route: Route, request: RequestView<'_>, reply: &mut Reply<'_>) {
        routes::handle_now(self, route, request, reply)
    }

    fn handle<'a>(
        &'a self,
        route: Route,
        request: RequestView<'a>,
        reply: &'a mut Reply<'_>,
    ) -> impl Future<Output = ()> + 'a {
        routes::handle(self, route, request, reply)
    }
}
