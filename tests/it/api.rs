//! The /api/v1 contract, against SQLite and PostgreSQL, on both drivers.

use std::collections::HashSet;

use crate::common::{each_store, Response, Server};
use simd_json::prelude::*;

fn create_user(s: &Server, name: &str, email: &str) -> i64 {
    let r = s.call("POST", "/api/v1/users", Some(&format!(r#"{{"name":"{name}","email":"{email}"}}"#)));
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()["id"].as_i64().unwrap()
}

fn message(r: &Response) -> String {
    r.json()["message"].as_str().unwrap_or_default().to_owned()
}

#[test]
fn users_round_trip() {
    each_store(&[], |s, store| {
        let r = s.call("POST", "/api/v1/users", Some(r#"{"name":"  Ada  ","email":"ada@example.com"}"#));
        assert_eq!(r.status, 201, "{} {}", store.name(), r.text());
        let user = r.json();
        let id = user["id"].as_i64().unwrap();
        assert_eq!(r.header("location"), Some(format!("/api/v1/users/{id}").as_str()));
        assert_eq!(user["name"], "Ada", "trimmed");
        assert_eq!(user["email"], "ada@example.com");
        let created = user["created_at"].as_str().unwrap().to_owned();
        assert!(created.len() == 20 && created.ends_with('Z') && created.as_bytes()[10] == b'T', "{created}");
        assert!(r.text().starts_with(r#"{"id":"#), "fields in contract order: {}", r.text());

        let got = s.get(&format!("/api/v1/users/{id}"));
        assert_eq!((got.status, got.body.clone()), (200, r.body.clone()), "GET returns what POST returned");

        let patched = s.call("PATCH", &format!("/api/v1/users/{id}"), Some(r#"{"name":"Ada Lovelace"}"#));
        assert_eq!(patched.status, 200, "{}", patched.text());
        assert_eq!(
            (patched.json()["name"].as_str(), patched.json()["email"].as_str()),
            (Some("Ada Lovelace"), Some("ada@example.com"))
        );
        let patched = s.call("PATCH", &format!("/api/v1/users/{id}"), Some(r#"{"email":"lovelace@example.org"}"#));
        assert_eq!(patched.json()["email"], "lovelace@example.org");
        assert_eq!(patched.json()["name"], "Ada Lovelace");

        let head = s.call("HEAD", &format!("/api/v1/users/{id}"), None);
        assert_eq!((head.status, head.body.len()), (200, 0));
        assert_eq!(head.header("content-length").unwrap().parse::<usize>().unwrap(), patched.body.len());

        let deleted = s.call("DELETE", &format!("/api/v1/users/{id}"), None);
        assert_eq!((deleted.status, deleted.body.len()), (204, 0));
        // RFC 9110 §8.6, §6.1: a 204 carries neither Content-Length nor Transfer-Encoding.
        let head = deleted.raw_head.to_ascii_lowercase();
        assert!(!head.contains("content-length") && !head.contains("transfer-encoding"), "{}", deleted.raw_head);
        assert_eq!(s.get(&format!("/api/v1/users/{id}")).status, 404);
        assert_eq!(s.call("DELETE", &format!("/api/v1/users/{id}"), None).status, 404);
    });
}

#[test]
fn invalid_users_are_refused_with_messages_that_name_the_field() {
    each_store(&[], |s, store| {
        let cases: &[(&str, u16, &str)] = &[
            (r#"{"name":"","email":"a@example.com"}"#, 400, "name: must be 1 to 100 characters"),
            (r#"{"name":"   ","email":"a@example.com"}"#, 400, "name: must be 1 to 100 characters"),
            (
                &format!(r#"{{"name":"{}","email":"a@example.com"}}"#, "x".repeat(101)),
                400,
                "name: must be 1 to 100 characters",
            ),
            (r#"{"email":"a@example.com"}"#, 400, "name: is required"),
            (r#"{"name":"A"}"#, 400, "email: is required"),
            (r#"{"name":5,"email":"a@example.com"}"#, 400, "name: must be a string"),
            (r#"{"name":"A","email":"a.example.com"}"#, 400, "email: must contain '@'"),
            (r#"{"name":"A","email":"a@b@example.com"}"#, 400, "email: must contain only one '@'"),
            (r#"{"name":"A","email":"@example.com"}"#, 400, "email: needs a name before '@'"),
            (r#"{"name":"A","email":"a@localhost"}"#, 400, "email: needs a domain"),
            (
                &format!(r#"{{"name":"A","email":"{}@example.com"}}"#, "a".repeat(250)),
                400,
                "email: must be at most 254 characters",
            ),
            (r#"{"name":"A","email":"a@example.com","admin":true}"#, 400, "body: unknown field \"admin\""),
            (r#"{"name":"A","email":"a@example.com""#, 400, "body: invalid JSON at byte"),
            (r#"{"name":"A" "email":"a@example.com"}"#, 400, "body: invalid JSON at byte 12"),
            ("[]", 400, "body: must be a JSON object"),
            ("", 400, "body: expected JSON"),
        ];
        for (body, status, want) in cases {
            let r = s.call("POST", "/api/v1/users", Some(body));
            assert_eq!(r.status, *status, "{} {body} → {}", store.name(), r.text());
            assert!(message(&r).starts_with(want), "{body} → {}", r.text());
            assert_eq!(r.json()["code"].as_u64(), Some(*status as u64));
        }
        let mut c = s.connect();
        c.send(b"POST /api/v1/users HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n{}");
        assert_eq!(c.response().unwrap().status, 415, "no Content-Type");
        c.send(b"POST /api/v1/users HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\n{}");
        assert_eq!(c.response().unwrap().status, 415, "not JSON");
        c.send(b"POST /api/v1/users HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\r\n");
        assert_eq!(c.response().unwrap().status, 411, "no body at all");
        // The refusals above kept the connection usable, and nothing was created.
        c.send(b"GET /api/v1/users HTTP/1.1\r\nHost: t\r\n\r\n");
        let list = c.response().unwrap();
        assert_eq!(list.json()["users"].as_array().unwrap().len(), 0, "{}", list.text());
    });
}

#[test]
fn a_chunked_json_body_is_accepted() {
    each_store(&[], |s, _| {
        let body = br#"{"name":"Chunky","email":"chunky@example.com"}"#;
        let mut raw = b"POST /api/v1/users HTTP/1.1\r\nHost: t\r\nContent-Type: application/json; charset=utf-8\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for part in body.chunks(7) {
            raw.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
            raw.extend_from_slice(part);
            raw.extend_from_slice(b"\r\n");
        }
        raw.extend_from_slice(b"0\r\n\r\n");
        let mut c = s.connect();
        c.send(&raw);
        let r = c.response().unwrap();
        assert_eq!(r.status, 201, "{}\n{}", r.text(), s.logs());
        assert_eq!(r.json()["name"].as_str(), Some("Chunky"), "{}", r.text());
    });
}

#[test]
fn a_taken_email_is_409_whatever_its_case() {
    each_store(&[], |s, store| {
        let ada = create_user(s, "Ada", "ada@example.com");
        let r = s.call("POST", "/api/v1/users", Some(r#"{"name":"Other","email":"ADA@Example.com"}"#));
        assert_eq!((r.status, message(&r).as_str()), (409, "email: already taken"), "{}", store.name());
        let bob = create_user(s, "Bob", "bob@example.com");
        let r = s.call("PATCH", &format!("/api/v1/users/{bob}"), Some(r#"{"email":"ada@example.com"}"#));
        assert_eq!(r.status, 409);
        let r = s.call("PATCH", &format!("/api/v1/users/{ada}"), Some(r#"{"email":"ada@example.com"}"#));
        assert_eq!(r.status, 200, "keeping one's own email is no conflict");
    });
}

#[test]
fn ids_methods_and_unknown_users() {
    each_store(&[], |s, _| {
        for path in [
            "/api/v1/users/0",
            "/api/v1/users/-3",
            "/api/v1/users/abc",
            "/api/v1/users/1.5",
            "/api/v1/users/99999999999999999999",
            "/api/v1/users/x/orders",
        ] {
            let r = s.get(path);
            assert_eq!(r.status, 400, "{path}");
            assert!(message(&r).starts_with("id:"), "{}", r.text());
        }
        for (method, path) in [
            ("GET", "/api/v1/users/999"),
            ("PATCH", "/api/v1/users/999"),
            ("DELETE", "/api/v1/users/999"),
            ("GET", "/api/v1/users/999/orders"),
            ("GET", "/api/v1/users/999/preferences"),
            ("GET", "/api/v1/users/999/summary"),
        ] {
            let body = (method == "PATCH").then_some(r#"{"name":"x"}"#);
            let r = s.call(method, path, body);
            assert_eq!((r.status, message(&r).as_str()), (404, "user 999 not found"), "{method} {path}");
        }
        let r = s.call("POST", "/api/v1/users/999/orders", Some(r#"{"item":"x","quantity":1,"price_cents":1}"#));
        assert_eq!(r.status, 404);
        let r = s.call("PUT", "/api/v1/users/999/preferences", Some("{}"));
        assert_eq!(r.status, 404);
        let r = s.call("DELETE", "/api/v1/users", None);
        assert_eq!((r.status, r.header("allow")), (405, Some("GET, HEAD, POST")));
        let r = s.call("POST", "/api/v1/users/1", Some("{}"));
        assert_eq!((r.status, r.header("allow")), (405, Some("GET, HEAD, PATCH, DELETE")));
        let r = s.call("DELETE", "/api/v1/users/1/summary", None);
        assert_eq!((r.status, r.header("allow")), (405, Some("GET, HEAD")));
        let r = s.call("PATCH", "/api/v1/users/1", Some("{}"));
        assert_eq!(r.status, 400, "an empty patch: {}", r.text());
    });
}

#[test]
fn listing_is_keyset_paginated() {
    each_store(&[], |s, store| {
        let ids: Vec<i64> = (0..25).map(|i| create_user(s, &format!("U{i}"), &format!("u{i}@example.com"))).collect();
        let page = s.get("/api/v1/users");
        let users =
            page.json()["users"].as_array().unwrap().iter().map(|u| u["id"].as_i64().unwrap()).collect::<Vec<_>>();
        assert_eq!(users, ids[..20], "default limit 20, by id ({})", store.name());
        assert_eq!(page.json()["next_after"].as_i64(), Some(ids[19]));
        let rest = s.get(&format!("/api/v1/users?after={}", ids[19]));
        assert_eq!(rest.json()["users"].as_array().unwrap().len(), 5);
        assert!(rest.json()["next_after"].is_null(), "{}", rest.text());

        // Keyset, not OFFSET: deleting a row already seen does not skip one not yet seen.
        let first = s.get("/api/v1/users?limit=5");
        let after = first.json()["next_after"].as_i64().unwrap();
        assert_eq!(after, ids[4]);
        assert_eq!(s.call("DELETE", &format!("/api/v1/users/{}", ids[0]), None).status, 204);
        let second = s.get(&format!("/api/v1/users?limit=5&after={after}"));
        assert_eq!(second.json()["users"][0]["id"].as_i64(), Some(ids[5]));

        let exact = s.get(&format!("/api/v1/users?limit=4&after={}", ids[20]));
        assert!(exact.json()["next_after"].is_null(), "a full last page has no next page: {}", exact.text());
        for bad in ["limit=0", "limit=101", "limit=abc", "after=-1", "after=x"] {
            let r = s.get(&format!("/api/v1/users?{bad}"));
            assert_eq!(r.status, 400, "{bad}");
            assert!(message(&r).starts_with(bad.split('=').next().unwrap()), "{}", r.text());
        }
        assert_eq!(s.get("/api/v1/users?limit=100").json()["users"].as_array().unwrap().len(), 24);
    });
}

#[test]
fn orders() {
    each_store(&[], |s, store| {
        let id = create_user(s, "Buyer", "buyer@example.com");
        let path = format!("/api/v1/users/{id}/orders");
        let r = s.call("POST", &path, Some(r#"{"item":" Book ","quantity":2,"price_cents":1999}"#));
        assert_eq!(r.status, 201, "{} {}", store.name(), r.text());
        let order = r.json();
        assert_eq!(
            (
                order["item"].as_str(),
                order["quantity"].as_i64(),
                order["price_cents"].as_i64(),
                order["user_id"].as_i64()
            ),
            (Some("Book"), Some(2), Some(1999), Some(id))
        );
        for (body, want) in [
            (r#"{"item":"x","quantity":0,"price_cents":1}"#, "quantity: must be a whole number from 1"),
            (r#"{"item":"x","quantity":"2","price_cents":1}"#, "quantity: must be a whole number, not a string"),
            (r#"{"item":"x","quantity":1.5,"price_cents":1}"#, "quantity: must be a whole number"),
            (r#"{"item":"x","price_cents":1}"#, "quantity: must be a whole number from 1"),
            (r#"{"item":"x","quantity":1,"price_cents":-1}"#, "price_cents: must be a whole number of cents"),
            (r#"{"item":"","quantity":1,"price_cents":1}"#, "item: must be 1 to 200 characters"),
            (r#"{"quantity":1,"price_cents":1}"#, "item: is required"),
        ] {
            let r = s.call("POST", &path, Some(body));
            assert_eq!(r.status, 400, "{body}");
            assert!(message(&r).starts_with(want), "{body} → {}", r.text());
        }
        for i in 0..4 {
            s.call("POST", &path, Some(&format!(r#"{{"item":"i{i}","quantity":1,"price_cents":0}}"#)));
        }
        let page = s.get(&format!("{path}?limit=3"));
        assert_eq!(page.json()["orders"].as_array().unwrap().len(), 3);
        let next = page.json()["next_after"].as_i64().unwrap();
        let rest = s.get(&format!("{path}?after={next}"));
        assert_eq!(rest.json()["orders"].as_array().unwrap().len(), 2);
        assert!(rest.json()["next_after"].is_null());
        // Orders go with their user.
        assert_eq!(s.call("DELETE", &format!("/api/v1/users/{id}"), None).status, 204);
        assert_eq!(s.get(&path).status, 404);
        if let crate::common::Store::Postgres(db) = store {
            let left: i64 =
                db.client().query_one("SELECT count(*) FROM orders WHERE user_id = $1", &[&id]).unwrap().get(0);
            assert_eq!(left, 0, "ON DELETE CASCADE");
        }
    });
}

#[test]
fn preferences() {
    each_store(&[], |s, store| {
        let id = create_user(s, "Pref", "pref@example.com");
        let path = format!("/api/v1/users/{id}/preferences");
        assert_eq!(s.get(&path).text(), "{}", "none set yet");
        let r = s.call("PUT", &path, Some(r#"{ "theme" : "dark", "langs": ["en", "fr"], "n": 3 }"#));
        assert_eq!(r.status, 200, "{} {}", store.name(), r.text());
        let stored = s.get(&path);
        assert_eq!(stored.json()["theme"], "dark");
        assert_eq!(stored.json()["langs"][1], "fr");
        let r = s.call("PUT", &path, Some(r#"{"theme":"light"}"#));
        assert_eq!(r.status, 200);
        assert!(s.get(&path).json().get("langs").is_none(), "PUT replaces the object");
        for (body, status, want) in [
            ("[1]", 400, "preferences: must be a JSON object"),
            ("\"x\"", 400, "preferences: must be a JSON object"),
            ("{\"a\":", 400, "body: invalid JSON"),
        ] {
            let r = s.call("PUT", &path, Some(body));
            assert_eq!((r.status, message(&r).starts_with(want)), (status, true), "{body} → {}", r.text());
        }
        let big = format!(r#"{{"k":"{}"}}"#, "x".repeat(4096));
        let r = s.call("PUT", &path, Some(&big));
        assert_eq!(r.status, 413, "{}", r.text());
        assert!(message(&r).starts_with("preferences:"));
        let fits = format!(r#"{{"k":"{}"}}"#, "x".repeat(4096 - 8));
        assert_eq!(fits.len(), 4096);
        assert_eq!(s.call("PUT", &path, Some(&fits)).status, 200);
    });
}

#[test]
fn summary_combines_details_newest_orders_and_preferences() {
    each_store(&[], |s, store| {
        let id = create_user(s, "Sum", "sum@example.com");
        let orders = format!("/api/v1/users/{id}/orders");
        let mut order_ids = Vec::new();
        for i in 0..12 {
            let r = s.call("POST", &orders, Some(&format!(r#"{{"item":"o{i}","quantity":1,"price_cents":{i}}}"#)));
            order_ids.push(r.json()["id"].as_i64().unwrap());
        }
        s.call("PUT", &format!("/api/v1/users/{id}/preferences"), Some(r#"{"theme":"dark"}"#));
        let r = s.get(&format!("/api/v1/users/{id}/summary"));
        assert_eq!(r.status, 200, "{} {}", store.name(), r.text());
        let body = r.json();
        assert_eq!(body["details"]["id"].as_i64(), Some(id));
        assert_eq!(body["details"]["email"], "sum@example.com");
        let got: Vec<i64> = body["orders"].as_array().unwrap().iter().map(|o| o["id"].as_i64().unwrap()).collect();
        let newest: Vec<i64> = (2..12).rev().map(|i| order_ids[i]).collect();
        assert_eq!(got, newest, "the 10 newest, newest first");
        assert_eq!(body["preferences"]["theme"], "dark");
        assert!(r.text().starts_with(r#"{"details":{"#));
    });
}

#[test]
fn two_hundred_concurrent_creates() {
    each_store(&[], |s, store| {
        let ids: Vec<i64> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..200)
                .map(|i| {
                    scope.spawn(move || {
                        let r = s.call(
                            "POST",
                            "/api/v1/users",
                            Some(&format!(r#"{{"name":"C{i}","email":"c{i}@example.com"}}"#)),
                        );
                        assert_eq!(r.status, 201, "{}", r.text());
                        r.json()["id"].as_i64().unwrap()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let distinct: HashSet<i64> = ids.iter().copied().collect();
        assert_eq!(distinct.len(), 200, "distinct ids ({})", store.name());
        for id in &ids {
            assert_eq!(s.get(&format!("/api/v1/users/{id}")).status, 200);
        }
        let all = s.get("/api/v1/users?limit=100");
        assert_eq!(all.json()["users"].as_array().unwrap().len(), 100);
    });
}
