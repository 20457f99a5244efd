//! The process around the requests: workers and their threads, the driver choice and its
//! fallback, the connection cap, running out of descriptors, and the graceful drain.

use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

use crate::common::{drivers, each_driver, Client, Server};

/// `comm` → what `read` makes of the thread's /proc directory, for every thread of `pid`.
fn per_thread<T>(pid: u32, read: impl Fn(&std::path::Path) -> T) -> Vec<(String, T)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap().flatten() {
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default().trim().to_owned();
        out.push((comm, read(&entry.path())));
    }
    out
}

/// `comm` → `Cpus_allowed_list` of every thread of `pid`.
fn threads(pid: u32) -> Vec<(String, String)> {
    per_thread(pid, |dir| {
        let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
        status.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:")).unwrap_or("").trim().to_owned()
    })
}

#[test]
fn one_named_thread_per_worker_and_the_plan_is_logged() {
    each_driver(&[("WORKERS", "2"), ("PIN_WORKERS", "off")], |s| {
        let names: Vec<String> = threads(s.pid()).into_iter().map(|(n, _)| n).collect();
        assert!(names.contains(&"percore-w0".to_owned()) && names.contains(&"percore-w1".to_owned()), "{names:?}");
        assert!(!names.contains(&"percore-w2".to_owned()));
        assert!(s.logs().contains("2 workers on CPUs") && s.logs().contains("not pinned"), "{}", s.logs());
    });
}

#[test]
fn pinned_workers_run_on_one_cpu_each() {
    let cpus = percore::runtime::cpus::affinity_mask().unwrap();
    if cpus.len() < 2 {
        eprintln!("*** one CPU here: pinning test skipped ***");
        return;
    }
    each_driver(&[("WORKERS", "2"), ("PIN_WORKERS", "on")], |s| {
        let threads = threads(s.pid());
        let cpu_of = |name: &str| threads.iter().find(|(n, _)| n == name).map(|(_, c)| c.clone()).unwrap();
        assert_eq!(cpu_of("percore-w0"), cpus[0].to_string());
        assert_eq!(cpu_of("percore-w1"), cpus[1].to_string());
        assert!(s.logs().contains(", pinned, "), "{}", s.logs());
    });
}

/// `comm` → the slice the fair scheduler gives each thread of `pid`, in ns (`se.slice` of
/// its /proc sched file; absent before Linux 6.6).
fn slices(pid: u32) -> Vec<(String, Option<u64>)> {
    per_thread(pid, |dir| slice_in(&dir.join("sched")))
}

fn slice_in(sched: &std::path::Path) -> Option<u64> {
    let text = std::fs::read_to_string(sched).ok()?;
    let line = text.lines().find(|l| l.starts_with("se.slice"))?;
    line.rsplit(':').next()?.trim().parse().ok()
}

/// The workers ask the kernel for WORKER_SLICE and get it; the pool threads keep the
/// kernel's own; `off`, the default, leaves the workers at the kernel's too.
#[test]
fn workers_run_with_the_slice_they_ask_for() {
    let Some(kernels) = slice_in(std::path::Path::new("/proc/thread-self/sched")) else {
        eprintln!("*** this kernel reports no se.slice: slice test skipped ***");
        return;
    };
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut version = release.trim().split(['.', '-']).map(|p| p.parse::<u32>().unwrap_or(0));
    if (version.next().unwrap_or(0), version.next().unwrap_or(0)) < (6, 12) {
        eprintln!("*** Linux {release} keeps its own slices: slice test skipped ***");
        return;
    }
    let of = |s: &Server, prefix: &str| -> Vec<Option<u64>> {
        slices(s.pid()).into_iter().filter(|(n, _)| n.starts_with(prefix)).map(|(_, v)| v).collect()
    };
    for (setting, want) in [(Some("100us"), 100_000), (Some("5ms"), 5_000_000), (None, kernels), (Some("off"), kernels)]
    {
        let mut env = vec![("WORKERS", "2"), ("DB_POOL_SIZE", "2")];
        env.extend(setting.map(|v| ("WORKER_SLICE", v)));
        let s = Server::start(drivers()[0], &env);
        s.wait_ready();
        assert_eq!(of(&s, "percore-w"), vec![Some(want); 2], "WORKER_SLICE={setting:?}");
        assert_eq!(of(&s, "percore-db"), vec![Some(kernels); 2], "pool threads, WORKER_SLICE={setting:?}");
        let logged = s.logs().contains("workers run in CPU slices of");
        assert_eq!(logged, want != kernels, "WORKER_SLICE={setting:?}: {}", s.logs());
    }
}

/// Installs a seccomp filter that fails io_uring_setup with EPERM, as containerd 2.0+ and
/// Docker 25+ do by default.
fn block_io_uring(cmd: &mut std::process::Command) {
    const IO_URING_SETUP: u32 = 425;
    // SAFETY: runs in the child between fork and exec; only async-signal-safe prctl calls on
    // a filter program that lives on this stack frame until the call returns.
    unsafe {
        cmd.pre_exec(|| {
            let filter = [
                libc::sock_filter { code: 0x20, jt: 0, jf: 0, k: 0 }, // ld [nr]
                libc::sock_filter { code: 0x15, jt: 0, jf: 1, k: IO_URING_SETUP }, // jeq io_uring_setup
                libc::sock_filter { code: 0x06, jt: 0, jf: 0, k: 0x0005_0000 | libc::EPERM as u32 }, // ret ERRNO(EPERM)
                libc::sock_filter { code: 0x06, jt: 0, jf: 0, k: 0x7fff_0000 }, // ret ALLOW
            ];
            let prog = libc::sock_fprog { len: filter.len() as u16, filter: filter.as_ptr() as *mut _ };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(libc::PR_SET_SECCOMP, 2, &prog as *const _ as usize, 0, 0) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[test]
fn auto_falls_back_to_epoll_when_seccomp_blocks_io_uring() {
    let s = Server::start_with("auto", &[], block_io_uring);
    assert!(s.logs().contains("Operation not permitted") && s.logs().contains("using epoll"), "{}", s.logs());
    assert!(s.logs().contains(", epoll"), "{}", s.logs());
    assert_eq!(s.get("/health").status, 200);
}

#[test]
fn forced_io_uring_that_is_blocked_fails_the_start() {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_percore"));
    cmd.env_clear()
        .env("SERVER_HOST", "127.0.0.1")
        .env("SERVER_PORT", "0")
        .env("DEBUG_ADDR", "")
        .env("IO_DRIVER", "io_uring");
    block_io_uring(&mut cmd);
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("IO_DRIVER=io_uring") && err.contains("Operation not permitted"), "{err}");
}

#[test]
fn accepting_pauses_at_max_connections_and_resumes() {
    each_driver(&[("MAX_CONNECTIONS", "2")], |s| {
        let mut a = s.connect();
        let mut b = s.connect();
        for c in [&mut a, &mut b] {
            c.send(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n");
            assert_eq!(c.response().unwrap().status, 200);
        }
        // The third waits in the kernel's backlog, unanswered.
        let mut third = s.connect();
        third.send(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n");
        third.stream.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
        let mut probe = [0u8; 1];
        let before = s.cpu_seconds();
        assert!(crate::common::read_retrying(&mut third.stream, &mut probe).is_err(), "no answer past MAX_CONNECTIONS");
        let used = s.cpu_seconds() - before;
        assert!(used < 0.15, "a paused accept loop must not spin: {used:.2} CPU s in 0.5 s");
        third.stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        drop(a);
        let r = third.response().expect("served once a connection closed");
        assert_eq!(r.status, 200);
        drop(b);
    });
}

fn limit_fds(cmd: &mut std::process::Command) {
    // SAFETY: setrlimit in the child before exec.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit { rlim_cur: 48, rlim_max: 48 };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[test]
fn running_out_of_descriptors_backs_off_without_spinning_and_recovers() {
    for driver in drivers() {
        let s = Server::start_with(driver, &[("WORKERS", "1")], limit_fds);
        let mut clients: Vec<Client> = (0..80).map(|_| s.connect()).collect();
        assert!(s.wait_for_log("Too many open files", Duration::from_secs(3)), "{}", s.logs());
        let before = s.cpu_seconds();
        std::thread::sleep(Duration::from_secs(1));
        let used = s.cpu_seconds() - before;
        assert!(used < 0.3, "the accept loop must not spin at EMFILE: {used:.2} CPU s in 1 s ({driver})");
        // Connections that were accepted are served meanwhile.
        clients[0].send(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(clients[0].response().unwrap().status, 200);
        clients.clear();
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(s.get("/health").status, 200, "service resumes ({driver})");
    }
}

#[test]
fn sigterm_drains_in_flight_requests_and_exits_0() {
    for driver in drivers() {
        let mut s = Server::start(driver, &[("SHUTDOWN_TIMEOUT", "10s")]);
        let addr = s.addr;
        let mut idle = s.connect();
        idle.send(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(idle.response().unwrap().status, 200);
        let mut keep = s.connect();
        keep.send(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(keep.response().unwrap().status, 200);
        let mut busy = s.connect();
        busy.send(b"GET /__test/sleep?ms=1500 HTTP/1.1\r\nHost: t\r\n\r\n");
        std::thread::sleep(Duration::from_millis(200));

        let signalled = Instant::now();
        s.signal(libc::SIGTERM);
        std::thread::sleep(Duration::from_millis(50));
        // Readiness turns at once, and the keep-alive connection is told to close.
        keep.send(b"GET /readyz HTTP/1.1\r\nHost: t\r\n\r\n");
        let ready = keep.response().unwrap();
        assert_eq!(ready.status, 503, "{driver}");
        assert!(ready.json()["message"].to_string().contains("draining"));
        assert_eq!(ready.header("connection"), Some("close"));
        // Within a sweep tick each worker takes what is queued on its listener and closes it:
        // new connections are refused from then on.
        let refused = (0..40).any(|_| {
            std::thread::sleep(Duration::from_millis(25));
            TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err()
        });
        assert!(refused, "new connections refused within a second ({driver})");
        // The idle connection is closed without a request.
        assert!(idle.closed_within(Duration::from_secs(3)), "idle connection closed ({driver})");
        // The request in flight finishes, with Connection: close.
        let r = busy.response().expect("the in-flight request is answered");
        assert_eq!((r.status, r.text().as_str()), (200, "slept"));
        assert_eq!(r.header("connection"), Some("close"));
        let status = s.wait_exit(Duration::from_secs(5)).expect("exits after the drain");
        assert_eq!(status.code(), Some(0), "{}", s.logs());
        assert!(signalled.elapsed() < Duration::from_secs(5));
        assert!(s.logs().contains("SIGTERM received: draining") && s.logs().contains("drained"), "{}", s.logs());
    }
}

/// SHUTDOWN_DELAY: for balancers that learn from health checks, with no preStop hook to
/// wait for them. Not ready at once, yet new connections are still accepted and served
/// (each told to close) until the delay is over; then the drain as usual.
#[test]
fn shutdown_delay_keeps_serving_new_connections_while_not_ready() {
    for driver in drivers() {
        let mut s = Server::start(driver, &[("SHUTDOWN_DELAY", "1500ms")]);
        let addr = s.addr;
        let mut keep = s.connect();
        keep.send(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(keep.response().unwrap().status, 200);

        let signalled = Instant::now();
        s.signal(libc::SIGTERM);
        std::thread::sleep(Duration::from_millis(100));
        keep.send(b"GET /readyz HTTP/1.1\r\nHost: t\r\n\r\n");
        let ready = keep.response().unwrap();
        assert_eq!(ready.status, 503, "{driver}: not ready at once");
        assert_eq!(ready.header("connection"), Some("close"));
        // New connections during the delay: accepted and answered, each closed after.
        let mut served = 0;
        while signalled.elapsed() < Duration::from_millis(1200) {
            let mut c = Client::connect(addr);
            c.send(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n");
            let r = c.response().expect("a new connection is served during the delay");
            assert_eq!((r.status, r.header("connection")), (200, Some("close")), "{driver}");
            served += 1;
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(served >= 10, "{served}");
        // After it, the drain: listeners close, the process exits 0.
        let refused = (0..80).any(|_| {
            std::thread::sleep(Duration::from_millis(25));
            TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err()
        });
        assert!(refused, "{driver}: refused after the delay");
        assert!(signalled.elapsed() >= Duration::from_millis(1500), "not before the delay is over");
        assert_eq!(s.wait_exit(Duration::from_secs(5)).and_then(|st| st.code()), Some(0), "{}", s.logs());
        assert!(s.logs().contains("SHUTDOWN_DELAY"), "{}", s.logs());
    }
}

#[test]
fn sigint_drains_too() {
    for driver in drivers() {
        let mut s = Server::start(driver, &[]);
        s.signal(libc::SIGINT);
        assert_eq!(s.wait_exit(Duration::from_secs(5)).and_then(|st| st.code()), Some(0));
        assert!(s.logs().contains("SIGINT received"));
    }
}

#[test]
fn the_shutdown_timeout_cuts_what_is_left_and_says_how_much() {
    for driver in drivers() {
        let mut s = Server::start(driver, &[("SHUTDOWN_TIMEOUT", "1s")]);
        let mut busy = s.connect();
        busy.send(b"GET /__test/sleep?ms=20000 HTTP/1.1\r\nHost: t\r\n\r\n");
        std::thread::sleep(Duration::from_millis(200));
        let signalled = Instant::now();
        s.signal(libc::SIGTERM);
        let status = s.wait_exit(Duration::from_secs(5)).expect("exits at the deadline");
        assert_eq!(status.code(), Some(0));
        let took = signalled.elapsed();
        assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(3), "{took:?}");
        assert!(s.logs().contains("cutting 1 connections"), "{}", s.logs());
    }
}

/// The drain resets nothing: twenty bare SIGTERMs (no SHUTDOWN_DELAY), each while clients
/// keep connecting and sending on keep-alive connections. Every request written on an
/// established connection is answered; a client finds the port closed (refused, or its SYN
/// unanswered until it is), never a reset after its request went out.
#[test]
fn twenty_bare_drains_under_reconnecting_clients_lose_no_request() {
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    for driver in drivers() {
        let (mut answered, mut refused) = (0, 0);
        for round in 0..20 {
            let mut s = Server::start(driver, &[("SHUTDOWN_TIMEOUT", "5s")]);
            let addr = s.addr;
            let stop = Arc::new(AtomicBool::new(false));
            let (ok, gone) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
            let lost = Arc::new(Mutex::new(Vec::<String>::new()));
            let clients: Vec<_> = (0..4)
                .map(|_| {
                    let (stop, ok, gone, lost) = (stop.clone(), ok.clone(), gone.clone(), lost.clone());
                    std::thread::spawn(move || {
                        'connect: while !stop.load(Ordering::Relaxed) {
                            let Ok(mut c) = TcpStream::connect_timeout(&addr, Duration::from_secs(3)) else {
                                gone.fetch_add(1, Ordering::Relaxed);
                                return;
                            };
                            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                            for nth in 0..3 {
                                if let Err(e) = c.write_all(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n") {
                                    lost.lock().unwrap().push(format!("request #{nth} on a connection: write: {e}"));
                                    continue 'connect;
                                }
                                let (mut buf, mut got) = ([0u8; 512], Vec::new());
                                while !got.windows(2).any(|w| w == b"OK") {
                                    match c.read(&mut buf) {
                                        Ok(n) if n > 0 => got.extend_from_slice(&buf[..n]),
                                        other => {
                                            let got = String::from_utf8_lossy(&got).into_owned();
                                            lost.lock()
                                                .unwrap()
                                                .push(format!("request #{nth}: read {other:?} after {got:?}"));
                                            continue 'connect;
                                        }
                                    }
                                }
                                ok.fetch_add(1, Ordering::Relaxed);
                                if String::from_utf8_lossy(&got).to_ascii_lowercase().contains("connection: close") {
                                    continue 'connect;
                                }
                            }
                        }
                    })
                })
                .collect();
            std::thread::sleep(Duration::from_millis(150));
            s.signal(libc::SIGTERM);
            let status = s.wait_exit(Duration::from_secs(10)).expect("exits after the drain");
            assert_eq!(status.code(), Some(0), "{driver}, round {round}: {}", s.logs());
            stop.store(true, Ordering::Relaxed);
            for c in clients {
                c.join().unwrap();
            }
            let lost = lost.lock().unwrap();
            assert!(lost.is_empty(), "{driver}, drain {round}: requests lost:\n{}", lost.join("\n"));
            answered += ok.load(Ordering::Relaxed);
            refused += gone.load(Ordering::Relaxed);
        }
        assert!(answered > 0 && refused > 0, "{driver}: {answered} answered, {refused} refused");
        eprintln!("{driver}: 20 drains, {answered} requests answered, {refused} connections refused, none lost");
    }
}
