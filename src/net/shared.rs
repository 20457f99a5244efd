//! What every worker's connections share, process-wide: the configuration, the drain flag,
//! the connection count behind MAX_CONNECTIONS, the request-body budget, the access log's
//! writer and the random part of request ids.
//!
//! It is read-mostly. The request path touches none of it except the drain flag, once per
//! read batch, and each worker's own copy ([`super::core::Core::draining`]); the atomics
//! change once per connection, not per request.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crossbeam_channel::Sender;

use crate::config::Balance as BalanceChoice;
use crate::config::Config;
use crate::net::balance::Balance;
use crate::net::body_memory::BodyMemory;

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
    draining: AtomicBool,
    open_connections: AtomicUsize,
}

impl Shared {
    pub fn new(config: Config, access_log: Option<Sender<Vec<u8>>>, body_memory: usize, workers: usize) -> Shared {
        Shared {
            balance: Balance::new(workers, config.conn_balance == BalanceChoice::Exact),
            config,
            access_log,
            id_seed: crate::obs::request_id::process_random(),
            body_memory: BodyMemory::new(body_memory),
            draining: AtomicBool::new(false),
            open_connections: AtomicUsize::new(0),
        }
    }

    /// Set once by the signal handler thread; workers notice within one sweep tick.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
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
