//! Health endpoints: /health (the article's), /livez and /readyz (Kubernetes probes).
//!
//! /livez answers while the process serves at all; /readyz stops answering 200 the moment
//! the drain begins, so the endpoints controller takes the pod out of the Service before
//! its connections are closed.

use serde::Serialize;

use crate::http::response::{Reply, TEXT};
use crate::worker::WorkerCtx;

pub fn health(reply: &mut Reply<'_>) {
    reply.send(200, TEXT, b"OK", &[]);
}

pub fn livez(reply: &mut Reply<'_>) {
    reply.send(200, TEXT, b"OK", &[]);
}

#[derive(Serialize)]
struct Ready {
    status: &'static str,
}

pub fn readyz(ctx: &WorkerCtx, reply: &mut Reply<'_>) {
    if ctx.is_draining() {
        reply.error(503, "draining: the server is shutting down");
    } else {
        reply.json(200, &Ready { status: "ready" }, &[]);
    }
}
