//! W3C Trace Context: the `traceparent` request header, parsed so that a request's log lines
//! and access-log entry can carry the caller's trace id and span id.
//!
//! percore does not trace. It only lets its logs be joined to a trace that a proxy or a
//! client started. Only version `00` is accepted, in its exact form:
//! `00-<32 lowercase hex trace id>-<16 lowercase hex parent id>-<2 lowercase hex flags>`.
//! Neither id may be all zeros. Anything else, including a header sent twice, is ignored:
//! not an error, just no trace fields. `tracestate` is left alone.
//!
//! The header is looked for only when a line is written ([`find`] over the request's head
//! bytes), not while parsing. The parser's header loop runs for every request. A case for
//! one more header name there cost 9 instructions a request (perf/instructions.py), and
//! most requests are never logged.

/// A valid `traceparent` value. One pointer wide, so carrying it (or its absence) with every
/// request costs nothing measurable; the ids are cut out of it only when a line is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TraceContext<'a>(&'a [u8; LEN]);

/// `version-trace_id-parent_id-flags`: 2 + 1 + 32 + 1 + 16 + 1 + 2.
const LEN: usize = 55;

impl<'a> TraceContext<'a> {
    /// The 32 hex digits of the trace id.
    pub(crate) fn trace_id(self) -> &'a str {
        std::str::from_utf8(&self.0[3..35]).unwrap_or_default()
    }

    /// The 16 hex digits of the caller's span id (the W3C `parent-id`).
    pub(crate) fn parent_id(self) -> &'a str {
        std::str::from_utf8(&self.0[36..52]).unwrap_or_default()
    }
}

/// A valid version-00 `traceparent` value, or `None`.
pub(crate) fn parse(value: &[u8]) -> Option<TraceContext<'_>> {
    let value: &[u8; LEN] = value.try_into().ok()?;
    if &value[..3] != b"00-" || value[35] != b'-' || value[52] != b'-' {
        return None;
    }
    let (trace_id, parent_id, flags) = (&value[3..35], &value[36..52], &value[53..55]);
    let hex = |s: &[u8]| s.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let zeros = |s: &[u8]| s.iter().all(|&b| b == b'0');
    if !hex(trace_id) || !hex(parent_id) || !hex(flags) || zeros(trace_id) || zeros(parent_id) {
        return None;
    }
    Some(TraceContext(value))
}

/// The trace context of a request head (request line and header lines, as received), when
/// it holds exactly one `traceparent` header and that one is valid.
pub(crate) fn find(head: &[u8]) -> Option<TraceContext<'_>> {
    const NAME: &[u8] = b"traceparent:";
    let mut found = None;
    // Header lines start after a line end; the request line never matches.
    for line in head.split(|&b| b == b'\n').skip(1) {
        if line.len() >= NAME.len() && line[..NAME.len()].eq_ignore_ascii_case(NAME) {
            if found.is_some() {
                return None;
            }
            found = Some(trim(&line[NAME.len()..]));
        }
    }
    parse(found?)
}

/// Without the optional whitespace around a field value and the line's CR.
fn trim(value: &[u8]) -> &[u8] {
    let blank = |b: &u8| matches!(b, b' ' | b'\t' | b'\r');
    let start = value.iter().position(|b| !blank(b)).unwrap_or(value.len());
    let end = value.iter().rposition(|b| !blank(b)).map_or(start, |i| i + 1);
    &value[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &[u8] = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn the_specifications_example_is_read() {
        let t = parse(VALID).unwrap();
        assert_eq!((t.trace_id(), t.parent_id()), ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"));
        assert!(parse(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").is_some(), "not sampled");
    }

    #[test]
    fn anything_else_is_ignored() {
        for bad in [
            &b""[..],
            b"00",
            b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            b"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
            b"00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
            b"00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
            b" 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(parse(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn a_head_with_one_traceparent_has_a_trace() {
        const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let head = format!("GET / HTTP/1.1\r\nHost: a\r\nTraceParent: \t{TP} \r\ntracestate: x=1\r\n\r\n");
        assert_eq!(find(head.as_bytes()).map(TraceContext::trace_id), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        let bare_lf = format!("GET / HTTP/1.1\nHost: a\ntraceparent:{TP}\n\n");
        assert!(find(bare_lf.as_bytes()).is_some());
        for head in [
            "GET / HTTP/1.1\r\nHost: a\r\n\r\n".to_owned(),
            format!("GET / HTTP/1.1\r\ntraceparent: {TP}\r\ntraceparent: {TP}\r\n\r\n"),
            format!("GET / HTTP/1.1\r\nX-Note: traceparent: {TP}\r\n\r\n"),
            format!("GET /traceparent:{TP} HTTP/1.1\r\n\r\n"),
            format!("GET / HTTP/1.1\r\ntraceparent: {TP}-00\r\n\r\n"),
        ] {
            assert_eq!(find(head.as_bytes()), None, "{head:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn no_input_panics_and_what_is_read_is_hex(value in proptest::collection::vec(proptest::num::u8::ANY, 0..80)) {
            let _ = find(&value);
            if let Some(t) = parse(&value) {
                proptest::prop_assert_eq!(t.trace_id().len(), 32);
                proptest::prop_assert_eq!(t.parent_id().len(), 16);
            }
        }
    }
}
