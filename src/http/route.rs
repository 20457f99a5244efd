//! ④ Routing machinery: (method, path) → a route of the application's table and its `{id}`.
//! Pure, no I/O, and knows no route: the application declares its table
//! (`app::routes`), this matches paths against it.
//!
//! Matching works on path segments, percent-decoded one by one (so `%2F` inside a segment
//! stays part of it). The result names the table's route, whose pattern
//! (`/api/v1/users/{id}`) is what metrics and logs label by — never the raw path, which any
//! client could use to explode the number of series. An unknown path is 404; a known path
//! with a method it does not serve is 405 with `Allow`; an `{id}` that is not a positive
//! 64-bit integer is 400, after the method check.
//!
//! Literal patterns are found by length first (one or two candidates of any length), then
//! compared: as cheap as the hand-written `match` on byte strings it replaced. Patterns
//! with an `{id}` segment are tried after, by prefix and suffix.

use std::borrow::Cow;

use super::query::percent_decode;
use super::request::{Head, Method};

/// The methods one route serves, and the `Allow` header that lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Methods {
    pub(crate) allowed: &'static [Method],
    pub(crate) allow: &'static str,
}

/// One row of an application's route table, as the matcher needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pattern<R> {
    pub(crate) route: R,
    /// `/health`, or with one `{id}` segment: `/api/v1/users/{id}/orders`.
    pub(crate) pattern: &'static str,
    pub(crate) methods: Methods,
}

/// The outcome of routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolved<R> {
    Found {
        route: R,
        id: Option<i64>,
    },
    NotFound,
    MethodNotAllowed {
        route: R,
        allow: &'static str,
    },
    /// A path segment that should be an id is not a positive 64-bit integer.
    BadId {
        route: R,
    },
    /// A malformed percent-escape in the path.
    BadPath,
    /// A route that works on the store, refused at the door while the store is overloaded.
    Shed {
        route: R,
    },
}

labelled! {
    /// Why a request for the store was refused at the door (db_admission_refusals_total).
    pub(crate) enum Shed / SHED_REASONS {
        /// The store's job queue stands: jobs wait longer than ADMISSION_TARGET.
        StandingQueue = "standing_queue",
        /// The worker's loop runs late: requests wait in its sockets, past its cores.
        LoopLag = "loop_lag",
    }
}

/// The answer of a request refused at the door because the store is overloaded.
pub(crate) const SHED: &str = "the store is overloaded: refused before any work was done; retry shortly";

/// The error answer for a request that routing turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) status: u16,
    pub(crate) message: &'static str,
    /// The `Allow` header of a 405.
    pub(crate) allow: Option<&'static str>,
}

impl<R: Copy> Resolved<R> {
    /// The error answer for anything but `Found`.
    pub(crate) fn refusal(&self) -> Option<Refusal> {
        let (status, message, allow) = match *self {
            Resolved::Found { .. } => return None,
            Resolved::NotFound => (404, "Not Found", None),
            Resolved::MethodNotAllowed { allow, .. } => (405, "Method Not Allowed", Some(allow)),
            Resolved::BadId { .. } => (400, "id: must be a positive integer", None),
            Resolved::BadPath => (400, "path: malformed percent-encoding", None),
            Resolved::Shed { .. } => (503, SHED, None),
        };
        Some(Refusal { status, message, allow })
    }

    /// The route the path matched, if it matched one (for the metrics' route label).
    pub(crate) fn route(&self) -> Option<R> {
        match *self {
            Resolved::Found { route, .. }
            | Resolved::MethodNotAllowed { route, .. }
            | Resolved::BadId { route }
            | Resolved::Shed { route } => Some(route),
            Resolved::NotFound | Resolved::BadPath => None,
        }
    }
}

/// Longest literal pattern the length index covers; longer ones are compared one by one.
const INDEXED_LEN: usize = 48;

/// The mounted rows of a route table, indexed for matching. Built once per worker.
#[derive(Debug, Clone)]
pub struct Matcher<R: 'static> {
    /// Literal rows by pattern length: the rows' positions in `rows`.
    by_len: Vec<Vec<u16>>,
    /// Literal rows too long for the index, and every row with an `{id}`.
    others: Vec<u16>,
    rows: Vec<Pattern<R>>,
}

impl<R: Copy + 'static> Matcher<R> {
    pub(crate) fn new(rows: impl IntoIterator<Item = Pattern<R>>) -> Matcher<R> {
        let rows: Vec<Pattern<R>> = rows.into_iter().collect();
        let mut by_len = vec![Vec::new(); INDEXED_LEN + 1];
        let mut others = Vec::new();
        for (i, row) in rows.iter().enumerate() {
            let len = row.pattern.len();
            if !row.pattern.contains("{id}") && len <= INDEXED_LEN {
                by_len[len].push(i as u16);
            } else {
                others.push(i as u16);
            }
        }
        Matcher { by_len, others, rows }
    }

    pub fn resolve(&self, method: Method, raw_path: &[u8]) -> Resolved<R> {
        self.resolve_scanned(method, raw_path, raw_path.contains(&b'%'))
    }

    /// The route for a request head: its path, already known to hold a `%` or not.
    #[inline]
    pub(crate) fn resolve_head(&self, head: &Head, head_bytes: &[u8]) -> Resolved<R> {
        self.resolve_scanned(head.method, head.path(head_bytes), head.path_encoded)
    }

    /// [`Self::resolve`] for a path already known to hold a `%` or not (the parser notes it
    /// in [`Head::path_encoded`]), so it is not scanned twice.
    pub fn resolve_scanned(&self, method: Method, raw_path: &[u8], encoded: bool) -> Resolved<R> {
        let path = if encoded {
            match decode_path(raw_path) {
                Some(path) => path,
                None => return Resolved::BadPath,
            }
        } else {
            Cow::Borrowed(raw_path)
        };
        let Some((row, id)) = self.find(&path) else { return Resolved::NotFound };
        if !row.methods.allowed.contains(&method) {
            return Resolved::MethodNotAllowed { route: row.route, allow: row.methods.allow };
        }
        match id {
            None => Resolved::Found { route: row.route, id: None },
            Some(segment) => match parse_id(segment) {
                Some(id) => Resolved::Found { route: row.route, id: Some(id) },
                None => Resolved::BadId { route: row.route },
            },
        }
    }

    /// The row a decoded path matches, and its `{id}` segment.
    fn find<'p>(&self, path: &'p [u8]) -> Option<(&Pattern<R>, Option<&'p [u8]>)> {
        if let Some(candidates) = self.by_len.get(path.len()) {
            for &i in candidates {
                let row = &self.rows[i as usize];
                if row.pattern.as_bytes() == path {
                    return Some((row, None));
                }
            }
        }
        self.others
            .iter()
            .map(|&i| &self.rows[i as usize])
            .find_map(|row| Some((row, match_pattern(row.pattern, path)?)))
    }
}

/// Matches `path` against a pattern with at most one `{id}` segment: `Some(None)` for a
/// literal match, `Some(Some(segment))` with the id's raw segment.
fn match_pattern<'p>(pattern: &str, path: &'p [u8]) -> Option<Option<&'p [u8]>> {
    let Some(at) = pattern.find("{id}") else { return (pattern.as_bytes() == path).then_some(None) };
    let (prefix, suffix) = (&pattern.as_bytes()[..at], &pattern.as_bytes()[at + "{id}".len()..]);
    let rest = path.strip_prefix(prefix)?;
    let end = memchr::memchr(b'/', rest).unwrap_or(rest.len());
    (&rest[end..] == suffix).then_some(Some(&rest[..end]))
}

/// Decodes a path segment by segment, so an encoded slash does not split a segment; `None`
/// for a malformed escape or a slash encoded inside a segment.
pub(crate) fn decode_path(raw_path: &[u8]) -> Option<Cow<'_, [u8]>> {
    let mut decoded = Vec::with_capacity(raw_path.len());
    for (i, segment) in raw_path.split(|&b| b == b'/').enumerate() {
        if i > 0 {
            decoded.push(b'/');
        }
        match percent_decode(segment, false) {
            Ok(s) if !s.contains(&b'/') => decoded.extend_from_slice(&s),
            _ => return None,
        }
    }
    Some(Cow::Owned(decoded))
}

/// A positive 64-bit integer in plain decimal: no sign, no leading zeros, no spaces.
pub(crate) fn parse_id(s: &[u8]) -> Option<i64> {
    if s.is_empty() || s.len() > 19 || s[0] == b'0' || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(s).ok()?.parse::<i64>().ok().filter(|&n| n > 0)
}

/// A request as a handler sees it: the parsed head, the bytes it points into, the body
/// (mutable, so simd-json can parse it in place) and the route's `{id}`. (The request's id
/// is on every log line a handler writes: the logging scope carries it.)
pub(crate) struct RequestView<'r> {
    pub(crate) head: &'r Head,
    pub(crate) bytes: &'r [u8],
    pub(crate) body: &'r mut [u8],
    /// The route's `{id}`, already checked to be a positive integer.
    pub(crate) id: Option<i64>,
}

impl RequestView<'_> {
    pub(crate) fn query(&self) -> &[u8] {
        self.head.query(self.bytes)
    }

    pub(crate) fn content_type(&self) -> Option<&[u8]> {
        self.head.content_type.map(|s| s.get(self.bytes))
    }

    pub(crate) fn method(&self) -> Method {
        self.head.method
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GET: Methods = Methods { allowed: &[Method::Get, Method::Head], allow: "GET, HEAD" };
    const LONG: &str = "/a-literal-pattern-longer-than-the-length-index-holds";

    fn matcher() -> Matcher<u8> {
        Matcher::new([
            Pattern { route: 1, pattern: "/health", methods: GET },
            Pattern { route: 2, pattern: "/things/{id}", methods: GET },
            Pattern { route: 3, pattern: "/things/{id}/parts", methods: GET },
            Pattern { route: 4, pattern: LONG, methods: GET },
        ])
    }

    #[test]
    fn literal_id_and_long_patterns() {
        let m = matcher();
        assert_eq!(m.resolve(Method::Get, b"/health"), Resolved::Found { route: 1, id: None });
        assert_eq!(m.resolve(Method::Get, b"/things/7"), Resolved::Found { route: 2, id: Some(7) });
        assert_eq!(m.resolve(Method::Get, b"/things/7/parts"), Resolved::Found { route: 3, id: Some(7) });
        assert_eq!(m.resolve(Method::Get, LONG.as_bytes()), Resolved::Found { route: 4, id: None });
        assert_eq!(m.resolve(Method::Get, b"/things/7/nope"), Resolved::NotFound);
        assert_eq!(m.resolve(Method::Get, b"/things/x"), Resolved::BadId { route: 2 });
        assert_eq!(m.resolve(Method::Post, b"/health"), Resolved::MethodNotAllowed { route: 1, allow: "GET, HEAD" });
        assert_eq!(m.resolve(Method::Get, b"/%68ealth"), Resolved::Found { route: 1, id: None });
        assert_eq!(m.resolve(Method::Get, b"/he%zzalth"), Resolved::BadPath);
    }

    #[test]
    fn ids() {
        assert_eq!(parse_id(b"1"), Some(1));
        assert_eq!(parse_id(b"9223372036854775807"), Some(i64::MAX));
        for bad in
            [&b""[..], b"0", b"-1", b"+1", b"01", b"1.0", b"9223372036854775808", b"99999999999999999999", b"1a", b" 1"]
        {
            assert_eq!(parse_id(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
