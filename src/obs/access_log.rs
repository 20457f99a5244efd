//! ACCESS_LOG=on: one line per request, written without ever blocking a worker.
//!
//! Each worker appends lines to its own buffer. A full buffer, or the worker's sweeper every
//! tick, hands the buffer to the `percore-log` thread over a bounded channel; that thread
//! alone writes to stderr. If stderr is slow (a terminal, a full pipe) the channel fills and
//! the worker drops the buffer and counts the lost lines rather than wait — a log must not
//! take the service down with it.

use std::cell::{Cell, RefCell};
use std::io::Write;
use std::net::SocketAddr;

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::config::LogFormat;
use crate::http::trace_context;

/// A worker's buffer is handed over when it reaches this size.
const FLUSH_AT: usize = 32 * 1024;
/// Buffers in flight to the writer thread before lines are dropped.
const QUEUE: usize = 64;

/// One request, as the access log records it.
pub(crate) struct Entry<'a> {
    pub(crate) method: &'static str,
    pub(crate) route: &'static str,
    pub(crate) path: &'a [u8],
    pub(crate) status: u16,
    pub(crate) bytes: usize,
    pub(crate) duration_ns: u64,
    pub(crate) request_id: &'a [u8],
    pub(crate) peer: SocketAddr,
    /// The request's head bytes, where a `traceparent` is looked for.
    pub(crate) head: &'a [u8],
}

/// Starts the writer thread; returns the channel workers hand their buffers to.
pub(crate) fn start_writer() -> std::io::Result<Sender<Vec<u8>>> {
    let (tx, rx) = crossbeam_channel::bounded(QUEUE);
    std::thread::Builder::new().name("percore-log".into()).spawn(move || {
        let _registered = crate::obs::threads::register(crate::obs::threads::Role::Log);
        write_all(&rx)
    })?;
    Ok(tx)
}

fn write_all(rx: &Receiver<Vec<u8>>) {
    let stderr = std::io::stderr();
    for buf in rx {
        let _ = stderr.lock().write_all(&buf);
    }
}

/// One worker's access log.
pub(crate) struct AccessLog {
    format: LogFormat,
    buf: RefCell<Vec<u8>>,
    writer: Sender<Vec<u8>>,
    dropped: Cell<u64>,
}

impl AccessLog {
    pub(crate) fn new(format: LogFormat, writer: Sender<Vec<u8>>) -> AccessLog {
        AccessLog { format, buf: RefCell::new(Vec::with_capacity(FLUSH_AT + 1024)), writer, dropped: Cell::new(0) }
    }

    /// Appends a line for `e`.
    pub(crate) fn record(&self, e: &Entry<'_>) {
        let full = {
            let mut buf = self.buf.borrow_mut();
            match self.format {
                LogFormat::Text => text_line(&mut buf, e),
                LogFormat::Json => json_line(&mut buf, e),
            }
            buf.len() >= FLUSH_AT
        };
        if full {
            self.flush();
        }
    }

    /// Hands what is buffered to the writer thread, or drops it if that thread is behind.
    pub(crate) fn flush(&self) {
        let mut buf = self.buf.borrow_mut();
        if buf.is_empty() {
            return;
        }
        let lines = buf.iter().filter(|&&b| b == b'\n').count() as u64;
        let full = std::mem::replace(&mut *buf, Vec::with_capacity(FLUSH_AT + 1024));
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = self.writer.try_send(full) {
            let total = self.dropped.get() + lines;
            self.dropped.set(total);
            if total == lines {
                log::warn!("access log: stderr is not keeping up; dropping lines instead of waiting");
            }
        }
    }

    /// Lines dropped because the writer could not keep up.
    #[cfg(test)]
    fn dropped(&self) -> u64 {
        self.dropped.get()
    }
}

fn text_line(out: &mut Vec<u8>, e: &Entry<'_>) {
    out.push(b'[');
    out.extend_from_slice(&now_rfc3339_millis());
    out.extend_from_slice(b" INFO  access] ");
    let _ = write!(
        out,
        "{} {} {} {}B {:.3}ms route={} request_id={} peer={}",
        e.method,
        String::from_utf8_lossy(e.path),
        e.status,
        e.bytes,
        e.duration_ns as f64 / 1e6,
        e.route,
        String::from_utf8_lossy(e.request_id),
        e.peer
    );
    if let Some(t) = trace_context::find(e.head) {
        let _ = write!(out, " trace_id={} parent_id={}", t.trace_id(), t.parent_id());
    }
    out.push(b'\n');
}

fn json_line(out: &mut Vec<u8>, e: &Entry<'_>) {
    out.extend_from_slice(b"{\"time\":\"");
    out.extend_from_slice(&now_rfc3339_millis());
    let _ = write!(out, "\",\"level\":\"INFO\",\"target\":\"access\",\"message\":\"{} ", e.method);
    json_escape(out, e.path);
    let _ = write!(out, " {}\",\"method\":\"{}\",\"route\":\"{}\",\"path\":\"", e.status, e.method, e.route);
    json_escape(out, e.path);
    let _ = write!(
        out,
        "\",\"status\":{},\"bytes\":{},\"duration_ms\":{:.3},\"request_id\":\"",
        e.status,
        e.bytes,
        e.duration_ns as f64 / 1e6
    );
    json_escape(out, e.request_id);
    let _ = write!(out, "\",\"peer\":\"{}\"", e.peer);
    // Lowercase hex only (checked when parsed): nothing to escape.
    if let Some(t) = trace_context::find(e.head) {
        let _ = write!(out, ",\"trace_id\":\"{}\",\"parent_id\":\"{}\"", t.trace_id(), t.parent_id());
    }
    out.extend_from_slice(b"}\n");
}

/// Escapes ASCII for a JSON string (paths and ids are printable ASCII by the time they get
/// here, but may hold `"` or `\`).
fn json_escape(out: &mut Vec<u8>, s: &[u8]) {
    for &b in s {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0..=0x1f | 0x7f.. => {
                let _ = write!(out, "\\u{b:04x}");
            }
            _ => out.push(b),
        }
    }
}

/// `2026-11-27T19:00:00.123Z` from the coarse realtime clock.
fn now_rfc3339_millis() -> [u8; 24] {
    let (secs, nanos) = crate::clock::wall();
    let secs = crate::clock::Timestamp(secs).rfc3339();
    let mut out = [0u8; 24];
    out[..19].copy_from_slice(&secs[..19]);
    let ms = nanos / 1_000_000;
    out[19] = b'.';
    out[20] = b'0' + (ms / 100) as u8;
    out[21] = b'0' + (ms / 10 % 10) as u8;
    out[22] = b'0' + (ms % 10) as u8;
    out[23] = b'Z';
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry<'static> {
        Entry {
            method: "GET",
            route: "/api/v1/users/{id}",
            path: b"/api/v1/users/5\"x",
            status: 200,
            bytes: 123,
            duration_ns: 1_234_567,
            request_id: b"abc",
            peer: "127.0.0.1:5555".parse().unwrap(),
            head: b"GET /api/v1/users/5 HTTP/1.1\r\nHost: a\r\n\r\n",
        }
    }

    #[test]
    fn a_trace_is_logged_in_both_formats() {
        let head = b"GET / HTTP/1.1\r\ntraceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\r\n";
        let e = Entry { head, ..entry() };
        let mut out = Vec::new();
        json_line(&mut out, &e);
        let mut line = out.clone();
        let v = simd_json::to_owned_value(&mut line).unwrap();
        use simd_json::prelude::*;
        assert_eq!(v["trace_id"].as_str(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        assert_eq!(v["parent_id"].as_str(), Some("00f067aa0ba902b7"));
        let mut out = Vec::new();
        text_line(&mut out, &e);
        let line = String::from_utf8(out).unwrap();
        assert!(line.ends_with(" trace_id=4bf92f3577b34da6a3ce929d0e0e4736 parent_id=00f067aa0ba902b7\n"), "{line}");
    }

    #[test]
    fn json_lines_parse() {
        let mut out = Vec::new();
        json_line(&mut out, &entry());
        assert_eq!(out.last(), Some(&b'\n'));
        let mut line = out.clone();
        let v =
            simd_json::to_owned_value(&mut line).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out)));
        use simd_json::prelude::*;
        assert_eq!(v["path"].as_str(), Some("/api/v1/users/5\"x"));
        assert_eq!(v["status"].as_u64(), Some(200));
        assert_eq!(v["duration_ms"].as_f64(), Some(1.235));
        assert_eq!(v["route"].as_str(), Some("/api/v1/users/{id}"));
        assert_eq!(v["request_id"].as_str(), Some("abc"));
        assert!(v.get("trace_id").is_none());
    }

    #[test]
    fn text_lines() {
        let mut out = Vec::new();
        text_line(&mut out, &entry());
        let line = String::from_utf8(out).unwrap();
        assert!(line.contains("access] GET /api/v1/users/5\"x 200 123B 1.235ms route=/api/v1/users/{id} request_id=abc peer=127.0.0.1:5555\n"), "{line}");
    }

    #[test]
    fn a_writer_that_does_not_keep_up_costs_lines_not_waiting() {
        let (tx, _rx) = crossbeam_channel::bounded(1);
        let log = AccessLog::new(LogFormat::Text, tx);
        for _ in 0..3 {
            log.record(&entry());
            log.flush();
        }
        assert_eq!(log.dropped(), 2, "the first buffer fits the queue, the next two are dropped");
    }
}
