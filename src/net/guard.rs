//! ⑤ The loop's guarantees around the application's handler for one request.
//!
//! A panic becomes 500, is logged with the route, and the worker keeps serving; a handler
//! that wrote nothing is a bug answered 500; a waiting handler past its budget
//! (HANDLER_TIMEOUT, or less when the caller says so) is dropped (which abandons its
//! database job) and answered 503 with Retry-After, as is one whose job the store stopped
//! at the deadline (`Reply::out_of_budget`); one whose client left while its job waited
//! (`Reply::client_left`) is answered with nothing. In-core handlers pay for neither a
//! future nor a timer, and a waiting one for a timer only when its budget is under
//! [`super::timeouts::SWEPT_BUDGET`].

use std::panic::AssertUnwindSafe;
use std::time::Duration;

use super::catch::catch_unwind_future;
use super::core::Core;
use super::race::{race, Either};
use crate::http::response::Reply;
use crate::http::route::RequestView;
use crate::http::service::Service;
use crate::obs::logging::panic_message;

/// Runs an in-core handler at once.
#[inline(always)]
pub(crate) fn now<S: Service>(core: &Core<S>, route: S::Route, request: RequestView<'_>, reply: &mut Reply<'_>) {
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| core.service.handle_now(route, request, reply)));
    match outcome {
        Ok(()) if reply.status() != 0 => {}
        outcome => settle(core, S::pattern(route), reply, outcome.map_err(|p| panic_message(&*p))),
    }
}

/// Runs a waiting handler under `budget`: with a timer of its own when `own_timer` (a
/// budget of seconds is the sweep's: [`super::timeouts::SWEPT_BUDGET`]). A handler the store
/// told its budget ran out ([`Reply::out_of_budget`]) is answered as the timer or the sweep
/// would have; one that finished is answered with what it wrote. The caller boxes this
/// future, so that a connection task does not carry the largest handler's state while it
/// waits for its next request.
pub(crate) async fn waiting<S: Service>(
    core: &Core<S>,
    route: S::Route,
    request: RequestView<'_>,
    reply: &mut Reply<'_>,
    budget: Duration,
    own_timer: bool,
) {
    let handler = catch_unwind_future(core.service.handle(route, request, reply));
    let outcome = if own_timer {
        // Boxed: the timer's entry is aligned to 128 bytes, and only this path should pay
        // for that.
        match race(handler, Box::pin(monoio::time::sleep(budget))).await {
            Either::Left(outcome) => outcome,
            Either::Right(()) => return timed_out(core, route, reply, budget),
        }
    } else {
        handler.await
    };
    if reply.is_out_of_budget() {
        return timed_out(core, route, reply, budget);
    }
    if reply.has_client_left() {
        // Nothing to answer: the connection ends (`conn::respond_waiting`).
        return;
    }
    settle(core, S::pattern(route), reply, outcome);
}

/// A waiting handler that outlived its budget (its own timer or the sweep): 503 with
/// Retry-After, in place of whatever it wrote.
#[cold]
pub(crate) fn timed_out<S: Service>(core: &Core<S>, route: S::Route, reply: &mut Reply<'_>, budget: Duration) {
    if budget < core.timeouts.handler {
        // The caller's own budget (x-envoy-expected-rq-timeout-ms, grpc-timeout): its
        // choice, not a slow handler worth a warning.
        log::debug!("worker {}: {} exceeded the caller's budget ({budget:?})", core.id, S::pattern(route));
        reply.rollback();
        reply.error(503, "the request took longer than its budget");
    } else {
        log::warn!("worker {}: {} exceeded HANDLER_TIMEOUT ({:?})", core.id, S::pattern(route), core.timeouts.handler);
        reply.rollback();
        reply.error(503, "the request took longer than HANDLER_TIMEOUT");
    }
}

/// A handler that panicked or wrote nothing: 500 in place of whatever it wrote.
#[cold]
fn settle<S>(core: &Core<S>, pattern: &str, reply: &mut Reply<'_>, outcome: Result<(), String>) {
    match outcome {
        Ok(()) if reply.status() != 0 => {}
        Ok(()) => {
            log::error!("worker {}: handler for {pattern} wrote no response", core.id);
            reply.error(500, "Internal Server Error");
        }
        Err(panic) => {
            core.metrics.panic();
            log::error!("worker {}: handler for {pattern} panicked: {panic}", core.id);
            reply.rollback();
            reply.error(500, "Internal Server Error");
        }
    }
}
