//! A caller's stated budget for its request: `x-envoy-expected-rq-timeout-ms` (Envoy and
//! Istio set it from the route's timeout) and `grpc-timeout` (gRPC's wire format, which
//! some HTTP/1.1 gateways pass along). The request's deadline is the smaller of HANDLER_TIMEOUT
//! and what the caller states: work the caller will not wait for is not started.
//!
//! A value that does not parse (or states zero) is ignored — the request keeps
//! HANDLER_TIMEOUT — and counted, never an error. Looked for only for requests that wait,
//! in the head bytes (as `traceparent` is), so in-core requests pay nothing.

use std::time::Duration;

/// What a request head says of its budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stated {
    /// Nothing.
    None,
    /// The smallest valid budget stated.
    Budget(Duration),
    /// A budget header that does not parse; ignored.
    Invalid,
}

/// The budget a request head states (request line and header lines, as received).
pub(crate) fn stated(head: &[u8]) -> Stated {
    let mut budget: Option<Duration> = None;
    let mut invalid = false;
    for line in head.split(|&b| b == b'\n').skip(1) {
        let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        let parsed = if name.eq_ignore_ascii_case(b"x-envoy-expected-rq-timeout-ms") {
            milliseconds(value)
        } else if name.eq_ignore_ascii_case(b"grpc-timeout") {
            grpc_timeout(value)
        } else {
            continue;
        };
        match parsed {
            Some(d) => budget = Some(budget.map_or(d, |b| b.min(d))),
            None => invalid = true,
        }
    }
    match (budget, invalid) {
        (Some(d), _) => Stated::Budget(d),
        (None, true) => Stated::Invalid,
        (None, false) => Stated::None,
    }
}

/// A whole number of milliseconds, above zero.
fn milliseconds(value: &[u8]) -> Option<Duration> {
    let n: u64 = digits(value, 19)?;
    (n > 0).then(|| Duration::from_millis(n))
}

/// gRPC's `TimeoutValue TimeoutUnit`: at most 8 digits and one of `H M S m u n`.
fn grpc_timeout(value: &[u8]) -> Option<Duration> {
    let (&unit, number) = value.split_last()?;
    let n = digits(number, 8)?;
    let d = match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    };
    (!d.is_zero()).then_some(d)
}

fn digits(value: &[u8], most: usize) -> Option<u64> {
    if value.is_empty() || value.len() > most || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(lines: &[&str]) -> Vec<u8> {
        let mut h = b"GET /db HTTP/1.1\r\nHost: t\r\n".to_vec();
        for l in lines {
            h.extend_from_slice(l.as_bytes());
            h.extend_from_slice(b"\r\n");
        }
        h.extend_from_slice(b"\r\n");
        h
    }

    #[test]
    fn envoy_and_grpc_budgets_are_read_and_the_smaller_wins() {
        assert_eq!(stated(&head(&[])), Stated::None);
        assert_eq!(stated(&head(&["x-envoy-expected-rq-timeout-ms: 250"])), Stated::Budget(Duration::from_millis(250)));
        assert_eq!(stated(&head(&["X-Envoy-Expected-Rq-Timeout-Ms:15000"])), Stated::Budget(Duration::from_secs(15)));
        assert_eq!(stated(&head(&["grpc-timeout: 100m"])), Stated::Budget(Duration::from_millis(100)));
        assert_eq!(stated(&head(&["grpc-timeout: 2S"])), Stated::Budget(Duration::from_secs(2)));
        assert_eq!(stated(&head(&["grpc-timeout: 1H"])), Stated::Budget(Duration::from_secs(3600)));
        assert_eq!(stated(&head(&["grpc-timeout: 500000u"])), Stated::Budget(Duration::from_millis(500)));
        let both = head(&["grpc-timeout: 3S", "x-envoy-expected-rq-timeout-ms: 800"]);
        assert_eq!(stated(&both), Stated::Budget(Duration::from_millis(800)));
    }

    #[test]
    fn what_does_not_parse_is_ignored_and_said_to_be_invalid() {
        for bad in [
            "x-envoy-expected-rq-timeout-ms: soon",
            "x-envoy-expected-rq-timeout-ms: -5",
            "x-envoy-expected-rq-timeout-ms: 0",
            "x-envoy-expected-rq-timeout-ms: 1.5",
            "x-envoy-expected-rq-timeout-ms:",
            "grpc-timeout: 100",
            "grpc-timeout: 100x",
            "grpc-timeout: 123456789S",
            "grpc-timeout: 0m",
            "grpc-timeout: m",
        ] {
            assert_eq!(stated(&head(&[bad])), Stated::Invalid, "{bad}");
        }
        let one_good = head(&["grpc-timeout: nonsense", "x-envoy-expected-rq-timeout-ms: 40"]);
        assert_eq!(stated(&one_good), Stated::Budget(Duration::from_millis(40)), "a valid one still counts");
        assert_eq!(stated(&head(&["x-envoy-upstream-rq-timeout-ms: 5"])), Stated::None, "another header");
    }
}
