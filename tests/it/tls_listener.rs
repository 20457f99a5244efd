//! The TLS listener (TLS_CERT_FILE, TLS_KEY_FILE, TLS_CLIENT_CA_FILE), spoken to by real TLS
//! peers on both I/O drivers: rustls and curl read every route, Python's ssl with h11 reads
//! every response strictly, `openssl s_client` shows the protocol and ALPN and is refused
//! TLS 1.1, a plain HTTP request to the TLS port gets a plain 400, mTLS refuses a client
//! without a certificate, and a Kubernetes-style Secret directory is swapped under load
//! without one failed handshake or request. Certificates are made at test time.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::certs::{KeyKind, Pair, Pki, Usage};
use crate::common::tls::{self, TlsClient};
use crate::common::{drivers, Server};

/// A CA, and a server certificate for localhost and 127.0.0.1 issued by it.
struct Fixture {
    pki: Pki,
    ca: Pair,
    server: Pair,
}

impl Fixture {
    fn new(name: &str) -> Fixture {
        let pki = Pki::new(name);
        let ca = pki.ca("ca", "listener test CA");
        let server = pki.leaf(&ca, "server", "localhost", &["DNS:localhost", "IP:127.0.0.1"], 10, Usage::Server);
        Fixture { pki, ca, server }
    }

    fn env<'a>(&'a self, pair: &'a Pair) -> Vec<(&'static str, String)> {
        vec![
            ("TLS_CERT_FILE", pair.cert.display().to_string()),
            ("TLS_KEY_FILE", pair.key.display().to_string()),
            ("BENCH_ROUTES", "1".into()),
        ]
    }

    fn start(&self, driver: &'static str, extra: &[(&'static str, String)]) -> Server {
        let mut env = self.env(&self.server);
        env.extend_from_slice(extra);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let server = Server::start(driver, &env);
        assert!(server.wait_for_log("listening on https://", Duration::from_secs(2)), "{}", server.logs());
        if !extra.iter().any(|(k, _)| *k == "TLS_CLIENT_CA_FILE") {
            wait_ready(self, &server);
        }
        server
    }

    fn client(&self, server: &Server) -> TlsClient {
        tls::connect(server.addr, &tls::config(&self.ca.cert, None, true)).expect("TLS handshake")
    }
}

/// Waits until /readyz answers 200 over TLS (the store is connected), up to 10 s.
fn wait_ready(f: &Fixture, server: &Server) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(&mut f.client(server), "/readyz").status != 200 {
        assert!(Instant::now() < deadline, "not ready: {}", server.logs());
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn get(c: &mut TlsClient, path: &str) -> crate::common::Response {
    c.send(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes());
    c.response().unwrap_or_else(|| panic!("no response to GET {path}"))
}

fn metrics(f: &Fixture, server: &Server) -> String {
    get(&mut f.client(server), "/metrics").text()
}

/// The value of one sample of /metrics.
fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("{series} missing from:\n{metrics}"))
        .parse()
        .unwrap()
}

fn tool(name: &str) -> bool {
    let found =
        Command::new("sh").args(["-c", &format!("command -v {name}")]).output().is_ok_and(|o| o.status.success());
    if !found {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{name} is required under CI");
        eprintln!("\n*** {name} not installed: its checks SKIPPED ***\n");
    }
    found
}

#[test]
fn rustls_and_curl_read_every_route_over_tls() {
    let f = Fixture::new("routes");
    for driver in drivers() {
        let server = f.start(driver, &[]);
        let mut c = f.client(&server);
        assert_eq!(c.stream.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
        assert_eq!(c.stream.conn.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_3));
        for (path, status) in
            [("/health", 200), ("/livez", 200), ("/readyz", 200), ("/metrics", 200), ("/json", 200), ("/missing", 404)]
        {
            let r = get(&mut c, path);
            assert_eq!(r.status, status, "{driver} {path}: {}", r.text());
        }
        // A write and a read of it, on the same keep-alive connection.
        let body = r#"{"name":"Ada","email":"ada@example.com"}"#;
        c.send(format!("POST /api/v1/users HTTP/1.1\r\nHost: l\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()).as_bytes());
        let r = c.response().unwrap();
        assert_eq!(r.status, 201, "{}", r.text());
        let location = r.header("location").unwrap().to_owned();
        assert_eq!(get(&mut c, &location).status, 200);
        // Sixteen pipelined requests in one write: sixteen answers, in order.
        let batch: Vec<u8> =
            (0..16).flat_map(|i| format!("GET /json?n={i} HTTP/1.1\r\nHost: l\r\n\r\n").into_bytes()).collect();
        c.send(&batch);
        for _ in 0..16 {
            assert_eq!(c.response().unwrap().status, 200);
        }
        // A body over many records: read whole, then refused for what it says.
        let name = "x".repeat(600_000);
        let body = format!(r#"{{"name":"{name}","email":"big@example.com"}}"#);
        c.send(format!("POST /api/v1/users HTTP/1.1\r\nHost: l\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()).as_bytes());
        let r = c.response().unwrap();
        assert_eq!(r.status, 400, "{}", r.text());
        assert!(r.text().contains("name"), "{}", r.text());
        assert_eq!(get(&mut c, "/health").text(), "OK");

        if tool("curl") {
            let url = format!("https://localhost:{}/", server.addr.port());
            let out = Command::new("curl")
                .args(["-sS", "--cacert"])
                .arg(&f.ca.cert)
                .args(["--resolve", &format!("localhost:{}:127.0.0.1", server.addr.port())])
                .args(["-w", "%{http_code} %{http_version}\\n"])
                .args(
                    ["health", "livez", "readyz", "metrics", "openapi.json", "api/v1/users", "plaintext"]
                        .iter()
                        .flat_map(|p| ["-o".to_owned(), "/dev/null".to_owned(), format!("{url}{p}")]),
                )
                .output()
                .unwrap();
            let said = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "curl: {}", String::from_utf8_lossy(&out.stderr));
            assert_eq!(said.lines().collect::<Vec<_>>(), vec!["200 1.1"; 7], "{driver}: {said}");
        }
    }
}

#[test]
fn python_ssl_with_h11_reads_every_response_over_tls() {
    let ok = Command::new("python3").args(["-c", "import h11"]).status().is_ok_and(|s| s.success());
    if !ok {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "h11 is required under CI");
        return;
    }
    let f = Fixture::new("h11");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/h11_client.py");
    let extra = [("SERVER_READ_TIMEOUT", "1s".to_owned()), ("MAX_BODY_BYTES", "1000".to_owned())];
    for driver in drivers() {
        let server = f.start(driver, &extra);
        let out = Command::new("python3")
            .arg(script)
            .arg(format!("localhost:{}", server.addr.port()))
            .arg("--tls")
            .arg(&f.ca.cert)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "h11 over TLS ({driver}):\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        let summary = stdout.lines().last().unwrap_or_default();
        let read: usize = summary.split(' ').next().and_then(|n| n.parse().ok()).unwrap_or(0);
        assert!(read > 150 && summary.contains("over OpenSSL"), "{driver}: {summary}");
    }
}

#[test]
fn openssl_s_client_sees_tls13_and_alpn_and_is_refused_tls11() {
    if !tool("openssl") {
        return;
    }
    let f = Fixture::new("s_client");
    for driver in drivers() {
        let server = f.start(driver, &[]);
        let connect = format!("127.0.0.1:{}", server.addr.port());
        let s_client = |args: &[&str]| {
            let out = Command::new("sh")
                .arg("-c")
                .arg(format!(
                    "echo | openssl s_client -connect {connect} -CAfile {} {} 2>&1",
                    f.ca.cert.display(),
                    args.join(" ")
                ))
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let said = s_client(&["-alpn", "http/1.1", "-servername", "localhost"]);
        for line in ["New, TLSv1.3, Cipher is TLS_AES", "ALPN protocol: http/1.1", "Verify return code: 0 (ok)"] {
            assert!(said.contains(line), "{driver}: s_client lacks {line:?}:\n{said}");
        }
        assert!(said.contains("Cipher is TLS_AES_128_GCM_SHA256"), "{driver}: the server's choice:\n{said}");
        let said = s_client(&["-ciphersuites", "TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256"]);
        assert!(
            said.contains("Cipher is TLS_CHACHA20_POLY1305_SHA256"),
            "{driver}: ChaCha20 first, ChaCha20 given:\n{said}"
        );
        let said = s_client(&["-tls1_2"]);
        assert!(
            said.contains("New, TLSv1.2, Cipher is ECDHE-ECDSA-AES128-GCM"),
            "{driver}: TLS 1.2 with an AEAD:\n{said}"
        );
        let said = s_client(&["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"]);
        assert!(
            said.contains("alert") && said.contains("New, (NONE), Cipher is (NONE)"),
            "{driver}: TLS 1.1 refused:\n{said}"
        );
        let said = s_client(&["-alpn", "h2"]);
        assert!(said.contains("no application protocol"), "{driver}: a client that wants only h2 is told so:\n{said}");
        let m = metrics(&f, &server);
        assert_eq!(sample(&m, "percore_tls_handshake_failures_total{reason=\"protocol_version\"}"), 1.0, "{m}");
        assert_eq!(sample(&m, "percore_tls_handshake_failures_total{reason=\"no_alpn\"}"), 1.0, "{m}");
        assert!(sample(&m, "percore_tls_handshakes_total{version=\"TLSv1.2\",resumed=\"false\"}") >= 1.0, "{m}");
    }
}

#[test]
fn plain_http_to_the_tls_port_gets_a_plain_400_and_a_clean_close() {
    let f = Fixture::new("plain");
    for driver in drivers() {
        let server = f.start(driver, &[]);
        let mut c = server.connect();
        c.send(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n");
        let r = c.response().expect("a plain answer, not a hang");
        assert_eq!(r.status, 400);
        assert_eq!(r.header("connection"), Some("close"));
        assert!(r.text().contains("TLS port"), "{}", r.text());
        assert!(c.closed_within(Duration::from_secs(3)), "{driver}: closed after the answer");
        let m = metrics(&f, &server);
        assert_eq!(sample(&m, "percore_tls_handshake_failures_total{reason=\"plain_http\"}"), 1.0);
    }
}

#[test]
fn a_slow_handshake_is_closed_like_a_slow_head() {
    let f = Fixture::new("slow");
    for driver in drivers() {
        let server = f.start(driver, &[("SERVER_READ_TIMEOUT", "1s".to_owned())]);
        // Half a ClientHello, then nothing.
        let mut c = server.connect();
        c.send(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00]);
        let started = Instant::now();
        assert!(c.closed_within(Duration::from_secs(4)), "{driver}: cut");
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(700), "{driver}: not before SERVER_READ_TIMEOUT ({took:?})");
        // Nothing at all, not even a byte: the same deadline.
        let mut c = server.connect();
        assert!(c.closed_within(Duration::from_secs(4)), "{driver}: a silent client is cut too");
        let m = metrics(&f, &server);
        assert_eq!(sample(&m, "percore_tls_handshake_failures_total{reason=\"timeout\"}"), 2.0, "{m}");
    }
}

#[test]
fn mtls_refuses_a_client_without_a_good_certificate() {
    let f = Fixture::new("mtls");
    let client = f.pki.leaf(&f.ca, "client", "service-a", &[], 20, Usage::Client);
    let stranger_ca = f.pki.ca("stranger", "a stranger CA");
    let stranger = f.pki.leaf(&stranger_ca, "stranger-client", "intruder", &[], 21, Usage::Client);
    let extra = [("TLS_CLIENT_CA_FILE", f.ca.cert.display().to_string())];
    for driver in drivers() {
        let server = f.start(driver, &extra);
        assert!(server.logs().contains("client certificates required"), "{}", server.logs());
        // Without a certificate: a TLS alert, no HTTP.
        let refused = tls::connect(server.addr, &tls::config(&f.ca.cert, None, false))
            .and_then(|mut c| {
                c.send(b"GET /health HTTP/1.1\r\nHost: l\r\n\r\n");
                c.response().map(|r| r.status).ok_or_else(|| "closed".to_owned()).map(|s| format!("answered {s}"))
            })
            .err();
        assert!(refused.is_some(), "{driver}: served without a client certificate");
        // A certificate from another CA.
        let err = tls::connect(server.addr, &tls::config(&f.ca.cert, Some(&stranger), false)).and_then(|mut c| {
            c.send(b"GET /health HTTP/1.1\r\nHost: l\r\n\r\n");
            c.response().ok_or_else(|| "closed".to_owned())
        });
        assert!(err.is_err(), "{driver}: served a stranger's certificate");
        // The right one is served.
        let mut c = tls::connect(server.addr, &tls::config(&f.ca.cert, Some(&client), false)).expect("handshake");
        assert_eq!(get(&mut c, "/health").status, 200);
        let m = get(&mut c, "/metrics").text();
        assert_eq!(sample(&m, "percore_tls_handshake_failures_total{reason=\"no_certificate\"}"), 1.0, "{m}");
        assert_eq!(sample(&m, "percore_tls_handshake_failures_total{reason=\"bad_certificate\"}"), 1.0, "{m}");
        if tool("curl") {
            let port = server.addr.port();
            let base = ["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--resolve"];
            let resolve = format!("localhost:{port}:127.0.0.1");
            let url = format!("https://localhost:{port}/health");
            let out = Command::new("curl")
                .args(base)
                .arg(&resolve)
                .arg("--cacert")
                .arg(&f.ca.cert)
                .arg(&url)
                .output()
                .unwrap();
            assert!(!out.status.success(), "{driver}: curl without a certificate is refused");
            let out = Command::new("curl")
                .args(base)
                .arg(&resolve)
                .arg("--cacert")
                .arg(&f.ca.cert)
                .arg("--cert")
                .arg(&client.cert)
                .arg("--key")
                .arg(&client.key)
                .arg(&url)
                .output()
                .unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout), "200", "{}", String::from_utf8_lossy(&out.stderr));
        }
    }
}

#[test]
fn keys_in_pkcs8_pkcs1_and_sec1_forms_all_serve() {
    let f = Fixture::new("keys");
    let sans = ["DNS:localhost", "IP:127.0.0.1"];
    let rsa = f.pki.leaf_with(&f.ca, "rsa", "localhost", &sans, 30, Usage::Server, KeyKind::RsaPkcs1);
    let sec1 = f.pki.leaf_with(&f.ca, "sec1", "localhost", &sans, 31, Usage::Server, KeyKind::EcSec1);
    assert!(std::fs::read_to_string(&rsa.key).unwrap().contains("BEGIN RSA PRIVATE KEY"));
    assert!(std::fs::read_to_string(&sec1.key).unwrap().contains("BEGIN EC PRIVATE KEY"));
    for (pair, serial) in [(&f.server, "0A"), (&rsa, "1E"), (&sec1, "1F")] {
        let env = f.env(pair);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let server = Server::start("epoll", &env);
        let mut c = f.client(&server);
        assert_eq!(tls::peer_serial(&c), serial);
        assert_eq!(get(&mut c, "/health").status, 200);
    }
}

#[test]
fn unusable_files_stop_the_start_with_exit_2_naming_the_setting() {
    let f = Fixture::new("files");
    let other = f.pki.leaf(&f.ca, "other", "localhost", &["DNS:localhost"], 40, Usage::Server);
    let garbage = f.pki.path("garbage.pem");
    std::fs::write(&garbage, "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n").unwrap();
    let p = |path: &Path| path.display().to_string();
    for (cert, key, ca, named, says) in [
        ("/nonexistent/tls.crt".to_owned(), p(&f.server.key), None, "TLS_CERT_FILE", "No such file"),
        (p(&f.server.cert), "/nonexistent/tls.key".to_owned(), None, "TLS_KEY_FILE", "No such file"),
        (p(&garbage), p(&f.server.key), None, "TLS_CERT_FILE", "not valid PEM"),
        (p(&f.server.cert), p(&f.server.cert), None, "TLS_KEY_FILE", "no private key"),
        (p(&f.server.cert), p(&other.key), None, "TLS_CERT_FILE", "does not belong"),
        (p(&f.server.cert), p(&f.server.key), Some(p(&garbage)), "TLS_CLIENT_CA_FILE", "PEM"),
    ] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_percore"));
        cmd.env_clear()
            .env("TLS_CERT_FILE", &cert)
            .env("TLS_KEY_FILE", &key)
            .env("DEBUG_ADDR", "")
            .env("SERVER_PORT", "0");
        if let Some(ca) = &ca {
            cmd.env("TLS_CLIENT_CA_FILE", ca);
        }
        let out = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{cert} {key}: {err}");
        assert!(err.contains(named) && err.contains(says), "must name {named} and say {says:?}: {err}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
    }
}

/// A directory laid out as the kubelet writes a mounted Secret: the files are symlinks
/// through `..data`, which is swapped atomically to a new timestamped directory.
struct SecretDir {
    dir: PathBuf,
    generation: usize,
}

impl SecretDir {
    fn new(pki: &Pki) -> SecretDir {
        let dir = pki.path("secret");
        std::fs::create_dir_all(&dir).unwrap();
        SecretDir { dir, generation: 0 }
    }

    fn cert(&self) -> PathBuf {
        self.dir.join("tls.crt")
    }

    fn key(&self) -> PathBuf {
        self.dir.join("tls.key")
    }

    /// Publishes `cert` and `key` as the kubelet's AtomicWriter does.
    fn publish(&mut self, cert: &Path, key: &Path) {
        self.generation += 1;
        let name = format!("..2026_12_05_00_00_{:02}.{}", self.generation, std::process::id());
        let version = self.dir.join(&name);
        std::fs::create_dir_all(&version).unwrap();
        std::fs::copy(cert, version.join("tls.crt")).unwrap();
        std::fs::copy(key, version.join("tls.key")).unwrap();
        let tmp = self.dir.join("..data_tmp");
        let _ = std::fs::remove_file(&tmp);
        symlink(&name, &tmp).unwrap();
        std::fs::rename(&tmp, self.dir.join("..data")).unwrap();
        for file in ["tls.crt", "tls.key"] {
            let link = self.dir.join(file);
            if std::fs::symlink_metadata(&link).is_err() {
                symlink(format!("..data/{file}"), &link).unwrap();
            }
        }
    }
}

#[test]
fn a_swapped_secret_is_served_to_new_handshakes_under_load_without_one_failure() {
    let f = Fixture::new("reload");
    for driver in drivers() {
        let mut secret = SecretDir::new(&f.pki);
        secret.publish(&f.server.cert, &f.server.key);
        let env = [
            ("TLS_CERT_FILE", secret.cert().display().to_string()),
            ("TLS_KEY_FILE", secret.key().display().to_string()),
        ];
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let server = Server::start(driver, &env);
        let addr = server.addr;
        let stop = Arc::new(AtomicBool::new(false));
        let failures = Arc::new(Mutex::new(Vec::<String>::new()));
        let seen = Arc::new(Mutex::new(Vec::<String>::new()));
        let requests = Arc::new(AtomicUsize::new(0));
        let mut threads = Vec::new();
        // New connection every time: each a full handshake (no resumption).
        for _ in 0..3 {
            let (stop, failures, seen, requests) = (stop.clone(), failures.clone(), seen.clone(), requests.clone());
            let config = tls::config(&f.ca.cert, None, false);
            threads.push(std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match tls::connect(addr, &config) {
                        Ok(mut c) => {
                            let serial = tls::peer_serial(&c);
                            c.send(b"GET /health HTTP/1.1\r\nHost: l\r\nConnection: close\r\n\r\n");
                            match c.response() {
                                Some(r) if r.status == 200 => {
                                    requests.fetch_add(1, Ordering::Relaxed);
                                    let mut seen = seen.lock().unwrap();
                                    if seen.last() != Some(&serial) {
                                        seen.push(serial);
                                    }
                                }
                                other => failures.lock().unwrap().push(format!("new connection: {other:?}")),
                            }
                        }
                        Err(e) => failures.lock().unwrap().push(format!("handshake: {e}")),
                    }
                }
            }));
        }
        // Keep-alive connections opened before the first swap, used throughout.
        let keep_alive: Vec<_> = (0..2)
            .map(|_| {
                let (stop, failures) = (stop.clone(), failures.clone());
                let mut c = tls::connect(addr, &tls::config(&f.ca.cert, None, false)).unwrap();
                std::thread::spawn(move || {
                    let serial = tls::peer_serial(&c);
                    let mut served = 0;
                    while !stop.load(Ordering::Relaxed) {
                        c.send(b"GET /health HTTP/1.1\r\nHost: l\r\n\r\n");
                        match c.response() {
                            Some(r) if r.status == 200 => served += 1,
                            other => {
                                failures.lock().unwrap().push(format!("keep-alive after {served}: {other:?}"));
                                break;
                            }
                        }
                    }
                    (serial, served)
                })
            })
            .collect();

        let wait_for = |serial: &str| {
            let deadline = Instant::now() + Duration::from_secs(5);
            while !seen.lock().unwrap().iter().any(|s| s == serial) {
                assert!(
                    Instant::now() < deadline,
                    "{driver}: serial {serial} never served; seen {:?}",
                    seen.lock().unwrap()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        };
        wait_for("0A");
        let mut pairs = Vec::new();
        for serial in 11..=15u32 {
            let pair = f.pki.leaf(
                &f.ca,
                &format!("s{serial}-{driver}"),
                "localhost",
                &["DNS:localhost", "IP:127.0.0.1"],
                serial,
                Usage::Server,
            );
            secret.publish(&pair.cert, &pair.key);
            wait_for(&format!("{serial:02X}"));
            pairs.push(pair);
        }
        // A pair whose key is not the certificate's: logged, and the last good pair serves on.
        let broken = f.pki.leaf(&f.ca, &format!("s16-{driver}"), "localhost", &["IP:127.0.0.1"], 16, Usage::Server);
        secret.publish(&broken.cert, &pairs[3].key);
        assert!(server.wait_for_log("was not loaded", Duration::from_secs(5)), "{}", server.logs());
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            t.join().unwrap();
        }
        for t in keep_alive {
            let (serial, served) = t.join().unwrap();
            assert_eq!(serial, "0A", "{driver}: an open connection keeps the certificate it was made with");
            assert!(served > 50, "{driver}: the keep-alive connection went on through the swaps ({served})");
        }
        let failures = failures.lock().unwrap();
        assert!(failures.is_empty(), "{driver}: {} failed: {:?}", failures.len(), &failures[..failures.len().min(5)]);
        let seen = seen.lock().unwrap();
        assert_eq!(
            seen.last().map(String::as_str),
            Some("0F"),
            "{driver}: still the last good pair after the broken one: {seen:?}"
        );
        assert!(!seen.iter().any(|s| s == "10"), "{driver}: the broken pair never served");
        let mut c = f.client(&server);
        assert_eq!(tls::peer_serial(&c), "0F");
        let m = get(&mut c, "/metrics").text();
        assert_eq!(sample(&m, "percore_tls_certificate_reloads_total{result=\"ok\"}"), 5.0, "{m}");
        assert_eq!(sample(&m, "percore_tls_certificate_reloads_total{result=\"failed\"}"), 1.0, "{m}");
        let failed: f64 = m
            .lines()
            .filter(|l| l.starts_with("percore_tls_handshake_failures_total{"))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
            .sum();
        assert_eq!(failed, 0.0, "{driver}: no handshake failed:\n{m}");
        eprintln!(
            "{driver}: {} requests on new connections across 5 swaps and a refused pair",
            requests.load(Ordering::Relaxed)
        );
    }
}

#[test]
fn metrics_show_when_the_certificate_expires() {
    let f = Fixture::new("expiry");
    let server = f.start("epoll", &[]);
    let out = Command::new("openssl").args(["x509", "-noout", "-enddate", "-in"]).arg(&f.server.cert).output().unwrap();
    let end = String::from_utf8_lossy(&out.stdout).trim().trim_start_matches("notAfter=").to_owned();
    let out = Command::new("date").args(["-u", "-d", &end, "+%s"]).output().unwrap();
    let expected: f64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let m = metrics(&f, &server);
    assert_eq!(sample(&m, "percore_tls_certificate_expiry_timestamp_seconds"), expected);
    assert!(server.logs().contains("serial 0A"), "the start-up line names the certificate: {}", server.logs());
}

#[test]
fn testssl_finds_no_vulnerability_and_no_weak_protocol_or_cipher() {
    if !tool("testssl") {
        return;
    }
    let f = Fixture::new("testssl");
    let server = f.start("epoll", &[]);
    let json = f.pki.path("testssl.json");
    let out = Command::new("testssl")
        .args(["--quiet", "--color", "0", "--warnings", "off", "-p", "-s", "-f", "-U", "--add-ca"])
        .arg(&f.ca.cert)
        .arg("--jsonfile")
        .arg(&json)
        .arg(format!("127.0.0.1:{}", server.addr.port()))
        .output()
        .unwrap();
    let report = std::fs::read_to_string(&json).unwrap_or_else(|_| {
        panic!(
            "testssl wrote no report: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let findings = crate::common::serde_json_lite::parse(report.as_bytes()).expect("testssl's JSON");
    use simd_json::prelude::*;
    let mut bad = Vec::new();
    let mut offered = Vec::new();
    for finding in findings.as_array().unwrap() {
        let id = finding["id"].as_str().unwrap_or_default();
        let severity = finding["severity"].as_str().unwrap_or_default();
        let text = finding["finding"].as_str().unwrap_or_default();
        if ["SSLv2", "SSLv3", "TLS1", "TLS1_1", "TLS1_2", "TLS1_3"].contains(&id) {
            offered.push(format!("{id}: {text}"));
        }
        if ["MEDIUM", "HIGH", "CRITICAL"].contains(&severity) {
            bad.push(format!("{id} ({severity}): {text}"));
        }
    }
    assert!(bad.is_empty(), "testssl found:\n{}", bad.join("\n"));
    let offered = offered.join("\n");
    for weak in ["SSLv2", "SSLv3", "TLS1:", "TLS1_1"] {
        assert!(
            offered.lines().any(|l| l.starts_with(weak) && l.contains("not offered")),
            "{weak} must not be offered:\n{offered}"
        );
    }
    assert!(offered.contains("TLS1_3: offered"), "{offered}");
}

#[test]
fn sessions_resume_unless_turned_off() {
    let f = Fixture::new("resume");
    for (setting, resumes) in [("on", true), ("off", false)] {
        let server = f.start("epoll", &[("TLS_RESUMPTION", setting.to_owned())]);
        let config = tls::config(&f.ca.cert, None, true);
        for _ in 0..3 {
            let mut c = tls::connect(server.addr, &config).unwrap();
            // The ticket comes after the handshake: read a response so it has arrived.
            assert_eq!(get(&mut c, "/health").status, 200);
        }
        let m = metrics(&f, &server);
        let resumed = sample(&m, "percore_tls_handshakes_total{version=\"TLSv1.3\",resumed=\"true\"}");
        assert_eq!(resumed > 0.0, resumes, "TLS_RESUMPTION={setting}: {resumed} resumed:\n{m}");
    }
}

#[test]
fn garbage_on_the_tls_port_is_refused_and_never_hurts_the_worker() {
    let f = Fixture::new("garbage");
    for driver in drivers() {
        let server = f.start(driver, &[("SERVER_READ_TIMEOUT", "1s".to_owned())]);
        // A handshake record header announcing 64 KiB, records of other types, bytes that are
        // neither TLS nor HTTP, a ClientHello full of noise: each closed, none served.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut noise = |n: usize| -> Vec<u8> {
            (0..n)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect()
        };
        let mut inputs: Vec<Vec<u8>> = vec![
            vec![0x16, 0x03, 0x01, 0xff, 0xff],
            [vec![0x17, 0x03, 0x03, 0x00, 0x40], noise(64)].concat(),
            [vec![0x15, 0x03, 0x03, 0x00, 0x02], vec![2, 40]].concat(),
            vec![0x00; 4096],
            b"\r\n\r\n\r\n".to_vec(),
        ];
        for n in [5, 50, 300, 2000] {
            inputs.push([vec![0x16, 0x03, 0x01, (n >> 8) as u8, n as u8, 0x01], noise(n)].concat());
            inputs.push(noise(n));
        }
        for input in &inputs {
            let mut c = server.connect();
            c.send(input);
            let mut rest = Vec::new();
            let _ = std::io::Read::read_to_end(&mut c.stream, &mut rest);
            assert!(!rest.starts_with(b"HTTP/1.1 200"), "{driver}: served garbage {:?}", &input[..input.len().min(8)]);
        }
        let mut c = f.client(&server);
        assert_eq!(get(&mut c, "/health").status, 200, "{driver}: the worker serves on");
        assert!(!server.logs().contains("panicked"), "{}", server.logs());
        let m = get(&mut c, "/metrics").text();
        let failed: f64 = m
            .lines()
            .filter(|l| l.starts_with("percore_tls_handshake_failures_total{"))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
            .sum();
        assert_eq!(failed, inputs.len() as f64, "{driver}: every one counted:\n{m}");
    }
}
