//! Three replicas behind a real haproxy (Debian's), one PostgreSQL, a rolling restart under
//! load, done the two ways deployments do it:
//!
//! - **Kubernetes' way.** The endpoint is taken out of the balancer first (haproxy's
//!   runtime API: `state maint`), a preStop-like pause, then SIGTERM.
//! - **No preStop hook** (docker compose, Nomad, ECS, a VM behind haproxy). SIGTERM at
//!   once, and the balancer learns from its health check on /readyz. `SHUTDOWN_DELAY`
//!   keeps the replica serving until it has.
//!
//! In both, haproxy has `retries 0` and no redispatch, so a request that meets a closed
//! door fails visibly. Every request must succeed, and every acknowledged write must be
//! in the database afterwards.

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::pg::{free_port, TestDatabase};
use crate::common::{Client, Server};
use simd_json::prelude::*;

const REPLICAS: usize = 3;
const CLIENTS: usize = 16;

struct Haproxy {
    dir: std::path::PathBuf,
    port: u16,
    child: Child,
}

impl Haproxy {
    fn start(backends: &[u16]) -> Option<Haproxy> {
        if Command::new("haproxy").arg("-v").output().is_err() {
            assert!(std::env::var("CI").as_deref() != Ok("true"), "haproxy is required under CI");
            eprintln!("\n*** haproxy not installed: fleet tests SKIPPED ***\n");
            return None;
        }
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("percore-haproxy-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let servers: String = backends
            .iter()
            .enumerate()
            .map(|(i, p)| format!("    server r{i} 127.0.0.1:{p} check inter 500ms fall 1 rise 1\n"))
            .collect();
        let config = format!(
            "global\n    stats socket {sock} level admin\n\ndefaults\n    mode http\n    retries 0\n    \
             timeout connect 1s\n    timeout client 10s\n    timeout server 10s\n\n\
             frontend api\n    bind 127.0.0.1:{port}\n    default_backend replicas\n\n\
             backend replicas\n    balance roundrobin\n    option httpchk GET /readyz\n    \
             http-check expect status 200\n{servers}",
            sock = dir.join("admin.sock").display()
        );
        std::fs::write(dir.join("haproxy.cfg"), config).unwrap();
        let child = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(dir.join("haproxy.cfg"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut haproxy = Haproxy { dir, port, child };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::os::unix::net::UnixStream::connect(haproxy.dir.join("admin.sock")).is_err() {
            let exited = haproxy.child.try_wait().unwrap();
            assert!(exited.is_none() && Instant::now() < deadline, "haproxy did not start ({exited:?})");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(), "haproxy listens");
        Some(haproxy)
    }

    /// A command on haproxy's runtime API; returns its answer.
    fn admin(&self, command: &str) -> String {
        let mut sock = std::os::unix::net::UnixStream::connect(self.dir.join("admin.sock")).unwrap();
        sock.write_all(format!("{command}\n").as_bytes()).unwrap();
        let mut out = String::new();
        std::io::Read::read_to_string(&mut sock, &mut out).unwrap();
        out
    }

    /// Whether haproxy's health check has replica `i` up.
    fn is_up(&self, i: usize) -> bool {
        let stat = self.admin("show stat");
        stat.lines().filter(|l| l.starts_with("replicas,")).any(|l| {
            let f: Vec<&str> = l.split(',').collect();
            f[1] == format!("r{i}") && f[17] == "UP"
        })
    }

    fn wait_up(&self, i: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.is_up(i) {
            assert!(Instant::now() < deadline, "haproxy never saw replica {i} up:\n{}", self.admin("show stat"));
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What the clients saw.
#[derive(Default)]
struct Tally {
    answered: usize,
    failed: Vec<String>,
    created: Vec<i64>,
}

/// CLIENTS keep-alive clients through haproxy until `stop`: 70% GET of a user they made,
/// 30% POST.
fn load(
    addr: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
    tally: Arc<Mutex<Tally>>,
) -> Vec<std::thread::JoinHandle<()>> {
    (0..CLIENTS)
        .map(|c| {
            let (stop, tally) = (stop.clone(), tally.clone());
            std::thread::spawn(move || {
                let mut conn = Client::connect(addr);
                let mut mine: Vec<i64> = Vec::new();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let write = mine.is_empty() || n % 10 < 3;
                    let r = if write {
                        let body =
                            format!(r#"{{"name":"F {c} {n}","email":"f-{c}-{n}-{}@example.com"}}"#, std::process::id());
                        conn.call("POST", "/api/v1/users", Some(&body))
                    } else {
                        let id = mine[(n as usize) % mine.len()];
                        conn.call("GET", &format!("/api/v1/users/{id}"), None)
                    };
                    let reconnect = r.as_ref().is_none_or(|r| r.header("connection") == Some("close"));
                    let mut t = tally.lock().unwrap();
                    t.answered += 1;
                    match r {
                        Some(r) if write && r.status == 201 => {
                            let id = r.json()["id"].as_i64().unwrap();
                            mine.push(id);
                            t.created.push(id);
                        }
                        Some(r) if !write && r.status == 200 => {}
                        Some(r) => t.failed.push(format!("{} {}", r.status, r.text())),
                        None => t.failed.push("no answer".to_owned()),
                    }
                    drop(t);
                    if reconnect {
                        conn = Client::connect(addr);
                    }
                }
            })
        })
        .collect()
}

fn rolling_restart(shutdown_delay: &str, take_out_first: bool) {
    // One fleet at a time: each holds fixed ports (a replacement binds its predecessor's),
    // which a fleet starting alongside could take, and two fleets would share two cores.
    static SERIAL: Mutex<()> = Mutex::new(());
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let Some(db) = TestDatabase::create() else { return };
    let ports: Vec<u16> = (0..REPLICAS).map(|_| free_port()).collect();
    let env = |port: &u16| -> Vec<(String, String)> {
        vec![
            ("DATABASE_URL".into(), db.url.clone()),
            ("SERVER_PORT".into(), port.to_string()),
            ("WORKERS".into(), "1".into()),
            ("DB_POOL_SIZE".into(), "2".into()),
            ("SHUTDOWN_DELAY".into(), shutdown_delay.into()),
        ]
    };
    let start = |port: &u16| {
        let env = env(port);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let s = Server::start(crate::common::drivers()[0], &env);
        s.wait_ready();
        s
    };
    let mut replicas: Vec<Server> = ports.iter().map(start).collect();
    let Some(haproxy) = Haproxy::start(&ports) else { return };
    (0..REPLICAS).for_each(|i| haproxy.wait_up(i));

    let addr = format!("127.0.0.1:{}", haproxy.port).parse().unwrap();
    let (stop, tally) = (Arc::new(AtomicBool::new(false)), Arc::new(Mutex::new(Tally::default())));
    let clients = load(addr, stop.clone(), tally.clone());
    std::thread::sleep(Duration::from_secs(1));
    for i in 0..REPLICAS {
        if take_out_first {
            // Kubernetes removes the endpoint, then the preStop pause, then SIGTERM.
            assert!(haproxy.admin(&format!("set server replicas/r{i} state maint")).trim().is_empty());
            std::thread::sleep(Duration::from_secs(1));
        }
        let old = &mut replicas[i];
        old.signal(libc::SIGTERM);
        let exit = old.wait_exit(Duration::from_secs(15));
        assert_eq!(exit.and_then(|e| e.code()), Some(0), "replica {i}:\n{}", old.logs());
        replicas[i] = start(&ports[i]);
        if take_out_first {
            haproxy.admin(&format!("set server replicas/r{i} state ready"));
        }
        haproxy.wait_up(i);
        std::thread::sleep(Duration::from_millis(500));
    }
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    clients.into_iter().for_each(|c| c.join().unwrap());

    let t = tally.lock().unwrap();
    assert!(t.answered > 500, "the load ran: {}", t.answered);
    assert!(
        t.failed.is_empty(),
        "{} of {} requests failed during the rolling restart; first: {:?}",
        t.failed.len(),
        t.answered,
        t.failed.first()
    );
    let mut client = db.client();
    let found: i64 = client.query_one("SELECT count(*) FROM users WHERE id = ANY($1)", &[&t.created]).unwrap().get(0);
    assert_eq!(found as usize, t.created.len(), "every acknowledged write is in the database");
    eprintln!(
        "rolling restart ({shutdown_delay} delay, taken out first: {take_out_first}): {} requests, {} writes, 0 failed",
        t.answered,
        t.created.len()
    );
}

#[test]
fn a_rolling_restart_the_kubernetes_way_fails_nothing() {
    rolling_restart("0s", true);
}

#[test]
fn a_rolling_restart_without_a_prestop_hook_fails_nothing_with_a_shutdown_delay() {
    rolling_restart("2s", false);
}
