//! Observability: per-core Prometheus [`metrics`] gathered on scrape, [`request_id`]s,
//! [`logging`] with request fields, a non-blocking [`access_log`], the [`profiler`]
//! listener (DEBUG_ADDR), and the registry of percore's [`threads`] (their CPU clocks). None of it is on the request path beyond counting into
//! per-worker memory.

pub(crate) mod access_log;
pub mod logging;
pub(crate) mod metrics;
pub(crate) mod profiler;
pub(crate) mod request_id;
pub(crate) mod threads;
