//! Metrics, request ids, logs and the profiling listener, against the real server.

use std::collections::HashSet;
use std::time::Duration;

use crate::common::{drivers, each_driver, Server};
use simd_json::prelude::*;

/// The value of the sample line `name{labels}` (exact match of the part before the value).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn scrape(s: &Server) -> String {
    let r = s.get("/metrics");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/plain; version=0.0.4; charset=utf-8"));
    r.text()
}

#[test]
fn metrics_count_what_happened() {
    each_driver(&[("WORKERS", "2")], |s| {
        s.wait_ready();
        let before = scrape(s);
        let base = |series: &str| sample(&before, series).unwrap_or(0.0);
        for _ in 0..7 {
            assert_eq!(s.get("/health").status, 200);
        }
        for i in 0..5 {
            assert_eq!(s.get(&format!("/no/such/path/{i}")).status, 404);
        }
        assert_eq!(s.call("POST", "/health", Some("{}")).status, 405);
        for id in 1..=3 {
            assert_eq!(s.get(&format!("/api/v1/users/{id}")).status, 404);
        }
        let dup = r#"{"name":"M","email":"m@example.com"}"#;
        assert_eq!(s.call("POST", "/api/v1/users", Some(dup)).status, 201);
        assert_eq!(s.call("POST", "/api/v1/users", Some(dup)).status, 409);
        assert_eq!(s.get("/__test/panic").status, 500);
        let mut c = s.connect();
        c.send(b"GET / HTTP/2.0\r\nHost: t\r\n\r\n");
        assert_eq!(c.response().unwrap().status, 505);

        let after = scrape(s);
        let delta = |series: &str| sample(&after, series).unwrap_or(0.0) - base(series);
        assert_eq!(delta(r#"http_requests_total{method="GET",route="/health",status="200"}"#), 7.0, "{after}");
        assert_eq!(delta(r#"http_request_duration_seconds_count{method="GET",route="/health"}"#), 7.0);
        assert_eq!(delta(r#"http_request_duration_seconds_bucket{method="GET",route="/health",le="+Inf"}"#), 7.0);
        assert_eq!(delta(r#"http_requests_total{method="GET",route="unmatched",status="404"}"#), 5.0);
        assert_eq!(delta(r#"http_requests_total{method="POST",route="/health",status="405"}"#), 1.0);
        assert_eq!(delta(r#"http_requests_total{method="GET",route="/api/v1/users/{id}",status="404"}"#), 3.0);
        assert_eq!(delta(r#"http_requests_total{method="POST",route="/api/v1/users",status="409"}"#), 1.0);
        assert_eq!(delta(r#"http_handler_panics_total"#), 1.0);
        assert_eq!(delta(r#"http_parse_errors_total{reason="version"}"#), 1.0);
        assert_eq!(delta(r#"db_query_duration_seconds_count{query="get_user"}"#), 3.0);
        assert_eq!(delta(r#"db_query_duration_seconds_count{query="create_user"}"#), 2.0);
        assert_eq!(delta(r#"db_pool_wait_seconds_count"#), 5.0);
        assert_eq!(delta(r#"db_errors_total{kind="conflict"}"#), 1.0);
        assert!(delta("http_connections_accepted_total") >= 21.0);
        assert_eq!(sample(&after, "percore_workers"), Some(2.0));
        let info = format!(
            r#"percore_info{{version="{}",io_driver="{}",store="sqlite"}}"#,
            env!("CARGO_PKG_VERSION"),
            s.driver
        );
        assert_eq!(sample(&after, &info), Some(1.0), "{after}");
        for family in [
            "process_resident_memory_bytes",
            "process_cpu_seconds_total",
            "process_open_fds",
            "process_max_fds",
            "process_start_time_seconds",
            "http_requests_in_flight",
            "http_connections_open",
            "db_pool_queue_depth",
            "db_pool_wakeups_total",
        ] {
            assert!(sample(&after, family).is_some(), "{family} missing");
        }
        // The label rule: routes are patterns, never raw paths.
        assert!(!after.contains("/no/such/path"), "a raw path leaked into a label");
        assert!(!after.contains("/api/v1/users/1\""), "a raw id leaked into a label");
    });
}

#[test]
fn pipelined_responses_cost_one_write() {
    each_driver(&[("WORKERS", "1")], |s| {
        let mut c = s.connect();
        c.send(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n");
        let before = c.response().unwrap().text();
        c.send(&b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n".repeat(16));
        for _ in 0..16 {
            assert_eq!(c.response().unwrap().status, 200);
        }
        c.send(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n");
        let after = c.response().unwrap().text();
        let writes = |t: &str| sample(t, "http_response_writes_total").unwrap();
        assert_eq!(
            writes(&after) - writes(&before),
            2.0,
            "the first scrape's response, then one for all 16 ({})",
            s.driver
        );
    });
}

#[test]
fn promtool_finds_nothing_to_complain_about() {
    let Ok(version) = std::process::Command::new("promtool").arg("--version").output() else {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "promtool is needed under CI (apt install prometheus)");
        eprintln!("\n*** promtool not installed: skipped ***\n");
        return;
    };
    assert!(version.status.success());
    let s = Server::start(drivers()[0], &[]);
    s.wait_ready();
    s.call("POST", "/api/v1/users", Some(r#"{"name":"P","email":"p@example.com"}"#));
    s.get("/nope");
    let text = scrape(&s);
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "promtool: {said}");
}

#[test]
fn request_ids_are_echoed_or_generated() {
    each_driver(&[("ACCESS_LOG", "on"), ("WORKERS", "2")], |s| {
        let mut c = s.connect();
        c.send(b"GET /health HTTP/1.1\r\nHost: t\r\nX-Request-Id: client-id-42\r\n\r\n");
        assert_eq!(c.response().unwrap().header("x-request-id"), Some("client-id-42"));
        let long = "a".repeat(129);
        for bad in [long.as_str(), "has space", ""] {
            c.send(format!("GET /health HTTP/1.1\r\nHost: t\r\nX-Request-Id: {bad}\r\n\r\n").as_bytes());
            let id = c.response().unwrap().header("x-request-id").unwrap().to_owned();
            assert!(
                id.len() == 16 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                "{bad:?} replaced by a generated id, got {id}"
            );
        }
        // Closed first: with CONN_BALANCE=exact, a connection kept open on one worker sends
        // every new one to the other (which has fewer), and the ids would all be its own.
        drop(c);
        let ids: HashSet<String> =
            (0..200).map(|_| s.get("/health").header("x-request-id").unwrap().to_owned()).collect();
        assert_eq!(ids.len(), 200, "unique ids");
        let workers: HashSet<&str> = ids.iter().map(|id| &id[8..10]).collect();
        assert_eq!(workers.len(), 2, "ids from both workers, none shared: {workers:?}");
        assert!(
            s.wait_for_log("request_id=client-id-42", Duration::from_secs(2)),
            "the access log carries the id:\n{}",
            s.logs()
        );
        let some = ids.iter().next().unwrap();
        assert!(s.wait_for_log(&format!("request_id={some}"), Duration::from_secs(2)));
    });
}

#[test]
fn log_lines_about_a_request_carry_its_id() {
    each_driver(&[("WORKERS", "1")], |s| {
        let mut c = s.connect();
        c.send(b"GET /__test/panic HTTP/1.1\r\nHost: t\r\nX-Request-Id: panic-trace-7\r\n\r\n");
        assert_eq!(c.response().unwrap().status, 500);
        assert!(s.wait_for_log("panicked", Duration::from_secs(2)));
        let panic_lines: Vec<String> = s.logs().lines().filter(|l| l.contains("panic")).map(str::to_owned).collect();
        assert!(!panic_lines.is_empty());
        for line in &panic_lines {
            assert!(line.contains("request_id=panic-trace-7") && line.contains("route=/__test/panic"), "{line}");
        }
    });
}

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[test]
fn a_valid_traceparent_puts_the_trace_into_log_lines_and_the_access_log() {
    for format in ["text", "json"] {
        let s = Server::start(drivers()[0], &[("LOG_FORMAT", format), ("ACCESS_LOG", "on"), ("WORKERS", "1")]);
        s.wait_ready();
        let mut c = s.connect();
        // A handler that runs in the worker (a panic, logged) and one that waits for the store.
        for path in ["/__test/panic", "/api/v1/users/424242"] {
            c.send(
                format!("GET {path} HTTP/1.1\r\nHost: t\r\ntraceparent: {TRACEPARENT}\r\ntracestate: congo=t61rcWkgMzE\r\nX-Request-Id: tp-ok-{format}\r\n\r\n")
                    .as_bytes(),
            );
            let r = c.response().unwrap();
            assert!(r.status == 500 || r.status == 404, "{path}: {}", r.status);
            assert_eq!(r.header("traceparent"), None, "percore does not answer with a trace of its own");
        }
        // Invalid ones are ignored, never an error.
        for bad in [
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "garbage",
        ] {
            c.send(
                format!(
                    "GET /health HTTP/1.1\r\nHost: t\r\ntraceparent: {bad}\r\nX-Request-Id: tp-bad-{format}\r\n\r\n"
                )
                .as_bytes(),
            );
            assert_eq!(c.response().unwrap().status, 200, "{bad}");
        }
        // Sent twice, it is ambiguous: ignored.
        c.send(format!("GET /health HTTP/1.1\r\nHost: t\r\ntraceparent: {TRACEPARENT}\r\ntraceparent: {TRACEPARENT}\r\nX-Request-Id: tp-twice-{format}\r\n\r\n").as_bytes());
        assert_eq!(c.response().unwrap().status, 200);
        let twice = format!("tp-twice-{format}");
        assert!(s.wait_for_log(&twice, Duration::from_secs(2)), "{}", s.logs());
        let logs = s.logs();
        let traced: Vec<&str> = logs.lines().filter(|l| l.contains(&format!("tp-ok-{format}"))).collect();
        let (trace_id, parent_id) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
        assert!(traced.len() >= 3, "the panic's line and two access lines:\n{logs}");
        for line in &traced {
            if format == "json" {
                let mut bytes = line.as_bytes().to_vec();
                let v = simd_json::to_owned_value(&mut bytes).unwrap();
                assert_eq!(v["trace_id"].as_str(), Some(trace_id), "{line}");
                assert_eq!(v["parent_id"].as_str(), Some(parent_id), "{line}");
            } else {
                assert!(line.contains(&format!("trace_id={trace_id} parent_id={parent_id}")), "{line}");
            }
        }
        assert!(traced.iter().any(|l| l.contains("panicked")), "a log line from inside the handler:\n{logs}");
        assert!(
            traced.iter().any(|l| l.contains("/api/v1/users/424242") && l.contains("404")),
            "the waiting route's access line"
        );
        for line in logs.lines().filter(|l| l.contains("tp-bad-") || l.contains(&twice)) {
            assert!(!line.contains("trace_id"), "{line}");
        }
        assert!(!logs.contains("t61rcWkgMzE"), "tracestate is left alone");
    }
}

#[test]
fn json_logs_are_one_object_per_line() {
    each_driver(&[("LOG_FORMAT", "json"), ("ACCESS_LOG", "on"), ("WORKERS", "1")], |s| {
        s.wait_ready();
        let mut c = s.connect();
        c.send(b"GET /__test/panic HTTP/1.1\r\nHost: t\r\nX-Request-Id: json-7\r\n\r\n");
        assert_eq!(c.response().unwrap().status, 500);
        s.get("/api/v1/users/9\"x");
        assert!(s.wait_for_log("\"target\":\"access\"", Duration::from_secs(2)));
        std::thread::sleep(Duration::from_millis(400));
        let logs = s.logs();
        let mut access = 0;
        for line in logs.lines() {
            let mut bytes = line.as_bytes().to_vec();
            let v = simd_json::to_owned_value(&mut bytes).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            for key in ["time", "level", "target", "message"] {
                assert!(v.get(key).is_some(), "{key} missing: {line}");
            }
            if v["target"].as_str() == Some("access") {
                access += 1;
                for key in ["method", "route", "path", "status", "bytes", "duration_ms", "request_id", "peer"] {
                    assert!(v.get(key).is_some(), "{key} missing: {line}");
                }
            }
            if v["message"].as_str().is_some_and(|m| m.contains("panicked")) {
                assert_eq!(v["request_id"].as_str(), Some("json-7"), "{line}");
                assert_eq!(v["route"].as_str(), Some("/__test/panic"));
            }
        }
        assert!(access >= 2, "{logs}");
    });
}

#[test]
fn secrets_never_reach_the_logs() {
    let closed = crate::common::pg::free_port().to_string();
    for format in ["text", "json"] {
        let url = format!("postgres://app:hunter2-url-secret@127.0.0.1:{closed}/db");
        let s = Server::start(drivers()[0], &[("DATABASE_URL", &url), ("LOG_FORMAT", format), ("RUST_LOG", "debug")]);
        assert_eq!(s.get("/api/v1/users/1").status, 503);
        assert!(s.wait_for_log("cannot connect", Duration::from_secs(3)), "{}", s.logs());
        drop(s);
        let s = Server::start(
            drivers()[0],
            &[
                ("DB_HOST", "127.0.0.1"),
                ("DB_PORT", &closed),
                ("DB_PASSWORD", "hunter2-env-secret"),
                ("LOG_FORMAT", format),
                ("RUST_LOG", "debug"),
            ],
        );
        assert_eq!(s.get("/readyz").status, 503);
        assert!(s.wait_for_log("cannot connect", Duration::from_secs(3)));
        std::thread::sleep(Duration::from_millis(300));
        let logs = s.logs();
        assert!(!logs.contains("hunter2"), "a password reached the logs:\n{logs}");
    }
    // A configuration error about the URL does not print it either.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_percore"))
        .env_clear()
        .env("DATABASE_URL", "postgres://app:hunter2-bad@host:notaport/db")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("hunter2"));
}

/// The debug listener's address, from the start-up log.
fn debug_addr(s: &Server) -> std::net::SocketAddr {
    assert!(s.wait_for_log("profiling on http://", Duration::from_secs(2)));
    let logs = s.logs();
    let line = logs.lines().find(|l| l.contains("profiling on http://")).expect("the profiling listener is logged");
    line.split("http://").nth(1).unwrap().split('/').next().unwrap().parse().unwrap()
}

fn debug_get(addr: std::net::SocketAddr, path: &str) -> crate::common::Response {
    try_debug_get(addr, path).unwrap_or_else(|e| panic!("{e}"))
}

/// A debug-listener response, or what went wrong and after how long (a profile under a
/// loaded test machine is slow; a dead server is something else, and the logs tell which).
fn try_debug_get(addr: std::net::SocketAddr, path: &str) -> Result<crate::common::Response, String> {
    let started = std::time::Instant::now();
    let mut c = crate::common::Client::connect(addr);
    c.stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    c.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
    c.response().ok_or_else(|| format!("no response to {path} from the debug listener after {:?}", started.elapsed()))
}

/// utime + stime of a process, in seconds (clock ticks of 1/100 s).
fn process_cpu(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap().split_whitespace().collect();
    // After the command's ")": state is field 3, utime 14 and stime 15 (1-based).
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// Keeps `threads` connections busy with pipelined /json until dropped.
struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(server: std::net::SocketAddr, threads: usize) -> Load {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let threads = (0..threads)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut c = crate::common::Client::connect(server);
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        c.send(&b"GET /json HTTP/1.1\r\nHost: t\r\n\r\n".repeat(32));
                        for _ in 0..32 {
                            c.response().unwrap();
                        }
                    }
                })
            })
            .collect();
        Load { stop, threads }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn decode_profile(body: &[u8]) -> pprof::protos::Profile {
    use pprof::protos::Message;
    pprof::protos::Profile::decode(body).expect("a pprof protobuf")
}

#[test]
fn the_profiling_listener_serves_pprof_and_flamegraphs() {
    let s = Server::start(drivers()[0], &[("DEBUG_ADDR", "127.0.0.1:0"), ("BENCH_ROUTES", "1"), ("WORKERS", "2")]);
    let addr = debug_addr(&s);
    let index = debug_get(addr, "/debug/pprof/");
    assert_eq!(index.status, 200);
    for link in ["/debug/pprof/profile", "/debug/pprof/flamegraph", "/debug/pprof/workers"] {
        assert!(index.text().contains(link), "{link}");
    }
    for bad in ["seconds=0", "seconds=61", "seconds=abc"] {
        assert_eq!(debug_get(addr, &format!("/debug/pprof/profile?{bad}")).status, 400, "{bad}");
    }

    // Load the server while it is profiled, so its own functions show up.
    let load = Load::start(s.addr, 2);
    let busy = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        debug_get(addr, "/debug/pprof/profile?seconds=1").status
    });
    // The first profile also maps the executable's symbols; the measured one below does not.
    let warm_up = try_debug_get(addr, "/debug/pprof/profile?seconds=2")
        .unwrap_or_else(|e| panic!("{e}; the server's logs:\n{}", s.logs()));
    assert_eq!(busy.join().unwrap(), 409, "one profile at a time");
    assert_eq!(warm_up.status, 200);

    // The process's CPU clock, read from outside every 10 ms while the profile is taken, so
    // it can be read at the sampling window's own start and end (the profile says when).
    let readings = {
        let (pid, done) = (s.pid(), std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false)));
        let reader = {
            let done = done.clone();
            std::thread::spawn(move || {
                let mut readings = Vec::new();
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    readings.push((std::time::SystemTime::now(), process_cpu(pid)));
                    std::thread::sleep(Duration::from_millis(10));
                }
                readings
            })
        };
        let profile = debug_get(addr, "/debug/pprof/profile?seconds=4");
        // A reading past the window's end, even if the reader was late on a loaded machine.
        std::thread::sleep(Duration::from_millis(100));
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        (profile, reader.join().unwrap())
    };
    let (profile, readings) = readings;
    let flame = debug_get(addr, "/debug/pprof/flamegraph?seconds=1");
    drop(load);
    assert_eq!(profile.status, 200);

    let decoded = decode_profile(&profile.body);
    let sampled_ns: i64 = decoded.sample.iter().map(|s| s.value[1]).sum();
    let sampled = sampled_ns as f64 / 1e9;
    let at = |nanos: i64| {
        let t = std::time::UNIX_EPOCH + Duration::from_nanos(nanos as u64);
        readings.iter().find(|(when, _)| *when >= t).map(|r| r.1).expect("a reading after the window's edge")
    };
    let used = at(decoded.time_nanos + decoded.duration_nanos) - at(decoded.time_nanos);
    assert!(used > 0.5, "the server was busy: {used} CPU s");
    assert!(
        sampled >= 0.9 * used,
        "the profile holds {sampled:.2} CPU s of the {used:.2} the process used; the server's account:\n{}",
        s.logs().lines().filter(|l| l.contains("profile:")).collect::<Vec<_>>().join("\n")
    );
    let name = |id: i64| decoded.string_table[id as usize].as_str();
    let functions: HashSet<&str> = decoded.function.iter().map(|f| name(f.name)).collect();
    let ours: HashSet<&&str> = functions.iter().filter(|n| n.starts_with("percore::")).collect();
    assert!(ours.len() >= 10, "at least ten percore:: functions by their full names: {ours:?}");
    assert!(functions.iter().any(|n| n.starts_with("monoio::")), "{functions:?}");
    assert!(functions.contains("[syscall]"), "system-call time is kept: {functions:?}");
    assert!(
        decoded.function.iter().any(|f| name(f.name).starts_with("percore::") && name(f.filename).ends_with(".rs")),
        "files and lines where the build kept them"
    );
    let threads: HashSet<&str> = decoded.sample.iter().flat_map(|s| s.label.iter().map(|l| name(l.str))).collect();
    assert!(threads.contains("worker 0") && threads.contains("worker 1"), "{threads:?}");

    assert_eq!(flame.status, 200);
    assert_eq!(flame.header("content-type"), Some("image/svg+xml"));
    assert!(flame.text().contains("<svg") && flame.text().contains("percore::"), "an SVG with the same names");

    // The reference reader, where Go is installed.
    if std::process::Command::new("go").arg("version").output().is_ok() {
        let file = std::env::temp_dir().join(format!("percore-profile-{}.pb", s.pid()));
        std::fs::write(&file, &profile.body).unwrap();
        let pprof = |args: &[&str]| {
            let out = std::process::Command::new("go")
                .args(["tool", "pprof"])
                .args(args)
                .arg(&file)
                .env("HOME", std::env::temp_dir())
                .output()
                .unwrap();
            assert!(out.status.success(), "go tool pprof {args:?}: {}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let top = pprof(&["-top"]);
        assert!(top.contains("flat%") && top.contains("percore::") && top.contains("[syscall]"), "{top}");
        let list = pprof(&["-list", "percore::net::conn::Conn.*answer_now"]);
        assert!(list.contains("ROUTINE") && list.contains("src/net/conn.rs"), "{list}");
        let _ = std::fs::remove_file(&file);
    }
}

#[test]
fn each_worker_and_database_thread_reports_its_own_cpu() {
    let s = Server::start(drivers()[0], &[("DEBUG_ADDR", "127.0.0.1:0"), ("BENCH_ROUTES", "1"), ("WORKERS", "2")]);
    s.wait_ready();
    let addr = debug_addr(&s);
    {
        let _load = Load::start(s.addr, 2);
        for id in 0..200 {
            s.get(&format!("/api/v1/users/{id}"));
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let text = scrape(&s);
    let cpu = |series: &str| sample(&text, series).unwrap_or_else(|| panic!("{series} missing:\n{text}"));
    let workers =
        cpu(r#"percore_worker_cpu_seconds_total{worker="0"}"#) + cpu(r#"percore_worker_cpu_seconds_total{worker="1"}"#);
    assert!(workers > 0.05, "the workers' CPU is counted: {workers}");
    assert!(workers <= process_cpu(s.pid()) + 0.02, "and is part of the process's");
    assert!(cpu(r#"percore_db_thread_cpu_seconds_total{thread="0"}"#) > 0.0, "{text}");

    let page = debug_get(addr, "/debug/pprof/workers");
    assert_eq!(page.status, 200);
    let page = page.text();
    for needle in
        ["<td>0</td>", "<td>1</td>", "CPU seconds", "live connections", "requests", "pinned CPU", "database threads"]
    {
        assert!(page.contains(needle), "{needle}: {page}");
    }
    assert!(page.contains("io_uring") || page.contains("epoll"), "{page}");
}
