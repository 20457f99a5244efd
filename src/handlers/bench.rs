//! The TechEmpower test types, mounted with BENCH_ROUTES=1.
//!
//! The rules ask for `Server`, `Date`, `Content-Type` and `Content-Length` on every
//! response, and for the JSON object to be serialized per request — not cached.

use serde::Serialize;

use crate::http::response::Reply;

/// `/plaintext`: `Hello, World!` as text/plain.
pub fn plaintext(reply: &mut Reply<'_>) {
    reply.send(200, "text/plain", b"Hello, World!", &[]);
}

#[derive(Serialize)]
struct Message {
    message: &'static str,
}

/// `/json`: `{"message":"Hello, World!"}`, serialized for each request.
pub fn json(reply: &mut Reply<'_>) {
    reply.json(200, &Message { message: "Hello, World!" }, &[]);
}
