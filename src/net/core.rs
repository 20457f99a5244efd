//! What one worker's connections share: the service they answer with, the buffer pools, the
//! Date cache, the serialization scratch buffer, the registry of open connections (for the
//! sweeper), the drain flag, request ids, metrics and the access log.
//!
//! All of it is per worker, in plain `Cell`/`RefCell` memory: no lock and no atomic on the
//! request path. The application never sees this: handlers get the [`Service`] and a
//! request, not the registry or the pools.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use monoio::io::{CancelHandle, Canceller};
use slab::Slab;

use super::buffers::{BufferPool, READ_BUFFER, WRITE_BUFFER};
use super::shared::Shared;
use super::timeouts::{ConnCtl, Cut};
use super::tls::{Acceptor, TLS_READ_BUFFER};
use crate::codel::Door;
use crate::http::date::DateCache;
use crate::http::request::Limits;
use crate::http::service::Service;
use crate::obs::access_log::AccessLog;
use crate::obs::metrics::WorkerMetrics;
use crate::obs::request_id;
use crate::rng::Rng;

/// The configured timeouts, copied out of the config for the connection loop.
#[derive(Clone, Copy)]
pub(crate) struct Timeouts {
    pub(crate) read: Duration,
    pub(crate) write: Duration,
    pub(crate) idle: Duration,
    pub(crate) handler: Duration,
}

/// One worker's connection side. Every connection task of the worker holds an `Rc` to it.
pub(crate) struct Core<S> {
    pub(crate) id: usize,
    pub(crate) shared: Arc<Shared>,
    /// The application.
    pub(crate) service: S,
    pub(crate) limits: Limits,
    pub(crate) timeouts: Timeouts,
    pub(crate) date: DateCache,
    pub(crate) read_buffers: BufferPool,
    pub(crate) write_buffers: BufferPool,
    /// On a TLS listener: the handshakes' configuration, and ciphertext read buffers.
    pub(crate) tls: Option<Acceptor>,
    pub(crate) tls_buffers: BufferPool,
    /// For serializing bodies; borrowed only within one synchronous call.
    pub(crate) scratch: RefCell<Vec<u8>>,
    /// Open connections, for the sweeper.
    pub(crate) conns: RefCell<Slab<Rc<ConnCtl>>>,
    /// This worker has seen the drain begin: no more accepts, responses say close.
    pub(crate) draining: Cell<bool>,
    accept_canceller: RefCell<Canceller>,
    pub(crate) metrics: Rc<WorkerMetrics>,
    pub(crate) ids: request_id::Generator,
    pub(crate) access_log: Option<AccessLog>,
    /// The door of this worker's loop: closed while the loop runs late (net/lag.rs).
    pub(crate) lag: Door,
    /// Requests that wait seen, for the lag watcher.
    pub(crate) seen: Seen,
    /// How long a connection answered 503 by a route that waits goes unread, on average
    /// (ADMISSION_INTERVAL; no pause with ADMISSION_TARGET=off, admission control off).
    hold_off: Duration,
    /// Spreads those pauses ([`Core::hold_off`]).
    hold_off_rng: Rng,
}

impl<S: Service> Core<S> {
    pub(crate) fn new(id: usize, shared: Arc<Shared>, service: S, metrics: Rc<WorkerMetrics>) -> Core<S> {
        let c = &shared.config;
        Core {
            id,
            service,
            limits: Limits { max_head: c.max_header_bytes, max_body: c.max_body_bytes },
            timeouts: Timeouts {
                read: c.read_timeout,
                write: c.write_timeout,
                idle: c.idle_timeout,
                handler: c.handler_timeout,
            },
            date: DateCache::default(),
            read_buffers: BufferPool::new(READ_BUFFER),
            write_buffers: BufferPool::new(WRITE_BUFFER),
            tls: shared.tls.clone().map(Acceptor::new),
            tls_buffers: BufferPool::new(TLS_READ_BUFFER),
            scratch: RefCell::new(Vec::with_capacity(1024)),
            conns: RefCell::new(Slab::new()),
            draining: Cell::new(false),
            accept_canceller: RefCell::new(Canceller::new()),
            metrics,
            ids: request_id::Generator::new(shared.id_seed, id),
            access_log: shared.access_log.clone().map(|w| AccessLog::new(c.log_format, w)),
            lag: Door::new(c.admission.filter(|_| c.admission_loop_lag)),
            seen: Seen::default(),
            hold_off: c.admission.map_or(Duration::ZERO, |a| a.interval),
            hold_off_rng: Rng::for_worker(shared.id_seed, id),
            shared,
        }
    }

    /// Whether responses should close their connections: this worker has started draining,
    /// or the signal has just arrived and the sweeper has not passed yet.
    pub(crate) fn is_draining(&self) -> bool {
        self.draining.get() || self.shared.is_closing()
    }

    /// The next pause for a connection answered 503 for load: ADMISSION_INTERVAL on
    /// average, drawn from half to one and a half of it. Connections refused in one turn
    /// would otherwise all be read again in one later turn, with what their clients sent
    /// meanwhile: a burst of the size that was refused, refused again. Zero: no pause.
    pub(crate) fn hold_off(&self) -> Duration {
        spread(self.hold_off, &self.hold_off_rng)
    }

    pub(crate) fn accept_handle(&self) -> CancelHandle {
        self.accept_canceller.borrow().handle()
    }

    /// Enters the drain on this worker: stop accepting; the sweeper closes idle connections
    /// and responses carry `Connection: close` from now on.
    pub(crate) fn start_draining(&self) {
        if !self.draining.replace(true) {
            let old = self.accept_canceller.take();
            *self.accept_canceller.borrow_mut() = old.cancel();
        }
    }

    /// Cuts the I/O of every connection that is overdue. Collects first, cuts after, so no
    /// borrow of the registry is held while a cancellation runs.
    pub(crate) fn sweep(&self, now: u64, overdue: &mut Vec<(Rc<ConnCtl>, Cut)>) {
        let draining = self.draining.get();
        overdue.extend(
            self.conns.borrow().iter().filter_map(|(_, c)| c.overdue(now, draining).map(|why| (c.clone(), why))),
        );
        for (conn, why) in overdue.drain(..) {
            conn.cut(why);
        }
    }
}

/// Requests that wait seen since the last look (the loop counts, net/lag.rs reads).
#[derive(Default)]
pub(crate) struct Seen(Cell<u64>);

impl Seen {
    #[inline]
    pub(crate) fn one(&self) {
        self.0.set(self.0.get().wrapping_add(1));
    }

    pub(crate) fn get(&self) -> u64 {
        self.0.get()
    }
}

/// `base` times a fraction drawn from [0.5, 1.5).
fn spread(base: Duration, rng: &Rng) -> Duration {
    if base.is_zero() {
        return base;
    }
    base.mul_f64(0.5 + rng.fraction())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_spread_over_half_to_one_and_a_half_of_the_interval() {
        let base = Duration::from_millis(100);
        let rng = Rng::for_worker(0x9e37_79b9_7f4a_7c15, 0);
        let draws: Vec<Duration> = (0..10_000).map(|_| spread(base, &rng)).collect();
        assert!(draws.iter().all(|&d| d >= base / 2 && d < base * 3 / 2), "out of range");
        let mean = draws.iter().sum::<Duration>() / draws.len() as u32;
        assert!(mean > base.mul_f64(0.98) && mean < base.mul_f64(1.02), "mean {mean:?}");
        // Spread, not a few values: in 10 ms bins, every one of the ten is used.
        let mut bins = [0u32; 10];
        draws.iter().for_each(|d| bins[((d.as_millis() - 50) / 10) as usize] += 1);
        assert!(bins.iter().all(|&n| n > 800), "{bins:?}");
        assert_eq!(spread(Duration::ZERO, &rng), Duration::ZERO);
    }
}
