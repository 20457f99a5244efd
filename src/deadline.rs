//! The deadline of the request being served, for whatever it asks of the store on the way.
//!
//! The connection loop computes a request's budget (HANDLER_TIMEOUT, or less when the
//! caller states one: `http::budget`) and polls the handler within [`within`]; a database
//! job submitted meanwhile carries the deadline to the pool, which never sends a job whose
//! deadline has passed and cancels a statement still running at it. A thread-local set for
//! each poll, as the logging scope is: handlers do not pass it along.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

thread_local! {
    /// `clock::now_ns()` by which the current request must be answered; 0: none.
    static CURRENT: Cell<u64> = const { Cell::new(0) };
}

/// The current request's deadline (`clock::now_ns()` units), if one is being served.
pub(crate) fn current() -> Option<u64> {
    Some(CURRENT.with(Cell::get)).filter(|&d| d != 0)
}

/// Runs `inner` with `deadline` as the current request's deadline while it is polled.
pub(crate) fn within<F: Future>(deadline: u64, inner: F) -> Within<F> {
    Within { deadline, inner }
}

pin_project_lite::pin_project! {
    pub(crate) struct Within<F> {
        deadline: u64,
        #[pin]
        inner: F,
    }
}

/// Puts the previous deadline back when the poll ends, however it ends.
struct Restore(u64);

impl Drop for Restore {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(self.0));
    }
}

impl<F: Future> Future for Within<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let _restore = Restore(CURRENT.with(|c| c.replace(*this.deadline)));
        this.inner.poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deadline_is_current_only_while_its_request_is_polled() {
        assert_eq!(current(), None);
        let seen = futures_util::FutureExt::now_or_never(within(42, async { current() }));
        assert_eq!(seen, Some(Some(42)));
        assert_eq!(current(), None);
        let nested = futures_util::FutureExt::now_or_never(within(7, within(9, async { current() })));
        assert_eq!(nested, Some(Some(9)));
    }
}
