//! The process around the request path: how many workers and on which CPUs ([`cpus`]),
//! which I/O driver ([`driver`]), what they share ([`shared`]), one core's runtime
//! ([`worker`]), start, signals, drain and exit ([`server`], [`shutdown`]), and the memory
//! figures ([`memory`], [`startup_pages`]) that size and trim it.

pub mod cgroup;
pub mod cpus;
pub mod driver;
pub mod memory;
pub mod server;
pub mod shutdown;
pub mod startup_pages;
pub mod worker;
