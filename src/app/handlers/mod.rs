//! ⑤ Handlers: one file per resource, all answering through a [`Reply`].
//!
//! [`run_now`] (in-core routes) and [`run`] (routes that await: the database, a scrape)
//! are the only places a handler is called. Both catch a panic (500, logged with the route,
//! the worker keeps serving); `run` also enforces HANDLER_TIMEOUT (503 with Retry-After).
//! In-core routes pay for neither a future nor a timer.

mod api;
mod bench;
mod health;
mod metrics;
mod orders;
mod preferences;
#[cfg(feature = "test-routes")]
mod testing;
mod users;

use std::panic::AssertUnwindSafe;

use crate::app::routes::Route;
use crate::catch::{catch_unwind_future, panic_message};
use crate::http::request::Head;
use crate::http::response::{Reply, JSON};
use crate::runtime::worker::WorkerCtx;

/// The OpenAPI 3 description of the API, served at /openapi.json and checked in CI
/// (schemathesis against a running server; tests/openapi.rs against the router).
pub const OPENAPI: &str = include_str!("../openapi.json");

/// A request as handlers see it: the parsed head, the bytes it points into, and the body,
/// mutable so simd-json can parse it in place.
pub struct RequestView<'r> {
    pub head: &'r Head,
    pub bytes: &'r [u8],
    pub body: &'r mut [u8],
    /// The route's `{id}`, already checked to be a positive integer.
    pub id: Option<i64>,
}

impl RequestView<'_> {
    pub fn query(&self) -> &[u8] {
        self.head.query(self.bytes)
    }

    pub fn content_type(&self) -> Option<&[u8]> {
        self.head.content_type.map(|s| s.get(self.bytes))
    }
}

/// Runs an in-core route's handler at once: no future, no timer. A panic becomes 500.
pub fn run_now(ctx: &WorkerCtx, route: Route, req: RequestView<'_>, reply: &mut Reply<'_>) {
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| dispatch_now(ctx, route, req, reply)));
    finish(ctx, route, reply, outcome.map_err(|p| panic_message(&*p)));
}

/// Runs an awaiting route's handler under HANDLER_TIMEOUT (503 with Retry-After past it).
/// A panic becomes 500. The caller boxes this future, so that a connection task does not
/// carry the largest handler's state while it waits for its next request.
pub async fn run(ctx: &WorkerCtx, route: Route, req: RequestView<'_>, reply: &mut Reply<'_>) {
    let handler = catch_unwind_future(dispatch(ctx, route, req, reply));
    match monoio::time::timeout(ctx.timeouts.handler, handler).await {
        Ok(outcome) => finish(ctx, route, reply, outcome),
        Err(_) => {
            log::warn!("worker {}: {} exceeded HANDLER_TIMEOUT ({:?})", ctx.id, route.pattern(), ctx.timeouts.handler);
            reply.rollback();
            reply.error(503, "the request took longer than HANDLER_TIMEOUT");
        }
    }
}

fn finish(ctx: &WorkerCtx, route: Route, reply: &mut Reply<'_>, outcome: Result<(), String>) {
    match outcome {
        Ok(()) if reply.status() != 0 => {}
        Ok(()) => {
            log::error!("worker {}: handler for {} wrote no response", ctx.id, route.pattern());
            reply.error(500, "Internal Server Error");
        }
        Err(panic) => {
            ctx.metrics.panic();
            log::error!("worker {}: handler for {} panicked: {panic}", ctx.id, route.pattern());
            reply.rollback();
            reply.error(500, "Internal Server Error");
        }
    }
}

/// The in-core routes ([`Route::is_async`] is false for exactly these).
fn dispatch_now(ctx: &WorkerCtx, route: Route, req: RequestView<'_>, reply: &mut Reply<'_>) {
    let _ = &req;
    match route {
        Route::Health => health::health(reply),
        Route::Livez => health::livez(reply),
        Route::Readyz => health::readyz(ctx, reply),
        Route::OpenApi => reply.send(200, JSON, OPENAPI.as_bytes(), &[]),
        Route::Plaintext => bench::plaintext(reply),
        Route::Json => bench::json(reply),
        #[cfg(feature = "test-routes")]
        Route::TestPanic => testing::panic(),
        #[cfg(feature = "test-routes")]
        Route::TestEcho => testing::echo(req, reply),
        #[cfg(feature = "test-routes")]
        Route::TestBig => testing::big(req, reply),
        _ => unreachable!("{} awaits: run it with handlers::run", route.pattern()),
    }
}

/// The awaiting routes.
async fn dispatch(ctx: &WorkerCtx, route: Route, req: RequestView<'_>, reply: &mut Reply<'_>) {
    match route {
        Route::Metrics => metrics::metrics(ctx, reply).await,
        Route::Users => users::collection(ctx, req, reply).await,
        Route::User => users::item(ctx, req, reply).await,
        Route::UserOrders => orders::collection(ctx, req, reply).await,
        Route::UserPreferences => preferences::item(ctx, req, reply).await,
        Route::UserSummary => users::summary(ctx, req, reply).await,
        Route::Db => bench::db(ctx, reply).await,
        Route::Queries => bench::queries(ctx, req, reply).await,
        Route::Fortunes => bench::fortunes(ctx, reply).await,
        Route::Updates => bench::updates(ctx, req, reply).await,
        #[cfg(feature = "test-routes")]
        Route::TestSleep => testing::sleep(req, reply).await,
        _ => dispatch_now(ctx, route, req, reply),
    }
}
