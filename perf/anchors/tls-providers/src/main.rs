//! Server-side cost of a TLS 1.3 handshake and of sealing records, under rustls's ring and
//! aws-lc-rs providers, with the listener's settings (AES-128-GCM-SHA256 preferred, ECDSA
//! P-256). A client and a server in one process, bytes carried by hand; only the server's
//! calls are timed. Prints one line per measurement: median of 7 rounds.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};

fn server_config(provider: CryptoProvider, cert: &CertificateDer<'static>, key: &[u8]) -> Arc<ServerConfig> {
    let mut config = ServerConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.to_vec())))
        .unwrap();
    config.send_tls13_tickets = 0;
    Arc::new(config)
}

fn client_config(provider: CryptoProvider, cert: &CertificateDer<'static>) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(cert.clone()).unwrap();
    let mut config = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.resumption = rustls::client::Resumption::disabled();
    Arc::new(config)
}

/// Client → server and back until both are done; returns the time spent in server calls.
fn handshake(client: &mut ClientConnection, server: &mut ServerConnection) -> Duration {
    let mut server_time = Duration::ZERO;
    let mut buf = Vec::new();
    while client.is_handshaking() || server.is_handshaking() {
        buf.clear();
        while client.wants_write() {
            client.write_tls(&mut buf).unwrap();
        }
        let t = Instant::now();
        let mut rest = &buf[..];
        while !rest.is_empty() {
            server.read_tls(&mut rest).unwrap();
            server.process_new_packets().unwrap();
        }
        buf.clear();
        while server.wants_write() {
            server.write_tls(&mut buf).unwrap();
        }
        server_time += t.elapsed();
        let mut rest = &buf[..];
        while !rest.is_empty() {
            client.read_tls(&mut rest).unwrap();
            client.process_new_packets().unwrap();
        }
    }
    server_time
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let signed = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert = signed.cert.der().clone();
    let key = signed.signing_key.serialize_der();
    let order = |mut p: CryptoProvider| {
        p.cipher_suites.sort_by_key(|s| s.suite() != rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
        p
    };
    #[allow(deprecated)]
    let ring = || order(rustls::crypto::ring::default_provider());
    let aws = || order(rustls::crypto::aws_lc_rs::default_provider());
    let x25519_only = |mut p: CryptoProvider| {
        p.kx_groups.retain(|g| g.name() == rustls::NamedGroup::X25519);
        p
    };
    let cases: Vec<(&str, CryptoProvider, CryptoProvider)> = vec![
        ("ring, X25519", ring(), x25519_only(ring())),
        ("aws-lc-rs, X25519", aws(), x25519_only(aws())),
        ("aws-lc-rs, X25519MLKEM768", aws(), aws()),
    ];
    for (name, server_provider, client_provider) in cases {
        let server_cfg = server_config(server_provider, &cert, &key);
        let client_cfg = client_config(client_provider, &cert);
        let name_of = || rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut rounds = Vec::new();
        for _ in 0..7 {
            let n = 500;
            let mut total = Duration::ZERO;
            for _ in 0..n {
                let mut client = ClientConnection::new(client_cfg.clone(), name_of()).unwrap();
                let mut server = ServerConnection::new(server_cfg.clone()).unwrap();
                total += handshake(&mut client, &mut server);
            }
            rounds.push(total.as_secs_f64() * 1e6 / n as f64);
        }
        println!("{name}: full handshake, server side {:.1} µs", median(rounds));
        if name.contains("MLKEM") {
            continue;
        }
        let mut client = ClientConnection::new(client_cfg.clone(), name_of()).unwrap();
        let mut server = ServerConnection::new(server_cfg.clone()).unwrap();
        handshake(&mut client, &mut server);
        for size in [150usize, 16 * 1024] {
            let payload = vec![b'x'; size];
            let mut out = Vec::with_capacity(size + 1024);
            let mut rounds = Vec::new();
            for _ in 0..7 {
                let n = if size < 1024 { 200_000 } else { 20_000 };
                let t = Instant::now();
                for _ in 0..n {
                    out.clear();
                    server.writer().write_all(&payload).unwrap();
                    server.write_tls(&mut out).unwrap();
                }
                rounds.push(t.elapsed().as_secs_f64() * 1e9 / n as f64);
            }
            println!("{name}: seal a {size}-byte record {:.0} ns", median(rounds));
        }
    }
}
