//! Noticing a client that hangs up while its request waits (on the database, typically), so
//! the wait is abandoned and the pool skips the job instead of running it for nobody.
//!
//! Only awaiting routes are watched, and only once they have waited [`WATCH_AFTER`]. The
//! watch is a readiness wait on the socket (a PollAdd with io_uring) raced against the
//! handler: readable with data means the client pipelined its next request and is very
//! much there, so the watch simply ends; an error means the connection was reset: the
//! client is gone.
//!
//! End of stream is not "gone". A FIN says the client is done sending (RFC 9293 §3.6), and
//! a client that sends a whole request and then shuts down its sending side (`nc -N`,
//! scripts, some scrapers) is waiting for its answer. Its request was complete — a FIN
//! before that ends the connection in the read loop — so it is served. From then on the
//! socket stays readable, so the watch turns into a slow check for a reset instead of a
//! readiness wait that would fire at once, forever. A client that closed completely
//! looks the same as a half-closed one until the answer is written; the kernel then
//! takes the write, and the peer's reset ends the connection.

use std::future::Future;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use monoio::net::TcpStream;

/// How often a half-closed client's connection is checked for a reset while its request
/// waits. Rare (half-closed clients with a slow request), so a timer is cheap enough.
const RESET_CHECK: Duration = Duration::from_millis(100);

/// How long a request waits before its client is watched. A watch armed at once cost every
/// database request a PollAdd and, when the answer won, an AsyncCancel (3–4% of the
/// server's CPU on /db, perf/README.md, 2026-12-06, night) and saved nothing: a job that
/// finishes within a few milliseconds has run before a reset could stop it. A timer is a
/// slot in the runtime's wheel, no system call. A reset in the meantime is not missed: the
/// socket is readable with its error when the watch begins, so it is seen at once. The
/// length is the store queue's default ADMISSION_TARGET: a job that waits longer is late.
const WATCH_AFTER: Duration = Duration::from_millis(5);

/// Resolves when the peer has reset the connection, from [`WATCH_AFTER`] on; never when it
/// sends data or only half-closes.
pub(crate) async fn client_gone(stream: &TcpStream) {
    monoio::time::sleep(WATCH_AFTER).await;
    loop {
        if stream.readable(false).await.is_err() {
            return;
        }
        match peek(stream) {
            Peek::Eof => break,
            Peek::Data => return std::future::pending().await,
            Peek::Again => continue,
            Peek::Reset => return,
        }
    }
    loop {
        monoio::time::sleep(RESET_CHECK).await;
        if let Peek::Reset = peek(stream) {
            return;
        }
    }
}

enum Peek {
    /// The peer sent a FIN: done sending, maybe still reading.
    Eof,
    /// A next request is already arriving.
    Data,
    /// Nothing after all (a spurious wake-up).
    Again,
    /// Reset, or otherwise broken.
    Reset,
}

fn peek(stream: &TcpStream) -> Peek {
    let mut probe = [0u8; 1];
    // SAFETY: a non-blocking peek of one byte into a local buffer, on a descriptor the
    // stream owns.
    let n =
        unsafe { libc::recv(stream.as_raw_fd(), probe.as_mut_ptr().cast(), 1, libc::MSG_PEEK | libc::MSG_DONTWAIT) };
    match n {
        0 => Peek::Eof,
        n if n > 0 => Peek::Data,
        _ => match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::EAGAIN | libc::EINTR) => Peek::Again,
            _ => Peek::Reset,
        },
    }
}

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
