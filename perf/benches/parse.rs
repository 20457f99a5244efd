//! The request parser's cost: a typical API request, a pipelined batch, a chunked body, and
//! a request arriving in pieces. Run with `cargo bench --bench parse`.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use percore::http::request::{Limits, Parsed, Parser};

const LIMITS: Limits = Limits { max_head: 16384, max_body: 1 << 20 };

const WRK: &[u8] = b"GET /plaintext HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n";
const BROWSER: &[u8] = b"GET /api/v1/users/42?fields=all HTTP/1.1\r\nHost: api.example.com\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36\r\nAccept: application/json\r\nAccept-Encoding: gzip, deflate, br\r\nAccept-Language: en-US,en;q=0.9\r\nConnection: keep-alive\r\nX-Request-Id: 0123456789abcdef\r\n\r\n";
const POST: &[u8] = b"POST /api/v1/users HTTP/1.1\r\nHost: api.example.com\r\nContent-Type: application/json\r\nContent-Length: 45\r\n\r\n{\"name\":\"Ada Lovelace\",\"email\":\"ada@ex.com\"}";

fn parse_all(buf: &mut [u8]) -> usize {
    let mut parser = Parser::new(LIMITS);
    let mut at = 0;
    let mut n = 0;
    while let Ok(Parsed::Complete(r)) = parser.parse(&mut buf[at..]) {
        at += r.len;
        n += 1;
    }
    n
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse");
    for (name, raw) in [("wrk_get", WRK), ("browser_get", BROWSER), ("json_post", POST)] {
        g.throughput(Throughput::Elements(1));
        g.bench_function(name, |b| b.iter_batched_ref(|| raw.to_vec(), |buf| parse_all(buf), BatchSize::SmallInput));
    }
    // The floor under "wrk_get": httparse alone on the same bytes, without percore's checks
    // (Host, framing, target) or its Head; the difference is what strictness costs.
    g.bench_function("httparse_alone_wrk_get", |b| {
        b.iter(|| {
            let mut headers = [httparse::EMPTY_HEADER; 16];
            let mut req = httparse::Request::new(&mut headers);
            matches!(req.parse(std::hint::black_box(WRK)), Ok(httparse::Status::Complete(_)))
        })
    });
    let pipelined = WRK.repeat(16);
    g.throughput(Throughput::Elements(16));
    g.bench_function("pipelined_16", |b| {
        b.iter_batched_ref(|| pipelined.clone(), |buf| parse_all(buf), BatchSize::SmallInput)
    });
    let mut chunked = b"POST /__test/echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..64 {
        chunked.extend_from_slice(b"40\r\n");
        chunked.extend_from_slice(&[b'x'; 64]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    g.throughput(Throughput::Bytes(4096));
    g.bench_function("chunked_4k_body", |b| {
        b.iter_batched_ref(|| chunked.clone(), |buf| parse_all(buf), BatchSize::SmallInput)
    });
    g.throughput(Throughput::Elements(1));
    g.bench_function("browser_get_in_8_pieces", |b| {
        b.iter(|| {
            let mut parser = Parser::new(LIMITS);
            let mut buf = Vec::with_capacity(BROWSER.len());
            let step = BROWSER.len() / 8 + 1;
            let mut done = false;
            for piece in BROWSER.chunks(step) {
                buf.extend_from_slice(piece);
                done = matches!(parser.parse(&mut buf), Ok(Parsed::Complete(_)));
            }
            done
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
