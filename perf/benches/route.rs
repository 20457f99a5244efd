//! The router's cost: static paths, paths with an id, a percent-encoded path, misses.
//! Run with `cargo bench --bench route`.

use criterion::{criterion_group, criterion_main, Criterion};
use percore::app::routes::router;
use percore::http::request::Method;

fn bench(c: &mut Criterion) {
    let router = router(true);
    let mut g = c.benchmark_group("route");
    for (name, method, path) in [
        ("plaintext", Method::Get, &b"/plaintext"[..]),
        ("user_by_id", Method::Get, b"/api/v1/users/123456"),
        ("user_orders", Method::Post, b"/api/v1/users/42/orders"),
        ("percent_encoded", Method::Get, b"/api/v1/users/%31%32"),
        ("not_found", Method::Get, b"/no/such/route"),
        ("method_not_allowed", Method::Delete, b"/api/v1/users"),
    ] {
        g.bench_function(name, |b| b.iter(|| router.resolve(std::hint::black_box(method), std::hint::black_box(path))));
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
