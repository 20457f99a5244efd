//! percore: a thread-per-core HTTP/1.1 API server.
//!
//! One worker thread per allowed CPU, each with its own monoio runtime (io_uring, or epoll
//! where io_uring is blocked), its own SO_REUSEPORT listener and its own buffers, Date cache,
//! router and metrics: nothing is shared on the request path. The folders follow one
//! request, every arrow pointing down:
//!
//! 1. [`net::listener`] — the worker's own socket accepts; the kernel shards connections.
//! 2. [`net::conn`] — reads into the connection's reused buffer, answers every whole request
//!    it holds, writes once; owns deadlines ([`net::timeouts`]) and keep-alive. On a TLS
//!    listener the handshake and the records run here too, on the same loop ([`net::tls`]).
//!    It calls the application through one seam, [`http::service::Service`], and names no
//!    route.
//! 3. [`http::request`] — bytes → request: a pure function (httparse + body framing +
//!    limits), no I/O.
//! 4. [`http::route`] matches (method, path) against the application's table,
//!    [`app::routes`], where every route is declared once; 404, 405 and 400 there.
//! 5. [`app::handlers`] — one file per resource; [`net::guard`] catches panics and enforces
//!    HANDLER_TIMEOUT around them.
//! 6. [`db::calls`] — a handler's typed call (`ctx.db.get_user(id)`) becomes a database job
//!    ([`db::jobs`], each declared once in its table) sent over a bounded channel
//!    ([`db::client`]; full queue: 503 at once, never block a core), its answer awaited
//!    without blocking, under the request's deadline ([`deadline`]). While the queue
//!    stands, requests for the store are refused before this step ([`codel`]).
//! 7. [`db::pool`] — taken by a pool thread ([`db::thread`]) that owns its connection and
//!    prepared statements ([`db::store`]) and pipelines jobs on it ([`db::pipeline`]).
//! 8. [`http::response`] — response → bytes in the connection's out buffer (cached Date,
//!    simd-json, canned errors), written once per read batch.
//!
//! Around the path: [`runtime`] (how many workers on which CPUs, which I/O driver, start,
//! signals, drain, exit), [`obs`] (metrics, logs, access log, request ids, the profiler),
//! [`tls`] (certificates and the rustls configurations of the listener and of the Postgres
//! connections, read at start and reloaded when they change), [`config`] (environment →
//! validated settings, read once) and [`clock`] (time and the calendar, for every layer).

#![deny(clippy::undocumented_unsafe_blocks, clippy::missing_safety_doc)]
// Everything is pub(crate) unless main, the tests, the benches or the fuzzer use it, so an
// item nothing uses is reported as dead instead of passing for API.
#![warn(unreachable_pub)]
// The map above is for the people who work on percore (`cargo doc --document-private-items`):
// it names internals on purpose.
#![allow(rustdoc::private_intra_doc_links)]

/// An enum of metric label values and the array of their labels, from one list, so the two
/// cannot drift: variant `i` is counted at index `i` and rendered as `LABELS[i]`.
///
/// ```ignore
/// labelled! {
///     /// Why a connection was not served at once.
///     pub enum Reject / REJECT_REASONS { MaxConnections = "max_connections", NoMemory = "no_memory" }
/// }
/// ```
macro_rules! labelled {
    ($(#[$meta:meta])* $vis:vis enum $name:ident / $labels:ident {
        $( $(#[$vmeta:meta])* $variant:ident = $label:literal ),* $(,)?
    }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant, )*
        }

        #[doc = concat!("The labels of [`", stringify!($name), "`], in its order.")]
        $vis const $labels: [&str; [$($label),*].len()] = [$($label),*];
    };
}

pub mod app;
pub(crate) mod clock;
pub(crate) mod codel;
pub mod config;
pub mod db;
pub(crate) mod deadline;
pub(crate) mod doorbell;
pub mod http;
pub(crate) mod lifecycle;
pub(crate) mod net;
pub mod obs;
pub(crate) mod rng;
pub mod runtime;
pub mod tls;
