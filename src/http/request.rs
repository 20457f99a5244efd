//! ③ Bytes → request (RFC 9112), a pure function with no I/O.
//!
//! [`Parser::parse`] is called with the bytes of the current request received so far (the
//! connection's read buffer from the request's first byte) and answers `Partial` — read
//! more — or `Complete` with the head and where the body lies. It keeps a little state
//! between calls so a request that trickles in costs linear work: the head is handed to
//! httparse only once a blank line has arrived, and a chunked body is decoded in place,
//! incrementally ([`super::chunked`]).
//!
//! Limits are decided from the head, before any body is read: 431 for a head over
//! MAX_HEADER_BYTES, 414 for a request line over [`MAX_URI_BYTES`], 413 for a declared
//! Content-Length over MAX_BODY_BYTES. Framing that a proxy could read differently is
//! refused with 400 (the connection closes after it): both Content-Length and
//! Transfer-Encoding, conflicting Content-Lengths, a malformed chunk, obs-fold, whitespace
//! before a colon, NUL or bare CR in a header, a missing or repeated Host in HTTP/1.1.
//! A transfer coding other than chunked is 501, an HTTP version other than 1.0/1.1 is 505.
//!
//! The head is kept as offsets ([`Span`]), not slices, so it stays valid while the buffer
//! grows under it and can be carried from the call that parsed it to the one that sees
//! the end of the body.

use std::ops::Range;

use super::chunked::{ChunkedDecoder, ChunkedError};

/// Longest request-target accepted; longer gets 414 (nginx and Go use similar limits).
pub(crate) const MAX_URI_BYTES: usize = 8192;
/// Most header lines accepted; more gets 431. A header flood fails fast here.
pub(crate) const MAX_HEADERS: usize = 100;

/// Limits from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_head: usize,
    pub max_body: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
    Options,
    Trace,
    Connect,
    /// A syntactically valid method percore does not know: 405 where the path exists.
    Other,
}

impl Method {
    /// Every method, in [`Method::index`] order.
    pub(crate) const ALL: [Method; 10] = [
        Method::Get,
        Method::Head,
        Method::Post,
        Method::Put,
        Method::Patch,
        Method::Delete,
        Method::Options,
        Method::Trace,
        Method::Connect,
        Method::Other,
    ];

    /// This method's position in [`Method::ALL`].
    pub(crate) fn index(self) -> usize {
        self as usize
    }

    pub(crate) fn from_token(t: &str) -> Method {
        match t {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "PATCH" => Method::Patch,
            "DELETE" => Method::Delete,
            "OPTIONS" => Method::Options,
            "TRACE" => Method::Trace,
            "CONNECT" => Method::Connect,
            _ => Method::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
            Method::Options => "OPTIONS",
            Method::Trace => "TRACE",
            Method::Connect => "CONNECT",
            Method::Other => "OTHER",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Version {
    Http10,
    Http11,
}

/// A byte range of the request's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    start: u32,
    end: u32,
}

impl Span {
    fn of(range: Range<usize>) -> Span {
        Span { start: range.start as u32, end: range.end as u32 }
    }

    pub fn get(self, buf: &[u8]) -> &[u8] {
        &buf[self.start as usize..self.end as usize]
    }

    pub(crate) fn is_empty(self) -> bool {
        self.start == self.end
    }
}

/// How the body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyLength {
    Empty,
    Length(u64),
    Chunked,
}

/// What the rest of percore needs from a request head, as offsets into its buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub method: Method,
    pub(crate) version: Version,
    /// The path, percent-encoded as received; empty for an absolute-form target without one.
    pub(crate) path: Span,
    /// The path holds a `%` (noted while the target was scanned, so the router need not
    /// scan it again).
    pub path_encoded: bool,
    /// The query after `?`, if any.
    pub query: Option<Span>,
    /// Whether the connection may serve another request after this one.
    pub(crate) keep_alive: bool,
    /// HTTP/1.0 client that asked for keep-alive: it needs `Connection: keep-alive` back.
    pub(crate) keep_alive_10: bool,
    pub(crate) expect_continue: bool,
    pub(crate) content_type: Option<Span>,
    pub(crate) request_id: Option<Span>,
    pub(crate) body: BodyLength,
    /// The request declared a body (Content-Length, even 0, or Transfer-Encoding).
    pub(crate) declared_body: bool,
    /// Length of the head; the body starts here.
    pub len: usize,
}

impl Head {
    /// The path, `/` for an absolute-form target that had none.
    pub fn path<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        if self.path.is_empty() {
            b"/"
        } else {
            self.path.get(buf)
        }
    }

    pub(crate) fn query<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        self.query.map_or(&[], |q| q.get(buf))
    }
}

/// A whole request: its head, where its (decoded) body lies and how many bytes it used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub head: Head,
    pub body: Range<usize>,
    /// Bytes of the buffer this request used; the next request starts here.
    pub len: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// More bytes are needed.
    Partial,
    Complete(Request),
}

/// Why a request was refused. Every one of them closes the connection after its response:
/// once framing is in doubt nothing after it can be trusted to be a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// 400 with the reason.
    Bad(&'static str),
    /// 431: head over MAX_HEADER_BYTES or too many header lines.
    HeadTooLarge,
    /// 414
    UriTooLong,
    /// 413, decided from Content-Length or while decoding chunks.
    BodyTooLarge,
    /// 501: a transfer coding other than chunked.
    UnknownTransferCoding,
    /// 505
    UnsupportedVersion,
    /// 417: an Expect other than 100-continue.
    UnknownExpectation,
}

impl ParseError {
    pub fn status(self) -> u16 {
        match self {
            ParseError::Bad(_) => 400,
            ParseError::HeadTooLarge => 431,
            ParseError::UriTooLong => 414,
            ParseError::BodyTooLarge => 413,
            ParseError::UnknownTransferCoding => 501,
            ParseError::UnsupportedVersion => 505,
            ParseError::UnknownExpectation => 417,
        }
    }

    /// The message for the JSON error body.
    pub(crate) fn message(self) -> &'static str {
        match self {
            ParseError::Bad(why) => why,
            ParseError::HeadTooLarge => "request head too large",
            ParseError::UriTooLong => "request-target too long",
            ParseError::BodyTooLarge => "request body too large",
            ParseError::UnknownTransferCoding => "only the chunked transfer coding is supported",
            ParseError::UnsupportedVersion => "only HTTP/1.0 and HTTP/1.1 are supported",
            ParseError::UnknownExpectation => "only Expect: 100-continue is supported",
        }
    }
}

/// Parses one request after another from a connection's bytes.
#[derive(Debug, Clone)]
pub struct Parser {
    limits: Limits,
    state: State,
}

#[derive(Debug, Clone)]
enum State {
    /// Waiting for the blank line that ends the head; bytes before `scanned` hold none.
    /// `tried`: the whole buffer was already offered to httparse once.
    Head {
        scanned: usize,
        line_end: Option<usize>,
        tried: bool,
    },
    Length {
        head: Head,
        end: usize,
    },
    Chunked {
        head: Head,
        decoder: ChunkedDecoder,
    },
}

const FRESH: State = State::Head { scanned: 0, line_end: None, tried: false };

impl Parser {
    pub fn new(limits: Limits) -> Parser {
        Parser { limits, state: FRESH }
    }

    /// The head of a request whose body is still arriving (for `Expect: 100-continue`).
    pub(crate) fn pending_head(&self) -> Option<&Head> {
        match &self.state {
            State::Head { .. } => None,
            State::Length { head, .. } | State::Chunked { head, .. } => Some(head),
        }
    }

    /// Moves chunk data still waiting to be decoded down over the framing already decoded,
    /// and returns how many bytes of `buf` are still needed: a body sent in tiny chunks then
    /// costs its decoded size in memory, not its encoded size.
    pub(crate) fn reclaim(&mut self, buf: &mut [u8]) -> usize {
        match &mut self.state {
            State::Chunked { decoder, .. } => decoder.reclaim(buf),
            _ => buf.len(),
        }
    }

    /// Forgets a half-parsed request (after an error, before the connection closes).
    pub(crate) fn reset(&mut self) {
        self.state = FRESH;
    }

    /// Advances over `buf`, the bytes of the current request received so far (and maybe
    /// more after it). Call again with the same bytes plus new ones after `Partial`; after
    /// `Complete(r)` the next request starts at `buf[r.len..]`. `buf` is mutable because
    /// a chunked body is decoded in place.
    #[inline(always)]
    pub fn parse(&mut self, buf: &mut [u8]) -> Result<Parsed, ParseError> {
        // The common case, a whole head with no body at the front of the buffer, leaves the
        // parser as it found it: nothing to store, nothing to reset (`perf/instructions.py`).
        if let State::Head { tried: false, .. } = self.state {
            match parse_head(buf, self.limits)? {
                Some(head) => {
                    if let Some(done) = self.after_head(head) {
                        return Ok(done);
                    }
                }
                None => self.state = State::Head { scanned: 0, line_end: None, tried: true },
            }
        }
        let result = self.advance(buf);
        if !matches!(result, Ok(Parsed::Partial)) {
            self.state = FRESH;
        }
        result
    }

    /// A parsed head: the whole request when it has no body, else the parser now waits for
    /// that body (and `None`).
    #[inline(always)]
    fn after_head(&mut self, head: Head) -> Option<Parsed> {
        let end = head.len;
        self.state = match head.body {
            BodyLength::Empty => return Some(complete(head, end..end, end)),
            BodyLength::Length(n) => State::Length { end: end + n as usize, head },
            BodyLength::Chunked => State::Chunked { decoder: ChunkedDecoder::new(end), head },
        };
        None
    }

    /// The rest: a head that arrived in pieces, or a body.
    #[inline(never)]
    fn advance(&mut self, buf: &mut [u8]) -> Result<Parsed, ParseError> {
        if let State::Head { scanned, line_end, .. } = &mut self.state {
            // Most heads arrive whole, and `parse` has let httparse find the end itself.
            // Only a head that was not all there is scanned for its end, incrementally, so
            // one that trickles in costs linear work.
            let Some(end) = find_head_end(buf, scanned, line_end, self.limits)? else {
                return Ok(Parsed::Partial);
            };
            let head = parse_head(&buf[..end], self.limits)?.ok_or(ParseError::Bad("malformed request head"))?;
            if let Some(done) = self.after_head(head) {
                return Ok(done);
            }
        }
        match &mut self.state {
            State::Head { .. } => unreachable!("the head was parsed above"),
            State::Length { head, end } => {
                if buf.len() < *end {
                    return Ok(Parsed::Partial);
                }
                let (head, end) = (head.clone(), *end);
                Ok(complete(head.clone(), head.len..end, end))
            }
            State::Chunked { head, decoder } => {
                match decoder.decode(buf, self.limits.max_body as u64, self.limits.max_head) {
                    Ok(None) => Ok(Parsed::Partial),
                    Ok(Some((body_end, used))) => Ok(complete(head.clone(), head.len..body_end, used)),
                    Err(ChunkedError::Invalid(why)) => Err(ParseError::Bad(why)),
                    Err(ChunkedError::TooLarge) => Err(ParseError::BodyTooLarge),
                    Err(ChunkedError::TrailersTooLarge) => Err(ParseError::HeadTooLarge),
                }
            }
        }
    }
}

fn complete(head: Head, body: Range<usize>, len: usize) -> Parsed {
    Parsed::Complete(Request { head, body, len })
}

/// Finds the end of the head (just past the blank line) without rescanning old bytes.
/// Leading empty lines are allowed before a request (RFC 9112 §2.2) and skipped.
fn find_head_end(
    buf: &[u8],
    scanned: &mut usize,
    line_end: &mut Option<usize>,
    limits: Limits,
) -> Result<Option<usize>, ParseError> {
    let start = buf.iter().position(|&b| b != b'\r' && b != b'\n').unwrap_or(buf.len());
    let from = (*scanned).max(start);
    let max_line = MAX_URI_BYTES.min(limits.max_head) + 64;
    // Where the next call must look again: past every newline already ruled out, but not
    // past one whose following bytes have not all arrived.
    let mut resume = buf.len();
    for nl in memchr::memchr_iter(b'\n', &buf[from..]).map(|i| i + from) {
        if line_end.is_none() {
            *line_end = Some(nl);
            if nl - start > max_line {
                return Err(ParseError::UriTooLong);
            }
        }
        let end = match (buf.get(nl + 1), buf.get(nl + 2)) {
            (Some(b'\n'), _) => nl + 2,
            (Some(b'\r'), Some(b'\n')) => nl + 3,
            (None, _) | (Some(b'\r'), None) => {
                resume = nl;
                break;
            }
            _ => continue,
        };
        if end > limits.max_head {
            return Err(ParseError::HeadTooLarge);
        }
        return Ok(Some(end));
    }
    *scanned = resume;
    if line_end.is_none() && buf.len() - start > max_line {
        return Err(ParseError::UriTooLong);
    }
    if buf.len() > limits.max_head {
        return Err(ParseError::HeadTooLarge);
    }
    Ok(None)
}

/// Parses the head at the start of `buf`; `Ok(None)` if it is not all there yet. Limits
/// are checked here too, for heads that arrive whole.
///
/// Inlined (as are [`Parser::advance`] and [`Parser::parse`]): returned through memory, the
/// `Head` was copied out three times and read back with a store-forwarding stall; inlined,
/// `cargo bench --bench parse` wrk_get fell from 61 to 51 ns and pipelined_16 from 52 to
/// 40 ns a request (httparse alone on the same bytes: 26 ns).
#[inline(always)]
fn parse_head(buf: &[u8], limits: Limits) -> Result<Option<Head>, ParseError> {
    // Uninitialized slots: zeroing 100 headers (3.2 KB) cost more than parsing a small head.
    let mut headers = [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let head = match req.parse_with_uninit_headers(buf, &mut headers) {
        Ok(httparse::Status::Complete(n)) => &buf[..n],
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(ParseError::HeadTooLarge),
        Err(httparse::Error::Version) => return Err(version_error(buf)),
        Err(httparse::Error::HeaderName) => {
            return Err(ParseError::Bad("invalid header name (whitespace before a colon, obs-fold or a bad byte)"))
        }
        Err(httparse::Error::HeaderValue) => {
            return Err(ParseError::Bad("invalid byte in a header value (NUL, bare CR or a control byte)"))
        }
        Err(httparse::Error::NewLine) => return Err(ParseError::Bad("bare CR where CRLF was expected")),
        Err(httparse::Error::Token) => return Err(ParseError::Bad("malformed request line")),
        Err(httparse::Error::Status) => return Err(ParseError::Bad("malformed request line")),
    };
    if head.len() > limits.max_head {
        let uri = req.path.map_or(0, str::len);
        return Err(if uri > MAX_URI_BYTES.min(limits.max_head) {
            ParseError::UriTooLong
        } else {
            ParseError::HeadTooLarge
        });
    }
    let offset = |s: &[u8]| s.as_ptr() as usize - head.as_ptr() as usize;
    let span = |s: &[u8]| Span::of(offset(s)..offset(s) + s.len());

    let method = Method::from_token(req.method.unwrap_or(""));
    let version = if req.version == Some(0) { Version::Http10 } else { Version::Http11 };
    let target = req.path.unwrap_or("").as_bytes();
    let Target { path, query, path_encoded } = split_target(target, method)?;
    let (path, query) = (span(path), query.map(span));

    let (mut hosts, mut content_types) = (0, 0);
    let mut content_length: Option<u64> = None;
    let mut te = TransferCodings::default();
    let (mut close, mut keep_alive, mut expect_continue) = (false, false, false);
    let (mut content_type, mut request_id) = (None, None);
    for h in req.headers.iter() {
        // httparse has already trimmed the whitespace around the value.
        let value = h.value;
        let name = h.name.as_bytes();
        match name.len() {
            4 if name.eq_ignore_ascii_case(b"host") => {
                hosts += 1;
                if !valid_host(value) {
                    return Err(ParseError::Bad("invalid Host header"));
                }
            }
            6 if name.eq_ignore_ascii_case(b"expect") => {
                if value.eq_ignore_ascii_case(b"100-continue") {
                    expect_continue = true;
                } else {
                    return Err(ParseError::UnknownExpectation);
                }
            }
            10 if name.eq_ignore_ascii_case(b"connection") => {
                for token in list(value) {
                    close |= token.eq_ignore_ascii_case(b"close");
                    keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
                }
            }
            12 if name.eq_ignore_ascii_case(b"content-type") => {
                content_types += 1;
                content_type = Some(span(value));
            }
            12 if name.eq_ignore_ascii_case(b"x-request-id") => {
                request_id.get_or_insert(span(value));
            }
            14 if name.eq_ignore_ascii_case(b"content-length") => {
                for item in value.split(|&b| b == b',').map(trim_ows) {
                    let n = parse_content_length(item)?;
                    if content_length.is_some_and(|prev| prev != n) {
                        return Err(ParseError::Bad("conflicting Content-Length headers"));
                    }
                    content_length = Some(n);
                }
            }
            17 if name.eq_ignore_ascii_case(b"transfer-encoding") => te.add(value)?,
            _ => {}
        }
    }

    if version == Version::Http11 && hosts == 0 {
        return Err(ParseError::Bad("missing Host header"));
    }
    if hosts > 1 {
        return Err(ParseError::Bad("more than one Host header"));
    }
    if content_types > 1 {
        return Err(ParseError::Bad("more than one Content-Type header"));
    }
    let body = if te.present {
        if version == Version::Http10 {
            return Err(ParseError::Bad("Transfer-Encoding in an HTTP/1.0 request"));
        }
        if content_length.is_some() {
            return Err(ParseError::Bad("both Content-Length and Transfer-Encoding"));
        }
        te.framing()?
    } else {
        match content_length {
            None | Some(0) => BodyLength::Empty,
            Some(n) if n > limits.max_body as u64 => return Err(ParseError::BodyTooLarge),
            Some(n) => BodyLength::Length(n),
        }
    };
    let keep_alive = match version {
        Version::Http11 => !close,
        Version::Http10 => keep_alive && !close,
    };
    Ok(Some(Head {
        method,
        version,
        path,
        path_encoded,
        query,
        keep_alive,
        keep_alive_10: keep_alive && version == Version::Http10,
        // RFC 9110 §10.1.1: an HTTP/1.0 client's 100-continue is ignored (it may not get a 1xx).
        expect_continue: expect_continue && body != BodyLength::Empty && version == Version::Http11,
        content_type,
        request_id,
        body,
        declared_body: te.present || content_length.is_some(),
        len: head.len(),
    }))
}

/// Whether the bytes of a request, even one too broken to parse, begin a HEAD request: its
/// refusal is then sent without a body (RFC 9110 §9.3.2), as the client expects. Leading
/// empty lines are skipped, as the parser skips them.
pub(crate) fn begins_head_request(buf: &[u8]) -> bool {
    let start = buf.iter().position(|&b| b != b'\r' && b != b'\n').unwrap_or(buf.len());
    buf[start..].starts_with(b"HEAD ")
}

/// A well-formed request line whose `HTTP/x.y` is not 1.0 or 1.1 is 505; anything else
/// (a doubled space before the version included) is malformed.
fn version_error(head: &[u8]) -> ParseError {
    let line = head.split(|&b| b == b'\n').find(|l| !l.is_empty() && *l != b"\r").unwrap_or(b"");
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut parts = line.split(|&b| b == b' ');
    let (method, target, version) = (parts.next(), parts.next(), parts.next());
    let three_parts =
        parts.next().is_none() && method.is_some_and(|m| !m.is_empty()) && target.is_some_and(|t| !t.is_empty());
    match version.filter(|_| three_parts).unwrap_or(b"") {
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor] if major.is_ascii_digit() && minor.is_ascii_digit() => {
            ParseError::UnsupportedVersion
        }
        _ => ParseError::Bad("malformed HTTP version"),
    }
}

/// A request-target taken apart.
struct Target<'t> {
    path: &'t [u8],
    query: Option<&'t [u8]>,
    /// The path holds a `%`.
    path_encoded: bool,
}

/// Splits a request-target into path and query, and notes whether the path holds a `%`.
/// Accepts origin-form (`/p?q`), absolute-form (`http://host/p?q`, RFC 9112 §3.2.2) and `*`
/// for OPTIONS.
fn split_target(target: &[u8], method: Method) -> Result<Target<'_>, ParseError> {
    if target.len() > MAX_URI_BYTES {
        return Err(ParseError::UriTooLong);
    }
    // One pass without early exits (it vectorizes): a non-ASCII byte or a fragment is refused,
    // and only a target that has a `?` is searched for it.
    let seen = target.iter().fold(0u8, |seen, &b| seen | TARGET_BYTES[b as usize]);
    if seen & REFUSED != 0 {
        return Err(ParseError::Bad("invalid byte in request-target"));
    }
    let rest = if target.first() == Some(&b'/') {
        target
    } else if let Some(after) = strip_scheme(target) {
        let authority_end = after.iter().position(|&b| b == b'/' || b == b'?').unwrap_or(after.len());
        if authority_end == 0 {
            return Err(ParseError::Bad("absolute-form request-target without a host"));
        }
        &after[authority_end..]
    } else if target == b"*" && method == Method::Options {
        return Ok(Target { path: target, query: None, path_encoded: false });
    } else {
        return Err(ParseError::Bad("request-target must be a path or an absolute URI"));
    };
    let (path, query) = match (seen & QUERY != 0).then(|| memchr::memchr(b'?', rest)).flatten() {
        Some(q) => (&rest[..q], Some(&rest[q + 1..])),
        None => (rest, None),
    };
    // The `%` may have been in the query (or the authority) only; then look at the path.
    let path_encoded = seen & PERCENT != 0 && (path.len() == target.len() || path.contains(&b'%'));
    Ok(Target { path, query, path_encoded })
}

const REFUSED: u8 = 1;
const QUERY: u8 = 2;
const PERCENT: u8 = 4;

/// What [`split_target`] notes about each byte of a request-target.
const TARGET_BYTES: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = match b as u8 {
            b'#' | 0x80..=0xff => REFUSED,
            b'?' => QUERY,
            b'%' => PERCENT,
            _ => 0,
        };
        b += 1;
    }
    table
};

fn strip_scheme(target: &[u8]) -> Option<&[u8]> {
    for scheme in [&b"http://"[..], b"https://"] {
        if target.len() >= scheme.len() && target[..scheme.len()].eq_ignore_ascii_case(scheme) {
            return Some(&target[scheme.len()..]);
        }
    }
    None
}

/// Content-Length is 1*DIGIT (RFC 9110 §8.6): no sign, no spaces, no hex. A number too big
/// for u64 is still a number — it is simply over any limit.
fn parse_content_length(v: &[u8]) -> Result<u64, ParseError> {
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return Err(ParseError::Bad("invalid Content-Length"));
    }
    Ok(v.iter().fold(0u64, |n, &d| n.saturating_mul(10).saturating_add((d - b'0') as u64)))
}

/// uri-host [":" port] — the bytes a Host may hold; refuses spaces, `/`, `@` and the like.
fn valid_host(v: &[u8]) -> bool {
    v.iter().fold(true, |ok, &b| ok & HOST_BYTES[b as usize])
}

const HOST_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'%'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b':'
                    | b'['
                    | b']'
            );
        b += 1;
    }
    table
};

/// The codings of every Transfer-Encoding line, in order.
#[derive(Default)]
struct TransferCodings {
    present: bool,
    codings: usize,
    chunked_at: Option<usize>,
    chunked_twice: bool,
    unknown: bool,
    chunked_with_params: bool,
}

impl TransferCodings {
    fn add(&mut self, value: &[u8]) -> Result<(), ParseError> {
        self.present = true;
        let before = self.codings;
        for coding in list(value) {
            let (name, params) = match memchr::memchr(b';', coding) {
                Some(i) => (trim_ows(&coding[..i]), true),
                None => (coding, false),
            };
            if name.eq_ignore_ascii_case(b"chunked") {
                self.chunked_twice |= self.chunked_at.is_some();
                self.chunked_at = Some(self.codings);
                self.chunked_with_params |= params;
            } else {
                self.unknown = true;
            }
            self.codings += 1;
        }
        if self.codings == before {
            return Err(ParseError::Bad("empty Transfer-Encoding"));
        }
        Ok(())
    }

    /// Only `chunked`, once and last, frames a request body we can read.
    /// A `chunked` that is not last (or repeated) leaves the length undeterminable: 400, as
    /// RFC 9112 §6.3 requires; otherwise a coding we do not decode is 501, as nginx answers.
    fn framing(&self) -> Result<BodyLength, ParseError> {
        let misplaced = self.chunked_at.is_some_and(|at| at != self.codings - 1);
        if self.chunked_twice || self.chunked_with_params || misplaced {
            return Err(ParseError::Bad("chunked must be the final transfer coding, applied once"));
        }
        if self.unknown || self.chunked_at.is_none() {
            return Err(ParseError::UnknownTransferCoding);
        }
        Ok(BodyLength::Chunked)
    }
}

/// The non-empty, trimmed elements of a comma-separated header list.
fn list(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(trim_ows).filter(|t| !t.is_empty())
}

fn trim_ows(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|&b| b != b' ' && b != b'\t').unwrap_or(v.len());
    let end = v.iter().rposition(|&b| b != b' ' && b != b'\t').map_or(start, |e| e + 1);
    &v[start..end]
}

#[cfg(test)]
mod tests;
