//! What the workers share: the configuration, the chosen driver, the database pool, the
//! drain flag and the process-wide connection count.
//!
//! It is read-mostly. The request path touches none of it except the drain flag, and only
//! through each worker's own copy ([`crate::worker::WorkerCtx::draining`]); the atomics
//! change once per connection, not per request.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use std::sync::Arc;

use crate::config::Config;
use crate::db::Pool;
use crate::driver::IoDriver;

pub struct Shared {
    pub config: Config,
    pub driver: IoDriver,
    pub db: Arc<Pool>,
    draining: AtomicBool,
    open_connections: AtomicUsize,
}

impl Shared {
    pub fn new(config: Config, driver: IoDriver, db: Arc<Pool>) -> Shared {
        Shared { config, driver, db, draining: AtomicBool::new(false), open_connections: AtomicUsize::new(0) }
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
