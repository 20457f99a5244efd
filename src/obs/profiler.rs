//! The profiling listener on DEBUG_ADDR (default 127.0.0.1:6060, empty disables it):
//!
//! - `/debug/pprof/` — an index of what is here;
//! - `/debug/pprof/profile?seconds=N` — a CPU profile in pprof's protobuf format, which
//!   `go tool pprof -top FILE` reads, sampled with the pprof crate (SIGPROF, frame-pointer
//!   unwinding: the release build keeps frame pointers and symbols);
//! - `/debug/pprof/flamegraph?seconds=N` — the same profile as an SVG flame graph.
//!
//! N is 1–60 (default 30, as in Go). One profile at a time: a second request while one runs
//! gets 409. It runs on its own thread with blocking sockets — it is not on the request path
//! and must not touch it — and reuses percore's parser and response writer.

use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use crate::http::date::DateCache;
use crate::http::query;
use crate::http::request::{Limits, Method, Parsed, Parser};
use crate::http::response::{Framing, Reply};

const MAX_SECONDS: u64 = 60;
const DEFAULT_SECONDS: u64 = 30;
const SAMPLE_HZ: i32 = 99;
/// Connections served at once; more wait in the backlog.
const MAX_CLIENTS: usize = 4;

static PROFILING: AtomicBool = AtomicBool::new(false);
static CLIENTS: AtomicUsize = AtomicUsize::new(0);

/// Binds DEBUG_ADDR and serves it on a thread of its own. Returns the bound address.
pub fn start(addr: SocketAddr) -> io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let local = listener.local_addr()?;
    std::thread::Builder::new().name("percore-debug".into()).spawn(move || {
        for stream in listener.incoming().flatten() {
            if CLIENTS.fetch_add(1, Ordering::SeqCst) >= MAX_CLIENTS {
                CLIENTS.fetch_sub(1, Ordering::SeqCst);
                continue;
            }
            let spawned = std::thread::Builder::new().name("percore-debug-conn".into()).spawn(move || {
                let _ = serve(stream);
                CLIENTS.fetch_sub(1, Ordering::SeqCst);
            });
            if spawned.is_err() {
                CLIENTS.fetch_sub(1, Ordering::SeqCst);
            }
        }
    })?;
    Ok(local)
}

/// Reads one request, answers it, closes.
fn serve(mut stream: TcpStream) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut buf = Vec::with_capacity(4096);
    let mut parser = Parser::new(Limits { max_head: 16 * 1024, max_body: 0 });
    let mut chunk = [0u8; 4096];
    let request = loop {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        match parser.parse(&mut buf) {
            Ok(Parsed::Complete(r)) => break Ok(r),
            Ok(Parsed::Partial) => continue,
            Err(e) => break Err(e),
        }
    };
    let dates = DateCache::default();
    let date = dates.get();
    let scratch = RefCell::new(Vec::new());
    let mut out = Vec::new();
    let framing = Framing { close: true, ..Framing::default() };
    let mut reply = Reply::new(&mut out, &scratch, &date, framing, b"");
    match request {
        Err(e) => reply.error(e.status(), e.message()),
        Ok(r) if r.head.method != Method::Get => reply.error_with(405, "Method Not Allowed", &[("Allow", b"GET")]),
        Ok(r) => {
            let (path, q) = (r.head.path(&buf), r.head.query(&buf));
            route(path, q, &mut reply);
        }
    }
    stream.write_all(&out)
}

fn route(path: &[u8], q: &[u8], reply: &mut Reply<'_>) {
    match path {
        b"/debug/pprof" | b"/debug/pprof/" => reply.send(200, "text/html; charset=utf-8", INDEX.as_bytes(), &[]),
        b"/debug/pprof/profile" | b"/debug/pprof/flamegraph" => {
            let seconds = match seconds(q) {
                Ok(s) => s,
                Err(message) => return reply.error(400, message),
            };
            let flamegraph = path.ends_with(b"flamegraph");
            match profile(seconds, flamegraph) {
                Ok(body) if flamegraph => reply.send(200, "image/svg+xml", &body, &[]),
                Ok(body) => reply.send(
                    200,
                    "application/octet-stream",
                    &body,
                    &[("Content-Disposition", b"attachment; filename=\"profile.pb\"")],
                ),
                Err(Busy) => reply.error(409, "a profile is already being taken; try again when it is done"),
                Err(Failed(e)) => reply.error(500, &format!("profiling failed: {e}")),
            }
        }
        _ => reply.error(404, "Not Found"),
    }
}

/// `seconds=N`, 1–60, default 30.
pub fn seconds(q: &[u8]) -> Result<u64, &'static str> {
    match query::get(q, "seconds") {
        Ok(None) => Ok(DEFAULT_SECONDS),
        Ok(Some(v)) => std::str::from_utf8(&v)
            .ok()
            .and_then(|s| s.parse().ok())
            .filter(|n| (1..=MAX_SECONDS).contains(n))
            .ok_or("seconds: must be a whole number from 1 to 60"),
        Err(_) => Err("seconds: must be a whole number from 1 to 60"),
    }
}

enum ProfileError {
    Busy,
    Failed(String),
}
use ProfileError::{Busy, Failed};

/// Samples the whole process for `seconds` and encodes the result.
fn profile(seconds: u64, flamegraph: bool) -> Result<Vec<u8>, ProfileError> {
    if PROFILING.swap(true, Ordering::SeqCst) {
        return Err(Busy);
    }
    struct Done;
    impl Drop for Done {
        fn drop(&mut self) {
            PROFILING.store(false, Ordering::SeqCst);
        }
    }
    let _done = Done;
    let guard = pprof::ProfilerGuardBuilder::default()
        .frequency(SAMPLE_HZ)
        .blocklist(&["libc", "libgcc", "pthread", "vdso"])
        .build()
        .map_err(|e| Failed(e.to_string()))?;
    std::thread::sleep(Duration::from_secs(seconds));
    let report = guard.report().build().map_err(|e| Failed(e.to_string()))?;
    let mut body = Vec::new();
    if flamegraph {
        report.flamegraph(&mut body).map_err(|e| Failed(e.to_string()))?;
    } else {
        use pprof::protos::Message;
        let profile = report.pprof().map_err(|e| Failed(e.to_string()))?;
        profile.encode(&mut body).map_err(|e| Failed(e.to_string()))?;
    }
    Ok(body)
}

const INDEX: &str = r#"<!doctype html>
<title>percore profiling</title>
<h1>percore profiling</h1>
<ul>
<li><a href="/debug/pprof/profile?seconds=30">/debug/pprof/profile?seconds=N</a> — CPU profile (pprof protobuf): <code>go tool pprof -top profile.pb</code></li>
<li><a href="/debug/pprof/flamegraph?seconds=30">/debug/pprof/flamegraph?seconds=N</a> — the same as an SVG flame graph</li>
</ul>
<p>N is 1–60 seconds; one profile at a time.</p>
"#;

#[cfg(test)]
mod tests {
    #[test]
    fn seconds_are_bounded() {
        assert_eq!(super::seconds(b""), Ok(30));
        assert_eq!(super::seconds(b"seconds=1"), Ok(1));
        assert_eq!(super::seconds(b"seconds=60"), Ok(60));
        for bad in [&b"seconds=0"[..], b"seconds=61", b"seconds=x", b"seconds=-1"] {
            assert!(super::seconds(bad).is_err());
        }
    }
}
