//! The data layer under stress and failure: migrations with replicas, a store that is
//! down, stopped and started, slow, full, broken — on both drivers.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::common::pg::{PrivateCluster, TestDatabase};
use crate::common::proxy::DelayProxy;
use crate::common::{drivers, Server};
use simd_json::prelude::*;

fn pg_upstream() -> SocketAddr {
    let url = crate::common::pg::admin_url();
    let hostport = url.split('@').nth(1).unwrap_or("127.0.0.1:5432").split('/').next().unwrap();
    hostport.parse().unwrap_or_else(|_| "127.0.0.1:5432".parse().unwrap())
}

/// `db`'s URL, but through `proxy`.
fn via(proxy: &DelayProxy, db: &TestDatabase) -> String {
    let name = db.url.rsplit('/').next().unwrap();
    format!("postgres://postgres@{}/{name}", proxy.addr)
}

fn create(s: &Server, email: &str) -> crate::common::Response {
    s.call("POST", "/api/v1/users", Some(&format!(r#"{{"name":"N","email":"{email}"}}"#)))
}

fn users_with_email(db: &TestDatabase, email: &str) -> i64 {
    db.client().query_one("SELECT count(*) FROM users WHERE email = $1", &[&email]).unwrap().get(0)
}

/// Each thread of the server: its name and its scheduling policy (field 41 of its stat).
fn threads_of(s: &Server) -> Vec<(String, u32)> {
    std::fs::read_dir(format!("/proc/{}/task", s.pid()))
        .unwrap()
        .flatten()
        .map(|e| {
            let name = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default().trim().to_owned();
            let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            // After the name's closing parenthesis the fields count from 3 (the state).
            let after_name = &stat[stat.rfind(')').map_or(0, |i| i + 2)..];
            let policy = after_name.split(' ').nth(41 - 3).and_then(|f| f.parse().ok()).unwrap_or(u32::MAX);
            (name, policy)
        })
        .collect()
}

const SCHED_OTHER: u32 = 0;
const SCHED_BATCH: u32 = 3;

/// The pool threads are named, and run under SCHED_BATCH so that a reply waking one does
/// not preempt a worker (or a local Postgres backend); the workers keep the normal policy.
/// DB_THREAD_SCHED=normal leaves the pool threads normal too.
#[test]
fn pool_threads_are_named_and_scheduled_as_batch() {
    let s = Server::start(drivers()[0], &[("DB_POOL_SIZE", "3")]);
    s.wait_ready();
    let threads = threads_of(&s);
    for n in ["percore-db0", "percore-db1", "percore-db2"] {
        let policy = threads.iter().find(|(name, _)| name == n).map(|&(_, p)| p);
        assert_eq!(policy, Some(SCHED_BATCH), "{n} in {threads:?}");
    }
    assert!(!threads.iter().any(|(name, _)| name == "percore-db3"));
    let workers: Vec<_> = threads.iter().filter(|(name, _)| name.starts_with("percore-w")).collect();
    assert!(!workers.is_empty() && workers.iter().all(|&&(_, p)| p == SCHED_OTHER), "{threads:?}");
    assert!(s.logs().contains("database threads (SCHED_BATCH)"), "{}", s.logs());

    let s = Server::start(drivers()[0], &[("DB_POOL_SIZE", "2"), ("DB_THREAD_SCHED", "normal")]);
    s.wait_ready();
    let threads = threads_of(&s);
    let db: Vec<_> = threads.iter().filter(|(name, _)| name.starts_with("percore-db")).collect();
    assert!(db.len() == 2 && db.iter().all(|&&(_, p)| p == SCHED_OTHER), "{threads:?}");
}

#[test]
fn replicas_starting_at_once_migrate_exactly_once() {
    let versions = percore::db::migrations::MIGRATIONS.len() as i64;
    // Postgres: three servers, one fresh database, started together.
    if let Some(db) = TestDatabase::create() {
        let servers: Vec<Server> = std::thread::scope(|scope| {
            let handles: Vec<_> =
                (0..3).map(|_| scope.spawn(|| Server::start(drivers()[0], &[("DATABASE_URL", &db.url)]))).collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for s in &servers {
            s.wait_ready();
        }
        let rows = db.client().query("SELECT version FROM percore_schema ORDER BY version", &[]).unwrap();
        let got: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
        assert_eq!(got, (1..=versions).collect::<Vec<_>>());
        let applied = servers.iter().map(|s| s.logs().matches("applied migration").count()).sum::<usize>();
        assert_eq!(applied, versions as usize, "each migration applied once in all");
        drop(servers);
        // A restart on the migrated database applies nothing.
        let again = Server::start(drivers()[0], &[("DATABASE_URL", &db.url)]);
        again.wait_ready();
        assert!(!again.logs().contains("applied migration"), "{}", again.logs());
    }
    // SQLite: three servers on one file.
    let path = crate::common::temp_sqlite_path();
    let path_str = path.display().to_string();
    let servers: Vec<Server> = std::thread::scope(|scope| {
        let handles: Vec<_> =
            (0..3).map(|_| scope.spawn(|| Server::start(drivers()[0], &[("SQLITE_PATH", &path_str)]))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for s in &servers {
        s.wait_ready();
    }
    let applied = servers.iter().map(|s| s.logs().matches("applied migration").count()).sum::<usize>();
    assert_eq!(applied, versions as usize);
    let r = create(&servers[0], "shared@example.com");
    assert_eq!(r.status, 201);
    let id = r.json()["id"].as_i64().unwrap();
    assert_eq!(servers[2].get(&format!("/api/v1/users/{id}")).status, 200, "one file, seen by all");
    drop(servers);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{path_str}{suffix}"));
    }
}

#[test]
fn a_store_that_is_down_at_start() {
    let closed = crate::common::pg::free_port();
    let url = format!("postgres://postgres@127.0.0.1:{closed}/nothing");
    for driver in drivers() {
        let s = Server::start(driver, &[("DATABASE_URL", &url)]);
        assert_eq!(s.get("/health").status, 200, "the server starts anyway");
        let ready = s.get("/readyz");
        assert_eq!(ready.status, 503);
        assert!(ready.json()["message"].as_str().unwrap().contains("postgres"), "names the store: {}", ready.text());
        for _ in 0..5 {
            let began = Instant::now();
            let r = s.get("/api/v1/users/1");
            assert_eq!((r.status, r.header("retry-after")), (503, Some("1")), "{}", r.text());
            assert!(began.elapsed() < Duration::from_secs(1), "503 within a second, not a hang: {:?}", began.elapsed());
        }
    }
}

#[test]
fn postgres_stopped_and_started_again_recovers_without_a_restart() {
    let Some(cluster) = PrivateCluster::create() else { return };
    for driver in drivers() {
        let s = Server::start(driver, &[("DATABASE_URL", &cluster.url()), ("DB_POOL_SIZE", "2")]);
        s.wait_ready();
        let r = create(&s, &format!("before-{driver}@example.com"));
        assert_eq!(r.status, 201, "{}", r.text());
        let id = r.json()["id"].as_i64().unwrap();

        cluster.stop();
        for _ in 0..5 {
            let began = Instant::now();
            let r = s.get(&format!("/api/v1/users/{id}"));
            assert_eq!(r.status, 503, "store down ({driver}): {}", r.text());
            assert!(began.elapsed() < Duration::from_secs(1), "{:?}", began.elapsed());
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while s.get("/readyz").status != 503 {
            assert!(Instant::now() < deadline, "readiness follows the store");
            std::thread::sleep(Duration::from_millis(100));
        }

        cluster.start();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let r = s.get(&format!("/api/v1/users/{id}"));
            if r.status == 200 && s.get("/readyz").status == 200 {
                break;
            }
            assert!(Instant::now() < deadline, "recovered without a restart ({driver}): {}\n{}", r.text(), s.logs());
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(create(&s, &format!("after-{driver}@example.com")).status, 201);
    }
}

#[test]
fn summary_reads_run_concurrently() {
    let Some(db) = TestDatabase::create() else { return };
    let proxy = DelayProxy::start(pg_upstream(), Duration::from_millis(150));
    let url = via(&proxy, &db);
    for driver in drivers() {
        let s = Server::start(driver, &[("DATABASE_URL", &url), ("DB_POOL_SIZE", "3")]);
        s.wait_ready();
        let id = create(&s, &format!("fan-{driver}@example.com")).json()["id"].as_i64().unwrap();
        // Warm up: every pool thread prepares its statements.
        for _ in 0..6 {
            assert_eq!(s.get(&format!("/api/v1/users/{id}/summary")).status, 200);
        }
        let timed = |path: &str| {
            let began = Instant::now();
            assert_eq!(s.get(path).status, 200);
            began.elapsed()
        };
        // The median of eight: an idle pool thread pings its connection every second, and
        // through the 150 ms proxy a read that lands behind a ping waits one round trip more.
        // Reads run one after another would take two or three round trips, so the bound sits
        // between one and two.
        let single = (0..3).map(|_| timed(&format!("/api/v1/users/{id}"))).min().unwrap();
        let mut summaries: Vec<_> = (0..8).map(|_| timed(&format!("/api/v1/users/{id}/summary"))).collect();
        summaries.sort();
        let summary = summaries[summaries.len() / 2];
        assert!(single >= Duration::from_millis(150), "the store is slow: {single:?}");
        assert!(
            summary < single * 3 / 2,
            "three reads at once take about one read: median summary {summary:?} of {summaries:?}, one read {single:?} ({driver})"
        );
    }
}

/// A job's statements go out back to back, each with its own Sync: /queries?queries=20
/// and /updates?queries=20 (20 reads and one UPDATE) each reach Postgres in one or two
/// reads of the proxy — twenty statements sent one round trip at a time would take twenty.
#[test]
fn a_jobs_statements_are_pipelined() {
    let Some(db) = TestDatabase::create() else { return };
    let proxy = DelayProxy::start(pg_upstream(), Duration::ZERO);
    let url = via(&proxy, &db);
    for driver in drivers() {
        let s = Server::start(driver, &[("DATABASE_URL", &url), ("DB_POOL_SIZE", "1"), ("BENCH_ROUTES", "1")]);
        s.wait_ready();
        for path in ["/queries?queries=20", "/updates?queries=20"] {
            assert_eq!(s.get(path).status, 200);
            let before = proxy.upstream_reads();
            let r = s.get(path);
            let reads = proxy.upstream_reads() - before;
            assert_eq!(r.status, 200, "{}", r.text());
            assert_eq!(r.json().as_array().map(|a| a.len()), Some(20));
            // One for the pipeline, one more if the idle check fell in the window.
            assert!(reads <= 2, "{path}: 20+ statements in {reads} writes, not back to back ({driver})");
        }
    }
}

/// Jobs that wait together run as one pipeline, and a failing statement fails only its
/// own job: eight creates of one email sent at once while the pool is busy give one 201
/// and seven 409s, and the reads pipelined with them are answered — all in a few writes.
#[test]
fn waiting_jobs_are_pipelined_and_an_error_stays_with_its_job() {
    let Some(db) = TestDatabase::create() else { return };
    let proxy = DelayProxy::start(pg_upstream(), Duration::from_millis(200));
    let url = via(&proxy, &db);
    for driver in drivers() {
        let env = [
            ("DATABASE_URL", url.as_str()),
            ("DB_POOL_SIZE", "1"),
            ("DB_BATCH_READS", "off"),
            ("HANDLER_TIMEOUT", "10s"),
        ];
        let s = Server::start(driver, &env);
        s.wait_ready();
        let id = create(&s, &format!("known-{driver}@example.com")).json()["id"].as_i64().unwrap();
        assert_eq!(s.get(&format!("/api/v1/users/{id}")).status, 200);
        let _busy = occupy(&s, 1);
        std::thread::sleep(Duration::from_millis(50));
        let before = proxy.upstream_reads();
        let email = format!("twice-{driver}@example.com");
        let statuses: Vec<(bool, u16)> = std::thread::scope(|scope| {
            let writes = (0..8).map(|_| scope.spawn(|| (true, create(&s, &email).status)));
            let reads = (0..4).map(|_| scope.spawn(|| (false, s.get(&format!("/api/v1/users/{id}")).status)));
            let handles: Vec<_> = writes.chain(reads).collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let reads = proxy.upstream_reads() - before;
        let created = statuses.iter().filter(|&&(w, st)| w && st == 201).count();
        let conflicts = statuses.iter().filter(|&&(w, st)| w && st == 409).count();
        assert_eq!((created, conflicts), (1, 7), "{statuses:?} ({driver})");
        assert!(statuses.iter().filter(|(w, _)| !w).all(|&(_, st)| st == 200), "{statuses:?} ({driver})");
        assert_eq!(users_with_email(&db, &email), 1);
        assert!(reads <= 3, "12 jobs queued together went out in {reads} writes ({driver})");
    }
}

#[test]
fn a_full_queue_answers_503_at_once() {
    let Some(db) = TestDatabase::create() else { return };
    let proxy = DelayProxy::start(pg_upstream(), Duration::from_millis(200));
    let url = via(&proxy, &db);
    for driver in drivers() {
        let s = Server::start(driver, &[("DATABASE_URL", &url), ("DB_POOL_SIZE", "1"), ("DB_QUEUE_DEPTH", "2")]);
        s.wait_ready();
        let results: Vec<(u16, Option<String>, Duration)> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..12)
                .map(|_| {
                    scope.spawn(|| {
                        let began = Instant::now();
                        let r = s.get("/api/v1/users/999999");
                        (r.status, r.header("retry-after").map(str::to_owned), began.elapsed())
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let shed: Vec<_> = results.iter().filter(|r| r.0 == 503).collect();
        assert!(!shed.is_empty(), "a queue of 2 cannot hold 12 ({driver}): {results:?}");
        for (_, retry, took) in &shed {
            assert_eq!(retry.as_deref(), Some("1"));
            assert!(*took < Duration::from_millis(150), "shed at once, not after waiting: {took:?}");
        }
        assert!(results.iter().any(|r| r.0 == 404), "the queued ones are served: {results:?}");
    }
}

/// One pool thread kept busy by slow reads, so a write queued behind them waits. One job
/// at a time (no pipeline, no batched reads): each read is its own slow round trip.
fn busy_pool(url: &str, driver: &'static str, env: &[(&str, &str)]) -> Server {
    let mut all =
        vec![("DATABASE_URL", url), ("DB_POOL_SIZE", "1"), ("DB_PIPELINE_JOBS", "1"), ("DB_BATCH_READS", "off")];
    all.extend_from_slice(env);
    let s = Server::start(driver, &all);
    s.wait_ready();
    // Prepare the statements the test uses, so each job is one slow round trip (a first
    // run may outlast a short HANDLER_TIMEOUT; the pool finishes it anyway).
    for i in 0..2 {
        create(&s, &format!("warm{i}-{}@example.com", s.pid()));
        s.get("/api/v1/users/999999");
    }
    std::thread::sleep(Duration::from_millis(700));
    s
}

fn occupy(s: &Server, clients: usize) -> Vec<crate::common::Client> {
    (0..clients)
        .map(|_| {
            let mut c = s.connect();
            c.send(b"GET /api/v1/users/999999 HTTP/1.1\r\nHost: t\r\n\r\n");
            c
        })
        .collect()
}

#[test]
fn a_write_whose_request_timed_out_is_skipped_not_run() {
    let Some(db) = TestDatabase::create() else { return };
    let proxy = DelayProxy::start(pg_upstream(), Duration::from_millis(300));
    let url = via(&proxy, &db);
    for driver in drivers() {
        let s = busy_pool(&url, driver, &[("HANDLER_TIMEOUT", "500ms")]);
        let _busy = occupy(&s, 3);
        std::thread::sleep(Duration::from_millis(20));
        let email = format!("late-{driver}@example.com");
        let r = create(&s, &email);
        assert_eq!(r.status, 503, "{}", r.text());
        assert!(r.text().contains("HANDLER_TIMEOUT"));
        std::thread::sleep(Duration::from_millis(1500));
        assert_eq!(users_with_email(&db, &email), 0, "the timed-out write must not run ({driver})");
    }
}

/// A waiting job's client is looked at when a pool thread takes the job (db/gone.rs), so a
/// client that resets at once, long before that, is seen then: the reset is still there.
/// Reset 1 ms after the request: its queued write is skipped, not run. (Had the worker not
/// yet read the request, the read loop ends the connection instead: not run either way.)
#[test]
fn a_write_whose_client_left_at_once_is_skipped_not_run() {
    let Some(db) = TestDatabase::create() else { return };
    let proxy = DelayProxy::start(pg_upstream(), Duration::from_millis(300));
    let url = via(&proxy, &db);
    for driver in drivers() {
        let s = busy_pool(&url, driver, &[]);
        let _busy = occupy(&s, 3);
        std::thread::sleep(Duration::from_millis(20));
        let email = format!("gone-at-once-{driver}@example.com");
        let mut c = s.connect();
        let body = format!(r#"{{"name":"N","email":"{email}"}}"#);
        socket2::SockRef::from(&c.stream).set_linger(Some(Duration::ZERO)).unwrap();
        c.send(format!("POST /api/v1/users HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()).as_bytes());
        std::thread::sleep(Duration::from_millis(1));
        drop(c);
        std::thread::sleep(Duration::from_millis(1500));
        assert_eq!(users_with_email(&db, &email), 0, "the abandoned write must not run ({driver})");
    }
}

/// A client that gives up resets its connection (an abort, a killed process with unread
/// bytes, a timeout with SO_LINGER 0): its queued write is skipped. A FIN alone is not
/// leaving — see tests/it/half_close.rs, and the second half of this test.
#[test]
fn a_write_whose_client_left_is_skipped_not_run() {
    let Some(db) = TestDatabase::create() else { return };
    let proxy = DelayProxy::start(pg_upstream(), Duration::from_millis(300));
    let url = via(&proxy, &db);
    for driver in drivers() {
        let s = busy_pool(&url, driver, &[]);
        let _busy = occupy(&s, 3);
        std::thread::sleep(Duration::from_millis(20));
        let email = format!("gone-{driver}@example.com");
        let mut c = s.connect();
        let body = format!(r#"{{"name":"N","email":"{email}"}}"#);
        c.send(format!("POST /api/v1/users HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()).as_bytes());
        std::thread::sleep(Duration::from_millis(100));
        socket2::SockRef::from(&c.stream).set_linger(Some(Duration::ZERO)).unwrap();
        drop(c);
        std::thread::sleep(Duration::from_millis(1500));
        assert_eq!(users_with_email(&db, &email), 0, "the abandoned write must not run ({driver})");
        // Counted as skipped, and logged as nginx logs it: 499, the client closed first.
        let metrics = s.get("/metrics").text();
        assert!(metrics.contains("db_jobs_skipped_total{reason=\"abandoned\"} 1"), "{metrics}");
        assert!(metrics.contains("route=\"/api/v1/users\",status=\"499\"} 1"), "{metrics}");
        // The control: the same write from a client that half-closes behind its request
        // (done sending, still reading) runs, and the client reads its 201.
        let _busy = occupy(&s, 3);
        std::thread::sleep(Duration::from_millis(20));
        let mut c = s.connect();
        c.send(format!("POST /api/v1/users HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()).as_bytes());
        c.stream.shutdown(std::net::Shutdown::Write).unwrap();
        let answer = String::from_utf8_lossy(&c.read_to_close()).into_owned();
        assert!(answer.starts_with("HTTP/1.1 201 "), "a half-closed client is answered ({driver}): {answer}");
        assert_eq!(users_with_email(&db, &email), 1);
    }
}

#[test]
fn a_broken_connection_answers_503_without_retrying_then_reconnects() {
    let Some(db) = TestDatabase::create() else { return };
    for driver in drivers() {
        let s = Server::start(driver, &[("DATABASE_URL", &db.url), ("DB_POOL_SIZE", "1")]);
        s.wait_ready();
        assert_eq!(s.get("/api/v1/users/999999").status, 404);
        let name = db.url.rsplit('/').next().unwrap().to_owned();
        let killed: i64 = db
            .client()
            .query_one("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'percore' AND datname = $1", &[&name])
            .unwrap()
            .get(0);
        assert_eq!(killed, 1);
        let email = format!("broken-{driver}@example.com");
        let r = create(&s, &email);
        assert_eq!(r.status, 503, "the job that met the broken connection ({driver}): {}", r.text());
        assert_eq!(users_with_email(&db, &email), 0, "and it was not retried");
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let r = create(&s, &email);
            if r.status == 201 {
                break;
            }
            assert!(Instant::now() < deadline, "reconnects: {}", r.text());
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(users_with_email(&db, &email), 1);
    }
}

#[test]
fn connections_older_than_their_lifetime_are_replaced() {
    let Some(db) = TestDatabase::create() else { return };
    let name = db.url.rsplit('/').next().unwrap().to_owned();
    let backends = || -> Vec<i32> {
        let rows = db
            .client()
            .query("SELECT pid FROM pg_stat_activity WHERE application_name = 'percore' AND datname = $1", &[&name])
            .unwrap();
        rows.iter().map(|r| r.get(0)).collect()
    };
    // 20 ms each way: replies come in bursts, and the clients refill the queue between them.
    let proxy = DelayProxy::start(pg_upstream(), Duration::from_millis(20));
    let url = via(&proxy, &db);
    let s = Server::start(
        drivers()[0],
        &[
            ("DATABASE_URL", &url),
            ("DB_POOL_SIZE", "1"),
            ("DB_CONN_MAX_LIFETIME", "1s"),
            // Each read its own job, so more clients than DB_PIPELINE_JOBS keep jobs queued.
            ("DB_BATCH_READS", "off"),
        ],
    );
    s.wait_ready();
    let first = backends();
    assert_eq!(first.len(), 1);
    // Under a steady load too: the one pool thread keeps its pipeline topped up from the
    // queue (32 clients, 16 jobs in flight), and must still let it run dry to replace the
    // connection. Every request is answered meanwhile (a job is never dropped at the swap).
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        let loaders: Vec<_> = (0..32)
            .map(|_| {
                scope.spawn(|| {
                    let mut c = s.connect();
                    let mut answered = 0;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let r = c.call("GET", "/api/v1/users/999999", None).expect("an answer");
                        // 32 clients on a store that answers 16 at a time every 40 ms stand
                        // a queue: some are refused at the door, before any work — never
                        // a job dropped at the swap (that would be another 503).
                        if r.status == 503 && r.text().contains("overloaded") {
                            continue;
                        }
                        assert_eq!(r.status, 404, "{}", r.text());
                        answered += 1;
                    }
                    answered
                })
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(5);
        let replaced = loop {
            let now = backends();
            if now.len() == 1 && now != first {
                break Ok(());
            }
            if Instant::now() >= deadline {
                break Err(format!("the connection was not replaced under load: {first:?} → {now:?}"));
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let answered: i32 = loaders.into_iter().map(|l| l.join().unwrap()).sum();
        replaced.unwrap();
        assert!(answered > 0);
    });
}

/// Point reads that wait together are answered by one `= ANY($1)` query, and each request
/// still gets its own user (or its own 404).
#[test]
fn waiting_reads_are_batched_and_each_gets_its_own_answer() {
    let Some(db) = TestDatabase::create() else { return };
    let proxy = DelayProxy::start(pg_upstream(), Duration::from_millis(100));
    let url = via(&proxy, &db);
    for (batch, driver) in [("on", drivers()[0]), ("off", drivers()[0]), ("on", *drivers().last().unwrap())] {
        let s = Server::start(driver, &[("DATABASE_URL", &url), ("DB_POOL_SIZE", "1"), ("DB_BATCH_READS", batch)]);
        s.wait_ready();
        let users: Vec<(i64, String)> = (0..4)
            .map(|i| {
                let email = format!("batch{i}-{batch}-{}@example.com", s.pid());
                (create(&s, &email).json()["id"].as_i64().unwrap(), email)
            })
            .collect();
        s.get("/api/v1/users/999999"); // prepare the single read
        let asked: Vec<i64> = (0..16).map(|i| if i % 4 == 3 { 900_000 + i } else { users[i as usize % 4].0 }).collect();
        let server = &s;
        let answers: Vec<crate::common::Response> = std::thread::scope(|scope| {
            let handles: Vec<_> =
                asked.iter().map(|id| scope.spawn(move || server.get(&format!("/api/v1/users/{id}")))).collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (id, r) in asked.iter().zip(&answers) {
            match users.iter().find(|(u, _)| u == id) {
                Some((_, email)) => {
                    assert_eq!(r.status, 200, "user {id}: {}", r.text());
                    assert_eq!(r.json()["id"].as_i64(), Some(*id));
                    assert_eq!(r.json()["email"].as_str(), Some(email.as_str()));
                }
                None => assert_eq!(r.status, 404, "user {id} does not exist: {}", r.text()),
            }
        }
        let metrics = s.get("/metrics").text();
        let batched: u64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix("db_batched_reads_total "))
            .and_then(|v| v.parse().ok())
            .expect("db_batched_reads_total is exported");
        if batch == "on" {
            assert!(batched >= 2, "16 reads behind one slow read are batched ({driver}): {batched}");
        } else {
            assert_eq!(batched, 0, "DB_BATCH_READS=off runs them one by one");
        }
    }
}

/// Writers keep creating users while PostgreSQL is stopped and started again: every 201 is
/// in the database afterwards, nothing hangs past HANDLER_TIMEOUT, failures are 503 with
/// Retry-After, readiness follows the store, and the server recovers by itself.
#[test]
fn writes_under_load_across_a_postgres_restart_lose_nothing_acknowledged() {
    let Some(cluster) = PrivateCluster::create() else { return };
    let handler_timeout = Duration::from_secs(3);
    for driver in drivers() {
        let s = Server::start(
            driver,
            &[("DATABASE_URL", &cluster.url()), ("DB_POOL_SIZE", "3"), ("HANDLER_TIMEOUT", "3s")],
        );
        s.wait_ready();
        let stop_writing = std::sync::atomic::AtomicBool::new(false);
        type Outcome = (String, u16, Option<String>, Duration);
        let (outcomes, readiness): (Vec<Outcome>, Vec<(&str, u16)>) = std::thread::scope(|scope| {
            let writers: Vec<_> = (0..4)
                .map(|w| {
                    let (s, stop) = (&s, &stop_writing);
                    scope.spawn(move || {
                        let mut seen = Vec::new();
                        let mut c = s.connect();
                        for n in 0.. {
                            if stop.load(std::sync::atomic::Ordering::Relaxed) {
                                break;
                            }
                            let email = format!("w{w}-{n}-{driver}@example.com");
                            let body = format!(r#"{{"name":"N","email":"{email}"}}"#);
                            let began = Instant::now();
                            let r = match c.call("POST", "/api/v1/users", Some(&body)) {
                                Some(r) => r,
                                None => {
                                    c = s.connect();
                                    continue;
                                }
                            };
                            seen.push((email, r.status, r.header("retry-after").map(str::to_owned), began.elapsed()));
                            if r.header("connection") == Some("close") {
                                c = s.connect();
                            }
                        }
                        seen
                    })
                })
                .collect();
            std::thread::sleep(Duration::from_millis(1500));
            cluster.stop();
            let mut readiness = Vec::new();
            let down = Instant::now();
            while down.elapsed() < Duration::from_secs(2) {
                readiness.push(("down", s.get("/readyz").status));
                std::thread::sleep(Duration::from_millis(200));
            }
            cluster.start();
            let up = Instant::now();
            while up.elapsed() < Duration::from_secs(10) {
                let status = s.get("/readyz").status;
                readiness.push(("up", status));
                if status == 200 {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            std::thread::sleep(Duration::from_millis(1500));
            stop_writing.store(true, std::sync::atomic::Ordering::Relaxed);
            let outcomes: Vec<_> = writers.into_iter().flat_map(|h| h.join().unwrap()).collect();
            (outcomes, readiness)
        });
        let created: Vec<&String> = outcomes.iter().filter(|o| o.1 == 201).map(|o| &o.0).collect();
        let failed = outcomes.iter().filter(|o| o.1 == 503).count();
        for (email, status, retry, took) in &outcomes {
            assert!(*status == 201 || *status == 503, "{email}: {status} ({driver})");
            if *status == 503 {
                assert_eq!(retry.as_deref(), Some("1"), "503 carries Retry-After");
            }
            assert!(*took < handler_timeout + Duration::from_secs(1), "{email} took {took:?}: past HANDLER_TIMEOUT");
        }
        assert!(failed > 0, "the outage was seen ({driver})");
        assert!(readiness.iter().any(|r| *r == ("down", 503)), "readiness follows the store down: {readiness:?}");
        assert_eq!(readiness.last().map(|r| r.1), Some(200), "and back up: {readiness:?}");
        let after_restart = <[Outcome]>::iter(&outcomes).rev().take_while(|o| o.1 == 201).count();
        assert!(after_restart > 0, "writes succeed again without a restart ({driver})");
        let mut db = postgres::Client::connect(&cluster.url(), postgres::NoTls).unwrap();
        let emails: Vec<&str> = created.iter().map(|e| e.as_str()).collect();
        let stored: i64 = db.query_one("SELECT count(*) FROM users WHERE email = ANY($1)", &[&emails]).unwrap().get(0);
        assert_eq!(stored, created.len() as i64, "every acknowledged write is in the database ({driver})");
        eprintln!(
            "{driver}: {} writes across a PostgreSQL restart: {} acknowledged (all stored), {failed} answered 503",
            outcomes.len(),
            created.len()
        );
    }
}

/// The client library's own words for a server error are "db error"; the log must carry
/// what the server said (SQLSTATE, message), the metrics its class — and the client only
/// the contract's plain 500, with nothing from the database in it.
#[test]
fn database_errors_are_logged_with_what_the_server_said_and_counted_by_class() {
    let Some(db) = TestDatabase::create() else { return };
    // One pool thread: ready then means the only connection has prepared its statements.
    // With more, a thread still connecting when the table is dropped meets 42P01 in its
    // own prepare, and class 42 is (rightly) counted twice.
    let s = Server::start(drivers()[0], &[("DATABASE_URL", &db.url), ("DB_POOL_SIZE", "1")]);
    s.wait_ready();
    db.client().batch_execute("DROP TABLE users CASCADE").unwrap();
    let r = s.get("/api/v1/users/1");
    assert_eq!(r.status, 500);
    assert_eq!(r.text(), r#"{"status":"error","code":500,"message":"Internal Server Error"}"#);
    assert!(
        s.wait_for_log(r#"ERROR 42P01: relation "users" does not exist"#, Duration::from_secs(5)),
        "the log names the SQLSTATE and the server's message:\n{}",
        s.logs()
    );
    let metrics = s.get("/metrics").text();
    let line = metrics.lines().find(|l| l.starts_with("db_store_errors_total{class=\"42\"} ")).unwrap_or_else(|| {
        panic!(
            "errors counted by SQLSTATE class:\n{}",
            metrics.lines().filter(|l| l.contains("db_")).collect::<Vec<_>>().join("\n")
        )
    });
    assert!(line.ends_with(" 1"), "{line}");

    // A connection refused by the server says why, with its SQLSTATE (3D000), in the log
    // and in the readiness reason an operator reads.
    let missing = crate::common::pg::with_database(&crate::common::pg::admin_url(), "percore_no_such_database");
    let s = Server::start(drivers()[0], &[("DATABASE_URL", &missing)]);
    assert!(
        s.wait_for_log(r#"3D000: database "percore_no_such_database" does not exist"#, Duration::from_secs(5)),
        "{}",
        s.logs()
    );
    let ready = s.get("/readyz");
    assert_eq!(ready.status, 503);
    assert!(ready.text().contains("3D000"), "{}", ready.text());
    let metrics = s.get("/metrics").text();
    assert!(metrics.contains("db_store_errors_total{class=\"3D\"} "), "{metrics}");
}
