//! Sockets: the per-worker listener (①), the connection loop (②), its buffers and its
//! deadlines.

pub mod balance;
pub mod body_memory;
pub mod buffers;
pub mod call;
pub mod catch;
pub mod conn;
pub mod core;
pub mod gone;
pub mod listener;
pub mod service;
pub mod shared;
pub mod timeouts;
