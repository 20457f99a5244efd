//! ⑧ Response → bytes, appended to the connection's out buffer. No I/O.
//!
//! Every response carries a status line (always HTTP/1.1, RFC 9110 §6.2), `Server`,
//! `Date`, `Content-Length` and, with a body, `Content-Type` — except that 1xx, 204 and 304
//! carry no Content-Length (RFC 9110 §8.6) and never a body. Unless a handler allows
//! caching (the TechEmpower routes, whose headers the benchmark fixes), a response says
//! `Cache-Control: no-store`: API answers, probes and metrics are live state, and without
//! it every 200 and 404 is open to heuristic caching (RFC 9111 §4.2.2). Responses of one
//! read batch are appended one after another and written with one syscall by the connection.
//!
//! Error bodies follow the contract: `{"status":"error","code":404,"message":"Not Found"}`.
//! The common ones are canned bytes; a message that names a field is serialized with
//! simd-json. Every 503 carries `Retry-After`.

use std::cell::{Cell, RefCell};

use simd_json_derive::Serialize;

use super::date::DATE_LEN;

/// The length of the request ids percore generates (`obs::request_id`): an id of this
/// length is copied into the head as a constant, not through memcpy.
pub(crate) const GENERATED_ID_LEN: usize = 16;

/// Everything up to the Date value for the statuses percore sends, as one static piece:
/// one copy instead of formatting the status line for every response.
macro_rules! heads {
    ($($code:literal $reason:literal),* $(,)?) => {
        /// The reason phrase of a status code.
        pub(crate) fn reason(status: u16) -> &'static str {
            match status {
                $($code => $reason,)*
                _ => "Unknown",
            }
        }

        fn status_line(status: u16) -> Option<&'static [u8]> {
            match status {
                $($code => Some(concat!("HTTP/1.1 ", $code, " ", $reason, "\r\nServer: percore\r\nDate: ").as_bytes()),)*
                _ => None,
            }
        }
    };
}

heads! {
    100 "Continue", 200 "OK", 201 "Created", 204 "No Content", 304 "Not Modified",
    400 "Bad Request", 404 "Not Found", 405 "Method Not Allowed", 408 "Request Timeout",
    409 "Conflict", 411 "Length Required", 413 "Content Too Large", 414 "URI Too Long",
    415 "Unsupported Media Type", 417 "Expectation Failed", 422 "Unprocessable Content",
    431 "Request Header Fields Too Large", 500 "Internal Server Error", 501 "Not Implemented",
    503 "Service Unavailable", 505 "HTTP Version Not Supported",
}

/// The JSON error body for a status with its reason phrase as the message, as static bytes.
fn canned_error(status: u16) -> Option<&'static [u8]> {
    Some(match status {
        400 => br#"{"status":"error","code":400,"message":"Bad Request"}"#,
        404 => br#"{"status":"error","code":404,"message":"Not Found"}"#,
        405 => br#"{"status":"error","code":405,"message":"Method Not Allowed"}"#,
        408 => br#"{"status":"error","code":408,"message":"Request Timeout"}"#,
        413 => br#"{"status":"error","code":413,"message":"Content Too Large"}"#,
        500 => br#"{"status":"error","code":500,"message":"Internal Server Error"}"#,
        503 => br#"{"status":"error","code":503,"message":"Service Unavailable"}"#,
        _ => return None,
    })
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    status: &'static str,
    code: u16,
    message: &'a str,
}

pub(crate) const JSON: &str = "application/json";
pub(crate) const TEXT: &str = "text/plain; charset=utf-8";
/// Bare `text/plain`, as the TechEmpower plaintext test asks for.
pub(crate) const PLAIN: &str = "text/plain";

/// An extra header line: name and value.
pub(crate) type Header<'h> = (&'static str, &'h [u8]);

/// How one response is framed on its connection.
#[derive(Debug, Clone, Copy, Default)]
pub struct Framing {
    /// Send `Connection: close`; the connection closes after this response.
    pub(crate) close: bool,
    /// An HTTP/1.0 client that asked for keep-alive and is getting it.
    pub(crate) keep_alive_10: bool,
    /// HEAD: headers as for GET, no body.
    pub(crate) head_only: bool,
}

/// Writes one response into the connection's out buffer.
pub struct Reply<'a> {
    out: &'a mut Vec<u8>,
    /// The worker's serialization buffer, borrowed only inside one call (never across an
    /// await), so one per worker serves every connection.
    scratch: &'a RefCell<Vec<u8>>,
    date: &'a [u8; DATE_LEN],
    pub(crate) framing: Framing,
    request_id: &'a [u8],
    /// Set when the server starts draining; read when the head is written, so a response
    /// that was being prepared when the drain began still says `Connection: close`.
    draining: Option<&'a Cell<bool>>,
    /// Say `Cache-Control: no-store` (all but the TechEmpower routes).
    no_store: bool,
    start: usize,
    status: u16,
    /// The handler learned that its request's budget ran out ([`Reply::out_of_budget`]).
    out_of_budget: bool,
    /// The handler learned that its client has left ([`Reply::client_left`]).
    client_left: bool,
}

/// Statuses that never carry content, and so no Content-Length either (RFC 9110 §6.4.1,
/// §8.6): every 1xx, 204, and 304 (whose Content-Length would have to be the length of a
/// 200 this server does not know).
pub(crate) fn is_bodiless(status: u16) -> bool {
    status < 200 || status == 204 || status == 304
}

impl<'a> Reply<'a> {
    /// `scratch` is a reused buffer for serializing bodies whose length is not known yet.
    pub fn new(
        out: &'a mut Vec<u8>,
        scratch: &'a RefCell<Vec<u8>>,
        date: &'a [u8; DATE_LEN],
        framing: Framing,
        request_id: &'a [u8],
    ) -> Self {
        let start = out.len();
        Reply {
            out,
            scratch,
            date,
            framing,
            request_id,
            draining: None,
            no_store: true,
            start,
            status: 0,
            out_of_budget: false,
            client_left: false,
        }
    }

    /// Leaves `Cache-Control` out of this response: for the TechEmpower routes only, whose
    /// response headers the benchmark specifies. Everything else is live state: no-store.
    pub(crate) fn allow_caching(&mut self) {
        self.no_store = false;
    }

    /// Closes the connection after this response if `draining` is set by the time the
    /// response is written.
    pub(crate) fn close_when(mut self, draining: &'a Cell<bool>) -> Self {
        self.draining = Some(draining);
        self
    }

    /// The status written, 0 if none yet.
    pub(crate) fn status(&self) -> u16 {
        self.status
    }

    /// Bytes this response occupies so far.
    pub(crate) fn len(&self) -> usize {
        self.out.len() - self.start
    }

    /// The request's budget ran out before the handler could answer (the store skipped its
    /// job or cancelled its statement at the deadline). The handler writes nothing more:
    /// the loop answers with the deadline's own 503, since only it knows whose budget it
    /// was (`net::guard::waiting`).
    pub(crate) fn out_of_budget(&mut self) {
        self.out_of_budget = true;
    }

    /// Whether [`Reply::out_of_budget`] was said.
    pub(crate) fn is_out_of_budget(&self) -> bool {
        self.out_of_budget
    }

    /// The client reset its connection while the request waited, so its work was not done
    /// (the store skipped its job). Nothing is written: nobody would read it, and the loop
    /// ends the connection.
    pub(crate) fn client_left(&mut self) {
        self.client_left = true;
    }

    /// Whether [`Reply::client_left`] was said.
    pub(crate) fn has_client_left(&self) -> bool {
        self.client_left
    }

    /// Drops whatever this response wrote (a handler that panicked or ran out of time),
    /// so the error response replaces it.
    pub(crate) fn rollback(&mut self) {
        self.out.truncate(self.start);
        self.status = 0;
    }

    /// A response with a body of known bytes. `status` must allow content (not
    /// [`is_bodiless`]; those go through [`Reply::empty`]).
    pub fn send(&mut self, status: u16, content_type: &str, body: &[u8], extra: &[Header<'_>]) {
        debug_assert!(!is_bodiless(status), "a {status} response has no content");
        self.head(status, Some(content_type), body.len(), extra);
        if !self.framing.head_only {
            self.out.extend_from_slice(body);
        }
    }

    /// A response without a body (204, or 201 with only a Location). A 1xx, 204 or 304
    /// says no Content-Length; any other status says `Content-Length: 0`.
    pub(crate) fn empty(&mut self, status: u16, extra: &[Header<'_>]) {
        self.head(status, None, 0, extra);
    }

    /// A JSON body serialized with simd-json into the reused scratch buffer.
    pub fn json<T: Serialize + ?Sized>(&mut self, status: u16, value: &T, extra: &[Header<'_>]) {
        let cell = self.scratch;
        let mut scratch = cell.borrow_mut();
        scratch.clear();
        match value.json_write(&mut *scratch) {
            Ok(()) => self.send(status, JSON, &scratch, extra),
            Err(e) => {
                drop(scratch);
                log::error!("serializing a {status} response failed: {e}");
                self.error(500, "response serialization failed");
            }
        }
    }

    /// A JSON body written by `write` into the reused scratch buffer (for bodies composed
    /// of parts, such as stored JSON spliced into a serialized one).
    pub(crate) fn json_with<E: std::fmt::Display>(
        &mut self,
        status: u16,
        write: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
    ) {
        self.compose(status, JSON, write);
    }

    /// A body of `content_type` written by `write` into the reused scratch buffer.
    pub(crate) fn compose<E: std::fmt::Display>(
        &mut self,
        status: u16,
        content_type: &str,
        write: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
    ) {
        let cell = self.scratch;
        let mut scratch = cell.borrow_mut();
        scratch.clear();
        match write(&mut scratch) {
            Ok(()) => self.send(status, content_type, &scratch, &[]),
            Err(e) => {
                drop(scratch);
                log::error!("serializing a {status} response failed: {e}");
                self.error(500, "response serialization failed");
            }
        }
    }

    /// The contract's JSON error body. 503 always gets `Retry-After`.
    pub fn error(&mut self, status: u16, message: &str) {
        self.error_with(status, message, &[]);
    }

    pub(crate) fn error_with(&mut self, status: u16, message: &str, extra: &[Header<'_>]) {
        let mut headers: [Header<'_>; 4] = [("", b""); 4];
        let mut n = 0;
        for h in extra.iter().take(3) {
            headers[n] = *h;
            n += 1;
        }
        if status == 503 {
            headers[n] = ("Retry-After", b"1");
            n += 1;
        }
        let headers = &headers[..n];
        match canned_error(status).filter(|_| message == reason(status)) {
            Some(body) => self.send(status, JSON, body, headers),
            None => {
                let body = ErrorBody { status: "error", code: status, message };
                let cell = self.scratch;
                let mut scratch = cell.borrow_mut();
                scratch.clear();
                if body.json_write(&mut *scratch).is_err() {
                    scratch.clear();
                    scratch.extend_from_slice(canned_error(500).unwrap_or_default());
                }
                self.send(status, JSON, &scratch, headers);
            }
        }
    }

    fn head(&mut self, status: u16, content_type: Option<&str>, len: usize, extra: &[Header<'_>]) {
        self.status = status;
        if self.draining.is_some_and(Cell::get) {
            self.framing.close = true;
        }
        let out = &mut *self.out;
        out.reserve(192 + self.request_id.len());
        // The common pieces are spelled out whole: a copy of constant size compiles to a few
        // moves, where a slice picked at run time costs a call to memcpy (seen in perf).
        if status == 200 {
            out.extend_from_slice(b"HTTP/1.1 200 OK\r\nServer: percore\r\nDate: ");
        } else if let Some(line) = status_line(status) {
            out.extend_from_slice(line);
        } else {
            out.extend_from_slice(b"HTTP/1.1 ");
            out.extend_from_slice(itoa::Buffer::new().format(status).as_bytes());
            out.extend_from_slice(b" Unknown\r\nServer: percore\r\nDate: ");
        }
        out.extend_from_slice(self.date);
        // Each arm ends with the length, so a bodiless status costs the common ones no test.
        match content_type {
            Some(JSON) => {
                out.extend_from_slice(b"\r\nContent-Type: application/json\r\nContent-Length: ");
                out.extend_from_slice(itoa::Buffer::new().format(len).as_bytes());
            }
            Some(TEXT) => {
                out.extend_from_slice(b"\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ");
                out.extend_from_slice(itoa::Buffer::new().format(len).as_bytes());
            }
            Some(PLAIN) => {
                out.extend_from_slice(b"\r\nContent-Type: text/plain\r\nContent-Length: ");
                out.extend_from_slice(itoa::Buffer::new().format(len).as_bytes());
            }
            Some(ct) => {
                out.extend_from_slice(b"\r\nContent-Type: ");
                out.extend_from_slice(ct.as_bytes());
                out.extend_from_slice(b"\r\nContent-Length: ");
                out.extend_from_slice(itoa::Buffer::new().format(len).as_bytes());
            }
            None if is_bodiless(status) => {}
            None => {
                out.extend_from_slice(b"\r\nContent-Length: ");
                out.extend_from_slice(itoa::Buffer::new().format(len).as_bytes());
            }
        }
        if self.framing.close {
            out.extend_from_slice(b"\r\nConnection: close");
        } else if self.framing.keep_alive_10 {
            out.extend_from_slice(b"\r\nConnection: keep-alive");
        }
        if !self.request_id.is_empty() {
            out.extend_from_slice(b"\r\nX-Request-Id: ");
            // A generated id has a known length: copied as a constant, not through memcpy.
            match <&[u8; GENERATED_ID_LEN]>::try_from(self.request_id) {
                Ok(generated) => out.extend_from_slice(generated),
                Err(_) => out.extend_from_slice(self.request_id),
            }
        }
        if self.no_store {
            out.extend_from_slice(b"\r\nCache-Control: no-store");
        }
        for (name, value) in extra {
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
        }
        out.extend_from_slice(b"\r\n\r\n");
    }
}

/// `HTTP/1.1 100 Continue`, sent before reading a body the client is holding back.
pub(crate) const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    const DATE: [u8; DATE_LEN] = *b"Sun, 06 Nov 1994 08:49:37 GMT";

    fn render(framing: Framing, f: impl FnOnce(&mut Reply<'_>)) -> String {
        render_with_id(framing, b"", f)
    }

    fn render_with_id(framing: Framing, request_id: &[u8], f: impl FnOnce(&mut Reply<'_>)) -> String {
        let (mut out, scratch) = (Vec::new(), RefCell::new(Vec::new()));
        let mut reply = Reply::new(&mut out, &scratch, &DATE, framing, request_id);
        f(&mut reply);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_text_response() {
        let got = render(Framing::default(), |r| r.send(200, "text/plain", b"Hello, World!", &[]));
        assert_eq!(got, "HTTP/1.1 200 OK\r\nServer: percore\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nContent-Type: text/plain\r\nContent-Length: 13\r\nCache-Control: no-store\r\n\r\nHello, World!");
    }

    #[test]
    fn the_spelled_out_heads_match_the_general_ones() {
        // 200, the JSON/text Content-Type lines and a generated id's header are copied as
        // constants; they must read exactly as the pieces they stand for.
        for status in [200, 201] {
            for ct in [JSON, TEXT, PLAIN, "text/html; charset=utf-8"] {
                for id in ["", "AAAAAAq8ADAAAAAB", "client-1", "a-client-id-of-17"] {
                    let got = render_with_id(Framing::default(), id.as_bytes(), |r| r.send(status, ct, b"{}", &[]));
                    let id_line = if id.is_empty() { String::new() } else { format!("\r\nX-Request-Id: {id}") };
                    let want = format!(
                        "HTTP/1.1 {status} {}\r\nServer: percore\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nContent-Type: {ct}\r\nContent-Length: 2{id_line}\r\nCache-Control: no-store\r\n\r\n{{}}",
                        reason(status)
                    );
                    assert_eq!(got, want);
                }
            }
        }
    }

    #[test]
    fn head_keeps_the_length_and_drops_the_body() {
        let got = render(Framing { head_only: true, ..Framing::default() }, |r| r.send(200, "text/plain", b"OK", &[]));
        assert!(got.ends_with("Content-Length: 2\r\nCache-Control: no-store\r\n\r\n"), "{got}");
    }

    #[test]
    fn every_status_line_is_well_formed() {
        for status in [
            100, 200, 201, 204, 304, 400, 404, 405, 408, 409, 411, 413, 414, 415, 417, 422, 431, 500, 501, 503, 505,
            299,
        ] {
            let got = render(Framing::default(), |r| r.empty(status, &[]));
            assert!(
                got.starts_with(&format!("HTTP/1.1 {status} {}\r\nServer: percore\r\nDate: ", reason(status))),
                "{got}"
            );
        }
    }

    #[test]
    fn bodiless_statuses_have_no_content_length() {
        for status in [100, 204, 304] {
            let got = render(Framing::default(), |r| r.empty(status, &[]));
            assert!(!got.to_ascii_lowercase().contains("content-length"), "{got}");
            assert!(got.ends_with("\r\n\r\n"), "{got}");
        }
        let got = render(Framing::default(), |r| r.empty(201, &[("Location", b"/a/1")]));
        assert!(got.contains("\r\nContent-Length: 0\r\n"), "{got}");
    }

    #[test]
    fn no_store_unless_caching_is_allowed() {
        let got = render(Framing::default(), |r| r.error(404, "Not Found"));
        assert!(got.contains("\r\nCache-Control: no-store\r\n"), "{got}");
        let got = render(Framing::default(), |r| {
            r.allow_caching();
            r.send(200, PLAIN, b"Hello", &[]);
        });
        assert!(!got.contains("Cache-Control"), "{got}");
    }

    #[test]
    fn connection_headers() {
        let got = render(Framing { close: true, ..Framing::default() }, |r| r.empty(204, &[]));
        assert!(got.contains("\r\nConnection: close\r\n"), "{got}");
        let got = render(Framing { keep_alive_10: true, ..Framing::default() }, |r| r.empty(204, &[]));
        assert!(got.contains("\r\nConnection: keep-alive\r\n"), "{got}");
    }

    #[test]
    fn json_bodies() {
        #[derive(Serialize)]
        struct Message {
            message: &'static str,
        }
        let got = render(Framing::default(), |r| r.json(200, &Message { message: "Hello, World!" }, &[]));
        assert!(
            got.contains("Content-Type: application/json\r\nContent-Length: 27\r\nCache-Control: no-store\r\n\r\n{\"message\":\"Hello, World!\"}"),
            "{got}"
        );
    }

    #[test]
    fn out_of_budget_is_noted_and_writes_nothing() {
        let got = render(Framing::default(), |r| {
            assert!(!r.is_out_of_budget());
            r.out_of_budget();
            assert!(r.is_out_of_budget());
            assert_eq!((r.status(), r.len()), (0, 0));
        });
        assert_eq!(got, "");
    }

    #[test]
    fn errors_follow_the_contract() {
        let got = render(Framing::default(), |r| r.error(404, "Not Found"));
        assert!(got.ends_with(r#"{"status":"error","code":404,"message":"Not Found"}"#), "{got}");
        let got = render(Framing::default(), |r| r.error(400, "email: must contain '@' \"quoted\""));
        assert!(
            got.ends_with(r#"{"status":"error","code":400,"message":"email: must contain '@' \"quoted\""}"#),
            "{got}"
        );
        let got = render(Framing::default(), |r| r.error(503, "Service Unavailable"));
        assert!(got.contains("\r\nRetry-After: 1\r\n"), "{got}");
        let got = render(Framing::default(), |r| r.error_with(405, "Method Not Allowed", &[("Allow", b"GET, HEAD")]));
        assert!(got.contains("\r\nAllow: GET, HEAD\r\n"), "{got}");
    }

    #[test]
    fn a_drain_that_begins_before_the_head_is_written_closes() {
        let (mut out, scratch, draining) = (Vec::new(), RefCell::new(Vec::new()), Cell::new(false));
        let mut reply = Reply::new(&mut out, &scratch, &DATE, Framing::default(), b"").close_when(&draining);
        draining.set(true);
        reply.send(200, "text/plain", b"late", &[]);
        assert!(reply.framing.close);
        assert!(String::from_utf8(out).unwrap().contains("\r\nConnection: close\r\n"));
    }

    #[test]
    fn rollback_forgets_a_half_written_response() {
        let (mut out, scratch) = (b"earlier".to_vec(), RefCell::new(Vec::new()));
        let mut reply = Reply::new(&mut out, &scratch, &DATE, Framing::default(), b"");
        reply.send(200, "text/plain", b"partial", &[]);
        reply.rollback();
        reply.error(500, "Internal Server Error");
        assert!(String::from_utf8(out).unwrap().starts_with("earlierHTTP/1.1 500"));
    }
}
