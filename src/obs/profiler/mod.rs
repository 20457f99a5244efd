//! The profiling listener on DEBUG_ADDR (default 127.0.0.1:6060, empty disables it):
//!
//! - `/debug/pprof/` — an index of what is here;
//! - `/debug/pprof/profile?seconds=N` — a CPU profile in pprof's protobuf format, which
//!   `go tool pprof` reads ([`sampler`] takes it, [`symbols`] names it, [`encode`] writes it);
//! - `/debug/pprof/flamegraph?seconds=N` — the same profile as an SVG flame graph;
//! - `/debug/pprof/workers` — each worker's CPU, live connections, requests, I/O driver and
//!   pinned CPU, and each database thread's CPU.
//!
//! N is 1–60 (default 30, as in Go). One profile at a time: a second request while one runs
//! gets 409. It runs on its own thread with blocking sockets — it is not on the request path
//! and must not touch it — and reuses percore's parser and response writer. Nothing is
//! written to disk, so it works under a read-only root with no /tmp.

pub(crate) mod encode;
pub(crate) mod objects;
pub(crate) mod sampler;
pub(crate) mod symbols;

use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use crate::http::date::DateCache;
use crate::http::query;
use crate::http::request::{Limits, Method, Parsed, Parser};
use crate::http::response::{Framing, Reply};
use crate::obs::threads::{self, Role};

use encode::Resolved;
use sampler::Session;
use symbols::Symbolizer;

const MAX_SECONDS: u64 = 60;
const DEFAULT_SECONDS: u64 = 30;
/// Samples per CPU second of each thread. Not 100, so sampling does not march in step with
/// anything that runs on a 10 ms beat.
pub(crate) const SAMPLE_HZ: u32 = 99;
/// How often a running profile looks for threads started since it began.
const NEW_THREADS_EVERY: Duration = Duration::from_millis(200);
/// Connections served at once; more wait in the backlog.
const MAX_CLIENTS: usize = 4;

static PROFILING: AtomicBool = AtomicBool::new(false);
static CLIENTS: AtomicUsize = AtomicUsize::new(0);
/// Built by the first profile and kept: mapping the executable and reading its tables
/// costs more than a profile's worth of CPU, and belongs outside the sampled window.
static SYMBOLS: OnceLock<Mutex<Symbolizer>> = OnceLock::new();

/// One worker's line on /debug/pprof/workers.
pub(crate) struct WorkerRow {
    pub(crate) worker: usize,
    pub(crate) pinned_cpu: Option<usize>,
    pub(crate) connections: usize,
    /// `None` when the worker did not answer in time.
    pub(crate) requests: Option<u64>,
}

/// What /debug/pprof/workers shows, gathered when asked.
pub(crate) struct Status {
    pub(crate) io_driver: &'static str,
    pub(crate) workers: Vec<WorkerRow>,
}

/// Gathers [`Status`]; runs on the debug listener's thread.
pub(crate) type StatusSource = Arc<dyn Fn() -> Status + Send + Sync>;

/// Binds DEBUG_ADDR and serves it on a thread of its own. Returns the bound address.
pub(crate) fn start(addr: SocketAddr, status: StatusSource) -> io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let local = listener.local_addr()?;
    std::thread::Builder::new().name("percore-debug".into()).spawn(move || {
        let _registered = threads::register(Role::Debug);
        for stream in listener.incoming().flatten() {
            if CLIENTS.fetch_add(1, Ordering::SeqCst) >= MAX_CLIENTS {
                CLIENTS.fetch_sub(1, Ordering::SeqCst);
                continue;
            }
            let status = status.clone();
            let spawned = std::thread::Builder::new().name("percore-debug-conn".into()).spawn(move || {
                let _registered = threads::register(Role::Debug);
                let _ = serve(stream, &status);
                CLIENTS.fetch_sub(1, Ordering::SeqCst);
            });
            if spawned.is_err() {
                CLIENTS.fetch_sub(1, Ordering::SeqCst);
            }
        }
    })?;
    Ok(local)
}

/// Reads one request, answers it, closes.
fn serve(mut stream: TcpStream, status: &StatusSource) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut buf = Vec::with_capacity(4096);
    let mut parser = Parser::new(Limits { max_head: 16 * 1024, max_body: 0 });
    let mut chunk = [0u8; 4096];
    let request = loop {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        match parser.parse(&mut buf) {
            Ok(Parsed::Complete(r)) => break Ok(r),
            Ok(Parsed::Partial) => continue,
            Err(e) => break Err(e),
        }
    };
    let dates = DateCache::default();
    let date = dates.get();
    let scratch = RefCell::new(Vec::new());
    let mut out = Vec::new();
    let framing = Framing { close: true, ..Framing::default() };
    let mut reply = Reply::new(&mut out, &scratch, &date, framing, b"");
    match request {
        Err(e) => reply.error(e.status(), e.message()),
        Ok(r) if r.head.method != Method::Get => reply.error_with(405, "Method Not Allowed", &[("Allow", b"GET")]),
        Ok(r) => {
            let (path, q) = (r.head.path(&buf), r.head.query(&buf));
            route(path, q, status, &mut reply);
        }
    }
    stream.write_all(&out)
}

fn route(path: &[u8], q: &[u8], status: &StatusSource, reply: &mut Reply<'_>) {
    match path {
        b"/debug/pprof" | b"/debug/pprof/" => reply.send(200, "text/html; charset=utf-8", INDEX.as_bytes(), &[]),
        b"/debug/pprof/workers" => reply.send(200, "text/html; charset=utf-8", workers_page(&status()).as_bytes(), &[]),
        b"/debug/pprof/profile" | b"/debug/pprof/flamegraph" => {
            let seconds = match seconds(q) {
                Ok(s) => s,
                Err(message) => return reply.error(400, message),
            };
            let flamegraph = path.ends_with(b"flamegraph");
            match profile(seconds, flamegraph) {
                Ok(body) if flamegraph => reply.send(200, "image/svg+xml", &body, &[]),
                Ok(body) => reply.send(
                    200,
                    "application/octet-stream",
                    &body,
                    &[("Content-Disposition", b"attachment; filename=\"profile.pb\"")],
                ),
                Err(Busy) => reply.error(409, "a profile is already being taken; try again when it is done"),
                Err(Failed(e)) => reply.error(500, &format!("profiling failed: {e}")),
            }
        }
        _ => reply.error(404, "Not Found"),
    }
}

/// `seconds=N`, 1–60, default 30.
pub(crate) fn seconds(q: &[u8]) -> Result<u64, &'static str> {
    match query::get(q, "seconds") {
        Ok(None) => Ok(DEFAULT_SECONDS),
        Ok(Some(v)) => std::str::from_utf8(&v)
            .ok()
            .and_then(|s| s.parse().ok())
            .filter(|n| (1..=MAX_SECONDS).contains(n))
            .ok_or("seconds: must be a whole number from 1 to 60"),
        Err(_) => Err("seconds: must be a whole number from 1 to 60"),
    }
}

enum ProfileError {
    Busy,
    Failed(String),
}
use ProfileError::{Busy, Failed};

/// Samples every thread for `seconds` and encodes the result.
fn profile(seconds: u64, flamegraph: bool) -> Result<Vec<u8>, ProfileError> {
    if PROFILING.swap(true, Ordering::SeqCst) {
        return Err(Busy);
    }
    struct Done;
    impl Drop for Done {
        fn drop(&mut self) {
            PROFILING.store(false, Ordering::SeqCst);
        }
    }
    let _done = Done;
    let symbols = SYMBOLS.get_or_init(|| {
        let symbols = Symbolizer::new();
        if !symbols.has_names() {
            log::warn!("profile: cannot read percore's own executable; frames will be addresses");
        }
        Mutex::new(symbols)
    });
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    // Room for every CPU busy the whole time, twice over; the rest is counted as dropped.
    let capacity = (seconds as usize * SAMPLE_HZ as usize * cpus * 2).max(1024);
    let (started, clock) = (SystemTime::now(), Instant::now());
    let process_before = process_cpu_seconds();
    let mut session = Session::start(SAMPLE_HZ, capacity).map_err(|e| Failed(e.to_string()))?;
    let deadline = clock + Duration::from_secs(seconds);
    while let Some(left) = deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero()) {
        std::thread::sleep(left.min(NEW_THREADS_EVERY));
        session.cover_new_threads();
    }
    let threads_sampled = session.threads();
    let taken = session.stop();
    let duration = clock.elapsed();
    let process_used = process_cpu_seconds() - process_before;
    if taken.dropped > 0 {
        log::warn!("profile: {} samples did not fit and were left out", taken.dropped);
    }
    let names = thread_names();
    let naming = Instant::now();
    let mut symbols = symbols.lock().unwrap_or_else(|p| p.into_inner());
    let resolved = Resolved::new(&taken, &mut symbols, |tid| name_of(&names, tid), SAMPLE_HZ, started, duration);
    drop(symbols);
    log::info!(
        "profile: {} samples over {:.1} s from {threads_sampled} threads: {:.2} CPU s sampled of {:.2} the process used; named in {} ms",
        taken.samples.len(),
        duration.as_secs_f64(),
        resolved.sampled().as_secs_f64(),
        process_used,
        naming.elapsed().as_millis(),
    );
    let mut body = Vec::new();
    if flamegraph {
        let lines = resolved.folded();
        let mut options = pprof::flamegraph::Options::default();
        options.title = format!("percore CPU, {seconds} s");
        options.count_name = "samples".to_owned();
        pprof::flamegraph::from_lines(&mut options, lines.iter().map(String::as_str), &mut body)
            .map_err(|e| Failed(e.to_string()))?;
    } else {
        use pprof::protos::Message;
        resolved.pprof().encode(&mut body).map_err(|e| Failed(e.to_string()))?;
    }
    Ok(body)
}

/// CPU time the whole process has used (every thread, user + system).
fn process_cpu_seconds() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// Registered threads by role; others (none percore starts) by their kernel name.
fn thread_names() -> Vec<(i32, String)> {
    threads::all().into_iter().map(|t| (t.tid, t.role.name())).collect()
}

fn name_of(names: &[(i32, String)], tid: i32) -> String {
    if let Some((_, name)) = names.iter().find(|(t, _)| *t == tid) {
        return name.clone();
    }
    std::fs::read_to_string(format!("/proc/self/task/{tid}/comm"))
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| format!("thread {tid}"))
}

/// The per-worker page: one row a worker, then the database threads.
fn workers_page(status: &Status) -> String {
    use std::fmt::Write;
    let mut page = String::from(
        "<!doctype html>\n<title>percore workers</title>\n<h1>percore workers</h1>\n<table>\n\
         <tr><th>worker</th><th>CPU seconds</th><th>live connections</th><th>requests</th><th>I/O driver</th><th>pinned CPU</th></tr>\n",
    );
    for row in &status.workers {
        let _ = writeln!(
            page,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            row.worker,
            threads::cpu_seconds_of(Role::Worker(row.worker)).map_or("–".to_owned(), |s| format!("{s:.3}")),
            row.connections,
            row.requests.map_or("–".to_owned(), |n| n.to_string()),
            status.io_driver,
            row.pinned_cpu.map_or("not pinned".to_owned(), |c| c.to_string()),
        );
    }
    page.push_str("</table>\n<h2>database threads</h2>\n<table>\n<tr><th>thread</th><th>CPU seconds</th></tr>\n");
    for (i, cpu) in threads::db_threads_cpu() {
        let _ = writeln!(page, "<tr><td>{i}</td><td>{cpu:.3}</td></tr>");
    }
    page.push_str(
        "</table>\n<p>The same numbers are on /metrics: <code>percore_worker_cpu_seconds_total</code>, \
        <code>percore_worker_connections</code>, <code>percore_worker_requests_total</code>, \
        <code>percore_db_thread_cpu_seconds_total</code>.</p>\n",
    );
    page
}

const INDEX: &str = r#"<!doctype html>
<title>percore profiling</title>
<h1>percore profiling</h1>
<ul>
<li><a href="/debug/pprof/profile?seconds=30">/debug/pprof/profile?seconds=N</a> — CPU profile (pprof protobuf): <code>go tool pprof -top profile.pb</code></li>
<li><a href="/debug/pprof/flamegraph?seconds=30">/debug/pprof/flamegraph?seconds=N</a> — the same as an SVG flame graph</li>
<li><a href="/debug/pprof/workers">/debug/pprof/workers</a> — each worker's CPU, live connections, requests, I/O driver and pinned CPU</li>
</ul>
<p>N is 1–60 seconds; one profile at a time. Every thread is sampled 99 times per CPU second it uses; time in system calls shows as a <code>[syscall]</code> frame under the Rust function that made the call.</p>
"#;

#[cfg(test)]
mod tests {
    use super::*;

    static STOP: AtomicBool = AtomicBool::new(false);

    #[inline(never)]
    fn spin_in_user_code() {
        let mut x = 1u64;
        while !STOP.load(Ordering::Relaxed) {
            for _ in 0..1000 {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
        }
    }

    #[inline(never)]
    fn spin_in_system_calls() {
        let null = std::fs::File::options().write(true).open("/dev/null").unwrap();
        let buf = [0u8; 64 * 1024];
        while !STOP.load(Ordering::Relaxed) {
            let _ = std::io::Write::write(&mut &null, &buf);
        }
    }

    /// One test drives the process-wide sampler (a second session would be refused).
    #[test]
    fn every_cpu_second_is_sampled_and_named_system_calls_included() {
        let mut symbols = Symbolizer::new();
        let (tx, rx) = std::sync::mpsc::channel();
        let spawn = |role: Role, work: fn(), tx: std::sync::mpsc::Sender<i32>| {
            std::thread::spawn(move || {
                let _registered = threads::register(role);
                tx.send(threads::current_tid()).unwrap();
                work();
            })
        };
        let user = spawn(Role::Worker(0), spin_in_user_code, tx.clone());
        let kernel = spawn(Role::Worker(1), spin_in_system_calls, tx);
        let tids = [rx.recv().unwrap(), rx.recv().unwrap()];
        let cpu = || -> f64 { tids.iter().map(|&t| threads::cpu_seconds(t).unwrap()).sum() };

        let clock = Instant::now();
        let cpu_before = cpu();
        let session = Session::start(SAMPLE_HZ, 10_000).unwrap();
        assert!(Session::start(SAMPLE_HZ, 10).is_err(), "one profile at a time");
        std::thread::sleep(Duration::from_millis(1500));
        let taken = session.stop();
        let used = cpu() - cpu_before;
        STOP.store(true, Ordering::Relaxed);
        user.join().unwrap();
        kernel.join().unwrap();

        let ticks: u64 = taken.samples.iter().filter(|s| tids.contains(&s.tid)).map(|s| u64::from(s.ticks)).sum();
        let sampled = ticks as f64 / f64::from(SAMPLE_HZ);
        assert!(sampled >= 0.9 * used && sampled <= 1.05 * used + 0.05, "sampled {sampled:.3} s of {used:.3} s");
        assert_eq!(taken.dropped, 0);
        let resolved =
            Resolved::new(&taken, &mut symbols, |tid| format!("t{tid}"), SAMPLE_HZ, SystemTime::now(), clock.elapsed());
        let stacks = resolved.folded().join("\n");
        assert!(stacks.contains("tests::spin_in_user_code"), "{stacks}");
        assert!(
            stacks.lines().any(|l| l.contains("tests::spin_in_system_calls")
                && l.ends_with(|c: char| c.is_ascii_digit())
                && l.contains("[syscall]")),
            "system-call time is charged to the caller, with a [syscall] leaf:\n{stacks}"
        );
    }

    #[test]
    fn seconds_are_bounded() {
        assert_eq!(super::seconds(b""), Ok(30));
        assert_eq!(super::seconds(b"seconds=1"), Ok(1));
        assert_eq!(super::seconds(b"seconds=60"), Ok(60));
        for bad in [&b"seconds=0"[..], b"seconds=61", b"seconds=x", b"seconds=-1"] {
            assert!(super::seconds(bad).is_err());
        }
    }
}
