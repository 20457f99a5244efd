//! TLS for both of percore's sides, on rustls: the listener ([`server`]: TLS_CERT_FILE,
//! TLS_KEY_FILE, TLS_CLIENT_CA_FILE, reloaded when they change) and the Postgres client
//! ([`client`]: libpq's sslmodes). The record layer of the listener runs in the connection
//! loop, on each worker's own event loop ([`crate::net::tls`]); the Postgres side runs on
//! the pool threads through tokio-postgres.
//!
//! The crypto provider is aws-lc-rs, rustls's default, chosen over *ring* on three counts,
//! measured with the listener's settings (`python3 perf/tls_providers.py`, server side):
//! a full TLS 1.3 handshake costs 81 µs against ring's 116, a 16 KiB record is sealed in
//! 2.3 µs against 3.4 (AVX-512 AES-GCM), and it brings the X25519MLKEM768 post-quantum
//! hybrid key exchange — what Go's crypto/tls and the browsers now offer first, and what
//! rustls deprecated the ring provider for lacking (+22 µs a handshake, paid only by
//! clients that offer it). Both keep the static binary free of OpenSSL and build with a C
//! compiler alone; aws-lc costs about 1.5 MB more in the image and a longer first build.

pub(crate) mod client;
pub(crate) mod describe;
pub(crate) mod files;
pub(crate) mod server;
pub(crate) mod stats;

use std::sync::Arc;

use crate::config::{Config, ConfigError, StoreConfig};

/// What the configuration asked for, loaded: read once at start, so a missing or broken file
/// stops the start (exit 2) naming its setting.
pub struct Loaded {
    /// The listener's TLS, when TLS_CERT_FILE and TLS_KEY_FILE are set (its watcher thread
    /// started).
    pub(crate) listener: Option<Arc<server::ServerTls>>,
    /// The Postgres connections' TLS, unless the store is SQLite or `sslmode=disable`.
    pub(crate) postgres: Option<Arc<rustls::ClientConfig>>,
}

/// Loads the TLS material `config` names.
pub fn load(config: &Config) -> Result<Loaded, ConfigError> {
    let postgres = match &config.store {
        StoreConfig::Postgres(pg) => client::postgres(pg)?,
        StoreConfig::Sqlite { .. } => None,
    };
    let listener = config.tls.as_ref().map(server::ServerTls::load).transpose()?;
    Ok(Loaded { listener, postgres })
}

/// The crypto provider every TLS configuration here is built with.
pub(crate) fn provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::aws_lc_rs::default_provider()
}
