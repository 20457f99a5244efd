//! The TechEmpower test types, checked against the benchmark's rules on SQLite and
//! PostgreSQL, on both drivers.

use crate::common::pg::PrivateCluster;
use crate::common::{each_store, Response, Server, Store};
use simd_json::prelude::*;

const BENCH: &[(&str, &str)] = &[("BENCH_ROUTES", "1")];

fn standard_headers(r: &Response, content_type: &str) {
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("server"), Some("percore"));
    assert!(r.header("date").is_some_and(|d| d.ends_with(" GMT")));
    assert_eq!(r.header("content-type"), Some(content_type));
    assert_eq!(r.header("content-length").unwrap().parse::<usize>().unwrap(), r.body.len());
}

fn world_ok(v: &simd_json::OwnedValue) -> (i64, i64) {
    let object = v.as_object().expect("a world is an object");
    assert_eq!(object.len(), 2, "exactly id and randomNumber: {v}");
    let (id, n) = (v["id"].as_i64().unwrap(), v["randomNumber"].as_i64().unwrap());
    assert!((1..=10_000).contains(&id) && (1..=10_000).contains(&n), "{v}");
    (id, n)
}

#[test]
fn single_query() {
    each_store(BENCH, |s, store| {
        let mut ids = std::collections::HashSet::new();
        for _ in 0..20 {
            let r = s.get("/db");
            standard_headers(&r, "application/json");
            ids.insert(world_ok(&r.json()).0);
        }
        assert!(ids.len() > 10, "ids are random ({}): {ids:?}", store.name());
    });
}

#[test]
fn multiple_queries_are_clamped_to_1_through_500() {
    each_store(BENCH, |s, _| {
        for (q, n) in [
            ("", 1),
            ("?queries=", 1),
            ("?queries=foo", 1),
            ("?queries=0", 1),
            ("?queries=-5", 1),
            ("?queries=1", 1),
            ("?queries=20", 20),
            ("?queries=500", 500),
            ("?queries=501", 500),
        ] {
            let r = s.get(&format!("/queries{q}"));
            standard_headers(&r, "application/json");
            let worlds = r.json();
            let worlds = worlds.as_array().expect("always an array");
            assert_eq!(worlds.len(), n, "/queries{q}");
            worlds.iter().for_each(|w| {
                world_ok(w);
            });
        }
    });
}

const FORTUNES: [(i64, &str); 12] = [
    (1, "fortune: No such file or directory"),
    (2, "A computer scientist is someone who fixes things that aren't broken."),
    (3, "After enough decimal places, nobody gives a damn."),
    (4, "A bad random number generator: 1, 1, 1, 1, 1, 4.33e+67, 1, 1, 1"),
    (5, "A computer program does what you tell it to do, not what you want it to do."),
    (6, "Emacs is a nice operating system, but I prefer UNIX. — Tom Christaensen"),
    (7, "Any program that runs right is obsolete."),
    (8, "A list is only as strong as its weakest link. — Donald Knuth"),
    (9, "Feature: A bug with seniority."),
    (10, "Computers make very fast, very accurate mistakes."),
    (11, "<script>alert(\"This should not be displayed in a browser alert box.\");</script>"),
    (12, "フレームワークのベンチマーク"),
];

fn expected_fortunes() -> String {
    let mut all: Vec<(i64, &str)> = FORTUNES.to_vec();
    all.push((0, "Additional fortune added at request time."));
    all.sort_by(|a, b| a.1.cmp(b.1));
    let mut html = String::from(
        "<!DOCTYPE html><html><head><title>Fortunes</title></head><body><table><tr><th>id</th><th>message</th></tr>",
    );
    for (id, m) in all {
        let escaped = m
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
            .replace('\'', "&#39;");
        html.push_str(&format!("<tr><td>{id}</td><td>{escaped}</td></tr>"));
    }
    html.push_str("</table></body></html>");
    html
}

#[test]
fn fortunes_are_sorted_escaped_utf8_html() {
    each_store(BENCH, |s, store| {
        let r = s.get("/fortunes");
        standard_headers(&r, "text/html; charset=utf-8");
        assert_eq!(r.text(), expected_fortunes(), "{}", store.name());
        assert!(r.text().contains("フレームワークのベンチマーク"));
    });
}

#[test]
fn updates_are_written_and_do_not_deadlock() {
    each_store(BENCH, |s, store| {
        for (q, n) in [("?queries=abc", 1), ("?queries=0", 1), ("?queries=5", 5), ("?queries=501", 500)] {
            let r = s.get(&format!("/updates{q}"));
            standard_headers(&r, "application/json");
            assert_eq!(r.json().as_array().unwrap().len(), n, "/updates{q}");
        }
        let r = s.get("/updates?queries=20");
        let worlds: Vec<(i64, i64)> = r.json().as_array().unwrap().iter().map(world_ok).collect();
        // What the response says is what the table holds (for ids that appear once).
        let once: Vec<(i64, i64)> =
            worlds.iter().copied().filter(|(id, _)| worlds.iter().filter(|(i, _)| i == id).count() == 1).collect();
        for (id, n) in once {
            let stored: i64 = match store {
                Store::Postgres(db) => db
                    .client()
                    .query_one("SELECT randomnumber::bigint FROM world WHERE id = $1", &[&(id as i32)])
                    .unwrap()
                    .get(0),
                Store::Sqlite => rusqlite::Connection::open(s.sqlite_path().unwrap())
                    .unwrap()
                    .query_row("SELECT randomnumber FROM world WHERE id = ?1", [id], |r| r.get(0))
                    .unwrap(),
            };
            assert_eq!(stored, n, "world {id} ({})", store.name());
        }
        // Overlapping concurrent updates finish: locks are taken in id order.
        let statuses: Vec<u16> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..16).map(|_| scope.spawn(|| s.get("/updates?queries=50").status)).collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(statuses.iter().all(|&st| st == 200), "{statuses:?} ({})", store.name());
    });
}

#[test]
fn benchmark_tables_exist_only_with_bench_routes() {
    let s = Server::start(crate::common::drivers()[0], &[]);
    s.wait_ready();
    assert_eq!(s.get("/db").status, 404);
    let db = rusqlite::Connection::open(s.sqlite_path().unwrap()).unwrap();
    let tables: i64 = db
        .query_row("SELECT count(*) FROM sqlite_master WHERE name IN ('world', 'fortune')", [], |r| r.get(0))
        .unwrap();
    assert_eq!(tables, 0, "no benchmark tables in a database that does not serve them");
}

/// What TechEmpower's verifier reads from `pg_stat_statements` for a table (its
/// toolset/databases/postgres: statements whose text names the table, the rows of those
/// that say `select`, and of those that say `update`), over one database's statements.
struct Counted {
    calls: i64,
    rows_read: i64,
    rows_updated: i64,
    /// Statements of any other text (BEGIN, COMMIT, a lock): none may run.
    others: i64,
}

fn counted(admin: &mut postgres::Client, table: &str) -> Counted {
    let named = format!("query ~* '([[:punct:]]|[[:space:]]){table}'");
    let q = |admin: &mut postgres::Client, column: &str, filter: &str| -> i64 {
        admin
            .query_one(
                &format!(
                    "SELECT COALESCE(SUM(s.{column}), 0)::bigint FROM pg_stat_statements s \
                     JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = 'hello_world' AND {filter}"
                ),
                &[],
            )
            .unwrap()
            .get(0)
    };
    Counted {
        calls: q(admin, "calls", &named),
        rows_read: q(admin, "rows", &format!("{named} AND query ~* 'select'")),
        rows_updated: q(admin, "rows", &format!("{named} AND query ~* 'update'")),
        // The pool's idle ping (`SELECT 1`, normalized to `SELECT $1`) is not a request's.
        others: q(admin, "calls", "query !~* '([[:punct:]]|[[:space:]])(world|fortune)' AND query <> 'SELECT $1'"),
    }
}

/// TechEmpower counts the statements each test type runs and fails an entry whose count is
/// off: /db 1 a request, /queries?queries=20 20, /fortunes 1, /updates?queries=20 21 (the
/// 20 reads and one bulk UPDATE — a lock statement or a transaction's BEGIN/COMMIT is
/// extra). Measured the verifier's way, on a private cluster that preloads
/// pg_stat_statements, with concurrent clients so /updates' overlapping rows meet.
#[test]
fn statements_per_request_are_what_techempower_counts() {
    let Some(cluster) = PrivateCluster::create_with(&["shared_preload_libraries=pg_stat_statements"]) else {
        return;
    };
    let mut admin = postgres::Client::connect(&cluster.url(), postgres::NoTls).unwrap();
    admin.batch_execute("CREATE DATABASE hello_world").unwrap();
    admin.batch_execute("CREATE EXTENSION pg_stat_statements").unwrap();
    let url = cluster.url_of("hello_world");
    let s = Server::start(crate::common::drivers()[0], &[("BENCH_ROUTES", "1"), ("DATABASE_URL", &url)]);
    s.wait_ready();
    // Ready means one pool thread is connected; the others' start-up statements (the schema
    // version check) must be over before the counting starts.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let metrics = s.get("/metrics").text();
        let gauge =
            |name: &str| metrics.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<u64>().ok());
        if gauge("db_pool_connections").is_some() && gauge("db_pool_connections") == gauge("db_pool_threads") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the pool never connected:\n{metrics}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    const CLIENTS: usize = 8;
    const EACH: usize = 8;
    let requests = (CLIENTS * EACH) as i64;
    for (path, table, per_request, rows_per_request, updates) in [
        ("/db", "world", 1, 1, false),
        ("/queries?queries=20", "world", 20, 20, false),
        ("/fortunes", "fortune", 1, 12, false),
        ("/updates?queries=20", "world", 21, 20, true),
    ] {
        assert_eq!(s.get(path).status, 200, "{path} warms up");
        admin.batch_execute("SELECT pg_stat_statements_reset()").unwrap();
        std::thread::scope(|scope| {
            for _ in 0..CLIENTS {
                scope.spawn(|| {
                    let mut c = s.connect();
                    for _ in 0..EACH {
                        let r = c.call("GET", path, None).expect("an answer");
                        assert_eq!(r.status, 200, "{path}: {}", r.text());
                    }
                });
            }
        });
        let got = counted(&mut admin, table);
        assert_eq!(got.calls, per_request * requests, "{path}: statements naming {table}");
        assert_eq!(got.others, 0, "{path}: statements that are not the test's own");
        assert_eq!(got.rows_read, rows_per_request * requests, "{path}: rows read");
        if updates {
            // A world drawn twice in one request is written once: the verifier allows 5%.
            let wanted = rows_per_request * requests;
            assert!(
                got.rows_updated <= wanted && got.rows_updated * 100 >= wanted * 95,
                "{path}: {} rows updated of {wanted}",
                got.rows_updated
            );
        } else {
            assert_eq!(got.rows_updated, 0, "{path}");
        }
    }
    let metrics = s.get("/metrics").text();
    let retries = metrics.lines().find(|l| l.starts_with("db_deadlock_retries_total ")).expect("the retry counter");
    eprintln!("{retries}");
}
