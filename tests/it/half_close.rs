//! A client that sends a whole request and then shuts down its sending side (`nc -N`,
//! scripts, some scrapers) is done sending, not gone (RFC 9293 §3.6): every route answers
//! it, the awaiting ones (the store, a scrape) included. A FIN before the request is whole
//! ends the connection unanswered.

use std::net::Shutdown;

use crate::common::{each_store, Server};
use simd_json::prelude::*;

const BENCH: &[(&str, &str)] = &[("BENCH_ROUTES", "1")];

/// Sends `request`, half-closes, and reads everything until the server closes.
fn half_closed(s: &Server, request: &[u8]) -> String {
    let mut c = s.connect();
    c.send(request);
    c.stream.shutdown(Shutdown::Write).unwrap();
    String::from_utf8_lossy(&c.read_to_close()).into_owned()
}

#[test]
fn a_half_closed_client_gets_its_answer_on_every_kind_of_route() {
    each_store(BENCH, |s, store| {
        let created = s.call("POST", "/api/v1/users", Some(r#"{"name":"Half","email":"half@example.com"}"#));
        assert_eq!(created.status, 201, "{}", created.text());
        let id = created.json()["id"].as_u64().unwrap();
        let paths = [
            format!("/api/v1/users/{id}"),
            format!("/api/v1/users/{id}/summary"),
            "/db".to_owned(),
            "/metrics".to_owned(),
            "/health".to_owned(),
        ];
        for path in &paths {
            for connection in ["Connection: close\r\n", ""] {
                for _ in 0..5 {
                    let request = format!("GET {path} HTTP/1.1\r\nHost: t\r\n{connection}\r\n");
                    let answer = half_closed(s, request.as_bytes());
                    assert!(
                        answer.starts_with("HTTP/1.1 200 "),
                        "GET {path} {connection:?} ({}, {}): {:?}",
                        store.name(),
                        s.driver,
                        &answer[..answer.len().min(200)]
                    );
                }
            }
        }
        // A write, then the FIN: it runs and is acknowledged.
        let body = r#"{"name":"Late","email":"late-half@example.com"}"#;
        let request = format!(
            "POST /api/v1/users HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let answer = half_closed(s, request.as_bytes());
        assert!(answer.starts_with("HTTP/1.1 201 "), "{} ({}): {answer}", store.name(), s.driver);
        let listed = s.get("/api/v1/users?limit=100");
        assert!(listed.text().contains("late-half@example.com"), "{}", listed.text());
        // Pipelined, then the FIN: both answered, in order.
        let two = format!("GET /api/v1/users/{id} HTTP/1.1\r\nHost: t\r\n\r\nGET /db HTTP/1.1\r\nHost: t\r\n\r\n");
        let answer = half_closed(s, two.as_bytes());
        assert_eq!(answer.matches("HTTP/1.1 200 OK").count(), 2, "{answer}");
        assert!(answer.find("\"email\"").unwrap() < answer.find("randomNumber").unwrap(), "{answer}");
    });
}

#[test]
fn a_fin_before_the_request_is_whole_ends_the_connection_unanswered() {
    each_store(&[], |s, _| {
        let answer = half_closed(s, b"GET /api/v1/users/1 HTTP/1.1\r\nHost: t\r\n");
        assert_eq!(answer, "", "{}", s.driver);
        let answer = half_closed(
            s,
            b"POST /api/v1/users HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 50\r\n\r\n{\"name\"",
        );
        assert_eq!(answer, "", "{}", s.driver);
    });
}
