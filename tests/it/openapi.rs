//! The OpenAPI description (src/app/openapi.json) is what the server serves at /openapi.json and
//! matches the router: every API route is described, every described path is routed, with
//! the same methods. schemathesis (.ci/run) then checks the live server against it.

use std::collections::BTreeSet;

use crate::common::each_driver;
use crate::common::serde_json_lite::{self, Value};
use percore::app::routes::{router, Route};
use percore::http::request::Method;
use percore::http::route::Resolved;
use simd_json::prelude::*;

fn spec() -> Value {
    serde_json_lite::parse(percore::app::handlers::OPENAPI.as_bytes()).expect("src/app/openapi.json is JSON")
}

/// Routes that are part of the API contract (not the TechEmpower or test routes).
fn api_routes() -> Vec<Route> {
    // Not the guide's example either (docs/adding-a-resource.md, the example-resource feature).
    let api = |r: &Route| !r.pattern().starts_with("/__test") && !r.pattern().starts_with("/api/v1/products");
    Route::ALL.iter().copied().filter(|r| api(r) && !is_bench(*r)).collect()
}

fn is_bench(r: Route) -> bool {
    ["/plaintext", "/json", "/db", "/queries", "/fortunes", "/updates"].contains(&r.pattern())
}

#[test]
fn every_route_is_described_and_every_description_is_routed() {
    let spec = spec();
    assert_eq!(spec["openapi"].as_str().map(|v| &v[..2]), Some("3."));
    let paths = spec["paths"].as_object().expect("paths");
    let described: BTreeSet<&str> = paths.keys().map(|k| k.as_ref()).collect();
    let routed: BTreeSet<&str> = api_routes().iter().map(|r| r.pattern()).collect();
    assert_eq!(described, routed, "src/app/openapi.json and the router disagree");
    let router = router(false);
    for (path, item) in paths {
        let concrete = path.replace("{id}", "7");
        for method in [Method::Get, Method::Post, Method::Put, Method::Patch, Method::Delete] {
            let key = method.as_str().to_ascii_lowercase();
            let routed = matches!(router.resolve(method, concrete.as_bytes()), Resolved::Found { .. });
            assert_eq!(item.get(key.as_str()).is_some(), routed, "{} {path}: described iff routed", method.as_str());
        }
    }
}

#[test]
fn the_document_is_served() {
    each_driver(&[], |s| {
        let r = s.get("/openapi.json");
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.text(), percore::app::handlers::OPENAPI);
    });
}
