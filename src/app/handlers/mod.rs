//! ⑤ Handlers: one file per resource, each answering through a [`crate::http::response::Reply`].
//!
//! Every handler takes `(&App, RequestView, &mut Reply)`; [`super::routes`] says which
//! handler answers which route and method, and whether it waits. Panics and HANDLER_TIMEOUT
//! are the connection loop's business, not a handler's.

mod api;
pub mod bench;
pub mod health;
pub mod metrics;
pub mod orders;
pub mod preferences;
#[cfg(feature = "test-routes")]
pub mod testing;
pub mod users;

/// The OpenAPI 3 description of the API, served at /openapi.json and checked in CI
/// (schemathesis against a running server; tests/openapi.rs against the route table).
pub const OPENAPI: &str = include_str!("../openapi.json");
