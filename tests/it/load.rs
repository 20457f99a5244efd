//! The server under load and under siege, over real sockets: a drain in the middle of a wrk
//! run at 256 connections, 1,000 slowloris connections beside a normal client, and 10,000
//! keep-alive connections open at once. Throughput and latency figures come from perf/
//! (perf/siege.py); these tests check what must hold: nothing lost, everything closed on
//! time, everything served.

use std::io::Read;
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{drivers, Client, Server};

/// Lets this process (and the server it starts, which inherits it) open as many
/// descriptors as the hard limit allows.
fn raise_fd_limit() -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit with a valid struct.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
    lim.rlim_cur
}

fn wrk() -> Option<&'static str> {
    let found = Command::new("wrk").arg("--version").output().is_ok();
    if !found {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "wrk is required under CI");
        eprintln!("\n*** wrk not installed: load test SKIPPED ***\n");
    }
    found.then_some("wrk")
}

/// The number after `label` in one line of wrk's report, e.g. `read 3` in `Socket errors: connect 0, read 3, …`.
fn wrk_count(report: &str, label: &str) -> u64 {
    report
        .split(label)
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).find(|s| !s.is_empty()))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[test]
fn sigterm_under_a_256_connection_wrk_load_loses_no_request() {
    let Some(wrk) = wrk() else { return };
    raise_fd_limit();
    for driver in drivers() {
        let mut s = Server::start(driver, &[("SHUTDOWN_TIMEOUT", "10s"), ("WORKERS", "2")]);
        let url = format!("http://{}/health", s.addr);
        let load = Command::new(wrk).args(["-t2", "-c256", "-d4s", "--timeout", "3s", &url]).output();
        // wrk runs in its own process; signal the server in the middle of its run.
        let handle = std::thread::spawn(move || load);
        std::thread::sleep(Duration::from_millis(1500));
        let signalled = Instant::now();
        s.signal(libc::SIGTERM);
        let status = s.wait_exit(Duration::from_secs(12)).expect("exits within SHUTDOWN_TIMEOUT");
        let took = signalled.elapsed();
        let out = handle.join().unwrap().expect("wrk runs");
        let report = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(status.code(), Some(0), "exit 0 after the drain ({driver}):\n{}", s.logs());
        assert!(took < Duration::from_secs(10), "drained within SHUTDOWN_TIMEOUT: {took:?}");
        let served: u64 = report
            .lines()
            .find_map(|l| {
                l.trim()
                    .strip_suffix("requests in")
                    .or_else(|| l.split(" requests in").next().filter(|_| l.contains(" requests in")))
            })
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0);
        assert!(served > 1000, "the load ran ({driver}):\n{report}");
        let socket_errors = report.lines().find(|l| l.contains("Socket errors:")).unwrap_or("");
        let non_2xx = report.lines().find(|l| l.contains("Non-2xx or 3xx responses:")).unwrap_or("");
        for (line, label) in
            [(socket_errors, "read "), (socket_errors, "write "), (socket_errors, "timeout "), (non_2xx, "responses: ")]
        {
            assert_eq!(wrk_count(line, label), 0, "{label}must be 0 ({driver}); refused connects are fine:\n{report}");
        }
        eprintln!(
            "{driver}: drained in {took:?} under load; wrk: {}",
            report
                .lines()
                .filter(|l| l.contains("errors") || l.contains("requests in"))
                .collect::<Vec<_>>()
                .join(" | ")
        );
    }
}

#[test]
fn a_thousand_slowloris_connections_are_closed_by_the_read_timeout_while_others_are_served() {
    raise_fd_limit();
    for driver in drivers() {
        let s = Server::start(driver, &[("SERVER_READ_TIMEOUT", "3s"), ("WORKERS", "2")]);
        let began = Instant::now();
        let mut slow: Vec<TcpStream> = (0..1000)
            .map(|_| {
                let c = TcpStream::connect(s.addr).expect("connect");
                c.set_nonblocking(true).unwrap();
                c
            })
            .collect();
        let request = b"GET /health HTTP/1.1\r\nHost: t\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
        let mut normal = s.connect();
        let mut served = 0;
        let mut closed = vec![false; slow.len()];
        let mut step = 0;
        // One byte per connection per second, as slowloris does, while a normal client runs.
        while began.elapsed() < Duration::from_secs(8) && closed.iter().any(|c| !c) {
            for (i, c) in slow.iter_mut().enumerate() {
                if closed[i] {
                    continue;
                }
                use std::io::Write;
                let _ = c.write(&request[step.min(request.len() - 1)..][..1]);
                let mut buf = [0u8; 512];
                match c.read(&mut buf) {
                    Ok(0) => closed[i] = true,
                    Ok(n) => {
                        assert!(buf[..n].starts_with(b"HTTP/1.1 408"), "{:?}", String::from_utf8_lossy(&buf[..n]));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => closed[i] = true,
                }
            }
            step += 1;
            let second = Instant::now();
            while second.elapsed() < Duration::from_secs(1) {
                normal.send(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n");
                assert_eq!(normal.response().expect("the normal client is served").status, 200);
                served += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        let open = closed.iter().filter(|c| !**c).count();
        assert_eq!(open, 0, "{open} slowloris connections outlived SERVER_READ_TIMEOUT ({driver})");
        assert!(began.elapsed() < Duration::from_secs(8), "closed at the read timeout, not later");
        assert!(served > 100, "the normal client kept being served: {served}");
    }
}

#[test]
fn ten_thousand_keep_alive_connections_are_all_served() {
    let limit = raise_fd_limit();
    assert!(limit >= 10_500 || std::env::var("CI").as_deref() != Ok("true"), "the fd limit {limit} is too low");
    let n = 10_000.min(limit.saturating_sub(500) as usize);
    let driver = drivers()[0];
    let s = Server::start(driver, &[("WORKERS", "2")]);
    let rss = |pid: u32| -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .unwrap()
            .trim()
            .trim_end_matches(" kB")
            .parse::<u64>()
            .unwrap()
            * 1024
    };
    assert_eq!(s.get("/health").status, 200);
    let before = rss(s.pid());
    let mut clients: Vec<Client> = Vec::with_capacity(n);
    for _ in 0..n {
        let mut c = s.connect();
        c.send(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(c.response().expect("served").status, 200);
        clients.push(c);
    }
    std::thread::sleep(Duration::from_millis(1500)); // idle connections park
    let per_conn = rss(s.pid()).saturating_sub(before) / n as u64;
    // Every one of them is still open and answers again.
    for c in &mut clients {
        c.send(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n");
    }
    for c in &mut clients {
        assert_eq!(c.response().expect("served again").status, 200);
    }
    eprintln!("{driver}: {n} keep-alive connections open and served; {per_conn} bytes of RSS per idle connection");
    assert!(per_conn < 8192, "an idle connection costs {per_conn} bytes (perf/memory.py measures it precisely)");
}

/// io_uring completes one accept a loop turn, so after each the worker takes what else is
/// queued, up to 64, without waiting (`accept_queued`). The server is stopped while 200
/// clients connect and send a request, so all of them are in the backlog when it resumes:
/// on io_uring the first accept is followed by a batch of exactly 64, and on either driver
/// every one of the 200 is answered.
#[test]
fn connections_queued_while_the_worker_could_not_run_are_taken_in_batches_and_all_served() {
    const CLIENTS: usize = 200;
    for driver in drivers() {
        let s = Server::start(driver, &[("WORKERS", "1"), ("RUST_LOG", "info,percore::net::listener=debug")]);
        assert_eq!(s.get("/health").status, 200);
        s.signal(libc::SIGSTOP);
        wait_until_stopped(s.pid());
        let mut clients: Vec<Client> = (0..CLIENTS)
            .map(|_| {
                let mut c = s.connect();
                c.send(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n");
                c
            })
            .collect();
        s.signal(libc::SIGCONT);
        for (n, c) in clients.iter_mut().enumerate() {
            let r = c.response().unwrap_or_else(|| panic!("{driver}: client {n} of {CLIENTS} was not answered"));
            assert_eq!(r.status, 200, "{driver}: client {n}");
        }
        let logs = s.logs();
        let batches: Vec<usize> = logs
            .lines()
            .filter_map(|l| l.split("took ").nth(1)?.split(" more queued connections").next()?.parse().ok())
            .collect();
        eprintln!("{driver}: {CLIENTS} queued clients served; batches after an accept: {batches:?}");
        if driver == "io_uring" {
            assert_eq!(batches.first(), Some(&64), "the first accept is followed by a full batch: {batches:?}\n{logs}");
            assert!(batches.iter().all(|&b| b <= 64), "no batch beyond its cap: {batches:?}");
            // Each batch follows one accept of the loop's own.
            assert!(batches.iter().sum::<usize>() + batches.len() <= CLIENTS, "{batches:?}");
        } else {
            assert!(batches.is_empty(), "epoll's accept takes the backlog itself: {batches:?}");
        }
    }
}

/// Waits until every thread of `pid` is stopped: a signal is delivered to each thread on
/// its own time, and a worker still running would accept the clients one by one.
fn wait_until_stopped(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
        let stopped = tasks.filter_map(Result::ok).all(|t| {
            let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
            // The state follows the command name's closing parenthesis.
            stat.rsplit(')').next().and_then(|rest| rest.split_whitespace().next()) == Some("T")
        });
        if stopped {
            return;
        }
        assert!(Instant::now() < deadline, "percore did not stop within 5 s");
        std::thread::sleep(Duration::from_millis(5));
    }
}
