//! Postgres over TLS, with libpq's meaning of every sslmode, against a real PostgreSQL made
//! at test time: `ssl = on`, a CA, server and client certificates from the `openssl` CLI,
//! and a pg_hba.conf with `hostssl` lines only (plus `hostssl … cert` for the client
//! certificate's user). What each mode must do — connect over TLS (pg_stat_ssl says so),
//! fall back as libpq does, or refuse with a message that says what did not match — is
//! checked through percore's own /readyz and API, and through Postgres's view.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::certs::{Pair, Pki, Usage};
use crate::common::pg::PrivateCluster;
use crate::common::Server;
use simd_json::prelude::*;

/// A hostssl-only cluster and the PKI it trusts.
struct TlsCluster {
    cluster: PrivateCluster,
    pki: Pki,
    ca: Pair,
    /// Another CA, which signed nothing the server shows.
    stranger: Pair,
    /// A client certificate for the role `certuser`.
    client: Pair,
}

impl TlsCluster {
    fn start() -> Option<TlsCluster> {
        let pki = Pki::new("pg");
        let ca = pki.ca("ca", "pg test CA");
        let stranger = pki.ca("stranger", "a stranger CA");
        // Named for localhost only: verify-full against 127.0.0.1 must refuse it.
        pki.leaf(&ca, "server", "localhost", &["DNS:localhost"], 101, Usage::Server);
        let client = pki.leaf(&ca, "client", "certuser", &[], 102, Usage::Client);
        let cluster = PrivateCluster::create_prepared(
            &["ssl=on", "ssl_cert_file=server.pem", "ssl_key_file=server.key", "ssl_ca_file=ca.pem"],
            |dir| {
                for file in ["server.pem", "server.key", "ca.pem"] {
                    std::fs::copy(pki.path(file), dir.join(file)).unwrap();
                }
                set_mode(&dir.join("server.key"), 0o600);
                std::fs::write(
                    dir.join("pg_hba.conf"),
                    "local all all trust\n\
                     hostssl all certuser 127.0.0.1/32 cert\n\
                     hostssl all all 127.0.0.1/32 trust\n\
                     hostssl all all ::1/128 trust\n",
                )
                .unwrap();
            },
        )?;
        let mut admin = cluster.admin("postgres");
        admin.batch_execute("CREATE ROLE certuser LOGIN").unwrap();
        Some(TlsCluster { cluster, pki, ca, stranger, client })
    }

    /// A fresh database for one server, so pg_stat_ssl can be read for that server alone.
    fn database(&self, name: &str) -> String {
        let mut admin = self.cluster.admin("postgres");
        admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).unwrap();
        admin.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
        admin.batch_execute(&format!("GRANT ALL ON DATABASE {name} TO certuser")).unwrap();
        self.cluster.admin(name).batch_execute("GRANT ALL ON SCHEMA public TO certuser").unwrap();
        name.to_owned()
    }

    fn url(&self, host: &str, database: &str, params: &str) -> String {
        format!("postgres://postgres@{host}:{}/{database}?{params}", self.cluster.port)
    }

    /// Whether percore's connections to `database` use TLS, and with which version.
    fn percore_ssl(&self, database: &str) -> Vec<(bool, Option<String>)> {
        let mut admin = self.cluster.admin("postgres");
        admin
            .query(
                "SELECT s.ssl, s.version FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
                 WHERE a.application_name = 'percore' AND a.datname = $1",
                &[&database],
            )
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// /readyz's body once `done` holds for it, within 10 s.
fn readyz_until(server: &Server, done: impl Fn(u16, &str) -> bool) -> (u16, String) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = server.get("/readyz");
        let text = r.text();
        if done(r.status, &text) {
            return (r.status, text);
        }
        assert!(
            Instant::now() < deadline,
            "/readyz never came to what was wanted: {} {text}\n{}",
            r.status,
            server.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// How long a log line may take to reach the test's reader once /readyz says what it
/// follows: the line is written before the connection counts, but the reader thread that
/// collects the server's stderr can be descheduled on a busy machine.
const LOG_WAIT: Duration = Duration::from_secs(5);

/// A server on `url`, on the epoll driver (the listener is plain here: only the store
/// speaks TLS, on the pool threads).
fn serve(url: &str, extra: &[(&str, &str)]) -> Server {
    let mut env = vec![("DATABASE_URL", url)];
    env.extend_from_slice(extra);
    Server::start("epoll", &env)
}

fn assert_api_works(server: &Server) {
    let r = server.call("POST", "/api/v1/users", Some(r#"{"name":"Ada","email":"ada@example.com"}"#));
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["id"].as_u64().unwrap();
    let r = server.call(
        "POST",
        &format!("/api/v1/users/{id}/orders"),
        Some(r#"{"item":"tea","quantity":2,"price_cents":350}"#),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let r = server.get(&format!("/api/v1/users/{id}/summary"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["orders"].as_array().unwrap().len(), 1);
    let r = server.call("POST", "/api/v1/users", Some(r#"{"name":"Ada","email":"ADA@example.com"}"#));
    assert_eq!(r.status, 409, "{}", r.text());
}

#[test]
fn every_sslmode_against_a_hostssl_only_server() {
    let Some(t) = TlsCluster::start() else { return };
    let ca = t.ca.cert.to_str().unwrap().to_owned();
    let stranger = t.stranger.cert.to_str().unwrap().to_owned();

    // Modes that reach the server over TLS: the API answers and Postgres sees TLS 1.3.
    for (mode, host, params) in [
        ("allow", "127.0.0.1", "sslmode=allow".to_owned()),
        ("prefer", "127.0.0.1", "sslmode=prefer".to_owned()),
        ("require", "127.0.0.1", "sslmode=require".to_owned()),
        ("verify_ca", "127.0.0.1", format!("sslmode=verify-ca&sslrootcert={ca}")),
        ("verify_full", "localhost", format!("sslmode=verify-full&sslrootcert={ca}")),
    ] {
        let db = t.database(&format!("m_{mode}"));
        let server = serve(&t.url(host, &db, &params), &[]);
        readyz_until(&server, |status, _| status == 200);
        assert_api_works(&server);
        let seen = t.percore_ssl(&db);
        assert!(!seen.is_empty(), "{mode}: percore's connections are visible");
        for (ssl, version) in &seen {
            assert!(*ssl, "{mode}: every connection over TLS: {seen:?}");
            assert_eq!(version.as_deref(), Some("TLSv1.3"), "{mode}");
        }
        assert!(server.wait_for_log("connected to postgres over TLS", LOG_WAIT), "{mode}: {}", server.logs());
    }

    // Refusals: never a plain connection, and /readyz says what did not match.
    let db = t.database("refusals");
    for (label, host, params, wanted) in [
        (
            "disable",
            "127.0.0.1",
            "sslmode=disable".to_owned(),
            vec!["no pg_hba.conf entry", "no encryption", "sslmode=require"],
        ),
        (
            "verify-ca, a stranger's CA",
            "127.0.0.1",
            format!("sslmode=verify-ca&sslrootcert={stranger}"),
            vec![
                "sslmode=verify-ca refused the server's certificate",
                "issued by \\\"CN=pg test CA\\\"",
                "does not lead to a root",
            ],
        ),
        (
            "require with a root is verify-ca (libpq's rule)",
            "127.0.0.1",
            format!("sslmode=require&sslrootcert={stranger}"),
            vec!["sslmode=require refused the server's certificate", "does not lead to a root"],
        ),
        (
            "verify-full, a name the certificate lacks",
            "127.0.0.1",
            format!("sslmode=verify-full&sslrootcert={ca}"),
            vec!["sslmode=verify-full refused", "names [localhost]", "not valid for name \\\"127.0.0.1\\\""],
        ),
    ] {
        let server = serve(&t.url(host, &db, &params), &[]);
        let (status, body) = readyz_until(&server, |status, body| status == 503 && body.contains(wanted[0]));
        assert_eq!(status, 503);
        for w in &wanted {
            assert!(body.contains(w), "{label}: /readyz lacks {w:?}: {body}");
        }
        let r = server.get("/api/v1/users/1");
        assert_eq!(r.status, 503, "{label}: requests are refused while the store is unreachable");
        std::thread::sleep(Duration::from_millis(1500));
        let logs = server.logs();
        let lines = logs.lines().filter(|l| l.contains("cannot connect to postgres")).count();
        assert_eq!(lines, 1, "{label}: said once, not per attempt or per thread:\n{logs}");
        assert!(t.percore_ssl(&db).is_empty(), "{label}: no connection of percore's got through");
        let metrics = server.get("/metrics").text();
        if label != "disable" {
            assert!(metrics.contains("db_store_errors_total{class=\"tls\"}"), "{label}: counted as tls:\n{metrics}");
        }
    }

    // The same name check passes once the certificate names the address (an IP SAN).
    let named = t.pki.leaf(&t.ca, "server-ip", "localhost", &["DNS:localhost", "IP:127.0.0.1"], 103, Usage::Server);
    std::fs::copy(&named.cert, t.cluster.dir().join("server.pem")).unwrap();
    std::fs::copy(&named.key, t.cluster.dir().join("server.key")).unwrap();
    std::process::Command::new("chown")
        .args(["postgres:postgres"])
        .arg(t.cluster.dir().join("server.key"))
        .output()
        .unwrap();
    t.cluster.reload();
    let db = t.database("ip_san");
    let server = serve(&t.url("127.0.0.1", &db, &format!("sslmode=verify-full&sslrootcert={ca}")), &[]);
    readyz_until(&server, |status, _| status == 200);
    assert_api_works(&server);
}

#[test]
fn a_client_certificate_logs_in_where_pg_hba_says_cert() {
    let Some(t) = TlsCluster::start() else { return };
    let db = t.database("certs");
    let url = format!(
        "postgres://certuser@localhost:{}/{db}?sslmode=verify-full&sslrootcert={}",
        t.cluster.port,
        t.ca.cert.display()
    );
    let (cert, key) = (t.client.cert.to_str().unwrap(), t.client.key.to_str().unwrap());
    let server = serve(&url, &[("DB_SSLCERT", cert), ("DB_SSLKEY", key)]);
    readyz_until(&server, |status, _| status == 200);
    assert_api_works(&server);
    let mut admin = t.cluster.admin("postgres");
    let row = admin
        .query_one(
            "SELECT count(*), bool_and(s.client_dn = '/CN=certuser') FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.datname = $1 AND a.usename = 'certuser'",
            &[&db],
        )
        .unwrap();
    assert!(row.get::<_, i64>(0) > 0 && row.get::<_, bool>(1), "percore logged in with its certificate");
    drop(server);

    // The same user without the certificate is refused by the server.
    let server = serve(&url, &[]);
    let (_, body) = readyz_until(&server, |status, body| status == 503 && body.contains("certificate"));
    assert!(body.contains("28000"), "the server's refusal, with its SQLSTATE: {body}");
}

#[test]
fn a_server_without_tls_is_refused_under_require_and_used_plain_under_prefer() {
    let Some(cluster) = PrivateCluster::create() else { return };
    let url = |mode: &str| format!("postgres://postgres@127.0.0.1:{}/postgres?sslmode={mode}", cluster.port);
    let server = serve(&url("require"), &[]);
    let (_, body) = readyz_until(&server, |status, body| status == 503 && body.contains("TLS"));
    assert!(body.contains("server does not support TLS"), "{body}");
    drop(server);
    for mode in ["prefer", "allow"] {
        let server = serve(&url(mode), &[]);
        readyz_until(&server, |status, _| status == 200);
        let plain = format!("in plain text (sslmode={mode})");
        assert!(server.wait_for_log(&plain, LOG_WAIT), "{}", server.logs());
        assert!(!server.logs().contains("failed under sslmode=prefer"), "a server that offers no TLS is no failure");
        drop(server);
    }
}

#[test]
fn prefer_says_so_when_it_falls_back_to_plain_text() {
    // TLS is offered but the certificate does not lead to the given root: libpq's prefer
    // then connects in plain text. percore does too, and says it once.
    let Some(t) = TlsCluster::start() else { return };
    let mut admin = t.cluster.admin("postgres");
    let hba = "local all all trust\nhost all all 127.0.0.1/32 trust\n";
    std::fs::write(t.cluster.dir().join("pg_hba.conf"), hba).unwrap();
    admin.batch_execute("SELECT pg_reload_conf()").unwrap();
    let db = t.database("fallback");
    let url = t.url("127.0.0.1", &db, &format!("sslmode=prefer&sslrootcert={}", t.stranger.cert.display()));
    let server = serve(&url, &[]);
    readyz_until(&server, |status, _| status == 200);
    assert!(server.wait_for_log("in plain text (sslmode=prefer)", LOG_WAIT), "{}", server.logs());
    let logs = server.logs();
    assert_eq!(logs.matches("failed under sslmode=prefer").count(), 1, "{logs}");
    assert!(logs.contains("does not lead to a root"), "{logs}");
    assert!(t.percore_ssl(&db).iter().all(|(ssl, _)| !ssl), "plain, as prefer allows");
}

#[test]
fn unusable_tls_files_stop_the_start_with_exit_2_naming_the_setting() {
    let pki = Pki::new("pg-files");
    let ca = pki.ca("ca", "files CA");
    let client = pki.leaf(&ca, "client", "certuser", &[], 7, Usage::Client);
    let other = pki.leaf(&ca, "other", "other", &[], 8, Usage::Client);
    let garbage = pki.path("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let p = |path: &Path| path.to_str().unwrap().to_owned();
    let url = "postgres://u@127.0.0.1:1/db";
    // (the variables set, the setting the refusal must name, what it must say)
    type Case<'a> = (Vec<(&'a str, String)>, &'a str, &'a str);
    let cases: Vec<Case> = vec![
        (vec![("DB_SSLROOTCERT", "/nonexistent/ca.pem".into())], "DB_SSLROOTCERT", "No such file"),
        (vec![("DB_SSLROOTCERT", p(&garbage))], "DB_SSLROOTCERT", "no PEM certificate"),
        (vec![("DB_SSLCERT", p(&client.cert)), ("DB_SSLKEY", "/nonexistent.key".into())], "DB_SSLKEY", "No such file"),
        (vec![("DB_SSLCERT", p(&garbage)), ("DB_SSLKEY", p(&client.key))], "DB_SSLCERT", "no PEM certificate"),
        (vec![("DB_SSLCERT", p(&client.cert)), ("DB_SSLKEY", p(&other.key))], "DB_SSLKEY", "private key"),
        (vec![("DB_SSLCERT", p(&client.cert))], "DB_SSLCERT", "DB_SSLKEY"),
    ];
    for (vars, named, says) in cases {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_percore"));
        cmd.env_clear()
            .env("DATABASE_URL", format!("{url}?sslmode=require"))
            .env("DEBUG_ADDR", "")
            .env("SERVER_PORT", "0");
        for (k, v) in &vars {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{vars:?}: {err}");
        assert!(err.contains(named) && err.contains(says), "{vars:?} must name {named} and say {says:?}: {err}");
    }
    // The same through the URL's own parameters: named as DATABASE_URL.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_percore"))
        .env_clear()
        .env("DATABASE_URL", format!("{url}?sslmode=verify-ca&sslrootcert=/nonexistent/root.crt"))
        .env("DEBUG_ADDR", "")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("DATABASE_URL") && err.contains("/nonexistent/root.crt"), "{err}");
}
