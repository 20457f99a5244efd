//! percore: a thread-per-core HTTP/1.1 API server.
//!
//! One worker thread per allowed CPU, each with its own monoio runtime (io_uring, or epoll
//! where io_uring is blocked), its own SO_REUSEPORT listener and its own buffers, Date cache
//! and router: nothing is shared on the request path. The path of one request:
//!
//! 1. [`net::listener`] — the worker's own socket accepts; the kernel shards connections.
//! 2. [`net::conn`] — reads into the connection's reused buffer; owns timeouts
//!    ([`net::timeouts`]) and keep-alive.
//! 3. [`http::request`] — bytes → request: a pure function (httparse + body framing +
//!    limits), no I/O.
//! 4. [`router`] — (method, path) → route and parameters; 404 and 405 here.
//! 5. [`handlers`] — in-core work, panics caught, deadlines enforced.
//! 6. [`db::client`] — a database job sent over a bounded channel (full queue: 503 at
//!    once, never block a core), its reply awaited without blocking;
//! 7. [`db::pool`] — executed by a pool thread that owns its connection and prepared
//!    statements ([`db::store`]); the jobs and their SQL live in [`db::jobs`].
//! 8. [`http::response`] — response → bytes in the connection's out buffer (cached Date,
//!    simd-json, canned errors), written once per read batch.
//!
//! The resources and their rules are in [`model`]; JSON bodies are read in [`json`] and
//! decoded into validated inputs in [`decode`]. The API is described in `src/openapi.json`.
//! Observability: per-core [`metrics`] gathered on scrape, [`request_id`]s, [`logging`] with
//! request fields, a non-blocking [`access_log`], and the [`debug`] profiling listener.
//!
//! Around it: [`config`] (environment → validated config), [`cpus`] (how many workers,
//! where), [`driver`] (io_uring or epoll), [`server`] (start, signals, drain, exit) and
//! [`worker`] (one core's runtime); [`startup_pages`] lets go of start-up's code pages once
//! the server is ready.

pub mod app;
pub mod clock;
pub mod config;
pub mod db;
pub mod doorbell;
pub mod http;
pub mod net;
pub mod obs;
pub mod runtime;
