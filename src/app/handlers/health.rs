//! Health endpoints: /health (the article's), /livez and /readyz (Kubernetes probes).
//!
//! /livez answers while the process serves at all; /readyz answers 200 only while the store
//! answers (as the pool threads last saw it, checked at least every second) and stops the
//! moment the drain begins, so the endpoints controller takes the pod out of the Service
//! before its connections are closed.

use simd_json_derive::Serialize;

use super::OPENAPI;
use crate::app::App;
use crate::http::response::{Reply, JSON, TEXT};
use crate::http::route::RequestView;

pub(crate) fn health(_: &App, _: RequestView<'_>, reply: &mut Reply<'_>) {
    reply.send(200, TEXT, b"OK", &[]);
}

pub(crate) fn livez(_: &App, _: RequestView<'_>, reply: &mut Reply<'_>) {
    reply.send(200, TEXT, b"OK", &[]);
}

/// `/openapi.json`: the API's description.
pub(crate) fn openapi(_: &App, _: RequestView<'_>, reply: &mut Reply<'_>) {
    reply.send(200, JSON, OPENAPI.as_bytes(), &[]);
}

#[derive(Serialize)]
struct Ready {
    status: &'static str,
    store: &'static str,
}

/// 200 while the store answers and the server is not draining; else 503 saying which.
pub(crate) fn readyz(ctx: &App, _: RequestView<'_>, reply: &mut Reply<'_>) {
    let pool = ctx.db.pool();
    if ctx.is_closing() {
        reply.error(503, "draining: the server is shutting down");
    } else if let Err(why) = pool.readiness() {
        reply.error(503, &why);
    } else {
        reply.json(200, &Ready { status: "ready", store: pool.store }, &[]);
    }
}
