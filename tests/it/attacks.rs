//! Hostile bytes over real sockets: request smuggling (CL.TE, TE.CL, TE.TE with obfuscated
//! Transfer-Encoding, duplicate and negative Content-Length, chunk-size overflow), floods,
//! oversized lines, NUL and bare CR, slow bodies. Every refusal is a precise 4xx/5xx with a
//! JSON body and closes the connection, and the request smuggled behind it is never answered.
//! (Slow headers and a client that never reads: tests/it/timeouts.rs.)

use std::time::{Duration, Instant};

use crate::common::{assert_refused, each_driver, Client};

/// Refused, with the smuggled `GET /health` behind it left unanswered.
fn refuses(s: &crate::common::Server, raw: &[u8], status: u16) {
    assert_refused(&mut s.connect(), raw, status);
}

/// Served as one request, and the pipelined request behind it is answered too: the framing
/// is the one every RFC 9112 parser agrees on.
fn serves_then_next(s: &crate::common::Server, raw: &[u8], body: &str) {
    let mut c = s.connect();
    let mut bytes = raw.to_vec();
    bytes.extend_from_slice(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n");
    c.send(&bytes);
    let r = c.response().unwrap_or_else(|| panic!("no response to {:?}", String::from_utf8_lossy(raw)));
    assert_eq!((r.status, r.text()), (200, body.to_owned()), "{:?}", String::from_utf8_lossy(raw));
    let next = c.response().expect("the next pipelined request is answered");
    assert_eq!(next.text(), "OK");
}

const ECHO: &str = "POST /__test/echo HTTP/1.1\r\nHost: t\r\n";

fn echo(headers: &str, body: &str) -> Vec<u8> {
    format!("{ECHO}{headers}\r\n{body}").into_bytes()
}

#[test]
fn smuggling_by_content_length_and_transfer_encoding_is_refused() {
    each_driver(&[], |s| {
        // CL.TE and TE.CL: both framings in one request (RFC 9112 §6.3: a server may reject it, and must close).
        refuses(s, &echo("Content-Length: 6\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\nG"), 400);
        refuses(s, &echo("Transfer-Encoding: chunked\r\nContent-Length: 3\r\n", "8\r\nSMUGGLED\r\n0\r\n\r\n"), 400);
        refuses(s, &echo("Content-Length: 0\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\n"), 400);
        // TE.TE: obfuscated Transfer-Encoding that some parsers read as chunked and others not.
        for (headers, status) in [
            ("Transfer-Encoding: xchunked\r\n", 501),
            ("Transfer-Encoding: chunked, identity\r\n", 400),
            ("Transfer-Encoding: identity, chunked\r\n", 501),
            ("Transfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n", 400),
            ("Transfer-Encoding: chunked, chunked\r\n", 400),
            ("Transfer-Encoding: \"chunked\"\r\n", 501),
            ("Transfer-Encoding : chunked\r\n", 400),
            ("Transfer-Encoding:\x0bchunked\r\n", 400),
            ("Transfer-Encoding: chunked\x00\r\n", 400),
            ("X: y\r\n Transfer-Encoding: chunked\r\n", 400),
            ("X: y\r\n\tTransfer-Encoding: chunked\r\n", 400),
            ("Transfer-Encoding\r\n : chunked\r\n", 400),
            ("Transfer-Encoding: \r\n", 400),
        ] {
            // With a Content-Length beside it, the double framing is refused before the coding is read.
            refuses(s, &echo(&format!("Content-Length: 5\r\n{headers}"), "0\r\n\r\n"), 400);
            refuses(s, &echo(headers, "0\r\n\r\n"), status);
        }
        // Transfer-Encoding in HTTP/1.0, which has no chunked coding.
        refuses(s, b"POST /__test/echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400);
        // Legitimate spellings frame the body exactly as written, and the next request is found.
        serves_then_next(s, &echo("transfer-encoding: CHUNKED\r\n", "3\r\nabc\r\n0\r\n\r\n"), "abc");
        serves_then_next(s, &echo("Transfer-Encoding:\tchunked \r\n", "3\r\nabc\r\n0\r\n\r\n"), "abc");
        // A coding percore does not decode is 501, not guessed at.
        refuses(s, &echo("Transfer-Encoding: gzip, chunked\r\n", "3\r\nabc\r\n0\r\n\r\n"), 501);
    });
}

#[test]
fn content_length_that_is_not_one_plain_number_is_refused() {
    each_driver(&[("MAX_BODY_BYTES", "1000")], |s| {
        for (value, status) in [
            ("-1", 400),
            ("+5", 400),
            ("5 5", 400),
            ("0x5", 400),
            ("5.0", 400),
            ("5e0", 400),
            ("", 400),
            ("5, 6", 400),
            ("\u{0660}5", 400),
            ("99999999999999999999999999", 413),
            ("1001", 413),
        ] {
            refuses(s, &echo(&format!("Content-Length: {value}\r\n"), "hello"), status);
        }
        refuses(s, &echo("Content-Length: 5\r\nContent-Length: 6\r\n", "hello!"), 400);
        refuses(s, &echo("Content-Length: 5\r\nContent-Length: -5\r\n", "hello"), 400);
        // Repeats of one value are the same framing (RFC 9110 §8.6).
        serves_then_next(s, &echo("Content-Length: 5, 5\r\n", "hello"), "hello");
        serves_then_next(s, &echo("Content-Length: 5\r\nContent-Length: 5\r\n", "hello"), "hello");
        serves_then_next(s, &echo("Content-Length: 005\r\n", "hello"), "hello");
    });
}

#[test]
fn chunk_sizes_that_overflow_or_lie_are_refused() {
    each_driver(&[("MAX_BODY_BYTES", "1000")], |s| {
        let te = "Transfer-Encoding: chunked\r\n";
        for (body, status) in [
            // Sizes past 64 bits are not numbers at all: malformed, not merely large.
            ("ffffffffffffffffffff\r\nx\r\n0\r\n\r\n", 400),
            ("10000000000000000\r\nx\r\n0\r\n\r\n", 400),
            ("fffffffffffffffff\r\n", 400),
            ("-1\r\nx\r\n0\r\n\r\n", 400),
            ("0x5\r\nhello\r\n0\r\n\r\n", 400),
            ("+5\r\nhello\r\n0\r\n\r\n", 400),
            (" 5\r\nhello\r\n0\r\n\r\n", 400),
            ("5\r\nhelloX\r\n0\r\n\r\n", 400),
            ("5\nhello\n0\n\n", 400),
            ("5\r\nhel", 0),
            ("3e9\r\n", 413),
            ("400\r\n", 413),
        ] {
            if status == 0 {
                continue; // a body that is merely unfinished waits for more (tests/it/timeouts.rs)
            }
            refuses(s, &echo(te, body), status);
        }
        // A size just at the limit, sent in full, is served.
        let body = "x".repeat(1000);
        serves_then_next(s, &echo(te, &format!("3e8\r\n{body}\r\n0\r\n\r\n")), &body);
    });
}

#[test]
fn floods_and_oversized_lines_are_refused_without_reading_them_all() {
    each_driver(&[], |s| {
        // 10,000 small headers: refused when the head passes its limit, not after all arrive.
        let flood = format!("GET /health HTTP/1.1\r\nHost: t\r\n{}\r\n", "a: b\r\n".repeat(10_000));
        let began = Instant::now();
        let mut c = s.connect();
        let _ = c.try_send(flood.as_bytes());
        let r = c.response().expect("431 for a header flood");
        assert_eq!(r.status, 431);
        assert!(began.elapsed() < Duration::from_secs(2), "answered at once: {:?}", began.elapsed());
        assert!(c.closed_within(Duration::from_secs(3)));
        // 101 headers are too many, however small (MAX_HEADERS = 100).
        refuses(s, format!("GET /health HTTP/1.1\r\nHost: t\r\n{}\r\n", "a: b\r\n".repeat(100)).as_bytes(), 431);
        // A 100 KB request line, a 64 KB header line.
        let mut c = s.connect();
        let _ = c.try_send(format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(100_000)).as_bytes());
        assert_eq!(c.response().map(|r| r.status), Some(414));
        let mut c = s.connect();
        let _ = c.try_send(format!("GET /health HTTP/1.1\r\nHost: t\r\nX: {}\r\n\r\n", "a".repeat(65_536)).as_bytes());
        assert_eq!(c.response().map(|r| r.status), Some(431));
        // An endless header line without CRLF: refused at the limit, not buffered forever.
        let mut c = s.connect();
        let _ = c.try_send(format!("GET /health HTTP/1.1\r\nHost: t\r\nX: {}", "a".repeat(40_000)).as_bytes());
        assert_eq!(c.response().map(|r| r.status), Some(431));
        // Still serving.
        assert_eq!(s.get("/health").status, 200);
    });
}

#[test]
fn nul_bare_cr_and_control_bytes_are_refused() {
    each_driver(&[], |s| {
        for raw in [
            &b"GET /he\x00alth HTTP/1.1\r\nHost: t\r\n\r\n"[..],
            b"GET /health\rHTTP/1.1\r\nHost: t\r\n\r\n",
            b"GET /health HTTP/1.1\rHost: t\r\n\r\n",
            b"GET /health HTTP/1.1\r\nHost: t\r\nX: a\rb\r\n\r\n",
            b"GET /health HTTP/1.1\r\nHost: t\r\nX\x00: a\r\n\r\n",
            b"GET /health HTTP/1.1\r\nHost: t\r\nX: a\x00\r\n\r\n",
            b"GET /health HTTP/1.1\r\nHost: t\r\nX: a\x7fb\r\n\r\n",
            b"GET /health HTTP/1.1\r\nHost: t\x00evil\r\n\r\n",
            b"GET /health HTTP/1.1\r\nHost: a b\r\n\r\n",
            b"GET /health HTTP/1.1\r\nHost: t\r\nHost: u\r\n\r\n",
            b"GET /health#frag HTTP/1.1\r\nHost: t\r\n\r\n",
            b"GET /h\xc3\xa9alth HTTP/1.1\r\nHost: t\r\n\r\n",
            b"GET  /health HTTP/1.1\r\nHost: t\r\n\r\n",
            b"GET /health  HTTP/1.1\r\nHost: t\r\n\r\n",
            b"GET /health HTTP/1.1 \r\nHost: t\r\n\r\n",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
        ] {
            refuses(s, raw, 400);
        }
    });
}

#[test]
fn a_trickling_body_gets_408_and_is_closed() {
    each_driver(&[("SERVER_READ_TIMEOUT", "1s")], |s| {
        let mut c = s.connect();
        let began = Instant::now();
        c.send(format!("{ECHO}Content-Length: 100\r\n\r\n").as_bytes());
        for _ in 0..30 {
            if !c.try_send(b"x") || began.elapsed() > Duration::from_secs(3) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let r = c.response().expect("a 408 before the close");
        assert_eq!(r.status, 408);
        assert!(began.elapsed() < Duration::from_secs(3), "at the read timeout: {:?}", began.elapsed());
        assert!(c.closed_within(Duration::from_secs(2)));
        // A chunked body that trickles meets the same deadline.
        let mut c: Client = s.connect();
        let began = Instant::now();
        c.send(format!("{ECHO}Transfer-Encoding: chunked\r\n\r\n").as_bytes());
        while began.elapsed() < Duration::from_secs(3) && c.try_send(b"1\r\nx\r\n") {
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(c.response().map(|r| r.status), Some(408));
    });
}
