//! ⑤ Handlers: one file per resource, each answering through a [`crate::http::response::Reply`].
//!
//! Every handler takes `(&App, RequestView, &mut Reply)`; [`super::routes`] says which
//! handler answers which route and method, and whether it waits. Panics and HANDLER_TIMEOUT
//! are the connection loop's business, not a handler's.

mod api;
pub(crate) mod bench;
pub(crate) mod health;
pub(crate) mod metrics;
pub(crate) mod orders;
pub(crate) mod preferences;
#[cfg(feature = "example-resource")]
pub(crate) mod products;
#[cfg(feature = "test-routes")]
pub(crate) mod testing;
pub(crate) mod users;

/// The OpenAPI 3 description of the API, served at /openapi.json and checked in CI
/// (schemathesis against a running server; tests/it/openapi.rs against the route table).
pub const OPENAPI: &str = include_str!("../openapi.json");
