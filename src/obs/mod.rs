//! Observability: per-core Prometheus [`metrics`] gathered on scrape, [`request_id`]s,
//! [`logging`] with request fields, a non-blocking [`access_log`], and the [`profiler`]
//! listener (DEBUG_ADDR). None of it is on the request path beyond counting into
//! per-worker memory.

pub mod access_log;
pub mod logging;
pub mod metrics;
pub mod profiler;
pub mod request_id;
