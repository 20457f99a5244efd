//! Test harness: starts the real `percore` binary on 127.0.0.1, port 0, and speaks raw
//! bytes to it over real sockets.
//!
//! Every server test runs once per I/O driver ([`each_driver`]): io_uring (when this machine
//! allows it — otherwise the skip is printed loudly, and under CI=true it fails) and epoll.
#![allow(dead_code)]

pub mod certs;
pub mod pg;
pub mod proxy;
pub mod tls;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

pub const DRIVERS: [&str; 2] = ["io_uring", "epoll"];

/// The drivers this machine can run.
pub fn drivers() -> Vec<&'static str> {
    match percore::runtime::driver::probe_uring() {
        Ok(_) => DRIVERS.to_vec(),
        Err(e) => {
            assert!(std::env::var("CI").as_deref() != Ok("true"), "io_uring unavailable under CI: {e}");
            eprintln!("\n*** io_uring unavailable here ({e}): testing the epoll driver only ***\n");
            vec!["epoll"]
        }
    }
}

/// Runs `test` against a fresh server per driver.
pub fn each_driver(env: &[(&str, &str)], test: impl Fn(&Server)) {
    for driver in drivers() {
        let server = Server::start(driver, env);
        test(&server);
    }
}

/// The stores the API suite runs against.
pub enum Store {
    Sqlite,
    Postgres(pg::TestDatabase),
}

impl Store {
    pub fn name(&self) -> &'static str {
        match self {
            Store::Sqlite => "sqlite",
            Store::Postgres(_) => "postgres",
        }
    }
}

/// Runs `test` against a fresh server (and fresh database) for every store and driver:
/// SQLite always, PostgreSQL when it answers (required under CI).
pub fn each_store(env: &[(&str, &str)], test: impl Fn(&Server, &Store)) {
    for driver in drivers() {
        let server = Server::start(driver, env);
        server.wait_ready();
        test(&server, &Store::Sqlite);
        drop(server);
        if let Some(db) = pg::TestDatabase::create() {
            let url = db.url.clone();
            let mut env = env.to_vec();
            env.push(("DATABASE_URL", &url));
            let server = Server::start(driver, &env);
            server.wait_ready();
            let store = Store::Postgres(db);
            test(&server, &store);
            drop(server);
        }
    }
}

pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub driver: &'static str,
    logs: Arc<Mutex<String>>,
    /// The reader of the server's stderr has reached its end (the process has exited).
    logs_ended: Arc<AtomicBool>,
    /// The SQLite file this server was given, removed when it stops.
    sqlite: Option<std::path::PathBuf>,
}

/// A fresh SQLite path under the temp directory.
pub fn temp_sqlite_path() -> std::path::PathBuf {
    use std::sync::atomic::AtomicUsize;
    static N: AtomicUsize = AtomicUsize::new(0);
    std::env::temp_dir().join(format!("percore-test-{}-{}.db", std::process::id(), N.fetch_add(1, Ordering::SeqCst)))
}

impl Server {
    /// Starts percore with the test defaults plus `env`, and waits until it listens.
    pub fn start(driver: &'static str, env: &[(&str, &str)]) -> Server {
        Server::start_with(driver, env, |_| {})
    }

    /// Like [`Server::start`], letting the caller adjust the command (limits, seccomp).
    pub fn start_with(driver: &'static str, env: &[(&str, &str)], adjust: impl FnOnce(&mut Command)) -> Server {
        Server::start_command(Command::new(env!("CARGO_BIN_EXE_percore")), driver, env, adjust)
    }

    /// Starts percore through `cmd` (percore itself, or a wrapper that execs it).
    pub fn start_command(
        mut cmd: Command,
        driver: &'static str,
        env: &[(&str, &str)],
        adjust: impl FnOnce(&mut Command),
    ) -> Server {
        cmd.env_clear()
            .env("SERVER_HOST", "127.0.0.1")
            .env("SERVER_PORT", "0")
            .env("DEBUG_ADDR", "")
            .env("IO_DRIVER", driver)
            .env("RUST_LOG", "info")
            .env("SHUTDOWN_TIMEOUT", "5s");
        let has_store = env.iter().any(|(k, _)| ["DATABASE_URL", "SQLITE_PATH", "DB_HOST"].contains(k));
        let sqlite = (!has_store).then(temp_sqlite_path);
        if let Some(path) = &sqlite {
            cmd.env("SQLITE_PATH", path);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        adjust(&mut cmd);
        let mut child = cmd.spawn().expect("start percore");
        let logs = Arc::new(Mutex::new(String::new()));
        let (port_tx, port_rx) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let sink = logs.clone();
        let logs_ended = Arc::new(AtomicBool::new(false));
        let ended = logs_ended.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) =
                    line.split("listening on http://").nth(1).or(line.split("listening on https://").nth(1))
                {
                    let _ = port_tx
                        .send(addr.trim().trim_end_matches('"').trim_end_matches('}').trim_end_matches('"').to_owned());
                }
                let mut logs = sink.lock().unwrap();
                logs.push_str(&line);
                logs.push('\n');
            }
            ended.store(true, Ordering::Release);
        });
        let addr = match port_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(addr) => addr.parse().unwrap_or_else(|e| panic!("bad address {addr:?}: {e}")),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                std::thread::sleep(Duration::from_millis(100));
                panic!("percore ({driver}) did not start:\n{}", logs.lock().unwrap());
            }
        };
        let server = Server { child, addr, driver, logs, logs_ended, sqlite };
        let started = server.logs();
        let wanted = if driver == "auto" { "" } else { driver };
        assert!(started.contains(&format!(", {wanted}")), "the server must run the {driver} driver:\n{started}");
        server
    }

    /// The SQLite file this server uses, when the harness chose it.
    pub fn sqlite_path(&self) -> Option<&std::path::Path> {
        self.sqlite.as_deref()
    }

    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    /// Waits up to `within` for a log line containing `needle`.
    pub fn wait_for_log(&self, needle: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.logs().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Waits until /readyz answers 200 (the store is connected), up to 10 s.
    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let r = self.get("/readyz");
            if r.status == 200 {
                return;
            }
            assert!(Instant::now() < deadline, "not ready after 10 s: {}\n{}", r.text(), self.logs());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    /// Waits for the process to exit, up to `within`.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                // What it wrote last may still be in the pipe: a test that reads the logs
                // after the exit must find all of them.
                while !self.logs_ended.load(Ordering::Acquire) && Instant::now() < deadline + Duration::from_secs(1) {
                    std::thread::sleep(Duration::from_millis(5));
                }
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    pub fn connect(&self) -> Client {
        Client::connect(self.addr)
    }

    /// A request with an optional JSON body on a new connection.
    pub fn call(&self, method: &str, path: &str, json: Option<&str>) -> Response {
        let mut c = self.connect();
        c.call(method, path, json).unwrap_or_else(|| panic!("no response to {method} {path} ({})", self.driver))
    }

    /// One request on a new connection.
    pub fn get(&self, path: &str) -> Response {
        let mut c = self.connect();
        c.send(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes());
        c.response().unwrap_or_else(|| panic!("no response to GET {path} ({})", self.driver))
    }

    /// User and system CPU seconds the server has used so far (from /proc/PID/stat).
    pub fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap();
        let fields: Vec<&str> = stat.rsplit(')').next().unwrap().split_whitespace().collect();
        let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
        // SAFETY: sysconf has no preconditions.
        ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(path) = &self.sqlite {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
            }
        }
    }
}

/// A raw client connection that parses responses as they come: over TCP, or over any
/// other byte stream (a TLS session, [`tls::TlsClient`]).
pub struct Client<S = TcpStream> {
    pub stream: S,
    buf: Vec<u8>,
}

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    pub raw_head: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(&name.to_ascii_lowercase()).map(String::as_str)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json_lite::Value {
        serde_json_lite::parse(&self.body).unwrap_or_else(|| panic!("not JSON: {}", self.text()))
    }
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        stream.set_nodelay(true).unwrap();
        Client { stream, buf: Vec::new() }
    }

    /// True if the server closes the connection (EOF or reset) within `within`, with no
    /// bytes sent before the close.
    pub fn closed_within(&mut self, within: Duration) -> bool {
        self.stream.set_read_timeout(Some(within)).unwrap();
        let mut chunk = [0u8; 4096];
        let result = matches!(read_retrying(&mut self.stream, &mut chunk), Ok(0) | Err(_))
            && !matches!(read_retrying(&mut self.stream, &mut chunk), Ok(n) if n > 0);
        self.stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        result
    }
}

impl<S: Read + Write> Client<S> {
    /// A client over an established stream.
    pub fn over(stream: S) -> Client<S> {
        Client { stream, buf: Vec::new() }
    }

    /// Sends a request with an optional JSON body and reads its response.
    pub fn call(&mut self, method: &str, path: &str, json: Option<&str>) -> Option<Response> {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: test\r\n");
        if let Some(body) = json {
            req.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()));
        } else {
            req.push_str("\r\n");
        }
        self.send(req.as_bytes());
        if method == "HEAD" {
            self.head_response()
        } else {
            self.response()
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    /// Tries to send; false if the server has closed the connection.
    pub fn try_send(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).is_ok()
    }

    fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 65536];
        match read_retrying(&mut self.stream, &mut chunk) {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    /// The next response, or None if the connection closed first. Bodies are framed by
    /// Content-Length (all percore sends); a response to HEAD is read with [`Client::head_response`].
    pub fn response(&mut self) -> Option<Response> {
        self.read_response(false)
    }

    pub fn head_response(&mut self) -> Option<Response> {
        self.read_response(true)
    }

    fn read_response(&mut self, head_only: bool) -> Option<Response> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut r = httparse::Response::new(&mut headers);
            match r.parse(&self.buf).expect("a valid response") {
                httparse::Status::Complete(len) => {
                    let status = r.code.unwrap();
                    let map: HashMap<String, String> = r
                        .headers
                        .iter()
                        .map(|h| (h.name.to_ascii_lowercase(), String::from_utf8_lossy(h.value).into_owned()))
                        .collect();
                    let raw_head = String::from_utf8_lossy(&self.buf[..len]).into_owned();
                    let body_len = if head_only || status == 100 {
                        0
                    } else {
                        map.get("content-length").map(|v| v.parse::<usize>().unwrap()).unwrap_or(0)
                    };
                    while self.buf.len() < len + body_len {
                        if !self.fill() {
                            return None;
                        }
                    }
                    let body = self.buf[len..len + body_len].to_vec();
                    self.buf.drain(..len + body_len);
                    return Some(Response { status, headers: map, body, raw_head });
                }
                httparse::Status::Partial => {
                    if !self.fill() {
                        return None;
                    }
                }
            }
        }
    }

    /// Everything until the server closes (or 10 s).
    pub fn read_to_close(&mut self) -> Vec<u8> {
        while self.fill() {}
        std::mem::take(&mut self.buf)
    }

    /// Bytes already received and not parsed.
    pub fn pending(&self) -> &[u8] {
        &self.buf
    }
}

/// Sends `raw` with a `GET /health` pipelined behind it and expects `status` with a JSON
/// error body and `Connection: close` — and nothing after: the request behind a refused one
/// is never answered (no smuggling).
pub fn assert_refused(c: &mut Client, raw: &[u8], status: u16) {
    let mut bytes = raw.to_vec();
    bytes.extend_from_slice(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n");
    let _ = c.try_send(&bytes);
    let r = c.response().unwrap_or_else(|| panic!("no response to {:?}", String::from_utf8_lossy(raw)));
    assert_eq!(r.status, status, "{:?} → {}", String::from_utf8_lossy(raw), r.text());
    assert_eq!(r.header("connection"), Some("close"));
    assert_eq!(r.json()["status"], "error");
    assert_eq!(r.json()["code"], status as u64);
    let rest = c.read_to_close();
    assert!(rest.is_empty(), "nothing after a broken request: {:?}", String::from_utf8_lossy(&rest));
}

/// `read`, retried on EINTR: this test process creates and drops an io_uring (the driver
/// probe), whose task work interrupts a blocking socket read that has a timeout set.
pub fn read_retrying(stream: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match stream.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// A small JSON reader for assertions, so the tests do not need a second JSON library.
pub mod serde_json_lite {
    pub use simd_json::OwnedValue as Value;

    pub fn parse(bytes: &[u8]) -> Option<Value> {
        let mut copy = bytes.to_vec();
        simd_json::to_owned_value(&mut copy).ok()
    }
}
