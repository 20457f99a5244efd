//! The process around the request path: how many workers and on which CPUs ([`cpus`],
//! [`cgroup`]), which I/O driver ([`driver`]), one core's runtime, where the application is
//! handed to the connection loop ([`worker`]), start, signals, drain and exit ([`server`],
//! [`shutdown`]), and the memory figures ([`memory`], [`startup_pages`]) that size and trim
//! it.

pub(crate) mod cgroup;
pub mod cpus;
pub mod driver;
pub(crate) mod memory;
pub mod server;
pub(crate) mod shutdown;
pub mod slice;
pub(crate) mod startup_pages;
pub(crate) mod status;
pub(crate) mod worker;
