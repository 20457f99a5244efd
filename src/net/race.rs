//! Racing two futures: a waiting request's handler against the sweep's cut, a handler
//! against its own timer, a parked connection's readiness against the drain. The loser is
//! dropped with the race, which is how a handler's database job is abandoned.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Which of two futures finished first.
pub(crate) enum Either<A, B> {
    Left(A),
    Right(B),
}

/// Polls `first`, then `second`, until one is ready; the other is dropped with the race.
pub(crate) fn race<A: Future, B: Future>(first: A, second: B) -> Race<A, B> {
    Race { first, second }
}

pin_project_lite::pin_project! {
    /// A plain struct rather than an `async fn`, so the two futures are stored once.
    pub(crate) struct Race<A, B> {
        #[pin]
        first: A,
        #[pin]
        second: B,
    }
}

impl<A: Future, B: Future> Future for Race<A, B> {
    type Output = Either<A::Output, B::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(a) = this.first.poll(cx) {
            return Poll::Ready(Either::Left(a));
        }
        if let Poll::Ready(b) = this.second.poll(cx) {
            return Poll::Ready(Either::Right(b));
        }
        Poll::Pending
    }
}
