//! Where the process is in its life — serving, closing, draining — as one atomic the
//! runtime moves forward and everyone else reads: the connections (responses say
//! `Connection: close`, listeners close) and the application (/readyz says 503). The
//! application gets this narrow handle, not the connection loop's shared state.

use std::sync::atomic::{AtomicU8, Ordering};

/// Before any signal.
const SERVING: u8 = 0;
/// A signal arrived and SHUTDOWN_DELAY runs: /readyz says 503, responses close their
/// connections, but listeners still accept, so a balancer that has not noticed yet loses
/// nothing.
const CLOSING: u8 = 1;
/// Listeners are shut; what is open finishes.
const DRAINING: u8 = 2;

/// The process's phase. It only moves forward.
#[derive(Default)]
pub(crate) struct Lifecycle {
    phase: AtomicU8,
}

impl Lifecycle {
    /// Set by the main thread at a signal when SHUTDOWN_DELAY is above zero.
    pub(crate) fn start_closing(&self) {
        self.phase.fetch_max(CLOSING, Ordering::SeqCst);
    }

    /// Set once by the main thread; workers notice within one sweep tick.
    pub(crate) fn start_draining(&self) {
        self.phase.store(DRAINING, Ordering::SeqCst);
    }

    /// Listeners are to close: the drain has begun.
    pub(crate) fn is_draining(&self) -> bool {
        self.phase.load(Ordering::Relaxed) == DRAINING
    }

    /// Shutting down, delayed or draining: not ready, and responses close their connections.
    pub(crate) fn is_closing(&self) -> bool {
        self.phase.load(Ordering::Relaxed) != SERVING
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_phase_only_moves_forward() {
        let l = Lifecycle::default();
        assert!(!l.is_closing() && !l.is_draining());
        l.start_closing();
        assert!(l.is_closing() && !l.is_draining());
        l.start_draining();
        l.start_closing();
        assert!(l.is_closing() && l.is_draining(), "a late closing does not undo the drain");
    }
}
