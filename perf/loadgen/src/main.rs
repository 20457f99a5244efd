//! An open-loop HTTP/1.1 load generator, as wrk2 works: every connection sends on a fixed
//! schedule (the total rate spread evenly over the connections), one request in flight at
//! a time, and each request's latency counts from when the schedule said it should go —
//! its intended send time — not from when a busy connection could send it. A slow answer
//! therefore shows in the latency of every request queued behind it (no coordinated
//! omission). One thread, one epoll loop, nothing allocated per request.
//!
//! Why not oha (crates.io, `--latency-correction`): on one core of this machine it tops out
//! near 68k requests a second, below the rates percore's routes are measured at; this
//! reaches wrk's. Why not wrk2: its source cannot be fetched from this workplace.
//!
//!     percore-loadgen --url http://127.0.0.1:8080/json --rate 50000 --connections 64 \
//!         --duration 20 [--warmup 2] [--header 'x: y'] [--ids 10000] [--fresh] [--hdr-log F]
//!
//! `{id}` in the path becomes a random id from 1 to `--ids` per request. `--fresh` opens a
//! new connection for every request (`Connection: close`): a probe that measures what a new
//! client sees, connect included. Prints one JSON object: rate offered and achieved,
//! percentiles of all answers and of the 2xx ones, status codes, errors by kind.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

struct Args {
    addr: SocketAddr,
    host: String,
    path: String,
    rate: f64,
    connections: usize,
    duration: Duration,
    warmup: Duration,
    headers: Vec<String>,
    ids: u64,
    fresh: bool,
    timeout: Duration,
    hdr_log: Option<String>,
}

fn args() -> Args {
    let mut a = Args {
        addr: "127.0.0.1:8080".parse().unwrap(),
        host: String::new(),
        path: "/".into(),
        rate: 1000.0,
        connections: 64,
        duration: Duration::from_secs(10),
        warmup: Duration::ZERO,
        headers: Vec::new(),
        ids: 10_000,
        fresh: false,
        timeout: Duration::from_secs(30),
        hdr_log: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| die(&format!("{flag} needs a value")));
        match flag.as_str() {
            "--url" => {
                let url = value();
                let rest = url.strip_prefix("http://").unwrap_or_else(|| die("only http:// URLs"));
                let (hostport, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
                a.host = hostport.to_owned();
                a.addr = hostport.parse().unwrap_or_else(|_| die("the URL's host must be IP:PORT"));
                a.path = if path.is_empty() { "/".into() } else { path.into() };
            }
            "--rate" => a.rate = value().parse().unwrap_or_else(|_| die("--rate: a number")),
            "--connections" => a.connections = value().parse().unwrap_or_else(|_| die("--connections: a number")),
            "--duration" => a.duration = seconds(&value()),
            "--warmup" => a.warmup = seconds(&value()),
            "--header" => a.headers.push(value()),
            "--ids" => a.ids = value().parse().unwrap_or_else(|_| die("--ids: a number")),
            "--fresh" => a.fresh = true,
            "--timeout" => a.timeout = seconds(&value()),
            "--hdr-log" => a.hdr_log = Some(value()),
            other => die(&format!("unknown flag {other}")),
        }
    }
    if a.rate <= 0.0 || a.connections == 0 {
        die("--rate and --connections must be above zero");
    }
    a
}

fn seconds(v: &str) -> Duration {
    Duration::from_secs_f64(v.trim_end_matches('s').parse().unwrap_or_else(|_| die("a duration in seconds")))
}

fn die(msg: &str) -> ! {
    eprintln!("percore-loadgen: {msg}");
    std::process::exit(2)
}

/// Where a connection is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    /// Not connected (fresh mode between requests, or after an error).
    Closed,
    /// Connecting, the request to send once connected.
    Connecting,
    /// Connected, nothing in flight.
    Idle,
    /// A request in flight since `due` (its intended send time).
    Waiting,
}

struct Conn {
    stream: Option<TcpStream>,
    state: State,
    /// The intended send time of the request in flight, or of the next one.
    due: u64,
    /// When the request in flight actually went out (for the uncorrected latency).
    sent: u64,
    /// Bytes of the request still to write.
    unsent: usize,
    request: Vec<u8>,
    buf: Vec<u8>,
}

#[derive(Default)]
struct Errors {
    connect: u64,
    read: u64,
    write: u64,
    closed: u64,
    timeout: u64,
    framing: u64,
}

struct Stats {
    all: Histogram<u64>,
    ok: Histogram<u64>,
    uncorrected: Histogram<u64>,
    status: BTreeMap<u16, u64>,
    errors: Errors,
    completed: u64,
    sent: u64,
    /// Requests whose intended time was before this are not recorded (the warm-up).
    record_from: u64,
}

impl Stats {
    fn answered(&mut self, status: u16, due: u64, sent: u64, now: u64) {
        if due < self.record_from {
            return;
        }
        let micros = |ns: u64| (ns / 1000).max(1);
        let latency = micros(now.saturating_sub(due));
        let _ = self.all.record(latency);
        if (200..300).contains(&status) {
            let _ = self.ok.record(latency);
        }
        let _ = self.uncorrected.record(micros(now.saturating_sub(sent)));
        *self.status.entry(status).or_default() += 1;
        self.completed += 1;
    }
}

/// What a response in `buf` is: its status and length once whole.
enum Parsed {
    Partial,
    Whole { status: u16, len: usize, close: bool },
    Bad,
}

fn parse(buf: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut r = httparse::Response::new(&mut headers);
    match r.parse(buf) {
        Ok(httparse::Status::Partial) => Parsed::Partial,
        Err(_) => Parsed::Bad,
        Ok(httparse::Status::Complete(head)) => {
            let (mut length, mut close) = (None, false);
            for h in r.headers.iter() {
                if h.name.eq_ignore_ascii_case("content-length") {
                    length = std::str::from_utf8(h.value).ok().and_then(|v| v.trim().parse::<usize>().ok());
                } else if h.name.eq_ignore_ascii_case("connection") {
                    close = h.value.eq_ignore_ascii_case(b"close");
                } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                    return Parsed::Bad;
                }
            }
            let status = r.code.unwrap_or(0);
            let length = match (length, status) {
                (Some(n), _) => n,
                (None, 204 | 304) => 0,
                (None, _) => return Parsed::Bad,
            };
            if buf.len() < head + length {
                Parsed::Partial
            } else {
                Parsed::Whole { status, len: head + length, close }
            }
        }
    }
}

struct Gen {
    args: Args,
    poll: Poll,
    conns: Vec<Conn>,
    /// Idle connections by their next due time.
    queue: BinaryHeap<Reverse<(u64, usize)>>,
    interval: u64,
    start: Instant,
    stats: Stats,
    rng: u64,
    in_flight: usize,
}

impl Gen {
    fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    fn request(&mut self, i: usize) {
        let path = if self.args.path.contains("{id}") {
            // xorshift64*: a different user each request, cheap and repeatable.
            self.rng ^= self.rng >> 12;
            self.rng ^= self.rng << 25;
            self.rng ^= self.rng >> 27;
            let id = self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D) % self.args.ids + 1;
            self.args.path.replace("{id}", &id.to_string())
        } else {
            self.args.path.clone()
        };
        let c = &mut self.conns[i];
        c.request.clear();
        let _ = write!(c.request, "GET {path} HTTP/1.1\r\nHost: {}\r\n", self.args.host);
        for h in &self.args.headers {
            let _ = write!(c.request, "{h}\r\n");
        }
        if self.args.fresh {
            c.request.extend_from_slice(b"Connection: close\r\n");
        }
        c.request.extend_from_slice(b"\r\n");
        c.unsent = c.request.len();
    }

    /// Sends connection `i`'s next request (its due time has come), connecting first if
    /// it has no connection.
    fn fire(&mut self, i: usize) {
        self.request(i);
        self.in_flight += 1;
        self.stats.sent += 1;
        let now = self.now();
        let c = &mut self.conns[i];
        c.buf.clear();
        c.state = State::Waiting;
        c.sent = now;
        if c.stream.is_none() {
            match TcpStream::connect(self.args.addr) {
                Ok(mut s) => {
                    let _ = s.set_nodelay(true);
                    if self.poll.registry().register(&mut s, Token(i), Interest::READABLE | Interest::WRITABLE).is_err() {
                        self.failed(i, |e| e.connect += 1);
                        return;
                    }
                    c.stream = Some(s);
                    c.state = State::Connecting;
                }
                Err(_) => self.failed(i, |e| e.connect += 1),
            }
            return;
        }
        self.write(i);
    }

    fn write(&mut self, i: usize) {
        let c = &mut self.conns[i];
        let Some(s) = c.stream.as_mut() else { return };
        while c.unsent > 0 {
            let from = c.request.len() - c.unsent;
            match s.write(&c.request[from..]) {
                Ok(n) => c.unsent -= n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return self.failed(i, |e| e.write += 1),
            }
        }
    }

    fn readable(&mut self, i: usize) {
        let mut chunk = [0u8; 16384];
        loop {
            let c = &mut self.conns[i];
            let Some(s) = c.stream.as_mut() else { return };
            match s.read(&mut chunk) {
                Ok(0) => {
                    return if c.state == State::Waiting {
                        self.failed(i, |e| e.closed += 1)
                    } else {
                        self.close(i)
                    };
                }
                Ok(n) => {
                    c.buf.extend_from_slice(&chunk[..n]);
                    if c.state != State::Waiting {
                        continue;
                    }
                    match parse(&c.buf) {
                        Parsed::Partial => {}
                        Parsed::Bad => return self.failed(i, |e| e.framing += 1),
                        Parsed::Whole { status, len, close } => {
                            c.buf.drain(..len);
                            self.done(i, status, close);
                            if self.conns[i].stream.is_none() {
                                return;
                            }
                        }
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => {
                    return if self.conns[i].state == State::Waiting {
                        self.failed(i, |e| e.read += 1)
                    } else {
                        self.close(i)
                    };
                }
            }
        }
    }

    /// A whole answer: recorded, and the connection scheduled for its next request.
    fn done(&mut self, i: usize, status: u16, close: bool) {
        let now = self.now();
        let due = self.conns[i].due;
        let sent = self.conns[i].sent;
        self.stats.answered(status, due, sent.max(due), now);
        self.in_flight -= 1;
        if close || self.args.fresh {
            self.close(i);
        } else {
            self.conns[i].state = State::Idle;
        }
        self.schedule(i);
    }

    fn schedule(&mut self, i: usize) {
        let c = &mut self.conns[i];
        c.due += self.interval;
        self.queue.push(Reverse((c.due, i)));
    }

    fn close(&mut self, i: usize) {
        let c = &mut self.conns[i];
        if let Some(mut s) = c.stream.take() {
            let _ = self.poll.registry().deregister(&mut s);
        }
        c.state = State::Closed;
        c.buf.clear();
    }

    /// The request in flight on `i` failed: counted, the connection dropped; the next
    /// request goes on a new one.
    fn failed(&mut self, i: usize, count: impl FnOnce(&mut Errors)) {
        if self.conns[i].state == State::Waiting || self.conns[i].state == State::Connecting {
            self.in_flight -= 1;
            count(&mut self.stats.errors);
            self.close(i);
            self.schedule(i);
        } else {
            self.close(i);
        }
    }

    fn run(&mut self) {
        let mut events = Events::with_capacity(1024);
        let end = self.args.duration.as_nanos() as u64;
        let timeout = self.args.timeout.as_nanos() as u64;
        let mut next_sweep = 0u64;
        loop {
            let now = self.now();
            if now >= end {
                break;
            }
            while let Some(&Reverse((due, i))) = self.queue.peek() {
                if due > now {
                    break;
                }
                self.queue.pop();
                self.fire(i);
            }
            if now >= next_sweep {
                next_sweep = now + 100_000_000;
                for i in 0..self.conns.len() {
                    let c = &self.conns[i];
                    if matches!(c.state, State::Waiting | State::Connecting) && now.saturating_sub(c.sent) > timeout {
                        self.failed(i, |e| e.timeout += 1);
                    }
                }
            }
            let until = self.queue.peek().map_or(end, |r| r.0 .0).min(end).saturating_sub(self.now());
            if until > 0 && until < 1_000_000 && self.in_flight == 0 {
                // epoll waits in whole milliseconds: a sparse schedule sleeps precisely.
                std::thread::sleep(Duration::from_nanos(until));
                continue;
            }
            let wait = Duration::from_nanos(until.min(100_000_000));
            if self.poll.poll(&mut events, Some(wait)).is_err() {
                continue;
            }
            for ev in events.iter() {
                let i = ev.token().0;
                if self.conns[i].state == State::Connecting {
                    if ev.is_error() || ev.is_read_closed() && !ev.is_readable() {
                        self.failed(i, |e| e.connect += 1);
                        continue;
                    }
                    if ev.is_writable() {
                        let connected = self.conns[i].stream.as_ref().is_some_and(|s| s.peer_addr().is_ok());
                        if !connected {
                            self.failed(i, |e| e.connect += 1);
                            continue;
                        }
                        self.conns[i].state = State::Waiting;
                        self.write(i);
                    }
                    continue;
                }
                if ev.is_writable() && self.conns[i].unsent > 0 {
                    self.write(i);
                }
                if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                    self.readable(i);
                }
            }
        }
    }
}

fn percentiles(h: &Histogram<u64>) -> serde_json::Value {
    let ms = |v: u64| (v as f64 / 1000.0 * 1000.0).round() / 1000.0;
    if h.is_empty() {
        return serde_json::json!(null);
    }
    serde_json::json!({
        "p50": ms(h.value_at_quantile(0.50)),
        "p90": ms(h.value_at_quantile(0.90)),
        "p99": ms(h.value_at_quantile(0.99)),
        "p99.9": ms(h.value_at_quantile(0.999)),
        "p99.99": ms(h.value_at_quantile(0.9999)),
        "max": ms(h.max()),
        "mean": (h.mean() / 1000.0 * 1000.0).round() / 1000.0,
    })
}

fn write_hdr_log(path: &str, hists: &[(&str, &Histogram<u64>)], seconds: f64) -> std::io::Result<()> {
    use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
    use hdrhistogram::serialization::V2DeflateSerializer;
    let mut out = std::fs::File::create(path)?;
    let mut serializer = V2DeflateSerializer::new();
    let mut builder = IntervalLogWriterBuilder::new();
    builder.add_comment("percore-loadgen: latency in microseconds from each request's intended send time");
    let mut writer = builder.with_max_value_divisor(1000.0).begin_log_with(&mut out, &mut serializer).map_err(std::io::Error::other)?;
    for (tag, h) in hists {
        let tag = Tag::new(tag);
        writer
            .write_histogram(h, Duration::ZERO, Duration::from_secs_f64(seconds), tag)
            .map_err(|e| std::io::Error::other(format!("{e:?}")))?;
    }
    Ok(())
}

fn main() {
    let args = args();
    let interval = (args.connections as f64 * 1e9 / args.rate) as u64;
    let stagger = (1e9 / args.rate) as u64;
    let warmup = args.warmup.as_nanos() as u64;
    let hist = || Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).unwrap();
    let mut g = Gen {
        poll: Poll::new().expect("epoll"),
        conns: (0..args.connections)
            .map(|_| Conn {
                stream: None,
                state: State::Closed,
                due: 0,
                sent: 0,
                unsent: 0,
                request: Vec::new(),
                buf: Vec::with_capacity(16384),
            })
            .collect(),
        queue: BinaryHeap::new(),
        interval,
        start: Instant::now(),
        stats: Stats {
            all: hist(),
            ok: hist(),
            uncorrected: hist(),
            status: BTreeMap::new(),
            errors: Errors::default(),
            completed: 0,
            sent: 0,
            record_from: warmup,
        },
        rng: 0x9E37_79B9_7F4A_7C15,
        in_flight: 0,
        args,
    };
    // The connections' schedules are staggered evenly over one interval.
    for i in 0..g.conns.len() {
        g.conns[i].due = i as u64 * stagger;
        g.queue.push(Reverse((g.conns[i].due, i)));
    }
    g.run();
    let measured = (g.args.duration.saturating_sub(g.args.warmup)).as_secs_f64();
    let s = &g.stats;
    let scheduled = (measured * g.args.rate) as u64;
    let e = &s.errors;
    let report = serde_json::json!({
        "url": format!("http://{}{}", g.args.host, g.args.path),
        "connections": g.args.connections,
        "fresh": g.args.fresh,
        "offered_rate": g.args.rate,
        "seconds": measured,
        "scheduled": scheduled,
        "completed": s.completed,
        "achieved_rate": s.completed as f64 / measured,
        "ok_rate": s.ok.len() as f64 / measured,
        "status": s.status.iter().map(|(k, v)| (k.to_string(), serde_json::json!(v))).collect::<serde_json::Map<_, _>>(),
        "errors": {"connect": e.connect, "read": e.read, "write": e.write, "closed": e.closed, "timeout": e.timeout, "framing": e.framing},
        "latency_ms": percentiles(&s.all),
        "ok_latency_ms": percentiles(&s.ok),
        "uncorrected_ms": percentiles(&s.uncorrected),
    });
    if let Some(path) = &g.args.hdr_log {
        if let Err(err) = write_hdr_log(path, &[("all", &s.all), ("ok", &s.ok)], measured) {
            eprintln!("percore-loadgen: cannot write {path}: {err}");
        }
    }
    println!("{report}");
}
