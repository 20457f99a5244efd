//! What every worker's connections share, process-wide: the configuration, the drain flag,
//! the connection count behind MAX_CONNECTIONS, the request-body budget, the access log's
//! writer and the random part of request ids.
//!
//! It is read-mostly. The request path touches none of it except the drain flag, once per
//! read batch, and each worker's own copy ([`super::core::Core::draining`]); the atomics
//! change once per connection, not per request.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crossbeam_channel::Sender;

use crate::config::Balance as BalanceChoice;
use crate::config::Config;
use crate::lifecycle::Lifecycle;
use crate::net::balance::Balance;
use crate::net::body_memory::BodyMemory;
use crate::tls::server::ServerTls;

pub(crate) struct Shared {
    pub(crate) config: Config,
    /// The access log's writer thread, when ACCESS_LOG=on.
    pub(crate) access_log: Option<Sender<Vec<u8>>>,
    /// This process's random part of generated request ids.
    pub(crate) id_seed: u64,
    /// MAX_BODY_MEMORY: request bodies held at once, all workers together.
    pub(crate) body_memory: BodyMemory,
    /// Which worker serves a new connection, and each worker's live count.
    pub(crate) balance: Balance,
    /// The listener's TLS, when TLS_CERT_FILE and TLS_KEY_FILE are set.
    pub(crate) tls: Option<Arc<ServerTls>>,
    /// Serving, closing or draining: the runtime moves it, the application reads it too.
    pub(crate) lifecycle: Arc<Lifecycle>,
    open_connections: AtomicUsize,
}

impl Shared {
    pub(crate) fn new(
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
            lifecycle: Arc::new(Lifecycle::default()),
            open_connections: AtomicUsize::new(0),
        }
    }

    /// Listeners are to close: the drain has begun.
    pub(crate) fn is_draining(&self) -> bool {
        self.lifecycle.is_draining()
    }

    /// Shutting down, delayed or draining: responses close their connections.
    pub(crate) fn is_closing(&self) -> bool {
        self.lifecycle.is_closing()
    }

    /// Counts a new connection unless the process is at MAX_CONNECTIONS.
    pub(crate) fn try_open_connection(&self) -> bool {
        let max = self.config.max_connections;
        self.open_connections.fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| (n < max).then_some(n + 1)).is_ok()
    }

    pub(crate) fn at_connection_limit(&self) -> bool {
        self.open_connections.load(Ordering::Relaxed) >= self.config.max_connections
    }

    pub(crate) fn close_connection(&self) {
        self.open_connections.fetch_sub(1, Ordering::AcqRel);
    }

    pub(crate) fn open_connections(&self) -> usize {
        self.open_connections.load(Ordering::Relaxed)
    }
}
