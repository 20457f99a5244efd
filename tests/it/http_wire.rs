//! HTTP/1.1 over real sockets: routes, keep-alive, pipelining, framing and refusals, on
//! both I/O drivers.

use std::time::Duration;

use crate::common::{assert_refused, each_driver};

const BENCH: &[(&str, &str)] = &[("BENCH_ROUTES", "1")];

#[test]
fn health_probes_answer() {
    each_driver(&[], |s| {
        let r = s.get("/health");
        assert_eq!((r.status, r.text().as_str()), (200, "OK"), "{}", s.driver);
        assert!(r.header("content-type").unwrap().starts_with("text/plain"));
        assert_eq!(s.get("/livez").status, 200);
        s.wait_ready();
        let ready = s.get("/readyz");
        assert_eq!(ready.status, 200);
        assert_eq!(ready.json()["status"], "ready");
        assert_eq!(ready.json()["store"], "sqlite");
    });
}

#[test]
fn every_response_has_the_standard_headers() {
    each_driver(BENCH, |s| {
        for path in ["/health", "/plaintext", "/json", "/missing"] {
            let r = s.get(path);
            assert_eq!(r.header("server"), Some("percore"));
            let date = r.header("date").expect("Date");
            assert_eq!(date.len(), 29, "IMF-fixdate: {date}");
            assert!(date.ends_with(" GMT") && date.as_bytes()[3] == b',', "{date}");
            assert_eq!(r.header("content-length").unwrap().parse::<usize>().unwrap(), r.body.len());
            assert!(r.header("content-type").is_some());
            assert!(r.raw_head.starts_with("HTTP/1.1 "));
        }
    });
}

#[test]
fn techempower_plaintext_and_json() {
    each_driver(BENCH, |s| {
        let r = s.get("/plaintext");
        assert_eq!((r.status, r.body.as_slice()), (200, &b"Hello, World!"[..]));
        assert_eq!(r.header("content-type"), Some("text/plain"));
        let r = s.get("/json");
        assert_eq!((r.status, r.body.as_slice()), (200, &br#"{"message":"Hello, World!"}"#[..]));
        assert_eq!(r.header("content-type"), Some("application/json"));
    });
}

#[test]
fn bench_routes_are_not_mounted_by_default() {
    each_driver(&[], |s| {
        assert_eq!(s.get("/plaintext").status, 404);
        assert_eq!(s.get("/json").status, 404);
    });
}

#[test]
fn not_found_and_method_not_allowed() {
    each_driver(&[], |s| {
        let r = s.get("/nope");
        assert_eq!(r.status, 404);
        assert_eq!(r.body, br#"{"status":"error","code":404,"message":"Not Found"}"#);
        let mut c = s.connect();
        c.send(b"DELETE /health HTTP/1.1\r\nHost: t\r\n\r\n");
        let r = c.response().unwrap();
        assert_eq!((r.status, r.header("allow")), (405, Some("GET, HEAD")));
        assert_eq!(r.json()["code"], 405);
        c.send(b"QUERY /health HTTP/1.1\r\nHost: t\r\n\r\n");
        let r = c.response().unwrap();
        assert_eq!((r.status, r.header("allow")), (405, Some("GET, HEAD")), "an unknown method is 405 too");
    });
}

#[test]
fn head_answers_with_gets_headers_and_no_body() {
    each_driver(BENCH, |s| {
        let mut c = s.connect();
        c.send(b"HEAD /plaintext HTTP/1.1\r\nHost: t\r\n\r\nGET /health HTTP/1.1\r\nHost: t\r\n\r\n");
        let head = c.head_response().unwrap();
        assert_eq!((head.status, head.header("content-length")), (200, Some("13")));
        assert!(head.body.is_empty());
        // The next response starts right after the head: no stray body bytes in between.
        assert_eq!(c.response().unwrap().text(), "OK");
    });
}

#[test]
fn keep_alive_serves_many_requests_on_one_connection() {
    each_driver(&[], |s| {
        let mut c = s.connect();
        for _ in 0..50 {
            c.send(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n");
            let r = c.response().unwrap();
            assert_eq!(r.status, 200);
            assert_eq!(r.header("connection"), None);
        }
    });
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    each_driver(BENCH, |s| {
        let paths = ["/health", "/json", "/plaintext", "/nope", "/livez", "/json", "/health"];
        let mut batch = Vec::new();
        for i in 0..16 {
            batch.extend_from_slice(format!("GET {} HTTP/1.1\r\nHost: t\r\n\r\n", paths[i % paths.len()]).as_bytes());
        }
        let mut c = s.connect();
        c.send(&batch);
        for i in 0..16 {
            let r = c.response().unwrap();
            let expected = match paths[i % paths.len()] {
                "/health" | "/livez" => "OK",
                "/plaintext" => "Hello, World!",
                "/json" => r#"{"message":"Hello, World!"}"#,
                _ => r#"{"status":"error","code":404,"message":"Not Found"}"#,
            };
            assert_eq!(r.text(), expected, "response {i} on {}", s.driver);
        }
    });
}

#[test]
fn a_request_split_across_many_writes_is_served() {
    each_driver(&[], |s| {
        let mut c = s.connect();
        for b in b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n" {
            c.send(&[*b]);
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(c.response().unwrap().text(), "OK");
    });
}

#[test]
fn connection_close_and_http_1_0() {
    each_driver(&[], |s| {
        let mut c = s.connect();
        c.send(b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        let r = c.response().unwrap();
        assert_eq!(r.header("connection"), Some("close"));
        assert!(c.closed_within(Duration::from_secs(2)), "closed after Connection: close");

        let mut c = s.connect();
        c.send(b"GET /health HTTP/1.0\r\n\r\n");
        let r = c.response().unwrap();
        assert!(r.raw_head.starts_with("HTTP/1.1 200"), "a 1.1 status line for a 1.0 request");
        assert!(c.closed_within(Duration::from_secs(2)), "HTTP/1.0 closes by default");

        let mut c = s.connect();
        c.send(b"GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        assert_eq!(c.response().unwrap().header("connection"), Some("keep-alive"));
        c.send(b"GET /livez HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        assert_eq!(c.response().unwrap().status, 200, "HTTP/1.0 keep-alive when asked");
    });
}

#[test]
fn bodies_by_length_and_chunked_are_read_and_the_connection_continues() {
    each_driver(&[], |s| {
        let mut c = s.connect();
        c.send(b"POST /__test/echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello");
        assert_eq!(c.response().unwrap().text(), "hello");
        c.send(b"POST /__test/echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\nwiki\r\n5\r\npedia\r\n0\r\nX-Trailer: 1\r\n\r\n");
        assert_eq!(c.response().unwrap().text(), "wikipedia");
        // A body sent to a route that refuses the method is still consumed.
        c.send(b"POST /health HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc");
        assert_eq!(c.response().unwrap().status, 405);
        c.send(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(c.response().unwrap().text(), "OK");
    });
}

#[test]
fn a_large_chunked_body_in_tiny_chunks() {
    each_driver(&[], |s| {
        let mut body = Vec::new();
        let mut raw = b"POST /__test/echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for i in 0..20_000u32 {
            let byte = b'a' + (i % 26) as u8;
            body.push(byte);
            raw.extend_from_slice(b"1\r\n");
            raw.push(byte);
            raw.extend_from_slice(b"\r\n");
        }
        raw.extend_from_slice(b"0\r\n\r\n");
        let mut c = s.connect();
        c.send(&raw);
        let r = c.response().unwrap();
        assert_eq!((r.status, r.body.len()), (200, body.len()));
        assert_eq!(r.body, body);
    });
}

#[test]
fn expect_100_continue_only_when_the_body_will_be_accepted() {
    each_driver(&[("MAX_BODY_BYTES", "100")], |s| {
        let mut c = s.connect();
        c.send(b"POST /__test/echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n");
        assert_eq!(c.response().unwrap().status, 100);
        c.send(b"body");
        assert_eq!(c.response().unwrap().text(), "body");

        let mut c = s.connect();
        c.send(b"POST /__test/echo HTTP/1.1\r\nHost: t\r\nContent-Length: 101\r\nExpect: 100-continue\r\n\r\n");
        let r = c.response().unwrap();
        assert_eq!(r.status, 413, "too large: the final status, no 100");
        assert_eq!(r.header("connection"), Some("close"));

        let mut c = s.connect();
        c.send(b"POST /nope HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n");
        assert_eq!(c.response().unwrap().status, 404, "unknown route: no 100");
        assert!(c.closed_within(Duration::from_secs(3)));
    });
}

#[test]
fn absolute_form_targets_are_accepted() {
    each_driver(&[], |s| {
        let mut c = s.connect();
        c.send(b"GET http://example.com/health HTTP/1.1\r\nHost: example.com\r\n\r\n");
        assert_eq!(c.response().unwrap().text(), "OK");
    });
}

/// Sends `raw`, expects `status` with a JSON error body and `Connection: close`, and that
/// a valid request pipelined behind the broken one is never answered.
#[test]
fn broken_requests_get_a_precise_status_and_close_the_connection() {
    each_driver(&[("MAX_BODY_BYTES", "1000")], |s| {
        let cases: &[(&[u8], u16)] = &[
            (b"POST /__test/echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
            (b"POST /__test/echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400),
            (b"POST /__test/echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nxyz\r\n", 400),
            (b"GET /health HTTP/1.1\r\nHost: t\r\nX: a\r\n b\r\n\r\n", 400),
            (b"GET /health HTTP/1.1\r\nHost : t\r\n\r\n", 400),
            (b"GET /health HTTP/1.1\r\nHost: t\r\nX: a\x00b\r\n\r\n", 400),
            (b"GET /health HTTP/1.1\r\nHost: t\r\nX: a\rb\r\n\r\n", 400),
            (b"GET /health HTTP/1.1\r\n\r\n", 400),
            (b"POST /__test/echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
            (b"GET /health HTTP/3.0\r\nHost: t\r\n\r\n", 505),
            (b"POST /__test/echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1001\r\n\r\n", 413),
            (b"GET /users/abc HTTP/1.1\r\nHost: t\r\nExpect: teapot\r\n\r\n", 417),
        ];
        for (raw, status) in cases {
            assert_refused(&mut s.connect(), raw, *status);
        }
        let long = format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(9000));
        assert_refused(&mut s.connect(), long.as_bytes(), 414);
        let big_head = format!("GET /health HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n", "a".repeat(17000));
        assert_refused(&mut s.connect(), big_head.as_bytes(), 431);
        let flood = format!("GET /health HTTP/1.1\r\nHost: t\r\n{}\r\n", "a: b\r\n".repeat(200));
        assert_refused(&mut s.connect(), flood.as_bytes(), 431);
    });
}

#[test]
fn a_bad_id_or_escape_is_400_and_the_connection_stays() {
    each_driver(&[], |s| {
        let mut c = s.connect();
        c.send(b"GET /he%zzalth HTTP/1.1\r\nHost: t\r\n\r\n");
        let r = c.response().unwrap();
        assert_eq!(r.status, 400);
        assert!(r.json()["message"].to_string().contains("percent"), "{}", r.text());
        c.send(b"GET /%68ealth HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(c.response().unwrap().text(), "OK", "percent-decoded path");
    });
}

#[test]
fn random_garbage_never_takes_the_server_down() {
    each_driver(&[], |s| {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..200 {
            let mut c = s.connect();
            let len = (seed % 300) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect();
            let _ = c.try_send(&bytes);
            drop(c);
        }
        assert_eq!(s.get("/health").status, 200);
    });
}

/// The responses to one read go out in one write: traced at the syscall level on the epoll
/// driver (io_uring submits its sends without a syscall each, through the same code path).
#[test]
fn pipelined_responses_are_written_with_one_syscall() {
    if std::process::Command::new("strace").arg("-V").output().is_err() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "strace is needed under CI");
        eprintln!("\n*** strace not installed: one-write-per-batch test skipped ***\n");
        return;
    }
    let s = crate::common::Server::start("epoll", &[("WORKERS", "1")]);
    let mut c = s.connect();
    c.send(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.response().unwrap().status, 200);
    let trace = std::env::temp_dir().join(format!("percore-strace-{}.txt", s.pid()));
    let mut strace = std::process::Command::new("strace")
        .args(["-f", "-qq", "-e", "trace=write,writev,sendto,sendmsg", "-o"])
        .arg(&trace)
        .args(["-p", &s.pid().to_string()])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let batch = b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n".repeat(16);
    c.send(&batch);
    for _ in 0..16 {
        assert_eq!(c.response().unwrap().text(), "OK");
    }
    std::thread::sleep(Duration::from_millis(200));
    // SAFETY: signalling our own strace child.
    unsafe { libc::kill(strace.id() as i32, libc::SIGINT) };
    strace.wait().unwrap();
    let calls = std::fs::read_to_string(&trace).unwrap();
    let _ = std::fs::remove_file(&trace);
    let sends: Vec<&str> = calls.lines().filter(|l| l.contains("HTTP/1.1 200")).collect();
    assert_eq!(sends.len(), 1, "16 pipelined responses, one send:\n{calls}");
}

/// Parses the one response a closed connection carried: its head, then the bytes after it.
fn split_response(raw: &[u8]) -> (String, Vec<u8>) {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a whole head") + 4;
    (String::from_utf8_lossy(&raw[..end]).into_owned(), raw[end..].to_vec())
}

/// RFC 9110 §9.3.2: no content in any response to HEAD — refusals included, even of a
/// request too broken to parse. A client that sent HEAD reads no body, so one would be
/// taken for the next response (h11: "Got data when expecting EOF", curl: "Excess found").
#[test]
fn refusals_of_head_requests_carry_no_body() {
    each_driver(&[("MAX_BODY_BYTES", "1000")], |s| {
        let long = format!("HEAD /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(9000));
        let big_head = format!("HEAD /health HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n", "a".repeat(17000));
        let cases: Vec<(Vec<u8>, u16)> = vec![
            (b"HEAD /health HTTP/1.1\r\nHost: t\r\nExpect: foo\r\n\r\n".to_vec(), 417),
            (b"HEAD /health HTTP/1.1\r\n\r\n".to_vec(), 400),
            (b"HEAD /health HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n".to_vec(), 400),
            (b"\r\nHEAD /health HTTP/1.1\r\nHost: t\r\nX: a\r\n b\r\n\r\n".to_vec(), 400),
            (b"HEAD /health HTTP/1.1\r\nHost: t\r\nContent-Length: 1001\r\n\r\n".to_vec(), 413),
            (long.into_bytes(), 414),
            (big_head.into_bytes(), 431),
            (b"HEAD /health HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n".to_vec(), 501),
            (b"HEAD /health HTTP/2.0\r\nHost: t\r\n\r\n".to_vec(), 505),
            (b"HEAD /nope HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n".to_vec(), 404),
        ];
        for (raw, status) in cases {
            let mut c = s.connect();
            let _ = c.try_send(&raw);
            let all = c.read_to_close();
            let (head, rest) = split_response(&all);
            let what = String::from_utf8_lossy(&raw[..raw.len().min(60)]).into_owned();
            assert!(head.starts_with(&format!("HTTP/1.1 {status} ")), "{what:?} ({}): {head}", s.driver);
            assert!(
                rest.is_empty(),
                "{what:?} ({}): a body after the head: {:?}",
                s.driver,
                String::from_utf8_lossy(&rest)
            );
            // The headers GET would get: the length of the body GET would carry.
            let length: usize =
                head.lines().find_map(|l| l.strip_prefix("Content-Length: ")).expect("Content-Length").parse().unwrap();
            assert!(length > 0, "{what:?}: {head}");
            assert!(head.contains("Content-Type: application/json\r\n"), "{head}");
        }
        // The same refusal to GET keeps its body.
        let mut c = s.connect();
        c.send(b"GET /health HTTP/1.1\r\nHost: t\r\nExpect: foo\r\n\r\n");
        let (_, body) = split_response(&c.read_to_close());
        assert!(body.starts_with(br#"{"status":"error","code":417"#), "{:?}", String::from_utf8_lossy(&body));
    });
}

/// RFC 9110 §10.1.1 and §15.2: an HTTP/1.0 client's `Expect: 100-continue` is ignored — it
/// gets no 1xx, only the final response once its body has come.
#[test]
fn no_100_continue_for_an_http_1_0_client() {
    each_driver(&[], |s| {
        let mut c = s.connect();
        c.send(b"POST /__test/echo HTTP/1.0\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n");
        c.stream.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
        let mut early = [0u8; 64];
        let got = crate::common::read_retrying(&mut c.stream, &mut early);
        assert!(got.is_err(), "nothing before the body ({}): {got:?} {:?}", s.driver, String::from_utf8_lossy(&early));
        c.stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c.send(b"body");
        let all = c.read_to_close();
        let (head, body) = split_response(&all);
        assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
        assert_eq!(body, b"body");
        // The same request over HTTP/1.1 does get its 100 first.
        let mut c = s.connect();
        c.send(b"POST /__test/echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n");
        assert_eq!(c.response().unwrap().status, 100);
    });
}

/// RFC 9111 §4.2.2: without Cache-Control, a 200 or 404 may be cached heuristically. Live
/// state says no-store; the TechEmpower routes keep exactly the headers the benchmark
/// specifies.
#[test]
fn live_answers_say_no_store_and_benchmark_routes_say_nothing() {
    each_driver(BENCH, |s| {
        s.wait_ready();
        for path in [
            "/health",
            "/livez",
            "/readyz",
            "/metrics",
            "/api/v1/users",
            "/api/v1/users/999",
            "/missing",
            "/openapi.json",
        ] {
            let r = s.get(path);
            assert_eq!(r.header("cache-control"), Some("no-store"), "{path} ({}): {}", s.driver, r.raw_head);
        }
        let refused = s.call("POST", "/api/v1/users", Some("{"));
        assert_eq!((refused.status, refused.header("cache-control")), (400, Some("no-store")));
        for path in ["/plaintext", "/json", "/db", "/queries?queries=2", "/fortunes", "/updates?queries=2"] {
            let r = s.get(path);
            assert_eq!(r.status, 200, "{path}");
            assert_eq!(r.header("cache-control"), None, "{path} ({}): {}", s.driver, r.raw_head);
        }
    });
}
