//! The deadline of the request being served, and its client's socket, for whatever it asks
//! of the store on the way.
//!
//! The connection loop computes a request's budget (HANDLER_TIMEOUT, or less when the
//! caller states one: `http::budget`) and polls the handler within [`within`]; a database
//! job submitted meanwhile carries the deadline to the pool, which never sends a job whose
//! deadline has passed and cancels a statement still running at it. It carries the client's
//! socket too, so that the pool thread can see that a client who waited long has left
//! (`db::gone`). A thread-local set for each poll, as the logging scope is: handlers do not
//! pass it along.

use std::cell::Cell;
use std::future::Future;
use std::os::fd::RawFd;
use std::pin::Pin;
use std::task::{Context, Poll};

thread_local! {
    /// `clock::now_ns()` by which the current request must be answered (0: none), and its
    /// client socket (-1: none). One cell, so a poll swaps both at once.
    static CURRENT: Cell<(u64, RawFd)> = const { Cell::new((0, -1)) };
}

/// The current request's deadline (`clock::now_ns()` units), if one is being served.
pub(crate) fn current() -> Option<u64> {
    Some(CURRENT.with(Cell::get).0).filter(|&d| d != 0)
}

/// The current request's client socket, if one is being served.
pub(crate) fn client() -> Option<RawFd> {
    Some(CURRENT.with(Cell::get).1).filter(|&fd| fd >= 0)
}

/// Runs `inner` with `deadline` as the current request's deadline, and `client` as its
/// client's socket, while it is polled.
pub(crate) fn within<F: Future>(deadline: u64, client: RawFd, inner: F) -> Within<F> {
    Within { deadline, client, inner }
}

pin_project_lite::pin_project! {
    pub(crate) struct Within<F> {
        deadline: u64,
        client: RawFd,
        #[pin]
        inner: F,
    }
}

/// Puts the previous request's values back when the poll ends, however it ends.
struct Restore((u64, RawFd));

impl Drop for Restore {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(self.0));
    }
}

impl<F: Future> Future for Within<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let _restore = Restore(CURRENT.with(|c| c.replace((*this.deadline, *this.client))));
        this.inner.poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deadline_and_client_are_current_only_while_their_request_is_polled() {
        assert_eq!((current(), client()), (None, None));
        let seen = futures_util::FutureExt::now_or_never(within(42, 5, async { (current(), client()) }));
        assert_eq!(seen, Some((Some(42), Some(5))));
        assert_eq!((current(), client()), (None, None));
        let nested = futures_util::FutureExt::now_or_never(within(7, 3, within(9, 4, async { (current(), client()) })));
        assert_eq!(nested, Some((Some(9), Some(4))));
        assert_eq!((current(), client()), (None, None));
    }
}
