//! Noticing a client that hangs up while its request waits (on the database, typically), so
//! the wait is abandoned and the pool skips the job instead of running it for nobody.
//!
//! Only awaiting routes are watched. The watch is a readiness wait on the socket (a
//! PollAdd with io_uring) raced against the handler: readable with nothing to read means
//! the peer closed (or reset); readable with data means the client pipelined its next
//! request and is very much there, so the watch simply ends.

use std::future::Future;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::task::{Context, Poll};

use monoio::net::TcpStream;

/// Resolves when the peer has closed or reset the connection; never when it sends data.
pub async fn client_gone(stream: &TcpStream) {
    loop {
        if stream.readable(false).await.is_err() {
            return;
        }
        let mut probe = [0u8; 1];
        // SAFETY: a non-blocking peek of one byte into a local buffer.
        let n = unsafe {
            libc::recv(stream.as_raw_fd(), probe.as_mut_ptr().cast(), 1, libc::MSG_PEEK | libc::MSG_DONTWAIT)
        };
        match n {
            0 => return,
            n if n > 0 => return std::future::pending().await,
            _ => match std::io::Error::last_os_error().raw_os_error() {
                Some(libc::EAGAIN | libc::EINTR) => continue,
                _ => return,
            },
        }
    }
}

/// Which of two futures finished first.
pub enum Either<A, B> {
    Left(A),
    Right(B),
}

/// Polls `first`, then `second`, until one is ready; the other is dropped with the race.
pub fn race<A: Future, B: Future>(first: A, second: B) -> Race<A, B> {
    Race { first, second }
}

/// A plain struct rather than an `async fn`, so the two futures are stored once.
pub struct Race<A, B> {
    first: A,
    second: B,
}

impl<A: Future, B: Future> Future for Race<A, B> {
    type Output = Either<A::Output, B::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: neither field is moved out of the pinned struct; each is pinned in place.
        let this = unsafe { self.get_unchecked_mut() };
        if let Poll::Ready(a) = unsafe { Pin::new_unchecked(&mut this.first) }.poll(cx) {
            return Poll::Ready(Either::Left(a));
        }
        if let Poll::Ready(b) = unsafe { Pin::new_unchecked(&mut this.second) }.poll(cx) {
            return Poll::Ready(Either::Right(b));
        }
        Poll::Pending
    }
}
