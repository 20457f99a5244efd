//! Routes only the test build mounts (feature `test-routes`): a handler that panics, one
//! that sleeps, one that echoes its body and one that sends a large body — to prove the
//! panic guard, HANDLER_TIMEOUT, body framing and the write timeout against the real server.

use std::time::Duration;

use crate::app::App;
use crate::http::query;
use crate::http::response::{Reply, TEXT};
use crate::http::route::RequestView;

pub(crate) fn panic(_: &App, _: RequestView<'_>, _: &mut Reply<'_>) {
    panic!("the test route panicked on purpose");
}

fn number(req: &RequestView<'_>, key: &str) -> u64 {
    query::get(req.query(), key).ok().flatten().and_then(|v| std::str::from_utf8(&v).ok()?.parse().ok()).unwrap_or(0)
}

/// `/__test/sleep?ms=N`: answers 200 after N milliseconds.
pub(crate) async fn sleep(_: &App, req: RequestView<'_>, reply: &mut Reply<'_>) {
    monoio::time::sleep(Duration::from_millis(number(&req, "ms"))).await;
    reply.send(200, TEXT, b"slept", &[]);
}

/// `POST /__test/echo`: the body back.
pub(crate) fn echo(_: &App, req: RequestView<'_>, reply: &mut Reply<'_>) {
    reply.send(200, "application/octet-stream", req.body, &[]);
}

/// `/__test/big?kb=N`: N KiB of `x`.
pub(crate) fn big(_: &App, req: RequestView<'_>, reply: &mut Reply<'_>) {
    let body = vec![b'x'; number(&req, "kb").min(64 * 1024) as usize * 1024];
    reply.send(200, TEXT, &body, &[]);
}
