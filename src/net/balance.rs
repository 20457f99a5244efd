//! CONN_BALANCE=exact: the workers' live connection counts differ by at most one.
//!
//! SO_REUSEPORT picks a worker by a hash of the connection's addresses, blind to load: with
//! two workers, two connections land on one worker more than half the time. Behind an
//! ingress or a sidecar that holds a few keep-alive connections, that idles a core. So each
//! worker's live count sits in its own cache line, touched when a connection opens or
//! closes (never per request). A worker that accepts while it holds more than the least
//! loaded worker hands the socket to that worker before reading a byte: the socket goes
//! into the other worker's inbox, one wake, and that worker serves it like its own. Bytes
//! the client sent meanwhile wait in the socket, in order.
//!
//! The count is claimed at the decision (the target's count goes up before the hand-over),
//! so a burst of accepts on two workers at once still spreads. CONN_BALANCE=kernel keeps
//! the counts for the metrics but never hands over.

use std::net::{SocketAddr, TcpStream as StdStream};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::doorbell::Doorbell;

/// A live-connection count alone in its cache line (128 bytes: the adjacent-line
/// prefetcher pairs lines), so workers opening connections do not share a line.
#[repr(align(128))]
#[derive(Default)]
struct Count(AtomicUsize);

/// A connection one worker accepted and another is to serve.
pub(crate) struct Handed {
    pub(crate) stream: StdStream,
    pub(crate) peer: SocketAddr,
}

/// The process's connection placement.
pub(crate) struct Balance {
    exact: bool,
    live: Box<[Count]>,
    inboxes: Box<[Doorbell<Handed>]>,
}

impl Balance {
    pub(crate) fn new(workers: usize, exact: bool) -> Balance {
        Balance {
            exact,
            live: (0..workers).map(|_| Count::default()).collect(),
            inboxes: (0..workers).map(|_| Doorbell::default()).collect(),
        }
    }

    /// Where the connection worker `me` just accepted goes: `None` to keep it, or the
    /// worker to hand it to. Either way it is counted on the worker that will serve it.
    pub(crate) fn place(&self, me: usize) -> Option<usize> {
        if self.exact {
            let mine = self.live[me].0.load(Ordering::Relaxed);
            let (least, fewest) = self
                .live
                .iter()
                .enumerate()
                .map(|(i, c)| (i, c.0.load(Ordering::Relaxed)))
                .min_by_key(|&(i, n)| (n, i != me))
                .unwrap_or((me, mine));
            if least != me && mine > fewest {
                self.live[least].0.fetch_add(1, Ordering::Relaxed);
                return Some(least);
            }
        }
        self.keep(me);
        None
    }

    /// Counts a connection on worker `me` without asking where it should go (the drain's
    /// last accepts, a hand-over that failed).
    pub(crate) fn keep(&self, me: usize) {
        self.live[me].0.fetch_add(1, Ordering::Relaxed);
    }

    /// A connection worker `worker` served has closed (or was never served).
    pub(crate) fn closed(&self, worker: usize) {
        self.live[worker].0.fetch_sub(1, Ordering::Relaxed);
    }

    /// Live connections of `worker`.
    pub(crate) fn live(&self, worker: usize) -> usize {
        self.live[worker].0.load(Ordering::Relaxed)
    }

    /// Posts a connection to `worker`'s inbox and wakes it.
    pub(crate) fn hand_over(&self, worker: usize, handed: Handed) {
        self.inboxes[worker].post(handed);
    }

    /// Worker `worker`'s inbox of handed-over connections.
    pub(crate) fn inbox(&self, worker: usize) -> &Doorbell<Handed> {
        &self.inboxes[worker]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_never_differ_by_more_than_one() {
        let b = Balance::new(2, true);
        // Worker 0 accepts everything (the kernel's hash put them all there).
        let mut placed = Vec::new();
        for _ in 0..8 {
            placed.push(b.place(0).unwrap_or(0));
        }
        assert_eq!((b.live(0), b.live(1)), (4, 4), "{placed:?}");
        assert_eq!(placed[..4], [0, 1, 0, 1]);
        // Two close on worker 1: the next two worker-0 accepts go there.
        b.closed(1);
        b.closed(1);
        assert_eq!((b.place(0), b.place(0)), (Some(1), Some(1)));
        assert_eq!((b.live(0), b.live(1)), (4, 4));
    }

    #[test]
    fn ties_stay_where_they_were_accepted() {
        let b = Balance::new(3, true);
        assert_eq!(b.place(2), None);
        assert_eq!(b.place(1), None);
        assert_eq!(b.place(0), None);
        assert_eq!(b.place(0), None, "one more than the others is even enough");
        assert_eq!(b.place(0), Some(1), "the lowest-numbered of the least loaded");
        assert_eq!(b.place(0), Some(2));
        assert_eq!((b.live(0), b.live(1), b.live(2)), (2, 2, 2));
    }

    #[test]
    fn kernel_mode_counts_but_keeps() {
        let b = Balance::new(2, false);
        for _ in 0..5 {
            assert_eq!(b.place(0), None);
        }
        assert_eq!((b.live(0), b.live(1)), (5, 0));
    }
}
