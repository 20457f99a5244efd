//! ⑤ Handlers: one file per resource, all answering through a [`Reply`].
//!
//! [`run`] is the one place a handler is called. It catches a panic (500, logged with the
//! route, the worker keeps serving) and, for routes that await, enforces HANDLER_TIMEOUT
//! (503 with Retry-After). In-core routes complete in their first poll and get no timer.

mod api;
mod bench;
mod health;
mod metrics;
mod orders;
mod preferences;
#[cfg(feature = "test-routes")]
mod testing;
mod users;

use crate::catch::catch_unwind_future;
use crate::http::request::Head;
use crate::http::response::Reply;
use crate::router::Route;
use crate::worker::WorkerCtx;

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

/// Runs the handler for `route`, turning panics into 500 and overruns into 503.
pub async fn run(ctx: &WorkerCtx, route: Route, req: RequestView<'_>, reply: &mut Reply<'_>) {
    let outcome = if route.is_async() {
        match monoio::time::timeout(ctx.timeouts.handler, catch_unwind_future(dispatch(ctx, route, req, reply))).await {
            Ok(outcome) => outcome,
            Err(_) => {
                log::warn!(
                    "worker {}: {} exceeded HANDLER_TIMEOUT ({:?})",
                    ctx.id,
                    route.pattern(),
                    ctx.timeouts.handler
                );
                reply.rollback();
                reply.error(503, "the request took longer than HANDLER_TIMEOUT");
                return;
            }
        }
    } else {
        catch_unwind_future(dispatch(ctx, route, req, reply)).await
    };
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

async fn dispatch(ctx: &WorkerCtx, route: Route, req: RequestView<'_>, reply: &mut Reply<'_>) {
    match route {
        Route::Health => health::health(reply),
        Route::Livez => health::livez(reply),
        Route::Readyz => health::readyz(ctx, reply),
        Route::Metrics => metrics::metrics(ctx, reply).await,
        Route::Users => users::collection(ctx, req, reply).await,
        Route::User => users::item(ctx, req, reply).await,
        Route::UserOrders => orders::collection(ctx, req, reply).await,
        Route::UserPreferences => preferences::item(ctx, req, reply).await,
        Route::UserSummary => users::summary(ctx, req, reply).await,
        Route::Plaintext => bench::plaintext(reply),
        Route::Json => bench::json(reply),
        #[cfg(feature = "test-routes")]
        Route::TestPanic => testing::panic(),
        #[cfg(feature = "test-routes")]
        Route::TestSleep => testing::sleep(req, reply).await,
        #[cfg(feature = "test-routes")]
        Route::TestEcho => testing::echo(req, reply),
        #[cfg(feature = "test-routes")]
        Route::TestBig => testing::big(req, reply),
    }
}
