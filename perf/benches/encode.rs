//! Response encoding: the /json body serialized per request with simd-json, a user, a page
//! of users, a canned and a composed error, the Date header. Run with
//! `cargo bench --bench encode`.

use std::cell::RefCell;

use criterion::{criterion_group, criterion_main, Criterion};
use percore::db::model::{Timestamp, User};
use percore::http::date::{imf_fixdate, DateCache};
use percore::http::response::{Framing, Reply};
use simd_json_derive::Serialize;

#[derive(Serialize)]
struct Message {
    message: &'static str,
}

fn bench(c: &mut Criterion) {
    let date = imf_fixdate(1_767_323_045);
    let scratch = RefCell::new(Vec::with_capacity(4096));
    let mut out = Vec::with_capacity(64 * 1024);
    let user = User {
        id: 42,
        name: "Ada Lovelace".into(),
        email: "ada@example.com".into(),
        created_at: Timestamp(1_767_323_045),
    };
    let page: Vec<User> = (0..20).map(|i| User { id: i, ..user.clone() }).collect();
    let mut g = c.benchmark_group("encode");
    let mut respond = |g: &mut criterion::BenchmarkGroup<'_, _>, name: &str, f: &dyn Fn(&mut Reply<'_>)| {
        g.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                let mut reply = Reply::new(&mut out, &scratch, &date, Framing::default(), b"0123456789abcdef01234567");
                f(&mut reply);
                out.len()
            })
        });
    };
    respond(&mut g, "json_hello", &|r| r.json(200, &Message { message: "Hello, World!" }, &[]));
    respond(&mut g, "plaintext", &|r| r.send(200, "text/plain", b"Hello, World!", &[]));
    respond(&mut g, "user", &|r| r.json(200, &user, &[]));
    respond(&mut g, "page_of_20_users", &|r| r.json(200, &page, &[]));
    respond(&mut g, "canned_404", &|r| r.error(404, "Not Found"));
    respond(&mut g, "composed_400", &|r| r.error(400, "email: must contain '@'"));
    let cache = DateCache::default();
    g.bench_function("date_cached", |b| b.iter(|| cache.get()));
    g.bench_function("date_formatted", |b| b.iter(|| imf_fixdate(std::hint::black_box(1_767_323_045))));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
