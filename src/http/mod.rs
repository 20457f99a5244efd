//! HTTP/1.1 on bytes: parsing (③), routing (④), encoding (⑧) and their helpers, and the
//! seam between the connection loop and the application ([`service`]). Nothing here does
//! I/O, so all of it is unit-tested, property-tested and fuzzed directly.

pub(crate) mod budget;
pub(crate) mod chunked;
pub mod date;
pub mod query;
pub mod request;
pub mod response;
pub mod route;
pub(crate) mod service;
pub(crate) mod trace_context;
