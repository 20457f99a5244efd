//! A TLS client for the tests, on rustls: a percore TLS listener spoken to with the same
//! request and response helpers as a plain one ([`super::Client`] over a TLS stream).

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use super::certs::Pair;
use super::Client;

pub type TlsStream = StreamOwned<ClientConnection, TcpStream>;
pub type TlsClient = Client<TlsStream>;

/// A client configuration trusting `ca`, presenting `client` if given, offering ALPN
/// http/1.1; `resume` keeps sessions for resumption (rustls's default), else none.
pub fn config(ca: &Path, client: Option<&Pair>, resume: bool) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match client {
        None => builder.with_no_client_auth(),
        Some(pair) => {
            let chain = CertificateDer::pem_file_iter(&pair.cert).unwrap().map(Result::unwrap).collect();
            builder.with_client_auth_cert(chain, PrivateKeyDer::from_pem_file(&pair.key).unwrap()).unwrap()
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    if !resume {
        config.resumption = rustls::client::Resumption::disabled();
    }
    Arc::new(config)
}

/// Connects and completes the handshake (as `localhost`), or says why it failed.
pub fn connect(addr: SocketAddr, config: &Arc<ClientConfig>) -> Result<TlsClient, String> {
    let tcp = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    tcp.set_nodelay(true).unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let conn = ClientConnection::new(config.clone(), name).map_err(|e| e.to_string())?;
    let mut stream = StreamOwned::new(conn, tcp);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock).map_err(|e| format!("handshake: {e}"))?;
    }
    Ok(Client::over(stream))
}

/// The serial of the certificate the server showed, as `openssl x509 -serial` prints it.
pub fn peer_serial(client: &TlsClient) -> String {
    let certs = client.stream.conn.peer_certificates().expect("a certificate");
    serial_of(&certs[0])
}

fn serial_of(der: &[u8]) -> String {
    use x509_cert::der::Decode;
    let cert = x509_cert::Certificate::from_der(der).unwrap();
    cert.tbs_certificate.serial_number.as_bytes().iter().map(|b| format!("{b:02X}")).collect()
}
