//! percore behind PgBouncer (Debian's, 1.18: no prepared-statement support of its own), the
//! way a fleet of replicas shares one database: transaction mode with DB_STATEMENT_CACHE=off
//! over the whole users API and across a restart of percore, session mode with the cache
//! on, and what transaction mode with the cache on looks like (a clear 503 and one log
//! line naming the setting, never a reconnect loop). Also readiness that follows what the
//! store does for requests.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::certs::{Pair, Pki, Usage};
use crate::common::pg::{free_port, TestDatabase};
use crate::common::Server;
use simd_json::prelude::*;

/// A PgBouncer of our own in front of the test server's PostgreSQL, as user postgres
/// (it refuses to run as root).
struct Pgbouncer {
    dir: std::path::PathBuf,
    port: u16,
    child: Child,
}

impl Pgbouncer {
    /// `None` when pgbouncer is not installed, outside CI (`.ci/run` installs it).
    fn start(pool_mode: &str, server_connections: usize) -> Option<Pgbouncer> {
        Pgbouncer::start_with(pool_mode, server_connections, None)
    }

    /// With `tls`, clients must speak TLS to it (`client_tls_sslmode = require`), and it
    /// shows them that certificate.
    fn start_with(pool_mode: &str, server_connections: usize, tls: Option<&Pair>) -> Option<Pgbouncer> {
        if Command::new("pgbouncer").arg("--version").output().is_err() {
            assert!(std::env::var("CI").as_deref() != Ok("true"), "pgbouncer is required under CI");
            eprintln!("\n*** pgbouncer not installed: pooler tests SKIPPED ***\n");
            return None;
        }
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("percore-pgbouncer-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let admin = crate::common::pg::admin_url();
        let upstream = admin.split('@').nth(1).unwrap().split('/').next().unwrap();
        let (host, upstream_port) = upstream.split_once(':').unwrap_or((upstream, "5432"));
        std::fs::write(dir.join("users.txt"), "\"postgres\" \"\"\n").unwrap();
        std::fs::write(
            dir.join("pgbouncer.ini"),
            format!(
                "[databases]\n* = host={host} port={upstream_port}\n\n[pgbouncer]\nlisten_addr = 127.0.0.1\n\
                 listen_port = {port}\nunix_socket_dir =\nauth_type = trust\nauth_file = {users}\n\
                 pool_mode = {pool_mode}\ndefault_pool_size = {server_connections}\nmin_pool_size = 0\n\
                 max_client_conn = 500\nignore_startup_parameters = extra_float_digits\n{tls}",
                users = dir.join("users.txt").display(),
                tls = match tls {
                    Some(pair) => {
                        std::fs::copy(&pair.cert, dir.join("tls.crt")).unwrap();
                        std::fs::copy(&pair.key, dir.join("tls.key")).unwrap();
                        format!(
                            "client_tls_sslmode = require\nclient_tls_cert_file = {}\nclient_tls_key_file = {}\n",
                            dir.join("tls.crt").display(),
                            dir.join("tls.key").display()
                        )
                    }
                    None => String::new(),
                }
            ),
        )
        .unwrap();
        Command::new("chown").args(["-R", "postgres"]).arg(&dir).output().unwrap();
        // pgbouncer drops to the user itself (-u), so the child killed on drop is pgbouncer,
        // not a wrapper that would leave it running.
        let child = Command::new("pgbouncer")
            .args(["-u", "postgres"])
            .arg(dir.join("pgbouncer.ini"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("log")).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "pgbouncer did not start: {}",
                std::fs::read_to_string(dir.join("log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(Pgbouncer { dir, port, child })
    }

    /// The URL of database `name` through this pooler.
    fn url(&self, database: &TestDatabase) -> String {
        let name = database.url.rsplit('/').next().unwrap().split('?').next().unwrap();
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }
}

impl Drop for Pgbouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Clients, each walking the whole users API `rounds` times: create, read, update, list,
/// an order, preferences, the summary, delete — with a second user kept, so writes can be
/// checked afterwards. Returns the unexpected answers and the ids of the kept users.
fn users_api(s: &Server, clients: usize, rounds: usize, tag: &str) -> (Vec<String>, Vec<i64>) {
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                scope.spawn(move || {
                    let mut failures = Vec::new();
                    let mut kept = Vec::new();
                    let mut conn = s.connect();
                    let mut expect = |method: &str, path: &str, body: Option<&str>, want: u16| {
                        let r = conn.call(method, path, body);
                        match r {
                            Some(r) if r.status == want => Some(r),
                            Some(r) => {
                                failures.push(format!("{method} {path}: {} {}", r.status, r.text()));
                                None
                            }
                            None => {
                                failures.push(format!("{method} {path}: no answer"));
                                conn = s.connect();
                                None
                            }
                        }
                    };
                    for round in 0..rounds {
                        let email = format!("{tag}-{c}-{round}@example.com");
                        let body = format!(r#"{{"name":"U {c} {round}","email":"{email}"}}"#);
                        let Some(created) = expect("POST", "/api/v1/users", Some(&body), 201) else { continue };
                        let id = created.json()["id"].as_i64().unwrap();
                        expect("GET", &format!("/api/v1/users/{id}"), None, 200);
                        expect("PATCH", &format!("/api/v1/users/{id}"), Some(r#"{"name":"Renamed"}"#), 200);
                        expect("GET", "/api/v1/users?limit=5", None, 200);
                        let order = r#"{"item":"book","quantity":2,"price_cents":1250}"#;
                        expect("POST", &format!("/api/v1/users/{id}/orders"), Some(order), 201);
                        expect("GET", &format!("/api/v1/users/{id}/orders"), None, 200);
                        expect("PUT", &format!("/api/v1/users/{id}/preferences"), Some(r#"{"theme":"dark"}"#), 200);
                        expect("GET", &format!("/api/v1/users/{id}/summary"), None, 200);
                        if round % 2 == 0 {
                            expect("DELETE", &format!("/api/v1/users/{id}"), None, 204);
                            expect("GET", &format!("/api/v1/users/{id}"), None, 404);
                        } else {
                            kept.push(id);
                        }
                    }
                    (failures, kept)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).fold((Vec::new(), Vec::new()), |mut all, (f, k)| {
            all.0.extend(f);
            all.1.extend(k);
            all
        })
    })
}

fn kept_rows_present(db: &TestDatabase, kept: &[i64]) {
    let mut client = db.client();
    let found: i64 = client.query_one("SELECT count(*) FROM users WHERE id = ANY($1)", &[&kept]).unwrap().get(0);
    assert_eq!(found as usize, kept.len(), "every acknowledged write is in the database");
}

#[test]
fn transaction_pooling_works_with_the_statement_cache_off_across_a_restart() {
    let Some(db) = TestDatabase::create() else { return };
    // Fewer server connections than percore's pool: every transaction may land on another.
    let Some(bouncer) = Pgbouncer::start("transaction", 2) else { return };
    let env = [("DATABASE_URL", bouncer.url(&db)), ("DB_STATEMENT_CACHE", "off".into()), ("DB_POOL_SIZE", "4".into())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut kept_all = Vec::new();
    for run in 0..2 {
        let mut s = Server::start(crate::common::drivers()[0], &env);
        s.wait_ready();
        let (failures, kept) = users_api(&s, 8, 6, &format!("tx{run}"));
        assert!(
            failures.is_empty(),
            "run {run}: {} failures, first: {:?}\n{}",
            failures.len(),
            failures.first(),
            s.logs()
        );
        assert_eq!(s.get("/readyz").status, 200);
        kept_all.extend(kept);
        // The restart: the new process meets the server connections the old one used.
        s.signal(libc::SIGTERM);
        assert!(s.wait_exit(Duration::from_secs(10)).is_some_and(|st| st.success()));
    }
    kept_rows_present(&db, &kept_all);
}

#[test]
fn session_pooling_works_with_the_statement_cache_on() {
    let Some(db) = TestDatabase::create() else { return };
    let Some(bouncer) = Pgbouncer::start("session", 8) else { return };
    let url = bouncer.url(&db);
    let s = Server::start(crate::common::drivers()[0], &[("DATABASE_URL", &url), ("DB_POOL_SIZE", "4")]);
    s.wait_ready();
    let (failures, kept) = users_api(&s, 8, 6, "session");
    assert!(failures.is_empty(), "{} failures, first: {:?}", failures.len(), failures.first());
    kept_rows_present(&db, &kept);
}

#[test]
fn transaction_pooling_with_the_statement_cache_on_says_what_to_set() {
    let Some(db) = TestDatabase::create() else { return };
    // One server connection, kept by the pooler across clients. A first percore prepares its
    // statements on it (`s0`, `s1`, … — names count up per process) and stops; the next
    // process's `s0` meets the old one (42P05), as after any restart behind such a pooler.
    let Some(bouncer) = Pgbouncer::start("transaction", 1) else { return };
    let url = bouncer.url(&db);
    let env = [("DATABASE_URL", url.as_str()), ("DB_POOL_SIZE", "2")];
    let mut first = Server::start(crate::common::drivers()[0], &env);
    first.wait_ready();
    assert_eq!(first.get("/api/v1/users/1").status, 404);
    first.signal(libc::SIGTERM);
    assert!(first.wait_exit(Duration::from_secs(10)).is_some());

    let s = Server::start(crate::common::drivers()[0], &env);
    let deadline = Instant::now() + Duration::from_secs(15);
    let ready = loop {
        let answers: Vec<u16> = (1..10).map(|id| s.get(&format!("/api/v1/users/{id}")).status).collect();
        assert!(
            answers.iter().all(|&a| a == 404 || a == 503),
            "a store-side failure is a 503, never a 500: {answers:?}"
        );
        let r = s.get("/readyz");
        if r.status == 503 && r.text().contains("DB_STATEMENT_CACHE=off") {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "readiness never named the setting: {} {}\n{}",
            r.status,
            r.text(),
            s.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(ready.text().contains("prepared statement"), "{}", ready.text());
    let logs = s.logs();
    let advice = logs.lines().filter(|l| l.contains("Set DB_STATEMENT_CACHE=off")).count();
    assert_eq!(advice, 1, "said once:\n{logs}");
    assert!(!logs.contains("connection lost"), "never taken for a lost connection:\n{logs}");
}

#[test]
fn readiness_follows_failing_statements_and_recovers_by_itself() {
    let Some(db) = TestDatabase::create() else { return };
    let s = Server::start(crate::common::drivers()[0], &[("DATABASE_URL", &db.url)]);
    s.wait_ready();
    let mut admin = db.client();
    admin.batch_execute("ALTER TABLE users RENAME TO users_elsewhere").unwrap();
    for id in 1..=40 {
        assert_eq!(s.get(&format!("/api/v1/users/{id}")).status, 500);
    }
    let r = s.get("/readyz");
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.text().contains("statements failed") && r.text().contains("users"), "{}", r.text());
    admin.batch_execute("ALTER TABLE users_elsewhere RENAME TO users").unwrap();
    // No requests come while not ready (a balancer sends none): the idle checks bring it back.
    let deadline = Instant::now() + Duration::from_secs(30);
    while s.get("/readyz").status != 200 {
        assert!(Instant::now() < deadline, "readiness did not come back");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(s.get("/api/v1/users/1").status, 404);
}

#[test]
fn poolers_that_demand_tls_work_in_both_modes_with_verify_full() {
    let Some(db) = TestDatabase::create() else { return };
    let pki = Pki::new("pgbouncer");
    let ca = pki.ca("ca", "pooler CA");
    let cert = pki.leaf(&ca, "bouncer", "localhost", &["DNS:localhost"], 5, Usage::Server);
    for (mode, cache) in [("transaction", "off"), ("session", "on")] {
        let Some(bouncer) = Pgbouncer::start_with(mode, 4, Some(&cert)) else { return };
        // A plain client is turned away: what percore does below is over TLS.
        let plain = postgres::Client::connect(&bouncer.url(&db), postgres::NoTls);
        assert!(plain.is_err(), "{mode}: the pooler must refuse plain clients");
        let url = format!(
            "{}?sslmode=verify-full&sslrootcert={}",
            bouncer.url(&db).replace("127.0.0.1", "localhost"),
            ca.cert.display()
        );
        let env = [("DATABASE_URL", url.as_str()), ("DB_STATEMENT_CACHE", cache), ("DB_POOL_SIZE", "4")];
        let s = Server::start(crate::common::drivers()[0], &env);
        s.wait_ready();
        let tls = "connected to postgres over TLS (sslmode=verify-full)";
        assert!(s.wait_for_log(tls, Duration::from_secs(5)), "{}", s.logs());
        let (failures, kept) = users_api(&s, 8, 4, &format!("tls-{mode}"));
        assert!(
            failures.is_empty(),
            "{mode}: {} failures, first: {:?}\n{}",
            failures.len(),
            failures.first(),
            s.logs()
        );
        kept_rows_present(&db, &kept);
    }
}
