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

/// Polls `first`, then `second`, until one is ready; the other is dropped.
pub async fn race<A: Future, B: Future>(first: A, second: B) -> Either<A::Output, B::Output> {
    let mut first = std::pin::pin!(first);
    let mut second = std::pin::pin!(second);
    std::future::poll_fn(move |cx: &mut Context<'_>| {
        if let Poll::Ready(a) = Pin::as_mut(&mut first).poll(cx) {
            return Poll::Ready(Either::Left(a));
        }
        if let Poll::Ready(b) = Pin::as_mut(&mut second).poll(cx) {
            return Poll::Ready(Either::Right(b));
        }
        Poll::Pending
    })
    .await
}
