//! The integration tests, one crate: each module is one area (`cargo test --test it api::`
//! runs one), sharing `common` (the harness that starts the real server and speaks to it).
//! One crate links once, where a crate per file linked the whole server and the harness
//! again for every file.

mod api;
mod attacks;
mod balance;
mod bench_routes;
mod cli;
mod common;
mod crossing;
mod fleet;
mod guide;
mod half_close;
mod http_wire;
mod k8s;
mod layout;
mod lifecycle;
mod load;
mod memory_limit;
mod observability;
mod openapi;
mod overload;
mod pg_tls;
mod pooler;
mod store;
mod strict_clients;
mod timeouts;
mod tls_listener;
