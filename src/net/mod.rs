//! Sockets: the per-worker listener (①), the connection loop (②), its buffers, its
//! deadlines and, on a TLS listener, its handshake and records.

pub(crate) mod balance;
pub(crate) mod body_memory;
pub(crate) mod buffers;
pub(crate) mod catch;
pub(crate) mod conn;
pub(crate) mod core;
pub(crate) mod guard;
pub(crate) mod lag;
pub(crate) mod listener;
pub(crate) mod race;
pub(crate) mod send;
pub(crate) mod shared;
pub(crate) mod timeouts;
pub(crate) mod tls;
