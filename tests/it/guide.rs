//! docs/adding-a-resource.md cannot drift from the code: every block it quotes is in the
//! file the block's first line names, and the resource it builds (`/api/v1/products`,
//! behind the `example-resource` feature, which .ci/run turns on for this test) answers as
//! the guide says, on both stores and both drivers.

use std::path::Path;

/// The ```rust blocks of the guide whose first line is `// src/…`: (file, the other lines).
fn quotes() -> Vec<(String, Vec<String>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let guide = std::fs::read_to_string(root.join("docs/adding-a-resource.md")).unwrap();
    let mut quotes = Vec::new();
    let mut lines = guide.lines();
    while let Some(line) = lines.next() {
        if line.trim() != "```rust" {
            continue;
        }
        let block: Vec<String> = lines.by_ref().take_while(|l| l.trim() != "```").map(str::to_owned).collect();
        if let Some(file) = block.first().and_then(|l| l.trim().strip_prefix("// ")).filter(|f| f.starts_with("src/")) {
            quotes.push((file.to_owned(), block[1..].to_vec()));
        }
    }
    quotes
}

/// Whether `quote` is a run of `file`'s lines: compared trimmed, the feature's `cfg` lines
/// of the file skipped, the first quoted line may end a longer line and the last begin one
/// (`… = &[Migration {` … `}];`).
fn quoted_in(file: &str, quote: &[String]) -> bool {
    let lines: Vec<&str> =
        file.lines().map(str::trim).filter(|l| *l != "#[cfg(feature = \"example-resource\")]").collect();
    let quote: Vec<&str> = quote.iter().map(|l| l.trim()).collect();
    let n = quote.len();
    (0..lines.len().saturating_sub(n - 1)).any(|start| {
        quote.iter().enumerate().all(|(i, q)| {
            let line = lines[start + i];
            line == *q || (i == 0 && line.ends_with(q)) || (i == n - 1 && line.starts_with(q))
        })
    })
}

#[test]
fn every_block_the_guide_quotes_is_in_the_file_it_names() {
    let quotes = quotes();
    assert!(quotes.len() >= 9, "the guide quotes its code: {} blocks found", quotes.len());
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (file, quote) in &quotes {
        let text = std::fs::read_to_string(root.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(
            quoted_in(&text, quote),
            "docs/adding-a-resource.md quotes code that {file} does not have:\n{}",
            quote.join("\n")
        );
    }
    for step in [
        "src/db/migrations.rs",
        "src/db/model.rs",
        "src/db/jobs/products.rs",
        "src/db/jobs/table.rs",
        "src/app/decode.rs",
        "src/app/handlers/products.rs",
        "src/app/routes.rs",
    ] {
        assert!(quotes.iter().any(|(f, _)| f == step), "the guide quotes nothing of {step}");
    }
}

#[test]
fn the_matcher_tells_a_quote_from_a_near_miss() {
    let file = "fn a() {\n    let x = 1;\n    #[cfg(feature = \"example-resource\")]\n    let y = 2;\n}\n";
    let q = |lines: &[&str]| lines.iter().map(|l| l.to_string()).collect::<Vec<_>>();
    assert!(quoted_in(file, &q(&["let x = 1;", "let y = 2;"])));
    assert!(!quoted_in(file, &q(&["let x = 1;", "let y = 3;"])));
    assert!(!quoted_in(file, &q(&["let y = 2;", "let x = 1;"])));
}

#[cfg(feature = "example-resource")]
mod example {
    use crate::common::each_store;
    use simd_json::prelude::*;

    #[test]
    fn the_example_resource_answers_as_the_guide_says_on_both_stores() {
        each_store(&[], |s, store| {
            let tag = store.name();
            let r = s.call("POST", "/api/v1/products", Some(r#"{"name":"Tea","price_cents":350}"#));
            assert_eq!(r.status, 201, "{tag}: {}", r.text());
            let id = r.json()["id"].as_i64().unwrap();
            assert_eq!(r.header("location"), Some(format!("/api/v1/products/{id}").as_str()));
            let r = s.get(&format!("/api/v1/products/{id}"));
            assert_eq!(r.status, 200, "{tag}");
            assert_eq!(r.json()["name"], "Tea");
            assert_eq!(r.json()["price_cents"], 350);
            assert_eq!(s.get("/api/v1/products/999999").status, 404);
            for i in 0..3 {
                let body = format!(r#"{{"name":"P{i}","price_cents":{i}}}"#);
                assert_eq!(s.call("POST", "/api/v1/products", Some(&body)).status, 201);
            }
            let page = s.get("/api/v1/products?limit=2").json();
            assert_eq!(page["products"].as_array().unwrap().len(), 2, "{tag}");
            assert!(page["next_after"].as_i64().is_some(), "{tag}: a next page");
            let r = s.call("POST", "/api/v1/products", Some(r#"{"name":"","price_cents":1}"#));
            assert_eq!(r.status, 400);
            assert!(r.text().contains("name:"), "{}", r.text());
            let r = s.call("POST", "/api/v1/products", Some(r#"{"name":"X","price_cents":-1}"#));
            assert!(r.status == 400 && r.text().contains("price_cents"), "{}", r.text());
            let r = s.call("DELETE", "/api/v1/products", None);
            assert_eq!(r.status, 405);
            assert_eq!(r.header("allow"), Some("GET, HEAD, POST"));
            let metrics = s.get("/metrics").text();
            assert!(metrics.contains("route=\"/api/v1/products/{id}\""), "{tag}: labelled by pattern");
            assert!(metrics.contains("query=\"create_product\""), "{tag}: the job's name labels its timings");
        });
    }
}
