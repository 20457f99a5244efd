//! What every worker's connections share, process-wide: the configuration, the drain flag,
//! the connection count behind MAX_CONNECTIONS, the request-body budget, the access log's
//! writer and the random part of request ids.
//!
//! It is read-mostly. The request path touches none of it except the drain flag, once per
//! read batch, and each worker's own copy ([`super::core::Core::draining`]); the atomics
//! change once per connection, not per request.

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;

use crossbeam_channel::Sender;

use crate::config::Balance as BalanceChoice;
use crate::config::Config;
use crate::net::balance::Balance;
use crate::net::body_memory::BodyMemory;
use crate::tls::server::ServerTls;

pub struct Shared {
    pub config: Config,
    /// The access log's writer thread, when ACCESS_LOG=on.
    pub access_log: Option<Sender<Vec<u8>>>,
    /// This process's random part of generated request ids.
    pub id_seed: u64,
    /// MAX_BODY_MEMORY: request bodies held at once, all workers together.
    pub body_memory: BodyMemory,
    /// Which worker serves a new connection, and each worker's live count.
    pub balance: Balance,
    /// The listener's TLS, when TLS_CERT_FILE and TLS_KEY_FILE are set.
    pub tls: Option<Arc<ServerTls>>,
    /// [`SERVING`], [`CLOSING`] or [`DRAINING`].
    phase: AtomicU8,
    open_connections: AtomicUsize,
}

/// Before any signal.
const SERVING: u8 = 0;
/// A signal arrived and SHUTDOWN_DELAY runs: /readyz says 503, responses close their
/// connections, but listeners still accept, so a balancer that has not noticed yet loses
/// nothing.
const CLOSING: u8 = 1;
/// Listeners are shut; what is open finishes.
const DRAINING: u8 = 2;

impl Shared {
    pub fn new(
        config: Config,
        access_log: Option<Sender<Vec<u8>>>,
        body_memory: usize,
        workers: usize,
        tls: Option<Arc<ServerTls>>,
    ) -> Shared {
        Shared {
            tls,
            balance: Balance::new(workers, config.conn_balance == BalanceChoice::Exact),
            config,
            access_log,
            id_seed: crate::obs::request_id::process_random(),
            body_memory: BodyMemory::new(body_memory),
            phase: AtomicU8::new(SERVING),
            open_connections: AtomicUsize::new(0),
        }
    }

    /// Set by the main thread at a signal when SHUTDOWN_DELAY is above zero.
    pub fn start_closing(&self) {
        self.phase.fetch_max(CLOSING, Ordering::SeqCst);
    }

    /// Set once by the main thread; workers notice within one sweep tick.
    pub fn start_draining(&self) {
        self.phase.store(DRAINING, Ordering::SeqCst);
    }

    /// Listeners are to close: the drain has begun.
    pub fn is_draining(&self) -> bool {
        self.phase.load(Ordering::Relaxed) == DRAINING
    }

    /// Shutting down, delayed or draining: not ready, and responses close their connections.
    pub fn is_closing(&self) -> bool {
        self.phase.load(Ordering::Relaxed) != SERVING
    }

    /// Counts a new connection unless the process is at MAX_CONNECTIONS.
    pub fn try_open_connection(&self) -> bool {
        let max = self.config.max_connections;
        self.open_connections.fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| (n < max).then_some(n + 1)).is_ok()
    }

    pub fn at_connection_limit(&self) -> bool {
        self.open_connections.load(Ordering::Relaxed) >= self.config.max_connections
    }

    pub fn close_connection(&self) {
        self.open_connections.fetch_sub(1, Ordering::AcqRel);
    }

    pub fn open_connections(&self) -> usize {
        self.open_connections.load(Ordering::Relaxed)
    }
}
