//! Deadlines for connections, enforced by one sweep per worker instead of a timer per read.
//!
//! Each connection publishes what it is waiting for ([`Phase`]) and until when, in a
//! [`ConnCtl`] that its worker can see. Every [`TICK`] the worker's sweeper walks its
//! connections and cancels the pending read or write of any that is overdue (or idle while
//! the server drains) through monoio's [`Canceller`], and wakes a connection whose waiting
//! handler has outlived a budget of seconds ([`SWEPT_BUDGET`]). Cancelling, rather than
//! dropping the I/O future, matters with io_uring: a dropped read can still complete into
//! its buffer in the kernel and its bytes would be lost, while a cancelled one returns
//! either `ECANCELED` or the data that won the race — so nothing a client sent is silently
//! eaten.
//!
//! The hot path pays two `Cell` writes per phase change and no timer-wheel insertions;
//! deadlines are as precise as the tick, which is ample for timeouts of seconds.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::task::{Poll, Waker};
use std::time::Duration;

use monoio::io::{CancelHandle, Canceller};

/// How often a worker checks its connections' deadlines.
pub(crate) const TICK: Duration = Duration::from_millis(250);

/// A waiting request's budget this long or longer (HANDLER_TIMEOUT's 30 s, a caller's
/// stated seconds) is enforced by the sweep, at most one [`TICK`] late: an eighth of it at
/// worst. A shorter one gets a timer of its own. A monoio timer is not cheap enough to arm
/// for every request: its entry is cache-padded to 128 bytes, so the boxed handler future
/// that held it needed an over-aligned allocation and was 2.4 KB to copy, and the timer is
/// inserted into and removed from the timer wheel. Without it a /db request costs the
/// worker 4,158 instructions instead of 5,492 (`perf/instructions.py`, perf/README.md).
pub(crate) const SWEPT_BUDGET: Duration = Duration::from_secs(2);

/// While draining, a connection idle this long is closed; one that just got a response is
/// given this long to send its next request, which is then answered with
/// `Connection: close` instead of being cut off mid-flight.
pub(crate) const DRAIN_IDLE_GRACE_MS: u64 = 500;

/// An idle connection gives its read buffer back after this long (it parks on a readiness
/// wait, which needs no buffer), so thousands of quiet keep-alive connections cost no buffers.
pub(crate) const RELEASE_AFTER_MS: u64 = 1000;

/// What a connection is waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Between requests, no byte of the next one yet: SERVER_IDLE_TIMEOUT.
    Idle,
    /// Idle long enough to have given its read buffer back; waiting for readability.
    Parked,
    /// Part of a request has arrived: SERVER_READ_TIMEOUT from its first byte.
    Reading,
    /// A handler is running: its budget, enforced by the sweep when it is
    /// [`SWEPT_BUDGET`] or longer (a shorter one by the handler's own timer, which fires first).
    Handling,
    /// A response is being written: SERVER_WRITE_TIMEOUT.
    Writing,
    /// After the last response, waiting for the client to close.
    Lingering,
    /// Answered 503 a moment ago: not reading, for a short while that ends on its own
    /// (`Conn::hold_off`). Never cut: what the client sends meanwhile is read after.
    Holding,
}

/// Why the sweeper cut a connection's I/O.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cut {
    /// Idle for [`RELEASE_AFTER_MS`]: give the read buffer back and park.
    Release,
    IdleTimeout,
    ReadTimeout,
    WriteTimeout,
    /// A waiting handler outlived its budget: it is dropped and answered 503.
    HandlerTimeout,
    Drain,
}

/// The part of a connection its worker's sweeper can see and act on.
#[derive(Default)]
pub(crate) struct ConnCtl {
    phase: Cell<Option<Phase>>,
    since: Cell<u64>,
    deadline: Cell<u64>,
    cut: Cell<Option<Cut>>,
    canceller: RefCell<Canceller>,
    /// A parked connection's task, woken by a cut (its readiness wait holds no buffer and
    /// is simply dropped).
    waker: RefCell<Option<Waker>>,
}

impl ConnCtl {
    /// Enters `phase` at `now` (ms) with a deadline `timeout` later.
    pub(crate) fn enter(&self, phase: Phase, now: u64, timeout: Duration) {
        self.phase.set(Some(phase));
        self.since.set(now);
        self.deadline.set(now.saturating_add(timeout.as_millis() as u64));
    }

    /// Idle without a buffer: same deadlines as [`Phase::Idle`], counted from the same start.
    pub(crate) fn park(&self) {
        self.phase.set(Some(Phase::Parked));
    }

    /// Resolves when the sweeper cuts this connection.
    pub(crate) fn interrupted(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            if self.cut.get().is_some() {
                return Poll::Ready(());
            }
            *self.waker.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        })
    }

    /// The handle to pass to the next cancelable read or write.
    pub(crate) fn handle(&self) -> CancelHandle {
        self.canceller.borrow().handle()
    }

    /// Why the connection was cut, if it was.
    pub(crate) fn cut_reason(&self) -> Option<Cut> {
        self.cut.get()
    }

    /// Records why and cancels whatever I/O the connection is waiting on.
    pub(crate) fn cut(&self, why: Cut) {
        if self.cut.get().is_some() {
            return;
        }
        self.cut.set(Some(why));
        let old = self.canceller.take();
        *self.canceller.borrow_mut() = old.cancel();
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    /// Forgets a cut whose I/O completed anyway (the data won the race): the connection
    /// goes on and its deadlines apply again.
    pub(crate) fn uncut(&self) {
        self.cut.set(None);
    }

    /// What the sweeper should do about this connection at `now`.
    pub(crate) fn overdue(&self, now: u64, draining: bool) -> Option<Cut> {
        if self.cut.get().is_some() {
            return None;
        }
        let late = now >= self.deadline.get();
        let idle_for = now.saturating_sub(self.since.get());
        match self.phase.get()? {
            Phase::Idle | Phase::Parked if draining && idle_for >= DRAIN_IDLE_GRACE_MS => Some(Cut::Drain),
            Phase::Idle | Phase::Parked if late => Some(Cut::IdleTimeout),
            Phase::Idle if idle_for >= RELEASE_AFTER_MS => Some(Cut::Release),
            Phase::Reading | Phase::Lingering if late => Some(Cut::ReadTimeout),
            Phase::Writing if late => Some(Cut::WriteTimeout),
            Phase::Handling if late => Some(Cut::HandlerTimeout),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_by_phase() {
        let c = ConnCtl::default();
        assert_eq!(c.overdue(1_000_000, true), None, "a connection that has not started");
        c.enter(Phase::Idle, 1000, Duration::from_secs(120));
        assert_eq!(c.overdue(1000 + RELEASE_AFTER_MS - 1, false), None);
        assert_eq!(c.overdue(1000 + RELEASE_AFTER_MS, false), Some(Cut::Release), "idle: give the buffer back");
        c.park();
        assert_eq!(c.overdue(1000 + 119_999, false), None, "parked: nothing to release");
        assert_eq!(
            c.overdue(1000 + 120_000, false),
            Some(Cut::IdleTimeout),
            "the idle deadline still counts from the start"
        );
        c.enter(Phase::Reading, 5000, Duration::from_secs(5));
        assert_eq!(c.overdue(9999, false), None);
        assert_eq!(c.overdue(10_000, false), Some(Cut::ReadTimeout));
        assert_eq!(c.overdue(10_000, true), Some(Cut::ReadTimeout), "a request being read is not cut by a drain");
        c.enter(Phase::Writing, 0, Duration::from_secs(10));
        assert_eq!(c.overdue(10_000, false), Some(Cut::WriteTimeout));
        c.enter(Phase::Handling, 0, Duration::from_secs(30));
        assert_eq!(c.overdue(29_999, true), None, "a handler is not cut by a drain");
        assert_eq!(c.overdue(30_000, false), Some(Cut::HandlerTimeout));
    }

    #[test]
    fn draining_closes_idle_connections_after_a_grace() {
        let c = ConnCtl::default();
        c.enter(Phase::Idle, 1000, Duration::from_secs(120));
        assert_eq!(c.overdue(1000 + DRAIN_IDLE_GRACE_MS - 1, true), None);
        assert_eq!(c.overdue(1000 + DRAIN_IDLE_GRACE_MS, true), Some(Cut::Drain));
    }

    #[test]
    fn a_cut_is_recorded_once() {
        let c = ConnCtl::default();
        c.enter(Phase::Idle, 0, Duration::from_secs(1));
        c.cut(Cut::IdleTimeout);
        c.cut(Cut::Drain);
        assert_eq!(c.cut_reason(), Some(Cut::IdleTimeout));
        assert_eq!(c.overdue(10_000, true), None);
    }
}
