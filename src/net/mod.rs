//! Sockets: the per-worker listener (①), the connection loop (②), its buffers, its
//! deadlines and, on a TLS listener, its handshake and records.

pub mod balance;
pub mod body_memory;
pub mod buffers;
pub mod call;
pub mod catch;
pub mod conn;
pub mod core;
pub mod gone;
pub mod listener;
pub mod send;
pub mod service;
pub mod shared;
pub mod timeouts;
pub mod tls;
