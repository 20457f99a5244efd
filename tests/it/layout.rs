//! The architecture, held by a test: the folders of `src/` depend on each other in one
//! direction only, and no circle of files exists anywhere. Read from the source as text
//! (`crate::…` and `super::…` paths outside comments), so it needs nothing but the tree.
//!
//! The layers, each allowed to use only those after it:
//! runtime → app / net → obs / db → tls / http → config / clock / doorbell / lifecycle.
//! The application and the connection loop do not see each other: the seam between them
//! is `http::service`, and the application's view of the shutdown is `lifecycle`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// What each top-level module may use (besides itself).
const ALLOWED: &[(&str, &[&str])] = &[
    (
        "runtime",
        &[
            "app",
            "net",
            "obs",
            "db",
            "tls",
            "http",
            "config",
            "clock",
            "doorbell",
            "lifecycle",
            "deadline",
            "codel",
            "rng",
        ],
    ),
    ("app", &["obs", "db", "tls", "http", "config", "clock", "doorbell", "lifecycle", "deadline", "rng"]),
    ("net", &["obs", "tls", "http", "config", "clock", "doorbell", "lifecycle", "deadline", "codel", "rng"]),
    ("obs", &["tls", "http", "config", "clock", "doorbell"]),
    ("db", &["obs", "tls", "config", "clock", "doorbell", "deadline", "codel"]),
    // Certificates, keys and the rustls configurations of both sides; no I/O of its own
    // beyond reading the files (the record layer is net's, the Postgres stream db's).
    ("tls", &["config", "clock"]),
    ("http", &["clock"]),
    // The database URL is percent-decoded as a request path is: one pure function.
    ("config", &["http"]),
    ("clock", &[]),
    ("doorbell", &[]),
    ("lifecycle", &[]),
    // The current request's deadline, from the loop to the store's jobs.
    ("deadline", &[]),
    // The doors' rule (CoDel), for the store's queue and the workers' loops.
    ("codel", &["config", "clock"]),
    // A worker's random numbers, for spreading load.
    ("rng", &[]),
];

/// Every module of src/ by its path (`net::conn`), with its file.
fn modules() -> BTreeMap<String, PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&src, &mut files);
    files
        .into_iter()
        .filter_map(|f| {
            let rel = f.strip_prefix(&src).unwrap().with_extension("");
            let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
            if matches!(parts.last().map(String::as_str), Some("mod" | "lib" | "main")) {
                parts.pop();
            }
            // Unit tests in their own files (`request/tests.rs`) belong to their module.
            (parts.last().map(String::as_str) != Some("tests")).then(|| (parts.join("::"), f))
        })
        .collect()
}

/// The module a path names: the longest existing prefix of `crate::a::b::C` or
/// `super::x::Y`, resolved from module `from`.
fn resolve(modules: &BTreeMap<String, PathBuf>, from: &str, path: &str) -> Option<String> {
    let mut segments: Vec<&str> = path.split("::").collect();
    let mut base: Vec<&str> = Vec::new();
    match segments.first().copied() {
        Some("crate") => {
            segments.remove(0);
        }
        Some("super") => {
            base = from.split("::").filter(|s| !s.is_empty()).collect();
            while segments.first() == Some(&"super") {
                segments.remove(0);
                base.pop();
            }
        }
        _ => return None,
    }
    (0..=segments.len()).rev().find_map(|n| {
        let name = base.iter().chain(&segments[..n]).copied().collect::<Vec<_>>().join("::");
        modules.contains_key(&name).then_some(name)
    })
}

/// Each module's dependencies on other modules (not its own descendants or ancestors).
fn edges(modules: &BTreeMap<String, PathBuf>) -> BTreeMap<String, BTreeSet<String>> {
    let mut all = BTreeMap::new();
    for (name, file) in modules {
        let text = std::fs::read_to_string(file).unwrap();
        let mut deps = BTreeSet::new();
        for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
            for path in paths_in(line) {
                if let Some(target) = resolve(modules, name, &path) {
                    let related = target.is_empty()
                        || target == *name
                        || name.starts_with(&format!("{target}::"))
                        || target.starts_with(&format!("{name}::"));
                    if !related {
                        deps.insert(target);
                    }
                }
            }
        }
        all.insert(name.clone(), deps);
    }
    all
}

/// `crate::a::b` and `super::c` paths in a line, with `{x, y}` groups expanded.
fn paths_in(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    for start in ["crate::", "super::"] {
        let mut rest = line;
        while let Some(i) = rest.find(start) {
            let before = rest[..i].chars().last();
            rest = &rest[i..];
            let end = rest.find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')).unwrap_or(rest.len());
            let path = rest[..end].trim_end_matches(':').to_owned();
            if !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                if rest[end..].starts_with('{') && rest[..end].ends_with("::") {
                    let group = &rest[end + 1..rest.find('}').unwrap_or(rest.len())];
                    for item in group.split(',').map(|s| s.trim().split("::").next().unwrap_or("")) {
                        if !item.is_empty() && item != "self" {
                            out.push(format!("{path}::{item}"));
                        }
                    }
                }
                out.push(path);
            }
            rest = &rest[end.max(1)..];
        }
    }
    out
}

fn top(module: &str) -> &str {
    module.split("::").next().unwrap_or("")
}

#[test]
fn folders_depend_downwards_only() {
    let modules = modules();
    let edges = edges(&modules);
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut wrong = Vec::new();
    for (from, deps) in &edges {
        let Some(may) = allowed.get(top(from)) else { continue };
        for to in deps {
            if top(to) != top(from) && !may.contains(&top(to)) {
                wrong.push(format!("{from} uses {to}"));
            }
        }
    }
    assert!(wrong.is_empty(), "dependencies against the layers:\n{}", wrong.join("\n"));
    for (name, _) in ALLOWED {
        assert!(modules.contains_key(*name), "the layer {name} no longer exists: update ALLOWED");
    }
}

#[test]
fn no_circle_of_files() {
    let modules = modules();
    let edges = edges(&modules);
    assert!(edges.values().map(BTreeSet::len).sum::<usize>() > 50, "the reader found too few dependencies");
    // Depth-first search for a back edge.
    fn visit<'a>(
        node: &'a str,
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<&'a str, bool>,
        stack: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        match state.get(node) {
            Some(true) => return None,
            Some(false) => {
                let at = stack.iter().position(|n| *n == node).unwrap_or(0);
                return Some(stack[at..].iter().map(|s| s.to_string()).chain([node.to_owned()]).collect());
            }
            None => {}
        }
        state.insert(node, false);
        stack.push(node);
        for next in edges.get(node).into_iter().flatten() {
            if let Some(circle) = visit(next, edges, state, stack) {
                return Some(circle);
            }
        }
        stack.pop();
        state.insert(node, true);
        None
    }
    let mut state = BTreeMap::new();
    for node in edges.keys() {
        if let Some(circle) = visit(node, &edges, &mut state, &mut Vec::new()) {
            panic!("a circle of files: {}", circle.join(" → "));
        }
    }
}

#[test]
fn the_reader_resolves_paths() {
    let modules: BTreeMap<String, PathBuf> = ["", "net", "net::conn", "net::core", "http", "http::route"]
        .iter()
        .map(|m| (m.to_string(), PathBuf::new()))
        .collect();
    assert_eq!(resolve(&modules, "net::conn", "super::core::Core").as_deref(), Some("net::core"));
    assert_eq!(resolve(&modules, "net::conn", "crate::http::route::Resolved").as_deref(), Some("http::route"));
    assert_eq!(
        paths_in("use crate::http::{route::Resolved, request};"),
        ["crate::http::route", "crate::http::request", "crate::http"]
    );
}
