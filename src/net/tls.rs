//! TLS on the worker's own loop: the handshake and the record layer of one connection,
//! driven by the same cancelable reads and non-blocking sends as plain connections, so
//! deadlines, the drain and both I/O drivers work the same way over TLS.
//!
//! rustls is used as a state machine ([`rustls::ServerConnection`]): ciphertext read from the
//! socket is fed to it, the plaintext it yields is appended to the connection's read buffer
//! (where the parser finds it as if it had come off the socket), and a batch of responses
//! is sealed into records in one go before the batch's one write. Nothing here blocks and
//! nothing spawns: a TLS connection is a plain connection with a [`Session`] beside it.
//!
//! A client that speaks plain HTTP to the TLS port is told so, in plain HTTP, and the
//! connection closed, as Go and nginx do: a clean 400 rather than a hang or a reset.

use std::cell::RefCell;
use std::io::{self, BufRead, Write};
use std::sync::Arc;

use monoio::buf::IoBufMut;
use monoio::io::{CancelableAsyncReadRent, CancelableAsyncWriteRentExt};
use monoio::net::TcpStream;
use rustls::ServerConnection;

use super::buffers::BufferPool;
use super::timeouts::ConnCtl;
use crate::tls::server::{Configs, ServerTls};
use crate::tls::stats::{Failure, TlsStats};

/// Ciphertext read at once: a whole TLS record (16 KiB of plaintext plus its overhead).
pub(crate) const TLS_READ_BUFFER: usize = 16 * 1024 + 256;

/// One worker's door to the listener's TLS: the configurations new handshakes use,
/// refreshed when the certificate is reloaded (one relaxed load per handshake to notice).
pub(crate) struct Acceptor {
    shared: Arc<ServerTls>,
    cached: RefCell<(u64, Arc<Configs>)>,
}

impl Acceptor {
    pub(crate) fn new(shared: Arc<ServerTls>) -> Acceptor {
        let cached = RefCell::new(shared.current());
        Acceptor { shared, cached }
    }

    /// The handshake of a new connection, under whatever deadline the connection's `ctl`
    /// carries: the ClientHello is read first (a plain HTTP request is told apart there),
    /// the configuration chosen for it, and the rest completed on the session.
    pub(crate) async fn handshake(
        &self,
        stream: &mut TcpStream,
        ctl: &ConnCtl,
        pool: &BufferPool,
    ) -> Result<Box<Session>, Failure> {
        if self.cached.borrow().0 != self.shared.generation() {
            *self.cached.borrow_mut() = self.shared.current();
        }
        let configs = self.cached.borrow().1.clone();
        let mut hello = rustls::server::Acceptor::default();
        let mut incoming = Vec::new();
        let mut first = true;
        let accepted = loop {
            match read_socket(&mut incoming, stream, ctl, pool).await {
                Ok(0) => return Err(Failure::Closed),
                Ok(_) => {}
                Err(_) if ctl.cut_reason().is_some() => return Err(Failure::Timeout),
                Err(_) => return Err(Failure::Closed),
            }
            if std::mem::take(&mut first) && looks_like_http(&incoming) {
                return Err(Failure::PlainHttp);
            }
            let mut rest = &incoming[..];
            while !rest.is_empty() {
                if hello.read_tls(&mut rest).is_err() {
                    return Err(Failure::Malformed);
                }
            }
            incoming.clear();
            match hello.accept() {
                Ok(None) => continue,
                Ok(Some(accepted)) => break accepted,
                Err((e, alert)) => return Err(refuse(stream, e, alert)),
            }
        };
        let config = configs.for_client(accepted.client_hello().cipher_suites());
        let tls = accepted.into_connection(config).map_err(|(e, alert)| refuse(stream, e, alert))?;
        let mut session = Box::new(Session { tls, incoming, consumed: 0 });
        session.finish_handshake(stream, ctl, pool).await?;
        Ok(session)
    }

    pub(crate) fn stats(&self) -> &TlsStats {
        &self.shared.stats
    }
}

/// Sends the alert that says why a ClientHello was refused, if the socket takes it now.
fn refuse(stream: &TcpStream, e: rustls::Error, mut alert: rustls::server::AcceptedAlert) -> Failure {
    let mut out = Vec::new();
    let _ = alert.write_all(&mut out);
    let _ = super::send::send_now(stream, &out);
    Failure::of(&e)
}

/// One connection's TLS state: rustls's, and the ciphertext read but not yet fed to it.
pub(crate) struct Session {
    tls: ServerConnection,
    /// Ciphertext from the socket; `consumed` bytes of it are rustls's already. Without
    /// capacity while the connection has nothing in it (a parked connection holds none).
    incoming: Vec<u8>,
    consumed: usize,
}

/// What [`Session::pump`] did.
#[derive(Debug, PartialEq, Eq)]
enum Pumped {
    /// Plaintext appended to the destination.
    Data(usize),
    /// The client closed the TLS session (close_notify, or the socket's end).
    Closed,
    /// All ciphertext is used up and no plaintext came of it yet: read the socket.
    NeedMore,
}

impl Session {
    /// The handshake after the ClientHello: the server's flight out, the client's in.
    async fn finish_handshake(
        &mut self,
        stream: &mut TcpStream,
        ctl: &ConnCtl,
        pool: &BufferPool,
    ) -> Result<(), Failure> {
        loop {
            if self.tls.wants_write() {
                self.flush(stream, ctl).await.map_err(|_| Failure::Closed)?;
            }
            if !self.tls.is_handshaking() {
                return Ok(());
            }
            match self.read_socket(stream, ctl, pool).await {
                Ok(0) => return Err(Failure::Closed),
                Ok(_) => {}
                Err(_) if ctl.cut_reason().is_some() => return Err(Failure::Timeout),
                Err(_) => return Err(Failure::Closed),
            }
            if let Err(e) = self.feed() {
                // The alert that says why goes out if the socket takes it now.
                let _ = self.flush_now(stream);
                return Err(Failure::of(&e));
            }
        }
    }

    /// The negotiated version (true: TLS 1.3) and whether the session was resumed.
    pub(crate) fn kind(&self) -> (bool, bool) {
        let tls13 = self.tls.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3);
        (tls13, self.tls.handshake_kind() == Some(rustls::HandshakeKind::Resumed))
    }

    /// Reads plaintext, appending to `dst` at most its spare capacity; `Ok(0)` when the
    /// client closed the session. Bytes already received are returned without waiting.
    pub(crate) async fn read(
        &mut self,
        stream: &mut TcpStream,
        dst: &mut Vec<u8>,
        ctl: &ConnCtl,
        pool: &BufferPool,
    ) -> io::Result<usize> {
        loop {
            match self.pump(dst) {
                Ok(Pumped::Data(n)) => return Ok(n),
                Ok(Pumped::Closed) => return Ok(0),
                Ok(Pumped::NeedMore) => {}
                Err(e) => {
                    let _ = self.flush_now(stream);
                    return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                }
            }
            // A key update's answer, say, goes out before the next wait.
            if self.tls.wants_write() {
                self.flush(stream, ctl).await?;
            }
            if self.read_socket(stream, ctl, pool).await? == 0 {
                // The socket's end: rustls decides whether that was a clean close.
                let _ = self.tls.read_tls(&mut &[][..]);
            }
        }
    }

    /// Whether plaintext or ciphertext is already here: a parked connection must not wait
    /// for the socket while the request it is waiting for sits in memory.
    pub(crate) fn has_buffered(&mut self) -> bool {
        self.consumed < self.incoming.len() || self.tls.reader().fill_buf().is_ok_and(|b| !b.is_empty())
    }

    /// Gives the ciphertext buffer back while the connection waits with nothing in it.
    pub(crate) fn release(&mut self, pool: &BufferPool) {
        if self.consumed == self.incoming.len() && self.incoming.capacity() > 0 {
            pool.give(std::mem::take(&mut self.incoming));
            self.consumed = 0;
        }
    }

    /// Seals `plain` into records appended to `out`.
    pub(crate) fn seal(&mut self, mut plain: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        while !plain.is_empty() {
            let n = self.tls.writer().write(plain)?;
            plain = &plain[n..];
            while self.tls.wants_write() {
                self.tls.write_tls(out)?;
            }
            if n == 0 {
                return Err(io::Error::other("rustls took no plaintext"));
            }
        }
        Ok(())
    }

    /// Ends the session: the close_notify alert, appended to `out` (nothing once it has been
    /// sent, or before the handshake is done).
    pub(crate) fn close(&mut self, out: &mut Vec<u8>) {
        if self.tls.is_handshaking() {
            return;
        }
        self.tls.send_close_notify();
        while self.tls.wants_write() {
            if self.tls.write_tls(out).is_err() {
                break;
            }
        }
    }

    /// Moves plaintext out to `dst` (at most its spare capacity), feeding rustls more
    /// ciphertext as it needs it.
    fn pump(&mut self, dst: &mut Vec<u8>) -> Result<Pumped, rustls::Error> {
        let mut moved = 0;
        let over = |moved| if moved > 0 { Pumped::Data(moved) } else { Pumped::Closed };
        loop {
            let room = dst.capacity() - dst.len();
            if room == 0 {
                return Ok(Pumped::Data(moved));
            }
            match self.tls.reader().fill_buf() {
                // Closed cleanly (close_notify), everything before it handed out.
                Ok([]) => return Ok(over(moved)),
                Ok(chunk) => {
                    let n = chunk.len().min(room);
                    dst.extend_from_slice(&chunk[..n]);
                    self.tls.reader().consume(n);
                    moved += n;
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The socket ended without close_notify: over all the same.
                Err(_) => return Ok(over(moved)),
            }
            if self.consumed == self.incoming.len() || !self.feed()? {
                return Ok(if moved > 0 { Pumped::Data(moved) } else { Pumped::NeedMore });
            }
        }
    }

    /// Gives rustls the ciphertext it can take (it stops at a full plaintext buffer,
    /// leaving the rest for later) and lets it process what it got. False: it took none.
    fn feed(&mut self) -> Result<bool, rustls::Error> {
        let before = self.consumed;
        while self.consumed < self.incoming.len() {
            let mut rest = &self.incoming[self.consumed..];
            match self.tls.read_tls(&mut rest) {
                Ok(0) | Err(_) => break,
                Ok(n) => self.consumed += n,
            }
            self.tls.process_new_packets()?;
        }
        let progress = self.consumed > before;
        if self.consumed == self.incoming.len() {
            self.incoming.clear();
            self.consumed = 0;
        }
        Ok(progress)
    }

    async fn read_socket(&mut self, stream: &mut TcpStream, ctl: &ConnCtl, pool: &BufferPool) -> io::Result<usize> {
        read_socket(&mut self.incoming, stream, ctl, pool).await
    }

    /// Sends what rustls has queued (handshake messages, tickets, alerts), waiting for the
    /// socket if it does not take it all at once.
    async fn flush(&mut self, stream: &mut TcpStream, ctl: &ConnCtl) -> io::Result<()> {
        let mut out = Vec::new();
        while self.tls.wants_write() {
            self.tls.write_tls(&mut out)?;
        }
        let sent = super::send::send_now(stream, &out)?;
        if sent < out.len() {
            out.drain(..sent);
            let (result, _) = stream.write_all(out, ctl.handle()).await;
            result?;
        }
        Ok(())
    }

    /// Sends what rustls has queued if the socket takes it at once; for a last alert.
    fn flush_now(&mut self, stream: &TcpStream) -> io::Result<()> {
        let mut out = Vec::new();
        while self.tls.wants_write() {
            self.tls.write_tls(&mut out)?;
        }
        super::send::send_now(stream, &out).map(|_| ())
    }
}

/// Reads ciphertext from the socket into `incoming`, after what it holds (cancelable:
/// deadlines and the drain cut it).
async fn read_socket(
    incoming: &mut Vec<u8>,
    stream: &mut TcpStream,
    ctl: &ConnCtl,
    pool: &BufferPool,
) -> io::Result<usize> {
    if incoming.capacity() == 0 {
        *incoming = pool.take();
    }
    if incoming.len() == incoming.capacity() {
        incoming.reserve(TLS_READ_BUFFER);
    }
    let buf = std::mem::take(incoming);
    let filled = buf.len();
    let (result, slice) = stream.cancelable_read(buf.slice_mut(filled..), ctl.handle()).await;
    *incoming = slice.into_inner();
    result
}

/// Whether the first bytes on a TLS port are a plain HTTP request (a method in capitals and
/// a space) rather than a TLS record (which starts with 0x16).
fn looks_like_http(first: &[u8]) -> bool {
    let method = first.iter().take_while(|b| b.is_ascii_uppercase()).count();
    method >= 3 && first.get(method) == Some(&b' ')
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig};

    const CA: &str = include_str!("../tls/testdata/ca.pem");
    const CERT: &str = include_str!("../tls/testdata/leaf.pem");
    const KEY: &str = include_str!("../tls/testdata/leaf.key");

    /// A client and a server session over no socket: bytes are carried by hand.
    fn pair() -> (ClientConnection, Session) {
        let provider = Arc::new(crate::tls::provider());
        let cert = CertificateDer::from_pem_slice(CERT.as_bytes()).unwrap();
        let key = PrivateKeyDer::from_pem_slice(KEY.as_bytes()).unwrap();
        let server = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(CertificateDer::from_pem_slice(CA.as_bytes()).unwrap()).unwrap();
        let client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let client = ClientConnection::new(Arc::new(client), "percore.test".try_into().unwrap()).unwrap();
        let session =
            Session { tls: ServerConnection::new(Arc::new(server)).unwrap(), incoming: Vec::new(), consumed: 0 };
        (client, session)
    }

    /// Client → server: what the client has queued lands in the session's ciphertext.
    fn to_server(client: &mut ClientConnection, session: &mut Session) {
        while client.wants_write() {
            client.write_tls(&mut session.incoming).unwrap();
        }
    }

    /// Server → client.
    fn to_client(session: &mut Session, client: &mut ClientConnection) {
        let mut out = Vec::new();
        while session.tls.wants_write() {
            session.tls.write_tls(&mut out).unwrap();
        }
        let mut rest = &out[..];
        while !rest.is_empty() {
            client.read_tls(&mut rest).unwrap();
            client.process_new_packets().unwrap();
        }
    }

    fn handshake(client: &mut ClientConnection, session: &mut Session) {
        while client.is_handshaking() || session.tls.is_handshaking() {
            to_server(client, session);
            session.feed().unwrap();
            to_client(session, client);
        }
        to_server(client, session);
        session.feed().unwrap();
    }

    #[test]
    fn plaintext_comes_out_in_order_and_never_past_the_room_given() {
        let (mut client, mut session) = pair();
        handshake(&mut client, &mut session);
        let sent: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        client.set_buffer_limit(None);
        client.writer().write_all(&sent).unwrap();
        to_server(&mut client, &mut session);
        let mut got = Vec::new();
        loop {
            let mut dst = Vec::with_capacity(2048);
            match session.pump(&mut dst).unwrap() {
                Pumped::Data(n) => {
                    assert_eq!(n, dst.len());
                    assert!(n <= 2048);
                    got.extend_from_slice(&dst);
                }
                Pumped::NeedMore => break,
                Pumped::Closed => panic!("not closed"),
            }
        }
        assert_eq!(got.len(), sent.len());
        assert!(got == sent, "the same bytes, in order");
        assert!(!session.has_buffered());
    }

    #[test]
    fn a_batch_is_sealed_into_records_the_client_opens() {
        let (mut client, mut session) = pair();
        handshake(&mut client, &mut session);
        let batch = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK".repeat(2000);
        let mut sealed = Vec::new();
        session.seal(&batch, &mut sealed).unwrap();
        assert!(sealed.len() > batch.len() && sealed.len() < batch.len() + 1024, "one record per 16 KiB");
        let mut rest = &sealed[..];
        let mut opened = Vec::new();
        while !rest.is_empty() {
            client.read_tls(&mut rest).unwrap();
            client.process_new_packets().unwrap();
            let _ = std::io::Read::read_to_end(&mut client.reader(), &mut opened);
        }
        assert!(opened == batch);
    }

    #[test]
    fn close_notify_ends_the_stream_after_the_data_before_it() {
        let (mut client, mut session) = pair();
        handshake(&mut client, &mut session);
        client.writer().write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        client.send_close_notify();
        to_server(&mut client, &mut session);
        assert!(session.has_buffered());
        let mut dst = Vec::with_capacity(2048);
        assert_eq!(session.pump(&mut dst).unwrap(), Pumped::Data(18));
        assert_eq!(session.pump(&mut dst).unwrap(), Pumped::Closed);
    }

    #[test]
    fn garbage_after_the_handshake_is_an_error_not_data() {
        let (mut client, mut session) = pair();
        handshake(&mut client, &mut session);
        session.incoming.extend_from_slice(&[0x17, 0x03, 0x03, 0x00, 0x20]);
        session.incoming.extend_from_slice(&[0xAB; 32]);
        let mut dst = Vec::with_capacity(2048);
        assert!(session.pump(&mut dst).is_err());
        assert!(dst.is_empty());
    }

    #[test]
    fn plain_http_is_told_apart_from_a_client_hello() {
        assert!(looks_like_http(b"GET / HTTP/1.1\r\n"));
        assert!(looks_like_http(b"POST /api/v1/users HTTP/1.1\r\n"));
        assert!(!looks_like_http(b"\x16\x03\x01\x02\x00\x01"));
        assert!(!looks_like_http(b"GE"));
        assert!(!looks_like_http(b"get / HTTP/1.1"));
    }
}
