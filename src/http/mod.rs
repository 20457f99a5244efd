//! HTTP/1.1 on bytes: parsing (③), routing (④), encoding (⑧) and their helpers. Nothing here does I/O,
//! so all of it is unit-tested, property-tested and fuzzed directly.

pub mod chunked;
pub mod date;
pub mod query;
pub mod request;
pub mod response;
pub mod route;
pub mod trace_context;
