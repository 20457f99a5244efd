//! What the workers share: the configuration, the chosen driver, the database pool, the
//! drain flag, the process-wide connection count, and the doorbells through which a metrics
//! scrape asks each worker for its numbers.
//!
//! It is read-mostly. The request path touches none of it except the drain flag, once per
//! read batch, and each worker's own copy ([`crate::runtime::worker::WorkerCtx::draining`]); the
//! atomics change once per connection, not per request.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use crossbeam_channel::Sender;

use crate::config::Config;
use crate::db::Pool;
use crate::doorbell::Doorbell;
use crate::net::body_memory::BodyMemory;
use crate::obs::metrics::SnapshotRequest;
use crate::runtime::driver::IoDriver;

pub struct Shared {
    pub config: Config,
    pub driver: IoDriver,
    pub db: Arc<Pool>,
    /// One per worker: post a request, get that worker's metrics snapshot back.
    pub snapshot_requests: Box<[Doorbell<SnapshotRequest>]>,
    /// The access log's writer thread, when ACCESS_LOG=on.
    pub access_log: Option<Sender<Vec<u8>>>,
    /// This process's random part of generated request ids.
    pub id_seed: u64,
    /// MAX_BODY_MEMORY: request bodies held at once, all workers together.
    pub body_memory: BodyMemory,
    draining: AtomicBool,
    open_connections: AtomicUsize,
}

impl Shared {
    pub fn new(
        config: Config,
        driver: IoDriver,
        db: Arc<Pool>,
        workers: usize,
        access_log: Option<Sender<Vec<u8>>>,
        body_memory: usize,
    ) -> Shared {
        Shared {
            config,
            driver,
            db,
            snapshot_requests: (0..workers).map(|_| Doorbell::default()).collect(),
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
