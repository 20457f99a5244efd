//! The request parser on arbitrary bytes, whole and in pieces.
//!
//! Properties: it never panics; every complete request lies inside the bytes it was given,
//! its body inside it, its head before its body; feeding the same bytes in two pieces (as
//! reads deliver them) gives exactly the requests of feeding them at once — so framing
//! cannot depend on where a read happened to end — and a refusal in one is a refusal or a
//! wait in the other, never a served request (a bad byte in an unfinished head is seen at
//! once only on the first look; later it is seen when the head ends); and the router and
//! query parser accept whatever path and query the parser hands them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use percore::http::query;
use percore::http::request::{Limits, Parsed, Parser};
use percore::app::routes::router;

const LIMITS: Limits = Limits { max_head: 4096, max_body: 1 << 16 };

/// What parsing yields: each request as (head length, body bytes, length), then how it ended.
#[derive(Debug, PartialEq)]
struct Outcome {
    requests: Vec<(usize, Vec<u8>, usize)>,
    end: End,
}

#[derive(Debug, PartialEq)]
enum End {
    Partial,
    Error(u16),
    Consumed,
}

/// Parses `data` delivered in reads that end at `cuts` (ascending), as the connection does:
/// after `Partial` the same bytes plus the new ones are offered again.
fn parse(data: &[u8], cuts: &[usize]) -> Outcome {
    let router = router(true);
    let mut parser = Parser::new(LIMITS);
    let mut buf: Vec<u8> = Vec::new();
    let mut requests = Vec::new();
    let mut fed = 0;
    for &cut in cuts.iter().chain(std::iter::once(&data.len())) {
        if cut < fed {
            continue;
        }
        buf.extend_from_slice(&data[fed..cut]);
        fed = cut;
        loop {
            if buf.is_empty() {
                break;
            }
            match parser.parse(&mut buf) {
                Ok(Parsed::Partial) => break,
                Ok(Parsed::Complete(r)) => {
                    assert!(r.len <= buf.len(), "request longer than the buffer");
                    assert!(r.head.len <= r.len && r.body.start >= r.head.len && r.body.end <= r.len);
                    let head = &buf[..r.head.len];
                    let path = r.head.path(head);
                    assert_eq!(
                        r.head.path_encoded,
                        path.contains(&b'%'),
                        "the parser's note of a '%' in the path is wrong"
                    );
                    // The server routes with the parser's note; it must agree with the router's own scan.
                    let routed = router.resolve_scanned(r.head.method, path, r.head.path_encoded);
                    assert_eq!(routed, router.resolve(r.head.method, path));
                    if let Some(q) = r.head.query {
                        let q = q.get(head);
                        let _ = query::pairs(q).count();
                        let _ = query::get(q, "limit");
                    }
                    requests.push((r.head.len, buf[r.body.clone()].to_vec(), r.len));
                    buf.drain(..r.len);
                }
                Err(e) => return Outcome { requests, end: End::Error(e.status()) },
            }
        }
    }
    let end = if buf.is_empty() { End::Consumed } else { End::Partial };
    Outcome { requests, end }
}

/// The same requests, and ends that agree but for when a refusal is noticed.
fn agrees(split: &Outcome, whole: &Outcome) -> bool {
    let ends = match (&split.end, &whole.end) {
        (a, b) if a == b => true,
        (End::Error(_), End::Error(_) | End::Partial) | (End::Partial, End::Error(_)) => true,
        _ => false,
    };
    split.requests == whole.requests && ends
}

fuzz_target!(|data: &[u8]| {
    let whole = parse(data, &[]);
    if data.len() > 2 {
        // The first two bytes choose where the read boundary falls, so the fuzzer explores it.
        let cut = (u16::from_le_bytes([data[0], data[1]]) as usize) % data.len();
        let split = parse(data, &[cut]);
        assert!(agrees(&split, &whole), "split at {cut}: {split:?} vs {whole:?}");
        let trickled = parse(data, &(1..data.len().min(64)).collect::<Vec<_>>());
        assert!(agrees(&trickled, &whole), "byte by byte: {trickled:?} vs {whole:?}");
    }
});
