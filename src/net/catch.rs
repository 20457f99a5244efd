//! Turns a panic inside a future into an error value, so one bad request cannot take a
//! worker (and every connection on its core) down with it.
//!
//! monoio does not catch panics in tasks: a panic unwinds through the runtime and ends the
//! worker thread. Connection tasks and handler futures are therefore wrapped here. The cost
//! is a landing pad, nothing on the path that does not panic.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::obs::logging::panic_message;

pin_project_lite::pin_project! {
    /// A future that yields `Err(message)` if the inner one panics.
    pub(crate) struct CatchUnwind<F> {
        #[pin]
        inner: F,
    }
}

pub(crate) fn catch_unwind_future<F: Future>(future: F) -> CatchUnwind<F> {
    CatchUnwind { inner: future }
}

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, String>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.project().inner;
        match catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Err(payload) => Poll::Ready(Err(panic_message(&*payload))),
        }
    }
}
